//! Token revocations: `pgaadauth_revoke_tokens(object_id)` refuses every token of a principal
//! issued until now, also as a group member, and ends its open sessions.
//!
//! The table `pgaadauth.revocations` in the database `pgaadauth.database` holds them, so they
//! survive restarts, reach standbys through WAL and go into dumps. Logins, which run before any
//! database is open, read a copy in shared memory: the session worker keeps it equal to the
//! table (every second, on primaries and standbys), and a committed revocation or lift updates
//! it at once in the committing backend.

use crate::catalog::labels::{as_bootstrap_superuser, require_principal_manager};
use crate::settings;
use crate::shmem::keys;
use pgaadauth_core::session::{check_revocation, Lifetime, MAX_OBJECT_ID_LEN};
use pgaadauth_core::token::Reject;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// How many revocations the server holds.
pub const MAX_REVOCATIONS: usize = 1024;

#[repr(C)]
struct Entry {
    object_id: [u8; MAX_OBJECT_ID_LEN],
    len: u8,
    revoked_before: i64,
}

impl Entry {
    fn object_id(&self) -> &[u8] {
        &self.object_id[..self.len as usize]
    }
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    /// The session worker has read the table since the server started.
    loaded: AtomicBool,
    /// The table holds more revocations than fit: no token is accepted until it is read again
    /// with fewer (an unenforced revocation must not let a token in).
    overflowed: AtomicBool,
    count: AtomicU32,
    /// Bumped by every change made at a commit, so that the session worker never replaces the
    /// copy with a reading that began before it.
    generation: AtomicU64,
    entries: [Entry; MAX_REVOCATIONS],
}

static mut TABLE: *mut Header = std::ptr::null_mut();

pub fn shmem_size() -> usize {
    std::mem::size_of::<Header>()
}

/// In shmem_startup, under AddinShmemInitLock.
pub(crate) unsafe fn startup() {
    unsafe {
        let mut found = false;
        let ptr =
            pg_sys::ShmemInitStruct(c"pgaadauth revocations".as_ptr(), shmem_size(), &mut found)
                as *mut Header;
        if !found {
            std::ptr::write_bytes(ptr as *mut u8, 0, shmem_size());
            (*ptr).lock = keys::tranche_lock(3);
        }
        TABLE = ptr;
    }
}

/// The copy, shared: entries change only through [`with_lock_mut`].
fn table() -> Option<&'static Header> {
    unsafe { TABLE.as_ref() }
}

struct Release(*mut pg_sys::LWLock);

impl Drop for Release {
    fn drop(&mut self) {
        unsafe { pg_sys::LWLockRelease(self.0) };
    }
}

fn with_lock<R>(f: impl FnOnce(&Header) -> R) -> Option<R> {
    let t = table()?;
    unsafe { pg_sys::LWLockAcquire(t.lock, pg_sys::LWLockMode::LW_SHARED) };
    let _release = Release(t.lock);
    Some(f(t))
}

/// The copy under its exclusive lock; no other reference to it is held meanwhile.
fn with_lock_mut<R>(f: impl FnOnce(&mut Header) -> R) -> Option<R> {
    let lock = table()?.lock;
    unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
    let _release = Release(lock);
    Some(f(unsafe { &mut *TABLE }))
}

/// Until when `object_id`'s tokens are revoked, if they are.
pub fn revoked_before(object_id: &str) -> Option<i64> {
    with_lock(|t| {
        let n = t.count.load(Ordering::Relaxed) as usize;
        t.entries[..n]
            .iter()
            .find(|e| e.object_id() == object_id.as_bytes())
            .map(|e| e.revoked_before)
    })
    .flatten()
}

/// Every revocation in shared memory.
pub fn snapshot() -> Vec<(String, i64)> {
    with_lock(|t| {
        let n = t.count.load(Ordering::Relaxed) as usize;
        t.entries[..n]
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(e.object_id()).into_owned(),
                    e.revoked_before,
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

/// A login's check of a verified token: refused when its principal's tokens were revoked
/// after it was issued, or while the revocations are not known (after a start, until the
/// session worker has read them, a login waits up to `pgaadauth.kid_miss_wait` for that; or
/// while the table holds more than the server can enforce).
pub fn check(principal: &str, iat: Option<i64>) -> Result<(), Reject> {
    let Some(t) = table() else {
        return Ok(());
    };
    if !t.loaded.load(Ordering::Acquire) {
        let deadline = Instant::now() + settings::kid_miss_wait();
        while !t.loaded.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return Err(Reject::RevocationsUnknown(format!(
                    "the pgaadauth session worker has not read pgaadauth.revocations in database \"{}\" since the server started; see its messages in this log",
                    pgaadauth_core::log_text::log_safe(&settings::text(&settings::DATABASE))
                )));
            }
            unsafe {
                pg_sys::pg_usleep(10_000);
            }
            pgrx::check_for_interrupts!();
        }
    }
    if t.overflowed.load(Ordering::Acquire) {
        return Err(Reject::RevocationsUnknown(format!(
            "pgaadauth.revocations holds more than the {MAX_REVOCATIONS} revocations the server enforces; lift old ones"
        )));
    }
    if t.count.load(Ordering::Acquire) == 0 {
        return Ok(());
    }
    check_revocation(iat, revoked_before(principal))
}

/// The change generation now: the session worker reads it before it reads the table.
pub fn generation() -> u64 {
    table().map_or(0, |t| t.generation.load(Ordering::Acquire))
}

/// What became of a reading of the table.
pub enum Replaced {
    /// It is the shared copy now; `overflowed`: it holds more revocations than fit.
    Applied { overflowed: bool },
    /// A commit changed the copy after the reading began: read again.
    Stale,
}

/// The session worker: the table's rows, read after `generation`, become the shared copy;
/// unless a commit changed the copy since.
pub fn replace_all(rows: &[(String, i64)], generation: u64) -> Replaced {
    let overflowed = rows.len() > MAX_REVOCATIONS;
    let applied = with_lock_mut(|t| {
        if t.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        let mut n = 0;
        for (object_id, revoked_before) in rows.iter().take(MAX_REVOCATIONS) {
            write_entry(&mut t.entries[n], object_id, *revoked_before);
            n += 1;
        }
        t.count.store(n as u32, Ordering::Release);
        t.overflowed.store(overflowed, Ordering::Release);
        t.loaded.store(true, Ordering::Release);
        true
    });
    match applied {
        Some(false) => Replaced::Stale,
        _ => Replaced::Applied { overflowed },
    }
}

fn write_entry(e: &mut Entry, object_id: &str, revoked_before: i64) {
    let len = object_id.len().min(MAX_OBJECT_ID_LEN);
    e.object_id[..len].copy_from_slice(&object_id.as_bytes()[..len]);
    e.len = len as u8;
    e.revoked_before = revoked_before;
}

/// After a commit: one revocation added or replaced, or (None) lifted.
fn apply(object_id: &str, revoked_before: Option<i64>) {
    with_lock_mut(|t| {
        t.generation.fetch_add(1, Ordering::AcqRel);
        let n = t.count.load(Ordering::Relaxed) as usize;
        let at = t.entries[..n]
            .iter()
            .position(|e| e.object_id() == object_id.as_bytes());
        match (at, revoked_before) {
            (Some(i), Some(time)) => t.entries[i].revoked_before = time,
            (None, Some(time)) if n < MAX_REVOCATIONS => {
                write_entry(&mut t.entries[n], object_id, time);
                t.count.store(n as u32 + 1, Ordering::Release);
            }
            // Full (rows inserted past the function's check): refuse tokens until the session
            // worker reads the table with fewer.
            (None, Some(_)) => t.overflowed.store(true, Ordering::Release),
            (Some(i), None) => {
                t.entries.swap(i, n - 1);
                t.count.store(n as u32 - 1, Ordering::Release);
            }
            (None, None) => {}
        }
    });
}

// ---- the SQL functions ----------------------------------------------------------------------

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
    let exists = Spi::get_one::<bool>(TABLE_IS_THE_EXTENSIONS)
        .ok()
        .flatten()
        .unwrap_or(false);
    if !exists {
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

// ---- the session worker's reading ------------------------------------------------------------

/// The table's rows (none when the extension is not created in this database), newest first.
/// Whether `pgaadauth.revocations` is the extension's own table (not a view or table someone
/// else made under that name where the extension is not created: the session worker reads it
/// as a superuser).
const TABLE_IS_THE_EXTENSIONS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
          AND d.objid = c.oid AND d.deptype = 'e' \
     JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgaadauth' \
     WHERE n.nspname = 'pgaadauth' AND c.relname = 'revocations' AND c.relkind = 'r')";

pub fn read_table() -> Result<Vec<(String, i64)>, String> {
    Spi::connect(|c| {
        let exists = c
            .select(TABLE_IS_THE_EXTENSIONS, None, &[])
            .and_then(|t| t.first().get_one::<bool>())
            .map_err(|e| e.to_string())?
            .unwrap_or(false);
        if !exists {
            return Ok(vec![]);
        }
        let table = c
            .select(
                "SELECT object_id, pg_catalog.floor(pg_catalog.date_part('epoch', revoked_before))::bigint \
                 FROM pgaadauth.revocations ORDER BY revoked_before DESC",
                None,
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok(table
            .filter_map(|row| {
                let o: Option<String> = row.get(1).ok().flatten();
                let t: Option<i64> = row.get(2).ok().flatten();
                o.zip(t)
            })
            .collect())
    })
}

extension_sql!(
    r#"
-- Token revocations (pgaadauth_revoke_tokens), read by every login through the session worker
-- in the database pgaadauth.database. Kept by pg_dump.
CREATE SCHEMA pgaadauth;
CREATE TABLE pgaadauth.revocations (
    object_id text PRIMARY KEY,
    revoked_before timestamptz NOT NULL,
    revoked_by name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('pgaadauth.revocations', '');
"#,
    name = "pgaadauth_revocations_table"
);
