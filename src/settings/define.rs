//! The definitions of the `pgaadauth.*` settings, with check hooks that refuse a bad value with
//! a clear message, and assign hooks on the settings the token policy is derived from.

use super::derived::{self, Input};
use super::*;
use pgaadauth_core::config::{check_url, parse_algorithms, split_list};
use pgaadauth_core::label::normalize_guid;
use pgrx::guc::{GucContext, GucFlags, GucRegistry};
use pgrx::{pg_guard, pg_sys};
use std::ffi::{c_char, c_void, CStr, CString};

/// Run a string check; on failure set the GUC error detail and refuse the value.
unsafe fn check_string(newval: *mut *mut c_char, check: fn(&str) -> Result<(), String>) -> bool {
    let value = if newval.is_null() || (*newval).is_null() {
        String::new()
    } else {
        CStr::from_ptr(*newval).to_string_lossy().trim().to_string()
    };
    match check(&value) {
        Ok(()) => true,
        Err(why) => {
            let c = CString::new(why).unwrap_or_default();
            pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(c.as_ptr());
            false
        }
    }
}

macro_rules! string_check_hook {
    ($name:ident, $check:expr) => {
        #[pg_guard]
        unsafe extern "C-unwind" fn $name(
            newval: *mut *mut c_char,
            _extra: *mut *mut c_void,
            _source: pg_sys::GucSource::Type,
        ) -> bool {
            unsafe { check_string(newval, $check) }
        }
    };
}

fn check_optional_guid(v: &str) -> Result<(), String> {
    if v.is_empty() || normalize_guid(v).is_some() {
        Ok(())
    } else {
        Err(format!(
            "\"{v}\" is not a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47."
        ))
    }
}

fn check_optional_url(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    check_url(v, true).map_err(|e| format!("{e}."))
}

fn check_required_url(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("A URL is required.".into());
    }
    check_optional_url(v)
}

fn check_url_list(v: &str) -> Result<(), String> {
    split_list(v).iter().try_for_each(|u| check_optional_url(u))
}

fn check_non_empty_list(v: &str) -> Result<(), String> {
    if split_list(v).is_empty() {
        Err("At least one value is required.".into())
    } else {
        Ok(())
    }
}

fn check_non_empty(v: &str) -> Result<(), String> {
    if v.is_empty() {
        Err("A value is required.".into())
    } else {
        Ok(())
    }
}

fn check_algorithms(v: &str) -> Result<(), String> {
    parse_algorithms(v).map(|_| ()).map_err(|e| {
        let mut e = e;
        if let Some(first) = e.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("{e}.")
    })
}

string_check_hook!(check_tenant_id, check_optional_guid);
string_check_hook!(check_authority_host, check_required_url);
string_check_hook!(check_issuers, check_url_list);
string_check_hook!(check_jwks_uri, check_optional_url);
string_check_hook!(check_audiences, check_non_empty_list);
string_check_hook!(check_principal_claim, check_non_empty);
string_check_hook!(check_allowed_algorithms, check_algorithms);
string_check_hook!(check_admin_role, check_non_empty);
string_check_hook!(check_database, check_non_empty);
string_check_hook!(check_graph_endpoint, check_required_url);
string_check_hook!(check_managed_identity_endpoint, check_optional_url);
string_check_hook!(check_pooler_addresses, |v: &str| {
    pgaadauth_core::pooler::parse_pooler_addresses(v)
        .map(|_| ())
        .map_err(|e| format!("{e}."))
});

macro_rules! derived_input_hook {
    ($name:ident, $input:expr) => {
        /// The assign hook of a setting the policy is derived from.
        #[pg_guard]
        unsafe extern "C-unwind" fn $name(newval: *const c_char, _extra: *mut c_void) {
            let value = if newval.is_null() {
                std::borrow::Cow::Borrowed("")
            } else {
                unsafe { CStr::from_ptr(newval) }.to_string_lossy()
            };
            derived::assigned($input, &value);
        }
    };
}

derived_input_hook!(assign_tenant_id, Input::TenantId);
derived_input_hook!(assign_authority_host, Input::AuthorityHost);
derived_input_hook!(assign_issuers, Input::Issuers);
derived_input_hook!(assign_jwks_uri, Input::JwksUri);
derived_input_hook!(assign_audiences, Input::Audiences);
derived_input_hook!(assign_principal_claim, Input::PrincipalClaim);
derived_input_hook!(assign_allowed_algorithms, Input::AllowedAlgorithms);

/// `pgaadauth.pooler_addresses`, parsed once when assigned (postmaster and backends alike).
#[pg_guard]
unsafe extern "C-unwind" fn assign_pooler_addresses(newval: *const c_char, _extra: *mut c_void) {
    let value = if newval.is_null() {
        std::borrow::Cow::Borrowed("")
    } else {
        unsafe { CStr::from_ptr(newval) }.to_string_lossy()
    };
    super::set_pooler_addresses(&value);
}

fn define_string(
    name: &'static CStr,
    short: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
    check: pg_sys::GucStringCheckHook,
    assign: pg_sys::GucStringAssignHook,
) {
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            name,
            short,
            c"",
            setting,
            GucContext::Sighup,
            GucFlags::default(),
            check,
            assign,
            None,
        );
    }
}

pub fn define() {
    define_string(
        c"pgaadauth.tenant_id",
        c"Microsoft Entra tenant id; derives the accepted issuers and the key location when those are unset.",
        &TENANT_ID,
        Some(check_tenant_id),
        Some(assign_tenant_id),
    );
    define_string(
        c"pgaadauth.authority_host",
        c"Base URL of the Entra authority (sovereign clouds, test issuers).",
        &AUTHORITY_HOST,
        Some(check_authority_host),
        Some(assign_authority_host),
    );
    define_string(
        c"pgaadauth.issuers",
        c"Accepted token issuers (iss), comma-separated; derived from tenant_id when empty.",
        &ISSUERS,
        Some(check_issuers),
        Some(assign_issuers),
    );
    define_string(
        c"pgaadauth.jwks_uri",
        c"URL of the signing key set; OpenID discovery of each issuer when empty.",
        &JWKS_URI,
        Some(check_jwks_uri),
        Some(assign_jwks_uri),
    );
    define_string(
        c"pgaadauth.pooler_addresses",
        c"Addresses connection poolers connect from (IPs, CIDR blocks, local): their token logins are pooler sessions.",
        &POOLER_ADDRESSES,
        Some(check_pooler_addresses),
        Some(assign_pooler_addresses),
    );
    define_string(
        c"pgaadauth.audiences",
        c"Accepted token audiences (aud), comma-separated.",
        &AUDIENCES,
        Some(check_audiences),
        Some(assign_audiences),
    );
    define_string(
        c"pgaadauth.principal_claim",
        c"Token claim compared with the object id in a role's label.",
        &PRINCIPAL_CLAIM,
        Some(check_principal_claim),
        Some(assign_principal_claim),
    );
    define_string(
        c"pgaadauth.allowed_algorithms",
        c"Accepted token signature algorithms, comma-separated.",
        &ALLOWED_ALGORITHMS,
        Some(check_allowed_algorithms),
        Some(assign_allowed_algorithms),
    );
    define_string(
        c"pgaadauth.ca_file",
        c"PEM file of extra trusted root certificates for the identity provider.",
        &CA_FILE,
        None,
        None,
    );
    define_string(
        c"pgaadauth.admin_role",
        c"Role that Entra administrators are members of.",
        &ADMIN_ROLE,
        Some(check_admin_role),
        None,
    );
    define_string(
        c"pgaadauth.graph_endpoint",
        c"Microsoft Graph-compatible directory for name resolution and group membership.",
        &GRAPH_ENDPOINT,
        Some(check_graph_endpoint),
        None,
    );
    define_string(
        c"pgaadauth.client_id",
        c"Application (client) id of the server's own credential for the directory.",
        &CLIENT_ID,
        None,
        None,
    );
    define_string(
        c"pgaadauth.client_secret_file",
        c"File holding the client secret of pgaadauth.client_id.",
        &CLIENT_SECRET_FILE,
        None,
        None,
    );
    define_string(
        c"pgaadauth.client_assertion_file",
        c"File holding a signed assertion (a federated token) for pgaadauth.client_id, instead of a client secret; read at each token request.",
        &CLIENT_ASSERTION_FILE,
        None,
        None,
    );
    define_string(
        c"pgaadauth.managed_identity_endpoint",
        c"IMDS-style token endpoint of a managed identity, instead of client_id and client_secret_file.",
        &MANAGED_IDENTITY_ENDPOINT,
        Some(check_managed_identity_endpoint),
        None,
    );
    GucRegistry::define_enum_guc(
        c"pgaadauth.log_logins",
        c"Which token logins get an audit line in the server log: all, failures or none.",
        c"",
        &LOG_LOGINS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pgaadauth.log_format",
        c"How accepted token logins are worded in the server log: pgaadauth or azure (Azure's words, for Azure's audit query).",
        c"",
        &LOG_FORMAT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pgaadauth.session_lifetime",
        c"Whether token sessions end when their token expires: unlimited or token.",
        c"",
        &SESSION_LIFETIME,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.session_expiry_grace",
        c"With pgaadauth.session_lifetime = token, how long a session outlives its token.",
        c"",
        &SESSION_EXPIRY_GRACE,
        0,
        7 * 86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.session_claims",
        c"Whether token sessions keep their token's verified claims for pgaadauth_session_claims().",
        c"Read at login: sessions that logged in while it was off have none.",
        &SESSION_CLAIMS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    define_string(
        c"pgaadauth.database",
        c"The database whose pgaadauth.revocations table holds token revocations.",
        &DATABASE,
        Some(check_database),
        None,
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.enable_group_sync",
        c"Whether Entra group sync keeps a login role for each member of every group role.",
        c"",
        &ENABLE_GROUP_SYNC,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.group_sync_interval",
        c"How often the group sync worker syncs when pgaadauth.enable_group_sync is on.",
        c"",
        &GROUP_SYNC_INTERVAL,
        1,
        7 * 86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.group_cache_ttl",
        c"How long directory answers about group membership are cached.",
        c"",
        &GROUP_CACHE_TTL,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.clock_skew",
        c"Leeway on the exp, nbf and iat claims of tokens.",
        c"",
        &CLOCK_SKEW,
        0,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.password_auth",
        c"Whether roles without a pgaadauth label may log in with their PostgreSQL password on pgaadauth lines.",
        c"",
        &PASSWORD_AUTH,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.pooler_privileged_roles",
        c"Whether pgaadauth_pooler_login may let superuser and REPLICATION roles in.",
        c"",
        &POOLER_PRIVILEGED_ROLES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.refresh_interval",
        c"How often the signing keys are fetched again.",
        c"",
        &REFRESH_INTERVAL,
        1,
        7 * 86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.http_timeout",
        c"Time limit of one request to the identity provider.",
        c"",
        &HTTP_TIMEOUT,
        100,
        300_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.min_refresh_interval",
        c"Shortest time between key refreshes asked for by tokens with an unknown kid.",
        c"",
        &MIN_REFRESH_INTERVAL,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.kid_miss_wait",
        c"How long a login with an unknown kid waits for the keys to be refreshed.",
        c"",
        &KID_MISS_WAIT,
        0,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.max_stale",
        c"How long cached keys are still used after their refreshes started failing.",
        c"",
        &MAX_STALE,
        1,
        30 * 86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.allow_http",
        c"Permit plain-http identity provider endpoints (for tests only).",
        c"",
        &ALLOW_HTTP,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgaadauth.max_keys",
        c"Number of signing keys the shared key table holds.",
        c"",
        &MAX_KEYS,
        1,
        4096,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"pgaadauth".as_ptr())
    };
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"pgaadauth".as_ptr())
    };
}
