//! pgaadauth_update_principal_with_oid: an Entra role rebound in place, with the create
//! functions' privilege rules, and no way for an Entra administrator to take over other roles.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1, TENANT};
use serde_json::json;
use std::time::Duration;

#[test]
fn an_entra_role_is_rebound_in_place_and_only_entra_roles_are() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start(
        "principals-update",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    let token = |who: &str| {
        let mut c = claims(&idp.entra_issuer(), &oid_for(who));
        c["amr"] = json!(["pwd"]);
        mint(&RSA1, &c)
    };
    let create = |role: &str, who: &str, admin: bool| {
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', 'user', {admin}, false)",
            oid_for(who)
        ))
    };
    create("ann", "ann", false);
    create("boss", "boss", true);
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token("ann"))
        .is_ok()));
    pg.sql("CREATE TABLE owned (x int); ALTER TABLE owned OWNER TO ann");

    // An Entra administrator may not hand a role's objects to a principal: ann owns a table.
    let mut boss = pg.connect("boss", &token("boss")).unwrap();
    let rebind_ann = format!(
        "SELECT pgaadauth_update_principal_with_oid('ann', '{}', 'user', false, false)",
        oid_for("ann-new").to_uppercase()
    );
    let e = boss.simple_query(&rebind_ann).unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert_eq!(
        db.message(),
        "permission denied to map role \"ann\" to an Entra principal: it owns objects or holds privileges on them, and you are not a member of it and hold no ADMIN OPTION on it"
    );
    assert!(
        // "owner of table owned" ("public.owned" up to 15, whose search_path shows it).
        db.detail()
            .is_some_and(|d| d.contains("owner of table ") && d.contains("owned")),
        "{:?}",
        db.detail()
    );
    // Rebound to another principal (by a superuser): the old one no longer logs in, the new
    // one does, and the role (with what it owns) stays.
    let updated = pg.sql(&rebind_ann);
    assert_eq!(updated, "Updated role for ann");
    assert!(pg.connect("ann", &token("ann")).is_err());
    pg.connect("ann", &token("ann-new")).unwrap();
    assert_eq!(
        pg.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"),
        "ann"
    );
    assert_eq!(
        pg.sql("SELECT objectid || ' ' || isadmin || ' ' || ismfa FROM pgaadauth_list_principals(false) WHERE rolname = 'ann'"),
        format!("{} 0 0", oid_for("ann-new"))
    );

    // Made an administrator, then not: the membership and the rights follow.
    pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('ann', '{}', 'user', true, true)",
        oid_for("ann-new")
    ));
    assert_eq!(
        pg.sql("SELECT rolcreaterole || ' ' || pg_has_role('ann', 'azure_pg_admin', 'MEMBER') FROM pg_roles WHERE rolname = 'ann'"),
        "true true"
    );
    // MFA now required: a token without it is refused.
    assert!(pg.connect("ann", &token("ann-new")).is_err());
    pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('ann', '{}', 'user', false, false)",
        oid_for("ann-new")
    ));
    assert_eq!(
        pg.sql("SELECT rolcreaterole || ' ' || pg_has_role('ann', 'azure_pg_admin', 'MEMBER') FROM pg_roles WHERE rolname = 'ann'"),
        "false false"
    );

    // An Entra administrator cannot map a role that is not an Entra principal (taking it
    // over), nor a superuser, nor itself; arguments are checked as for create.
    pg.sql("CREATE ROLE app LOGIN PASSWORD 'secret'");
    for (sql, error) in [
        (
            format!("SELECT pgaadauth_update_principal_with_oid('app', '{}', 'user', false, false)", oid_for("boss")),
            "permission denied to update role \"app\": it is not mapped to an Entra principal",
        ),
        (
            format!("SELECT pgaadauth_update_principal_with_oid('postgres', '{}', 'user', false, false)", oid_for("boss")),
            "permission denied to update role \"postgres\"",
        ),
        (
            format!("SELECT pgaadauth_update_principal_with_oid('boss', '{}', 'user', true, false)", oid_for("other")),
            "permission denied to update role \"boss\": it is your own role",
        ),
        (
            format!("SELECT pgaadauth_update_principal_with_oid('nobody', '{}', 'user', false, false)", oid_for("x")),
            "role \"nobody\" does not exist",
        ),
        (
            "SELECT pgaadauth_update_principal_with_oid('ann', 'not-a-guid', 'user', false, false)".to_string(),
            "objectId \"not-a-guid\" is not a GUID",
        ),
        (
            format!("SELECT pgaadauth_update_principal_with_oid('ann', '{}', 'robot', false, false)", oid_for("x")),
            "objectType \"robot\" is not valid",
        ),
    ] {
        let e = boss.simple_query(&sql).unwrap_err();
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(message.starts_with(error), "{sql}: {message}");
    }
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_shseclabel s JOIN pg_roles r ON r.oid = s.objoid WHERE r.rolname IN ('app', 'postgres')"),
        "0"
    );
    // A role without LOGIN rights to manage principals cannot call it at all.
    let mut ann = pg.connect("ann", &token("ann-new")).unwrap();
    let e = ann
        .simple_query(&format!(
            "SELECT pgaadauth_update_principal_with_oid('ann', '{}', 'user', true, false)",
            oid_for("ann-new")
        ))
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "{e}"
    );
    // A superuser may map any role.
    pg.sql(&format!(
        "SELECT pgaadauth_update_principal_with_oid('app', '{}', 'service', false, false)",
        oid_for("app")
    ));
    pg.connect("app", &token("app")).unwrap();
}
