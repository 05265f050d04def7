//! `pgaadauth_password_logins()`: which roles still log in with a password on pgaadauth's lines,
//! how often and when last (crate::shmem::password_logins), and the table that keeps it.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

/// Password logins on pgaadauth's lines per role since tracking began (token logins are not
/// counted): superusers, Entra administrators and members of pg_read_all_stats.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_password_logins() -> TableIterator<
    'static,
    (
        name!(role_name, String),
        name!(logins, i64),
        name!(first_login, TimestampWithTimeZone),
        name!(last_login, TimestampWithTimeZone),
    ),
> {
    crate::catalog::managers::require_reader_or_principal_manager(
        pg_sys::ROLE_PG_READ_ALL_STATS,
        "read the password logins",
    );
    let mut rows = crate::shmem::password_logins::rows();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    TableIterator::new(
        rows.into_iter()
            .map(|(role, l)| (role, l.count, timestamptz(l.first), timestamptz(l.last))),
    )
}

extension_sql_file!(
    "../../sql/password_logins.sql",
    name = "pgaadauth_password_logins_table",
    requires = ["pgaadauth_revocations_table"]
);

/// A time in microseconds since the Unix epoch as a timestamptz (PostgreSQL counts from 2000).
fn timestamptz(micros: i64) -> TimestampWithTimeZone {
    const UNIX_TO_POSTGRES: i64 = 946_684_800_000_000;
    TimestampWithTimeZone::try_from(micros - UNIX_TO_POSTGRES)
        .unwrap_or_else(|e| pgrx::error!("{e}"))
}
