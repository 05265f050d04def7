//! Directory questions from backends to the key worker, and the group membership cache, in
//! shared memory. Backends never talk to the network: they post a question, wake the worker,
//! and wait for its answer.

use crate::keytable::Text;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 16;
const CACHE: usize = 512;
/// A finished answer nobody collected (its backend exited) is reclaimed after this.
const ORPHAN_SECONDS: i64 = 60;

const FREE: u32 = 0;
const WRITING: u32 = 1;
const ASKED: u32 = 2;
const WORKING: u32 = 3;
const DONE: u32 = 4;
const ABANDONED: u32 = 5;

/// What a backend asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// Which directory object is named `arg1`? Answer: `<user|group|service> <oid>`.
    Resolve = 1,
    /// Is `arg1` a member of group `arg2`? Answer: `true` or `false`.
    Membership = 2,
}

#[repr(C)]
struct Slot {
    state: AtomicU32,
    question: u8,
    ok: bool,
    done_at: i64,
    arg1: Text<512>,
    arg2: Text<64>,
    answer: Text<1024>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Cached {
    member: Text<64>,
    group: Text<64>,
    is_member: bool,
    expires_at: i64,
}

#[repr(C)]
struct Mailbox {
    cache_lock: *mut pg_sys::LWLock,
    next_victim: u32,
    slots: [Slot; SLOTS],
    cache: [Cached; CACHE],
}

static mut MAILBOX: *mut Mailbox = std::ptr::null_mut();

pub fn shmem_size() -> usize {
    std::mem::size_of::<Mailbox>()
}

/// In shmem_startup, under AddinShmemInitLock.
pub(crate) unsafe fn startup() {
    unsafe {
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(c"pgaadauth mailbox".as_ptr(), shmem_size(), &mut found)
            as *mut Mailbox;
        if !found {
            std::ptr::write_bytes(ptr as *mut u8, 0, shmem_size());
            (*ptr).cache_lock = crate::keytable::tranche_lock(1);
        }
        MAILBOX = ptr;
    }
}

fn mailbox() -> Option<&'static mut Mailbox> {
    // SAFETY: set once in the postmaster before any child is forked.
    unsafe { (*std::ptr::addr_of!(MAILBOX)).as_mut() }
}

// ---- backends ---------------------------------------------------------------------------

/// Ask the worker `question` and wait up to `wait` for the answer.
pub fn ask(question: Question, arg1: &str, arg2: &str, wait: Duration) -> Result<String, String> {
    let mb = mailbox().ok_or("pgaadauth is not loaded through shared_preload_libraries")?;
    let slot = mb
        .slots
        .iter_mut()
        .find(|s| {
            s.state
                .compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or("too many directory questions are waiting; try again")?;
    slot.question = question as u8;
    slot.arg1.set(arg1);
    slot.arg2.set(arg2);
    slot.state.store(ASKED, Ordering::Release);
    if !crate::keytable::wake_worker() {
        let _ = slot
            .state
            .compare_exchange(ASKED, FREE, Ordering::AcqRel, Ordering::Relaxed);
        return Err("the pgaadauth key worker is not running".into());
    }
    let deadline = Instant::now() + wait;
    loop {
        if slot.state.load(Ordering::Acquire) == DONE {
            let answer = (slot.ok, slot.answer.get().to_string());
            slot.state.store(FREE, Ordering::Release);
            return if answer.0 {
                Ok(answer.1)
            } else {
                Err(answer.1)
            };
        }
        if Instant::now() >= deadline {
            let gone = slot
                .state
                .compare_exchange(ASKED, FREE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
                || slot
                    .state
                    .compare_exchange(WORKING, ABANDONED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
            if gone {
                return Err(format!(
                    "the directory did not answer within {} ms",
                    wait.as_millis()
                ));
            }
            continue; // it just finished
        }
        unsafe { pg_sys::pg_usleep(2_000) };
    }
}

/// A cached membership answer for (member, group) that has not expired.
pub fn cached_membership(member: &str, group: &str, now: i64) -> Option<bool> {
    let mb = mailbox()?;
    unsafe { pg_sys::LWLockAcquire(mb.cache_lock, pg_sys::LWLockMode::LW_SHARED) };
    let found = mb
        .cache
        .iter()
        .find(|c| c.expires_at > now && c.member.get() == member && c.group.get() == group)
        .map(|c| c.is_member);
    unsafe { pg_sys::LWLockRelease(mb.cache_lock) };
    found
}

// ---- the worker -------------------------------------------------------------------------

/// Remember a membership answer until `expires_at`.
pub fn cache_membership(member: &str, group: &str, is_member: bool, now: i64, expires_at: i64) {
    let Some(mb) = mailbox() else { return };
    unsafe { pg_sys::LWLockAcquire(mb.cache_lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
    let i = mb
        .cache
        .iter()
        .position(|c| c.member.get() == member && c.group.get() == group)
        .or_else(|| mb.cache.iter().position(|c| c.expires_at <= now))
        .unwrap_or_else(|| {
            mb.next_victim = (mb.next_victim + 1) % CACHE as u32;
            mb.next_victim as usize
        });
    let c = &mut mb.cache[i];
    c.member.set(member);
    c.group.set(group);
    c.is_member = is_member;
    c.expires_at = expires_at;
    unsafe { pg_sys::LWLockRelease(mb.cache_lock) };
}

/// Answer every waiting question with `answer(question, arg1, arg2)`.
pub fn serve(now: i64, mut answer: impl FnMut(Question, &str, &str) -> Result<String, String>) {
    let Some(mb) = mailbox() else { return };
    for slot in mb.slots.iter_mut() {
        let state = slot.state.load(Ordering::Acquire);
        if state == DONE && now - slot.done_at > ORPHAN_SECONDS {
            let _ = slot
                .state
                .compare_exchange(DONE, FREE, Ordering::AcqRel, Ordering::Relaxed);
            continue;
        }
        if slot
            .state
            .compare_exchange(ASKED, WORKING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        let question = if slot.question == Question::Resolve as u8 {
            Question::Resolve
        } else {
            Question::Membership
        };
        let result = answer(question, slot.arg1.get(), slot.arg2.get());
        slot.ok = result.is_ok();
        slot.answer.set(&result.unwrap_or_else(|e| e));
        slot.done_at = now;
        if slot
            .state
            .compare_exchange(WORKING, DONE, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            slot.state.store(FREE, Ordering::Release); // abandoned by its backend
        }
    }
}

/// Whether questions are waiting.
pub fn pending() -> bool {
    mailbox().is_some_and(|mb| {
        mb.slots
            .iter()
            .any(|s| s.state.load(Ordering::Acquire) == ASKED)
    })
}
