//! The key worker: fetches signing keys into the shared table, at start and periodically.
//!
//! Starts with the postmaster and needs no database, so it also runs on standbys. It never
//! holds the table's lock while talking to the network.

use crate::config::KeySource;
use crate::http::Fetcher;
use crate::jwks::{parse_discovery, parse_jwks, PublicKey};
use crate::{keytable, settings};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys};
use std::time::Duration;

/// First retry delay after a failed fetch; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth key worker")
        .set_type("pgaadauth key worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_key_worker_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fetch every configured source; the merged key set, or why the refresh failed.
fn fetch_keys() -> Result<Vec<PublicKey>, String> {
    let sources = settings::issuer_settings().key_sources();
    if sources.is_empty() {
        return Err(
            "no key source is configured: set pgaadauth.tenant_id, pgaadauth.issuers or pgaadauth.jwks_uri"
                .into(),
        );
    }
    let fetcher = Fetcher::new(
        Duration::from_millis(settings::HTTP_TIMEOUT.get() as u64),
        &settings::text(&settings::CA_FILE),
        settings::ALLOW_HTTP.get(),
    )?;
    let mut keys: Vec<PublicKey> = Vec::new();
    for source in sources {
        let url = match &source {
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery { issuer } => {
                parse_discovery(&fetcher.get(&source.first_url())?, issuer)?
            }
        };
        let set = parse_jwks(&fetcher.get(&url)?).map_err(|e| format!("{url}: {e}"))?;
        for why in &set.skipped {
            pgrx::log!("pgaadauth: skipped a signing key from {url}: {why}");
        }
        for key in set.keys {
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
    }
    let capacity = keytable::capacity();
    if keys.len() > capacity {
        pgrx::warning!(
            "pgaadauth: {} signing keys were published but only {capacity} fit; raise pgaadauth.max_keys",
            keys.len()
        );
    }
    Ok(keys)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_key_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let refresh = Duration::from_secs(settings::REFRESH_INTERVAL.get() as u64);
        let wait = match fetch_keys() {
            Ok(keys) => {
                keytable::store(&keys, unix_now());
                backoff = FIRST_BACKOFF;
                refresh
            }
            Err(why) => {
                pgrx::warning!("pgaadauth: could not refresh signing keys: {why}");
                keytable::record_failure(&why);
                let wait = backoff.min(refresh);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}
