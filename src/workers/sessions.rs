//! The session worker: every second it reads `pgaadauth.revocations` in `pgaadauth.database`
//! into shared memory, then ends the token sessions that must end (revoked, or expired under
//! `pgaadauth.session_lifetime = token`); and it adds the password logins recorded in shared
//! memory to `pgaadauth.password_logins` (each second there are some, and at exit) and reads
//! that table back (then, at start, and each minute). Connected to that database, on primaries
//! and hot standbys alike (a standby only reads); it never talks to the network.

use crate::settings;
use crate::shmem::revocations::{self, Replaced};
use crate::shmem::sessions;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys};
use std::time::Duration;

const PERIOD: Duration = Duration::from_secs(1);
const STALE_RETRY: Duration = Duration::from_millis(10);
/// How often `pgaadauth.password_logins` is read when no password login is pending.
const PASSWORD_LOGINS_READ: Duration = Duration::from_secs(60);

pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth session worker")
        .set_type("pgaadauth session worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_session_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Connect this worker to `pgaadauth.database` (its name is returned) with `search_path` pinned:
/// the worker runs as a superuser, and nothing a user created decides what its SQL means.
pub(crate) fn connect_to_pgaadauth_database() -> String {
    let database = settings::text(&settings::DATABASE);
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        )
    };
    database
}

/// pgaudit (when loaded) audits nothing of this worker's session: it reads
/// `pgaadauth.revocations` every second and writes its own bookkeeping, routine work that would
/// otherwise put lines in the audit log every second. Set without SQL, so that not even the
/// setting is audited; the worker runs no statement a user gave it.
fn unaudited() {
    for (name, value) in [(c"pgaudit.log", c"none"), (c"pgaudit.role", c"")] {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_session_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = connect_to_pgaadauth_database();
    unaudited();
    let mut last_error: Option<String> = None;
    let mut warned_overflow = false;
    let mut password_logins = PasswordLogins::default();
    loop {
        let generation = revocations::generation();
        let read = BackgroundWorker::transaction(crate::catalog::revocations::read_table);
        match read {
            Ok(rows) => {
                let overflowed = match revocations::replace_all(&rows, generation) {
                    Replaced::Applied { overflowed } => overflowed,
                    Replaced::Stale => {
                        // A commit changed the copy meanwhile: read again, soon.
                        if !BackgroundWorker::wait_latch(Some(STALE_RETRY)) {
                            password_logins.sync(true);
                            break;
                        }
                        continue;
                    }
                };
                if overflowed && !warned_overflow {
                    pgrx::warning!(
                        "pgaadauth: pgaadauth.revocations holds {} revocations, more than the {} the server enforces: no token is accepted until old ones are lifted",
                        rows.len(),
                        revocations::MAX_REVOCATIONS
                    );
                }
                warned_overflow = overflowed;
                if last_error.take().is_some() {
                    pgrx::log!("pgaadauth: the session worker reads pgaadauth.revocations again");
                }
            }
            Err(e) => {
                // The copy in shared memory stays as it was (and unloaded after a start: logins
                // refuse tokens rather than ignore revocations).
                if last_error.as_ref() != Some(&e) {
                    pgrx::warning!("pgaadauth: could not read pgaadauth.revocations: {e}");
                }
                last_error = Some(e);
            }
        }
        let now = pgaadauth_core::clock::unix_now();
        let revoked = revocations::snapshot();
        sessions::end_due(now, settings::session_lifetime(), &|object_id| {
            revoked
                .iter()
                .find(|(o, _)| o == object_id)
                .map(|(_, t)| *t)
        });
        password_logins.sync(false);
        if !BackgroundWorker::wait_latch(Some(PERIOD)) {
            password_logins.sync(true);
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            if settings::text(&settings::DATABASE) != database {
                pgrx::log!("pgaadauth: pgaadauth.database changed; the session worker restarts");
                break;
            }
        }
    }
    // Exit code 1: restarted by the postmaster unless it is shutting down.
    unsafe { pg_sys::proc_exit(1) }
}

/// The worker's side of password-login tracking (crate::shmem::password_logins).
#[derive(Default)]
struct PasswordLogins {
    read_at: Option<std::time::Instant>,
    last_error: Option<String>,
}

impl PasswordLogins {
    /// Add what is pending to the table and read it back: when something is pending (on a
    /// primary), when the table has not been read for a minute, or `now` (at exit).
    fn sync(&mut self, now: bool) {
        use crate::shmem::password_logins as shared;
        let pending = shared::pending();
        let due = self
            .read_at
            .is_none_or(|t| t.elapsed() >= PASSWORD_LOGINS_READ);
        // A hot standby cannot write what is pending: it reads once a minute.
        let writable = !pending.is_empty() && !unsafe { pg_sys::RecoveryInProgress() };
        if !writable && !due && !now {
            return;
        }
        let result = BackgroundWorker::transaction(|| {
            crate::catalog::password_logins::write_and_read(&pending)
        });
        match result {
            Ok(Some(read)) => {
                let written: &[_] = if read.wrote { &pending } else { &[] };
                shared::written_and_read(written, &read.rows);
                self.read_at = Some(std::time::Instant::now());
                if self.last_error.take().is_some() {
                    pgrx::log!(
                        "pgaadauth: the session worker writes pgaadauth.password_logins again"
                    );
                }
            }
            // The extension is not created in pgaadauth.database: counted in memory only.
            Ok(None) => self.read_at = Some(std::time::Instant::now()),
            Err(e) => {
                // Rolled back: what was pending stays pending, for the next second.
                self.read_at = Some(std::time::Instant::now());
                if self.last_error.as_ref() != Some(&e) {
                    pgrx::warning!("pgaadauth: could not write pgaadauth.password_logins: {e}");
                }
                self.last_error = Some(e);
            }
        }
    }
}
