//! The pooler's door from SQL: `pgaadauth_pooler_login(role, password, client)`, which the PAM
//! module of PgBouncer (crates/pam) calls for every client login by the fast-path function call
//! protocol (no statement text, so no log line or `pg_stat_activity` row holds the password).
//! Only roles granted EXECUTE may call it. The decision is the login's (crate::login::pooler).

use pgaadauth_core::pooler::{ACCEPTED, REFUSED};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The answer to the pooler: 1 accepted, 0 refused, the reason for its log sent first as an
/// `INFO` message ([`Answer`]). Its C symbol is new in 0.6.0 (`pooler_login_checked_wrapper`):
/// a database still on 0.5.0, whose function returns text, reaches [`old_pooler_login`].
#[pg_extern(name = "pgaadauth_pooler_login", strict, volatile, parallel_unsafe)]
fn pooler_login_checked(role: &str, password: &str, client: &str) -> i32 {
    // Errors of this call must not log it (the password is an argument).
    crate::catalog::managers::quiet_errors_until_end_of_transaction();
    if crate::login::pooler::login(role, password, client) {
        ACCEPTED
    } else {
        REFUSED
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

extension_sql_file!(
    "../../sql/pooler.sql",
    name = "pgaadauth_pooler_login_acl",
    requires = [pooler_login_checked]
);
