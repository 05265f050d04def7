//! Counters since server start, in shared memory (atomics): `pgaadauth_stats()`.

use pgaadauth_core::token::{DECISION_CODES, REASON_CODES};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters other than the per-reason rejections.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    LoginsAccepted = 0,
    PasswordLoginsAccepted,
    PasswordLoginsRejected,
    // Counted by the OAuth validator (PostgreSQL 18); reported, as zero, on every major.
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    OAuthLoginsAccepted,
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    OAuthLoginsRejected,
    PoolerLoginsAccepted,
    PoolerLoginsRejected,
    KeyFetchesOk,
    KeyFetchesFailed,
    KidMisses,
    KidMissRefreshes,
    DirectoryCalls,
    DirectoryFailures,
    GroupCacheHits,
}

const NAMES: [&str; 14] = [
    "logins_accepted",
    "password_logins_accepted",
    "password_logins_rejected",
    "oauth_logins_accepted",
    "oauth_logins_rejected",
    "pgbouncer_logins_accepted",
    "pgbouncer_logins_rejected",
    "key_fetches_ok",
    "key_fetches_failed",
    "kid_misses",
    "kid_miss_refreshes",
    "directory_calls",
    "directory_failures",
    "group_cache_hits",
];

const COUNT: usize = NAMES.len() + REASON_CODES.len() + DECISION_CODES.len();

/// Every reason code a refusal is counted under, in order.
fn reasons() -> impl Iterator<Item = &'static str> {
    REASON_CODES.iter().chain(DECISION_CODES.iter()).copied()
}

static mut COUNTERS: *const [AtomicU64; COUNT] = std::ptr::null();

pub fn shmem_size() -> usize {
    std::mem::size_of::<[AtomicU64; COUNT]>()
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup() {
    unsafe {
        COUNTERS = super::segment(
            c"pgaadauth stats",
            shmem_size(),
            |_: &mut [AtomicU64; COUNT]| {},
        );
    }
}

fn counters() -> Option<&'static [AtomicU64; COUNT]> {
    // SAFETY: set once in the postmaster before any child is forked.
    unsafe { (*std::ptr::addr_of!(COUNTERS)).as_ref() }
}

pub fn bump(c: Counter) {
    if let Some(all) = counters() {
        all[c as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A token login refused for the reason `code` (a [`pgaadauth_core::token::Reject::code`]).
pub fn bump_rejected(code: &str) {
    if let (Some(all), Some(i)) = (counters(), reasons().position(|c| c == code)) {
        all[NAMES.len() + i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every counter by name, rejections as `logins_rejected_<reason>`.
pub fn snapshot() -> Vec<(String, i64)> {
    let Some(all) = counters() else { return vec![] };
    let names = NAMES
        .iter()
        .map(|n| n.to_string())
        .chain(reasons().map(|c| format!("logins_rejected_{c}")));
    names
        .zip(all.iter())
        .map(|(n, v)| (n, v.load(Ordering::Relaxed) as i64))
        .collect()
}
