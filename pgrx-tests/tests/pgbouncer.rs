//! PgBouncer (Debian's 1.18, `auth_type = pam`) in front of the server, with pam_pgaadauth.so
//! asking the server to decide every client login: tokens with every rule, groups and overage,
//! passwords of unlabelled roles, refused clients never handed a pooled connection, the
//! 2047-byte cut, failing closed and recovering, the server's audit line, no secret in a log;
//! in session and in transaction pooling.

use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, mint, oid_for, tampered, unix_now, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbouncer::{PgBouncer, Setup};
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
    /// Pools of one server connection, which clients of one group role must share.
    shared: [PgBouncer; 2],
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
    let session = PgBouncer::start(
        "bouncer-session",
        &pg,
        "session",
        &["postgres"],
        &module_args,
    );
    let transaction = PgBouncer::start(
        "bouncer-transaction",
        &pg,
        "transaction",
        &["postgres"],
        &module_args,
    );
    let shared = ["session", "transaction"].map(|mode| {
        let mut setup = Setup::pam(mode, &["postgres"], &module_args);
        setup.pool_size = 1;
        PgBouncer::start_with(&format!("bouncer-shared-{mode}"), &pg, setup)
    });
    World {
        idp,
        pg,
        session,
        transaction,
        shared,
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

/// The world, one test at a time (some stop the server or change its settings).
fn world() -> (std::sync::MutexGuard<'static, ()>, &'static World) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (turn, &WORLD)
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
    let (_turn, w) = world();
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
    let (_turn, w) = world();
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
    let (_turn, w) = world();
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
    let (_turn, w) = world();
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
    let (_turn, w) = world();
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
    assert!(
        pids.len() >= 2,
        "each PgBouncer's module keeps a connection"
    );
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

/// This session's row of pgaadauth_session(): method, object id, UPN, group, and the server
/// process it runs in.
fn session_row(
    c: &mut postgres::Client,
) -> (String, Option<String>, Option<String>, Option<String>, i32) {
    let r = c
        .query_one(
            "SELECT method, object_id, upn, via_group, pg_backend_pid() FROM pgaadauth_session()",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

#[test]
fn members_of_one_group_share_a_pooled_connection_and_never_see_each_others_identity() {
    let (_turn, w) = world();
    let (p1, p2) = (oid_for("pool-member-one"), oid_for("pool-member-two"));
    let t1 = w.token(
        &p1,
        json!({"groups": [GROUP], "upn": "one@contoso.example"}),
    );
    let t2 = w.token(
        &p2,
        json!({"groups": [GROUP], "upn": "two@contoso.example"}),
    );
    for b in &w.shared {
        let mut backends = vec![];
        for token in [&t1, &t2, &t1] {
            let mut c = b.connect("postgres", "bouncer-group", token).unwrap();
            let (method, oid, upn, group, pid) = session_row(&mut c);
            // The server connection is PgBouncer's, opened with whichever token it last
            // accepted: it shows no person at all, neither this client's nor another's.
            assert_eq!(
                (method.as_str(), oid, upn, group),
                ("pooler", None, None, None),
                "{}",
                b.dir.display()
            );
            let e = c
                .query_one("SELECT pgaadauth_session_claims()", &[])
                .unwrap_err();
            let e = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
            assert!(e.contains("belongs to a connection pooler"), "{e}");
            if cluster::major() >= 16 {
                let system_user: Option<String> =
                    c.query_one("SELECT SYSTEM_USER", &[]).unwrap().get(0);
                assert_eq!(system_user, None);
            }
            backends.push(pid);
        }
        assert!(
            backends.windows(2).all(|p| p[0] == p[1]),
            "one server connection for all: {backends:?}"
        );
    }
    // Administrators see the same: a pooler's sessions, no person.
    let rows = w.pg.sql(
        "SELECT method || ':' || coalesce(object_id, '-') || ':' || coalesce(upn, '-') \
         FROM pgaadauth.sessions WHERE usename = 'bouncer-group'",
    );
    assert!(!rows.is_empty());
    for row in rows.lines() {
        assert_eq!(row, "pooler:-:-");
    }
    // A direct login with a token of its own is the person's, as before.
    let direct = w.token(&oid_for("pool-member-three"), json!({"groups": [GROUP]}));
    let mut c = w.pg.connect("bouncer-group", &direct).unwrap();
    let (method, oid, ..) = session_row(&mut c);
    assert_eq!(
        (method.as_str(), oid),
        ("token", Some(oid_for("pool-member-three")))
    );

    // A revoked token keeps nothing open: the server connection opened with it ends, and
    // PgBouncer opens the next one with the token it accepted last.
    let b = &w.shared[0];
    let mut c = b.connect("postgres", "bouncer-group", &t1).unwrap();
    let (_, _, _, _, opened_with_t1) = session_row(&mut c);
    drop(c);
    w.pg.sql(&format!("SELECT pgaadauth_revoke_tokens('{p1}')"));
    let ended = Cluster::wait_for(Duration::from_secs(10), || {
        w.pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {opened_with_t1}"
        )) == "0"
    });
    let refused = b.connect("postgres", "bouncer-group", &t1).is_err();
    let mut c = b.connect("postgres", "bouncer-group", &t2).unwrap();
    let (method, oid, _, _, pid) = session_row(&mut c);
    drop(c);
    w.pg.sql(&format!("SELECT pgaadauth_lift_revocation('{p1}')"));
    assert!(
        ended,
        "the session opened with a revoked token is still open"
    );
    assert!(refused, "a revoked token was accepted through PgBouncer");
    assert_eq!((method.as_str(), oid), ("pooler", None));
    assert_ne!(pid, opened_with_t1);
    w.no_secret_logged(&[&t1, &t2, &direct]);
}

#[test]
fn after_a_server_restart_pooler_addresses_keep_pooled_sessions_without_a_person() {
    let (_turn, w) = world();
    let (pa, pb) = (oid_for("restart-member-a"), oid_for("restart-member-b"));
    let ta = w.token(&pa, json!({"groups": [GROUP]}));
    let tb = w.token(&pb, json!({"groups": [GROUP]}));
    let b = &w.shared[1]; // transaction pooling, one server connection
                          // Both clients logged in; PgBouncer keeps B's token, the last it accepted, for the server.
    let mut a = b.connect("postgres", "bouncer-group", &ta).unwrap();
    let mut bc = b.connect("postgres", "bouncer-group", &tb).unwrap();
    assert_eq!(session_row(&mut bc).0, "pooler");
    // The server restarts and forgets which tokens the pooler accepted. A's next transaction
    // needs a new server connection, which PgBouncer opens with B's token: only the address
    // can tell the server that it is PgBouncer's.
    w.pg.set(&[("pgaadauth.pooler_addresses", "127.0.0.1")]);
    w.pg.restart();
    let mut row = None;
    assert!(Cluster::wait_for(Duration::from_secs(20), || {
        row = a
            .query_one(
                "SELECT method, object_id, upn FROM pgaadauth_session()",
                &[],
            )
            .ok()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, Option<String>>(1),
                    r.get::<_, Option<String>>(2),
                )
            });
        row.is_some()
    }));
    // Every token login from there is a pooler's session, a direct one included.
    let mut direct = w.pg.connect("bouncer-group", &ta).unwrap();
    let direct_row = session_row(&mut direct);
    w.pg.set(&[("pgaadauth.pooler_addresses", "")]);
    assert_eq!(row, Some(("pooler".to_string(), None, None)), "A sees B");
    assert_eq!((direct_row.0.as_str(), direct_row.1), ("pooler", None));
    drop((a, bc, direct));
    w.no_secret_logged(&[&ta, &tb]);
}

#[test]
fn superusers_and_replication_roles_are_refused_through_the_pooler_unless_allowed() {
    let (_turn, w) = world();
    w.pg.sql(
        "CREATE ROLE bouncer_super SUPERUSER LOGIN PASSWORD 'su-Secret-9'; \
         CREATE ROLE bouncer_repl REPLICATION LOGIN PASSWORD 're-Secret-9'; \
         CREATE ROLE bouncer_heir LOGIN PASSWORD 'he-Secret-9' IN ROLE bouncer_super",
    );
    for (role, password, what) in [
        ("bouncer_super", "su-Secret-9", "is a superuser"),
        ("bouncer_repl", "re-Secret-9", "is a REPLICATION role"),
        (
            "bouncer_heir",
            "he-Secret-9",
            "is a member of \"bouncer_super\", a superuser",
        ),
    ] {
        let mark = w.session.log().len();
        assert!(
            w.session.connect("postgres", role, password).is_err(),
            "{role}"
        );
        assert!(
            logged(
                || w.session.log(),
                mark,
                &format!("{what}, and pgaadauth.pooler_privileged_roles is off")
            ),
            "{}",
            &w.session.log()[mark..]
        );
    }
    // A documented setting lets them in.
    w.pg.set(&[("pgaadauth.pooler_privileged_roles", "on")]);
    let allowed = w
        .session
        .connect("postgres", "bouncer_super", "su-Secret-9");
    w.pg.set(&[("pgaadauth.pooler_privileged_roles", "off")]);
    assert_eq!(who(&mut allowed.unwrap()), "bouncer_super");
    assert!(!w.session.log().contains("su-Secret-9"));
}

#[test]
fn logins_through_pgbouncer_do_not_wait_for_its_timer() {
    let (_turn, w) = world();
    let token = w.token(&oid_for("bouncer-user"), json!({}));
    for b in w.bouncers() {
        let mark = b.log().len();
        // PgBouncer collects PAM results only when its event loop wakes; asleep until its
        // timer, 20 logins would take 20 x 1/3 s. The module wakes it.
        let start = Instant::now();
        for _ in 0..20 {
            drop(b.connect("postgres", "bouncer-user", &token).unwrap());
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(4), "20 logins took {took:?}");
        // Its knocks leave nothing in PgBouncer's log: 20 logins, 20 lines each.
        std::thread::sleep(Duration::from_millis(200));
        let log = &b.log()[mark..];
        assert_eq!(
            log.matches("login attempt: db=postgres user=bouncer-user")
                .count(),
            20
        );
        let other: Vec<&str> = log
            .lines()
            .filter(|l| {
                !l.contains("login attempt")
                    && !l.contains("closing because: client close request")
                    && !l.contains("new connection to server")
                    && !l.contains("stats:")
            })
            .collect();
        assert!(other.is_empty(), "{other:#?}");
    }
}

/// The servers of a test process that ends without dropping them (kept in a `static`, as
/// `WORLD` is), written down by [`a_test_process_that_exits_leaves_its_servers_behind`].
static LEFT: std::sync::OnceLock<(Cluster, PgBouncer)> = std::sync::OnceLock::new();

/// Run by the next test in a process of its own: starts a server and a PgBouncer held by a
/// `static`, writes their process ids (and the server's children's) to `PGAADAUTH_PIDS_FILE`,
/// then exits at once, as a failing or killed test binary would.
#[test]
#[ignore = "run by servers_end_when_their_test_process_ends"]
fn a_test_process_that_exits_leaves_its_servers_behind() {
    let Ok(file) = std::env::var("PGAADAUTH_PIDS_FILE") else {
        return;
    };
    let (pg, bouncer) = LEFT.get_or_init(|| {
        let pg = Cluster::start("left-behind", &[]);
        let bouncer = PgBouncer::start(
            "left-behind-bouncer",
            &pg,
            "session",
            &["postgres"],
            "dsn=x",
        );
        (pg, bouncer)
    });
    let postmaster = std::fs::read_to_string(pg.dir.join("data/postmaster.pid")).unwrap();
    let postmaster: u32 = postmaster.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![postmaster, bouncer.pid()];
    pids.extend(children_of(postmaster));
    let text: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    std::fs::write(file, text.join(" ")).unwrap();
    std::process::exit(3);
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(") ")
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            fields.get(1) == Some(&pid.to_string().as_str())
        })
        .collect()
}

/// Whether process `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, r)| !r.starts_with('Z') && !r.starts_with('X'))
}

#[test]
fn servers_end_when_their_test_process_ends() {
    let file = std::env::temp_dir().join(format!("pgaadauth-left-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_test_process_that_exits_leaves_its_servers_behind",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("PGAADAUTH_PIDS_FILE", &file)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "the child test process");
    let pids: Vec<u32> = std::fs::read_to_string(&file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    std::fs::remove_file(&file).unwrap();
    assert!(
        pids.len() >= 3,
        "a server, its processes and a PgBouncer: {pids:?}"
    );
    let all_ended = Cluster::wait_for(Duration::from_secs(10), || {
        pids.iter().all(|&p| !running(p))
    });
    let left: Vec<&u32> = pids.iter().filter(|&&p| running(p)).collect();
    assert!(
        all_ended,
        "still running after their test process ended: {left:?}"
    );
}
