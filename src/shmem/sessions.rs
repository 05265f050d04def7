//! The shared table of open sessions: how each logged in and as whom (the `pgaadauth.sessions`
//! view), and why the session worker ended one (its FATAL message).
//!
//! A backend fills its own slot once, after its login succeeded, and frees it at exit; the
//! session worker and revocations only read slots and set a slot's end reason. The table holds
//! one slot per possible client connection and WAL sender, so it is never full.

use super::{Held, Text};
use pgaadauth_core::session::{must_end, EndReason, Lifetime, OpenSession};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, Ordering};

/// Who a session logged in as: the row `pgaadauth_session()` returns.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// `token`, `oauth`, `password`, or the pg_hba.conf method that logged it in.
    pub method: String,
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub upn: Option<String>,
    pub app_id: Option<String>,
    pub via_group: Option<String>,
    pub expires: Option<i64>,
    pub issued: Option<i64>,
    /// A connection pooler's session (opened with a token its check accepted), used by
    /// whichever of its clients comes next: the token's person is kept for revocation and
    /// expiry, never shown.
    pub pooled: bool,
}

const NONE: i64 = i64::MIN;
const CLAIMED: u8 = u8::MAX;

#[repr(C)]
struct Slot {
    /// 0: free. Written under the exclusive lock, read under either.
    pid: AtomicI32,
    method: Text<24>,
    object_id: Text<256>,
    /// The principal was longer than the slot holds: no revocation can name it.
    object_id_cut: bool,
    tenant_id: Text<64>,
    upn: Text<256>,
    app_id: Text<128>,
    via_group: Text<64>,
    expires: i64,
    issued: i64,
    pooled: bool,
    /// 0: open; 1: ended, token expired; 2: ended, revoked; CLAIMED: being ended.
    end_kind: AtomicU8,
    end_time: AtomicI64,
    end_grace: AtomicI64,
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    capacity: u32,
}

static mut TABLE: *mut Header = std::ptr::null_mut();

thread_local! {
    /// This backend's slot, once it has one.
    static MY_SLOT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn capacity() -> usize {
    // Client connections and WAL senders, with a margin; read in the postmaster, after the
    // configuration file.
    unsafe { (pg_sys::MaxConnections + pg_sys::max_wal_senders) as usize + 8 }
}

pub fn shmem_size() -> usize {
    std::mem::size_of::<Header>() + capacity() * std::mem::size_of::<Slot>()
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(lock: *mut pg_sys::LWLock) {
    unsafe {
        TABLE = super::segment(c"pgaadauth sessions", shmem_size(), |h: &mut Header| {
            h.lock = lock;
            h.capacity = capacity() as u32;
        });
    }
}

/// The table and its slots, shared: a slot's text is written only through [`slot_mut`], by
/// its owner under the exclusive lock; everything else is atomic.
fn slots() -> Option<(&'static Header, &'static [Slot])> {
    unsafe {
        let table = TABLE;
        if table.is_null() {
            return None;
        }
        Some((
            &*table,
            std::slice::from_raw_parts(first_slot(table), (*table).capacity as usize),
        ))
    }
}

unsafe fn first_slot(table: *mut Header) -> *mut Slot {
    unsafe { (table as *mut u8).add(std::mem::size_of::<Header>()) as *mut Slot }
}

/// Slot `index` to fill, under the exclusive lock, while no reference to it is held.
unsafe fn slot_mut(index: usize) -> &'static mut Slot {
    unsafe { &mut *first_slot(TABLE).add(index) }
}

/// Record this backend's login in its slot, freed when the backend exits.
pub fn register(identity: &Identity) {
    let Some((header, _)) = slots() else {
        return;
    };
    // First the exit callback, so that a slot with this pid is always freed at exit.
    unsafe { pg_sys::before_shmem_exit(Some(free_my_slot), pg_sys::Datum::from(0usize)) };
    let lock = Held::exclusive(header.lock);
    let free = slots().and_then(|(_, slots)| {
        slots
            .iter()
            .position(|s| s.pid.load(Ordering::Relaxed) == 0)
    });
    let Some(index) = free else {
        drop(lock);
        pgrx::warning!("pgaadauth: the session table is full; this session is not listed");
        return;
    };
    let slot = unsafe { slot_mut(index) };
    slot.method.set_opt(Some(&identity.method));
    slot.object_id.set_opt(identity.object_id.as_deref());
    slot.object_id_cut = identity
        .object_id
        .as_ref()
        .is_some_and(|o| o.len() > pgaadauth_core::session::MAX_OBJECT_ID_LEN);
    slot.tenant_id.set_opt(identity.tenant_id.as_deref());
    slot.upn.set_opt(identity.upn.as_deref());
    slot.app_id.set_opt(identity.app_id.as_deref());
    slot.via_group.set_opt(identity.via_group.as_deref());
    slot.expires = identity.expires.unwrap_or(NONE);
    slot.issued = identity.issued.unwrap_or(NONE);
    slot.pooled = identity.pooled;
    slot.end_kind.store(0, Ordering::Relaxed);
    slot.pid
        .store(unsafe { pg_sys::MyProcPid }, Ordering::Relaxed);
    MY_SLOT.with(|m| m.set(Some(index)));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn free_my_slot(_code: i32, _arg: pg_sys::Datum) {
    let Some(index) = MY_SLOT.with(|m| m.take()) else {
        return;
    };
    if let Some((header, slots)) = slots() {
        let _lock = Held::exclusive(header.lock);
        slots[index].pid.store(0, Ordering::Relaxed);
    }
}

/// Every listed session: its pid and identity.
pub fn rows() -> Vec<(i32, Identity)> {
    let Some((header, slots)) = slots() else {
        return vec![];
    };
    let _lock = Held::shared(header.lock);
    slots
        .iter()
        .filter(|s| s.pid.load(Ordering::Relaxed) != 0)
        .map(|s| {
            let time = |t: i64| (t != NONE).then_some(t);
            (
                s.pid.load(Ordering::Relaxed),
                Identity {
                    method: s.method.get_opt().map(String::from).unwrap_or_default(),
                    object_id: s.object_id.get_opt().map(String::from),
                    tenant_id: s.tenant_id.get_opt().map(String::from),
                    upn: s.upn.get_opt().map(String::from),
                    app_id: s.app_id.get_opt().map(String::from),
                    via_group: s.via_group.get_opt().map(String::from),
                    expires: time(s.expires),
                    issued: time(s.issued),
                    pooled: s.pooled,
                },
            )
        })
        .collect()
}

/// End the token sessions that must end now (expired under `lifetime`, or revoked as
/// `revoked_before` says for a principal): mark why, then SIGTERM them, as
/// pg_terminate_backend does. The lock keeps a slot's process from exiting (and its pid from
/// being reused) while it is signalled. Returns how many were ended.
pub fn end_due(
    now: i64,
    lifetime: Lifetime,
    revoked_before: &dyn Fn(&str) -> Option<i64>,
) -> usize {
    let Some((header, slots)) = slots() else {
        return 0;
    };
    let mut ended = Vec::new();
    {
        let _lock = Held::shared(header.lock);
        for slot in slots.iter() {
            let pid = slot.pid.load(Ordering::Relaxed);
            if pid == 0 || slot.expires == NONE || slot.end_kind.load(Ordering::Acquire) != 0 {
                continue;
            }
            let session = OpenSession {
                exp: slot.expires,
                iat: (slot.issued != NONE).then_some(slot.issued),
            };
            let object_id = slot
                .object_id
                .get_opt()
                .map(String::from)
                .unwrap_or_default();
            let revoked = if slot.object_id_cut {
                None
            } else {
                revoked_before(&object_id)
            };
            let Some(reason) = must_end(session, now, lifetime, revoked) else {
                continue;
            };
            // Claim the slot first: the worker and a revoking backend may race to end it.
            if slot
                .end_kind
                .compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let (kind, time, after) = match reason {
                EndReason::Expired { exp, after } => (1, exp, after),
                EndReason::Revoked { revoked_before } => (2, revoked_before, 0),
            };
            slot.end_time.store(time, Ordering::Relaxed);
            slot.end_grace.store(after, Ordering::Relaxed);
            slot.end_kind.store(kind, Ordering::Release);
            // Under the lock: the process cannot exit (and its pid be reused) meanwhile.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            ended.push((pid, object_id, reason.code()));
        }
    }
    for (pid, object_id, code) in &ended {
        pgrx::log!(
            "pgaadauth: ended the session of process {pid} (principal \"{}\"): {code}",
            pgaadauth_core::log_text::log_safe(object_id)
        );
    }
    ended.len()
}

/// Why this backend's session was ended, if it was.
fn my_end_reason() -> Option<EndReason> {
    let index = MY_SLOT.with(|m| m.get())?;
    let (_, slots) = slots()?;
    let slot = &slots[index];
    let kind = slot.end_kind.load(Ordering::Acquire);
    let time = slot.end_time.load(Ordering::Relaxed);
    match kind {
        1 => Some(EndReason::Expired {
            exp: time,
            after: slot.end_grace.load(Ordering::Relaxed),
        }),
        2 => Some(EndReason::Revoked {
            revoked_before: time,
        }),
        _ => None,
    }
}

// ---- the FATAL message of an ended session ------------------------------------------------

static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

pub fn install_message_hook() {
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(emit_log_hook);
    }
}

/// The session worker ends a session with SIGTERM, which PostgreSQL reports as "terminating
/// connection due to administrator command": when this session was ended for its token, say
/// so instead, to the client and in the log.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn emit_log_hook(edata: *mut pg_sys::ErrorData) {
    unsafe {
        if (*edata).elevel == pg_sys::FATAL as i32
            && (*edata).sqlerrcode == pgrx::PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN as i32
        {
            if let Some(reason) = my_end_reason() {
                let message = reason.message(format_time);
                (*edata).message = palloc_text(&message);
                (*edata).detail = palloc_text(&reason.detail());
                (*edata).hint = palloc_text(reason.hint());
            }
        }
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}

/// A copy in the current memory context (ErrorContext, while an error is reported).
unsafe fn palloc_text(s: &str) -> *mut std::ffi::c_char {
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// A Unix time as the server shows timestamps (its time zone, ISO).
pub fn format_time(t: i64) -> String {
    unsafe {
        let ts = pg_sys::time_t_to_timestamptz(t as pg_sys::pg_time_t);
        let text = pg_sys::timestamptz_to_str(ts);
        std::ffi::CStr::from_ptr(text)
            .to_string_lossy()
            .into_owned()
    }
}

/// A Unix time as a `timestamptz` value.
pub fn timestamptz(t: i64) -> pgrx::datum::TimestampWithTimeZone {
    let ts = unsafe { pg_sys::time_t_to_timestamptz(t as pg_sys::pg_time_t) };
    pgrx::datum::TimestampWithTimeZone::try_from(ts).unwrap_or_else(|e| pgrx::error!("{e}"))
}
