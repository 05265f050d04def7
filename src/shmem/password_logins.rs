//! Password logins on pgaadauth's lines, per role name (`pgaadauth_password_logins()`), for a
//! migration away from passwords: which roles still log in with one, and when they last did.
//!
//! A login adds to its role's slot (`pending`); the session worker writes what is pending to
//! `pgaadauth.password_logins` in `pgaadauth.database` and reads the table back (`stored`), so
//! the counts survive a restart (a crash loses at most the last second's). What a reader sees is
//! the table as last read plus what is pending. Bounded: 4,096 roles; a login of a role beyond
//! that is not counted, and the server log says so (at most once a minute per backend).

use super::{Held, Text};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, Ordering};

const SLOTS: usize = 4096;
/// PostgreSQL's longest role name (NAMEDATALEN - 1).
const NAME: usize = 63;

/// Logins of one role: a count, the first and the last (microseconds since the Unix epoch; 0:
/// none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Logins {
    pub count: i64,
    pub first: i64,
    pub last: i64,
}

impl Logins {
    fn add(&mut self, other: &Logins) {
        if other.count == 0 {
            return;
        }
        self.first = match self.first {
            0 => other.first,
            f => f.min(other.first),
        };
        self.last = self.last.max(other.last);
        self.count += other.count;
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// The role's name; none: a free slot.
    role: Text<NAME>,
    /// In the table, as the worker last read it.
    stored: Logins,
    /// Since then, not yet in the table.
    pending: Logins,
}

#[repr(C)]
struct Table {
    lock: *mut pg_sys::LWLock,
    slots: [Slot; SLOTS],
}

static mut TABLE: *mut Table = std::ptr::null_mut();

pub fn shmem_size() -> usize {
    std::mem::size_of::<Table>()
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(lock: *mut pg_sys::LWLock) {
    unsafe {
        TABLE = super::segment(
            c"pgaadauth password logins",
            shmem_size(),
            |t: &mut Table| {
                t.lock = lock;
                for slot in t.slots.iter_mut() {
                    slot.role.set_opt(None);
                }
            },
        );
    }
}

fn table() -> Option<&'static mut Table> {
    unsafe { TABLE.as_mut() }
}

/// Whether slot text `t` holds `role` (bytes compared: logins wait on the lock meanwhile).
fn holds(t: &Text<NAME>, role: &str) -> bool {
    let len = t.len as usize;
    len <= NAME && &t.bytes[..len] == role.as_bytes()
}

fn is_free(slot: &Slot) -> bool {
    slot.role.len as usize > NAME
}

fn find(table: &Table, role: &str) -> Option<usize> {
    table.slots.iter().position(|s| holds(&s.role, role))
}

/// The slot of `role`, taking a free one when it has none.
fn find_or_take(table: &mut Table, role: &str) -> Option<usize> {
    let index = find(table, role).or_else(|| table.slots.iter().position(is_free))?;
    let slot = &mut table.slots[index];
    if is_free(slot) {
        slot.role.set(role);
        slot.stored = Logins::default();
        slot.pending = Logins::default();
    }
    Some(index)
}

/// `role` logged in with its password at `now` (microseconds since the Unix epoch).
pub fn record(role: &str, now: i64) {
    let Some(table) = table() else { return };
    // As PostgreSQL cuts a name (a slot holds as much).
    let mut n = role.len().min(NAME);
    while !role.is_char_boundary(n) {
        n -= 1;
    }
    let role = &role[..n];
    let lock = Held::exclusive(table.lock);
    let slot = find_or_take(table, role);
    if let Some(i) = slot {
        table.slots[i].pending.add(&Logins {
            count: 1,
            first: now,
            last: now,
        });
    }
    drop(lock);
    static WARNED_AT: AtomicI64 = AtomicI64::new(0);
    if slot.is_none() && now - WARNED_AT.swap(now, Ordering::Relaxed) >= 60_000_000 {
        pgrx::log!(
            "pgaadauth: WARNING: password logins of more than {SLOTS} roles: the password logins of role \"{}\" are not tracked",
            pgaadauth_core::log_text::log_safe(role)
        );
    }
}

/// Every tracked role's logins: the table as last read, plus what is pending.
pub fn rows() -> Vec<(String, Logins)> {
    let Some(table) = table() else { return vec![] };
    let _lock = Held::shared(table.lock);
    table
        .slots
        .iter()
        .filter_map(|s| {
            let mut total = s.stored;
            total.add(&s.pending);
            s.role
                .get_opt()
                .filter(|_| total.count > 0)
                .map(|r| (r.to_string(), total))
        })
        .collect()
}

/// What is pending, for the worker to write.
pub fn pending() -> Vec<(String, Logins)> {
    let Some(table) = table() else { return vec![] };
    let _lock = Held::shared(table.lock);
    table
        .slots
        .iter()
        .filter(|s| s.pending.count > 0)
        .filter_map(|s| s.role.get_opt().map(|r| (r.to_string(), s.pending)))
        .collect()
}

/// The worker wrote `written` (taken from [`pending`]) and read the table back as `stored`.
/// Logins recorded meanwhile stay pending. A role the table no longer holds (its row was
/// deleted: a reset) starts again from what is pending; a slot with nothing left is freed.
pub fn written_and_read(written: &[(String, Logins)], stored: &[(String, Logins)]) {
    let Some(table) = table() else { return };
    let _lock = Held::exclusive(table.lock);
    let mut index: std::collections::HashMap<String, usize> = table
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.role.get_opt().map(|r| (r.to_string(), i)))
        .collect();
    for (role, logins) in written {
        if let Some(&i) = index.get(role.as_str()) {
            let pending = &mut table.slots[i].pending;
            pending.count -= logins.count;
            if pending.count <= 0 {
                *pending = Logins::default();
            }
        }
    }
    for slot in table.slots.iter_mut() {
        slot.stored = Logins::default();
    }
    let mut free = (0..SLOTS)
        .filter(|&i| is_free(&table.slots[i]))
        .collect::<Vec<_>>();
    for (role, logins) in stored {
        let i = match index.get(role.as_str()) {
            Some(&i) => i,
            None => {
                // Beyond the slots: the table keeps it, the server does not show it.
                let Some(i) = free.pop() else { continue };
                table.slots[i].role.set(role);
                table.slots[i].pending = Logins::default();
                index.insert(role.clone(), i);
                i
            }
        };
        table.slots[i].stored = *logins;
    }
    for slot in table.slots.iter_mut() {
        if slot.stored.count == 0 && slot.pending.count == 0 {
            slot.role.set_opt(None);
        }
    }
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
