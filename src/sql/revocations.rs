//! Token revocations from SQL: `pgaadauth_revoke_tokens`, `pgaadauth_lift_revocation`,
//! `pgaadauth_list_revocations`. A change reaches the shared copy at commit (transaction
//! callbacks), and ends the sessions it covers.

use crate::catalog::managers::{as_bootstrap_superuser, require_principal_manager};
use crate::catalog::revocations::table_is_the_extensions;
use crate::settings;
use crate::shmem::revocations::{apply, revoked_before, snapshot, MAX_REVOCATIONS};
use pgaadauth_core::session::{Lifetime, MAX_OBJECT_ID_LEN};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::cell::RefCell;
struct Pending {
    object_id: String,
    revoked_before: Option<i64>,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    /// Revocations (Some) and lifts (None) of the current transaction, applied at its commit,
    /// each with the subtransaction that made it (dropped if that one rolls back).
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if pending.is_empty() {
                return;
            }
            for p in &pending {
                apply(&p.object_id, p.revoked_before);
            }
            // End the sessions the new revocations cover; nothing here may fail (committed).
            crate::shmem::sessions::end_due(
                pgaadauth_core::clock::unix_now(),
                Lifetime::Unlimited,
                &|o| revoked_before(o),
            );
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            // A prepared transaction's revocation takes effect through the session worker.
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// A subtransaction's end: a rolled-back one's revocations and lifts never happened; a
/// committed one's become its parent's.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => p.retain(|e| e.subxact != subxact),
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => p
                .iter_mut()
                .filter(|e| e.subxact == subxact)
                .for_each(|e| e.subxact = parent),
            _ => {}
        }
    });
}

fn after_commit(object_id: &str, time: Option<i64>) {
    if !CALLBACK_REGISTERED.with(|c| c.replace(true)) {
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
        }
    }
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        p.borrow_mut().push(Pending {
            object_id: object_id.to_string(),
            revoked_before: time,
            subxact,
        })
    });
}

/// Revocations live in one database: refuse elsewhere, saying where.
fn require_revocation_database(what: &str) {
    let here = unsafe {
        std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId))
            .to_string_lossy()
            .into_owned()
    };
    let there = settings::text(&settings::DATABASE);
    if here != there {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("token revocations are kept in database \"{there}\", not \"{here}\""),
            "pgaadauth",
        )
        .set_detail(format!("pgaadauth.database names the database whose pgaadauth.revocations table every login checks; {what} there."))
        .report(PgLogLevel::ERROR);
    }
    if !table_is_the_extensions() {
        error!(
            "the table pgaadauth.revocations does not exist; run ALTER EXTENSION pgaadauth UPDATE"
        );
    }
}

/// An object id as revocations store it: GUIDs in canonical form.
fn object_id_argument(object_id: &str) -> String {
    let trimmed = object_id.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_OBJECT_ID_LEN {
        error!(
            "an object id is 1 to {MAX_OBJECT_ID_LEN} bytes long, not {}",
            trimmed.len()
        );
    }
    pgaadauth_core::label::normalize_guid(trimmed).unwrap_or_else(|| trimmed.to_string())
}

fn caller_name() -> String {
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false))
            .to_string_lossy()
            .into_owned()
    }
}

/// Refuse every token of the principal `object_id` issued until now (also as a group member)
/// and end its open sessions, at commit. Superusers and Entra administrators, in the database
/// `pgaadauth.database`. Returns the time tokens must be issued after.
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_revoke_tokens(object_id: &str) -> pgrx::datum::TimestampWithTimeZone {
    require_principal_manager("revoke tokens");
    require_revocation_database("revoke tokens");
    // The count below must see every committed revocation: under REPEATABLE READ it would see
    // the transaction's older snapshot (SERIALIZABLE detects the conflict itself).
    if unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_REPEATABLE_READ as i32 {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            "pgaadauth_revoke_tokens cannot run in a REPEATABLE READ transaction",
            "pgaadauth",
        )
        .set_hint("Run it in a READ COMMITTED or SERIALIZABLE transaction.")
        .report(PgLogLevel::ERROR);
    }
    let object_id = object_id_argument(object_id);
    let now = pgaadauth_core::clock::unix_now();
    let by = caller_name();
    as_bootstrap_superuser(|| {
        // Concurrent revocations count one after the other.
        Spi::run("LOCK TABLE pgaadauth.revocations IN SHARE ROW EXCLUSIVE MODE")
            .unwrap_or_else(|e| error!("could not lock pgaadauth.revocations: {e}"));
        let known: i64 = Spi::get_one_with_args(
            "SELECT count(*) FROM pgaadauth.revocations WHERE object_id <> $1",
            &[object_id.as_str().into()],
        )
        .ok()
        .flatten()
        .unwrap_or(0);
        if known as usize >= MAX_REVOCATIONS {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("the server holds at most {MAX_REVOCATIONS} token revocations"),
                "pgaadauth",
            )
            .set_hint("Lift revocations older than the longest token lifetime (pgaadauth_lift_revocation): every token they cover has expired.")
            .report(PgLogLevel::ERROR);
        }
        Spi::run_with_args(
            "INSERT INTO pgaadauth.revocations (object_id, revoked_before, revoked_by) \
             VALUES ($1, pg_catalog.to_timestamp($2), $3) \
             ON CONFLICT (object_id) DO UPDATE SET revoked_before = excluded.revoked_before, revoked_by = excluded.revoked_by",
            &[object_id.as_str().into(), (now as f64).into(), by.as_str().into()],
        )
        .unwrap_or_else(|e| error!("could not record the revocation: {e}"));
    });
    after_commit(&object_id, Some(now));
    crate::shmem::sessions::timestamptz(now)
}

/// Lift the revocation of `object_id`: its tokens are accepted again (from commit). Returns
/// whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_lift_revocation(object_id: &str) -> bool {
    require_principal_manager("lift token revocations");
    require_revocation_database("lift revocations");
    let object_id = object_id_argument(object_id);
    let lifted = as_bootstrap_superuser(|| {
        Spi::get_one_with_args::<bool>(
            "WITH d AS (DELETE FROM pgaadauth.revocations WHERE object_id = $1 RETURNING 1) \
             SELECT count(*) > 0 FROM d",
            &[object_id.as_str().into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    });
    if lifted {
        after_commit(&object_id, None);
    }
    lifted
}

/// The revocations in force: the table, and whether this server enforces each (its shared
/// copy). Superusers and Entra administrators.
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_list_revocations() -> TableIterator<
    'static,
    (
        name!(object_id, String),
        name!(revoked_before, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(revoked_by, Option<String>),
        name!(enforced, bool),
    ),
> {
    require_principal_manager("list token revocations");
    require_revocation_database("list revocations");
    let enforced = snapshot();
    let rows = as_bootstrap_superuser(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT object_id, revoked_before, revoked_by::text FROM pgaadauth.revocations ORDER BY revoked_before, object_id",
                None,
                &[],
            )
            .map(|table| {
                table
                    .map(|row| {
                        let object_id: String = row.get(1).ok().flatten().unwrap_or_default();
                        let when: Option<pgrx::datum::TimestampWithTimeZone> =
                            row.get(2).ok().flatten();
                        let by: Option<String> = row.get(3).ok().flatten();
                        (object_id, when, by)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|e| error!("could not read pgaadauth.revocations: {e}"))
        })
    });
    TableIterator::new(rows.into_iter().map(move |(object_id, when, by)| {
        let on = enforced.iter().any(|(o, _)| *o == object_id);
        (object_id, when, by, on)
    }))
}

extension_sql_file!(
    "../../sql/revocations.sql",
    name = "pgaadauth_revocations_table"
);
