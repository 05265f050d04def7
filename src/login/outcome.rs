//! The one place a token login's outcome is recorded, for every door: the audit line (at LOG,
//! server only, as `pgaadauth.log_logins` says), the counters, this session's identity, and
//! the sentence the server log gets for a refusal. `pgaadauth_validate_token` records nothing.

use crate::login::decision::{Attempt, Door, Refusal};
use crate::login::identity;
use crate::settings::{self, LogFormat, LogLogins};
use crate::shmem::counters::{self, Counter};
use crate::shmem::pooled;
use pgaadauth_core::audit::{self, AuditLine};
use pgaadauth_core::label::PrincipalType;
use pgaadauth_core::log_text::log_safe;
use pgaadauth_core::token::Verified;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};
use std::ffi::{c_int, CStr};

/// A login the door let in: its audit line and count; for a login to this server (not a
/// pooler's check), this session's identity.
///
/// True when the login is a connection pooler's session: it comes from one of
/// `pgaadauth.pooler_addresses` (`from_pooler`), or its token is one the pooler's check
/// accepted (crate::shmem::pooled). No person is recorded for it.
pub fn accepted(attempt: &Attempt<'_>, verified: &Verified, from_pooler: bool) -> bool {
    if attempt.door == Door::Validate {
        return false;
    }
    let pooled = attempt.door == Door::Password
        && (from_pooler || pooled::accepted_by_pooler(attempt.token));
    audit_line(attempt, Ok((verified, pooled, from_pooler)));
    match attempt.door {
        Door::Password => counters::bump(Counter::LoginsAccepted),
        Door::OAuth => counters::bump(Counter::OAuthLoginsAccepted),
        Door::Pooler => counters::bump(Counter::PoolerLoginsAccepted),
        Door::Validate => return false,
    }
    if matches!(attempt.door, Door::Password | Door::OAuth) {
        identity::record_token(attempt.door.method(), verified, pooled);
    }
    pooled
}

/// A login refused: its audit line and counts; the sentence for the server log.
pub fn refused(attempt: &Attempt<'_>, refusal: &Refusal) -> String {
    if attempt.door == Door::Validate {
        return refusal.detail.clone();
    }
    audit_line(attempt, Err(refusal.code));
    counters::bump_rejected(refusal.code);
    match attempt.door {
        Door::OAuth => counters::bump(Counter::OAuthLoginsRejected),
        Door::Pooler => counters::bump(Counter::PoolerLoginsRejected),
        Door::Password | Door::Validate => {}
    }
    let role = log_safe(attempt.role);
    let detail = &refusal.detail;
    match attempt.door {
        Door::Password | Door::Validate => {
            format!("Token login to role \"{role}\" refused: {detail}")
        }
        Door::OAuth => format!("pgaadauth: OAuth token for role \"{role}\" refused: {detail}"),
        Door::Pooler => format!("pgaadauth: PgBouncer login of role \"{role}\" refused: {detail}"),
    }
}

/// A refusal that is not the token's (the pooler's cut password, or PostgreSQL refusing an
/// OAuth login after the validator accepted it): its audit line and counts.
pub fn refused_before_or_after(attempt: &Attempt<'_>, code: &'static str) {
    audit_line(attempt, Err(code));
    match attempt.door {
        Door::OAuth => counters::bump(Counter::OAuthLoginsRejected),
        Door::Pooler => counters::bump(Counter::PoolerLoginsRejected),
        Door::Password | Door::Validate => {}
    }
}

/// The audit line of a token login, as `pgaadauth.log_logins` says: an accepted login to this
/// server worded as `pgaadauth.log_format` says (`pooled`: a connection pooler's session;
/// `from_pooler`: from one of `pgaadauth.pooler_addresses`).
fn audit_line(attempt: &Attempt<'_>, outcome: Result<(&Verified, bool, bool), &str>) {
    let wanted = match settings::LOG_LOGINS.get() {
        LogLogins::All => true,
        LogLogins::Failures => outcome.is_err(),
        LogLogins::None => false,
    };
    if !wanted {
        return;
    }
    let label = attempt.label();
    if let Ok((v, pooled, from_pooler)) = outcome {
        if settings::LOG_FORMAT.get() == LogFormat::Azure && attempt.door != Door::Pooler {
            let line = audit::AzureLine {
                principal_type: label.map(|l| l.principal_type.as_str()),
                oid: Some(v.principal.as_str()),
                tid: v.tid.as_deref(),
                upn: v.upn.as_deref(),
                appid: v.appid.as_deref(),
                via_group: v.via_group.as_deref(),
                method: attempt.door.method(),
                pooled,
                person_hidden: from_pooler,
            };
            return log_server_only(line.to_string());
        }
    }
    let outcome = outcome.map(|(v, _, _)| v);
    // A refused token's claims are decoded (unverified) only for its audit line.
    let claims = match outcome {
        Ok(_) => Default::default(),
        Err(_) => audit::unverified_claims(attempt.token).unwrap_or_default(),
    };
    let policy;
    let (oid, tid, upn, appid, via_group) = match outcome {
        Ok(v) => (
            Some(v.principal.as_str()),
            v.tid.as_deref(),
            v.upn.as_deref(),
            v.appid.as_deref(),
            v.via_group.as_deref(),
        ),
        Err(_) => {
            policy = settings::policy();
            (
                audit::claim(&claims, &[&policy.principal_claim]),
                audit::claim(&claims, &["tid"]),
                audit::claim(&claims, &["upn", "preferred_username"]),
                audit::claim(&claims, &["appid", "azp"]),
                label
                    .filter(|l| l.principal_type == PrincipalType::Group)
                    .map(|l| l.oid.as_str()),
            )
        }
    };
    let line = AuditLine {
        accepted: outcome.is_ok(),
        role: attempt.role,
        principal_type: label.map(|l| l.principal_type.as_str()),
        oid,
        tid,
        upn,
        appid,
        via_group,
        client: attempt.client,
        reason: outcome.err(),
        method: attempt.door.method(),
    };
    log_server_only(line.to_string());
}

fn log_server_only(line: String) {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        line,
        "pgaadauth",
    )
    .report(PgLogLevel::LOG_SERVER_ONLY);
}

/// auth_delay's pause before a failed login: `auth_delay.milliseconds`, when auth_delay is
/// loaded (the setting is its own, not a placeholder). Neither order in
/// shared_preload_libraries lets auth_delay see a login pgaadauth refuses: its hook runs
/// either before pgaadauth's decision or never returns from it.
pub fn pause_as_auth_delay() {
    let name = c"auth_delay.milliseconds";
    let flags = unsafe { pg_sys::GetConfigOptionFlags(name.as_ptr(), true) };
    if flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as c_int != 0 {
        return;
    }
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        return;
    }
    let millis: i64 = unsafe { CStr::from_ptr(value) }
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if millis > 0 {
        unsafe { pg_sys::pg_usleep((millis * 1000) as _) };
    }
}
