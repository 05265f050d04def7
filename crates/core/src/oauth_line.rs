//! Which token issuers a PostgreSQL 18 `oauth` line of pg_hba.conf admits (pure, no pgrx).
//!
//! The line's `issuer` option tells clients where to get a token. pgaadauth admits on that
//! line only tokens of that issuer, and only when it is one pgaadauth accepts at all
//! (`pgaadauth.issuers`, or the tenant's). Entra names one tenant's issuer two ways: a v2.0
//! issuer (`{authority}/{tenant}/v2.0`, what clients discover) and a v1 issuer
//! (`https://sts.windows.net/{tenant}/`, what Azure's `oss-rdbms` tokens carry). A line naming
//! either admits both.

use crate::config::derived_issuers;

/// The issuer a line's `issuer` option names: PostgreSQL also accepts the URL of the
/// discovery document itself there (`…/.well-known/openid-configuration`, or RFC 8414's
/// `{origin}/.well-known/oauth-authorization-server{path}`).
pub fn issuer_of_line_option(option: &str) -> String {
    let Some(at) = option.find("/.well-known/") else {
        return option.to_string();
    };
    let (origin, well_known) = option.split_at(at);
    let rest = &well_known["/.well-known/".len()..];
    // RFC 8414 puts the issuer's path after the well-known name.
    for name in ["oauth-authorization-server", "openid-configuration"] {
        if let Some(path) = rest.strip_prefix(name) {
            if path.starts_with('/') && origin.matches('/').count() == 2 {
                return format!("{origin}{path}");
            }
        }
    }
    origin.to_string()
}

fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Of the `accepted` issuers, those a token may carry on an `oauth` line whose `issuer`
/// option is `line_option`. Empty: pgaadauth accepts no issuer the line names.
pub fn admitted_issuers(
    line_option: &str,
    accepted: &[String],
    tenant_id: &str,
    authority_host: &str,
) -> Vec<String> {
    let line = issuer_of_line_option(line_option);
    let mut names = vec![line.clone()];
    if !tenant_id.is_empty() {
        let twins = derived_issuers(tenant_id, authority_host);
        if twins.iter().any(|t| same_issuer(t, &line)) {
            names.extend(twins);
        }
    }
    accepted
        .iter()
        .filter(|a| names.iter().any(|n| same_issuer(n, a)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "11111111-2222-3333-4444-555555555555";
    const AUTHORITY: &str = "https://login.microsoftonline.com";

    fn entra() -> Vec<String> {
        derived_issuers(TID, AUTHORITY)
    }

    #[test]
    fn a_line_naming_either_entra_issuer_admits_both() {
        let v2 = format!("{AUTHORITY}/{TID}/v2.0");
        let v1 = format!("https://sts.windows.net/{TID}/");
        assert_eq!(admitted_issuers(&v2, &entra(), TID, AUTHORITY), entra());
        assert_eq!(admitted_issuers(&v1, &entra(), TID, AUTHORITY), entra());
    }

    #[test]
    fn a_discovery_url_on_the_line_names_its_issuer() {
        let url = format!("{AUTHORITY}/{TID}/v2.0/.well-known/openid-configuration");
        assert_eq!(admitted_issuers(&url, &entra(), TID, AUTHORITY), entra());
        assert_eq!(
            issuer_of_line_option("https://idp.example/.well-known/oauth-authorization-server/t1"),
            "https://idp.example/t1"
        );
        assert_eq!(
            issuer_of_line_option("https://idp.example/t1/.well-known/openid-configuration"),
            "https://idp.example/t1"
        );
    }

    #[test]
    fn another_tenant_or_issuer_is_not_admitted() {
        let other = format!("{AUTHORITY}/99999999-2222-3333-4444-555555555555/v2.0");
        assert!(admitted_issuers(&other, &entra(), TID, AUTHORITY).is_empty());
        assert!(admitted_issuers("https://evil.example", &entra(), TID, AUTHORITY).is_empty());
        // A prefix of an accepted issuer is another issuer.
        assert!(admitted_issuers(AUTHORITY, &entra(), TID, AUTHORITY).is_empty());
    }

    #[test]
    fn a_generic_issuer_admits_only_itself_trailing_slash_aside() {
        let accepted = vec![
            "https://idp.example/realms/a".to_string(),
            "https://idp.example/realms/b/".to_string(),
        ];
        assert_eq!(
            admitted_issuers("https://idp.example/realms/a/", &accepted, "", AUTHORITY),
            vec!["https://idp.example/realms/a".to_string()]
        );
        assert_eq!(
            admitted_issuers("https://idp.example/realms/b", &accepted, "", AUTHORITY),
            vec!["https://idp.example/realms/b/".to_string()]
        );
    }

    #[test]
    fn entra_twins_are_admitted_only_when_accepted() {
        // pgaadauth.issuers lists only the v2 issuer: a v1 line admits just that one.
        let v2 = format!("{AUTHORITY}/{TID}/v2.0");
        let accepted = vec![v2.clone()];
        let v1 = format!("https://sts.windows.net/{TID}/");
        assert_eq!(admitted_issuers(&v1, &accepted, TID, AUTHORITY), vec![v2]);
    }
}
