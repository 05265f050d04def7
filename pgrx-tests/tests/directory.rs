//! Principals through a Graph-compatible directory served on 127.0.0.1: creation by name, group
//! login by claim and by overage, service principals as members, membership changes and cache
//! expiry, MFA, several admins and the DROP ROLE guard, a deleted-and-recreated user, renames,
//! a failing directory, and a managed identity or a federated client assertion (workload
//! identity) instead of a client secret.

use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::{private_file, Cluster};
use pgaadauth_e2e::idp::{
    claims, mint, Idp, CLIENT_ASSERTION, CLIENT_ID, CLIENT_SECRET, RSA1, TENANT,
};
use postgres::error::SqlState;
use serde_json::{json, Value};
use std::sync::RwLock;
use std::time::Duration;

const ALICE: &str = "a11ce000-1111-4222-8333-000000000001";
const GUEST: &str = "9e057000-1111-4222-8333-000000000002";
const READERS: &str = "9a0a9000-1111-4222-8333-000000000003";
const REPORTING: &str = "5e41ce00-1111-4222-8333-000000000004";
const MEMBER: &str = "3e3be400-1111-4222-8333-000000000005";
const OUTSIDER: &str = "0d75de00-1111-4222-8333-000000000006";
const ADMIN2: &str = "ad312000-1111-4222-8333-000000000007";
const DUP1: &str = "d0b10000-1111-4222-8333-000000000008";
const DUP2: &str = "d0b20000-1111-4222-8333-000000000009";
const CAROL_OLD: &str = "ca401000-1111-4222-8333-000000000010";
const CAROL_NEW: &str = "ca402000-1111-4222-8333-000000000011";
const LEAVER: &str = "1ea7e400-1111-4222-8333-000000000012";
const FEDERATED: &str = "fede0000-1111-4222-8333-000000000013";

struct World {
    idp: Idp,
    pg: Cluster,
}

/// Tests that change directory-wide state (failing, credentials) hold this for writing; the
/// others for reading.
static DIRECTORY: RwLock<()> = RwLock::new(());

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1]);
    for (id, kind, name) in [
        (ALICE, "user", "alice@contoso.example"),
        (
            GUEST,
            "user",
            "bob_fabrikam.example#EXT#@contoso.onmicrosoft.example",
        ),
        (READERS, "group", "DB Readers"),
        (REPORTING, "service", "reporting-app"),
        (MEMBER, "user", "member@contoso.example"),
        (OUTSIDER, "user", "outsider@contoso.example"),
        (ADMIN2, "user", "admin2@contoso.example"),
        (DUP1, "group", "Duplicates"),
        (DUP2, "service", "Duplicates"),
        (CAROL_OLD, "user", "carol@contoso.example"),
        (LEAVER, "user", "leaver@contoso.example"),
    ] {
        idp.dir_add(id, kind, name);
    }
    idp.dir_add_member(READERS, MEMBER);
    idp.dir_add_member(READERS, REPORTING);
    idp.dir_add_member(READERS, LEAVER);
    let secret = private_file("client-secret", &format!("{CLIENT_SECRET}\n"));
    let pg = Cluster::start(
        "directory",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.graph_endpoint", idp.base()),
            ("pgaadauth.client_id", CLIENT_ID.into()),
            ("pgaadauth.client_secret_file", secret.display().to_string()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.group_cache_ttl", "2s".into()),
        ],
    );
    World { idp, pg }
});

impl World {
    fn token(&self, oid: &str, extra: Value) -> String {
        let mut c = claims(&self.idp.entra_issuer(), oid);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&RSA1, &c)
    }

    fn login(&self, role: &str, token: &str) -> Result<String, postgres::Error> {
        let mut client = self.pg.connect(role, token)?;
        Ok(client
            .query_one("SELECT current_user::text", &[])
            .unwrap()
            .get(0))
    }

    fn wait_keys(&self, role: &str, token: &str) {
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || self.login(role, token).is_ok()),
            "{}",
            self.pg.log()
        );
    }

    fn refused(&self, role: &str, token: &str) -> String {
        let err = self
            .login(role, token)
            .expect_err("login should be refused");
        assert_eq!(
            err.as_db_error().map(|d| d.code()),
            Some(&SqlState::INVALID_PASSWORD),
            "{err}"
        );
        self.pg.failure_detail(role).unwrap_or_default()
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.pg.try_sql("postgres", sql)
    }

    fn label(&self, role: &str) -> String {
        self.pg.sql(&format!(
            "SELECT s.label FROM pg_shseclabel s JOIN pg_roles r ON r.oid = s.objoid WHERE r.rolname = '{role}'"
        ))
    }
}

#[test]
fn create_principal_by_upn_guest_group_and_service_name() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    for (name, oid, kind) in [
        ("alice@contoso.example", ALICE, "user"),
        (
            "bob_fabrikam.example#EXT#@contoso.onmicrosoft.example",
            GUEST,
            "user",
        ),
        ("DB Readers", READERS, "group"),
        ("reporting-app", REPORTING, "service"),
    ] {
        let out = w.pg.sql(&format!(
            "SELECT pgaadauth_create_principal('{name}', false, false)"
        ));
        assert_eq!(out, format!("Created role for {name}"));
        assert_eq!(
            w.label(name),
            format!("aadauth,oid={oid},type={kind},tid={TENANT}")
        );
    }
    let alice = w.token(ALICE, json!({}));
    w.wait_keys("alice@contoso.example", &alice);
    let guest = w.token(GUEST, json!({}));
    assert_eq!(
        w.login(
            "bob_fabrikam.example#EXT#@contoso.onmicrosoft.example",
            &guest
        )
        .unwrap(),
        "bob_fabrikam.example#EXT#@contoso.onmicrosoft.example"
    );
    // Renaming a role keeps its mapping.
    w.pg.sql(
        "CREATE ROLE holder; ALTER ROLE \"alice@contoso.example\" RENAME TO \"alice.renamed\"",
    );
    assert_eq!(w.login("alice.renamed", &alice).unwrap(), "alice.renamed");
}

#[test]
fn ambiguous_and_unknown_names_are_refused() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    let e = w
        .try_sql("SELECT pgaadauth_create_principal('Duplicates', false, false)")
        .unwrap_err();
    assert!(
        e.contains("could not resolve \"Duplicates\" in the directory"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "names 2 directory objects (group {DUP1}, service principal {DUP2})"
        )),
        "{e}"
    );
    let e = w
        .try_sql("SELECT pgaadauth_create_principal('nobody@contoso.example', false, false)")
        .unwrap_err();
    assert!(
        e.contains("No user, group or service principal named \"nobody@contoso.example\""),
        "{e}"
    );
    assert_eq!(w.pg.sql("SELECT count(*) FROM pg_roles WHERE rolname IN ('Duplicates', 'nobody@contoso.example')"), "0");
}

#[test]
fn group_login_by_claim_by_overage_and_by_service_principal_member() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql(&format!("SELECT pgaadauth_create_principal_with_oid('readers-grp', '{READERS}', 'group', false, false)"));
    // By the groups claim: no directory call.
    let by_claim = w.token(OUTSIDER, json!({"groups": ["x", READERS]}));
    w.wait_keys("readers-grp", &by_claim);
    assert_eq!(w.login("readers-grp", &by_claim).unwrap(), "readers-grp");

    // Group overage: the directory answers, and the answer is cached.
    let asked = format!("/directoryObjects/{MEMBER}/checkMemberGroups");
    let before = w.idp.count(&asked);
    let overage = json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x/getMemberObjects"}}});
    let member = w.token(MEMBER, overage.clone());
    assert_eq!(w.login("readers-grp", &member).unwrap(), "readers-grp");
    assert_eq!(w.login("readers-grp", &member).unwrap(), "readers-grp");
    assert_eq!(
        w.idp.count(&asked) - before,
        1,
        "the second answer came from the cache"
    );

    // A service principal (an app token: no upn, an appid) as member, with no groups claim.
    let app = w.token(
        REPORTING,
        json!({"appid": "11112222-3333-4444-5555-666677778888", "upn": null}),
    );
    assert_eq!(w.login("readers-grp", &app).unwrap(), "readers-grp");

    // Not a member: refused, by the claim and by the directory.
    let detail = w.refused("readers-grp", &w.token(OUTSIDER, json!({"groups": ["x"]})));
    assert!(
        detail.contains("is not a member of group") && detail.contains("the token's groups claim"),
        "{detail}"
    );
    let detail = w.refused("readers-grp", &w.token(OUTSIDER, overage));
    assert!(detail.contains("according to the directory"), "{detail}");
}

#[test]
fn member_removed_in_the_directory_is_refused_after_the_cache_ttl() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql(&format!("SELECT pgaadauth_create_principal_with_oid('leaver-grp', '{READERS}', 'group', false, false)"));
    let token = w.token(LEAVER, json!({}));
    w.wait_keys("leaver-grp", &token);
    w.idp.dir_remove_member(READERS, LEAVER);
    // Within group_cache_ttl (2s) the cached answer stands; after it, the directory's.
    assert!(Cluster::wait_for(Duration::from_secs(8), || w
        .login("leaver-grp", &token)
        .is_err()));
    let detail = w.pg.failure_detail("leaver-grp").unwrap();
    assert!(detail.contains("according to the directory"), "{detail}");
}

#[test]
fn mfa_flag_is_enforced_both_ways() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('mfa-user', '{MEMBER}', 'user', false, true)"
    ));
    w.pg.sql(&format!("SELECT pgaadauth_create_principal_with_oid('plain-user', '{MEMBER}', 'user', false, false)"));
    let pwd = w.token(MEMBER, json!({"amr": ["pwd"]}));
    let mfa = w.token(MEMBER, json!({"amr": ["pwd", "mfa"]}));
    w.wait_keys("plain-user", &pwd);
    assert!(w
        .refused("mfa-user", &pwd)
        .contains("requires multi-factor authentication"));
    assert_eq!(w.login("mfa-user", &mfa).unwrap(), "mfa-user");
    assert_eq!(w.login("plain-user", &mfa).unwrap(), "plain-user");
}

#[test]
fn a_second_admin_manages_principals_and_createrole_alone_cannot_drop_entra_roles() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql("SELECT pgaadauth_create_principal('admin2@contoso.example', true, false)");
    assert_eq!(
        w.pg.sql("SELECT objectid || ',' || isadmin FROM pgaadauth_list_principals(true) WHERE rolname = 'admin2@contoso.example'"),
        format!("{ADMIN2},1")
    );
    let token = w.token(ADMIN2, json!({}));
    w.wait_keys("admin2@contoso.example", &token);
    let mut admin = w.pg.connect("admin2@contoso.example", &token).unwrap();
    let made: String = admin
        .query_one(&format!("SELECT pgaadauth_create_principal_with_oid('made-by-admin2', '{OUTSIDER}', 'user', false, false)"), &[])
        .unwrap()
        .get(0);
    assert_eq!(made, "Created role for made-by-admin2");
    let resolved: String = admin
        .query_one(
            "SELECT pgaadauth_create_principal('outsider@contoso.example', false, false)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(resolved, "Created role for outsider@contoso.example");

    // A CREATEROLE role without the admin label may not drop an Entra role, nor create one.
    w.pg.sql("CREATE ROLE plain_manager LOGIN CREATEROLE PASSWORD 'pm-secret'");
    let mut plain = w.pg.connect("plain_manager", "pm-secret").unwrap();
    let err = plain
        .batch_execute("DROP ROLE \"made-by-admin2\"")
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(
        db.message(),
        "permission denied to drop role \"made-by-admin2\", which is mapped to an Entra principal"
    );
    let err = plain
        .batch_execute(&format!(
            "SELECT pgaadauth_create_principal_with_oid('x', '{OUTSIDER}', 'user', false, false)"
        ))
        .unwrap_err();
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    // It may still drop ordinary roles.
    plain
        .batch_execute("CREATE ROLE ordinary; DROP ROLE ordinary")
        .unwrap();
    // The second admin may drop the Entra role.
    admin.batch_execute("DROP ROLE \"made-by-admin2\"").unwrap();
    assert_eq!(
        w.pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'made-by-admin2'"),
        "0"
    );
}

#[test]
fn deleted_and_recreated_user_with_the_same_name_is_refused() {
    let w = &*WORLD;
    let _shared = DIRECTORY.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql("SELECT pgaadauth_create_principal('carol@contoso.example', false, false)");
    let old = w.token(CAROL_OLD, json!({}));
    w.wait_keys("carol@contoso.example", &old);
    // The directory deletes carol and creates a new carol: same name, new object id.
    w.idp.dir_remove(CAROL_OLD);
    w.idp.dir_add(CAROL_NEW, "user", "carol@contoso.example");
    let new = w.token(CAROL_NEW, json!({}));
    let detail = w.refused("carol@contoso.example", &new);
    assert!(
        detail.contains(&format!(
            "\"{CAROL_NEW}\" does not match the role's object id \"{CAROL_OLD}\""
        )),
        "{detail}"
    );
}

#[test]
fn directory_down_claim_logins_work_and_overage_logins_fail_clearly() {
    let w = &*WORLD;
    let _only = DIRECTORY.write().unwrap_or_else(|e| e.into_inner());
    w.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('down-grp', '{DUP1}', 'group', false, false)"
    ));
    let by_claim = w.token(OUTSIDER, json!({"groups": [DUP1]}));
    w.wait_keys("down-grp", &by_claim);
    w.idp.dir_set_failing(true);
    assert_eq!(w.login("down-grp", &by_claim).unwrap(), "down-grp");
    let overage = w.token(MEMBER, json!({"_claim_names": {"groups": "src1"}}));
    let detail = w.refused("down-grp", &overage);
    assert!(
        detail.contains("could not be learned from the directory") && detail.contains("503"),
        "{detail}"
    );
    let e = w
        .try_sql("SELECT pgaadauth_create_principal('alice@contoso.example', false, false)")
        .unwrap_err();
    assert!(e.contains("could not resolve") && e.contains("503"), "{e}");
    w.idp.dir_set_failing(false);
}

#[test]
fn the_directory_token_is_cached_and_a_managed_identity_works_too() {
    let w = &*WORLD;
    let _only = DIRECTORY.write().unwrap_or_else(|e| e.into_inner());
    let tokens_before = w.idp.count("/oauth2/v2.0/token");
    for name in ["DB Readers", "reporting-app"] {
        let e = w.try_sql(&format!(
            "SELECT pgaadauth_create_principal('{name}', false, false)"
        ));
        // Created here or by another test already: either way the directory answered.
        assert!(
            e.is_ok() || e.as_ref().unwrap_err().contains("already exists"),
            "{e:?}"
        );
    }
    assert!(
        w.idp.count("/oauth2/v2.0/token") - tokens_before <= 1,
        "the directory token is reused"
    );

    w.pg.set(&[(
        "pgaadauth.managed_identity_endpoint",
        &format!("{}/msi/token", w.idp.base()),
    )]);
    let out =
        w.pg.sql("SELECT pgaadauth_create_principal('member@contoso.example', false, false)");
    assert_eq!(out, "Created role for member@contoso.example");
    assert!(
        w.idp.count("/msi/token?api-version=2018-02-01&resource=") >= 1,
        "{:?}",
        w.idp.requests()
    );
    w.pg.set(&[("pgaadauth.managed_identity_endpoint", "")]);
    // The secret never reaches the log.
    assert!(!w.pg.log().contains(CLIENT_SECRET) && !w.pg.log().contains("directory-access-"));
}

#[test]
fn a_federated_client_assertion_instead_of_the_secret() {
    let w = &*WORLD;
    let _only = DIRECTORY.write().unwrap_or_else(|e| e.into_inner());
    // As Kubernetes workload identity projects it: a token file, rotated in place.
    let assertion = private_file("client-assertion", &format!("{CLIENT_ASSERTION}\n"));
    let secret = w.pg.sql("SHOW pgaadauth.client_secret_file");
    // The secret back, whatever happens here: the other tests use it.
    struct Restore<'a>(&'a Cluster, String);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.set(&[
                ("pgaadauth.client_secret_file", &self.1),
                ("pgaadauth.client_assertion_file", ""),
            ]);
        }
    }
    let _restore = Restore(&w.pg, secret.clone());
    w.pg.set(&[
        ("pgaadauth.client_secret_file", ""),
        (
            "pgaadauth.client_assertion_file",
            &assertion.display().to_string(),
        ),
    ]);
    w.idp
        .dir_add(FEDERATED, "user", "federated@contoso.example");
    let before = w.idp.requests().len();
    assert_eq!(
        w.try_sql("SELECT pgaadauth_create_principal('federated@contoso.example', false, false)"),
        Ok("Created role for federated@contoso.example".to_string())
    );
    let sent: Vec<String> = w.idp.requests()[before..].to_vec();
    assert!(
        sent.iter().any(|r| r.contains("/oauth2/v2.0/token")),
        "{sent:?}"
    );
    // A rotated file that the directory does not accept: the error says so, and names no
    // assertion.
    std::fs::write(&assertion, "eyJub3QiOiJ0aGlzIn0.e30.c2ln\n").unwrap();
    w.pg.sql("SELECT pg_reload_conf()");
    let e = Cluster::wait_for(Duration::from_secs(10), || {
        w.try_sql("SELECT pgaadauth_create_principal('nobody@contoso.example', false, false)")
            .is_err_and(|e| e.contains("HTTP status 401"))
    });
    assert!(
        e,
        "a refused assertion is an error naming the token endpoint's answer"
    );
    // Both files set: an error naming the two settings.
    w.pg.set(&[("pgaadauth.client_secret_file", &secret)]);
    let e = w
        .try_sql("SELECT pgaadauth_create_principal('nobody@contoso.example', false, false)")
        .unwrap_err();
    assert!(
        e.contains("pgaadauth.client_secret_file and pgaadauth.client_assertion_file are both set"),
        "{e}"
    );
    let log = w.pg.log();
    assert!(
        !log.contains(CLIENT_ASSERTION) && !log.contains("eyJub3Qi"),
        "no assertion in the log"
    );
}
