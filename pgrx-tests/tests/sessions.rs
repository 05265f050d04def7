//! Who is connected, after login: `pgaadauth_session()` and the `pgaadauth.sessions` view,
//! the session's claims for row-level security, sessions that end with their token, and token
//! revocation (survives a restart, reaches a standby, ends open sessions).

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, oid_for, unix_now, Idp, RSA1, TENANT};
use postgres::error::SqlState;
use serde_json::{json, Value};
use std::time::Duration;

struct Setup {
    idp: Idp,
    pg: Cluster,
}

impl Setup {
    fn new(name: &str, extra: &[(&str, &str)]) -> Setup {
        let idp = Idp::start(&[&RSA1]);
        let mut settings = idp.entra_settings();
        settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let pg = Cluster::start(name, &settings);
        let s = Setup { idp, pg };
        s.principal("probe", "user");
        let probe = s.token("probe", |_| {});
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || s
                .pg
                .connect("probe", &probe)
                .is_ok()),
            "keys were never fetched:\n{}",
            s.pg.log()
        );
        s
    }

    fn principal(&self, role: &str, kind: &str) {
        self.pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', '{kind}', false, false)",
            oid_for(role)
        ));
    }

    /// A token for the principal named `who`, its claims changed by `edit`.
    fn token(&self, who: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = claims(&self.idp.entra_issuer(), &oid_for(who));
        c["upn"] = json!(format!("{who}@contoso.example"));
        edit(&mut c);
        mint(&RSA1, &c)
    }

    fn one(&self, client: &mut postgres::Client, sql: &str) -> Option<String> {
        client.query_one(sql, &[]).unwrap().get(0)
    }

    /// The DETAIL of the last refused login of `role`.
    fn refused(&self, role: &str, token: &str) -> String {
        refused_on(&self.pg, role, token)
    }
}

fn refused_on(pg: &Cluster, role: &str, token: &str) -> String {
    let err = pg
        .connect(role, token)
        .map(|_| ())
        .expect_err("login should be refused");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::INVALID_PASSWORD),
        "{err}"
    );
    pg.failure_detail(role).unwrap_or_default()
}

/// Whether the session's connection was ended by the server (its next statement fails).
fn ended(client: &mut postgres::Client) -> bool {
    client.simple_query("SELECT 1").is_err()
}

#[test]
fn session_and_view_describe_each_login() {
    let s = Setup::new("session-identity", &[]);
    s.principal("ann", "user");
    s.principal("team", "group");
    s.pg.sql("CREATE ROLE pat LOGIN PASSWORD 'pat-secret'; CREATE ROLE watcher LOGIN PASSWORD 'w'; GRANT pg_read_all_stats TO watcher");

    let exp = unix_now() + 1800;
    let mut ann =
        s.pg.connect("ann", &s.token("ann", |c| c["exp"] = json!(exp)))
            .unwrap();
    let row = ann
        .query_one(
            "SELECT method, object_id, tenant_id, upn, app_id, via_group, extract(epoch FROM token_expires)::bigint FROM pgaadauth_session()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("token"));
    assert_eq!(row.get::<_, Option<String>>(1), Some(oid_for("ann")));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some(TENANT));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("ann@contoso.example")
    );
    assert_eq!(row.get::<_, Option<String>>(5), None);
    assert_eq!(row.get::<_, Option<i64>>(6), Some(exp));

    // A group login: the member, and the group it came through.
    let mut member =
        s.pg.connect(
            "team",
            &s.token("zoe", |c| c["groups"] = json!([oid_for("team")])),
        )
        .unwrap();
    let row = member
        .query_one(
            "SELECT object_id, upn, via_group FROM pgaadauth_session()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), Some(oid_for("zoe")));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("zoe@contoso.example")
    );
    assert_eq!(row.get::<_, Option<String>>(2), Some(oid_for("team")));

    // A password login: the method, and NULLs.
    let mut pat = s.pg.connect("pat", "pat-secret").unwrap();
    let row = pat
        .query_one(
            "SELECT method, object_id, tenant_id, upn, via_group, token_expires::text FROM pgaadauth_session()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("password"));
    for i in 1..6 {
        assert_eq!(row.get::<_, Option<String>>(i), None, "column {i}");
    }
    // Another pg_hba.conf method is named as such (the superuser's peer line).
    assert_eq!(s.pg.sql("SELECT method FROM pgaadauth_session()"), "peer");

    // The view: every session's login by pid, for the superuser and pg_read_all_stats.
    let ann_pid: i32 = ann
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let member_pid: i32 = member
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        s.pg.sql(&format!(
            "SELECT usename || ' ' || method || ' ' || object_id || ' ' || coalesce(via_group, '-') FROM pgaadauth.sessions WHERE pid IN ({ann_pid}, {member_pid}) ORDER BY usename"
        )),
        format!(
            "ann token {} -\nteam token {} {}",
            oid_for("ann"),
            oid_for("zoe"),
            oid_for("team")
        )
    );
    let mut watcher = s.pg.connect("watcher", "w").unwrap();
    assert_eq!(
        s.one(
            &mut watcher,
            &format!("SELECT object_id FROM pgaadauth.sessions WHERE pid = {ann_pid}")
        ),
        Some(oid_for("ann"))
    );
    // A session sees only itself: the view refuses others.
    let e = pat
        .simple_query("SELECT * FROM pgaadauth.sessions")
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{e:?}");
    // A session that has ended is no longer listed.
    drop(ann);
    assert!(Cluster::wait_for(Duration::from_secs(5), || s.pg.sql(
        &format!("SELECT count(*) FROM pgaadauth.sessions WHERE pid = {ann_pid}")
    ) == "0"));
}

#[test]
fn claims_drive_row_level_security_and_cannot_be_changed() {
    let s = Setup::new("session-claims", &[("pgaadauth.session_claims", "on")]);
    s.principal("ann", "user");
    s.principal("team", "group");
    let managers = "aaaaaaaa-0000-4000-8000-00000000000a";
    s.pg.sql(&format!(
        "CREATE TABLE docs (tenant_id uuid, audience text, body text);
         INSERT INTO docs VALUES ('{TENANT}', 'all', 'ours'), ('99999999-9999-4999-8999-999999999999', 'all', 'theirs'),
                                 ('{TENANT}', 'managers', 'salaries');
         ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON docs USING (tenant_id = (pgaadauth_session_claims()->>'tid')::uuid
             AND (audience = 'all' OR pgaadauth_session_claims()->'groups' ? '{managers}'));
         GRANT SELECT ON docs TO PUBLIC;"
    ));
    let bodies = |client: &mut postgres::Client| -> String {
        client
            .query("SELECT body FROM docs ORDER BY body", &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join(",")
    };
    let marker = "marker-claim-value-7f3a";
    let mut ann =
        s.pg.connect("ann", &s.token("ann", |c| c["custom"] = json!(marker)))
            .unwrap();
    assert_eq!(bodies(&mut ann), "ours");
    assert_eq!(
        s.one(&mut ann, "SELECT pgaadauth_session_claims()->>'custom'"),
        Some(marker.into())
    );
    // A manager (through the group role, its token listing both groups) sees more.
    let mut boss =
        s.pg.connect(
            "team",
            &s.token("boss", |c| c["groups"] = json!([oid_for("team"), managers])),
        )
        .unwrap();
    assert_eq!(bodies(&mut boss), "ours,salaries");

    // No SQL changes a session's claims: the setting is not settable in a session, and a
    // SECURITY DEFINER function or SET ROLE does not change them either.
    let e = ann
        .simple_query("SET pgaadauth.session_claims = off")
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::CANT_CHANGE_RUNTIME_PARAM
    );
    s.pg.sql("GRANT team TO ann");
    ann.simple_query("SET ROLE team").unwrap();
    assert_eq!(bodies(&mut ann), "ours");
    assert_eq!(
        s.one(&mut ann, "SELECT pgaadauth_session_claims()->>'oid'"),
        Some(oid_for("ann"))
    );
    // Never in the log.
    assert!(!s.pg.log().contains(marker));

    // Off at login: no claims kept, and the function says so; a password session has none.
    s.pg.set(&[("pgaadauth.session_claims", "off")]);
    let mut later = s.pg.connect("ann", &s.token("ann", |_| {})).unwrap();
    let e = later
        .simple_query("SELECT pgaadauth_session_claims()")
        .unwrap_err();
    let e = e.as_db_error().unwrap();
    assert_eq!(e.message(), "this session's token claims were not kept");
    // The session that logged in while it was on keeps its claims.
    assert_eq!(bodies(&mut ann), "ours");
    s.pg.sql("CREATE ROLE pat LOGIN PASSWORD 'p'");
    let mut pat = s.pg.connect("pat", "p").unwrap();
    assert_eq!(
        s.one(&mut pat, "SELECT pgaadauth_session_claims()::text"),
        None
    );
}

#[test]
fn token_sessions_end_when_their_token_expires() {
    let s = Setup::new(
        "session-lifetime",
        &[
            ("pgaadauth.session_lifetime", "token"),
            ("pgaadauth.session_expiry_grace", "4s"),
            ("pgaadauth.clock_skew", "0"),
        ],
    );
    s.principal("ann", "user");
    s.pg.sql("CREATE ROLE pat LOGIN PASSWORD 'p'");
    // Time for the logins below before the token expires, on a busy machine too.
    let exp = unix_now() + 10;
    let short = s.token("ann", |c| c["exp"] = json!(exp));
    let mut idle = s.pg.connect("ann", &short).unwrap();
    let mut in_transaction = s.pg.connect("ann", &short).unwrap();
    in_transaction.simple_query("BEGIN; SELECT 1").unwrap();
    let mut pat = s.pg.connect("pat", "p").unwrap();
    let mut long = s.pg.connect("ann", &s.token("ann", |_| {})).unwrap();
    // A statement running at the deadline is ended too, and psql shows why.
    let pg = &s.pg;
    let running = std::thread::scope(|scope| {
        let running = scope.spawn(|| pg.psql_login("ann", Some(&short), "SELECT pg_sleep(60)"));
        assert!(
            Cluster::wait_for(Duration::from_secs(8), || pg.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
            ) == "1"),
            "psql never ran its statement"
        );
        // Past the token's expiry, within the grace (which ends 3 s later): still open.
        while unix_now() < exp + 1 {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!ended(&mut idle), "ended within the grace");
        running.join().unwrap()
    });
    assert!(!running.0, "{}", running.1);
    assert!(
        running
            .1
            .contains("FATAL:  terminating connection because its access token expired at")
            && running.1.contains("(4 s here)"),
        "{}",
        running.1
    );
    assert!(Cluster::wait_for(Duration::from_secs(5), || ended(
        &mut in_transaction
    )));
    assert!(ended(&mut idle));
    // The password session and the session with a long token stay.
    assert!(!ended(&mut pat));
    assert!(!ended(&mut long));
    let ended_lines = || {
        s.pg.log()
            .matches("pgaadauth: ended the session of process")
            .count()
    };
    assert!(
        Cluster::wait_for(Duration::from_secs(5), || ended_lines() == 3),
        "{}",
        s.pg.log()
    );
    let log = s.pg.log();
    assert!(
        log.contains("DETAIL:  pgaadauth.session_lifetime is \"token\"")
            && log.contains("HINT:  Connect again with a new access token."),
        "{log}"
    );
    // Unlimited again: a session outlives its token.
    s.pg.set(&[("pgaadauth.session_lifetime", "unlimited")]);
    let exp = unix_now() + 1;
    let mut kept =
        s.pg.connect("ann", &s.token("ann", |c| c["exp"] = json!(exp)))
            .unwrap();
    // Past where `token` would have ended it (exp + 4 s), and a worker's round more.
    while unix_now() <= exp + 6 {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ended(&mut kept));
}

#[test]
fn revoked_tokens_are_refused_and_their_sessions_end_also_after_a_restart_and_on_a_standby() {
    let s = Setup::new("revoke", &[]);
    s.principal("ann", "user");
    s.principal("team", "group");
    s.principal("boss", "user");
    s.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('admin', '{}', 'user', true, false)",
        oid_for("admin")
    ));
    let old = s.token("ann", |_| {});
    let via_group = s.token("zoe", |c| c["groups"] = json!([oid_for("team")]));
    let mut ann = s.pg.connect("ann", &old).unwrap();
    let mut zoe = s.pg.connect("team", &via_group).unwrap();

    // Only superusers and Entra administrators revoke.
    let e = ann
        .simple_query(&format!(
            "SELECT pgaadauth_revoke_tokens('{}')",
            oid_for("boss")
        ))
        .unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code(),
        &SqlState::INSUFFICIENT_PRIVILEGE
    );
    // In the database that holds revocations only.
    s.pg.sql("CREATE DATABASE other");
    s.pg.try_sql("other", "CREATE EXTENSION pgaadauth").unwrap();
    let e =
        s.pg.try_sql(
            "other",
            &format!("SELECT pgaadauth_revoke_tokens('{}')", oid_for("ann")),
        )
        .unwrap_err();
    assert!(
        e.contains("token revocations are kept in database \"postgres\", not \"other\""),
        "{e}"
    );
    // Not under REPEATABLE READ, whose snapshot could miss a concurrent revocation.
    let e = s
        .pg
        .try_sql(
            "postgres",
            &format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pgaadauth_revoke_tokens('{}'); COMMIT",
                oid_for("ann")
            ),
        )
        .unwrap_err();
    assert!(
        e.contains("pgaadauth_revoke_tokens cannot run in a REPEATABLE READ transaction"),
        "{e}"
    );

    // An Entra administrator revokes ann's tokens (upper case: stored canonically) and zoe's.
    let mut admin = s.pg.connect("admin", &s.token("admin", |_| {})).unwrap();
    admin
        .simple_query(&format!(
            "SELECT pgaadauth_revoke_tokens('{}')",
            oid_for("ann").to_uppercase()
        ))
        .unwrap();
    admin
        .simple_query(&format!(
            "SELECT pgaadauth_revoke_tokens('{}')",
            oid_for("zoe")
        ))
        .unwrap();
    assert!(Cluster::wait_for(Duration::from_secs(5), || ended(
        &mut ann
    )));
    assert!(Cluster::wait_for(Duration::from_secs(5), || ended(
        &mut zoe
    )));
    let detail = s.refused("ann", &old);
    assert!(
        detail.contains("were revoked (pgaadauth_revoke_tokens)"),
        "{detail}"
    );
    let detail = s.refused("team", &via_group);
    assert!(detail.contains("were revoked"), "{detail}");
    let log = s.pg.log();
    assert!(
        log.contains("FATAL:  terminating connection because the tokens of its principal issued at or before")
            && log.contains("DETAIL:  An administrator ran pgaadauth_revoke_tokens for this session's principal."),
        "{log}"
    );
    // Other principals are untouched; a token issued after the revocation is accepted.
    s.pg.connect("boss", &s.token("boss", |_| {})).unwrap();
    let fresh = s.token("ann", |c| c["iat"] = json!(unix_now() + 2));
    s.pg.connect("ann", &fresh).unwrap();

    // A revocation rolled back with its savepoint never happened, though its transaction
    // commits: the principal's session stays and its token is accepted.
    let boss_token = s.token("boss", |_| {});
    let mut boss = s.pg.connect("boss", &boss_token).unwrap();
    s.pg.sql(&format!(
        "BEGIN; SAVEPOINT s; SELECT pgaadauth_revoke_tokens('{}'); ROLLBACK TO s; COMMIT",
        oid_for("boss")
    ));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ended(&mut boss));
    s.pg.connect("boss", &boss_token).unwrap();

    // Listed, with who revoked.
    assert_eq!(
        s.pg.sql("SELECT object_id || ' ' || revoked_by || ' ' || enforced FROM pgaadauth_list_revocations() ORDER BY object_id"),
        {
            let mut rows = [
                format!("{} admin true", oid_for("ann")),
                format!("{} admin true", oid_for("zoe")),
            ];
            rows.sort();
            rows.join("\n")
        }
    );

    // Survives a restart: refused from the first login on (as revoked; or, while the keys or
    // the revocations are not read yet, for that), then as revoked.
    s.pg.restart();
    s.refused("ann", &old);
    let mut detail = String::new();
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || {
            detail = s.refused("ann", &old);
            detail.contains("were revoked")
        }),
        "{detail}"
    );

    // Reaches a standby: its sessions end and it refuses the tokens.
    let standby = Cluster::standby_of(&s.pg, "revoke-standby");
    let boss_token = s.token("boss", |_| {});
    assert!(Cluster::wait_for(Duration::from_secs(20), || standby
        .connect("boss", &boss_token)
        .is_ok()));
    let mut boss_on_standby = standby.connect("boss", &boss_token).unwrap();
    s.pg.sql(&format!(
        "SELECT pgaadauth_revoke_tokens('{}')",
        oid_for("boss")
    ));
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || ended(&mut boss_on_standby)),
        "{}",
        standby.log()
    );
    let detail = refused_on(&standby, "boss", &boss_token);
    assert!(detail.contains("were revoked"), "{detail}");

    // Lifted: accepted again, on both.
    assert_eq!(
        s.pg.sql(&format!(
            "SELECT pgaadauth_lift_revocation('{}')",
            oid_for("boss")
        )),
        "t"
    );
    s.pg.connect("boss", &boss_token).unwrap();
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || standby
            .connect("boss", &boss_token)
            .is_ok()),
        "{}",
        standby.log()
    );
    assert_eq!(
        s.pg.sql(&format!(
            "SELECT pgaadauth_lift_revocation('{}')",
            oid_for("boss")
        )),
        "f"
    );

    // Only the extension's own table counts: in a database without the extension, a table of
    // that name made by someone else is ignored (the session worker reads as a superuser).
    s.pg.sql("CREATE DATABASE impostor");
    s.pg.try_sql(
        "impostor",
        &format!(
            "CREATE SCHEMA pgaadauth; CREATE TABLE pgaadauth.revocations (object_id text, revoked_before timestamptz, revoked_by name); \
             INSERT INTO pgaadauth.revocations VALUES ('{}', now() + interval '1 hour', 'mallory')",
            oid_for("boss")
        ),
    )
    .unwrap();
    s.pg.set(&[("pgaadauth.database", "impostor")]);
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || {
            s.pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgaadauth session worker' AND datname = 'impostor'"
        ) == "1"
        }),
        "{}",
        s.pg.log()
    );
    // Two of its rounds.
    std::thread::sleep(Duration::from_secs(2));
    s.pg.connect("boss", &boss_token).unwrap();
}
