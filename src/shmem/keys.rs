//! The shared key table: signing keys and the state of each key source, in shared memory.
//!
//! Only the key worker writes keys: it fetches off-lock and holds the exclusive lock just long
//! enough to copy a source's keys in. Backends take the shared lock to copy one key out, and the
//! exclusive lock briefly to ask for a refresh (an unknown `kid`), which the worker serves with
//! one fetch for every login waiting at that moment.

use super::{Held, Text};
use pgaadauth_core::config::KeySource;
use pgaadauth_core::jwks::{
    Curve, KeyMaterial, PublicKey, MAX_KID, MAX_RSA_EXPONENT, MAX_RSA_MODULUS,
};
use pgaadauth_core::schedule::{self, Timing};
use pgaadauth_core::token::{CachedKey, KeyLookup, Reject};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_POINT: usize = 1 + 2 * 48;
/// Key sources held at once: explicit issuers beyond this are refused by the worker.
pub const MAX_SOURCES: usize = 8;
const SEGMENT: &std::ffi::CStr = c"pgaadauth key table";

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    /// Index into `Header::sources`.
    source: u8,
    /// 1 = RSA, 2 = EC P-256, 3 = EC P-384.
    kind: u8,
    /// 0 = none, else 1 + index into ALL_ALGS.
    alg: u8,
    kid: Text<MAX_KID>,
    n_len: u16,
    n: [u8; MAX_RSA_MODULUS],
    e_len: u8,
    e: [u8; MAX_RSA_EXPONENT],
    point_len: u8,
    point: [u8; MAX_POINT],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Source {
    /// The configured location: a JWKS URL, or an issuer's discovery URL.
    url: Text<512>,
    /// The issuer whose tokens its keys verify; empty: every accepted issuer.
    issuer: Text<512>,
    /// Unix seconds of the last successful fetch; 0: never.
    fetched_at: i64,
    /// Unix seconds of the next periodic fetch; 0: now.
    next_refresh: i64,
    refreshes: u64,
    failures: u64,
    consecutive_failures: u32,
    /// Unix seconds of the first failure since the last success; 0: not failing.
    failing_since: i64,
    /// Why the last fetch failed; empty after a success.
    last_error: Text<512>,
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    /// Bumped whenever keys change; watched without the lock.
    generation: AtomicU64,
    /// Refresh requests made, and the last one a finished fetch round served.
    requests: AtomicU64,
    served: AtomicU64,
    /// Unix seconds of the last refresh asked for by an unknown kid (under the lock).
    last_forced: i64,
    worker_latch: *mut pg_sys::Latch,
    capacity: u32,
    nkeys: u32,
    nsources: u32,
    sources: [Source; MAX_SOURCES],
    // followed by `capacity` entries
}

static mut TABLE: *mut Header = std::ptr::null_mut();

fn size_for(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Entry>()
}

/// Bytes of shared memory the table needs at the configured `pgaadauth.max_keys`.
pub fn shmem_size() -> usize {
    size_for(crate::settings::MAX_KEYS.get() as usize)
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(lock: *mut pg_sys::LWLock) {
    unsafe {
        TABLE = super::segment(SEGMENT, shmem_size(), |h: &mut Header| {
            h.lock = lock;
            h.capacity = crate::settings::MAX_KEYS.get() as u32;
        });
    }
}

/// The table, locked until dropped.
struct Locked(&'static mut Header, #[allow(dead_code)] Held);

impl Locked {
    fn new(hold: fn(*mut pg_sys::LWLock) -> Held) -> Option<Locked> {
        // SAFETY: TABLE is set once in the postmaster, before any child is forked.
        let h = unsafe { (*std::ptr::addr_of!(TABLE)).as_mut()? };
        let held = hold(h.lock);
        Some(Locked(h, held))
    }

    fn entries(&mut self) -> &mut [Entry] {
        let first = unsafe { (self.0 as *mut Header).add(1) as *mut Entry };
        unsafe { std::slice::from_raw_parts_mut(first, self.0.capacity as usize) }
    }

    fn sources(&mut self) -> &mut [Source] {
        let n = self.0.nsources as usize;
        &mut self.0.sources[..n]
    }
}

fn header() -> Option<&'static Header> {
    unsafe { (*std::ptr::addr_of!(TABLE)).as_ref() }
}

fn shared() -> Option<Locked> {
    Locked::new(Held::shared)
}

fn exclusive() -> Option<Locked> {
    Locked::new(Held::exclusive)
}

fn encode(key: &PublicKey, source: usize) -> Entry {
    // SAFETY: Entry is plain bytes; all-zero is a valid empty entry.
    let mut e: Entry = unsafe { std::mem::zeroed() };
    e.source = source as u8;
    e.kid.set(&key.kid);
    e.alg = key.alg.map_or(0, |a| {
        1 + pgaadauth_core::config::ALL_ALGS
            .iter()
            .position(|x| *x == a)
            .unwrap() as u8
    });
    match &key.material {
        KeyMaterial::Rsa { n, e: exp } => {
            e.kind = 1;
            e.n_len = n.len() as u16;
            e.n[..n.len()].copy_from_slice(n);
            e.e_len = exp.len() as u8;
            e.e[..exp.len()].copy_from_slice(exp);
        }
        KeyMaterial::Ec { curve, point } => {
            e.kind = if *curve == Curve::P256 { 2 } else { 3 };
            e.point_len = point.len() as u8;
            e.point[..point.len()].copy_from_slice(point);
        }
    }
    e
}

fn decode(e: &Entry) -> PublicKey {
    let material = match e.kind {
        1 => KeyMaterial::Rsa {
            n: e.n[..e.n_len as usize].to_vec(),
            e: e.e[..e.e_len as usize].to_vec(),
        },
        k => KeyMaterial::Ec {
            curve: if k == 2 { Curve::P256 } else { Curve::P384 },
            point: e.point[..e.point_len as usize].to_vec(),
        },
    };
    PublicKey {
        kid: e.kid.get().to_string(),
        alg: (e.alg > 0).then(|| pgaadauth_core::config::ALL_ALGS[e.alg as usize - 1]),
        material,
    }
}

// ---- the worker's side ------------------------------------------------------------------

/// The worker registers its latch so that backends can wake it.
pub fn set_worker_latch() {
    if let Some(t) = exclusive() {
        t.0.worker_latch = unsafe { pg_sys::MyLatch };
    }
}

/// Make the table's sources those configured now. State and keys of sources that stay are
/// kept; new sources are due at once; keys of sources no longer configured are dropped.
pub fn sync_sources(configured: &[KeySource]) {
    let Some(mut t) = exclusive() else { return };
    let old: Vec<Source> = t.sources().to_vec();
    let mut fresh: Vec<Source> = Vec::new();
    let mut remap = [u8::MAX; MAX_SOURCES];
    for ks in configured.iter().take(MAX_SOURCES) {
        let (url, issuer) = (ks.first_url(), ks.issuer().unwrap_or(""));
        let found = old
            .iter()
            .position(|s| s.url.get() == url && s.issuer.get() == issuer);
        let slot = match found {
            Some(i) => {
                remap[i] = fresh.len() as u8;
                old[i]
            }
            None => {
                let mut s: Source = unsafe { std::mem::zeroed() };
                s.url.set(&url);
                s.issuer.set(issuer);
                s
            }
        };
        fresh.push(slot);
    }
    t.0.sources[..fresh.len()].copy_from_slice(&fresh);
    t.0.nsources = fresh.len() as u32;
    let n = t.0.nkeys as usize;
    let kept: Vec<Entry> = t.entries()[..n]
        .iter()
        .filter_map(|e| {
            let to = remap[e.source as usize];
            (to != u8::MAX).then_some(Entry { source: to, ..*e })
        })
        .collect();
    t.entries()[..kept.len()].copy_from_slice(&kept);
    if kept.len() != n {
        t.0.nkeys = kept.len() as u32;
        t.0.generation.fetch_add(1, Ordering::Release);
    }
}

/// What the worker needs to know of a source.
pub struct SourceState {
    pub fetched_at: i64,
    pub next_refresh: i64,
    pub consecutive_failures: u32,
}

pub fn source_state(source: usize) -> Option<SourceState> {
    let mut t = shared()?;
    let s = t.sources().get(source)?;
    Some(SourceState {
        fetched_at: s.fetched_at,
        next_refresh: s.next_refresh,
        consecutive_failures: s.consecutive_failures,
    })
}

/// The earliest next periodic fetch over all sources.
pub fn next_due() -> Option<i64> {
    let mut t = shared()?;
    t.sources().iter().map(|s| s.next_refresh).min()
}

/// Replace the keys of `source`, unless the table cannot hold them with the others' keys.
pub fn store_keys(
    source: usize,
    keys: &[PublicKey],
    now: i64,
    next_refresh: i64,
) -> Result<(), String> {
    let encoded: Vec<Entry> = keys.iter().map(|k| encode(k, source)).collect();
    let Some(mut t) = exclusive() else {
        return Err("the key table is not in shared memory".into());
    };
    let n = t.0.nkeys as usize;
    let others: Vec<Entry> = t.entries()[..n]
        .iter()
        .filter(|e| e.source as usize != source)
        .copied()
        .collect();
    let capacity = t.0.capacity as usize;
    if others.len() + encoded.len() > capacity {
        return Err(format!(
            "{} signing keys were published but only {} fit beside the other sources' keys; raise pgaadauth.max_keys",
            encoded.len(),
            capacity - others.len()
        ));
    }
    let total = others.len() + encoded.len();
    t.entries()[..others.len()].copy_from_slice(&others);
    t.entries()[others.len()..total].copy_from_slice(&encoded);
    t.0.nkeys = total as u32;
    let s = &mut t.sources()[source];
    s.fetched_at = now;
    s.next_refresh = next_refresh;
    s.refreshes += 1;
    s.consecutive_failures = 0;
    s.failing_since = 0;
    s.last_error.set("");
    t.0.generation.fetch_add(1, Ordering::Release);
    Ok(())
}

/// Record a failed fetch of `source`; its keys stay. Returns the failures in a row.
pub fn record_failure(source: usize, error: &str, now: i64, next_refresh: i64) -> u32 {
    let Some(mut t) = exclusive() else { return 0 };
    let Some(s) = t.sources().get_mut(source) else {
        return 0;
    };
    s.last_error.set(error);
    s.failures += 1;
    s.consecutive_failures += 1;
    if s.failing_since == 0 {
        s.failing_since = now;
    }
    s.next_refresh = next_refresh;
    s.consecutive_failures
}

/// The request number a fetch round starting now serves, when refreshes were asked for.
pub fn take_requests() -> Option<u64> {
    let h = header()?;
    let requests = h.requests.load(Ordering::Acquire);
    (requests > h.served.load(Ordering::Acquire)).then_some(requests)
}

/// A fetch round that served requests up to `serving` is over (whether or not it succeeded).
pub fn finish_requests(serving: u64) {
    if let Some(h) = header() {
        h.served.fetch_max(serving, Ordering::AcqRel);
    }
}

// ---- the backends' side -----------------------------------------------------------------

/// A backend's view of the table for the validator, at time `now`.
pub struct SharedKeys {
    pub now: i64,
    pub timing: Timing,
}

impl KeyLookup for SharedKeys {
    fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
        let mut t = shared().ok_or_else(|| Reject::UnknownKid(kid.into()))?;
        let n = t.0.nkeys as usize;
        // Copy out only what the keys of this kid need (their entries, and the issuer and
        // failure time of their sources), then let go of the lock.
        let entries: Vec<Entry> = t.entries()[..n]
            .iter()
            .filter(|e| e.kid.get() == kid)
            .copied()
            .collect();
        let sources: Vec<Option<(String, i64)>> = entries
            .iter()
            .map(|e| {
                t.sources()
                    .get(e.source as usize)
                    .map(|s| (s.issuer.get().to_string(), s.failing_since))
            })
            .collect();
        drop(t);
        let found: Vec<CachedKey> = entries
            .iter()
            .zip(sources)
            .filter_map(|(e, source)| {
                let (issuer, failing_since) = source?;
                let expired = schedule::is_expired(failing_since, self.now, &self.timing)
                    .then(|| self.now - failing_since);
                Some(CachedKey {
                    key: decode(e),
                    issuer: Some(issuer).filter(|i| !i.is_empty()),
                    expired,
                })
            })
            .collect();
        if found.is_empty() {
            return Err(Reject::UnknownKid(kid.into()));
        }
        Ok(found)
    }
}

/// How a refresh asked for by a login (or by `pgaadauth_refresh_jwks`) went.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The keys changed.
    Changed,
    /// A fetch round finished without changing the keys.
    Unchanged,
    /// Another refresh ran less than `pgaadauth.min_refresh_interval` ago.
    RateLimited,
    /// The wait ended first.
    TimedOut,
    /// No key worker is running.
    NoWorker,
}

/// Ask the worker for a refresh and wait up to `wait` for it. With `rate_limit` (a login with
/// an unknown kid) a refresh already asked for is joined, and `pgaadauth.min_refresh_interval`
/// applies; without it (`pgaadauth_refresh_jwks()`) a new fetch round always starts after the
/// call.
pub fn refresh_and_wait(
    now: i64,
    timing: &Timing,
    wait: std::time::Duration,
    rate_limit: bool,
) -> Refresh {
    let Some(h) = header() else {
        return Refresh::NoWorker;
    };
    let before = h.generation.load(Ordering::Acquire);
    let deadline = std::time::Instant::now() + wait;
    let mut now = now;
    let ticket = loop {
        match ask_for_refresh(now, timing, rate_limit) {
            Asked::Ticket(ticket) => break ticket,
            Asked::NoWorker => return Refresh::NoWorker,
            // A refresh ran less than min_refresh_interval ago (perhaps for a forged kid): the
            // next one may start when the interval is over. Wait for that if it comes before
            // the deadline, so that a new key is not refused for someone else's refresh.
            Asked::RateLimited { opens_at } => {
                let opens_in = std::time::Duration::from_secs((opens_at - now).max(0) as u64);
                if std::time::Instant::now() + opens_in > deadline {
                    return Refresh::RateLimited;
                }
                if h.generation.load(Ordering::Acquire) != before {
                    return Refresh::Changed;
                }
                super::wait::nap_until(deadline, std::time::Duration::from_millis(20));
                now = pgaadauth_core::clock::unix_now();
            }
        }
    };
    loop {
        if h.generation.load(Ordering::Acquire) != before {
            return Refresh::Changed;
        }
        if h.served.load(Ordering::Acquire) >= ticket {
            return Refresh::Unchanged;
        }
        if std::time::Instant::now() >= deadline {
            return Refresh::TimedOut;
        }
        // The worker does not know who waits: look every 5 ms (interrupts honoured).
        super::wait::nap_until(deadline, std::time::Duration::from_millis(5));
    }
}

enum Asked {
    /// The refresh round to wait for.
    Ticket(u64),
    /// No refresh may start before `opens_at` (Unix seconds).
    RateLimited {
        opens_at: i64,
    },
    NoWorker,
}

/// Join the refresh a login already asked for, or ask for a new one if allowed.
fn ask_for_refresh(now: i64, timing: &Timing, rate_limit: bool) -> Asked {
    let Some(t) = exclusive() else {
        return Asked::NoWorker;
    };
    if t.0.worker_latch.is_null() {
        return Asked::NoWorker;
    }
    let requests = t.0.requests.load(Ordering::Acquire);
    if rate_limit && requests > t.0.served.load(Ordering::Acquire) {
        return Asked::Ticket(requests); // a login's refresh is on its way: wait for the same one
    }
    if rate_limit && !schedule::forced_refresh_allowed(t.0.last_forced, now, timing) {
        return Asked::RateLimited {
            opens_at: t.0.last_forced + timing.min_refresh_interval,
        };
    }
    if rate_limit {
        t.0.last_forced = now;
    }
    t.0.requests.fetch_add(1, Ordering::AcqRel);
    unsafe { pg_sys::SetLatch(t.0.worker_latch) };
    Asked::Ticket(requests + 1)
}

/// One row of `pgaadauth_jwks_status()`: a cached key, or a source that has none.
pub struct StatusRow {
    pub source: String,
    pub issuer: Option<String>,
    pub kid: Option<String>,
    pub kty: Option<&'static str>,
    pub alg: Option<String>,
    pub fetched_at: Option<i64>,
    pub next_refresh: Option<i64>,
    pub last_error: Option<String>,
    pub refreshes: i64,
    pub failures: i64,
}

pub fn status() -> Vec<StatusRow> {
    let Some(mut t) = shared() else { return vec![] };
    let n = t.0.nkeys as usize;
    let entries: Vec<Entry> = t.entries()[..n].to_vec();
    let mut rows = Vec::new();
    for (i, s) in t.sources().iter().enumerate() {
        let row = |kid: Option<&Entry>| StatusRow {
            source: s.url.get().to_string(),
            issuer: Some(s.issuer.get().to_string()).filter(|x| !x.is_empty()),
            kid: kid.map(|e| e.kid.get().to_string()),
            kty: kid.map(|e| decode(e).material.kty()),
            alg: kid.and_then(|e| decode(e).alg.map(|a| a.to_string())),
            fetched_at: (s.fetched_at > 0).then_some(s.fetched_at),
            next_refresh: (s.next_refresh > 0).then_some(s.next_refresh),
            last_error: Some(s.last_error.get().to_string()).filter(|x| !x.is_empty()),
            refreshes: s.refreshes as i64,
            failures: s.failures as i64,
        };
        let mine: Vec<&Entry> = entries.iter().filter(|e| e.source as usize == i).collect();
        if mine.is_empty() {
            rows.push(row(None));
        }
        rows.extend(mine.into_iter().map(|e| row(Some(e))));
    }
    rows
}

/// Number of keys in the table now.
pub fn key_count() -> usize {
    shared().map_or(0, |t| t.0.nkeys as usize)
}

// `Entry::alg` indexes ALL_ALGS from a u8, `Entry::source` the sources.
const _: () = assert!(pgaadauth_core::config::ALL_ALGS.len() < 255 && MAX_SOURCES < 255);
