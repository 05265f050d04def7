//! Group sync from SQL: `pgaadauth_sync_roles_for_group_members()` (a run now, in this
//! transaction) and `pgaadauth_list_synced_roles()`.

use crate::catalog::managers::require_principal_manager;
use crate::group_sync::{group_roles, labelled_roles, sync_now, Waiting};
use crate::settings;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::time::Instant;

/// Refuse where a sync cannot run: on a standby, with group sync off, or under a transaction
/// snapshot (the run must see every commit made while it waited for the lock).
fn require_sync_possible() {
    let refuse = |code, message: &'static str, hint: &'static str| {
        ErrorReport::new(code, message, "pgaadauth")
            .set_hint(hint)
            .report(PgLogLevel::ERROR)
    };
    if unsafe { pg_sys::RecoveryInProgress() } {
        refuse(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "group sync runs on the primary only",
            "Call pgaadauth_sync_roles_for_group_members() on the primary; standbys receive its roles through WAL.",
        );
    }
    if !settings::ENABLE_GROUP_SYNC.get() {
        refuse(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "group sync is off",
            "Set pgaadauth.enable_group_sync = on in postgresql.conf and reload.",
        );
    }
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        refuse(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            "pgaadauth_sync_roles_for_group_members cannot run in a REPEATABLE READ or SERIALIZABLE transaction",
            "Run it in a READ COMMITTED transaction.",
        );
    }
}

/// Sync now, in this transaction: one row per change, and per thing reported and not done.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_sync_roles_for_group_members() -> TableIterator<
    'static,
    (
        name!(role_name, String),
        name!(object_id, String),
        name!(group_role, Option<String>),
        name!(action, String),
        name!(detail, Option<String>),
    ),
> {
    require_principal_manager("sync group members");
    require_sync_possible();
    let waiting = Waiting {
        nap: &|d| crate::shmem::wait::nap_until(Instant::now() + d, d),
        stop: &|| false,
    };
    let changes = sync_now(&waiting);
    TableIterator::new(changes.into_iter().map(|c| {
        (
            c.role,
            c.object_id,
            c.group_role,
            c.action.to_string(),
            c.detail,
        )
    }))
}

/// The roles group sync created, with the group roles it made them members of.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_list_synced_roles() -> TableIterator<
    'static,
    (
        name!(rolname, String),
        name!(objectid, String),
        name!(objecttype, String),
        name!(canlogin, bool),
        name!(ismfa, bool),
        name!(groups, Vec<String>),
    ),
> {
    let roles = labelled_roles();
    let groups = group_roles(&roles);
    let mut rows: Vec<_> = roles
        .iter()
        .filter(|r| r.label.synced)
        .map(|r| {
            let mut member_of: Vec<String> = r
                .member_of
                .iter()
                .filter(|g| groups.contains_key(*g))
                .cloned()
                .collect();
            member_of.sort();
            (
                r.name.clone(),
                r.label.oid.clone(),
                r.label.principal_type.as_str().to_string(),
                r.can_login,
                r.label.mfa,
                member_of,
            )
        })
        .collect();
    rows.sort();
    TableIterator::new(rows)
}
