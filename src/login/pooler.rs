//! Logins checked for a connection pooler: `pgaadauth_pooler_login(role, password, client)`,
//! which the PAM module of PgBouncer (crates/pam) calls for every client login, by the
//! fast-path function call protocol (no statement text, so no log line or `pg_stat_activity`
//! row ever holds the password).
//!
//! The decision is a direct login's: a labelled role by token with every rule (groups and
//! overage through the directory), the same audit line (`method=pgbouncer`, the pooler's
//! client address); an unlabelled role by its PostgreSQL password while
//! `pgaadauth.password_auth` is on. Only roles granted EXECUTE may call it.

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::login::hook::decide_token;
use crate::login::outcome::{self, LoginAttempt};
use crate::settings;
use crate::shmem::counters::{self, Counter};
use pgaadauth_core::audit::Method;
use pgaadauth_core::pgbouncer::{looks_cut_by_pgbouncer, Answer, ACCEPTED, REFUSED};
use pgaadauth_core::token;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, CStr, CString};

/// The answer to the pooler: 1 accepted, 0 refused, the reason for its log sent first as an
/// `INFO` message ([`Answer`]). Its C symbol is new in 0.6.0 (`pooler_login_checked_wrapper`):
/// a database still on 0.5.0, whose function returns text, reaches [`old_pooler_login`].
#[pg_extern(name = "pgaadauth_pooler_login", strict, volatile, parallel_unsafe)]
fn pooler_login_checked(role: &str, password: &str, client: &str) -> i32 {
    // Errors of this call must not log it (the password is an argument).
    crate::catalog::labels::quiet_errors_until_end_of_transaction();
    match decide(role, password, client) {
        Ok(()) => {
            counters::bump(Counter::PoolerLoginsAccepted);
            ACCEPTED
        }
        Err(reason) => {
            counters::bump(Counter::PoolerLoginsRejected);
            // The whole reason in the server's log too (PgBouncer's may cut it).
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!(
                    "pgaadauth: PgBouncer login of role \"{}\" refused: {reason}",
                    pgaadauth_core::log_text::log_safe(role)
                ),
                "pgaadauth",
            )
            .set_detail(format!(
                "PgBouncer's client: {}.",
                pgaadauth_core::log_text::log_safe(if client.is_empty() {
                    "unknown"
                } else {
                    client
                })
            ))
            .report(PgLogLevel::LOG_SERVER_ONLY);
            // To the pooler only (INFO reaches the client whatever client_min_messages says).
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                Answer::reason_message(&reason),
                "pgaadauth",
            )
            .report(PgLogLevel::INFO);
            REFUSED
        }
    }
}

/// The C symbol of 0.5.0's text-returning `pgaadauth_pooler_login`, for a database whose
/// `ALTER EXTENSION pgaadauth UPDATE` has not run yet: a plain error, never an integer read as
/// text.
#[no_mangle]
pub extern "C-unwind" fn pg_finfo_pgaadauth_pooler_login_wrapper() -> *const pg_sys::Pg_finfo_record
{
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn pgaadauth_pooler_login_wrapper(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    old_pooler_login()
}

fn old_pooler_login() -> pg_sys::Datum {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pgaadauth's SQL objects in this database are older than its library",
        "pgaadauth",
    )
    .set_hint("Run ALTER EXTENSION pgaadauth UPDATE in this database, and install the PAM module of the same version.")
    .report(PgLogLevel::ERROR);
    unreachable!()
}

fn decide(role: &str, password: &str, client: &str) -> Result<(), String> {
    let name = CString::new(role).map_err(|_| "The role name holds a NUL byte.".to_string())?;
    let safe_role = pgaadauth_core::log_text::log_safe(role);
    if !may_log_in(role) {
        return Err(format!(
            "Role \"{safe_role}\" does not exist or may not log in."
        ));
    }
    let client = (!client.is_empty()).then_some(client);
    if let Some(why) = looks_cut_by_pgbouncer(password) {
        outcome::write(LoginAttempt {
            role,
            client,
            token: password,
            label: None,
            outcome: Err("password_cut"),
            method: Method::PgBouncer,
        });
        return Err(why);
    }
    match label_of_role_name(&name) {
        RoleLabel::Label(label) => {
            let decision = if password.is_empty() {
                Err((
                    token::Reject::NotCompactJws,
                    " The client sent an empty password.".into(),
                ))
            } else {
                decide_token(password, &label)
            };
            outcome::write(LoginAttempt {
                role,
                client,
                token: password,
                label: Some(&label),
                outcome: decision.as_ref().map_err(|(r, _)| r.code()),
                method: Method::PgBouncer,
            });
            match decision {
                Ok(_) => Ok(()),
                Err((reject, note)) => {
                    counters::bump_rejected(reject.code());
                    Err(format!("{reject}{note}"))
                }
            }
        }
        RoleLabel::Malformed(e) => {
            outcome::write(LoginAttempt {
                role,
                client,
                token: password,
                label: None,
                outcome: Err("label_malformed"),
                method: Method::PgBouncer,
            });
            Err(format!("The role's pgaadauth label is malformed: {e}."))
        }
        RoleLabel::None if !settings::PASSWORD_AUTH.get() => Err(format!(
            "Role \"{safe_role}\" has no pgaadauth label and pgaadauth.password_auth is off."
        )),
        RoleLabel::None => check_password(&name, password).map_err(|detail| {
            detail.unwrap_or_else(|| {
                format!("Password authentication of role \"{safe_role}\" failed.")
            })
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

/// Whether the role exists and has LOGIN (a direct login checks it after authentication; a
/// pooler would otherwise hand such a client a pooled connection).
fn may_log_in(role: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

extension_sql!(
    "-- Only the roles of connection poolers, granted EXECUTE by an administrator, may ask.\n\
     REVOKE ALL ON FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text) FROM PUBLIC;\n",
    name = "pgaadauth_pooler_login_acl",
    requires = [pooler_login_checked]
);
