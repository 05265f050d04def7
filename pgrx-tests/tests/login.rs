//! Token and password logins against a real cluster (the major of PG_CONFIG) with pgaadauth
//! preloaded, keys served by the test identity provider (Entra-style: tenant + authority_host).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{self, claims, mint, mint_as, oid_for, Idp, EC1, RSA1, RSA2, TENANT};
use postgres::error::SqlState;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration;

struct World {
    idp: Idp,
    pg: Cluster,
    /// Every token sent to the server, to prove none reaches its log.
    sent: Mutex<Vec<String>>,
}

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1, &EC1]);
    let pg = Cluster::start(
        "login",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("log_connections", "on".into()),
        ],
    );
    let world = World {
        idp,
        pg,
        sent: Mutex::new(Vec::new()),
    };
    // Wait for the key worker's first fetch: a probe principal logs in.
    world.principal("probe", &oid_for("probe"), "");
    let token = mint(&RSA1, &claims(&world.idp.entra_issuer(), &oid_for("probe")));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || world
            .pg
            .connect("probe", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        world.pg.log()
    );
    world
});

impl World {
    fn principal(&self, role: &str, oid: &str, flags: &str) {
        let mfa = flags.contains("mfa");
        let kind = if flags.contains("group") {
            "group"
        } else {
            "user"
        };
        self.pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{oid}', '{kind}', false, {mfa})"
        ));
    }

    fn token_for(&self, role: &str) -> String {
        mint(&RSA1, &claims(&self.idp.entra_issuer(), &oid_for(role)))
    }

    fn connect(&self, role: &str, password: &str) -> Result<postgres::Client, postgres::Error> {
        self.sent.lock().unwrap().push(password.to_string());
        self.pg.connect(role, password)
    }

    /// Log in must fail with 28P01 and nothing but the standard message; returns the log DETAIL.
    fn refused(&self, role: &str, password: &str) -> String {
        let err = match self.connect(role, password) {
            Ok(_) => panic!("login as {role} succeeded but should not have"),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{role}: not a server error: {err}"));
        assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{role}: {db:?}");
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{role}\"")
        );
        assert!(
            db.detail().is_none() && db.hint().is_none(),
            "{role}: client saw {db:?}"
        );
        self.pg
            .failure_detail(role)
            .unwrap_or_else(|| panic!("no failure logged for {role}"))
    }
}

fn current_user(client: &mut postgres::Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0)
}

fn b64(v: &str) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

#[test]
fn valid_token_logs_in_with_psql_and_rust_client() {
    let w = &*WORLD;
    w.principal("alice@contoso.example", &oid_for("alice"), "");
    let token = mint(&RSA1, &claims(&w.idp.entra_issuer(), &oid_for("alice")));
    let mut client = w
        .connect("alice@contoso.example", &token)
        .expect("token login");
    assert_eq!(current_user(&mut client), "alice@contoso.example");
    let (ok, out) =
        w.pg.psql_login("alice@contoso.example", Some(&token), "SELECT current_user");
    assert!(ok, "{out}");
    assert_eq!(out, "alice@contoso.example");
}

#[test]
fn v1_issuer_and_upper_case_oid_are_accepted() {
    let w = &*WORLD;
    w.principal("v1user", &oid_for("v1user"), "");
    let mut c = claims(
        &format!("https://sts.windows.net/{TENANT}/"),
        &oid_for("v1user").to_uppercase(),
    );
    c["ver"] = json!("1.0");
    let mut client = w
        .connect("v1user", &mint(&RSA1, &c))
        .expect("v1 token login");
    assert_eq!(current_user(&mut client), "v1user");
}

#[test]
fn large_tokens_are_read_whole() {
    let w = &*WORLD;
    w.principal("bigtoken", &oid_for("bigtoken"), "");
    for size in [4 * 1024, 16 * 1024] {
        let mut c = claims(&w.idp.entra_issuer(), &oid_for("bigtoken"));
        c["groups_padding"] = json!("x".repeat(size));
        let token = mint(&RSA1, &c);
        assert!(token.len() > size);
        let mut client = w
            .connect("bigtoken", &token)
            .unwrap_or_else(|e| panic!("{} byte token: {e}", token.len()));
        assert_eq!(current_user(&mut client), "bigtoken");
    }
}

/// Every rejection reason of the validator, end to end: 28P01 to the client, the reason in the
/// server log's DETAIL.
#[test]
fn each_rejection_reason_gives_28p01_and_its_detail() {
    let w = &*WORLD;
    let iss = w.idp.entra_issuer();
    let now = idp::unix_now();
    let with = |role: &str, f: &dyn Fn(&mut Value)| {
        let mut c = claims(&iss, &oid_for(role));
        f(&mut c);
        mint(&RSA1, &c)
    };
    let none_token = |role: &str| {
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","kid":"rsa1"}"#),
            b64(&claims(&iss, &oid_for(role)).to_string())
        )
    };
    let hs256 = |role: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("rsa1".into());
        jsonwebtoken::encode(
            &h,
            &claims(&iss, &oid_for(role)),
            &jsonwebtoken::EncodingKey::from_secret(RSA1.jwk.as_bytes()),
        )
        .unwrap()
    };
    type Case<'a> = (&'a str, &'a str, Box<dyn Fn(&str) -> String + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "r_malformed",
            "",
            Box::new(|_| "not-a-token".into()),
            "not a compact JWS token",
        ),
        (
            "r_two_parts",
            "",
            Box::new(|r| w.token_for(r).rsplit_once('.').unwrap().0.into()),
            "not a compact JWS token",
        ),
        (
            "r_bad_json",
            "",
            Box::new(|_| {
                format!(
                    "{}.{}.c2ln",
                    b64(r#"{"alg":"RS256","kid":"rsa1"}"#),
                    b64("{oops")
                )
            }),
            "claims are not a JSON object",
        ),
        (
            "r_alg_none",
            "",
            Box::new(none_token),
            "algorithm \"none\" is never accepted",
        ),
        (
            "r_hs256",
            "",
            Box::new(hs256),
            "algorithm \"HS256\" is never accepted",
        ),
        (
            "r_es256_not_allowed",
            "",
            Box::new(|r| mint(&EC1, &claims(&iss, &oid_for(r)))),
            "\"ES256\" is not in pgaadauth.allowed_algorithms",
        ),
        (
            "r_no_kid",
            "",
            Box::new(|r| mint_as(&RSA1, None, &claims(&iss, &oid_for(r)))),
            "header has no \"kid\"",
        ),
        (
            "r_unknown_kid",
            "",
            Box::new(|r| mint(&RSA2, &claims(&iss, &oid_for(r)))),
            "No cached signing key has kid \"rsa2\"",
        ),
        (
            "r_bad_signature",
            "",
            Box::new(|r| mint_as(&RSA2, Some("rsa1"), &claims(&iss, &oid_for(r)))),
            "signature does not verify with key \"rsa1\"",
        ),
        (
            "r_issuer",
            "",
            Box::new(|r| with(r, &|c| c["iss"] = json!("https://evil.example/"))),
            "issuer \"https://evil.example/\" is not an accepted issuer",
        ),
        (
            "r_audience",
            "",
            Box::new(|r| with(r, &|c| c["aud"] = json!("api://other"))),
            "audience \"api://other\" is not an accepted audience",
        ),
        (
            "r_audience_array",
            "",
            Box::new(|r| with(r, &|c| c["aud"] = json!(["api://a", "api://b"]))),
            "audience \"api://a\", \"api://b\" is not",
        ),
        (
            "r_no_exp",
            "",
            Box::new(|r| {
                with(r, &|c| {
                    c.as_object_mut().unwrap().remove("exp");
                })
            }),
            "no numeric \"exp\" claim",
        ),
        (
            "r_expired",
            "",
            Box::new(move |r| with(r, &|c| c["exp"] = json!(now - 301))),
            "The token expired at",
        ),
        (
            "r_nbf",
            "",
            Box::new(move |r| with(r, &|c| c["nbf"] = json!(now + 600))),
            "is not valid before",
        ),
        (
            "r_iat",
            "",
            Box::new(move |r| with(r, &|c| c["iat"] = json!(now + 600))),
            "was issued at",
        ),
        (
            "r_tenant",
            "",
            Box::new(|r| {
                with(r, &|c| {
                    c["tid"] = json!("99999999-2222-3333-4444-555555555555")
                })
            }),
            "tenant \"99999999-2222-3333-4444-555555555555\" is not the required tenant",
        ),
        (
            "r_no_oid",
            "",
            Box::new(|r| {
                with(r, &|c| {
                    c.as_object_mut().unwrap().remove("oid");
                })
            }),
            "has no \"oid\" claim",
        ),
        (
            "r_other_oid",
            "",
            Box::new(|_| w.token_for("somebody-else")),
            "does not match the role's object id",
        ),
        (
            "r_mfa",
            "mfa",
            Box::new(|r| w.token_for(r)),
            "requires multi-factor authentication",
        ),
        (
            "r_group",
            "group",
            Box::new(|r| w.token_for(r)),
            "could not be learned from the directory: no directory is configured",
        ),
    ];
    for (role, flags, make, want) in &cases {
        w.principal(role, &oid_for(role), flags);
        let detail = w.refused(role, &make(role));
        assert!(
            detail.contains(want),
            "{role}: detail {detail:?} lacks {want:?}"
        );
        assert!(
            detail.contains(&format!("role \"{role}\"")),
            "{role}: {detail}"
        );
    }
    // The same MFA role logs in once the token carries mfa in amr.
    let mut c = claims(&iss, &oid_for("r_mfa"));
    c["amr"] = json!(["pwd", "mfa"]);
    assert!(w.connect("r_mfa", &mint(&RSA1, &c)).is_ok());
}

#[test]
fn labelled_role_refuses_its_password_and_unlabelled_role_refuses_a_token() {
    let w = &*WORLD;
    w.principal("carol", &oid_for("carol"), "");
    w.pg.sql("ALTER ROLE carol PASSWORD 'carol-secret'");
    let detail = w.refused("carol", "carol-secret");
    assert!(detail.contains("not a compact JWS token"), "{detail}");

    w.pg.sql("CREATE ROLE dave LOGIN PASSWORD 'dave-secret'");
    let detail = w.refused("dave", &w.token_for("dave"));
    assert!(
        detail.contains("Password does not match")
            || detail.contains("Password authentication of role"),
        "{detail}"
    );
}

#[test]
fn scram_and_md5_roles_log_in_with_password_auth_on() {
    let w = &*WORLD;
    w.pg.sql("CREATE ROLE erin LOGIN PASSWORD 'erin-secret'");
    let mut client = w.connect("erin", "erin-secret").expect("SCRAM login");
    assert_eq!(current_user(&mut client), "erin");
    let (ok, out) =
        w.pg.psql_login("erin", Some("erin-secret"), "SELECT current_user");
    assert!(ok && out == "erin", "{out}");
    w.refused("erin", "wrong");

    w.pg.sql("SET password_encryption = 'md5'; CREATE ROLE frank LOGIN PASSWORD 'frank-secret'");
    let mut client = w.connect("frank", "frank-secret").expect("MD5 login");
    assert_eq!(current_user(&mut client), "frank");
    w.refused("frank", "wrong");
}

#[test]
fn no_such_role_is_refused_like_a_wrong_password() {
    let w = &*WORLD;
    let detail = w.refused("nobody", "whatever");
    assert!(detail.contains("nobody"), "{detail}");
}

#[test]
fn hanging_up_at_the_password_request_logs_nothing() {
    let w = &*WORLD;
    w.principal("grace", &oid_for("grace"), "");
    w.pg.sql("CREATE ROLE heidi LOGIN PASSWORD 'heidi-secret'");
    for role in ["grace", "heidi"] {
        // psql -w without a password: libpq hangs up when asked for one.
        let (ok, out) = w.pg.psql_login(role, None, "SELECT 1");
        assert!(!ok && out.contains("no password supplied"), "{out}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = w.pg.log();
    for role in ["grace", "heidi"] {
        assert!(
            !log.contains(&format!("failed for user \"{role}\"")),
            "{log}"
        );
    }
    assert!(!log.contains("could not receive data"), "{log}");
    assert!(!log.contains("unexpected EOF"), "{log}");
}

#[test]
fn tokens_never_reach_the_log() {
    let w = &*WORLD;
    // Make sure some tokens have been sent: a failure and a success.
    w.principal("ivan", &oid_for("ivan"), "");
    let good = w.token_for("ivan");
    w.connect("ivan", &good).expect("token login");
    w.refused(
        "ivan",
        &mint_as(
            &RSA2,
            Some("rsa1"),
            &claims(&w.idp.entra_issuer(), &oid_for("ivan")),
        ),
    );
    let log = w.pg.log();
    for token in w
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.matches('.').count() == 2)
    {
        let mut parts = token.split('.');
        let (h, c, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        for part in [h, c, s] {
            if part.len() > 16 {
                assert!(!log.contains(part), "a token part reached the log");
            }
        }
    }
}
