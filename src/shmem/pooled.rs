//! Tokens a connection pooler's check accepted (`pgaadauth_pooler_login`), by fingerprint.
//!
//! PgBouncer opens its server connections with the last password its PAM check accepted for a
//! user name, and hands each such connection to whichever of its clients comes next. A token
//! login whose token is here is therefore a pooler's session: it shows no person (see
//! crate::login::identity). The table keeps the SHA-256 fingerprint of each token, never the
//! token, with its `exp`; it is bounded (8,192 slots; a token takes one of 16 near its
//! fingerprint), a token the pooler accepts again is stored again, and expired ones make room
//! first. It lives in this server's memory only: after a restart, or on another server PgBouncer
//! connects to, `pgaadauth.pooler_addresses` is what recognises pooled sessions.

use super::Held;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const SLOTS: usize = 8192;
/// Slots a fingerprint may take, from the one its first bytes name.
const PROBE: usize = 16;
/// A slot whose token expired longer ago than the clock skew allows is free (no login can
/// present it any more); this much more is kept, for a skew raised by a reload.
const STALE_MARGIN: i64 = 60;

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    fingerprint: [u8; 32],
    /// The token's `exp`; 0: free.
    expires: i64,
    /// When the pooler last accepted it (Unix seconds).
    stored: i64,
}

#[repr(C)]
struct Table {
    lock: *mut pg_sys::LWLock,
    /// Tokens stored since start: 0 lets a server without a pooler skip the lookup.
    stored: AtomicU64,
    slots: [Slot; SLOTS],
}

static mut TABLE: *mut Table = std::ptr::null_mut();

pub fn shmem_size() -> usize {
    std::mem::size_of::<Table>()
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(lock: *mut pg_sys::LWLock) {
    unsafe {
        TABLE = super::segment(c"pgaadauth pooled tokens", shmem_size(), |t: &mut Table| {
            t.lock = lock;
        });
    }
}

fn table() -> Option<&'static mut Table> {
    unsafe { TABLE.as_mut() }
}

fn first_slot(fingerprint: &[u8; 32]) -> usize {
    let mut word = [0u8; 8];
    word.copy_from_slice(&fingerprint[..8]);
    (u64::from_le_bytes(word) % SLOTS as u64) as usize
}

/// The pooler accepted `token`, which expires at `expires`.
pub fn remember(token: &str, expires: i64, now: i64, clock_skew: i64) {
    let Some(table) = table() else { return };
    let fingerprint = pgaadauth_core::pooler::fingerprint(token);
    let start = first_slot(&fingerprint);
    let lock = Held::exclusive(table.lock);
    let stale_before = now - clock_skew - STALE_MARGIN;
    let window = (0..PROBE).map(|i| (start + i) % SLOTS);
    // Its own slot; else a free or expired one; else the one stored longest ago.
    let index = window
        .clone()
        .find(|&i| table.slots[i].expires != 0 && table.slots[i].fingerprint == fingerprint)
        .or_else(|| {
            window
                .clone()
                .find(|&i| table.slots[i].expires == 0 || table.slots[i].expires < stale_before)
        });
    let full = index.is_none();
    let index = index.unwrap_or_else(|| {
        window
            .min_by_key(|&i| table.slots[i].stored)
            .expect("a window of PROBE slots")
    });
    table.slots[index] = Slot {
        fingerprint,
        expires: expires.max(1),
        stored: now,
    };
    table.stored.fetch_add(1, Ordering::Relaxed);
    drop(lock);
    // A token still in use may have been replaced: its later server sessions would show its
    // person. pgaadauth.pooler_addresses does not depend on this table. In the server's log
    // (not to the pooler), at most once a minute per backend.
    static WARNED_AT: AtomicI64 = AtomicI64::new(0);
    if full && now - WARNED_AT.swap(now, Ordering::Relaxed) >= 60 {
        pgrx::log!(
            "pgaadauth: WARNING: the table of tokens accepted by connection poolers is full; set pgaadauth.pooler_addresses so that pooled sessions are recognised by their address"
        );
    }
}

/// Whether a pooler's check accepted `token`.
pub fn accepted_by_pooler(token: &str) -> bool {
    let Some(table) = table() else { return false };
    if table.stored.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let fingerprint = pgaadauth_core::pooler::fingerprint(token);
    let start = first_slot(&fingerprint);
    let _lock = Held::shared(table.lock);
    (0..PROBE).any(|i| {
        let slot = &table.slots[(start + i) % SLOTS];
        slot.expires != 0 && slot.fingerprint == fingerprint
    })
}
