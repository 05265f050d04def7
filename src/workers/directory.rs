//! The directory worker: answers the backends' directory questions (the mailbox), with its own
//! access token to the directory. A process of its own, beside the key worker, so that neither
//! one's network waits delay the other. Needs no database, so it also runs on standbys.

use crate::net::{new_fetcher, DirectorySession};
use crate::shmem::counters::{self, Counter};
use crate::shmem::mailbox::{self};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys};
use std::time::Duration;

pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth directory worker")
        .set_type("pgaadauth directory worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_directory_worker_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Answer the backends' directory questions.
fn serve_mailbox(session: &mut DirectorySession) {
    if !mailbox::pending() {
        return;
    }
    let fetcher = new_fetcher();
    mailbox::serve(|question, arg1, arg2| {
        counters::bump(Counter::DirectoryCalls);
        let fetcher = fetcher.as_ref().map_err(String::clone)?;
        // An error may quote the directory's answer: it reaches the log in a login's DETAIL.
        let answer = session
            .answer(fetcher, question, arg1, arg2)
            .map_err(|e| pgaadauth_core::log_text::escape_log_text(&e));
        if answer.is_err() {
            counters::bump(Counter::DirectoryFailures);
        }
        answer
    });
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_directory_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    mailbox::worker_started();
    let mut session = DirectorySession::default();
    loop {
        serve_mailbox(&mut session);
        let wait = if mailbox::pending() {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(60)
        };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            session = DirectorySession::default(); // the credential may have changed
        }
    }
    // Exit code 1: restarted by the postmaster unless it is shutting down (see the key worker).
    unsafe { pg_sys::proc_exit(1) }
}
