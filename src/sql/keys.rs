//! The signing keys from SQL: `pgaadauth_jwks_rows()` (under `pgaadauth_jwks_status()`) and
//! `pgaadauth_refresh_jwks()`.

use crate::catalog::managers::require_principal_manager;
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Raw rows of `pgaadauth_jwks_status()` (times as Unix seconds); superusers and Entra admins.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_jwks_rows() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(issuer, Option<String>),
        name!(kid, Option<String>),
        name!(kty, Option<String>),
        name!(alg, Option<String>),
        name!(fetched_at, Option<i64>),
        name!(next_refresh, Option<i64>),
        name!(last_error, Option<String>),
        name!(refreshes, i64),
        name!(failures, i64),
    ),
> {
    // No secret in it (sources, key ids, times, errors): monitoring reads it too.
    crate::catalog::managers::require_reader_or_principal_manager(
        pg_sys::ROLE_PG_MONITOR,
        "read the pgaadauth key status",
    );
    let rows: Vec<_> = crate::shmem::keys::status()
        .into_iter()
        .map(|r| {
            (
                r.source,
                r.issuer,
                r.kid,
                r.kty.map(String::from),
                r.alg,
                r.fetched_at,
                r.next_refresh,
                r.last_error,
                r.refreshes,
                r.failures,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Fetch every key source now and wait for the outcome (not rate-limited).
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_refresh_jwks() -> String {
    use crate::shmem::keys::{refresh_and_wait, Refresh};
    require_principal_manager("refresh the pgaadauth signing keys");
    let sources = settings::issuer_settings().key_sources().len().max(1) as u32;
    // Discovery and key set for each source, each within http_timeout, and a margin.
    let wait = settings::http_timeout() * 2 * sources + std::time::Duration::from_secs(2);
    let now = pgaadauth_core::clock::unix_now();
    match refresh_and_wait(now, &settings::timing(), wait, false) {
        Refresh::NoWorker => {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "the pgaadauth key worker is not running",
                "pgaadauth",
            )
            .set_hint("Check the server log; the postmaster restarts the worker after it exits.")
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
        Refresh::TimedOut => {
            warning!(
                "pgaadauth: the key refresh did not finish within {} s",
                wait.as_secs()
            );
        }
        Refresh::Changed | Refresh::Unchanged | Refresh::RateLimited => {}
    }
    let status = crate::shmem::keys::status();
    let errors: Vec<String> = status
        .iter()
        .filter_map(|r| r.last_error.as_ref().map(|e| format!("{}: {e}", r.source)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for e in &errors {
        warning!("pgaadauth: {e}");
    }
    let keys = status.iter().filter(|r| r.kid.is_some()).count();
    let failed = status
        .iter()
        .filter(|r| r.last_error.is_some())
        .map(|r| &r.source)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let total = status
        .iter()
        .map(|r| &r.source)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    format!(
        "{keys} signing keys cached; {} of {total} key sources refreshed",
        total - failed
    )
}
