//! PostgreSQL 18's `oauth` method with pgaadauth as the validator (`oauth_validator_libraries`),
//! beside `trust` lines on the same server: a libpq 18 client handing over its token through
//! PQAUTHDATA_OAUTH_BEARER_TOKEN (clients/oauth_client.c), labels and groups with
//! delegate_ident_mapping, pg_ident.conf maps without it, issuers of the line, one key table
//! and one set of counters, discovery, and malformed OAUTHBEARER messages from a raw client.
//!
//! On PostgreSQL 14–17 the library must not carry the validator entry point at all.

use once_cell::sync::Lazy;
use pgaadauth_e2e::clients;
use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, mint, mint_as, oid_for, tampered, Idp, RSA1, RSA2, TENANT};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const GROUP: &str = "0a7a0000-1111-4222-8333-000000000001";
const MEMBER: &str = "0a7a0000-1111-4222-8333-000000000002";

/// Tests here change the provider's key set and count its requests: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct World {
    idp: Idp,
    pg: Cluster,
}

/// A second issuer pgaadauth accepts, served by the same test provider and key set.
fn second_issuer(idp: &Idp) -> String {
    format!("{}/second-issuer", idp.base())
}

/// The oauth lines, by database: `oauthdb` delegates to labels, `mapdb` uses the map `entra`,
/// `v1db` names Entra's v1 issuer of the tenant, `otherdb` an issuer pgaadauth does not accept,
/// `seconddb` the second issuer.
fn hba(idp: &Idp) -> String {
    let v2 = idp.entra_issuer();
    let v1 = format!("https://sts.windows.net/{TENANT}/");
    let second = second_issuer(idp);
    format!(
        "host oauthdb all 127.0.0.1/32 oauth issuer=\"{v2}\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n\
         host mapdb all 127.0.0.1/32 oauth issuer=\"{v2}\" scope=\"{SCOPE}\" map=entra\n\
         host v1db all 127.0.0.1/32 oauth issuer=\"{v1}\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n\
         host otherdb all 127.0.0.1/32 oauth issuer=\"https://login.example/elsewhere/v2.0\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n\
         host seconddb all 127.0.0.1/32 oauth issuer=\"{second}\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n\
         host all all 127.0.0.1/32 trust\n"
    )
}

static WORLD: Lazy<Option<World>> = Lazy::new(|| {
    if cluster::major() < 18 {
        return None;
    }
    let idp = Idp::start(&[&RSA1]);
    idp.dir_add(GROUP, "group", "OAuth Readers");
    idp.dir_add(MEMBER, "user", "member@contoso.example");
    idp.dir_add_member(GROUP, MEMBER);
    let mut settings = idp.directory_settings("oauth");
    settings.extend([
        ("oauth_validator_libraries", "pgaadauth".into()),
        (
            "pgaadauth.issuers",
            format!(
                "{},https://sts.windows.net/{TENANT}/,{}",
                idp.entra_issuer(),
                second_issuer(&idp)
            ),
        ),
        (
            "pgaadauth.jwks_uri",
            format!("{}/{TENANT}/discovery/v2.0/keys", idp.base()),
        ),
        ("pgaadauth.min_refresh_interval", "1s".into()),
        ("log_connections", "on".into()),
    ]);
    let pg = Cluster::start_with_hba("oauth", &settings, &hba(&idp));
    for db in ["oauthdb", "mapdb", "v1db", "otherdb", "seconddb"] {
        pg.sql(&format!("CREATE DATABASE {db}"));
    }
    pg.write_ident(&format!(
        "entra {} mapped_role\nentra {} mapped_role\n",
        oid_for("mapped-user"),
        oid_for("oauth-user")
    ));
    pg.sql("CREATE ROLE mapped_role LOGIN; CREATE ROLE unlabelled LOGIN");
    pg.sql("SELECT pg_reload_conf()");
    let w = World { idp, pg };
    w.principal("oauth-user", &oid_for("oauth-user"), "user", false);
    w.principal("oauth-mfa", &oid_for("oauth-mfa"), "user", true);
    w.principal("oauth-group", GROUP, "group", false);
    let token = w.token(&oid_for("oauth-user"), json!({}));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || w
            .pg
            .connect("oauth-user", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        w.pg.log()
    );
    Some(w)
});

/// The world on PostgreSQL 18; `None` (the test has nothing to do) before.
fn world() -> Option<&'static World> {
    WORLD.as_ref()
}

impl World {
    fn principal(&self, role: &str, oid: &str, kind: &str, mfa: bool) {
        self.pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{oid}', '{kind}', false, {mfa})"
        ));
    }

    fn token(&self, oid: &str, extra: Value) -> String {
        let mut c = claims(&self.idp.entra_issuer(), oid);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&RSA1, &c)
    }

    /// libpq's `oauth_issuer` for a line whose issuer is `issuer`: the discovery document's
    /// URL, so that a client holding a token logs in with one connection.
    fn conninfo(&self, db: &str, user: &str, issuer: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={db} user={user} \
             oauth_issuer={issuer}/.well-known/openid-configuration oauth_client_id=pgaadauth-test \
             connect_timeout=20",
            self.pg.port
        )
    }

    /// Log in through the libpq 18 client with `token` on the line of `db`:
    /// Ok("current_user|system_user") or Err(what the client printed).
    fn oauth_login(&self, db: &str, user: &str, token: &str) -> Result<String, String> {
        let issuer = match db {
            "v1db" => format!("https://sts.windows.net/{TENANT}/"),
            "seconddb" => second_issuer(&self.idp),
            _ => self.idp.entra_issuer(),
        };
        run_client(&["login", &self.conninfo(db, user, &issuer)], token)
    }

    /// Log in as [`World::oauth_login`] does and run `sql`: its first row, fields joined by '|'.
    fn oauth_query(&self, db: &str, user: &str, token: &str, sql: &str) -> Result<String, String> {
        run_client(
            &[
                "query",
                &self.conninfo(db, user, &self.idp.entra_issuer()),
                sql,
            ],
            token,
        )
    }

    /// The log from `mark` on.
    fn log_since(&self, mark: usize) -> String {
        self.pg.log()[mark..].to_string()
    }

    /// Wait for `text` in the log after `mark`.
    fn logged(&self, mark: usize, text: &str) -> bool {
        Cluster::wait_for(Duration::from_secs(5), || {
            self.log_since(mark).contains(text)
        })
    }

    fn stat(&self, name: &str) -> i64 {
        self.pg
            .sql(&format!(
                "SELECT value FROM pgaadauth_stats() WHERE counter = '{name}'"
            ))
            .parse()
            .unwrap()
    }
}

fn run_client(args: &[&str], token: &str) -> Result<String, String> {
    clients::run_oauth_client(args, token)
}

#[test]
fn the_library_carries_the_validator_entry_point_on_18_only() {
    let lib = cluster::pg_config_dir(&cluster::pg_config(), "pkglibdir").join("pgaadauth.so");
    let symbols = Command::new("nm").arg("-D").arg(&lib).output().unwrap();
    assert!(symbols.status.success(), "nm -D {}", lib.display());
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let exported = symbols
        .lines()
        .any(|l| l.ends_with(" T _PG_oauth_validator_module_init"));
    assert_eq!(exported, cluster::major() >= 18, "{}", lib.display());
    // Before 18 nothing of the OAuth API is referenced (an undefined symbol would be).
    if cluster::major() < 18 {
        assert!(
            !symbols.to_lowercase().contains("oauth"),
            "{}",
            symbols
                .lines()
                .filter(|l| l.to_lowercase().contains("oauth"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_labelled_role_logs_in_on_an_oauth_line_as_on_a_trust_line() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let oid = oid_for("oauth-user");
    let token = w.token(&oid, json!({}));
    let mark = w.pg.log().len();
    let accepted_before = w.stat("oauth_logins_accepted");
    assert_eq!(
        w.oauth_login("oauthdb", "oauth-user", &token),
        Ok(format!("oauth-user|oauth:{oid}"))
    );
    assert!(w.logged(
        mark,
        &format!("connection authenticated: identity=\"{oid}\" method=oauth")
    ));
    assert!(
        w.logged(mark, &format!("pgaadauth: login outcome=accepted role=oauth-user type=user oid={oid} tid={TENANT}")),
        "{}",
        w.log_since(mark)
    );
    assert!(w.log_since(mark).contains("reason=- method=oauth"));
    assert_eq!(w.stat("oauth_logins_accepted"), accepted_before + 1);
    // pgaadauth_session() says how the session logged in.
    w.pg.try_sql("oauthdb", "CREATE EXTENSION IF NOT EXISTS pgaadauth")
        .unwrap();
    assert_eq!(
        w.oauth_query(
            "oauthdb",
            "oauth-user",
            &token,
            "SELECT method, object_id, coalesce(via_group, '-') FROM pgaadauth_session()"
        ),
        Ok(format!("oauth|{oid}|-"))
    );
    assert_eq!(w.stat("oauth_logins_accepted"), accepted_before + 2);
    let accepted_before = accepted_before + 1;
    // The same token, as the password on the trust line of the same server: counted apart.
    let token_logins = w.stat("logins_accepted");
    let mut c = w.pg.connect("oauth-user", &token).unwrap();
    assert_eq!(w.stat("logins_accepted"), token_logins + 1);
    assert_eq!(w.stat("oauth_logins_accepted"), accepted_before + 1);
    let who: String = c.query_one("SELECT current_user", &[]).unwrap().get(0);
    assert_eq!(who, "oauth-user");
    assert!(w.logged(mark, "outcome=accepted role=oauth-user type=user"));
    assert!(w.log_since(mark).contains("reason=- method=token"));
    // Entra's v1 issuer on the line admits the tenant's v2 tokens too.
    assert_eq!(
        w.oauth_login("v1db", "oauth-user", &token),
        Ok(format!("oauth-user|oauth:{oid}"))
    );
    assert!(!w.log_since(mark).contains(&token[token.len() - 20..]));
}

#[test]
fn every_rule_of_the_label_holds_and_refusals_are_told_to_the_log_only() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let oid = oid_for("oauth-user");
    let now = pgaadauth_e2e::idp::unix_now();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "oauth-user",
            w.token(
                &oid,
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            ),
            "The token expired at",
        ),
        (
            "oauth-user",
            w.token(&oid_for("someone-else"), json!({})),
            "does not match the role's object id",
        ),
        (
            "oauth-user",
            w.token(&oid, json!({"tid": "99999999-2222-3333-4444-555555555555"})),
            "is not the required tenant",
        ),
        (
            "oauth-user",
            mint_as(
                &RSA2,
                Some("never-published"),
                &claims(&w.idp.entra_issuer(), &oid),
            ),
            "No cached signing key has kid \"never-published\"",
        ),
        (
            "oauth-user",
            w.token(&oid, json!({"aud": "https://elsewhere.example"})),
            "is not an accepted audience",
        ),
        (
            "oauth-mfa",
            w.token(&oid_for("oauth-mfa"), json!({})),
            "requires multi-factor authentication",
        ),
        (
            "unlabelled",
            w.token(&oid, json!({})),
            "Role \"unlabelled\" has no pgaadauth label",
        ),
    ];
    for (role, token, reason) in cases {
        let mark = w.pg.log().len();
        let refused = w.oauth_login("oauthdb", role, &token).unwrap_err();
        assert!(
            refused.contains(&format!(
                "OAuth bearer authentication failed for user \"{role}\""
            )),
            "{role}: {refused}"
        );
        assert!(
            !refused.contains(reason),
            "the client learns nothing: {refused}"
        );
        assert!(
            w.logged(
                mark,
                &format!("pgaadauth: OAuth token for role \"{role}\" refused: ")
            ),
            "{role}: {}",
            w.log_since(mark)
        );
        let log = w.log_since(mark);
        assert!(log.contains(reason), "{reason}: {log}");
        assert!(log.contains("outcome=rejected"), "{log}");
        assert!(!log.contains(&token[token.len() - 20..]), "token in log");
    }
    // A revoked principal's token is refused on the oauth line too, until the lift.
    let token = w.token(&oid, json!({}));
    w.pg.sql(&format!("SELECT pgaadauth_revoke_tokens('{oid}')"));
    let mark = w.pg.log().len();
    assert!(w.oauth_login("oauthdb", "oauth-user", &token).is_err());
    assert!(
        w.logged(mark, "pgaadauth: OAuth token for role \"oauth-user\" refused: The principal's tokens issued at or before"),
        "{}",
        w.log_since(mark)
    );
    assert!(w.log_since(mark).contains("reason=revoked method=oauth"));
    w.pg.sql(&format!("SELECT pgaadauth_lift_revocation('{oid}')"));
    assert!(w.oauth_login("oauthdb", "oauth-user", &token).is_ok());
    // With MFA the MFA role logs in.
    let mfa = w.token(&oid_for("oauth-mfa"), json!({"amr": ["pwd", "mfa"]}));
    assert!(w.oauth_login("oauthdb", "oauth-mfa", &mfa).is_ok());
}

#[test]
fn a_group_logs_in_with_its_members_token_by_claim_and_through_the_directory() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let by_claim = w.token(MEMBER, json!({"groups": [GROUP]}));
    assert_eq!(
        w.oauth_login("oauthdb", "oauth-group", &by_claim),
        Ok(format!("oauth-group|oauth:{MEMBER}"))
    );
    let mut c = claims(&w.idp.entra_issuer(), MEMBER);
    c["_claim_names"] = json!({"groups": "src1"});
    let overage = mint(&RSA1, &c);
    let mark = w.pg.log().len();
    assert_eq!(
        w.oauth_login("oauthdb", "oauth-group", &overage),
        Ok(format!("oauth-group|oauth:{MEMBER}"))
    );
    assert!(w.logged(mark, &format!("via_group={GROUP}")));
    // Not a member: refused, and the identity is still the principal.
    let outsider = oid_for("outsider");
    let mark = w.pg.log().len();
    let token = w.token(&outsider, json!({"groups": []}));
    assert!(w.oauth_login("oauthdb", "oauth-group", &token).is_err());
    assert!(w.logged(mark, "is not a member of group"));
    assert!(w.logged(
        mark,
        &format!("connection authenticated: identity=\"{outsider}\" method=oauth")
    ));
}

#[test]
fn without_delegation_the_token_must_verify_and_the_user_map_decides() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let oid = oid_for("mapped-user");
    let token = w.token(&oid, json!({}));
    let mark = w.pg.log().len();
    assert_eq!(
        w.oauth_login("mapdb", "mapped_role", &token),
        Ok(format!("mapped_role|oauth:{oid}"))
    );
    // No label was consulted: the audit line has no type.
    assert!(w.logged(
        mark,
        &format!("login outcome=accepted role=mapped_role type=- oid={oid}")
    ));
    // A labelled principal may use the map's role too: the map decides, not the label.
    let labelled = w.token(&oid_for("oauth-user"), json!({}));
    assert!(w.oauth_login("mapdb", "mapped_role", &labelled).is_ok());
    // The map does not name this role for that principal.
    let mark = w.pg.log().len();
    assert!(w.oauth_login("mapdb", "unlabelled", &token).is_err());
    assert!(
        w.logged(mark, "no match in usermap \"entra\""),
        "{}",
        w.log_since(mark)
    );
    // Every rule on the token itself still holds.
    let now = pgaadauth_e2e::idp::unix_now();
    for (token, reason) in [
        (
            w.token(
                &oid,
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            ),
            "The token expired at",
        ),
        (
            w.token(&oid, json!({"tid": "99999999-2222-3333-4444-555555555555"})),
            "is not the required tenant",
        ),
        (
            w.token(&oid, json!({"iss": "https://login.example/elsewhere/v2.0"})),
            "is not an accepted issuer",
        ),
        (tampered(&token), "signature does not verify"),
    ] {
        let mark = w.pg.log().len();
        assert!(w.oauth_login("mapdb", "mapped_role", &token).is_err());
        assert!(w.logged(mark, reason), "{reason}: {}", w.log_since(mark));
    }
}

#[test]
fn a_line_admits_only_its_own_issuer_of_those_pgaadauth_accepts() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let oid = oid_for("oauth-user");
    let second = mint(&RSA1, &claims(&second_issuer(&w.idp), &oid));
    let entra = w.token(&oid, json!({}));
    assert_eq!(
        w.oauth_login("seconddb", "oauth-user", &second),
        Ok(format!("oauth-user|oauth:{oid}"))
    );
    let mark = w.pg.log().len();
    assert!(w.oauth_login("oauthdb", "oauth-user", &second).is_err());
    assert!(
        w.logged(
            mark,
            "is not an accepted issuer (pgaadauth.issuers). pgaadauth accepts it, but this oauth line names the issuer"
        ),
        "{}",
        w.log_since(mark)
    );
    assert!(w.oauth_login("seconddb", "oauth-user", &entra).is_err());
    // Both are fine as passwords on the trust line, which takes every accepted issuer.
    assert!(w.pg.connect("oauth-user", &second).is_ok());
    assert!(w.pg.connect("oauth-user", &entra).is_ok());
}

#[test]
fn an_issuer_pgaadauth_does_not_accept_is_reported_plainly() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let token = w.token(&oid_for("oauth-user"), json!({}));
    let mark = w.pg.log().len();
    let conninfo = w.conninfo(
        "otherdb",
        "oauth-user",
        "https://login.example/elsewhere/v2.0",
    );
    let refused = run_client(&["login", &conninfo], &token).unwrap_err();
    assert!(!refused.contains("pgaadauth"), "told the client: {refused}");
    assert!(
        w.logged(
            mark,
            "WARNING:  pgaadauth does not accept the issuer \"https://login.example/elsewhere/v2.0\" of the oauth line 6 of pg_hba.conf"
        ),
        "{}",
        w.log_since(mark)
    );
    let log = w.log_since(mark);
    assert!(
        log.contains("HINT:  Name one of them in the line's issuer option"),
        "{log}"
    );
    assert!(log.contains("reason=line_issuer method=oauth"), "{log}");
}

#[test]
fn one_key_table_an_unknown_kid_is_fetched_once_and_the_provider_is_never_asked_per_login() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let oid = oid_for("oauth-user");
    // Logins with cached keys never reach the provider.
    let requests = w.idp.requests().len();
    for _ in 0..3 {
        assert!(w
            .oauth_login("oauthdb", "oauth-user", &w.token(&oid, json!({})))
            .is_ok());
    }
    assert_eq!(w.idp.requests().len(), requests);
    // A rotation: the new key's first OAuth login refreshes the shared table, and token logins
    // then find the key without a refresh of their own.
    let misses = w.stat("kid_misses");
    w.idp.publish(&[&RSA1, &RSA2]);
    // Whatever happens below, the provider publishes RSA1 alone again.
    struct Restore<'a>(&'a Idp);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.publish(&[&RSA1]);
        }
    }
    let _restore = Restore(&w.idp);
    let rotated = mint(&RSA2, &claims(&w.idp.entra_issuer(), &oid));
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || w
            .oauth_login("oauthdb", "oauth-user", &rotated)
            .is_ok()),
        "{}",
        w.pg.log()
    );
    assert!(w.stat("kid_misses") > misses);
    let misses = w.stat("kid_misses");
    assert!(w.pg.connect("oauth-user", &rotated).is_ok());
    assert_eq!(w.stat("kid_misses"), misses);
}

#[test]
fn a_client_without_a_token_is_told_where_to_get_one() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let issuer = w.idp.entra_issuer();
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=oauthdb user=oauth-user oauth_issuer={issuer} \
         oauth_client_id=pgaadauth-test connect_timeout=20",
        w.pg.port
    );
    let mark = w.pg.log().len();
    let out = run_client(&["discover", &conninfo], "").unwrap_err();
    assert!(
        out.contains(&format!(
            "openid-configuration={issuer}/.well-known/openid-configuration scope={SCOPE}"
        )),
        "{out}"
    );
    // psql has no flow of its own without the libpq-oauth module: it fails on the client.
    let psql = Command::new(w.pg.bindir().join("psql"))
        .arg(&conninfo)
        .args(["-XAtc", "SELECT 1"])
        .env("PGOAUTHDEBUG", "UNSAFE")
        .output()
        .unwrap();
    assert!(!psql.status.success());
    // A discovery request is not a refused token: nothing of pgaadauth's in the log.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !w.log_since(mark).contains("pgaadauth: OAuth token"),
        "{}",
        w.log_since(mark)
    );
}

/// One SASL OAUTHBEARER attempt by a raw protocol client: the initial response `initial`
/// (with mechanism `mech`); a server challenge is answered with the kvsep that ends a failed
/// exchange. Whether the server ever said AuthenticationOk, and everything it sent.
fn raw_oauthbearer(port: u16, mech: &str, initial: &[u8]) -> (bool, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let startup =
        pgaadauth_e2e::cluster::startup_packet(&[("user", "oauth-user"), ("database", "oauthdb")]);
    s.write_all(&startup).unwrap();
    let mut received = Vec::new();
    let mut first = true;
    let authenticated = loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).is_err() {
            break false; // the server hung up
        }
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len.saturating_sub(4)];
        if s.read_exact(&mut payload).is_err() {
            break false;
        }
        received.extend_from_slice(&payload);
        if head[0] != b'R' {
            if head[0] == b'E' {
                break false;
            }
            continue; // nothing else is expected before authentication ends
        }
        let code = i32::from_be_bytes(payload[..4].try_into().unwrap());
        let reply: Vec<u8> = match code {
            0 => break true,
            10 if first => {
                first = false;
                let mut m = mech.as_bytes().to_vec();
                m.push(0);
                m.extend_from_slice(&(initial.len() as i32).to_be_bytes());
                m.extend_from_slice(initial);
                m
            }
            11 => vec![0x01],
            _ => break false,
        };
        let mut msg = vec![b'p'];
        msg.extend_from_slice(&((reply.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(&reply);
        if s.write_all(&msg).is_err() {
            break false;
        }
    };
    (
        authenticated,
        String::from_utf8_lossy(&received).into_owned(),
    )
}

#[test]
fn malformed_oauthbearer_messages_are_refused_cleanly_and_never_logged() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let token = w.token(&oid_for("oauth-user"), json!({}));
    let secret = &token[token.len() - 24..];
    let with = |auth: &str| format!("n,,\x01auth={auth}\x01\x01").into_bytes();
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "missing auth",
            "OAUTHBEARER",
            b"n,,\x01host=x\x01\x01".to_vec(),
        ),
        (
            "Bearer misspelt",
            "OAUTHBEARER",
            with(&format!("Bearr {token}")),
        ),
        (
            "scheme without space",
            "OAUTHBEARER",
            with(&format!("Bearer{token}")),
        ),
        ("empty token", "OAUTHBEARER", with("Bearer ")),
        ("64 KiB token", "OAUTHBEARER", with(&huge)),
        (
            "no kvsep after the gs2 header",
            "OAUTHBEARER",
            format!("n,,auth=Bearer {token}\x01\x01").into_bytes(),
        ),
        (
            "no final kvsep",
            "OAUTHBEARER",
            format!("n,,\x01auth=Bearer {token}").into_bytes(),
        ),
        (
            "bad gs2 header",
            "OAUTHBEARER",
            format!("x,,\x01auth=Bearer {token}\x01\x01").into_bytes(),
        ),
        (
            "NUL inside",
            "OAUTHBEARER",
            format!("n,,\x01auth=Bearer {token}\0\x01\x01").into_bytes(),
        ),
        (
            "characters outside b64token",
            "OAUTHBEARER",
            with(&format!("Bearer {token}\"'")),
        ),
        (
            "unknown mechanism",
            "SCRAM-SHA-256",
            with(&format!("Bearer {token}")),
        ),
    ];
    let mark = w.pg.log().len();
    for (what, mech, initial) in &cases {
        let (authenticated, received) = raw_oauthbearer(w.pg.port, mech, initial);
        assert!(!authenticated, "{what}: authenticated");
        assert!(!received.contains("pgaadauth"), "{what}: {received}");
        assert!(!received.contains(secret), "{what}: the token came back");
    }
    // The server stays up and accepts a proper OAuth login.
    let (ok, _) = raw_oauthbearer(w.pg.port, "OAUTHBEARER", &with(&format!("Bearer {token}")));
    assert!(ok, "{}", w.log_since(mark));
    let log = w.log_since(mark);
    assert!(!log.contains(secret), "a token reached the log");
    assert!(
        !log.contains("server process") || !log.contains("terminated by signal"),
        "{log}"
    );
    assert!(!log.contains("PANIC"), "{log}");
}

#[test]
fn a_refused_oauth_token_waits_as_auth_delay_says_whichever_library_loads_first() {
    if cluster::major() < 18 {
        return;
    }
    const DELAY: Duration = Duration::from_millis(2000);
    for (name, order) in [
        ("oauth-delay-after", "pgaadauth,auth_delay"),
        ("oauth-delay-before", "auth_delay,pgaadauth"),
    ] {
        let idp = Idp::start(&[&RSA1]);
        let mut settings = idp.directory_settings(name);
        settings.extend([
            ("shared_preload_libraries", order.into()),
            ("auth_delay.milliseconds", DELAY.as_millis().to_string()),
            ("oauth_validator_libraries", "pgaadauth".into()),
            (
                "pgaadauth.jwks_uri",
                format!("{}/{TENANT}/discovery/v2.0/keys", idp.base()),
            ),
        ]);
        let pg = Cluster::start_with_hba(name, &settings, &hba(&idp));
        pg.sql("CREATE DATABASE oauthdb");
        let w = World { idp, pg };
        w.principal("oauth-user", &oid_for("oauth-user"), "user", false);
        let good = w.token(&oid_for("oauth-user"), json!({}));
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || w
                .pg
                .connect("oauth-user", &good)
                .is_ok()),
            "{}",
            w.pg.log()
        );
        let timed = |token: &str| {
            let start = std::time::Instant::now();
            let outcome = w.oauth_login("oauthdb", "oauth-user", token);
            (outcome, start.elapsed())
        };
        let (outcome, took) = timed(&w.token(&oid_for("someone-else"), json!({})));
        assert!(outcome.is_err(), "{order}: {outcome:?}");
        assert!(took >= DELAY, "{order}: refused after {took:?}");
        // Not delayed: the quickest of three accepted logins is well under the pause.
        let quickest = (0..3)
            .map(|_| {
                let (outcome, took) = timed(&good);
                assert!(outcome.is_ok(), "{order}: {outcome:?}");
                took
            })
            .min()
            .unwrap();
        assert!(quickest < DELAY, "{order}: accepted after {quickest:?}");
        w.pg.stop();
    }
}
