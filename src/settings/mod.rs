//! The `pgaadauth.*` settings: typed readers, and what is derived from them (the token policy,
//! the issuers: [`derived`], computed when a setting is assigned, never per login). Their
//! definitions and checks are in [`define`]. Imports nothing of the extension.

mod define;
mod derived;

pub use define::define;

use pgaadauth_core::config::IssuerSettings;
use pgaadauth_core::token::Policy;
use pgrx::guc::GucSetting;
use std::ffi::CString;
use std::rc::Rc;

pub static TENANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static AUTHORITY_HOST: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://login.microsoftonline.com"));
pub static ISSUERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWKS_URI: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static AUDIENCES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://ossrdbms-aad.database.windows.net"));
pub static PRINCIPAL_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"oid"));
pub static ALLOWED_ALGORITHMS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"RS256"));
pub static CLOCK_SKEW: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static PASSWORD_AUTH: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static POOLER_PRIVILEGED_ROLES: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static POOLER_ADDRESSES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static HTTP_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MIN_REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static KID_MISS_WAIT: GucSetting<i32> = GucSetting::<i32>::new(2_000);
pub static MAX_STALE: GucSetting<i32> = GucSetting::<i32>::new(86_400);
pub static CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ALLOW_HTTP: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static MAX_KEYS: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static GRAPH_ENDPOINT: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://graph.microsoft.com"));
pub static CLIENT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLIENT_SECRET_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static CLIENT_ASSERTION_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static MANAGED_IDENTITY_ENDPOINT: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static GROUP_CACHE_TTL: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static ENABLE_GROUP_SYNC: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static GROUP_SYNC_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1800);
/// `pgaadauth.log_logins`: which token logins get an audit line.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogLogins {
    #[name = c"all"]
    All,
    #[name = c"failures"]
    Failures,
    #[name = c"none"]
    None,
}

/// `pgaadauth.log_format`: how an accepted token login's audit line is worded.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    /// `pgaadauth: login outcome=accepted …`, field by field.
    #[name = c"pgaadauth"]
    Pgaadauth,
    /// Azure Database for PostgreSQL's words, for Azure's audit query.
    #[name = c"azure"]
    Azure,
}

pub static LOG_FORMAT: GucSetting<LogFormat> = GucSetting::<LogFormat>::new(LogFormat::Pgaadauth);

/// `pgaadauth.session_lifetime`: whether token sessions end with their token.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionLifetime {
    #[name = c"unlimited"]
    Unlimited,
    #[name = c"token"]
    Token,
}

pub static SESSION_LIFETIME: GucSetting<SessionLifetime> =
    GucSetting::<SessionLifetime>::new(SessionLifetime::Unlimited);
pub static SESSION_EXPIRY_GRACE: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static SESSION_CLAIMS: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// The session lifetime the settings give now.
pub fn session_lifetime() -> pgaadauth_core::session::Lifetime {
    match SESSION_LIFETIME.get() {
        SessionLifetime::Unlimited => pgaadauth_core::session::Lifetime::Unlimited,
        // A login accepts a token until exp + clock_skew: its session lasts at least as long.
        SessionLifetime::Token => pgaadauth_core::session::Lifetime::Token {
            after: CLOCK_SKEW.get() as i64 + SESSION_EXPIRY_GRACE.get() as i64,
        },
    }
}

pub static LOG_LOGINS: GucSetting<LogLogins> = GucSetting::<LogLogins>::new(LogLogins::All);
pub static ADMIN_ROLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"azure_pg_admin"));

thread_local! {
    /// `pgaadauth.pooler_addresses` as last assigned, parsed.
    static POOLER_SOURCES: std::cell::RefCell<std::rc::Rc<[pgaadauth_core::pooler::PoolerSource]>> =
        std::cell::RefCell::new(std::rc::Rc::from([]));
}

/// From the setting's assign hook (its check hook refuses what does not parse).
pub(super) fn set_pooler_addresses(value: &str) {
    let parsed = pgaadauth_core::pooler::parse_pooler_addresses(value).unwrap_or_default();
    POOLER_SOURCES.with(|s| *s.borrow_mut() = parsed.into());
}

/// `pgaadauth.pooler_addresses`, parsed when it was assigned: a login never parses it.
pub fn pooler_addresses() -> std::rc::Rc<[pgaadauth_core::pooler::PoolerSource]> {
    POOLER_SOURCES.with(|s| s.borrow().clone())
}

/// A string setting's value, empty when unset.
pub fn text(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|c| c.to_string_lossy().trim().to_string())
        .unwrap_or_default()
}

pub fn issuer_settings() -> IssuerSettings {
    derived::current().issuers.clone()
}

/// What a token must satisfy, from the current settings.
pub fn policy() -> Rc<Policy> {
    let policy = derived::current().policy.clone();
    // An integer setting (no assign hook): read each time, which costs nothing.
    let skew = i64::from(CLOCK_SKEW.get());
    if policy.clock_skew == skew {
        return policy;
    }
    let mut changed = (*policy).clone();
    changed.clock_skew = skew;
    Rc::new(changed)
}

/// The refresh schedule, from the current settings.
pub fn timing() -> pgaadauth_core::schedule::Timing {
    pgaadauth_core::schedule::Timing {
        refresh_interval: i64::from(REFRESH_INTERVAL.get()),
        min_refresh_interval: i64::from(MIN_REFRESH_INTERVAL.get()),
        max_stale: i64::from(MAX_STALE.get()),
    }
}

pub fn kid_miss_wait() -> std::time::Duration {
    std::time::Duration::from_millis(KID_MISS_WAIT.get() as u64)
}

pub fn http_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(HTTP_TIMEOUT.get() as u64)
}

/// The server's own credential for the directory, when one is configured. The secret or the
/// assertion is read from its file at each call (only by the directory worker, which is the one
/// to use it): a rotated assertion file is read afresh.
pub fn directory_credential() -> Option<Result<pgaadauth_core::directory::Credential, String>> {
    use pgaadauth_core::config::{proof_file, ProofFile};
    use pgaadauth_core::directory::{ClientProof, Credential};
    let endpoint = text(&MANAGED_IDENTITY_ENDPOINT);
    if !endpoint.is_empty() {
        return Some(Ok(Credential::ManagedIdentity { endpoint }));
    }
    let client_id = text(&CLIENT_ID);
    if client_id.is_empty() {
        return None;
    }
    let secret_file = text(&CLIENT_SECRET_FILE);
    let assertion_file = text(&CLIENT_ASSERTION_FILE);
    let tenant = issuer_settings().tenant_id;
    let read = |name: &str, path: &str| {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {name} \"{path}\": {e}"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("{name} \"{path}\" is empty"));
        }
        Ok(text)
    };
    Some((|| {
        if tenant.is_empty() {
            return Err("pgaadauth.client_id needs pgaadauth.tenant_id".to_string());
        }
        let proof = match proof_file(&secret_file, &assertion_file)? {
            ProofFile::Secret(path) => {
                ClientProof::Secret(read("pgaadauth.client_secret_file", path)?)
            }
            ProofFile::Assertion(path) => {
                ClientProof::Assertion(read("pgaadauth.client_assertion_file", path)?)
            }
        };
        Ok(Credential::Client {
            token_url: pgaadauth_core::directory::entra_token_url(&text(&AUTHORITY_HOST), &tenant),
            client_id,
            proof,
            scope: None,
        })
    })())
}

/// Whether a directory is configured (without reading the secret).
pub fn directory_configured() -> bool {
    !text(&MANAGED_IDENTITY_ENDPOINT).is_empty() || !text(&CLIENT_ID).is_empty()
}

/// The one LOG line at start-up, and a WARNING for each inconsistency.
pub fn report_at_startup() {
    let view = pgaadauth_core::config::StartupView {
        issuers: issuer_settings(),
        audiences: text(&AUDIENCES),
        password_auth: PASSWORD_AUTH.get(),
        allow_http: ALLOW_HTTP.get(),
        ca_file: text(&CA_FILE),
        graph_endpoint: text(&GRAPH_ENDPOINT),
        client_id: text(&CLIENT_ID),
        client_secret_file: text(&CLIENT_SECRET_FILE),
        client_assertion_file: text(&CLIENT_ASSERTION_FILE),
        managed_identity_endpoint: text(&MANAGED_IDENTITY_ENDPOINT),
    };
    pgrx::log!("{}", view.summary());
    let unreadable = |path: &str| std::fs::File::open(path).err().map(|e| e.to_string());
    for problem in view.problems(&unreadable) {
        pgrx::warning!("pgaadauth: {problem}");
    }
}

pub fn admin_role() -> String {
    text(&ADMIN_ROLE)
}
