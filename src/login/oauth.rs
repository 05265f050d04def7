//! PostgreSQL 18's `oauth` method: pgaadauth as the OAuth validator module
//! (`oauth_validator_libraries = 'pgaadauth'`).
//!
//! PostgreSQL runs the SASL OAUTHBEARER exchange and hands the bearer token here. The decision
//! is the token login's: the shared keys (an unknown kid asks the key worker for one coalesced,
//! rate-limited refresh; this never touches the network), the label's rules, the same audit
//! line. Admitted issuers are narrowed to the line's `issuer` option (see
//! `pgaadauth_core::oauth_line`).

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::login::decision::{self, Attempt, Door, Mapping};
use crate::login::outcome;
use crate::settings;
use crate::shim::{self, OAuthResult, Port};
use pgaadauth_core::label::Label;
use pgaadauth_core::log_text::log_safe;
use pgaadauth_core::oauth_line::issuer_of_line_option;
use pgaadauth_core::token::{Verified, LINE_ISSUER};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::ffi::{c_char, c_void, CStr, CString};

/// Called by PostgreSQL when it loads the validator library (already loaded by
/// shared_preload_libraries): the callback table.
#[no_mangle]
pub extern "C" fn _PG_oauth_validator_module_init() -> *const c_void {
    unsafe { shim::pgaadauth_oauth_callbacks(validate) }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn validate(
    _state: *const c_void,
    token: *const c_char,
    role: *const c_char,
    result: *mut OAuthResult,
) -> bool {
    let port = unsafe { shim::pgaadauth_my_port() };
    // PostgreSQL has checked the token's characters (RFC 6750's b64token).
    let token = unsafe { CStr::from_ptr(token) }.to_string_lossy();
    let role_c = unsafe { CStr::from_ptr(role) };
    // With delegate_ident_mapping=1 the role's label decides; without it, PostgreSQL's user
    // map does, and the label is not consulted.
    let mapping = if unsafe { shim::pgaadauth_port_oauth_delegates_mapping(port) } {
        Mapping::Label(label_of_role_name(role_c))
    } else {
        Mapping::UserMap
    };
    let role = role_c.to_string_lossy();
    let client = unsafe { shim::pgaadauth_port_remote_host(port) };
    let client = (!client.is_null()).then(|| unsafe { CStr::from_ptr(client) }.to_string_lossy());
    let line_issuer = unsafe { shim::pgaadauth_port_oauth_issuer(port) };
    let line_issuer = if line_issuer.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(line_issuer) }
            .to_string_lossy()
            .into_owned()
    };
    let attempt = Attempt {
        door: Door::OAuth,
        role: &role,
        token: &token,
        client: client.as_deref(),
        mapping,
        line_issuer: Some(&line_issuer),
    };
    let decision = decision::decide(&attempt);
    // The principal is the identity even when refused (log_connections shows it); only a
    // token that verified names one.
    let principal = match &decision {
        Ok(v) => Some(v.principal.as_str()),
        Err(r) => r.principal.as_deref(),
    };
    let authn_id = principal.map(|p| CString::new(p.replace('\0', "")).unwrap_or_default());
    let authn_id_ptr = authn_id.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    unsafe { shim::pgaadauth_oauth_set_result(result, decision.is_ok(), authn_id_ptr) };
    match decision {
        // PostgreSQL may still refuse (a user map, a client certificate): the outcome waits
        // for its word (`finish`).
        Ok(verified) => {
            let Attempt { mapping, .. } = attempt;
            let label = match mapping {
                Mapping::Label(RoleLabel::Label(l)) => Some(l),
                _ => None,
            };
            PENDING.with(|p| {
                *p.borrow_mut() = Some(Pending {
                    role: role.into_owned(),
                    client: client.map(|c| c.into_owned()),
                    token: token.into_owned(),
                    label,
                    verified,
                })
            });
        }
        Err(refusal) => {
            if refusal.code == LINE_ISSUER {
                report_issuer_not_accepted(port, &line_issuer);
            }
            let sentence = outcome::refused(&attempt, &refusal);
            let line = unsafe { shim::pgaadauth_port_hba_line(port) };
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                sentence,
                "pgaadauth",
            )
            .set_detail(format!("Connection matched pg_hba.conf line {line}."))
            .report(PgLogLevel::LOG_SERVER_ONLY);
        }
    }
    true
}

/// A token the validator accepted, whose login PostgreSQL has yet to finish.
struct Pending {
    role: String,
    client: Option<String>,
    token: String,
    label: Option<Label>,
    verified: Verified,
}

thread_local! {
    static PENDING: std::cell::RefCell<Option<Pending>> = const { std::cell::RefCell::new(None) };
}

/// PostgreSQL's outcome of an `oauth` line's login (from the ClientAuthentication hook): the
/// outcome of a token the validator accepted. A refusal after acceptance is PostgreSQL's (the
/// user map, a client certificate), logged by it in its own words.
pub fn finish(authenticated: bool) {
    let Some(p) = PENDING.with(|p| p.borrow_mut().take()) else {
        return; // refused by the validator (already told), or no token (discovery)
    };
    let attempt = Attempt {
        door: Door::OAuth,
        role: &p.role,
        token: &p.token,
        client: p.client.as_deref(),
        mapping: match p.label {
            Some(l) => Mapping::Label(RoleLabel::Label(l)),
            None => Mapping::UserMap,
        },
        line_issuer: None,
    };
    if authenticated {
        let _ = outcome::accepted(&attempt, &p.verified, false);
    } else {
        outcome::refused_before_or_after(&attempt, "refused_by_postgresql");
    }
}

/// An oauth line whose issuer pgaadauth does not accept fails every login on it: say so
/// plainly, with what would fix it.
fn report_issuer_not_accepted(port: *mut Port, line_issuer: &str) {
    let line = unsafe { shim::pgaadauth_port_hba_line(port) };
    let accepted = settings::policy().issuers.clone();
    let accepted = if accepted.is_empty() {
        "none (set pgaadauth.tenant_id or pgaadauth.issuers)".to_string()
    } else {
        accepted
            .iter()
            .map(|i| format!("\"{}\"", log_safe(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
        format!(
            "pgaadauth does not accept the issuer \"{}\" of the oauth line {line} of pg_hba.conf",
            log_safe(&issuer_of_line_option(line_issuer))
        ),
        "pgaadauth",
    )
    .set_detail(format!(
        "Every OAuth login on that line is refused. pgaadauth accepts the issuers {accepted}."
    ))
    .set_hint("Name one of them in the line's issuer option, or add the line's issuer to pgaadauth.issuers, and reload.")
    .report(PgLogLevel::WARNING);
}
