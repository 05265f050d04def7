//! The key worker: keeps the shared key table filled from the configured key sources.
//!
//! Starts with the postmaster and needs no database, so it also runs on standbys. Each source is
//! fetched at start, then every `pgaadauth.refresh_interval` (or the provider's max-age within
//! bounds), after failures with capped exponential backoff, and at once when a login with an
//! unknown kid or `pgaadauth_refresh_jwks()` asks. It never holds the table's lock while it
//! talks to the network, and never talks to the directory (the directory worker does). If it
//! dies, the postmaster restarts it and the cached keys stay.

use crate::settings;
use crate::shmem::counters::{self, Counter};
use crate::shmem::keys as keytable;
use pgaadauth_core::config::KeySource;
use pgaadauth_core::http::Fetcher;
use pgaadauth_core::jwks::{parse_discovery, parse_jwks, PublicKey};
use pgaadauth_core::schedule;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys};
use std::time::Duration;

/// The key worker and the directory worker: separate processes, so that a slow directory never
/// delays a key refresh and a stalled key fetch never delays a directory answer.
pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth key worker")
        .set_type("pgaadauth key worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_key_worker_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
    // Second: when max_worker_processes is short, the key worker (every login needs it) wins.
}

use crate::net::new_fetcher;
use pgaadauth_core::clock::unix_now;

/// The configured sources, at most as many as the table holds.
fn configured_sources() -> Vec<KeySource> {
    let mut sources = settings::issuer_settings().key_sources();
    if sources.is_empty() {
        pgrx::warning!(
            "pgaadauth: no signing key source is configured; set pgaadauth.tenant_id, pgaadauth.issuers or pgaadauth.jwks_uri"
        );
    }
    if sources.len() > keytable::MAX_SOURCES {
        pgrx::warning!(
            "pgaadauth: only the first {} of {} issuers get their keys fetched",
            keytable::MAX_SOURCES,
            sources.len()
        );
        sources.truncate(keytable::MAX_SOURCES);
    }
    sources
}

/// Fetch one source: its keys (unique by kid) and the provider's max-age.
fn fetch_source(
    fetcher: &Fetcher,
    source: &KeySource,
) -> Result<(Vec<PublicKey>, Option<i64>), String> {
    let url = match source {
        KeySource::Jwks(url) => url.clone(),
        KeySource::Discovery { issuer } => {
            parse_discovery(&fetcher.get(&source.first_url())?.body, issuer)?
        }
    };
    let fetched = fetcher.get(&url)?;
    let set = parse_jwks(&fetched.body).map_err(|e| format!("{url}: {e}"))?;
    for why in &set.skipped {
        pgrx::log!(
            "pgaadauth: skipped a signing key from {}: {}",
            pgaadauth_core::log_text::escape_log_text(&url),
            pgaadauth_core::log_text::escape_log_text(why)
        );
    }
    let mut keys: Vec<PublicKey> = Vec::with_capacity(set.keys.len());
    for key in set.keys {
        if !keys.iter().any(|k| k.kid == key.kid) {
            keys.push(key);
        }
    }
    Ok((keys, fetched.max_age))
}

/// Fetch the sources whose turn it is (all of them when `forced`).
fn refresh(sources: &[KeySource], forced: bool) {
    let timing = settings::timing();
    let now = unix_now();
    let due: Vec<usize> = (0..sources.len())
        .filter(|i| forced || keytable::source_state(*i).is_some_and(|s| s.next_refresh <= now))
        .collect();
    if due.is_empty() {
        return;
    }
    let fetcher = new_fetcher();
    for i in due {
        let source = &sources[i];
        let result = fetcher
            .as_ref()
            .map_err(String::clone)
            .and_then(|f| fetch_source(f, source));
        let now = unix_now();
        let stored = result.and_then(|(keys, max_age)| {
            keytable::store_keys(
                i,
                &keys,
                now,
                now + schedule::after_success(max_age, &timing),
            )
        });
        counters::bump(if stored.is_ok() {
            Counter::KeyFetchesOk
        } else {
            Counter::KeyFetchesFailed
        });
        if let Err(why) = stored.map_err(|e| pgaadauth_core::log_text::escape_log_text(&e)) {
            let failures = keytable::source_state(i).map_or(0, |s| s.consecutive_failures) + 1;
            let next = now + schedule::after_failure(failures, &timing);
            keytable::record_failure(i, &why, now, next);
            pgrx::warning!("pgaadauth: could not refresh signing keys from {source}: {why}");
            if let Some(s) = keytable::source_state(i).filter(|s| s.fetched_at > 0) {
                let age = now - s.fetched_at;
                pgrx::warning!(
                    "pgaadauth: serving signing keys from {source} fetched {age} s ago until refreshes have failed for pgaadauth.max_stale"
                );
            }
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_key_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    keytable::set_worker_latch();
    let mut sources = configured_sources();
    keytable::sync_sources(&sources);
    loop {
        let requested = keytable::take_requests();
        refresh(&sources, requested.is_some());
        if let Some(serving) = requested {
            keytable::finish_requests(serving);
        }
        let wait = match keytable::next_due() {
            Some(due) => Duration::from_secs(due.saturating_sub(unix_now()).max(0) as u64),
            None => Duration::from_secs(settings::timing().refresh_interval as u64),
        };
        // A request that arrived during the round is served at once.
        let wait = if keytable::take_requests().is_some() {
            Duration::ZERO
        } else {
            wait
        };
        if !BackgroundWorker::wait_latch(Some(wait.max(Duration::from_millis(1)))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            let configured = configured_sources();
            if configured != sources {
                sources = configured;
                keytable::sync_sources(&sources);
            }
        }
    }
    // Exit code 1: the postmaster restarts the worker (pg_terminate_backend, for instance);
    // at shutdown it is not restarted anyway. Code 0 would unregister it for good.
    unsafe { pg_sys::proc_exit(1) }
}
