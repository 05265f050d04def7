//! Parsing and derivation of settings (pure, no pgrx): comma lists, algorithms, URLs,
//! the accepted issuers and where the signing keys come from.

use std::fmt;

/// Signature algorithms pgaadauth can verify. HMAC and `none` are deliberately absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

pub const ALL_ALGS: [Alg; 8] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
];

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        ALL_ALGS.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Items of a comma-separated list, trimmed, empty items dropped.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// `pgaadauth.allowed_algorithms`: a non-empty list of supported asymmetric algorithms.
pub fn parse_algorithms(s: &str) -> Result<Vec<Alg>, String> {
    let items = split_list(s);
    if items.is_empty() {
        return Err("at least one algorithm is required".into());
    }
    items
        .iter()
        .map(|item| {
            Alg::parse(&item.to_ascii_uppercase()).ok_or_else(|| {
                format!(
                    "\"{item}\" is not supported; use RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384"
                )
            })
        })
        .collect()
}

/// An endpoint URL: https, or http when `allow_http` is on.
pub fn check_url(s: &str, allow_http: bool) -> Result<(), String> {
    let rest = if let Some(r) = s.strip_prefix("https://") {
        r
    } else if let Some(r) = s.strip_prefix("http://") {
        if !allow_http {
            return Err(format!(
                "\"{s}\" uses plain http; set pgaadauth.allow_http to permit it"
            ));
        }
        r
    } else {
        return Err(format!("\"{s}\" is not an https:// URL"));
    };
    if rest.is_empty() || rest.starts_with('/') || s.chars().any(char::is_whitespace) {
        return Err(format!("\"{s}\" has no host"));
    }
    Ok(())
}

/// Azure's instance metadata service (`http://169.254.169.254/...`), which serves managed
/// identity tokens over plain http by design: a link-local address that never leaves the host.
pub const INSTANCE_METADATA_HOST: &str = "169.254.169.254";

/// Whether `url` is a plain-http URL of the instance metadata service, the one plain-http
/// destination pgaadauth uses without `pgaadauth.allow_http` (for managed identity tokens).
pub fn is_instance_metadata(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority == INSTANCE_METADATA_HOST || authority == format!("{INSTANCE_METADATA_HOST}:80")
}

/// Whether `url` is plain http to this host itself (127.0.0.1, ::1 or localhost, any port):
/// App Service's managed identity endpoint, which never leaves the machine.
pub fn is_local_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    !authority.contains('@') && matches!(host, "127.0.0.1" | "::1" | "localhost")
}

/// The issuers Entra uses for a tenant: v1 (`sts.windows.net`) and v2 (`{authority}/{tid}/v2.0`).
pub fn derived_issuers(tenant: &str, authority_host: &str) -> Vec<String> {
    vec![
        format!("https://sts.windows.net/{tenant}/"),
        format!("{}/{tenant}/v2.0", authority_host.trim_end_matches('/')),
    ]
}

/// Where a set of signing keys is fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document at a fixed URL.
    Jwks(String),
    /// OpenID Connect discovery of an issuer, then its `jwks_uri`.
    Discovery { issuer: String },
}

impl KeySource {
    /// The issuer whose tokens this source's keys may verify; `None`: every accepted issuer.
    pub fn issuer(&self) -> Option<&str> {
        match self {
            KeySource::Jwks(_) => None,
            KeySource::Discovery { issuer } => Some(issuer),
        }
    }

    /// The URL fetched first for this source.
    pub fn first_url(&self) -> String {
        match self {
            KeySource::Jwks(u) => u.clone(),
            KeySource::Discovery { issuer } => discovery_url(issuer),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Jwks(u) => write!(f, "{u}"),
            KeySource::Discovery { issuer } => write!(f, "discovery of {issuer}"),
        }
    }
}

pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The settings that decide which issuers are accepted and where keys come from.
#[derive(Clone, Debug, Default)]
pub struct IssuerSettings {
    pub tenant_id: String,
    pub authority_host: String,
    pub issuers: String,
    pub jwks_uri: String,
}

impl IssuerSettings {
    /// Accepted `iss` values: the explicit list, else derived from the tenant, else none.
    pub fn accepted_issuers(&self) -> Vec<String> {
        let explicit = split_list(&self.issuers);
        if !explicit.is_empty() || self.tenant_id.is_empty() {
            return explicit;
        }
        derived_issuers(&self.tenant_id, &self.authority_host)
    }

    /// Key sources: `jwks_uri` when set; else discovery of each explicitly set issuer; else the
    /// tenant's Entra key URL (which serves both the v1 and v2 issuers).
    pub fn key_sources(&self) -> Vec<KeySource> {
        if !self.jwks_uri.trim().is_empty() {
            return vec![KeySource::Jwks(self.jwks_uri.trim().to_string())];
        }
        let explicit = split_list(&self.issuers);
        if !explicit.is_empty() {
            return explicit
                .into_iter()
                .map(|issuer| KeySource::Discovery { issuer })
                .collect();
        }
        if self.tenant_id.is_empty() {
            return vec![];
        }
        vec![KeySource::Jwks(format!(
            "{}/{}/discovery/v2.0/keys",
            self.authority_host.trim_end_matches('/'),
            self.tenant_id
        ))]
    }
}

/// Which file proves `pgaadauth.client_id` at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofFile<'a> {
    Secret(&'a str),
    Assertion(&'a str),
}

/// Exactly one of `pgaadauth.client_secret_file` and `pgaadauth.client_assertion_file` (the
/// paths, empty when unset); otherwise the sentence saying what is wrong.
pub fn proof_file<'a>(secret: &'a str, assertion: &'a str) -> Result<ProofFile<'a>, &'static str> {
    match (secret.is_empty(), assertion.is_empty()) {
        (false, true) => Ok(ProofFile::Secret(secret)),
        (true, false) => Ok(ProofFile::Assertion(assertion)),
        (true, true) => Err("pgaadauth.client_id needs pgaadauth.client_secret_file or pgaadauth.client_assertion_file"),
        (false, false) => Err("pgaadauth.client_secret_file and pgaadauth.client_assertion_file are both set: set only one"),
    }
}

/// The settings the start-up report looks at (secrets are not among them: only the path of
/// the secret file).
#[derive(Clone, Debug, Default)]
pub struct StartupView {
    pub issuers: IssuerSettings,
    pub audiences: String,
    pub password_auth: bool,
    pub allow_http: bool,
    pub ca_file: String,
    pub graph_endpoint: String,
    pub client_id: String,
    pub client_secret_file: String,
    pub client_assertion_file: String,
    pub managed_identity_endpoint: String,
}

impl StartupView {
    fn directory(&self) -> &'static str {
        if !self.managed_identity_endpoint.is_empty() {
            "managed identity"
        } else if !self.client_id.is_empty() {
            match proof_file(&self.client_secret_file, &self.client_assertion_file) {
                Ok(ProofFile::Assertion(_)) => "client assertion",
                _ => "client secret",
            }
        } else {
            "none"
        }
    }

    /// Whether the directory credential is pgaadauth.client_id's (a secret or an assertion).
    fn client_id_in_use(&self) -> bool {
        self.managed_identity_endpoint.is_empty() && !self.client_id.is_empty()
    }

    /// The one LOG line at start-up.
    pub fn summary(&self) -> String {
        let issuers = self.issuers.accepted_issuers();
        let sources: Vec<String> = self
            .issuers
            .key_sources()
            .iter()
            .map(|s| s.to_string())
            .collect();
        format!(
            "pgaadauth: issuers: {}; keys from: {}; audiences: {}; password_auth: {}; directory: {}",
            if issuers.is_empty() { "none".into() } else { issuers.join(", ") },
            if sources.is_empty() { "none".into() } else { sources.join(", ") },
            split_list(&self.audiences).join(", "),
            if self.password_auth { "on" } else { "off" },
            self.directory()
        )
    }

    /// What is inconsistent, one sentence each; `unreadable(path)` says why a file cannot be
    /// read, if it cannot.
    pub fn problems(&self, unreadable: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out = Vec::new();
        if self.issuers.accepted_issuers().is_empty() {
            out.push("No token issuer is configured: set pgaadauth.tenant_id or pgaadauth.issuers; every token login will be refused.".to_string());
        }
        let mut urls: Vec<(&str, String)> = self
            .issuers
            .key_sources()
            .into_iter()
            .map(|s| ("key source", s.first_url()))
            .collect();
        if self.client_id_in_use() {
            urls.push((
                "pgaadauth.authority_host",
                self.issuers.authority_host.clone(),
            ));
        }
        if self.directory() != "none" {
            urls.push(("pgaadauth.graph_endpoint", self.graph_endpoint.clone()));
        }
        if !self.managed_identity_endpoint.is_empty() {
            urls.push((
                "pgaadauth.managed_identity_endpoint",
                self.managed_identity_endpoint.clone(),
            ));
        }
        for (what, url) in urls {
            // The instance metadata endpoint is plain http by design, and allowed as such.
            if url.starts_with("http://") && !self.allow_http && !is_instance_metadata(&url) {
                out.push(format!("The {what} \"{url}\" uses plain http, which pgaadauth.allow_http does not permit."));
            }
        }
        if !self.ca_file.is_empty() {
            if let Some(why) = unreadable(&self.ca_file) {
                out.push(format!(
                    "pgaadauth.ca_file \"{}\" cannot be read: {why}.",
                    self.ca_file
                ));
            }
        }
        if self.client_id_in_use() {
            let files = [
                ("pgaadauth.client_secret_file", &self.client_secret_file),
                (
                    "pgaadauth.client_assertion_file",
                    &self.client_assertion_file,
                ),
            ];
            if let Err(why) = proof_file(&self.client_secret_file, &self.client_assertion_file) {
                out.push(format!("{why}."));
            }
            for (name, path) in files.iter().filter(|(_, path)| !path.is_empty()) {
                if let Some(why) = unreadable(path) {
                    out.push(format!("{name} \"{path}\" cannot be read: {why}."));
                }
            }
            if self.issuers.tenant_id.is_empty() {
                out.push("pgaadauth.client_id is set without pgaadauth.tenant_id.".into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
