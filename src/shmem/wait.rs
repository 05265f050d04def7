//! The one way a backend waits for the workers: on its latch, with interrupts honoured.
//!
//! A cancel or `statement_timeout` raises an ERROR (SQL functions); SIGTERM, fast shutdown and
//! `authentication_timeout` end the process (a login). Whatever the waiter holds in shared
//! memory is given back by its own guard or exit callback, never left behind.

use pgrx::pg_sys;
use std::time::{Duration, Instant};

/// Sleep until the latch is set, `deadline` passes, or at most `nap` (the waiter looks at its
/// condition at least that often even if nobody sets its latch), then act on interrupts.
pub fn nap_until(deadline: Instant, nap: Duration) {
    let left = deadline.saturating_duration_since(Instant::now()).min(nap);
    let millis = left.as_millis().max(1) as std::ffi::c_long;
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}
