//! The group sync worker: every `pgaadauth.group_sync_interval` while
//! `pgaadauth.enable_group_sync` is on (and at once when it is turned on), one group sync in a
//! transaction of its own, connected to `pgaadauth.database`; each change goes to the log after
//! the commit. It starts only once recovery has finished: a standby never syncs (it receives
//! the primary's roles through WAL), and a promoted standby starts syncing.

use crate::catalog::subtransaction::caught_report;
use crate::group_sync::{sync_once, Change, Waiting};
use crate::net::DirectorySession;
use crate::settings;
use pgaadauth_core::log_text::escape_log_text;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys, PgTryBuilder};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth group sync worker")
        .set_type("pgaadauth group sync worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_sync_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// Once SIGTERM (or the postmaster's death) is seen, it stays seen: pgrx's flag is cleared by
/// every read of it.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOPPING.store(true, Ordering::Relaxed);
    }
    STOPPING.load(Ordering::Relaxed)
}

/// Sleep on the latch up to `d`; SIGTERM or the postmaster's death make [`stopping`] true.
fn nap(d: Duration) {
    if !BackgroundWorker::wait_latch(Some(d.max(Duration::from_millis(1)))) {
        STOPPING.store(true, Ordering::Relaxed);
    }
}

fn log_change(c: &Change) {
    pgrx::log!(
        "pgaadauth: group sync: {} role \"{}\" (object id {}){}{}",
        c.action,
        escape_log_text(&c.role),
        escape_log_text(&c.object_id),
        c.group_role
            .as_ref()
            .map(|g| format!(", group role \"{}\"", escape_log_text(g)))
            .unwrap_or_default(),
        c.detail
            .as_ref()
            .map(|d| format!(": {}", escape_log_text(d)))
            .unwrap_or_default()
    );
}

/// One sync in its own transaction: committed and logged, or rolled back (with a warning when
/// it failed, silently when the worker is stopping or another run holds the lock). Whether it
/// left creations for the next run (a large group's first sync).
fn sync_and_log(session: &mut DirectorySession) -> bool {
    let waiting = Waiting {
        nap: &nap,
        stop: &stopping,
    };
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
    }
    let run = AssertUnwindSafe(|| sync_once(session, &waiting, false));
    let outcome = PgTryBuilder::new(move || Ok::<Option<Vec<Change>>, String>(run()))
        .catch_others(|e| Err(caught_report(&e).message().to_string()))
        .execute();
    match outcome {
        Ok(Some(changes)) if !stopping() => {
            unsafe { pg_sys::CommitTransactionCommand() };
            for c in &changes {
                log_change(c);
            }
            pgrx::log!("pgaadauth: group sync done: {} changes", changes.len());
            // Only while runs make progress: a run that created nothing is not repeated at once.
            let progress = changes.iter().any(|c| c.action == "created");
            return progress && changes.iter().any(|c| c.action == "deferred");
        }
        Ok(None) => {
            unsafe { pg_sys::AbortCurrentTransaction() };
            pgrx::log!("pgaadauth: group sync skipped: another sync is running");
        }
        Ok(Some(_)) => unsafe { pg_sys::AbortCurrentTransaction() },
        Err(why) => {
            unsafe { pg_sys::AbortCurrentTransaction() };
            pgrx::warning!(
                "pgaadauth: group sync failed and changed nothing: {}",
                escape_log_text(&why)
            );
        }
    }
    false
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_sync_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = crate::workers::sessions::connect_to_pgaadauth_database();
    let mut session = DirectorySession::default();
    let mut last_run: Option<Instant> = None;
    while !stopping() {
        let interval = Duration::from_secs(settings::GROUP_SYNC_INTERVAL.get().max(1) as u64);
        let on = settings::ENABLE_GROUP_SYNC.get();
        let due = last_run.map_or_else(Instant::now, |t| t + interval);
        if on && Instant::now() >= due {
            let more = sync_and_log(&mut session);
            // Creations left for the next run: that run is now.
            last_run = if more { None } else { Some(Instant::now()) };
            continue;
        }
        let wait = if on {
            due.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(3600)
        };
        nap(wait);
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            if settings::text(&settings::DATABASE) != database {
                pgrx::log!("pgaadauth: pgaadauth.database changed; the group sync worker restarts");
                break;
            }
            session = DirectorySession::default(); // the credential may have changed
            match (on, settings::ENABLE_GROUP_SYNC.get()) {
                (false, true) => {
                    pgrx::log!("pgaadauth: group sync is on");
                    last_run = None; // sync at once
                }
                (true, false) => pgrx::log!("pgaadauth: group sync is off"),
                _ => {}
            }
        }
    }
    // Exit code 1: restarted by the postmaster unless it is shutting down.
    unsafe { pg_sys::proc_exit(1) }
}
