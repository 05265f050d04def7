//! The shared key table: a fixed-size array of signing keys in shared memory.
//!
//! Written only by the key worker, which builds the new set off-lock and holds the exclusive
//! lock just long enough to copy it in. Backends take the shared lock to copy one key out.

use crate::jwks::{Curve, KeyMaterial, PublicKey, MAX_KID, MAX_RSA_EXPONENT, MAX_RSA_MODULUS};
use crate::token::KeyLookup;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_POINT: usize = 1 + 2 * 48;
const MAX_ERROR: usize = 256;
const TRANCHE: &std::ffi::CStr = c"pgaadauth";
const SEGMENT: &std::ffi::CStr = c"pgaadauth key table";

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    kid_len: u16,
    kid: [u8; MAX_KID],
    /// 1 = RSA, 2 = EC P-256, 3 = EC P-384.
    kind: u8,
    /// 0 = none, else 1 + index into ALL_ALGS.
    alg: u8,
    n_len: u16,
    n: [u8; MAX_RSA_MODULUS],
    e_len: u8,
    e: [u8; MAX_RSA_EXPONENT],
    point_len: u8,
    point: [u8; MAX_POINT],
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    /// Bumped after every successful store; readers may watch it without the lock.
    generation: AtomicU64,
    capacity: u32,
    nkeys: u32,
    /// Unix seconds of the last successful fetch, 0 before the first.
    fetched_at: i64,
    refreshes: u64,
    failures: u64,
    error_len: u16,
    last_error: [u8; MAX_ERROR],
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

/// In the postmaster's shmem_request phase.
pub unsafe fn request() {
    pg_sys::RequestAddinShmemSpace(shmem_size());
    pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
}

/// In the postmaster's shmem_startup phase: create (or attach to) the table.
pub unsafe fn startup() {
    // AddinShmemInitLock is MainLWLockArray[21] (storage/lwlocklist.h).
    let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut found = false;
    let size = shmem_size();
    let ptr = pg_sys::ShmemInitStruct(SEGMENT.as_ptr(), size, &mut found) as *mut Header;
    if !found {
        std::ptr::write_bytes(ptr as *mut u8, 0, size);
        (*ptr).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        (*ptr).capacity = crate::settings::MAX_KEYS.get() as u32;
    }
    TABLE = ptr;
    pg_sys::LWLockRelease(init_lock);
}

fn table() -> Option<&'static mut Header> {
    // SAFETY: set once in the postmaster before any backend or worker is forked.
    unsafe { TABLE.as_mut() }
}

unsafe fn entries(h: &mut Header) -> &mut [Entry] {
    let first = (h as *mut Header).add(1) as *mut Entry;
    std::slice::from_raw_parts_mut(first, h.capacity as usize)
}

struct Locked<'a>(&'a mut Header);

impl<'a> Locked<'a> {
    fn new(h: &'a mut Header, mode: pg_sys::LWLockMode::Type) -> Self {
        unsafe { pg_sys::LWLockAcquire(h.lock, mode) };
        Locked(h)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        unsafe { pg_sys::LWLockRelease(self.0.lock) };
    }
}

fn encode(key: &PublicKey) -> Entry {
    // SAFETY: Entry is plain bytes; all-zero is a valid empty entry.
    let mut e: Entry = unsafe { std::mem::zeroed() };
    e.kid_len = key.kid.len() as u16;
    e.kid[..key.kid.len()].copy_from_slice(key.kid.as_bytes());
    e.alg = key.alg.map_or(0, |a| {
        1 + crate::config::ALL_ALGS
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
        kid: String::from_utf8_lossy(&e.kid[..e.kid_len as usize]).into_owned(),
        alg: (e.alg > 0).then(|| crate::config::ALL_ALGS[e.alg as usize - 1]),
        material,
    }
}

/// The number of keys that fit.
pub fn capacity() -> usize {
    table().map_or(0, |h| h.capacity as usize)
}

/// Replace the whole key set (at most `capacity()` keys are stored).
pub fn store(keys: &[PublicKey], now: i64) {
    let Some(h) = table() else { return };
    let encoded: Vec<Entry> = keys.iter().take(h.capacity as usize).map(encode).collect();
    let locked = Locked::new(h, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let slots = unsafe { entries(locked.0) };
    slots[..encoded.len()].copy_from_slice(&encoded);
    locked.0.nkeys = encoded.len() as u32;
    locked.0.fetched_at = now;
    locked.0.refreshes += 1;
    locked.0.error_len = 0;
    locked.0.generation.fetch_add(1, Ordering::Release);
}

/// Record a failed refresh; the keys already in the table stay.
pub fn record_failure(error: &str) {
    let Some(h) = table() else { return };
    let locked = Locked::new(h, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut n = error.len().min(MAX_ERROR);
    while !error.is_char_boundary(n) {
        n -= 1;
    }
    locked.0.last_error[..n].copy_from_slice(&error.as_bytes()[..n]);
    locked.0.error_len = n as u16;
    locked.0.failures += 1;
}

/// Number of keys in the table now.
pub fn key_count() -> usize {
    table().map_or(0, |h| {
        Locked::new(h, pg_sys::LWLockMode::LW_SHARED).0.nkeys as usize
    })
}

/// The backend's view of the table, for the validator.
pub struct SharedKeys;

impl KeyLookup for SharedKeys {
    fn key(&self, kid: &str) -> Option<PublicKey> {
        let h = table()?;
        let locked = Locked::new(h, pg_sys::LWLockMode::LW_SHARED);
        let n = locked.0.nkeys as usize;
        let slots = unsafe { entries(locked.0) };
        slots[..n]
            .iter()
            .find(|e| &e.kid[..e.kid_len as usize] == kid.as_bytes())
            .map(decode)
    }
}

// `Entry::alg` indexes ALL_ALGS from a u8.
const _: () = assert!(crate::config::ALL_ALGS.len() < 255);

static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
#[cfg(not(any(feature = "pg13", feature = "pg14")))]
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request_hook() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        request();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup_hook() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        startup();
    }
}

/// From `_PG_init`: reserve the table's shared memory and create it at startup.
pub fn install_hooks() {
    unsafe {
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request_hook);
        }
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request();
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup_hook);
    }
}
