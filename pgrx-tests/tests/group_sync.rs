//! Entra group sync against the Graph-compatible test directory: member roles created, named
//! and labelled; kept in step as members come, go, come back and are renamed; names the sync
//! did not create left alone; paging through 10,000 members; throttling; a sync that fails or
//! is cancelled half-way and is then completed; two syncs that never overlap; the worker on
//! its interval; a standby that never syncs.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1};
use serde_json::json;
use std::time::{Duration, Instant};

struct Setup {
    idp: Idp,
    pg: Cluster,
}

/// A cluster whose directory is the test provider, group sync on, the worker's interval
/// `interval`. Returns once the worker's first run (at start, with no group role yet) is done,
/// so that it never races a test's own sync.
fn setup(name: &str, interval: &str) -> Setup {
    let idp = Idp::start(&[&RSA1]);
    let mut settings = idp.directory_settings(name);
    settings.push(("pgaadauth.enable_group_sync", "on".into()));
    settings.push(("pgaadauth.group_sync_interval", interval.into()));
    let pg = Cluster::start(name, &settings);
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .log()
            .contains("group sync done")),
        "{}",
        pg.log()
    );
    Setup { idp, pg }
}

impl Setup {
    fn user(&self, name: &str) -> String {
        let id = oid_for(name);
        self.idp.dir_add(&id, "user", name);
        id
    }

    fn group(&self, name: &str, role: &str) -> String {
        let id = oid_for(name);
        self.idp.dir_add(&id, "group", name);
        if !role.is_empty() {
            self.pg.sql(&format!(
                "SELECT pgaadauth_create_principal_with_oid('{role}', '{id}', 'group', false, false)"
            ));
        }
        id
    }

    /// One sync as the superuser: its rows as `role action group detail`, sorted.
    fn sync(&self) -> Vec<String> {
        let out = self.pg.sql(
            "SELECT role_name || ' ' || action || ' ' || coalesce(group_role, '-') || ' ' || coalesce(detail, '-') \
             FROM pgaadauth_sync_roles_for_group_members()",
        );
        let mut rows: Vec<String> = out.lines().map(String::from).collect();
        rows.sort();
        rows
    }

    fn token(&self, name: &str) -> String {
        mint(&RSA1, &claims(&self.idp.entra_issuer(), &oid_for(name)))
    }
}

/// Every row of `expected` is among `rows`.
fn includes(rows: &[String], expected: &[&str]) {
    for e in expected {
        assert!(rows.iter().any(|r| r == e), "{e} not in {rows:#?}");
    }
}

fn has(rows: &[String], prefix: &str) -> bool {
    rows.iter().any(|r| r.starts_with(prefix))
}

#[test]
fn members_get_their_own_roles_and_follow_the_directory() {
    let s = setup("sync-members", "1h");
    let ann = s.user("ann@contoso.example");
    let guest = s.user("bob_fabrikam.example#EXT#@contoso.onmicrosoft.example");
    let etl = oid_for("etl-identity");
    s.idp.dir_add(&etl, "service", "etl-identity");
    let cy = s.user("cy@contoso.example");
    let taken = s.user("taken@contoso.example");
    let analysts = s.group("Analysts", "analysts");
    let interns = s.group("Interns", "");
    // Graph names no object the application may not read (here: a user without a UPN).
    let hidden = oid_for("hidden");
    s.idp.dir_add(&hidden, "user", "");
    // Names the sync refuses: reserved by PostgreSQL, a service principal named like a UPN,
    // ann's name in other letters.
    let reserved = s.user("pg_dba@contoso.example");
    let squatter = oid_for("squatter");
    s.idp.dir_add(&squatter, "service", "ceo@contoso.example");
    let shouting = s.user("ANN@contoso.example");
    for m in [
        &ann, &guest, &etl, &interns, &taken, &hidden, &reserved, &squatter,
    ] {
        s.idp.dir_add_member(&analysts, m);
    }
    s.idp.dir_add_member(&interns, &cy);
    // A group that will disappear from the directory.
    let temps = s.group("Temps", "temps");
    let tem = s.user("tem@contoso.example");
    s.idp.dir_add_member(&temps, &tem);
    s.pg.sql("CREATE ROLE \"taken@contoso.example\" LOGIN");
    s.pg.sql("CREATE TABLE report (x int); INSERT INTO report VALUES (42); GRANT SELECT ON report TO analysts");

    let rows = s.sync();
    includes(
        &rows,
        &[
        "ann@contoso.example created - type=user",
        "ann@contoso.example granted analysts -",
        "bob_fabrikam.example#EXT#@contoso.onmicrosoft.example created - type=user",
        "cy@contoso.example created - type=user",
        "cy@contoso.example granted analysts -",
        "etl-identity created - type=service",
        "taken@contoso.example skipped - a role of that name exists that the sync did not create",
        "analysts skipped analysts 1 members came without a userPrincipalName or displayName: the directory application needs User.Read.All and Application.Read.All",
        "pg_dba@contoso.example skipped - PostgreSQL reserves that role name",
        "ceo@contoso.example skipped - a service principal's display name may not look like a user's UPN",
        "tem@contoso.example granted temps -",
        ],
    );
    assert_eq!(rows.len(), 14, "{rows:#?}");
    // The role it did not create is left as it was.
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = 'taken@contoso.example'"),
        "0"
    );
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pg_shseclabel l JOIN pg_roles r ON r.oid = l.objoid WHERE r.rolname = 'taken@contoso.example'"),
        "0"
    );
    // Labelled with their own object id and type, members of the group role: they log in with
    // their own name and hold its privileges.
    assert_eq!(
        s.pg.sql("SELECT label FROM pg_shseclabel l JOIN pg_roles r ON r.oid = l.objoid WHERE r.rolname = 'etl-identity'"),
        format!("aadauth,oid={etl},type=service,tid={},synced", pgaadauth_e2e::idp::TENANT)
    );
    let mut ann_session =
        s.pg.connect("ann@contoso.example", &s.token("ann@contoso.example"))
            .unwrap();
    let seen: i32 = ann_session
        .query_one("SELECT x FROM report", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 42);
    drop(ann_session);
    // In step: nothing changes; what it skipped is reported again. The sync's roles
    // are listed apart; list_principals is unchanged.
    let again = s.sync();
    assert_eq!(again.len(), 4, "{again:#?}");
    assert!(again.iter().all(|r| r.contains(" skipped ")), "{again:#?}");
    assert_eq!(
        s.pg.sql("SELECT rolname || ' ' || objecttype || ' ' || canlogin || ' ' || groups::text FROM pgaadauth_list_synced_roles() WHERE rolname LIKE 'ann%'"),
        "ann@contoso.example user true {analysts}"
    );
    assert_eq!(
        s.pg.sql("SELECT array_to_string(proargnames, ',') FROM pg_proc WHERE proname = 'pgaadauth_list_principals'"),
        "isadminvalue,rolname,principaltype,objectid,tenantid,ismfa,isadmin"
    );

    // Ann leaves, cy is renamed, dee joins, a user named like ann in capitals joins, and the
    // Temps group is deleted from the directory.
    s.idp.dir_add_member(&analysts, &shouting);
    s.idp.dir_remove(&temps);
    s.idp.dir_remove_member(&analysts, &ann);
    s.idp.dir_remove(&cy);
    s.idp.dir_add(&cy, "user", "cy.new@contoso.example");
    s.idp.dir_add_member(&interns, &cy);
    let dee = s.user("dee@contoso.example");
    s.idp.dir_add_member(&analysts, &dee);
    let rows = s.sync();
    includes(
        &rows,
        &[
        "ann@contoso.example revoked analysts -",
        "ann@contoso.example disabled - in no synced group; kept (it may own objects)",
        "cy@contoso.example renamed_in_directory - the directory now names it \"cy.new@contoso.example\"; the role keeps its name",
        "dee@contoso.example created - type=user",
        "ANN@contoso.example skipped - the sync's role of another member has that name",
        "temps group_not_found temps the group does not exist in the directory: it has no members",
        "tem@contoso.example revoked temps -",
        "tem@contoso.example disabled - in no synced group; kept (it may own objects)",
        "dee@contoso.example granted analysts -",
        ],
    );
    assert!(s
        .pg
        .connect("ann@contoso.example", &s.token("ann@contoso.example"))
        .is_err());
    assert_eq!(
        s.pg.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'ann@contoso.example'"),
        "f"
    );
    s.pg.connect("cy@contoso.example", &s.token("cy@contoso.example"))
        .unwrap();
    // Back again: the same role, enabled and granted.
    s.idp.dir_add_member(&analysts, &ann);
    let rows = s.sync();
    assert!(has(&rows, "ann@contoso.example enabled"), "{rows:#?}");
    assert!(
        has(&rows, "ann@contoso.example granted analysts"),
        "{rows:#?}"
    );
    s.pg.connect("ann@contoso.example", &s.token("ann@contoso.example"))
        .unwrap();

    // The mark the sync set with NOLOGIN went with LOGIN.
    assert!(!s
        .pg
        .sql("SELECT label FROM pg_shseclabel WHERE objoid = '\"ann@contoso.example\"'::regrole")
        .contains("disabled"));
    // An administrator's NOLOGIN stays: reported, never undone; LOGIN given back by hand is
    // kept too.
    s.pg.sql("ALTER ROLE \"cy@contoso.example\" NOLOGIN");
    let rows = s.sync();
    assert!(
        has(
            &rows,
            "cy@contoso.example kept_nologin - in a synced group, but an administrator set NOLOGIN"
        ),
        "{rows:#?}"
    );
    assert!(!has(&rows, "cy@contoso.example enabled"), "{rows:#?}");
    assert!(s
        .pg
        .connect("cy@contoso.example", &s.token("cy@contoso.example"))
        .is_err());
    s.pg.sql("ALTER ROLE \"cy@contoso.example\" LOGIN");
    let rows = s.sync();
    assert!(!has(&rows, "cy@contoso.example kept_nologin"), "{rows:#?}");
    s.pg.connect("cy@contoso.example", &s.token("cy@contoso.example"))
        .unwrap();
    // A group role that reaches a privileged predefined role is never granted: reported.
    // Its members keep what they have, as for a group that could not be read.
    s.pg.sql("CREATE ROLE readers_of_all NOLOGIN; GRANT pg_read_all_data TO readers_of_all; GRANT readers_of_all TO analysts");
    let rows = s.sync();
    assert!(has(&rows, "analysts skipped analysts group sync never grants this group role: it is a member of \"pg_read_all_data\""), "{rows:#?}");
    assert_eq!(
        rows.iter()
            .filter(|r| !r.contains(" skipped ") && !r.contains(" group_not_found "))
            .count(),
        0,
        "{rows:#?}"
    );
    s.pg.sql("REVOKE readers_of_all FROM analysts");

    // A group that requires MFA: so do its members' own roles, at once (before any sync),
    // and the sync writes it into their labels.
    s.pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('analysts', '{analysts}', 'group', false, true)"
    ));
    assert!(s
        .pg
        .connect("dee@contoso.example", &s.token("dee@contoso.example"))
        .is_err());
    let detail = s.pg.failure_detail("dee@contoso.example").unwrap();
    assert!(detail.contains("multi-factor"), "{detail}");
    let rows = s.sync();
    assert!(has(&rows, "dee@contoso.example mfa_required"), "{rows:#?}");
    assert!(s
        .pg
        .connect("dee@contoso.example", &s.token("dee@contoso.example"))
        .is_err());
    let mut with_mfa = claims(&s.idp.entra_issuer(), &dee);
    with_mfa["amr"] = json!(["pwd", "mfa"]);
    s.pg.connect("dee@contoso.example", &mint(&RSA1, &with_mfa))
        .unwrap();

    // Who may sync: an Entra administrator yes, another role no; nobody but a superuser may
    // mark a role as the sync's.
    s.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('boss', '{}', 'user', true, false)",
        oid_for("boss")
    ));
    let mut boss = s.pg.connect("boss", &s.token("boss")).unwrap();
    boss.query(
        "SELECT * FROM pgaadauth_sync_roles_for_group_members()",
        &[],
    )
    .unwrap();
    // PostgreSQL 16+ asks for ADMIN OPTION before pgaadauth's own check is reached.
    s.pg.sql("GRANT \"taken@contoso.example\", \"cy@contoso.example\" TO boss WITH ADMIN OPTION");
    let refused = boss
        .batch_execute(&format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE \"taken@contoso.example\" IS 'aadauth,oid={taken},type=user,synced'"
        ))
        .unwrap_err();
    let message = refused.as_db_error().unwrap().message();
    assert_eq!(
        message,
        "permission denied to hand to group sync role \"taken@contoso.example\""
    );
    let refused = boss
        .batch_execute(&format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE \"cy@contoso.example\" IS 'aadauth,oid={cy},type=user'"
        ))
        .unwrap_err();
    let message = refused.as_db_error().unwrap().message();
    assert_eq!(
        message,
        "permission denied to take from group sync role \"cy@contoso.example\""
    );
    // Rebinding a synced role in place keeps it the sync's.
    boss.batch_execute(&format!(
        "SELECT pgaadauth_update_principal_with_oid('cy@contoso.example', '{cy}', 'user', false, false)"
    ))
    .unwrap();
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_list_synced_roles() WHERE rolname = 'cy@contoso.example'"),
        "1"
    );
    let mut dee_session =
        s.pg.connect("dee@contoso.example", &mint(&RSA1, &with_mfa))
            .unwrap();
    let refused = dee_session
        .query(
            "SELECT * FROM pgaadauth_sync_roles_for_group_members()",
            &[],
        )
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "42501", "{refused}");
}

#[test]
fn paging_throttling_and_a_sync_interrupted_then_completed() {
    let s = setup("sync-paging", "1h");
    let big = s.group("Everyone", "everyone");
    for i in 0..10_000 {
        let id = oid_for(&format!("user{i}"));
        s.idp
            .dir_add(&id, "user", &format!("user{i}@contoso.example"));
        s.idp.dir_add_member(&big, &id);
    }
    let small = s.group("Small", "small");
    s.idp
        .dir_add_member(&small, &s.user("solo@contoso.example"));

    // Throttled twice (Retry-After: 1), then a page fails half-way through the big group:
    // the small group is synced, the big one is reported and left as it was.
    s.idp.dir_throttle_next(2, 1);
    s.idp.dir_fail_page_at(5_994);
    let started = Instant::now();
    let rows = s.sync();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(has(&rows, "everyone failed everyone could not read the group's members: the directory answered HTTP status 500"), "{rows:#?}");
    assert!(has(&rows, "solo@contoso.example created"), "{rows:#?}");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_list_synced_roles()"),
        "1"
    );

    // Cancelled while throttled: nothing changes at all.
    s.idp.dir_throttle_next(8, 1);
    let cancelled = s.pg.try_sql(
        "postgres",
        "SET statement_timeout = '3s'; SELECT * FROM pgaadauth_sync_roles_for_group_members()",
    );
    assert!(
        cancelled
            .as_ref()
            .is_err_and(|e| e.contains("statement timeout")),
        "{cancelled:?}"
    );
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_list_synced_roles()"),
        "1"
    );
    s.idp.dir_throttle_next(0, 1);

    // Completed: at most 1,024 roles created per run (max_locks_per_transaction 64 x 16: from
    // PostgreSQL 16 each role created is locked to the end of the transaction), every page read
    // each run (11 of 999, and 1 of the small group), all 10,000 members after ten runs.
    let before = s.idp.count("/transitiveMembers");
    let started = Instant::now();
    let (mut created, mut granted, mut runs) = (0, 0, 0);
    loop {
        let rows = s.sync();
        runs += 1;
        assert!(!rows.iter().any(|r| r.contains(" failed ")), "{rows:#?}");
        created += rows.iter().filter(|r| r.contains(" created ")).count();
        granted += rows.iter().filter(|r| r.contains(" granted ")).count();
        // Its role name is empty: the line starts with the action.
        if !rows.iter().any(|r| r.contains("deferred - ")) {
            break;
        }
        assert!(runs < 20);
    }
    let took = started.elapsed();
    assert_eq!((created, granted, runs), (10_000, 10_000, 10));
    assert_eq!(s.idp.count("/transitiveMembers") - before, 12 * runs);
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_list_synced_roles() WHERE canlogin AND groups = '{everyone}'"),
        "10000"
    );
    println!("synced 10,000 new members in {runs} runs, {took:?}");
    let started = Instant::now();
    assert!(s.sync().is_empty());
    println!("checked 10,001 members in step in {:?}", started.elapsed());
}

#[test]
fn two_syncs_never_overlap() {
    let s = setup("sync-overlap", "1h");
    let team = s.group("Team", "team");
    s.idp.dir_add_member(&team, &s.user("one@contoso.example"));
    s.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('boss', '{}', 'user', true, false)",
        oid_for("boss")
    ));
    // The first sync holds its lock until its transaction ends; the second waits for it, then
    // finds everything in step.
    let mut first = s.pg.connect("boss", &s.token("boss")).unwrap();
    let mut tx = first.transaction().unwrap();
    let rows = tx
        .query(
            "SELECT * FROM pgaadauth_sync_roles_for_group_members()",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    let second = std::thread::scope(|scope| {
        let pg = &s.pg;
        let second = scope
            .spawn(move || pg.sql("SELECT count(*) FROM pgaadauth_sync_roles_for_group_members()"));
        assert!(Cluster::wait_for(Duration::from_secs(20), || {
            pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pgaadauth_sync_roles_for_group_members%'"
        ) == "1"
        }));
        tx.commit().unwrap();
        second.join().unwrap()
    });
    assert_eq!(second, "0");
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_list_synced_roles()"),
        "1"
    );
}

#[test]
fn the_worker_syncs_on_its_interval_and_a_standby_never_syncs() {
    let s = setup("sync-worker", "2s");
    let crew = s.group("Crew", "crew");
    s.idp
        .dir_add_member(&crew, &s.user("first@contoso.example"));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || s
            .pg
            .log()
            .contains("group sync: created role \"first@contoso.example\"")),
        "{}",
        s.pg.log()
    );
    let standby = Cluster::standby_of(&s.pg, "sync-worker-standby");
    let refused = standby
        .try_sql(
            "postgres",
            "SELECT * FROM pgaadauth_sync_roles_for_group_members()",
        )
        .unwrap_err();
    assert!(
        refused.contains("group sync runs on the primary only"),
        "{refused}"
    );
    // A later member: the worker adds it on the primary, the standby receives it.
    s.idp
        .dir_add_member(&crew, &s.user("second@contoso.example"));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || standby
            .sql("SELECT count(*) FROM pgaadauth_list_synced_roles()")
            == "2"),
        "{}",
        s.pg.log()
    );
    // By now the standby has run for seconds longer than the interval: no sync worker.
    assert!(standby.child_pid("pgaadauth group sync worker").is_none());
    assert!(
        !standby.log().contains("pgaadauth: group sync"),
        "{}",
        standby.log()
    );
    standby
        .connect("second@contoso.example", &s.token("second@contoso.example"))
        .unwrap();

    // A change PostgreSQL refuses (granting the group back would make a membership cycle) is
    // a failed row; the rest of the run stands, the worker lives on, and finishes the change
    // once the cause is gone.
    let worker = s.pg.child_pid("pgaadauth group sync worker");
    s.pg.sql("REVOKE crew FROM \"first@contoso.example\"; GRANT \"first@contoso.example\" TO crew");
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || s.pg.log().contains(
            "LOG:  pgaadauth: group sync: failed role \"first@contoso.example\""
        )),
        "{}",
        s.pg.log()
    );
    assert_eq!(s.pg.child_pid("pgaadauth group sync worker"), worker);
    s.pg.sql("REVOKE \"first@contoso.example\" FROM crew");
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || {
            s.pg.sql(
            "SELECT groups::text FROM pgaadauth_list_synced_roles() WHERE rolname = 'first@contoso.example'"
        ) == "{crew}"
        }),
        "{}",
        s.pg.log()
    );

    // Turned off: the worker says so and syncs no more, and the function says why.
    s.pg.set(&[("pgaadauth.enable_group_sync", "off")]);
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || s
            .pg
            .log()
            .contains("pgaadauth: group sync is off")),
        "{}",
        s.pg.log()
    );
    let refused =
        s.pg.try_sql(
            "postgres",
            "SELECT * FROM pgaadauth_sync_roles_for_group_members()",
        )
        .unwrap_err();
    assert!(refused.contains("group sync is off"), "{refused}");
    let asked = s.idp.count("/transitiveMembers");
    s.idp
        .dir_add_member(&crew, &s.user("third@contoso.example"));
    // Longer than the interval: a worker still syncing would have asked again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.idp.count("/transitiveMembers"), asked);
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'third@contoso.example'"),
        "0"
    );

    // On again, the worker syncs at once; a fast shutdown while it waits out throttling
    // stops it at once, with nothing half-done.
    // Ten times five seconds: a worker that missed the SIGTERM would take most of a minute.
    s.idp.dir_throttle_next(10, 5);
    s.pg.set(&[("pgaadauth.enable_group_sync", "on")]);
    assert!(Cluster::wait_for(Duration::from_secs(20), || s
        .idp
        .count("/transitiveMembers")
        > asked));
    let started = Instant::now();
    s.pg.stop();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !s.pg.log().contains("group sync: created role \"third"),
        "{}",
        s.pg.log()
    );
}
