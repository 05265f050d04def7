//! Directory questions from backends to the directory worker, and the group membership cache,
//! in shared memory. Backends never talk to the network: they post a question, wake the
//! directory worker, and wait on their latch for its answer.
//!
//! A slot belongs to one question, named by a sequence number. Its backend frees it after
//! collecting the answer, or gives it up (timeout, cancel, exit: see [`abandon`]); the worker
//! frees a slot it finishes after its backend gave up. A restarted worker re-asks the questions
//! its predecessor was working on and frees those given up. Nothing is reclaimed by age.

use super::{Held, Text};
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 16;
const CACHE: usize = 512;
/// Longest member value (a principal claim: object id, upn, email, sub) a question or the
/// cache holds; longer values are refused, never cut.
pub const MAX_MEMBER: usize = 256;
/// Longest group id (a GUID is 36).
pub const MAX_GROUP: usize = 64;
/// Longest name `pgaadauth_create_principal` resolves.
pub const MAX_NAME: usize = 512;

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
    /// The question's number while the slot is taken.
    seq: AtomicU64,
    /// The number of the question `answer` answers.
    answered: AtomicU64,
    /// The asking backend's latch, set when the answer is in.
    waiter: AtomicPtr<pg_sys::Latch>,
    /// Unix milliseconds after which its backend no longer waits: the worker skips it.
    deadline_ms: AtomicI64,
    question: u8,
    ok: bool,
    arg1: Text<MAX_NAME>,
    arg2: Text<MAX_GROUP>,
    answer: Text<1024>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Cached {
    member: Text<MAX_MEMBER>,
    group: Text<MAX_GROUP>,
    is_member: bool,
    expires_at: i64,
}

#[repr(C)]
struct Mailbox {
    cache_lock: *mut pg_sys::LWLock,
    next_victim: u32,
    next_seq: AtomicU64,
    /// The directory worker's latch; null until it first starts.
    worker_latch: AtomicPtr<pg_sys::Latch>,
    slots: [Slot; SLOTS],
    cache: [Cached; CACHE],
}

const _: () = assert!(MAX_MEMBER <= MAX_NAME);

static mut MAILBOX: *mut Mailbox = std::ptr::null_mut();

pub fn shmem_size() -> usize {
    std::mem::size_of::<Mailbox>()
}

/// In shmem_startup, under AddinShmemInitLock (`crate::shmem`).
pub(super) unsafe fn startup(cache_lock: *mut pg_sys::LWLock) {
    unsafe {
        MAILBOX = super::segment(c"pgaadauth mailbox", shmem_size(), |m: &mut Mailbox| {
            m.cache_lock = cache_lock;
        });
    }
}

fn mailbox() -> Option<&'static mut Mailbox> {
    // SAFETY: set once in the postmaster before any child is forked.
    unsafe { (*std::ptr::addr_of!(MAILBOX)).as_mut() }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---- backends ---------------------------------------------------------------------------

/// The question this backend is waiting for: (slot, sequence number).
static mut MINE: Option<(usize, u64)> = None;
static mut EXIT_CALLBACK: bool = false;

/// Give up the question `seq` in slot `index`, whatever state the worker left it in.
fn abandon(index: usize, seq: u64) {
    unsafe { MINE = None };
    if let Some(mb) = mailbox() {
        mb.slots[index].give_up(seq);
    }
}

// ---- one slot's life, without pgrx (unit-tested below) -------------------------------------

impl Slot {
    /// Its backend gives question `seq` up: an unanswered question is withdrawn, one being
    /// worked on is marked for the worker to free, an answer not collected is dropped.
    fn give_up(&self, seq: u64) {
        loop {
            if self.seq.load(Ordering::Acquire) != seq {
                return;
            }
            let (from, to) = match self.state.load(Ordering::Acquire) {
                ASKED => (ASKED, FREE),
                WORKING => (WORKING, ABANDONED),
                DONE => (DONE, FREE),
                _ => return,
            };
            if self
                .state
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The answer to question `seq`, if it is in (and belongs to `seq`).
    fn answer_for(&self, seq: u64) -> Option<Result<String, String>> {
        let ready = self.state.load(Ordering::Acquire) == DONE
            && self.seq.load(Ordering::Acquire) == seq
            && self.answered.load(Ordering::Acquire) == seq;
        ready.then(|| {
            let text = self.answer.get().to_string();
            if self.ok {
                Ok(text)
            } else {
                Err(text)
            }
        })
    }

    /// The worker takes a waiting question: its number, or None.
    fn take(&self) -> Option<u64> {
        self.state
            .compare_exchange(ASKED, WORKING, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(self.seq.load(Ordering::Acquire))
    }

    /// The worker answers question `seq`: true when its backend still waits (wake it), false
    /// when it gave up (the slot is freed).
    fn finish(&mut self, seq: u64, result: Result<String, String>) -> bool {
        self.ok = result.is_ok();
        self.answer.set(&result.unwrap_or_else(|e| e));
        self.answered.store(seq, Ordering::Release);
        if self
            .state
            .compare_exchange(WORKING, DONE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        self.state.store(FREE, Ordering::Release); // given up by its backend
        false
    }

    /// A new worker starts: a question its predecessor was working on is asked again, one
    /// given up meanwhile is freed.
    fn recover(&self) {
        let _ = self
            .state
            .compare_exchange(WORKING, ASKED, Ordering::AcqRel, Ordering::Relaxed);
        let _ = self
            .state
            .compare_exchange(ABANDONED, FREE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// At process exit (FATAL at authentication_timeout, SIGTERM, ...): give up a question.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if let Some((index, seq)) = unsafe { MINE } {
        abandon(index, seq);
    }
}

/// Gives the question up when its wait ends by an ERROR (cancel, statement_timeout).
struct Asking {
    index: usize,
    seq: u64,
}

impl Drop for Asking {
    fn drop(&mut self) {
        abandon(self.index, self.seq);
    }
}

/// Check that a question's arguments fit its slot; values are refused, never cut.
pub fn check_fits(question: Question, arg1: &str, arg2: &str) -> Result<(), String> {
    let limit = match question {
        Question::Resolve => MAX_NAME,
        Question::Membership => MAX_MEMBER,
    };
    if arg1.len() > limit {
        return Err(format!(
            "the value is {} bytes long, longer than the {limit} bytes a directory question holds",
            arg1.len()
        ));
    }
    if arg2.len() > MAX_GROUP {
        return Err(format!("the group id is longer than {MAX_GROUP} bytes"));
    }
    Ok(())
}

/// Ask the directory worker `question` and wait up to `wait` for the answer.
pub fn ask(question: Question, arg1: &str, arg2: &str, wait: Duration) -> Result<String, String> {
    check_fits(question, arg1, arg2)?;
    let mb = mailbox().ok_or("pgaadauth is not loaded through shared_preload_libraries")?;
    let worker = mb.worker_latch.load(Ordering::Acquire);
    if worker.is_null() {
        return Err("the pgaadauth directory worker is not running".into());
    }
    unsafe {
        if !EXIT_CALLBACK {
            pg_sys::before_shmem_exit(Some(at_exit), pg_sys::Datum::from(0));
            EXIT_CALLBACK = true;
        }
    }
    let index = mb
        .slots
        .iter()
        .position(|s| {
            s.state
                .compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or("too many directory questions are waiting; try again")?;
    let seq = mb.next_seq.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = &mut mb.slots[index];
    slot.question = question as u8;
    slot.arg1.set(arg1);
    slot.arg2.set(arg2);
    slot.waiter
        .store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    slot.deadline_ms
        .store(unix_ms() + wait.as_millis() as i64, Ordering::Release);
    slot.seq.store(seq, Ordering::Release);
    unsafe { MINE = Some((index, seq)) };
    let asking = Asking { index, seq };
    slot.state.store(ASKED, Ordering::Release);
    unsafe { pg_sys::SetLatch(worker) };
    let deadline = Instant::now() + wait;
    loop {
        if let Some(answer) = mb.slots[index].answer_for(seq) {
            drop(asking); // frees the slot
            return answer;
        }
        if Instant::now() >= deadline {
            drop(asking);
            return Err(format!(
                "the directory did not answer within {} ms",
                wait.as_millis()
            ));
        }
        super::wait::nap_until(deadline, Duration::from_millis(50));
    }
}

/// A cached membership answer for (member, group) that has not expired. Values that do not
/// fit the cache are never in it.
pub fn cached_membership(member: &str, group: &str, now: i64) -> Option<bool> {
    if member.len() > MAX_MEMBER || group.len() > MAX_GROUP {
        return None;
    }
    let mb = mailbox()?;
    let held = Held::shared(mb.cache_lock);
    let found = mb
        .cache
        .iter()
        .find(|c| c.expires_at > now && c.member.get() == member && c.group.get() == group)
        .map(|c| c.is_member);
    drop(held);
    found
}

// ---- the directory worker ---------------------------------------------------------------

/// The directory worker starts: backends wake it from now on. Questions a previous worker
/// was answering when it exited are asked again; those already given up are freed.
pub fn worker_started() {
    let Some(mb) = mailbox() else { return };
    mb.worker_latch
        .store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    for slot in mb.slots.iter() {
        slot.recover();
    }
}

/// Remember a membership answer until `expires_at` (values that do not fit are not cached).
pub fn cache_membership(member: &str, group: &str, is_member: bool, now: i64, expires_at: i64) {
    if member.len() > MAX_MEMBER || group.len() > MAX_GROUP {
        return;
    }
    let Some(mb) = mailbox() else { return };
    let held = Held::exclusive(mb.cache_lock);
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
    drop(held);
}

/// Answer every waiting question with `answer(question, arg1, arg2)`.
pub fn serve(mut answer: impl FnMut(Question, &str, &str) -> Result<String, String>) {
    let Some(mb) = mailbox() else { return };
    for slot in mb.slots.iter_mut() {
        let Some(seq) = slot.take() else { continue };
        let question = if slot.question == Question::Resolve as u8 {
            Question::Resolve
        } else {
            Question::Membership
        };
        // A question whose backend stopped waiting costs no directory request.
        let result = if slot.deadline_ms.load(Ordering::Acquire) < unix_ms() {
            Err("the question waited longer than its backend".to_string())
        } else {
            answer(question, slot.arg1.get(), slot.arg2.get())
        };
        if slot.finish(seq, result) {
            let waiter = slot.waiter.load(Ordering::Acquire);
            if !waiter.is_null() {
                unsafe { pg_sys::SetLatch(waiter) };
            }
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

/// Slots taken now (for `pgaadauth_stats()`): a question asked, worked on, answered or given up.
pub fn slots_in_use() -> usize {
    mailbox().map_or(0, |mb| {
        mb.slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) != FREE)
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Box<Slot> {
        // SAFETY: all-zero is a free slot.
        Box::new(unsafe { std::mem::zeroed() })
    }

    /// A backend posts question `seq` (what `ask` does after claiming the slot).
    fn post(s: &Slot, seq: u64) {
        s.seq.store(seq, Ordering::Release);
        s.state.store(ASKED, Ordering::Release);
    }

    #[test]
    fn an_answer_is_collected_by_its_own_question_only() {
        let mut s = slot();
        post(&s, 7);
        let taken = s.take().unwrap();
        assert_eq!(taken, 7);
        assert!(s.finish(taken, Ok("true".into())));
        assert_eq!(s.answer_for(8), None, "another question's answer");
        assert_eq!(s.answer_for(7), Some(Ok("true".into())));
    }

    #[test]
    fn an_answer_is_never_freed_while_its_backend_waits() {
        let mut s = slot();
        post(&s, 1);
        let seq = s.take().unwrap();
        assert!(s.finish(seq, Err("no".into())));
        // However long the worker's passes take, only the backend frees a DONE slot.
        s.recover();
        assert_eq!(s.state.load(Ordering::Acquire), DONE);
        assert_eq!(s.answer_for(1), Some(Err("no".into())));
        s.give_up(1);
        assert_eq!(s.state.load(Ordering::Acquire), FREE);
    }

    #[test]
    fn a_question_given_up_is_freed_in_every_state() {
        // Before the worker takes it.
        let mut s = slot();
        post(&s, 1);
        s.give_up(1);
        assert_eq!(s.state.load(Ordering::Acquire), FREE);
        assert_eq!(s.take(), None);
        // While the worker works on it: the worker frees it when done.
        post(&s, 2);
        let seq = s.take().unwrap();
        s.give_up(2);
        assert_eq!(s.state.load(Ordering::Acquire), ABANDONED);
        assert!(!s.finish(seq, Ok("late".into())));
        assert_eq!(s.state.load(Ordering::Acquire), FREE);
        // A stale give-up of an older question leaves a newer one alone.
        post(&s, 3);
        s.give_up(2);
        assert_eq!(s.state.load(Ordering::Acquire), ASKED);
    }

    #[test]
    fn a_restarted_worker_asks_again_and_frees_what_was_given_up() {
        // The worker exited while working: the question is asked again, and answered.
        let mut s = slot();
        post(&s, 4);
        s.take().unwrap();
        s.recover();
        assert_eq!(s.state.load(Ordering::Acquire), ASKED);
        let seq = s.take().unwrap();
        assert!(s.finish(seq, Ok("user 1".into())));
        assert_eq!(s.answer_for(4), Some(Ok("user 1".into())));
        // The worker exited while working and the backend gave up meanwhile: freed.
        let s = slot();
        post(&s, 5);
        s.take().unwrap();
        s.give_up(5);
        s.recover();
        assert_eq!(s.state.load(Ordering::Acquire), FREE);
    }
}
