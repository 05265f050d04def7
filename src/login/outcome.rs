//! The audit line of a token login, at LOG, server only, as `pgaadauth.log_logins` says; the
//! same line for both methods (token as password, OAuth).

use crate::settings::{self, LogLogins};
use pgaadauth_core::audit::{self, AuditLine, Method};
use pgaadauth_core::label::{Label, PrincipalType};
use pgaadauth_core::token::Verified;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// One token login, accepted or refused (`outcome`: the reason code).
pub struct LoginAttempt<'a> {
    pub role: &'a str,
    pub client: Option<&'a str>,
    pub token: &'a str,
    pub label: Option<&'a Label>,
    pub outcome: Result<&'a Verified, &'a str>,
    pub method: Method,
}

pub fn write(attempt: LoginAttempt<'_>) {
    let wanted = match settings::LOG_LOGINS.get() {
        LogLogins::All => true,
        LogLogins::Failures => attempt.outcome.is_err(),
        LogLogins::None => false,
    };
    if !wanted {
        return;
    }
    // A refused token's claims are decoded (unverified) only for its audit line.
    let claims = match attempt.outcome {
        Ok(_) => Default::default(),
        Err(_) => audit::unverified_claims(attempt.token).unwrap_or_default(),
    };
    let principal_claim = settings::text(&settings::PRINCIPAL_CLAIM);
    let (oid, tid, upn, appid, via_group) = match attempt.outcome {
        Ok(v) => (
            Some(v.principal.as_str()),
            v.tid.as_deref(),
            v.upn.as_deref(),
            v.appid.as_deref(),
            v.via_group.as_deref(),
        ),
        Err(_) => (
            audit::claim(&claims, &[&principal_claim]),
            audit::claim(&claims, &["tid"]),
            audit::claim(&claims, &["upn", "preferred_username"]),
            audit::claim(&claims, &["appid", "azp"]),
            attempt
                .label
                .filter(|l| l.principal_type == PrincipalType::Group)
                .map(|l| l.oid.as_str()),
        ),
    };
    let line = AuditLine {
        accepted: attempt.outcome.is_ok(),
        role: attempt.role,
        principal_type: attempt.label.map(|l| l.principal_type.as_str()),
        oid,
        tid,
        upn,
        appid,
        via_group,
        client: attempt.client,
        reason: attempt.outcome.err(),
        method: attempt.method,
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        line.to_string(),
        "pgaadauth",
    )
    .report(PgLogLevel::LOG_SERVER_ONLY);
}
