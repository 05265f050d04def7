//! Who the current session is: recorded once, at login, in the backend's own memory (and its
//! slot of the shared session table); `pgaadauth_session()`, `pgaadauth_session_claims()` and
//! the rows of the `pgaadauth.sessions` view. Nothing in SQL can change it.

use crate::settings;
use crate::shmem::sessions::{self, Identity};
use pgaadauth_core::audit::Method;
use pgaadauth_core::token::Verified;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::cell::RefCell;

struct Session {
    identity: Identity,
    /// The token's verified claims, when `pgaadauth.session_claims` was on at login.
    claims: Option<std::sync::Arc<serde_json::Map<String, serde_json::Value>>>,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// A token login succeeded (token as password, or OAuth).
pub fn record_token(method: Method, verified: &Verified) {
    let identity = Identity {
        method: method.as_str().into(),
        object_id: Some(verified.principal.clone()),
        tenant_id: verified.tid.clone(),
        upn: verified.upn.clone(),
        app_id: verified.appid.clone(),
        via_group: verified.via_group.clone(),
        expires: Some(verified.exp),
        issued: verified.iat,
    };
    // Bounded: the claims of a token of at most token::MAX_TOKEN_LEN bytes.
    let claims = settings::SESSION_CLAIMS
        .get()
        .then(|| verified.claims.clone());
    record(identity, claims);
}

/// A login without a token: pgaadauth's password fallback (`password`), or another method
/// of pg_hba.conf (its name).
pub fn record_other(method: &str) {
    record(
        Identity {
            method: method.into(),
            ..Identity::default()
        },
        None,
    );
}

fn record(
    identity: Identity,
    claims: Option<std::sync::Arc<serde_json::Map<String, serde_json::Value>>>,
) {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return; // recorded once, at login
        }
        sessions::register(&identity);
        *s = Some(Session { identity, claims });
    });
}

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
    let identity = SESSION.with(|s| s.borrow().as_ref().map(|s| s.identity.clone()));
    TableIterator::once(row(identity.unwrap_or_default()))
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
    SESSION.with(|s| {
        let s = s.borrow();
        let session = s.as_ref()?;
        session.identity.expires?;
        match &session.claims {
            Some(claims) => Some(pgrx::JsonB(serde_json::Value::Object((**claims).clone()))),
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
    })
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
    let stats_reader = unsafe {
        pg_sys::has_privs_of_role(
            pg_sys::GetUserId(),
            pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS),
        )
    };
    if !stats_reader {
        crate::catalog::labels::require_principal_manager("list the sessions of other roles");
    }
    TableIterator::new(sessions::rows().into_iter().map(|(pid, identity)| {
        let (a, b, c, d, e, f, g) = row(identity);
        (pid, a, b, c, d, e, f, g)
    }))
}

extension_sql!(
    r#"
-- Every session's login, next to pg_stat_activity: superusers, Entra administrators and
-- members of pg_read_all_stats (pgaadauth_session_rows() refuses others).
CREATE VIEW pgaadauth.sessions AS
    SELECT a.pid, a.usename, a.datname, a.client_addr, a.backend_start,
           s.method, s.object_id, s.tenant_id, s.upn, s.app_id, s.via_group, s.token_expires
    FROM pg_catalog.pg_stat_activity a
    JOIN pg_catalog.pgaadauth_session_rows() s ON s.pid = a.pid;
GRANT USAGE ON SCHEMA pgaadauth TO PUBLIC;
GRANT SELECT ON pgaadauth.sessions TO PUBLIC;
"#,
    name = "pgaadauth_sessions_view",
    requires = [pgaadauth_session_rows, "pgaadauth_revocations_table"]
);
