//! This session's identity and every session's, from SQL: `pgaadauth_session()`,
//! `pgaadauth_session_claims()` and the rows of the `pgaadauth.sessions` view.

use crate::login::identity;
use crate::shmem::sessions::{self, Identity};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// How the current session logged in: one row; everything but the method NULL for a login
/// without a token. Any session, about itself only.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_restricted)]
fn pgaadauth_session() -> TableIterator<
    'static,
    (
        name!(method, Option<String>),
        name!(object_id, Option<String>),
        name!(tenant_id, Option<String>),
        name!(upn, Option<String>),
        name!(app_id, Option<String>),
        name!(via_group, Option<String>),
        name!(token_expires, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    TableIterator::once(row(identity::current().unwrap_or_default()))
}

type Row = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<pgrx::datum::TimestampWithTimeZone>,
);

fn row(i: Identity) -> Row {
    (
        (!i.method.is_empty()).then_some(i.method),
        i.object_id,
        i.tenant_id,
        i.upn,
        i.app_id,
        i.via_group,
        i.expires.map(sessions::timestamptz),
    )
}

/// The verified claims of the session's token, for row-level security policies; NULL for a
/// session without a token. Kept only when `pgaadauth.session_claims` was on at login.
#[pg_extern(stable, parallel_restricted)]
fn pgaadauth_session_claims() -> Option<pgrx::JsonB> {
    if identity::current().is_some_and(|i| i.pooled) {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "this session belongs to a connection pooler and has no person's claims",
            "pgaadauth",
        )
        .set_detail(
            "A connection pooler opened it, and hands it to whichever of its clients comes next.",
        )
        .set_hint("Connect directly for claims, or identify the person at the pooler.")
        .report(PgLogLevel::ERROR);
    }
    match identity::claims()? {
        Some(claims) => Some(pgrx::JsonB(serde_json::Value::Object((*claims).clone()))),
        None => {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "this session's token claims were not kept",
                "pgaadauth",
            )
            .set_detail("pgaadauth.session_claims was off when the session logged in.")
            .set_hint("Set pgaadauth.session_claims = on and reload; sessions that log in afterwards keep their claims.")
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
    }
}

/// Every listed session's row (the `pgaadauth.sessions` view joins it to pg_stat_activity):
/// superusers, Entra administrators, and members of pg_read_all_stats.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_session_rows() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(method, Option<String>),
        name!(object_id, Option<String>),
        name!(tenant_id, Option<String>),
        name!(upn, Option<String>),
        name!(app_id, Option<String>),
        name!(via_group, Option<String>),
        name!(token_expires, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    crate::catalog::managers::require_reader_or_principal_manager(
        pg_sys::ROLE_PG_READ_ALL_STATS,
        "list the sessions of other roles",
    );
    TableIterator::new(sessions::rows().into_iter().map(|(pid, identity)| {
        let (a, b, c, d, e, f, g) = row(identity::shown(identity));
        (pid, a, b, c, d, e, f, g)
    }))
}

extension_sql_file!(
    "../../sql/sessions.sql",
    name = "pgaadauth_sessions_view",
    requires = [pgaadauth_session_rows, "pgaadauth_revocations_table"]
);
