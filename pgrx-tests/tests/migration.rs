//! Coming from Azure and leaving passwords (docs/migration.md): Azure's audit query over
//! pgaadauth's log (with pgaudit where Debian packages it), re-runnable principals, password
//! logins per role across a restart, a role labelled with an application id, roles through
//! `pg_dumpall --roles-only` into a new cluster, the session worker quiet beside pgaudit, and
//! the migration end to end.

use pgaadauth_e2e::cluster::{check, major, private_file, Cluster};
use pgaadauth_e2e::idp::{mint_with, oid_for, Idp, RSA1};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The `log_line_prefix` Azure's audit query asks for.
const AZURE_PREFIX: &str = "%t-%c-user=%u,db=%d,session=%c,sess_time=%s";
const WAIT: Duration = Duration::from_secs(20);

fn token(idp: &Idp, oid: &str, extra: Value) -> String {
    mint_with(&idp.entra_issuer(), oid, &extra)
}

/// A service principal's token: no user claims, its application id.
fn app_token(idp: &Idp, oid: &str, appid: &str) -> String {
    token(
        idp,
        oid,
        json!({"upn": null, "appid": appid, "azp": appid, "idtyp": "app"}),
    )
}

/// Kusto's `split(text, delimiter)[-from_end]`: "" when out of range.
fn split_from_end(text: &str, delimiter: &str, from_end: usize) -> String {
    let parts: Vec<&str> = text.split(delimiter).collect();
    parts
        .len()
        .checked_sub(from_end)
        .map(|i| parts[i].to_string())
        .unwrap_or_default()
}

/// Kusto's `contains`: case-insensitive.
fn contains(text: &str, what: &str) -> bool {
    text.to_lowercase().contains(&what.to_lowercase())
}

fn session_of(message: &str) -> String {
    split_from_end(&split_from_end(message, "session=", 1), ",sess_time", 2)
}

/// The first half of Azure's query (learn.microsoft.com, "Audit logging in Azure Database for
/// PostgreSQL for Microsoft Entra ID principals"), rule for rule: each line holding
/// `Microsoft Entra ID connection authorized` gives its session and its person, the text between
/// the last `UPN=` (or `appid=`) and the following `oid=`.
fn entra_logins(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|m| contains(m, "Microsoft Entra ID connection authorized"))
        .map(|m| {
            let upn = if contains(m, "UPN") {
                split_from_end(&split_from_end(m, "UPN=", 1), "oid=", 2)
            } else {
                String::new()
            };
            let app = if contains(m, "appid") {
                split_from_end(&split_from_end(m, "appid=", 1), "oid=", 2)
            } else {
                String::new()
            };
            (session_of(m), upn + &app)
        })
        .collect()
}

/// The whole query: the pgaudit lines (`AUDIT: SESSION`) of roles other than the excluded ones,
/// joined by session to the logins: (person, role, the audit line).
fn azure_query(log: &str) -> Vec<(String, String, String)> {
    let logins = entra_logins(log);
    log.lines()
        .filter(|m| contains(m, "AUDIT: SESSION"))
        .filter_map(|m| {
            let role = split_from_end(&split_from_end(m, "user=", 1), ",db", 2);
            if ["azuresu", "[unknown]", "postgres", ""].contains(&role.as_str()) {
                return None;
            }
            let session = session_of(m);
            let person = logins.iter().find(|(s, _)| *s == session)?.1.clone();
            Some((person, role, m.to_string()))
        })
        .collect()
}

/// This session's id as `%c` writes it.
const SESSION_ID: &str = "SELECT pg_catalog.to_hex(pg_catalog.floor(extract(epoch FROM backend_start))::bigint) || '.' || pg_catalog.to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()";

fn principal(pg: &Cluster, role: &str, oid: &str, kind: &str) {
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('{role}', '{oid}', '{kind}', false, false)"
    ));
}

#[test]
fn azures_audit_query_finds_the_person_behind_each_line() {
    let idp = Idp::start(&[&RSA1]);
    let with_pgaudit = major() == 15;
    let mut settings = idp.entra_settings();
    settings.extend([
        ("log_line_prefix", AZURE_PREFIX.to_string()),
        ("pgaadauth.log_format", "azure".into()),
    ]);
    if with_pgaudit {
        settings.extend([
            ("shared_preload_libraries", "pgaadauth,pgaudit".to_string()),
            ("pgaudit.log", "read, write".into()),
        ]);
    }
    let pg = Cluster::start("azure-audit", &settings);
    let group = oid_for("azure-audit-group");
    let sp = oid_for("azure-audit-etl");
    let appid = "3f1a9c2e-7b4d-4e8f-9a01-b2c3d4e5f607";
    principal(&pg, "alice", &oid_for("alice"), "user");
    principal(&pg, "readers", &group, "group");
    principal(&pg, "etl", &sp, "service");
    pg.sql("CREATE ROLE legacy LOGIN PASSWORD 'legacy-secret'");

    let alice = token(
        &idp,
        &oid_for("alice"),
        json!({"upn": "alice@contoso.example"}),
    );
    let bob = token(
        &idp,
        &oid_for("bob"),
        json!({"upn": "bob@contoso.example", "groups": [group]}),
    );
    let etl = app_token(&idp, &sp, appid);
    let mut sessions = HashMap::new();
    for (role, tok, person) in [
        ("alice", &alice, "alice@contoso.example"),
        ("readers", &bob, "bob@contoso.example"),
        ("etl", &etl, appid),
    ] {
        assert!(Cluster::wait_for(WAIT, || pg.connect(role, tok).is_ok()));
        let mut c = pg.connect(role, tok).unwrap();
        let session: String = c.query_one(SESSION_ID, &[]).unwrap().get(0);
        c.simple_query(&format!(
            "SELECT 'statement of {role}' FROM pg_catalog.pg_class LIMIT 1"
        ))
        .unwrap();
        sessions.insert(session, (role, person));
    }
    // The password role's login is no Entra login.
    pg.connect("legacy", "legacy-secret").unwrap();

    let log = pg.log();
    let logins = entra_logins(&log);
    for (session, (role, person)) in &sessions {
        let found: Vec<_> = logins.iter().filter(|(s, _)| s == session).collect();
        assert_eq!(found.len(), 1, "{role}: {logins:?}\n{log}");
        assert_eq!(found[0].1, *person, "{role}");
    }
    // The default line is not written as well, and no other line claims a login.
    assert!(!log.contains("pgaadauth: login outcome=accepted"), "{log}");
    // Two logins per role (the first waited for the keys), each its role's person.
    assert_eq!(logins.len(), 2 * sessions.len(), "{logins:?}");

    if with_pgaudit {
        let rows = azure_query(&log);
        for (role, person) in sessions.values() {
            let statement = format!("statement of {role}");
            let row = rows
                .iter()
                .find(|(_, _, line)| line.contains(&statement))
                .unwrap_or_else(|| panic!("no audit row for {role}: {rows:?}\n{log}"));
            assert_eq!(row.0, *person, "{row:?}");
            assert_eq!(row.1, *role, "{row:?}");
        }
        // Quiet beside pgaudit: the session worker reads pgaadauth.revocations every second and
        // writes password logins, none of it audited. Two rounds of the worker's work, seen by
        // the password logins it wrote to the table.
        for round in 1..=2 {
            pg.connect("legacy", "legacy-secret").unwrap();
            let want = (round + 1).to_string();
            assert!(Cluster::wait_for(WAIT, || pg.sql(
                "SELECT coalesce(sum(logins), 0) FROM pgaadauth.password_logins"
            ) == want));
        }
        let log = pg.log();
        let worker_lines: Vec<_> = log
            .lines()
            .filter(|l| l.contains("AUDIT: SESSION") && l.contains("user=,db="))
            .collect();
        assert!(worker_lines.is_empty(), "{worker_lines:#?}");
        // pgaudit still audits everyone else.
        assert!(log.contains("AUDIT: SESSION"), "{log}");
    }
}

#[test]
fn ensure_principal_is_re_runnable_and_never_rebinds() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("ensure", &idp.entra_settings());
    let ann = oid_for("ann");
    let ensure = |role: &str, oid: &str, kind: &str, admin: bool, mfa: bool| {
        pg.try_sql(
            "postgres",
            &format!("SELECT pgaadauth_ensure_principal_with_oid('{role}', '{oid}', '{kind}', {admin}, {mfa})"),
        )
    };
    let flags = || {
        pg.sql(
            "SELECT isMfa || ',' || isAdmin || ',' || pg_has_role('ann', 'azure_pg_admin', 'MEMBER') \
             FROM pgaadauth_list_principals(false) WHERE rolname = 'ann'",
        )
    };
    assert_eq!(
        ensure("ann", &ann, "user", false, false).unwrap(),
        "created"
    );
    assert_eq!(flags(), "0,0,false");
    assert_eq!(
        ensure("ann", &ann, "user", false, false).unwrap(),
        "unchanged"
    );
    // The object id in another case and with spaces is the same principal.
    assert_eq!(
        ensure(
            "ann",
            &format!(" {} ", ann.to_uppercase()),
            "user",
            false,
            false
        )
        .unwrap(),
        "unchanged"
    );
    assert_eq!(ensure("ann", &ann, "user", false, true).unwrap(), "updated");
    assert_eq!(flags(), "1,0,false");
    assert_eq!(ensure("ann", &ann, "user", true, true).unwrap(), "updated");
    assert_eq!(flags(), "1,1,true");
    assert_eq!(
        ensure("ann", &ann, "user", true, true).unwrap(),
        "unchanged"
    );

    // Another object id, another type, or a role that is not an Entra principal: an error
    // naming both, and the role is left as it was.
    let other = oid_for("someone-else");
    let e = ensure("ann", &other, "user", true, true).unwrap_err();
    assert!(
        e.contains(&format!(
            "role \"ann\" already exists and is not mapped to user {other}"
        )),
        "{e}"
    );
    assert!(e.contains(&format!("It is mapped to user {ann}.")), "{e}");
    let e = ensure("ann", &ann, "service", true, true).unwrap_err();
    assert!(
        e.contains(&format!("not mapped to service {ann}")) && e.contains("mapped to user"),
        "{e}"
    );
    pg.sql("CREATE ROLE plain LOGIN");
    let e = ensure("plain", &ann, "user", false, false).unwrap_err();
    assert!(
        e.contains("It is not mapped to any Entra principal."),
        "{e}"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_seclabels WHERE objname = 'plain'"),
        "0"
    );
    assert_eq!(flags(), "1,1,true");

    // Azure's function keeps Azure's behaviour: creating a role twice is an error.
    let e = pg
        .try_sql(
            "postgres",
            &format!(
                "SELECT pgaadauth_create_principal_with_oid('ann', '{ann}', 'user', true, true)"
            ),
        )
        .unwrap_err();
    assert!(e.contains("already exists"), "{e}");

    // The privilege rules of creation.
    pg.sql("CREATE ROLE helper LOGIN CREATEROLE");
    let e = pg
        .try_sql(
            "postgres",
            &format!("SET ROLE helper; SELECT pgaadauth_ensure_principal_with_oid('ben', '{}', 'user', false, false)", oid_for("ben")),
        )
        .unwrap_err();
    assert!(
        e.contains("permission denied to create Entra principals"),
        "{e}"
    );
    let e = ensure("", &ann, "user", false, false).unwrap_err();
    assert!(e.contains("roleName must not be empty"), "{e}");
}

#[test]
fn password_logins_are_counted_per_role_until_they_stop_and_survive_a_restart() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("password-logins", &idp.entra_settings());
    pg.sql(
        "CREATE ROLE legacy LOGIN PASSWORD 'legacy-secret'; \
         CREATE ROLE other LOGIN PASSWORD 'other-secret'",
    );
    principal(&pg, "modern", &oid_for("modern"), "user");
    let modern = token(&idp, &oid_for("modern"), json!({}));
    assert!(Cluster::wait_for(WAIT, || pg
        .connect("modern", &modern)
        .is_ok()));
    for _ in 0..2 {
        pg.connect("legacy", "legacy-secret").unwrap();
    }
    pg.connect("other", "other-secret").unwrap();
    assert!(pg.connect("legacy", "wrong").is_err());
    let rows = || pg.sql("SELECT role_name || ':' || logins FROM pgaadauth_password_logins()");
    // At once, before the worker wrote anything; token logins and failures are not counted.
    assert_eq!(rows(), "legacy:2\nother:1");
    assert_eq!(
        pg.sql(
            "SELECT bool_and(first_login <= last_login AND last_login > now() - interval '1 minute') \
             FROM pgaadauth_password_logins()"
        ),
        "t"
    );
    assert!(Cluster::wait_for(WAIT, || {
        pg.sql(
        "SELECT string_agg(role_name || ':' || logins, ',' ORDER BY role_name) FROM pgaadauth.password_logins"
    ) == "legacy:2,other:1"
    }));

    // One more, and a restart at once: written at shutdown, read back at start.
    pg.connect("legacy", "legacy-secret").unwrap();
    pg.restart();
    assert!(
        Cluster::wait_for(WAIT, || rows() == "legacy:3\nother:1"),
        "{}",
        rows()
    );
    pg.connect("other", "other-secret").unwrap();
    assert_eq!(rows(), "legacy:3\nother:2");

    // Deleting a role's row starts its count again (seen at the worker's next reading, here
    // the one after the next password login).
    assert!(Cluster::wait_for(WAIT, || pg.sql(
        "SELECT logins FROM pgaadauth.password_logins WHERE role_name = 'other'"
    ) == "2"));
    pg.sql("DELETE FROM pgaadauth.password_logins WHERE role_name = 'legacy'");
    pg.connect("other", "other-secret").unwrap();
    assert!(
        Cluster::wait_for(WAIT, || rows() == "other:3"),
        "{}",
        rows()
    );

    // A lock on the table holds nothing up: the worker goes on reading revocations (one added
    // by hand is enforced only through its reading), says once why it could not write, and
    // writes when the lock is gone.
    pg.sql("CREATE ROLE locker LOGIN SUPERUSER PASSWORD 'locker-secret'");
    let mut locker = pg.connect("locker", "locker-secret").unwrap();
    let mut held = locker.transaction().unwrap();
    held.batch_execute("LOCK TABLE pgaadauth.password_logins IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    pg.connect("other", "other-secret").unwrap();
    pg.sql(
        "INSERT INTO pgaadauth.revocations VALUES ('00000000-0000-4000-8000-00000000dead', now(), 'test')",
    );
    assert!(Cluster::wait_for(WAIT, || {
        pg.sql(
        "SELECT enforced FROM pgaadauth_list_revocations() WHERE object_id = '00000000-0000-4000-8000-00000000dead'"
    ) == "t"
    }));
    assert!(Cluster::wait_for(WAIT, || {
        pg
        .log()
        .contains("WARNING:  pgaadauth: could not write pgaadauth.password_logins: canceling statement due to lock timeout")
    }));
    assert_eq!(rows(), "locker:1\nother:4");
    held.rollback().unwrap();
    assert!(Cluster::wait_for(WAIT, || pg.sql(
        "SELECT logins FROM pgaadauth.password_logins WHERE role_name = 'other'"
    ) == "4"));
    assert!(pg
        .log()
        .contains("pgaadauth: the session worker writes pgaadauth.password_logins again"));

    // Who may read it: pg_read_all_stats, not anyone.
    pg.sql("CREATE ROLE watcher; GRANT pg_read_all_stats TO watcher; CREATE ROLE nosy");
    assert_eq!(
        pg.try_sql(
            "postgres",
            "SET ROLE watcher; SELECT count(*) FROM pgaadauth_password_logins()"
        )
        .unwrap(),
        "2"
    );
    let e = pg
        .try_sql(
            "postgres",
            "SET ROLE nosy; SELECT * FROM pgaadauth_password_logins()",
        )
        .unwrap_err();
    assert!(
        e.contains("permission denied to read the password logins"),
        "{e}"
    );
    let e = pg
        .try_sql(
            "postgres",
            "SET ROLE nosy; SELECT * FROM pgaadauth.password_logins",
        )
        .unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
}

#[test]
fn a_role_labelled_with_an_application_id_is_told_so() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("application-id", &idp.entra_settings());
    let appid = "0d5be1f4-93a2-4c61-8e7f-1a2b3c4d5e6f";
    let sp = oid_for("billing-service-principal");
    // The common mistake: the application (client) id where the object id belongs.
    principal(&pg, "billing", appid, "service");
    let tok = app_token(&idp, &sp, appid);
    assert!(pg.connect("billing", &tok).is_err());
    let detail = pg.failure_detail("billing").expect("a logged refusal");
    assert!(detail.contains("application (client) id"), "{detail}");
    assert!(detail.contains(&format!("\"{sp}\", instead")), "{detail}");
    let answer = pg.sql(&format!(
        "SELECT pgaadauth_validate_token('{tok}', 'billing')"
    ));
    assert!(answer.contains("application (client) id"), "{answer}");
    assert!(answer.contains(&sp), "{answer}");
    // Fixed as the message says, the login works.
    pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('billing', '{sp}', 'service', false, false)"
    ));
    assert!(pg.connect("billing", &tok).is_ok());
    // Another principal's token, with another application id: no such hint.
    let stranger = app_token(
        &idp,
        &oid_for("stranger"),
        "5a6b7c8d-0000-4000-8000-000000000001",
    );
    assert!(pg.connect("billing", &stranger).is_err());
    let detail = pg.failure_detail("billing").unwrap();
    assert!(!detail.contains("application (client) id"), "{detail}");
}

#[test]
fn roles_and_labels_survive_pg_dumpall_into_a_new_cluster() {
    let idp = Idp::start(&[&RSA1]);
    let source = Cluster::start("dr-source", &idp.entra_settings());
    let group = oid_for("dr-analysts");
    let sp = oid_for("dr-batch");
    principal(&source, "dana", &oid_for("dana"), "user");
    principal(&source, "analysts", &group, "group");
    principal(&source, "batch", &sp, "service");
    source.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('chief', '{}', 'user', true, true)",
        oid_for("chief")
    ));
    let dump = check(
        source
            .tool("pg_dumpall")
            .arg("--roles-only")
            .output()
            .unwrap(),
        "pg_dumpall --roles-only",
    );
    assert!(
        dump.contains("SECURITY LABEL FOR pgaadauth ON ROLE dana IS"),
        "{dump}"
    );
    source.stop();

    // A new cluster with pgaadauth preloaded; the roles restored as the superuser.
    let target = Cluster::start("dr-target", &idp.entra_settings());
    let file = private_file("roles.sql", &dump);
    let out = target
        .tool("psql")
        .args(["-d", "postgres", "-X", "-q", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    for line in errors.lines().filter(|l| l.contains("ERROR")) {
        // The roles the new cluster has already: its superuser, and the administrators' role.
        assert!(
            line.contains("role \"postgres\" already exists")
                || line.contains("role \"azure_pg_admin\" already exists"),
            "{errors}"
        );
    }
    assert_eq!(
        target.sql("SELECT string_agg(rolname || ':' || principalType || ':' || isAdmin, ',' ORDER BY rolname) FROM pgaadauth_list_principals(false)"),
        "analysts:group:0,batch:service:0,chief:user:1,dana:user:0"
    );
    assert_eq!(
        target.sql("SELECT pg_has_role('chief', 'azure_pg_admin', 'MEMBER')"),
        "t"
    );
    let dana = token(&idp, &oid_for("dana"), json!({}));
    assert!(Cluster::wait_for(WAIT, || target
        .connect("dana", &dana)
        .is_ok()));
    let member = token(&idp, &oid_for("erik"), json!({"groups": [group]}));
    target.connect("analysts", &member).unwrap();
    target
        .connect(
            "batch",
            &app_token(&idp, &sp, "7e8f9a0b-1111-4222-8333-444455556666"),
        )
        .unwrap();
    let chief = token(&idp, &oid_for("chief"), json!({"amr": ["pwd", "mfa"]}));
    target.connect("chief", &chief).unwrap();
    // The MFA requirement came along.
    assert!(target
        .connect("chief", &token(&idp, &oid_for("chief"), json!({})))
        .is_err());
}

/// The SQL block of docs/migration.md marked `<!-- tested: name -->`, as its statements.
fn doc_statements(name: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migration.md"))
        .unwrap();
    let marker = format!("<!-- tested: {name} -->\n```sql\n");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no block {name}"))
        + marker.len();
    let block = &doc[at..at + doc[at..].find("```").unwrap()];
    block
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn the_migration_away_from_passwords_as_the_docs_give_it() {
    let idp = Idp::start(&[&RSA1]);
    // The docs' example principals.
    let app = "5d7c1e2a-3b4f-4c6d-8e9f-0a1b2c3d4e5f";
    let app_id = "9e8d7c6b-5a49-4382-9716-2b3c4d5e6f70";
    let erin = "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b";
    let readers = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d";
    idp.dir_add(erin, "user", "erin@contoso.com");
    let pg = Cluster::start("migration", &idp.directory_settings("migration"));
    let run = |db: &str, name: &str| -> Vec<String> {
        doc_statements(name)
            .iter()
            .map(|s| pg.try_sql(db, s).unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    };

    // Before: password roles own and read the application's objects in two databases.
    pg.sql(
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret'; \
         CREATE ROLE reporting LOGIN PASSWORD 'reporting-secret'",
    );
    pg.sql("CREATE DATABASE orders OWNER app_owner");
    pg.sql("CREATE DATABASE billing");
    pg.try_sql(
        "orders",
        "SET ROLE app_owner; CREATE TABLE orders (id int); GRANT SELECT ON orders TO reporting",
    )
    .unwrap();
    pg.try_sql(
        "billing",
        "CREATE TABLE invoices (id int); ALTER TABLE invoices OWNER TO app_owner; \
         GRANT SELECT ON invoices TO reporting",
    )
    .unwrap();

    // 1. Both methods on: password clients log in as before, and are counted.
    let password_clients = || {
        pg.connect_to("orders", "app_owner", "owner-secret")?
            .simple_query("INSERT INTO orders VALUES (1)")?;
        pg.connect_to("billing", "reporting", "reporting-secret")?
            .simple_query("SELECT count(*) FROM invoices")?;
        Ok::<_, postgres::Error>(())
    };
    password_clients().unwrap();

    // 2. Entra roles: by object id, by name through the directory, from a group.
    assert_eq!(
        run("postgres", "create-roles"),
        [
            "created",
            "Created role for erin@contoso.com",
            "Created role for order-readers"
        ]
    );
    // The script runs again where it uses the re-runnable function.
    assert_eq!(pg.sql(&doc_statements("create-roles")[0]), "unchanged");

    // 3. The reader's privileges to the group; the owner's objects to the application, in every
    // database.
    run("postgres", "grant");
    for db in pg
        .sql("SELECT datname FROM pg_database WHERE datallowconn")
        .lines()
    {
        run(db, "reassign");
    }
    run("postgres", "keep-working");
    assert_eq!(
        pg.try_sql(
            "orders",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        )
        .unwrap(),
        "orders-app"
    );
    assert_eq!(
        pg.try_sql(
            "billing",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'invoices'"
        )
        .unwrap(),
        "orders-app"
    );
    assert_eq!(
        pg.sql("SELECT datdba::regrole FROM pg_database WHERE datname = 'orders'"),
        "\"orders-app\""
    );

    // 4. Clients to tokens: the application owns, the group's members read, the user logs in.
    let app_token = app_token(&idp, app, app_id);
    assert!(Cluster::wait_for(WAIT, || pg
        .connect_to("orders", "orders-app", &app_token)
        .is_ok()));
    pg.connect_to("orders", "orders-app", &app_token)
        .unwrap()
        .simple_query("INSERT INTO orders VALUES (2); ALTER TABLE orders ADD COLUMN note text")
        .unwrap();
    pg.connect_to("billing", "orders-app", &app_token)
        .unwrap()
        .simple_query("INSERT INTO invoices VALUES (1)")
        .unwrap();
    let member = token(
        &idp,
        erin,
        json!({"upn": "erin@contoso.com", "groups": [readers]}),
    );
    let mut reader = pg.connect_to("billing", "order-readers", &member).unwrap();
    reader
        .simple_query("SELECT count(*) FROM invoices")
        .unwrap();
    assert!(reader
        .simple_query("INSERT INTO invoices VALUES (3)")
        .is_err());
    pg.connect("erin@contoso.com", &token(&idp, erin, json!({})))
        .unwrap();

    // Watch the password logins: a client still on its password shows; then none after the
    // last one switched.
    let watch = |cutover: &str| {
        let sql = doc_statements("watch")[0].replace(":'cutover'", &format!("'{cutover}'"));
        pg.sql(&sql)
    };
    let before = pg.sql("SELECT now()");
    password_clients().unwrap();
    let rows = watch(&before);
    assert!(
        rows.contains("app_owner|2|") && rows.contains("reporting|2|"),
        "{rows}"
    );
    let cutover = pg.sql("SELECT now()");
    assert_eq!(watch(&cutover), "");

    // 5. Passwords off: the old roles are refused, tokens go on.
    run("postgres", "password-off");
    assert!(Cluster::wait_for(WAIT, || pg
        .connect_to("orders", "app_owner", "owner-secret")
        .is_err()));
    let detail = pg.failure_detail("app_owner").unwrap();
    assert!(
        detail.contains("has no pgaadauth label and pgaadauth.password_auth is off"),
        "{detail}"
    );
    pg.connect_to("orders", "orders-app", &app_token).unwrap();
    pg.connect_to("billing", "order-readers", &member).unwrap();
    assert_eq!(watch(&cutover), "");

    // The old roles go; what they did stays.
    for db in pg
        .sql("SELECT datname FROM pg_database WHERE datallowconn")
        .lines()
    {
        run(db, "drop-owned");
    }
    run("postgres", "drop-roles");
    assert_eq!(
        pg.try_sql("orders", "SELECT count(*) FROM orders").unwrap(),
        "3"
    );
    let mut reader = pg.connect_to("orders", "order-readers", &member).unwrap();
    reader.simple_query("SELECT count(*) FROM orders").unwrap();
}
