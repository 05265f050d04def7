//! The binding rule, tried as an Entra administrator with its own token would: no pgaadauth
//! function and no `SECURITY LABEL` maps a principal to a role whose privileges reach beyond
//! the administrator's (a superuser or a privileged predefined role through any chain of
//! memberships, REPLICATION, BYPASSRLS, a role it neither holds nor could grant).

use pgaadauth_e2e::cluster::{major, Cluster};
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1, TENANT};
use serde_json::json;
use std::time::Duration;

fn start(name: &str) -> (Idp, Cluster) {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start(
        name,
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    (idp, pg)
}

fn token(idp: &Idp, who: &str) -> String {
    let mut c = claims(&idp.entra_issuer(), &oid_for(who));
    c["amr"] = json!(["pwd"]);
    mint(&RSA1, &c)
}

/// The SQLSTATE and message of a statement that must fail.
fn refused(client: &mut postgres::Client, sql: &str) -> (String, String) {
    let e = client
        .simple_query(sql)
        .expect_err(&format!("{sql} must be refused"));
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// The label of `role`, or "" when it has none.
fn label(pg: &Cluster, role: &str) -> String {
    pg.sql(&format!(
        "SELECT coalesce((SELECT label FROM pg_shseclabel s WHERE s.provider = 'pgaadauth' \
           AND s.objoid = '{role}'::regrole), '')"
    ))
}

#[test]
fn an_entra_administrator_never_rebinds_a_role_reaching_beyond_its_own_privileges() {
    let (idp, pg) = start("privileges-rebind");
    for (role, who, admin) in [("boss", "boss", true), ("ops", "ops", false)] {
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', 'user', {admin}, false)",
            oid_for(who)
        ));
    }
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("boss", &token(&idp, "boss"))
        .is_ok()));
    let ops_label = label(&pg, "ops");
    pg.sql(
        "CREATE ROLE middle NOLOGIN; CREATE ROLE secret_readers NOLOGIN; \
         CREATE ROLE rls NOLOGIN BYPASSRLS; GRANT pg_read_server_files TO middle",
    );
    let mut boss = pg.connect("boss", &token(&idp, "boss")).unwrap();
    let rebind = |kind: &str| {
        format!(
            "SELECT pgaadauth_update_principal_with_oid('ops', '{}', '{kind}', false, false)",
            oid_for("boss")
        )
    };
    for (grant, why) in [
        (
            "GRANT postgres TO ops",
            "it is a member of \"postgres\", a superuser role",
        ),
        (
            "GRANT pg_execute_server_program TO ops",
            "it is a member of \"pg_execute_server_program\"",
        ),
        (
            "GRANT middle TO ops",
            "it is a member of \"pg_read_server_files\"",
        ),
        (
            "GRANT pg_read_all_data TO ops",
            "it is a member of \"pg_read_all_data\"",
        ),
        (
            "GRANT rls TO ops",
            "it is a member of \"rls\", a BYPASSRLS role",
        ),
        (
            "GRANT secret_readers TO ops",
            "it is a member of \"secret_readers\", which you are not a member of and hold no ADMIN OPTION on",
        ),
        ("ALTER ROLE ops REPLICATION", "it is a REPLICATION role"),
    ] {
        pg.sql(grant);
        for kind in ["user", "group"] {
            let (code, message) = refused(&mut boss, &rebind(kind));
            assert_eq!(code, "42501", "{grant}: {message}");
            assert_eq!(
                message,
                format!("permission denied to map role \"ops\" to an Entra principal: {why}"),
                "{grant}"
            );
        }
        // Nothing changed: the label is the old one, boss's token does not open ops.
        assert_eq!(label(&pg, "ops"), ops_label, "{grant}");
        assert!(pg.connect("ops", &token(&idp, "boss")).is_err(), "{grant}");
        pg.sql(&grant.replace("GRANT", "REVOKE").replace(" TO ", " FROM "));
        pg.sql("ALTER ROLE ops NOREPLICATION");
    }
    // A privilege on an object (here SELECT on a table boss cannot read) refuses too: the
    // role's objects and grants go with it to whoever it is mapped to.
    pg.sql("CREATE TABLE secret (x int); GRANT SELECT ON secret TO ops");
    let (code, message) = refused(&mut boss, &rebind("user"));
    assert_eq!(code, "42501");
    assert_eq!(
        message,
        "permission denied to map role \"ops\" to an Entra principal: it owns objects or holds privileges on them, and you are not a member of it and hold no ADMIN OPTION on it"
    );
    pg.sql("DROP TABLE secret");

    // Changing only the flags of a role reaching a superuser is refused too.
    pg.sql("GRANT postgres TO ops");
    let (code, message) = refused(
        &mut boss,
        &format!(
            "SELECT pgaadauth_update_principal_with_oid('ops', '{}', 'user', false, true)",
            oid_for("ops")
        ),
    );
    assert_eq!(code, "42501", "{message}");
    pg.sql("REVOKE postgres FROM ops");

    // With nothing beyond boss's own privileges, the rebinding is allowed (the refusals above
    // were the memberships'), and a membership boss holds itself is no obstacle.
    pg.sql("GRANT secret_readers TO boss; GRANT secret_readers TO ops");
    boss.simple_query(&rebind("user")).unwrap();
    pg.connect("ops", &token(&idp, "boss")).unwrap();

    // A superuser may still map any role.
    pg.sql("GRANT postgres TO ops");
    pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('ops', '{}', 'user', false, false)",
        oid_for("ops")
    ));
    assert!(label(&pg, "ops").contains(&oid_for("ops")));
}

#[test]
fn an_administrator_without_createrole_cannot_give_a_role_it_holds_createrole() {
    let (idp, pg) = start("privileges-admin-flag");
    // An Entra administrator by its label alone: no CREATEROLE, no CREATEDB.
    pg.sql(&format!(
        "CREATE ROLE lab LOGIN; SECURITY LABEL FOR pgaadauth ON ROLE lab IS 'aadauth,oid={},type=user,admin'",
        oid_for("lab")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("lab", &token(&idp, "lab"))
        .is_ok()));
    let mut lab = pg.connect("lab", &token(&idp, "lab")).unwrap();
    // A role of its own, mapped to itself: allowed (nothing beyond its privileges) ...
    lab.simple_query(&format!(
        "SELECT pgaadauth_create_principal_with_oid('b2', '{}', 'user', false, false)",
        oid_for("lab")
    ))
    .unwrap();
    // ... but made an administrator (CREATEROLE, CREATEDB) it is not.
    for sql in [
        format!(
            "SELECT pgaadauth_update_principal_with_oid('b2', '{}', 'user', true, false)",
            oid_for("lab")
        ),
        format!(
            "SELECT pgaadauth_create_principal_with_oid('b3', '{}', 'user', true, false)",
            oid_for("lab")
        ),
    ] {
        let (code, message) = refused(&mut lab, &sql);
        assert_eq!(code, "42501", "{sql}");
        assert!(
            message.ends_with("it has CREATEROLE, which you do not have"),
            "{sql}: {message}"
        );
    }
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_roles WHERE rolcreaterole AND rolname IN ('b2', 'b3')"),
        "0"
    );
}

#[test]
fn an_operator_of_the_callers_search_path_does_not_take_part_in_the_check() {
    let (idp, pg) = start("privileges-search-path");
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('boss', '{}', 'user', true, false); \
         SELECT pgaadauth_create_principal_with_oid('ops', '{}', 'user', false, false); \
         GRANT postgres TO ops",
        oid_for("boss"),
        oid_for("ops")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("boss", &token(&idp, "boss"))
        .is_ok()));
    // boss makes a database of its own (CREATEDB), and there an operator "=" on oids that
    // hides the bootstrap superuser, first on its search_path.
    let mut boss = pg.connect("boss", &token(&idp, "boss")).unwrap();
    boss.simple_query("CREATE DATABASE bossdb").unwrap();
    let mut there = pg
        .connect_to("bossdb", "boss", &token(&idp, "boss"))
        .unwrap();
    there
        .batch_execute(
            "CREATE SCHEMA evil; \
             CREATE FUNCTION evil.eq(oid, oid) RETURNS bool LANGUAGE sql \
               AS 'SELECT $1 OPERATOR(pg_catalog.=) $2 AND $1 OPERATOR(pg_catalog.<>) 10'; \
             CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq); \
             SET search_path = evil, pg_catalog",
        )
        .unwrap();
    for label in ["group", "user"] {
        let (code, message) = refused(
            &mut there,
            &format!(
                "SECURITY LABEL FOR pgaadauth ON ROLE ops IS 'aadauth,oid={},type={label}'",
                oid_for("boss")
            ),
        );
        assert_eq!(code, "42501", "{message}");
    }
    assert!(label(&pg, "ops").contains(&oid_for("ops")));
}

#[test]
fn security_label_by_an_entra_administrator_follows_the_same_rule() {
    let (idp, pg) = start("privileges-label");
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('boss', '{}', 'user', true, false)",
        oid_for("boss")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("boss", &token(&idp, "boss"))
        .is_ok()));
    pg.sql(
        "CREATE ROLE repl LOGIN REPLICATION; CREATE ROLE rls LOGIN BYPASSRLS; \
         CREATE ROLE execs LOGIN; GRANT pg_execute_server_program TO execs; \
         CREATE ROLE plain LOGIN",
    );
    let mut boss = pg.connect("boss", &token(&idp, "boss")).unwrap();
    let boss_label = format!("aadauth,oid={},type=user", oid_for("boss"));
    for role in ["repl", "rls", "execs", "postgres"] {
        let (code, message) = refused(
            &mut boss,
            &format!("SECURITY LABEL FOR pgaadauth ON ROLE {role} IS '{boss_label}'"),
        );
        assert_eq!(code, "42501", "{role}: {message}");
        // Up to 15 PostgreSQL lets CREATEROLE label any role: pgaadauth's rule refuses.
        if major() <= 15 && role != "postgres" {
            assert!(
                message.starts_with(&format!(
                    "permission denied to map role \"{role}\" to an Entra principal: it "
                )),
                "{role}: {message}"
            );
        }
        assert_eq!(label(&pg, role), "", "{role}");
        assert!(pg.connect(role, &token(&idp, "boss")).is_err(), "{role}");
    }
    // A logical replication slot stays out of reach.
    assert!(boss
        .simple_query("SELECT pg_create_logical_replication_slot('s', 'test_decoding')")
        .is_err());
    // Up to 15 an Entra administrator (CREATEROLE) may still label a role that holds nothing
    // beyond its own privileges; from 16 PostgreSQL asks for ADMIN OPTION on it, which
    // boss has on a role it created.
    boss.simple_query("CREATE ROLE mine LOGIN").unwrap();
    boss.simple_query(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE mine IS '{boss_label}'"
    ))
    .unwrap();
    pg.connect("mine", &token(&idp, "boss")).unwrap();
    if major() <= 15 {
        boss.simple_query(&format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE plain IS '{boss_label}'"
        ))
        .unwrap();
        // ... but not once it reaches a privileged predefined role.
        boss.simple_query("GRANT pg_write_server_files TO mine")
            .unwrap();
        let (code, message) = refused(
            &mut boss,
            &format!(
                "SECURITY LABEL FOR pgaadauth ON ROLE mine IS 'aadauth,oid={},type=group'",
                oid_for("boss")
            ),
        );
        assert_eq!(code, "42501");
        assert_eq!(
            message,
            "permission denied to map role \"mine\" to an Entra principal: it is a member of \"pg_write_server_files\""
        );
    }
}
