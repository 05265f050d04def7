//! Findings of an adversarial read, each tried for real: issuers sharing a kid, a stalled
//! directory beside a key rotation (and a stalled key fetch beside a directory question),
//! waits that end at authentication_timeout and statement_timeout, a CREATEROLE role that
//! tries to become an Entra administrator, the request every role gets with
//! password_auth off, and the group cache with long non-GUID principals.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, renamed, Idp, Mode, RSA1, RSA2, TENANT};
use postgres::error::SqlState;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const USER: &str = "5a5a5a5a-1111-4222-8333-000000000001";
const GROUP: &str = "6b6b6b6b-1111-4222-8333-000000000002";
const MEMBER: &str = "7c7c7c7c-1111-4222-8333-000000000003";

/// A provider with a directory (client credentials), and a cluster using both.
fn with_directory(name: &str, extra: &[(&str, &str)]) -> (Idp, Cluster) {
    let idp = Idp::start(&[&RSA1]);
    idp.dir_add(USER, "user", "user@contoso.example");
    idp.dir_add(MEMBER, "user", "member@contoso.example");
    idp.dir_add(GROUP, "group", "Stalled Group");
    idp.dir_add_member(GROUP, MEMBER);
    let mut settings = idp.directory_settings(name);
    settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let pg = Cluster::start(name, &settings);
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('user1', '{USER}', 'user', false, false)"
    ));
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('grp', '{GROUP}', 'group', false, false)"
    ));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .sql("SELECT count(*) FROM pgaadauth_jwks_status() WHERE kid IS NOT NULL")
            != "0"),
        "{}",
        pg.log()
    );
    (idp, pg)
}

/// A member's token whose groups did not fit (overage): the directory decides.
fn overage_token(idp: &Idp, oid: &str) -> String {
    let mut c = claims(&idp.entra_issuer(), oid);
    c["_claim_names"] = json!({"groups": "src1"});
    mint(&RSA1, &c)
}

/// Whether the directory worker has sent a request (its token, or a question).
fn directory_asked(idp: &Idp) -> bool {
    idp.count("/oauth2/v2.0/token") + idp.count("checkMemberGroups") > 0
}

/// Run `sql` with a 1 s statement_timeout: it must end by that timeout, within 5 s. The error.
fn ends_at_statement_timeout(pg: &Cluster, sql: &str) -> String {
    let start = Instant::now();
    let err = pg
        .try_sql("postgres", &format!("SET statement_timeout = '1s'; {sql}"))
        .expect_err("statement timeout");
    assert!(err.contains("statement timeout"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{sql:.60}: {:?}",
        start.elapsed()
    );
    err
}

fn slots_in_use(pg: &Cluster) -> String {
    pg.sql("SELECT value FROM pgaadauth_stats() WHERE counter = 'mailbox_slots_in_use'")
}

#[test]
fn issuers_publishing_the_same_kid_both_log_in() {
    // Two providers (two tenants, or one provider behind two names), each signing with its
    // own key, both calling it "shared".
    let a_key = renamed(&RSA1, "shared");
    let b_key = renamed(&RSA2, "shared");
    let a = Idp::start(&[&a_key]);
    let b = Idp::start(&[&b_key]);
    let (a_iss, b_iss) = (format!("{}/a", a.base()), format!("{}/b", b.base()));
    let pg = Cluster::start(
        "sharedkid",
        &[
            ("pgaadauth.issuers", format!("{a_iss}, {b_iss}")),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('user1', '{USER}', 'user', false, false)"
    ));
    let a_token = mint(&a_key, &claims(&a_iss, USER));
    let b_token = mint(&b_key, &claims(&b_iss, USER));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("user1", &a_token)
            .is_ok()),
        "{}",
        pg.log()
    );
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("user1", &b_token)
            .is_ok()),
        "{}",
        pg.log()
    );
    // Each issuer's key verifies only its own tokens: b's claims signed with a's key fail.
    let crossed = mint(&a_key, &claims(&b_iss, USER));
    let err = pg.connect("user1", &crossed).err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    let detail = pg.failure_detail("user1").unwrap();
    assert!(detail.contains("does not verify"), "{detail}");
}

#[test]
fn a_stalled_directory_never_delays_a_key_rotation() {
    let (idp, pg) = with_directory(
        "stalls",
        &[
            ("pgaadauth.http_timeout", "30s"),
            ("pgaadauth.kid_miss_wait", "3s"),
            ("pgaadauth.min_refresh_interval", "1s"),
        ],
    );
    // A group login waits for the stalled directory (30 s) in the background.
    idp.dir_set_stall(Some(Duration::from_secs(30)));
    let overage = overage_token(&idp, MEMBER);
    let port = pg.port;
    let waiting = std::thread::spawn(move || {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("grp")
            .password(overage)
            .dbname("postgres")
            .connect(postgres::NoTls)
            .is_ok()
    });
    assert!(Cluster::wait_for(Duration::from_secs(10), || {
        directory_asked(&idp)
    }));
    // Meanwhile the provider rotates to a new key: a token signed with it logs in within
    // kid_miss_wait.
    idp.publish(&[&RSA1, &RSA2]);
    let rotated = mint(&RSA2, &claims(&idp.entra_issuer(), USER));
    let start = Instant::now();
    pg.connect("user1", &rotated)
        .unwrap_or_else(|e| panic!("rotated key during a directory stall: {e}\n{}", pg.log()));
    let took = start.elapsed();
    println!("login with a just-rotated key while the directory stalls: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // The group login still waits for the directory; the cluster's shutdown ends it.
    drop(waiting);
}

#[test]
fn a_stalled_key_fetch_never_delays_a_directory_answer() {
    let (idp, pg) = with_directory("keystall", &[("pgaadauth.http_timeout", "30s")]);
    let before = idp.key_set_requests();
    idp.set_mode(Mode::Stall);
    // An explicit refresh starts a fetch round (in the background: the call waits for it).
    let refresh = std::thread::spawn({
        let (dir, port, psql) = (pg.dir.clone(), pg.port, pg.bindir().join("psql"));
        move || {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(psql)
                .arg("-h")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-d", "postgres", "-Xqc"])
                .arg("SET statement_timeout = '10s'; SELECT pgaadauth_refresh_jwks()")
                .output();
        }
    });
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || idp.key_set_requests() > before),
        "no key fetch started"
    );
    // The key worker now waits 30 s for the key set; the directory worker answers at once.
    let start = Instant::now();
    pg.sql("SELECT pgaadauth_create_principal('member@contoso.example', false, false)");
    let took = start.elapsed();
    println!("directory answer while a key fetch stalls: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    idp.set_mode(Mode::Normal);
    refresh.join().unwrap();
}

#[test]
fn waits_end_at_authentication_timeout_and_statement_timeout() {
    let (idp, pg) = with_directory(
        "timeouts",
        &[
            ("pgaadauth.http_timeout", "20s"),
            ("pgaadauth.kid_miss_wait", "30s"),
            ("pgaadauth.min_refresh_interval", "1s"),
            ("authentication_timeout", "2s"),
        ],
    );
    // A login waiting for the directory ends at authentication_timeout, not after 3 x 20 s.
    idp.dir_set_stall(Some(Duration::from_secs(25)));
    let start = Instant::now();
    let login = pg.connect("grp", &overage_token(&idp, MEMBER));
    let took = start.elapsed();
    assert!(login.is_err());
    println!("login waiting for a stalled directory ended after {took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(
        Cluster::wait_for(Duration::from_secs(5), || pg
            .log()
            .contains("canceling authentication due to timeout")),
        "{}",
        pg.log()
    );

    // create_principal ends at statement_timeout and on cancel.
    ends_at_statement_timeout(
        &pg,
        "SELECT pgaadauth_create_principal('user@contoso.example', false, false)",
    );

    // refresh_jwks ends at statement_timeout while the key set stalls.
    idp.set_mode(Mode::Stall);
    ends_at_statement_timeout(&pg, "SELECT pgaadauth_refresh_jwks()");
    // validate_token with an unknown kid waits for a refresh (kid_miss_wait 30 s): it too ends
    // at statement_timeout.
    std::thread::sleep(Duration::from_millis(1100)); // past min_refresh_interval
    let unknown =
        pgaadauth_e2e::idp::mint_as(&RSA1, Some("new"), &claims(&idp.entra_issuer(), USER));
    let err = ends_at_statement_timeout(
        &pg,
        &format!("SELECT pgaadauth_validate_token('{unknown}', 'user1')"),
    );
    assert!(!err.contains(&unknown), "the token in an error: {err}");
    assert!(
        !pg.log().contains(&unknown[unknown.len() - 40..]),
        "the token reached the server log"
    );
    idp.set_mode(Mode::Normal);

    // Every question given up is freed once the worker is done with it.
    idp.dir_set_stall(None);
    assert!(
        Cluster::wait_for(Duration::from_secs(60), || slots_in_use(&pg) == "0"),
        "slots in use: {}",
        slots_in_use(&pg)
    );
    // And the directory answers again.
    pg.connect("grp", &overage_token(&idp, MEMBER))
        .expect("a member logs in once the directory answers");
}

#[test]
fn a_login_waiting_for_the_directory_ends_at_fast_shutdown() {
    let (idp, pg) = with_directory("shutdown", &[("pgaadauth.http_timeout", "20s")]);
    idp.dir_set_stall(Some(Duration::from_secs(25)));
    let port = pg.port;
    let token = overage_token(&idp, MEMBER);
    let waiting = std::thread::spawn(move || {
        let login = postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("grp")
            .password(token)
            .dbname("postgres")
            .connect(postgres::NoTls);
        (login.is_ok(), Instant::now())
    });
    assert!(Cluster::wait_for(Duration::from_secs(10), || {
        directory_asked(&idp)
    }));
    std::thread::sleep(Duration::from_millis(500));
    // Fast shutdown, without waiting for it (the directory worker finishes its request first).
    let stop = Instant::now();
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg.bindir().join("pg_ctl"))
        .args(["stop", "-m", "fast", "-W", "-D"])
        .arg(pg.dir.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (accepted, ended) = waiting.join().unwrap();
    let took = ended.duration_since(stop);
    println!("login waiting for the directory ended {took:?} after fast shutdown began");
    assert!(!accepted);
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn createrole_cannot_make_itself_an_entra_administrator() {
    let pg = Cluster::start(
        "createrole",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.jwks_uri", "http://127.0.0.1:1/keys".into()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('entra-admin', '{USER}', 'user', true, false)"
    ));
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('entra-user', '{MEMBER}', 'user', false, false)"
    ));
    pg.sql("CREATE ROLE mallory LOGIN CREATEROLE PASSWORD 'mallory-secret'");
    let mut mallory = pg
        .connect("mallory", "mallory-secret")
        .expect("password login");
    // PostgreSQL 15 and older let CREATEROLE grant itself any non-superuser role; 16 does not.
    let granted = mallory
        .batch_execute("GRANT \"entra-admin\" TO mallory")
        .is_ok();
    if granted {
        mallory
            .batch_execute("SET ROLE \"entra-admin\"")
            .expect("SET ROLE to a granted role");
    }
    println!("GRANT of the administrator's role to itself: {granted}");
    for attempt in [
        format!(
            "SELECT pgaadauth_create_principal_with_oid('evil', '{GROUP}', 'user', true, false)"
        ),
        "DROP ROLE \"entra-user\"".to_string(),
        "SECURITY LABEL FOR pgaadauth ON ROLE \"entra-user\" IS NULL".to_string(),
        format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE mallory IS 'aadauth,oid={GROUP},type=user,admin'"
        ),
        "SELECT pgaadauth_refresh_jwks()".to_string(),
    ] {
        let err = mallory.batch_execute(&attempt).expect_err(&attempt);
        assert_eq!(
            err.as_db_error().map(|d| d.code()),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{attempt}: {err}"
        );
    }
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_roles WHERE rolname IN ('evil', 'entra-user')"),
        "1"
    );
    // The administrator itself, in its own session (here: a superuser acting as it, which
    // both judge), still may.
    pg.sql(&format!(
        "SET SESSION AUTHORIZATION \"entra-admin\"; SELECT pgaadauth_create_principal_with_oid('by-admin', '{GROUP}', 'group', false, false)"
    ));
}

/// The first authentication request the server sends for `user`: 3 = cleartext password,
/// 10 = SASL (SCRAM), 5 = MD5.
fn first_auth_request(port: u16, user: &str) -> i32 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let msg = pgaadauth_e2e::cluster::startup_packet(&[("user", user), ("database", "postgres")]);
    s.write_all(&msg).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'R', "not an authentication request");
    i32::from_be_bytes(head[5..9].try_into().unwrap())
}

#[test]
fn password_auth_off_asks_every_role_the_same_and_keeps_no_password() {
    let pg = Cluster::start(
        "noclear",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.jwks_uri", "http://127.0.0.1:1/keys".into()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.password_auth", "off".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('entra-user', '{USER}', 'user', false, false)"
    ));
    pg.sql("CREATE ROLE judy LOGIN PASSWORD 'judy-secret'");
    pg.sql("CREATE ROLE mabel LOGIN");
    // A labelled role, a password role, a role without a secret and no role at all: the same
    // request (a cleartext password, i.e. a token), so none is told apart before logging in.
    for user in ["entra-user", "judy", "mabel", "nobody"] {
        assert_eq!(first_auth_request(pg.port, user), 3, "{user}");
    }
    let err = pg.connect("judy", "judy-secret").err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    let detail = pg.failure_detail("judy").unwrap();
    assert!(
        detail.contains("pgaadauth.password_auth is off")
            && detail.contains("The connection does not use SSL"),
        "{detail}"
    );
    // psql (libpq) too: refused, and the password it sent is nowhere in the log.
    let (ok, out) = pg.psql_login("judy", Some("judy-secret"), "SELECT 1");
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    assert!(!pg.log().contains("judy-secret"));
}

#[test]
fn the_group_cache_never_matches_a_prefix_of_a_long_principal() {
    // Principals named by upn: a long one is a member; one whose upn is its first 64 bytes
    // is not (and is unknown to the directory).
    let long = format!("{}@contoso.example", "l".repeat(70));
    let prefix = long[..64].to_string();
    let (idp, pg) = with_directory(
        "prefix",
        &[
            ("pgaadauth.principal_claim", "upn"),
            ("pgaadauth.group_cache_ttl", "300s"),
        ],
    );
    idp.dir_add(&long, "user", &long);
    idp.dir_add_member(GROUP, &long);
    let token = |upn: &str| {
        let mut c = claims(&idp.entra_issuer(), USER);
        c["upn"] = json!(upn);
        c["_claim_names"] = json!({"groups": "src1"});
        mint(&RSA1, &c)
    };
    pg.connect("grp", &token(&long))
        .expect("the long member logs in (and is cached)");
    let err = pg.connect("grp", &token(&prefix)).err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    let detail = pg.failure_detail("grp").unwrap();
    assert!(
        detail.contains("could not be learned from the directory")
            || detail.contains("is not a member"),
        "{detail}"
    );
    // A value longer than a directory question holds is refused, never cut.
    let huge = format!("{}@contoso.example", "h".repeat(300));
    let err = pg.connect("grp", &token(&huge)).err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    let detail = pg.failure_detail("grp").unwrap();
    assert!(detail.contains("longer than the 256 bytes"), "{detail}");
}

#[test]
fn a_key_source_with_64_keys_works() {
    // 64 keys (the default pgaadauth.max_keys), the fixtures' material under 64 kids.
    let base = [&RSA1, &RSA2];
    let keys: Vec<pgaadauth_e2e::idp::Key> = (0..64)
        .map(|i| renamed(base[i % 2], Box::leak(format!("k{i:02}").into_boxed_str())))
        .collect();
    let refs: Vec<&pgaadauth_e2e::idp::Key> = keys.iter().collect();
    let idp = Idp::start(&refs);
    let pg = Cluster::start(
        "keys64",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('user1', '{USER}', 'user', false, false)"
    ));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .sql("SELECT count(*) FROM pgaadauth_jwks_status() WHERE kid IS NOT NULL")
            == "64"),
        "{}",
        pg.sql("SELECT string_agg(coalesce(kid, last_error), ', ') FROM pgaadauth_jwks_status()")
    );
    for key in [&keys[0], &keys[31], &keys[63]] {
        let token = mint(key, &claims(&idp.entra_issuer(), USER));
        pg.connect("user1", &token)
            .unwrap_or_else(|e| panic!("kid {}: {e}", key.kid));
    }
}

#[test]
fn text_from_the_provider_never_starts_a_log_line() {
    let idp = Idp::start(&[&RSA1]);
    idp.set_discovery_jwks_uri("http://127.0.0.1:1/keys\nFORGED:  a line of the provider's\r");
    let issuer = format!("{}/evil", idp.base());
    let pg = Cluster::start(
        "logtext",
        &[
            ("pgaadauth.issuers", issuer),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .log()
            .contains("could not refresh signing keys")),
        "{}",
        pg.log()
    );
    let log = pg.log();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a provider started a log line:\n{log}"
    );
    assert!(
        log.contains("keys\\nFORGED:  a line of the provider's\\r"),
        "{log}"
    );
}

#[test]
fn a_forged_kid_refresh_does_not_make_a_new_key_wait_for_the_next_rotation() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start(
        "forgedfirst",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.min_refresh_interval", "2s".into()),
            ("pgaadauth.kid_miss_wait", "5s".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('user1', '{USER}', 'user', false, false)"
    ));
    let iss = idp.entra_issuer();
    let first = mint(&RSA1, &claims(&iss, USER));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("user1", &first)
        .is_ok()));
    // A forged kid spends the refresh allowance; the provider rotates right after.
    let forged = pgaadauth_e2e::idp::mint_as(&RSA1, Some("forged"), &claims(&iss, USER));
    assert!(pg.connect("user1", &forged).is_err());
    idp.publish(&[&RSA1, &RSA2]);
    let start = Instant::now();
    pg.connect("user1", &mint(&RSA2, &claims(&iss, USER)))
        .unwrap_or_else(|e| panic!("new key refused after a forged kid's refresh: {e}"));
    println!(
        "new key accepted {:?} after a forged kid's refresh",
        start.elapsed()
    );
}

#[test]
fn a_refused_login_waits_as_auth_delay_says_whichever_library_loads_first() {
    const DELAY: Duration = Duration::from_millis(2000);
    let idp = Idp::start(&[&RSA1]);
    for (name, order) in [
        ("delay-after", "pgaadauth,auth_delay"),
        ("delay-before", "auth_delay,pgaadauth"),
    ] {
        let pg = Cluster::start(
            name,
            &[
                ("shared_preload_libraries", order.into()),
                ("auth_delay.milliseconds", DELAY.as_millis().to_string()),
                ("pgaadauth.tenant_id", TENANT.into()),
                ("pgaadauth.authority_host", idp.base()),
                ("pgaadauth.allow_http", "on".into()),
            ],
        );
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('entra-user', '{USER}', 'user', false, false)"
        ));
        pg.sql("CREATE ROLE judy LOGIN PASSWORD 'judy-secret'");
        let good = mint(&RSA1, &claims(&idp.entra_issuer(), USER));
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || pg
                .connect("entra-user", &good)
                .is_ok()),
            "{order}: {}",
            pg.log()
        );
        let timed = |user: &str, password: &str| {
            let start = Instant::now();
            let ok = pg.connect(user, password).is_ok();
            (ok, start.elapsed())
        };
        let wrong_principal = mint(&RSA1, &claims(&idp.entra_issuer(), MEMBER));
        for (user, password) in [
            ("entra-user", wrong_principal.as_str()),
            ("entra-user", "not a token"),
            ("judy", "wrong"),
        ] {
            let (ok, took) = timed(user, password);
            assert!(!ok, "{order}: {user} with {password:.20} must be refused");
            assert!(took >= DELAY, "{order}: {user} refused after {took:?}");
        }
        // Accepted logins are not delayed: the quickest of three is well under the pause
        // (one may be slow on a busy machine; none would be quick if each paused).
        for (user, password) in [("entra-user", good.as_str()), ("judy", "judy-secret")] {
            let quickest = (0..3)
                .map(|_| {
                    let (ok, took) = timed(user, password);
                    assert!(ok, "{order}: {user}");
                    took
                })
                .min()
                .unwrap();
            assert!(
                quickest < DELAY,
                "{order}: {user} accepted after {quickest:?}"
            );
        }
        // The pooler's check (PgBouncer's PAM module) pauses a refusal the same way, and
        // refuses a superuser whatever the password (pgaadauth.pooler_privileged_roles off).
        pg.sql(
            "CREATE ROLE pooler LOGIN; \
             GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pooler; \
             ALTER ROLE postgres PASSWORD 'super-secret'",
        );
        let pooler_check = |user: &str, password: &str| {
            let start = Instant::now();
            let answer = pg.sql(&format!(
                "SET ROLE pooler; SELECT pgaadauth_pooler_login('{user}', '{password}', '')"
            ));
            let answer = answer.lines().last().unwrap_or_default().to_string();
            (answer, start.elapsed())
        };
        for (user, password) in [("judy", "wrong"), ("postgres", "super-secret")] {
            let (answer, took) = pooler_check(user, password);
            assert_eq!(answer, "0", "{order}: {user} through the pooler");
            assert!(took >= DELAY, "{order}: {user} refused after {took:?}");
        }
        let quickest = (0..3)
            .map(|_| {
                let (answer, took) = pooler_check("judy", "judy-secret");
                assert_eq!(answer, "1", "{order}");
                took
            })
            .min()
            .unwrap();
        assert!(quickest < DELAY, "{order}: accepted after {quickest:?}");
        assert!(pg.log().contains(
            "Role \"postgres\" is a superuser, and pgaadauth.pooler_privileged_roles is off."
        ));
        pg.stop();
    }
}
