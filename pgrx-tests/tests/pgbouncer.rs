//! PgBouncer (Debian's 1.18, `auth_type = pam`) in front of the server, with pam_pgaadauth.so
//! asking the server to decide every client login: tokens with every rule, groups and overage,
//! passwords of unlabelled roles, refused clients never handed a pooled connection, the
//! 2047-byte cut, failing closed and recovering, the server's audit line, no secret in a log;
//! in session and in transaction pooling.

use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, oid_for, tampered, unix_now, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbouncer::{pam_lock, write_pam_service, PamLock, PgBouncer};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const POOLER_SECRET: &str = "pooler-Secret-42";
const GROUP: &str = "b0a70000-1111-4222-8333-000000000001";
const MEMBER: &str = "b0a70000-1111-4222-8333-000000000002";
/// The module's timeout (PAM argument), in milliseconds.
const TIMEOUT_MS: u64 = 1500;

struct World {
    idp: Idp,
    pg: Cluster,
    session: PgBouncer,
    transaction: PgBouncer,
    /// The arguments of pam_pgaadauth.so on the PAM line.
    module_args: String,
}

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1]);
    idp.dir_add(GROUP, "group", "Bouncer Readers");
    idp.dir_add(MEMBER, "user", "member@contoso.example");
    idp.dir_add_member(GROUP, MEMBER);
    let mut settings = idp.directory_settings("bouncer");
    settings.push(("log_connections", "on".into()));
    let pg = Cluster::start("bouncer", &settings);
    pg.sql(&format!(
        "CREATE ROLE pgbouncer_auth LOGIN PASSWORD '{POOLER_SECRET}'; \
         GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pgbouncer_auth; \
         CREATE ROLE bouncer_pw LOGIN PASSWORD 'pw-Secret-7'"
    ));
    for (role, oid, kind) in [
        ("bouncer-user", oid_for("bouncer-user"), "user"),
        ("bouncer-group", GROUP.to_string(), "group"),
        ("bouncer-nologin", oid_for("bouncer-nologin"), "user"),
    ] {
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{oid}', '{kind}', false, false)"
        ));
    }
    pg.sql("ALTER ROLE \"bouncer-nologin\" NOLOGIN");
    // From here on, everything PostgreSQL can log about statements (the setup above sets
    // passwords): no token and no password may be in it.
    pg.set(&[
        ("log_statement", "all"),
        ("log_min_duration_statement", "0"),
    ]);
    let token = mint(
        &RSA1,
        &claims(&idp.entra_issuer(), &oid_for("bouncer-user")),
    );
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("bouncer-user", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        pg.log()
    );
    let module_args = format!(
        "dsn=postgresql://pgbouncer_auth:{POOLER_SECRET}@127.0.0.1:{}/postgres timeout={TIMEOUT_MS}",
        pg.port
    );
    let session = PgBouncer::start("bouncer-session", &pg, "session", &["postgres"]);
    let transaction = PgBouncer::start("bouncer-transaction", &pg, "transaction", &["postgres"]);
    World {
        idp,
        pg,
        session,
        transaction,
        module_args,
    }
});

impl World {
    fn token(&self, oid: &str, extra: Value) -> String {
        let mut c = claims(&self.idp.entra_issuer(), oid);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&RSA1, &c)
    }

    fn bouncers(&self) -> [&PgBouncer; 2] {
        [&self.session, &self.transaction]
    }

    fn stat(&self, name: &str) -> i64 {
        self.pg
            .sql(&format!(
                "SELECT value FROM pgaadauth_stats() WHERE counter = '{name}'"
            ))
            .parse()
            .unwrap()
    }

    /// Neither a token's signature nor the module's password is in any log.
    fn no_secret_logged(&self, tokens: &[&str]) {
        let logs = [self.pg.log(), self.session.log(), self.transaction.log()];
        for log in &logs {
            assert!(
                !log.contains(POOLER_SECRET),
                "the module's password is logged"
            );
            for t in tokens {
                assert!(!log.contains(&t[t.len() - 24..]), "a token is logged");
            }
        }
    }
}

/// The world, with /etc/pam.d/pgbouncer ours while the test runs (put back afterwards).
fn world() -> (PamLock, &'static World) {
    let lock = pam_lock();
    write_pam_service(&WORLD.module_args);
    (lock, &WORLD)
}

fn who(client: &mut postgres::Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0)
}

/// Wait for `text` in `log()` after `mark`.
fn logged(log: impl Fn() -> String, mark: usize, text: &str) -> bool {
    Cluster::wait_for(Duration::from_secs(5), || {
        log().get(mark..).is_some_and(|l| l.contains(text))
    })
}

#[test]
fn labelled_roles_log_in_by_token_in_both_pool_modes_with_the_servers_audit_line() {
    let (_lock, w) = world();
    let oid = oid_for("bouncer-user");
    let token = w.token(&oid, json!({}));
    for b in w.bouncers() {
        let mark = w.pg.log().len();
        let accepted = w.stat("pgbouncer_logins_accepted");
        let mut c = b.connect("postgres", "bouncer-user", &token).unwrap();
        assert_eq!(who(&mut c), "bouncer-user");
        assert!(
            logged(|| w.pg.log(), mark, &format!(
                "pgaadauth: login outcome=accepted role=bouncer-user type=user oid={oid} tid={TENANT}"
            )),
            "{}",
            &w.pg.log()[mark..]
        );
        assert!(w.pg.log()[mark..].contains("client=127.0.0.1 reason=- method=pgbouncer"));
        assert!(w.stat("pgbouncer_logins_accepted") > accepted);
    }
    w.no_secret_logged(&[&token]);
}

#[test]
fn a_pooled_connection_is_never_handed_to_a_refused_client_and_logins_open_no_backend() {
    let (_lock, w) = world();
    let oid = oid_for("bouncer-user");
    let good = w.token(&oid, json!({}));
    let now = unix_now();
    let refused = [
        (
            w.token(
                &oid,
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            ),
            "The token expired at",
        ),
        (tampered(&good), "The token signature does not verify"),
        (
            w.token(&oid_for("someone-else"), json!({})),
            "does not match the role's object id",
        ),
        (
            w.token(&oid, json!({"tid": "99999999-2222-3333-4444-555555555555"})),
            "is not the required tenant",
        ),
    ];
    for b in w.bouncers() {
        // A server connection of the role, now in the pool.
        let mut c = b.connect("postgres", "bouncer-user", &good).unwrap();
        assert_eq!(who(&mut c), "bouncer-user");
        drop(c);
        for (token, reason) in &refused {
            let mark = b.log().len();
            assert!(
                b.connect("postgres", "bouncer-user", token).is_err(),
                "{reason}: a refused client got in"
            );
            assert!(
                logged(
                    || b.log(),
                    mark,
                    "pam_pgaadauth: login of \"bouncer-user\" refused: "
                ),
                "{}",
                &b.log()[mark..]
            );
            assert!(
                b.log()[mark..].contains(reason),
                "{reason}: {}",
                &b.log()[mark..]
            );
        }
        // A revoked principal's token is refused too, until the lift.
        w.pg.sql(&format!("SELECT pgaadauth_revoke_tokens('{oid}')"));
        let mark = b.log().len();
        assert!(b.connect("postgres", "bouncer-user", &good).is_err());
        assert!(
            logged(|| b.log(), mark, "were revoked (pgaadauth_revoke_tokens)"),
            "{}",
            &b.log()[mark..]
        );
        w.pg.sql(&format!("SELECT pgaadauth_lift_revocation('{oid}')"));
        // Twenty logins, and the server authorises at most a pool's worth of connections.
        let mark = w.pg.log().len();
        for _ in 0..20 {
            let mut c = b.connect("postgres", "bouncer-user", &good).unwrap();
            assert_eq!(who(&mut c), "bouncer-user");
        }
        std::thread::sleep(Duration::from_millis(300));
        let opened = w.pg.log()[mark..]
            .matches("connection authorized: user=bouncer-user")
            .count();
        assert!(opened <= 4, "{opened} server logins for 20 client logins");
    }
    let tokens: Vec<&str> = refused.iter().map(|(t, _)| t.as_str()).collect();
    w.no_secret_logged(&[&good]);
    w.no_secret_logged(&tokens);
}

#[test]
fn groups_overage_and_passwords_are_decided_as_on_the_server() {
    let (_lock, w) = world();
    let by_claim = w.token(MEMBER, json!({"groups": [GROUP]}));
    let mut overage_claims = claims(&w.idp.entra_issuer(), MEMBER);
    overage_claims["_claim_names"] = json!({"groups": "src1"});
    let overage = mint(&RSA1, &overage_claims);
    let outsider = w.token(&oid_for("outsider"), json!({"groups": []}));
    for b in w.bouncers() {
        for token in [&by_claim, &overage] {
            let mut c = b.connect("postgres", "bouncer-group", token).unwrap();
            assert_eq!(who(&mut c), "bouncer-group");
        }
        assert!(b.connect("postgres", "bouncer-group", &outsider).is_err());
        let mut c = b.connect("postgres", "bouncer_pw", "pw-Secret-7").unwrap();
        assert_eq!(who(&mut c), "bouncer_pw");
        drop(c);
        assert!(b.connect("postgres", "bouncer_pw", "wrong").is_err());
        assert!(b.connect("postgres", "no_such_role", "x").is_err());
        // A valid token of a role without LOGIN.
        let nologin = w.token(&oid_for("bouncer-nologin"), json!({}));
        let mark = b.log().len();
        assert!(b.connect("postgres", "bouncer-nologin", &nologin).is_err());
        assert!(logged(|| b.log(), mark, "does not exist or may not log in"));
    }
    // Only roles granted EXECUTE may ask.
    let e =
        w.pg.try_sql(
            "postgres",
            "SET ROLE bouncer_pw; SELECT pgaadauth_pooler_login('bouncer_pw', 'pw-Secret-7', '')",
        )
        .unwrap_err();
    assert!(
        e.contains("permission denied for function pgaadauth_pooler_login"),
        "{e}"
    );
    // Token-only lines: the unlabelled role is refused, pooled connection or not.
    w.pg.set(&[("pgaadauth.password_auth", "off")]);
    let mark = w.session.log().len();
    let refused = w
        .session
        .connect("postgres", "bouncer_pw", "pw-Secret-7")
        .is_err();
    w.pg.set(&[("pgaadauth.password_auth", "on")]);
    assert!(refused);
    assert!(logged(
        || w.session.log(),
        mark,
        "pgaadauth.password_auth is off"
    ));
    assert!(!w.session.log().contains("pw-Secret-7"));
    w.no_secret_logged(&[&by_claim, &overage, &outsider]);
}

#[test]
fn a_token_cut_at_2047_bytes_is_refused_naming_pgbouncers_limit() {
    let (_lock, w) = world();
    // Longer than PgBouncer's 2047 bytes, shorter than its packet buffer (pkt_buf, 4096),
    // which refuses longer startup packets outright.
    let groups: Vec<String> = (0..30).map(|i| oid_for(&format!("g{i}"))).collect();
    let long = w.token(&oid_for("bouncer-user"), json!({ "groups": groups }));
    assert!((2100..4000).contains(&long.len()), "{}", long.len());
    // Directly, the server takes it.
    assert!(w.pg.connect("bouncer-user", &long).is_ok());
    for b in w.bouncers() {
        let server_mark = w.pg.log().len();
        let mark = b.log().len();
        assert!(b.connect("postgres", "bouncer-user", &long).is_err());
        assert!(
            logged(
                || b.log(),
                mark,
                "PgBouncer cuts passwords to 2047 bytes (MAX_PASSWORD 2048)"
            ),
            "{}",
            &b.log()[mark..]
        );
        // The server decided it, and its audit line says why.
        assert!(logged(
            || w.pg.log(),
            server_mark,
            "reason=password_cut method=pgbouncer"
        ));
    }
    w.no_secret_logged(&[&long]);
}

#[test]
fn with_the_server_unreachable_logins_fail_closed_within_the_timeout_and_recover() {
    let (_lock, w) = world();
    let token = w.token(&oid_for("bouncer-user"), json!({}));
    for b in w.bouncers() {
        assert!(b.connect("postgres", "bouncer-user", &token).is_ok());
    }

    // A server that does not answer, neither on the kept connections nor to new ones: each
    // module's call ends at its timeout, and so does its next attempt to connect.
    let pids = w.pg.sql(
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = 'pam_pgaadauth'",
    );
    let mut pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "each PgBouncer's module keeps a connection");
    let postmaster = std::fs::read_to_string(w.pg.dir.join("data/postmaster.pid")).unwrap();
    let postmaster = postmaster.lines().next().unwrap().trim().to_string();
    pids.push(&postmaster);
    let signal = |sig: &str| {
        for pid in &pids {
            Command::new("kill").args([sig, pid]).status().unwrap();
        }
    };
    signal("-STOP");
    let marks: Vec<usize> = w.bouncers().iter().map(|b| b.log().len()).collect();
    let attempt = |b: &PgBouncer| {
        let start = Instant::now();
        let refused = b.connect("postgres", "bouncer-user", &token).is_err();
        (refused, start.elapsed())
    };
    // First on the kept connection, then by connecting anew.
    let attempts: Vec<[(bool, Duration); 2]> = w
        .bouncers()
        .iter()
        .map(|b| [attempt(b), attempt(b)])
        .collect();
    signal("-CONT");
    for ((b, mark), tries) in w.bouncers().iter().zip(&marks).zip(&attempts) {
        for (refused, took) in tries {
            assert!(refused);
            assert!(
                *took < Duration::from_millis(TIMEOUT_MS + 1000),
                "the PAM call took {took:?}"
            );
        }
        for reason in [
            "did not answer within the module's timeout",
            "cannot connect to the PostgreSQL server: no connection within the module's timeout",
        ] {
            assert!(
                logged(|| b.log(), *mark, reason),
                "{reason}: {}",
                &b.log()[*mark..]
            );
        }
        // The next login uses a new connection.
        assert!(Cluster::wait_for(Duration::from_secs(10), || b
            .connect("postgres", "bouncer-user", &token)
            .is_ok()));
    }

    // The server down: refused at once, with the reason in PgBouncer's log.
    w.pg.stop();
    let marks: Vec<usize> = w.bouncers().iter().map(|b| b.log().len()).collect();
    let attempts: Vec<(bool, Duration)> = w
        .bouncers()
        .iter()
        .map(|b| {
            let start = Instant::now();
            let refused = b.connect("postgres", "bouncer-user", &token).is_err();
            (refused, start.elapsed())
        })
        .collect();
    w.pg.launch();
    for ((b, mark), (refused, took)) in w.bouncers().iter().zip(&marks).zip(&attempts) {
        assert!(refused);
        assert!(*took < Duration::from_millis(TIMEOUT_MS + 1000), "{took:?}");
        assert!(
            logged(
                || b.log(),
                *mark,
                "refused (failing closed): cannot connect to the PostgreSQL server"
            ),
            "{}",
            &b.log()[*mark..]
        );
        // Back: logins work again by themselves.
        assert!(
            Cluster::wait_for(Duration::from_secs(30), || b
                .connect("postgres", "bouncer-user", &token)
                .is_ok()),
            "{}",
            b.log()
        );
    }
    w.no_secret_logged(&[&token]);
}
