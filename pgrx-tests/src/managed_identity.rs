//! The test provider's managed identity endpoint, in Azure App Service's protocol: what
//! azure-identity's `ManagedIdentityCredential` (and `DefaultAzureCredential`) asks when
//! `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set, and what the Azure CLI stand-in
//! (clients/az) asks. Each answer is a fresh access token for one identity, signed by the
//! provider, whose audience is the resource asked for and which expires after a few seconds.
//!
//! `GET /app-service/token?api-version=2019-08-01&resource=R` with `X-IDENTITY-HEADER` →
//! `{"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type"}`.

use crate::cluster::{tls_settings, Cluster};
use crate::idp::{mint, oid_for, unix_now, Idp, Key, RSA1, TENANT};
use serde_json::json;

/// The path of the endpoint, under the provider's base URL.
pub const PATH: &str = "/app-service/token";
/// The secret header value the endpoint requires, as App Service's `IDENTITY_HEADER`.
pub const IDENTITY_HEADER: &str = "pgaadauth-test-identity-header";

/// The provider issuing tokens of `lifetime` seconds for the managed identity `role`, and a
/// server (with `settings` besides the provider's and TLS's) that takes TCP logins only over
/// TLS (pgaadauth's trust line), where `role` is a service principal.
pub fn served_identity(
    name: &str,
    role: &str,
    lifetime: i64,
    settings: &[(&'static str, String)],
) -> (Idp, Cluster) {
    let idp = Idp::start(&[&RSA1]);
    idp.issue_managed_identity_tokens(&RSA1, role, &oid_for(role), lifetime);
    let mut all = idp.entra_settings();
    all.extend(tls_settings(name));
    all.extend_from_slice(settings);
    let pg = Cluster::start_with_hba(name, &all, "hostssl all all 127.0.0.1/32 trust\n");
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', 'service', false, false)",
        oid_for(role)
    ));
    (idp, pg)
}

pub(crate) struct ManagedIdentity {
    pub key: &'static Key,
    pub oid: String,
    pub name: String,
    pub lifetime_seconds: i64,
    /// The tokens issued, oldest first.
    pub issued: Vec<String>,
}

impl ManagedIdentity {
    /// The answer to a request for `path` (with its query) whose `X-IDENTITY-HEADER` is
    /// `secret`, by the provider whose v2.0 issuer is `issuer`.
    pub(crate) fn answer(
        &mut self,
        path: &str,
        secret: Option<&str>,
        issuer: &str,
    ) -> (u16, String) {
        if secret != Some(IDENTITY_HEADER) {
            return (401, r#"{"error":"invalid identity header"}"#.into());
        }
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                .map(crate::idp::percent_decode)
        };
        let Some(resource) = param("resource") else {
            return (400, r#"{"error":"resource is required"}"#.into());
        };
        if param("api-version").as_deref() != Some("2019-08-01") {
            return (400, r#"{"error":"unsupported api-version"}"#.into());
        }
        let now = unix_now();
        let expires_on = now + self.lifetime_seconds;
        let claims = json!({
            "aud": resource, "iss": issuer, "iat": now, "nbf": now,
            "exp": expires_on, "tid": TENANT, "oid": self.oid, "sub": self.oid,
            "appid": self.oid, "app_displayname": self.name, "idtyp": "app", "ver": "2.0",
        });
        let token = mint(self.key, &claims);
        self.issued.push(token.clone());
        let body = json!({
            "access_token": token, "expires_on": expires_on.to_string(),
            "resource": resource, "token_type": "Bearer", "client_id": self.oid,
        });
        (200, body.to_string())
    }
}
