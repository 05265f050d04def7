//! Behaviour that differs between PostgreSQL majors, checked on whichever major `PG_CONFIG`
//! names (scripts/test.sh runs every test file on each of 14–18): the authenticated identity
//! (SYSTEM_USER from 16), Entra administrators under 16's CREATEROLE rules, logins to a
//! database other than `postgres`, and MD5 secrets (deprecated in 18).

use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1, TENANT};
use postgres::error::SqlState;
use serde_json::json;
use std::time::Duration;

struct World {
    idp: Idp,
    pg: Cluster,
}

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start(
        "versions",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("log_connections", "on".into()),
        ],
    );
    let w = World { idp, pg };
    w.principal("probe", "user", false);
    let token = w.token("probe", json!({}));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || w
            .pg
            .connect("probe", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        w.pg.log()
    );
    w
});

impl World {
    fn principal(&self, role: &str, kind: &str, admin: bool) {
        self.pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', '{kind}', {admin}, false)",
            oid_for(role)
        ));
    }

    /// A token of the principal named `who`, with `extra` claims.
    fn token(&self, who: &str, extra: serde_json::Value) -> String {
        let mut c = claims(&self.idp.entra_issuer(), &oid_for(who));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&RSA1, &c)
    }
}

fn one(client: &mut postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// The identity log_connections logged for the latest login that recorded `identity`.
fn logged_identity(pg: &Cluster, identity: &str) -> bool {
    let line = format!("connection authenticated: identity=\"{identity}\" method=trust");
    Cluster::wait_for(Duration::from_secs(5), || pg.log().contains(&line))
}

#[test]
fn the_authenticated_identity_is_the_principal_and_for_a_group_login_the_member() {
    let w = &*WORLD;
    let major = cluster::major();
    w.principal("ident-user", "user", false);
    w.principal("ident-group", "group", false);
    w.pg.sql("CREATE ROLE ident_pw LOGIN PASSWORD 'ident-secret'");

    let mut user =
        w.pg.connect("ident-user", &w.token("ident-user", json!({})))
            .unwrap();
    let member = oid_for("ident-member");
    let by_group = w.token("ident-member", json!({"groups": [oid_for("ident-group")]}));
    let mut group = w.pg.connect("ident-group", &by_group).unwrap();
    let mut password = w.pg.connect("ident_pw", "ident-secret").unwrap();

    assert!(
        logged_identity(&w.pg, &oid_for("ident-user")),
        "{}",
        w.pg.log()
    );
    assert!(logged_identity(&w.pg, &member), "{}", w.pg.log());
    assert!(logged_identity(&w.pg, "ident_pw"), "{}", w.pg.log());
    if major >= 16 {
        let system_user = "SELECT system_user";
        assert_eq!(
            one(&mut user, system_user),
            format!("trust:{}", oid_for("ident-user"))
        );
        assert_eq!(one(&mut group, system_user), format!("trust:{member}"));
        assert_eq!(one(&mut password, system_user), "trust:ident_pw");
    }
}

#[test]
fn logins_to_another_database_than_postgres_read_only_shared_catalogs() {
    let w = &*WORLD;
    w.principal("elsewhere-user", "user", false);
    w.pg.sql("CREATE DATABASE elsewhere");
    w.pg.sql("CREATE ROLE elsewhere_scram LOGIN PASSWORD 'scram-secret'");
    w.pg.sql(
        "SET password_encryption = 'md5'; CREATE ROLE elsewhere_md5 LOGIN PASSWORD 'md5-secret'",
    );
    let token = w.token("elsewhere-user", json!({}));
    for (role, password) in [
        ("elsewhere-user", token.as_str()),
        ("elsewhere_scram", "scram-secret"),
        ("elsewhere_md5", "md5-secret"),
    ] {
        let mut c =
            w.pg.connect_to("elsewhere", role, password)
                .unwrap_or_else(|e| panic!("{role}: {e}\n{}", w.pg.log()));
        assert_eq!(
            one(
                &mut c,
                "SELECT current_database()::text || ' ' || current_user::text"
            ),
            format!("elsewhere {role}")
        );
    }
    assert!(!w.pg.log().contains("without having selected a database"));
}

#[test]
fn an_md5_password_login_works_and_tells_the_client_nothing_new() {
    let w = &*WORLD;
    w.pg.sql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'");
    assert!(w
        .pg
        .sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'")
        .starts_with("md5"));
    // psql prints every notice and warning the server sends.
    let (ok, out) = w.pg.psql_login("md5_user", Some("md5-secret"), "SELECT 1");
    assert!(ok, "{out}");
    assert_eq!(out, "1");
    let (ok, out) = w.pg.psql_login("md5_user", Some("wrong"), "SELECT 1");
    assert!(!ok);
    assert!(
        out.contains("password authentication failed for user \"md5_user\""),
        "{out}"
    );
}

#[test]
fn an_entra_administrator_creates_promotes_and_drops_principals_on_every_major() {
    let w = &*WORLD;
    w.principal("first-admin", "user", true);
    w.principal("made-by-superuser", "user", false);
    let token = w.token("first-admin", json!({}));
    let mut admin = w.pg.connect("first-admin", &token).unwrap();
    assert!(!one(
        &mut admin,
        "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"
    )
    .starts_with('t'));

    // Makes another administrator, who is a member of the admin role.
    let made = one(
        &mut admin,
        &format!(
            "SELECT pgaadauth_create_principal_with_oid('second-admin', '{}', 'user', true, false)",
            oid_for("second-admin")
        ),
    );
    assert_eq!(made, "Created role for second-admin");
    assert_eq!(
        w.pg.sql("SELECT pg_has_role('second-admin', 'azure_pg_admin', 'MEMBER')"),
        "t"
    );
    // Drops an Entra role someone else created, and the administrator it made.
    admin
        .batch_execute("DROP ROLE \"made-by-superuser\"")
        .unwrap_or_else(|e| panic!("{e:?}"));
    admin.batch_execute("DROP ROLE \"second-admin\"").unwrap();
    assert_eq!(
        w.pg.sql(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('made-by-superuser', 'second-admin')"
        ),
        "0"
    );

    // Never a superuser, or itself. (Roles that are not Entra roles follow PostgreSQL's rules.)
    w.pg.sql(&format!(
        "CREATE ROLE entra_super SUPERUSER; SECURITY LABEL FOR pgaadauth ON ROLE entra_super IS 'aadauth,oid={},type=user'",
        oid_for("entra-super")
    ));
    for statement in ["DROP ROLE entra_super", "DROP ROLE \"first-admin\""] {
        let err = admin.batch_execute(statement).expect_err(statement);
        let code = err.as_db_error().map(|d| d.code().clone());
        assert!(
            matches!(code, Some(ref c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || *c == SqlState::OBJECT_IN_USE),
            "{statement}: {err:?}"
        );
    }
    assert_eq!(
        w.pg.sql("SELECT count(*) FROM pg_roles WHERE rolname IN ('entra_super', 'first-admin')"),
        "2"
    );
}

/// csrc/shim.c reads `Port`, whose layout differs between majors: compiled against one major's
/// headers for another major's build (feature pgNN) it must not compile at all.
#[test]
fn the_shim_refuses_the_headers_of_another_major() {
    let major = cluster::major();
    let out = std::process::Command::new(cluster::pg_config())
        .arg("--includedir-server")
        .output()
        .unwrap();
    let include = String::from_utf8(out.stdout).unwrap();
    let shim = concat!(env!("CARGO_MANIFEST_DIR"), "/../csrc/shim.c");
    let compile = |claimed: u32| {
        std::process::Command::new("cc")
            .args(["-fsyntax-only", "-I", include.trim(), shim])
            .arg(format!("-DPGAADAUTH_PG_MAJOR={claimed}"))
            .output()
            .unwrap()
    };
    let same = compile(major);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    for other in (14..=18).filter(|m| *m != major) {
        let out = compile(other);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "pg{other} against {major}'s headers compiled"
        );
        assert!(
            stderr.contains("compiled against the headers of another PostgreSQL major"),
            "{stderr}"
        );
    }
}

/// What an Entra administrator runs with the superuser's rights (creating principals, dropping
/// Entra roles) never runs its own code as the superuser, never outlasts the statement (an
/// error caught in PL/pgSQL included), and never lifts PostgreSQL 16's rules for labelling a
/// role or dropping a REPLICATION role.
#[test]
fn an_entra_administrator_never_gets_the_superusers_rights() {
    let w = &*WORLD;
    w.principal("hijacker", "user", true);
    w.pg.sql("CREATE SCHEMA evil AUTHORIZATION hijacker");
    let mut admin =
        w.pg.connect("hijacker", &w.token("hijacker", json!({})))
            .unwrap();
    let is_superuser = |c: &mut postgres::Client| {
        one(
            c,
            "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'hijacker'",
        )
    };

    // An operator of its own schema first in search_path: never called while elevated.
    admin
        .batch_execute(
            "CREATE FUNCTION evil.eq(name, text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN EXECUTE 'ALTER ROLE hijacker SUPERUSER'; RETURN $1::text = $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.eq);
             CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN EXECUTE 'ALTER ROLE hijacker SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
             SET search_path = evil, pg_catalog",
        )
        .unwrap();
    let made = one(
        &mut admin,
        &format!(
            "SELECT pgaadauth_create_principal_with_oid('hijacked-admin', '{}', 'user', true, false)",
            oid_for("hijacked-admin")
        ),
    );
    assert_eq!(made, "Created role for hijacked-admin");
    assert_eq!(is_superuser(&mut admin), "false");
    admin.batch_execute("RESET search_path").unwrap();

    // An error inside the elevated statements, caught in PL/pgSQL: back to itself.
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               PERFORM pgaadauth_create_principal_with_oid('hijacked-admin', '{}', 'user', false, false);
             EXCEPTION WHEN others THEN NULL; END $$",
            oid_for("hijacked-admin")
        ))
        .unwrap();
    assert_eq!(one(&mut admin, "SELECT current_user::text"), "hijacker");
    let err = admin
        .batch_execute("CREATE ROLE sneaky SUPERUSER")
        .expect_err("CREATE ROLE SUPERUSER");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    );

    // PostgreSQL 16+'s own rules stay: no label on a role it may not administer, and no
    // DROP of an Entra role that has REPLICATION.
    w.pg.sql("CREATE ROLE app_owner LOGIN");
    w.pg.sql(&format!(
        "CREATE ROLE repl_entra LOGIN REPLICATION; SECURITY LABEL FOR pgaadauth ON ROLE repl_entra IS 'aadauth,oid={},type=user'",
        oid_for("repl-entra")
    ));
    if cluster::major() >= 16 {
        for statement in [
            format!(
                "SECURITY LABEL FOR pgaadauth ON ROLE app_owner IS 'aadauth,oid={},type=user'",
                oid_for("hijacker")
            ),
            "DROP ROLE repl_entra".to_string(),
        ] {
            let err = admin.batch_execute(&statement).expect_err(&statement);
            assert_eq!(
                err.as_db_error().map(|d| d.code()),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{statement}: {err:?}"
            );
        }
        assert_eq!(
            w.pg.sql("SELECT count(*) FROM pg_shseclabel l JOIN pg_roles r ON r.oid = l.objoid WHERE r.rolname = 'app_owner'"),
            "0"
        );
    }
    assert_eq!(
        w.pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'repl_entra'"),
        "1"
    );
    assert_eq!(is_superuser(&mut admin), "false");
}
