//! Shared memory: every segment pgaadauth keeps (the key table, the directory mailbox and
//! membership cache, the session table, the revocations' copy, the tokens a pooler accepted,
//! password logins per role, the counters), sized and started
//! here in one place, with the one lock guard ([`Held`]), the one fixed-size text ([`Text`]) and
//! the one way a backend waits for a worker ([`wait`]). Imports nothing of logins, workers, SQL
//! functions or the catalog; the segments import this module, never each other.

pub mod counters;
pub mod keys;
pub mod mailbox;
pub mod password_logins;
pub mod pooled;
pub mod revocations;
pub mod sessions;
pub mod wait;

use pgrx::pg_sys;
use std::ffi::CStr;

const TRANCHE: &CStr = c"pgaadauth";

/// The locks of pgaadauth's tranche.
#[derive(Clone, Copy)]
pub enum Lock {
    Keys = 0,
    MembershipCache = 1,
    Sessions = 2,
    Revocations = 3,
    PooledTokens = 4,
    PasswordLogins = 5,
}

const LOCKS: i32 = 6;

/// Lock `which` of the tranche (postmaster, at startup).
unsafe fn lock(which: Lock) -> *mut pg_sys::LWLock {
    unsafe { &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr()).add(which as usize)).lock }
}

/// An LWLock held until dropped (also during an unwind).
pub struct Held(*mut pg_sys::LWLock);

impl Held {
    pub fn shared(lock: *mut pg_sys::LWLock) -> Held {
        unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED) };
        Held(lock)
    }

    pub fn exclusive(lock: *mut pg_sys::LWLock) -> Held {
        unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
        Held(lock)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        unsafe { pg_sys::LWLockRelease(self.0) };
    }
}

/// Fixed-capacity text in shared memory, cut at a character boundary; it may also hold none.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    /// `u16::MAX`: none.
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub fn set(&mut self, s: &str) {
        let mut n = s.len().min(N);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = n as u16;
    }

    /// The text; empty when none.
    pub fn get(&self) -> &str {
        self.get_opt().unwrap_or("")
    }

    pub fn set_opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.set(s),
            None => self.len = u16::MAX,
        }
    }

    pub fn get_opt(&self) -> Option<&str> {
        let len = self.len as usize;
        (len <= N).then(|| std::str::from_utf8(&self.bytes[..len]).unwrap_or(""))
    }
}

/// Segment `name` of `size` bytes: created zeroed (then `init` runs on it), or attached.
///
/// # Safety
/// In shmem_startup, under AddinShmemInitLock; `T` is plain data for which all-zero bytes are
/// a valid value.
unsafe fn segment<T>(name: &CStr, size: usize, init: impl FnOnce(&mut T)) -> *mut T {
    unsafe {
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(name.as_ptr(), size, &mut found) as *mut T;
        if !found {
            std::ptr::write_bytes(ptr as *mut u8, 0, size);
            init(&mut *ptr);
        }
        ptr
    }
}

/// Every segment's size, at the configured limits (postmaster, after the configuration file).
fn size() -> usize {
    keys::shmem_size()
        + mailbox::shmem_size()
        + counters::shmem_size()
        + sessions::shmem_size()
        + revocations::shmem_size()
        + pooled::shmem_size()
        + password_logins::shmem_size()
}

/// In the postmaster's shmem_request phase: the space and the locks.
unsafe fn request() {
    unsafe {
        pg_sys::RequestAddinShmemSpace(size());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), LOCKS);
    }
}

/// In the postmaster's shmem_startup phase: create (or attach to) every segment.
unsafe fn startup() {
    unsafe {
        // AddinShmemInitLock is MainLWLockArray[21] (storage/lwlocklist.h).
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        keys::startup(lock(Lock::Keys));
        mailbox::startup(lock(Lock::MembershipCache));
        counters::startup();
        sessions::startup(lock(Lock::Sessions));
        revocations::startup(lock(Lock::Revocations));
        pooled::startup(lock(Lock::PooledTokens));
        password_logins::startup(lock(Lock::PasswordLogins));
        pg_sys::LWLockRelease(init_lock);
    }
}

static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
#[cfg(not(feature = "pg14"))]
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;

#[cfg(not(feature = "pg14"))]
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

/// From `_PG_init`: reserve every segment's shared memory and create them at startup.
pub fn install_hooks() {
    unsafe {
        #[cfg(not(feature = "pg14"))]
        {
            PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request_hook);
        }
        #[cfg(feature = "pg14")]
        request();
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup_hook);
    }
}
