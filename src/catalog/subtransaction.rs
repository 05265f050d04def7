//! Catalog work in a subtransaction of its own: a PostgreSQL error rolls back only that work and
//! comes back as text, so that a worker goes on (group sync's changes, the password logins'
//! table).

use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::prelude::*;

/// The report of a caught error, whatever its kind.
pub fn caught_report(e: &CaughtError) -> &ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    }
}

/// Run `f` in a subtransaction: its error rolls back only what `f` did, and comes back as text.
/// A cancel (`pg_cancel_backend`, `statement_timeout`) is raised again once the subtransaction
/// is rolled back.
pub fn in_subtransaction<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    let run = std::panic::AssertUnwindSafe(f);
    let outcome = PgTryBuilder::new(move || Ok(run()))
        .catch_others(|e| Err(Box::new(e)))
        .execute();
    unsafe {
        if outcome.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    outcome.map_err(|e| {
        let report = caught_report(&e);
        if report.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
            (*e).rethrow();
        }
        report.message().to_string()
    })
}
