//! PostgreSQL 18's `oauth` method: pgaadauth as the OAuth validator module
//! (`oauth_validator_libraries = 'pgaadauth'`).
//!
//! PostgreSQL runs the SASL OAUTHBEARER exchange and hands the bearer token here. The decision
//! is the token login's: the shared keys (an unknown kid asks the key worker for one coalesced,
//! rate-limited refresh; this never touches the network), the label's rules, the same audit
//! line. Admitted issuers are narrowed to the line's `issuer` option (see
//! `pgaadauth_core::oauth_line`).

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::login::hook::{authorize_token, verify_token};
use crate::login::outcome::{self, LoginAttempt};
use crate::settings;
use crate::shim::{self, OAuthResult, Port};
use crate::shmem::counters::{self, Counter};
use pgaadauth_core::audit::Method;
use pgaadauth_core::label::Label;
use pgaadauth_core::oauth_line::{admitted_issuers, issuer_of_line_option};
use pgaadauth_core::token::{Reject, Verified};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::ffi::{c_char, c_void, CStr, CString};

/// Called by PostgreSQL when it loads the validator library (already loaded by
/// shared_preload_libraries): the callback table.
#[no_mangle]
pub extern "C" fn _PG_oauth_validator_module_init() -> *const c_void {
    unsafe { shim::pgaadauth_oauth_callbacks(validate) }
}

/// Why an OAuth login is refused: the audit code, the sentence for the log, and who the
/// token speaks for when it verified.
struct Refusal {
    code: &'static str,
    detail: String,
    principal: Option<String>,
}

impl Refusal {
    fn token(reject: Reject, note: &str, principal: Option<String>) -> Refusal {
        counters::bump_rejected(reject.code());
        Refusal {
            code: reject.code(),
            detail: format!("{reject}{note}"),
            principal,
        }
    }
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
    let role = unsafe { CStr::from_ptr(role) };
    // With delegate_ident_mapping=1 the role's label decides; without it, PostgreSQL's user
    // map does, and the label is not consulted.
    let label = unsafe { shim::pgaadauth_port_oauth_delegates_mapping(port) }.then(|| {
        match label_of_role_name(role) {
            RoleLabel::Label(l) => Ok(l),
            RoleLabel::None => Err(None),
            RoleLabel::Malformed(e) => Err(Some(e.to_string())),
        }
    });
    let role = role.to_string_lossy();
    let decision = decide(port, &token, &role, label.as_ref());
    let client = unsafe { shim::pgaadauth_port_remote_host(port) };
    let client = (!client.is_null()).then(|| unsafe { CStr::from_ptr(client) }.to_string_lossy());
    let label = label.and_then(Result::ok);
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
        // PostgreSQL may still refuse (a user map, a client certificate): the audit line and
        // the count wait for its outcome (`finish`).
        Ok(verified) => {
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
            outcome::write(LoginAttempt {
                role: &role,
                client: client.as_deref(),
                token: &token,
                label: label.as_ref(),
                outcome: Err(refusal.code),
                method: Method::OAuth,
            });
            counters::bump(Counter::OAuthLoginsRejected);
            let line = unsafe { shim::pgaadauth_port_hba_line(port) };
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!(
                    "pgaadauth: OAuth token for role \"{}\" refused: {}",
                    pgaadauth_core::log_text::log_safe(&role),
                    refusal.detail
                ),
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
/// audit line and count of a token the validator accepted. A refusal after acceptance is
/// PostgreSQL's (the user map, a client certificate), logged by it in its own words.
pub fn finish(authenticated: bool) {
    let Some(p) = PENDING.with(|p| p.borrow_mut().take()) else {
        return; // refused by the validator (already told), or no token (discovery)
    };
    let outcome = if authenticated {
        Ok(&p.verified)
    } else {
        Err("refused_by_postgresql")
    };
    outcome::write(LoginAttempt {
        role: &p.role,
        client: p.client.as_deref(),
        token: &p.token,
        label: p.label.as_ref(),
        outcome,
        method: Method::OAuth,
    });
    counters::bump(if authenticated {
        Counter::OAuthLoginsAccepted
    } else {
        Counter::OAuthLoginsRejected
    });
    if authenticated {
        crate::login::identity::record_token(Method::OAuth, &p.verified);
    }
}

/// The decision for a bearer token on an `oauth` line: with `delegate_ident_mapping=1`
/// (`label` is `Some`: the role's label, or why it has none) the label decides and unlabelled
/// roles are refused; without it, the token must verify and PostgreSQL's user map decides
/// which roles its principal may use.
fn decide(
    port: *mut Port,
    token: &str,
    role: &str,
    label: Option<&Result<Label, Option<String>>>,
) -> Result<Verified, Refusal> {
    let mut policy = settings::policy();
    let line_issuer = unsafe { shim::pgaadauth_port_oauth_issuer(port) };
    let line_issuer = if line_issuer.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(line_issuer) }
            .to_string_lossy()
            .into_owned()
    };
    let issuers = settings::issuer_settings();
    let accepted = policy.issuers.clone();
    policy.issuers = admitted_issuers(
        &line_issuer,
        &policy.issuers,
        &issuers.tenant_id,
        &issuers.authority_host,
    );
    if policy.issuers.is_empty() {
        report_issuer_not_accepted(port, &line_issuer);
        return Err(Refusal {
            code: "line_issuer",
            detail: format!(
                "The issuer \"{}\" of the oauth line is not one pgaadauth accepts.",
                pgaadauth_core::log_text::log_safe(&issuer_of_line_option(&line_issuer))
            ),
            principal: None,
        });
    }
    let authentic = verify_token(token, &policy).map_err(|(reject, mut note)| {
        if matches!(&reject, Reject::IssuerNotAccepted(iss) if accepted.contains(iss)) {
            note.push_str(&format!(
                " pgaadauth accepts it, but this oauth line names the issuer \"{}\".",
                pgaadauth_core::log_text::log_safe(&issuer_of_line_option(&line_issuer))
            ));
        }
        Refusal::token(reject, &note, None)
    })?;
    let Some(label) = label else {
        // PostgreSQL's map= (pg_ident.conf) decides, on this identity.
        return Ok(authentic.identity());
    };
    let principal = Some(authentic.principal.clone());
    match label {
        Ok(label) => authorize_token(&authentic, label, &policy)
            .map_err(|reject| Refusal::token(reject, "", principal)),
        Err(None) => Err(Refusal {
            code: "role_not_labelled",
            detail: format!(
                "Role \"{}\" has no pgaadauth label; an oauth line with delegate_ident_mapping=1 logs in only labelled roles.",
                pgaadauth_core::log_text::log_safe(role)
            ),
            principal,
        }),
        Err(Some(e)) => Err(Refusal {
            code: "label_malformed",
            detail: format!("The role's pgaadauth label is malformed: {e}."),
            principal,
        }),
    }
}

/// An oauth line whose issuer pgaadauth does not accept fails every login on it: say so
/// plainly, with what would fix it.
fn report_issuer_not_accepted(port: *mut Port, line_issuer: &str) {
    let line = unsafe { shim::pgaadauth_port_hba_line(port) };
    let accepted = settings::policy().issuers;
    let accepted = if accepted.is_empty() {
        "none (set pgaadauth.tenant_id or pgaadauth.issuers)".to_string()
    } else {
        accepted
            .iter()
            .map(|i| format!("\"{}\"", pgaadauth_core::log_text::log_safe(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
        format!(
            "pgaadauth does not accept the issuer \"{}\" of the oauth line {line} of pg_hba.conf",
            pgaadauth_core::log_text::log_safe(&issuer_of_line_option(line_issuer))
        ),
        "pgaadauth",
    )
    .set_detail(format!(
        "Every OAuth login on that line is refused. pgaadauth accepts the issuers {accepted}."
    ))
    .set_hint("Name one of them in the line's issuer option, or add the line's issuer to pgaadauth.issuers, and reload.")
    .report(PgLogLevel::WARNING);
}
