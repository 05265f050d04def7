//! `#[pg_test]`s: run inside a server with pgaadauth preloaded (cargo pgrx test).

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";

    fn label_of(role: &str) -> Option<String> {
        Spi::get_one(&format!(
            "SELECT (SELECT s.label FROM pg_shseclabel s JOIN pg_roles r ON r.oid = s.objoid \
             WHERE r.rolname = '{role}' AND s.provider = 'pgaadauth')"
        ))
        .unwrap()
    }

    #[pg_test]
    fn azure_label_form_is_accepted() {
        Spi::run("CREATE ROLE t_azure LOGIN").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_azure IS 'aadauth,oid={OID},type=user,admin'"
        ))
        .unwrap();
        assert_eq!(
            label_of("t_azure"),
            Some(format!("aadauth,oid={OID},type=user,admin"))
        );
        Spi::run("SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_azure IS NULL").unwrap();
        assert_eq!(label_of("t_azure"), None);
    }

    #[pg_test(error = "invalid pgaadauth label for role \"t_bad\"")]
    fn malformed_label_is_refused() {
        Spi::run("CREATE ROLE t_bad LOGIN").unwrap();
        Spi::run("SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_bad IS 'aadauth,oid=bob,type=user'")
            .unwrap();
    }

    #[pg_test(error = "pgaadauth labels can only be set on roles")]
    fn labels_only_on_roles() {
        Spi::run("CREATE TABLE t_table (x int)").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON TABLE t_table IS 'aadauth,oid={OID},type=user'"
        ))
        .unwrap();
    }

    #[pg_test(error = "permission denied to set the pgaadauth label of role \"t_victim\"")]
    fn createrole_alone_may_not_set_labels() {
        Spi::run("CREATE ROLE t_victim LOGIN").unwrap();
        Spi::run("CREATE ROLE t_manager CREATEROLE").unwrap();
        Spi::run("SET ROLE t_manager").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_victim IS 'aadauth,oid={OID},type=user'"
        ))
        .unwrap();
    }

    #[pg_test]
    fn entra_admin_may_set_labels() {
        Spi::run("CREATE ROLE t_admin CREATEROLE").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_admin IS 'aadauth,oid={OID},type=group,admin'"
        ))
        .unwrap();
        // A role it may administer (from 16: one it created, which gives it ADMIN OPTION).
        Spi::run("SET ROLE t_admin").unwrap();
        Spi::run("CREATE ROLE t_member LOGIN").unwrap();
        Spi::run(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_member IS 'aadauth,oid=00000000-0000-0000-0000-000000000001,type=user'",
        )
        .unwrap();
        Spi::run("RESET ROLE").unwrap();
        assert!(label_of("t_member").is_some());
    }

    /// An Entra admin is not a superuser: mapping a superuser role to its own object id would
    /// hand it the superuser.
    #[pg_test(
        error = "permission denied to set the pgaadauth label of role \"t_super\": it is a superuser"
    )]
    fn entra_admin_cannot_label_a_superuser() {
        Spi::run("CREATE ROLE t_admin2 CREATEROLE").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_admin2 IS 'aadauth,oid={OID},type=user,admin'"
        ))
        .unwrap();
        Spi::run("CREATE ROLE t_super SUPERUSER").unwrap();
        Spi::run("SET ROLE t_admin2").unwrap();
        Spi::run(&format!(
            "SECURITY LABEL FOR \"pgaadauth\" ON ROLE t_super IS 'aadauth,oid={OID},type=user'"
        ))
        .unwrap();
    }

    #[pg_test]
    fn create_principal_with_oid_and_list() {
        let r: String = Spi::get_one(&format!(
            "SELECT pgaadauth_create_principal_with_oid('alice@contoso.com', '{}', 'user', false, true)",
            OID.to_uppercase()
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r, "Created role for alice@contoso.com");
        let r: String = Spi::get_one(
            "SELECT pgaadauth_create_principal_with_oid('dba-group', '00000000-0000-0000-0000-0000000000aa', 'group', true, false)",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r, "Created role for dba-group");
        assert_eq!(
            label_of("alice@contoso.com"),
            Some(format!("aadauth,oid={OID},type=user,mfa"))
        );
        let admins: i64 = Spi::get_one("SELECT count(*) FROM pgaadauth_list_principals(true)")
            .unwrap()
            .unwrap();
        assert_eq!(admins, 1);
        let row: (Option<String>, Option<String>, Option<String>) = Spi::get_three(
            "SELECT principaltype, objectid, ismfa || ',' || isadmin FROM pgaadauth_list_principals(false) WHERE rolname = 'alice@contoso.com'",
        )
        .unwrap();
        assert_eq!(
            row,
            (Some("user".into()), Some(OID.into()), Some("1,0".into()))
        );
        // The admin is a member of azure_pg_admin, with CREATEROLE and CREATEDB.
        let ok: bool = Spi::get_one(
            "SELECT pg_has_role('dba-group', 'azure_pg_admin', 'MEMBER') AND rolcreaterole AND rolcreatedb FROM pg_roles WHERE rolname = 'dba-group'",
        )
        .unwrap()
        .unwrap();
        assert!(ok);
        let login: bool =
            Spi::get_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'alice@contoso.com'")
                .unwrap()
                .unwrap();
        assert!(login);
    }

    #[pg_test(error = "no directory is configured to resolve \"alice@contoso.com\"")]
    fn create_principal_without_directory_points_to_with_oid() {
        Spi::run("SELECT pgaadauth_create_principal('alice@contoso.com', false, false)").unwrap();
    }

    #[pg_test(error = "objectId \"not-a-guid\" is not a GUID")]
    fn create_principal_refuses_bad_oid() {
        Spi::run(
            "SELECT pgaadauth_create_principal_with_oid('x', 'not-a-guid', 'user', false, false)",
        )
        .unwrap();
    }

    #[pg_test(error = "objectType \"robot\" is not valid")]
    fn create_principal_refuses_bad_type() {
        Spi::run(&format!(
            "SELECT pgaadauth_create_principal_with_oid('x', '{OID}', 'robot', false, false)"
        ))
        .unwrap();
    }

    #[pg_test(error = "permission denied to create Entra principals")]
    fn create_principal_needs_admin() {
        Spi::run("CREATE ROLE t_plain CREATEROLE").unwrap();
        Spi::run("SET ROLE t_plain").unwrap();
        Spi::run(&format!(
            "SELECT pgaadauth_create_principal_with_oid('x', '{OID}', 'user', false, false)"
        ))
        .unwrap();
    }

    #[pg_test]
    fn settings_have_documented_defaults() {
        for (name, want) in [
            (
                "pgaadauth.audiences",
                "https://ossrdbms-aad.database.windows.net",
            ),
            ("pgaadauth.principal_claim", "oid"),
            ("pgaadauth.allowed_algorithms", "RS256"),
            ("pgaadauth.clock_skew", "5min"),
            ("pgaadauth.password_auth", "on"),
            ("pgaadauth.refresh_interval", "1h"),
            ("pgaadauth.http_timeout", "10s"),
            ("pgaadauth.allow_http", "off"),
            ("pgaadauth.max_keys", "64"),
            ("pgaadauth.min_refresh_interval", "1min"),
            ("pgaadauth.kid_miss_wait", "2s"),
            ("pgaadauth.max_stale", "1d"),
            ("pgaadauth.graph_endpoint", "https://graph.microsoft.com"),
            ("pgaadauth.group_cache_ttl", "5min"),
            ("pgaadauth.log_logins", "all"),
            ("pgaadauth.log_format", "pgaadauth"),
            ("pgaadauth.admin_role", "azure_pg_admin"),
            (
                "pgaadauth.authority_host",
                "https://login.microsoftonline.com",
            ),
        ] {
            let got: String = Spi::get_one(&format!("SELECT current_setting('{name}')"))
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{name}");
        }
    }

    #[pg_test(error = "permission denied to read the pgaadauth key status")]
    fn key_status_needs_admin() {
        Spi::run("CREATE ROLE t_reader").unwrap();
        Spi::run("SET ROLE t_reader").unwrap();
        Spi::run("SELECT * FROM pgaadauth_jwks_status()").unwrap();
    }

    #[pg_test]
    fn key_status_for_monitoring() {
        // pg_monitor reads the key status (no secret in it), as the exporter does.
        Spi::run("CREATE ROLE t_monitor IN ROLE pg_monitor").unwrap();
        Spi::run("SET ROLE t_monitor").unwrap();
        Spi::run("SELECT count(*) FROM pgaadauth_jwks_status()").unwrap();
        Spi::run("SELECT count(*) FROM pgaadauth_stats()").unwrap();
    }

    #[pg_test(error = "permission denied to refresh the pgaadauth signing keys")]
    fn key_refresh_needs_admin() {
        Spi::run("CREATE ROLE t_refresher").unwrap();
        Spi::run("SET ROLE t_refresher").unwrap();
        Spi::run("SELECT pgaadauth_refresh_jwks()").unwrap();
    }

    #[pg_test]
    fn key_table_is_in_shared_memory() {
        let n: i64 = Spi::get_one(
            "SELECT count(*) FROM pg_shmem_allocations WHERE name = 'pgaadauth key table' AND size > 0",
        )
        .unwrap()
        .unwrap();
        assert_eq!(n, 1);
    }
}
