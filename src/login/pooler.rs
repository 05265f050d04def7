//! Logins checked for a connection pooler: `pgaadauth_pooler_login(role, password, client)`,
//! which the PAM module of PgBouncer (crates/pam) calls for every client login, by the
//! fast-path function call protocol (no statement text, so no log line or `pg_stat_activity`
//! row ever holds the password).
//!
//! The decision is a direct login's: a labelled role by token with every rule (groups and
//! overage through the directory), the same audit line (`method=pgbouncer`, the pooler's
//! client address); an unlabelled role by its PostgreSQL password while
//! `pgaadauth.password_auth` is on. Only roles granted EXECUTE may call it.
//!
//! Not a password oracle: a superuser or REPLICATION role is refused unless
//! `pgaadauth.pooler_privileged_roles` is on (the check runs outside pg_hba.conf), and a
//! refusal waits `auth_delay.milliseconds` first when auth_delay is loaded, as a direct login
//! would. A token it accepts is remembered (crate::shmem::pooled): PgBouncer opens its server
//! connections with it, and those sessions are the pooler's, not that person's.

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::catalog::privileges::{login_attributes, superuser_or_replication};
use crate::login::decision::{self, Attempt, Door, Mapping};
use crate::login::outcome;
use crate::settings;
use crate::shmem::counters::{self, Counter};
use crate::shmem::pooled;
use pgaadauth_core::log_text::log_safe;
use pgaadauth_core::pooler::{looks_cut_by_pgbouncer, Answer};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, CStr, CString};

/// Decide a pooler's client login, record it, and tell the pooler why when refused (an `INFO`
/// message ahead of the answer, [`Answer`]). True when accepted.
pub fn login(role: &str, password: &str, client: &str) -> bool {
    let client = (!client.is_empty()).then_some(client);
    let refused = match decide(role, password, client) {
        Ok(()) => return true,
        Err(refused) => refused,
    };
    outcome::pause_as_auth_delay();
    let (sentence, reason) = match refused {
        Refused::Counted { sentence, reason } => (sentence, reason),
        Refused::Other(reason) => {
            counters::bump(Counter::PoolerLoginsRejected);
            let role = log_safe(role);
            (
                format!("pgaadauth: PgBouncer login of role \"{role}\" refused: {reason}"),
                reason,
            )
        }
    };
    // The whole reason in the server's log too (PgBouncer's may cut it).
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        sentence,
        "pgaadauth",
    )
    .set_detail(format!(
        "PgBouncer's client: {}.",
        log_safe(client.unwrap_or("unknown"))
    ))
    .report(PgLogLevel::LOG_SERVER_ONLY);
    // To the pooler only (INFO reaches the client whatever client_min_messages says).
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        Answer::reason_message(&reason),
        "pgaadauth",
    )
    .report(PgLogLevel::INFO);
    false
}

/// Why a pooler's client was refused.
enum Refused {
    /// By the token decision, already recorded: the log's sentence and the reason.
    Counted { sentence: String, reason: String },
    /// Before or beside it (no such role, a password): the reason.
    Other(String),
}

fn decide(role: &str, password: &str, client: Option<&str>) -> Result<(), Refused> {
    let other = |r: String| Refused::Other(r);
    let name = CString::new(role).map_err(|_| other("The role name holds a NUL byte.".into()))?;
    let safe_role = log_safe(role);
    // As a direct login would be refused after authentication: a pooler would otherwise hand
    // such a client a pooled connection.
    let Some(role_is) = login_attributes(&name).filter(|a| a.can_login) else {
        return Err(other(format!(
            "Role \"{safe_role}\" does not exist or may not log in."
        )));
    };
    if !settings::POOLER_PRIVILEGED_ROLES.get() {
        if let Some(what) = superuser_or_replication(role_is.roleid) {
            return Err(other(format!(
                "Role \"{safe_role}\" is {what}, and pgaadauth.pooler_privileged_roles is off."
            )));
        }
    }
    // A password PgBouncer cut (whatever the role): say so rather than why it fails.
    if let Some(why) = looks_cut_by_pgbouncer(password) {
        let attempt = Attempt {
            door: Door::Pooler,
            role,
            token: password,
            client,
            mapping: Mapping::Label(RoleLabel::None),
            line_issuer: None,
        };
        outcome::refused_before_or_after(&attempt, "password_cut");
        let sentence = format!("pgaadauth: PgBouncer login of role \"{safe_role}\" refused: {why}");
        return Err(Refused::Counted {
            sentence,
            reason: why,
        });
    }
    let label = label_of_role_name(&name);
    if let RoleLabel::None = label {
        let checked = if !settings::PASSWORD_AUTH.get() {
            Err(format!(
                "Role \"{safe_role}\" has no pgaadauth label and pgaadauth.password_auth is off."
            ))
        } else {
            check_password(&name, password).map_err(|detail| {
                detail.unwrap_or_else(|| {
                    format!("Password authentication of role \"{safe_role}\" failed.")
                })
            })
        };
        if checked.is_ok() {
            counters::bump(Counter::PoolerLoginsAccepted);
            crate::shmem::password_logins::record(
                role,
                crate::shmem::password_logins::now_micros(),
            );
        }
        return checked.map_err(other);
    }
    let attempt = Attempt {
        door: Door::Pooler,
        role,
        token: password,
        client,
        mapping: Mapping::Label(label),
        line_issuer: None,
    };
    match decision::decide(&attempt) {
        Ok(verified) => {
            let _ = outcome::accepted(&attempt, &verified, false);
            // PgBouncer's server connections will log in with it: they are the pooler's.
            let skew = i64::from(settings::CLOCK_SKEW.get());
            pooled::remember(password, verified.exp, unix_now(), skew);
            Ok(())
        }
        Err(refusal) => Err(Refused::Counted {
            sentence: outcome::refused(&attempt, &refusal),
            reason: refusal.detail,
        }),
    }
}

/// As PostgreSQL checks a cleartext password: against the role's SCRAM or MD5 secret, and its
/// VALID UNTIL. The error: PostgreSQL's log detail, when it gave one.
fn check_password(role: &CStr, password: &str) -> Result<(), Option<String>> {
    let password = CString::new(password).map_err(|_| None)?;
    let mut logdetail: *const c_char = std::ptr::null();
    unsafe {
        let shadow = pg_sys::get_role_password(role.as_ptr(), (&raw mut logdetail).cast());
        let status = if shadow.is_null() {
            pg_sys::STATUS_ERROR as c_int
        } else {
            pg_sys::plain_crypt_verify(
                role.as_ptr(),
                shadow,
                password.as_ptr(),
                (&raw mut logdetail).cast(),
            )
        };
        if status == pg_sys::STATUS_OK as c_int {
            return Ok(());
        }
        Err((!logdetail.is_null())
            .then(|| CStr::from_ptr(logdetail).to_string_lossy().into_owned()))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
