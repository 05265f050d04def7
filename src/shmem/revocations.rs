//! The revocations' shared copy, which every login checks. `pgaadauth_revoke_tokens(object_id)`
//! (crate::sql::revocations) refuses every token of a principal issued until now.
//!
//! The table `pgaadauth.revocations` in the database `pgaadauth.database` holds them, so they
//! survive restarts, reach standbys through WAL and go into dumps. Logins, which run before any
//! database is open, read a copy in shared memory: the session worker keeps it equal to the
//! table (every second, on primaries and standbys), and a committed revocation or lift updates
//! it at once in the committing backend.

use super::Held;
use crate::settings;
use pgaadauth_core::session::{check_revocation, MAX_OBJECT_ID_LEN};
use pgaadauth_core::token::Reject;
use pgrx::pg_sys;
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

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(lock: *mut pg_sys::LWLock) {
    unsafe {
        TABLE = super::segment(c"pgaadauth revocations", shmem_size(), |h: &mut Header| {
            h.lock = lock;
        });
    }
}

/// The copy, shared: entries change only through [`with_lock_mut`].
fn table() -> Option<&'static Header> {
    unsafe { TABLE.as_ref() }
}

fn with_lock<R>(f: impl FnOnce(&Header) -> R) -> Option<R> {
    let t = table()?;
    let _held = Held::shared(t.lock);
    Some(f(t))
}

/// The copy under its exclusive lock; no other reference to it is held meanwhile.
fn with_lock_mut<R>(f: impl FnOnce(&mut Header) -> R) -> Option<R> {
    let lock = table()?.lock;
    let _held = Held::exclusive(lock);
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
            super::wait::nap_until(deadline, std::time::Duration::from_millis(10));
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
pub fn apply(object_id: &str, revoked_before: Option<i64>) {
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
