//! The key worker: keeps the shared key table filled from the configured key sources.
//!
//! Starts with the postmaster and needs no database, so it also runs on standbys. Each source is
//! fetched at start, then every `pgaadauth.refresh_interval` (or the provider's max-age within
//! bounds), after failures with capped exponential backoff, and at once when a login with an
//! unknown kid or `pgaadauth_refresh_jwks()` asks. It never holds the table's lock while it
//! talks to the network. If it dies, the postmaster restarts it and the cached keys stay.

use crate::config::KeySource;
use crate::directory;
use crate::http::Fetcher;
use crate::jwks::{parse_discovery, parse_jwks, PublicKey};
use crate::mailbox::{self, Question};
use crate::stats::{self, Counter};
use crate::{keytable, schedule, settings};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::{pg_guard, pg_sys};
use std::time::Duration;

pub fn register() {
    BackgroundWorkerBuilder::new("pgaadauth key worker")
        .set_type("pgaadauth key worker")
        .set_library("pgaadauth")
        .set_function("pgaadauth_key_worker_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

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
        pgrx::log!("pgaadauth: skipped a signing key from {url}: {why}");
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
        stats::bump(if stored.is_ok() {
            Counter::KeyFetchesOk
        } else {
            Counter::KeyFetchesFailed
        });
        if let Err(why) = stored {
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

fn new_fetcher() -> Result<Fetcher, String> {
    Fetcher::new(
        settings::http_timeout(),
        &settings::text(&settings::CA_FILE),
        settings::ALLOW_HTTP.get(),
    )
}

/// The directory as the worker uses it, with its own access token cached until a minute before
/// it expires. Neither the token nor the secret is ever logged.
#[derive(Default)]
struct DirectorySession {
    token: Option<(String, i64)>,
}

impl DirectorySession {
    fn access_token(&mut self, fetcher: &Fetcher) -> Result<String, String> {
        let now = unix_now();
        if let Some((token, expires_at)) = &self.token {
            if *expires_at - 60 > now {
                return Ok(token.clone());
            }
        }
        let credential = settings::directory_credential().ok_or(
            "no directory is configured: set pgaadauth.client_id and pgaadauth.client_secret_file, or pgaadauth.managed_identity_endpoint",
        )??;
        let graph = settings::text(&settings::GRAPH_ENDPOINT);
        let (status, body) = fetcher.send(&directory::token_request(&credential, &graph))?;
        if status != 200 {
            return Err(format!(
                "the directory's token endpoint answered HTTP status {status}"
            ));
        }
        let (token, expires_in) = directory::parse_token_response(&body)?;
        self.token = Some((token.clone(), now + expires_in));
        Ok(token)
    }

    /// Send a directory request; a 401 drops the cached token for the next question.
    fn send(
        &mut self,
        fetcher: &Fetcher,
        request: &directory::Request,
    ) -> Result<(u16, Vec<u8>), String> {
        let (status, body) = fetcher.send(request)?;
        if status == 401 {
            self.token = None;
        }
        Ok((status, body))
    }

    fn answer(
        &mut self,
        fetcher: &Fetcher,
        question: Question,
        arg1: &str,
        arg2: &str,
    ) -> Result<String, String> {
        let token = self.access_token(fetcher)?;
        let graph = settings::text(&settings::GRAPH_ENDPOINT);
        match question {
            Question::Resolve => {
                let mut matches = Vec::new();
                for (kind, request) in directory::lookup_requests(&graph, arg1, &token) {
                    let (status, body) = self.send(fetcher, &request)?;
                    matches.push((kind, directory::parse_lookup(status, &body)?));
                }
                let (kind, oid) = directory::resolve(arg1, &matches)?;
                Ok(format!("{} {oid}", kind.as_str()))
            }
            Question::Membership => {
                let request = directory::membership_request(&graph, arg1, arg2, &token);
                let (status, body) = self.send(fetcher, &request)?;
                let is_member = directory::parse_membership(status, &body, arg2)?;
                let now = unix_now();
                let ttl = i64::from(settings::GROUP_CACHE_TTL.get());
                mailbox::cache_membership(arg1, arg2, is_member, now, now + ttl);
                Ok(is_member.to_string())
            }
        }
    }
}

/// Answer the backends' directory questions.
fn serve_mailbox(session: &mut DirectorySession) {
    if !mailbox::pending() {
        return;
    }
    let fetcher = new_fetcher();
    mailbox::serve(unix_now(), |question, arg1, arg2| {
        stats::bump(Counter::DirectoryCalls);
        let fetcher = fetcher.as_ref().map_err(String::clone)?;
        let answer = session.answer(fetcher, question, arg1, arg2);
        if answer.is_err() {
            stats::bump(Counter::DirectoryFailures);
        }
        answer
    });
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgaadauth_key_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    keytable::set_worker_latch();
    let mut sources = configured_sources();
    keytable::sync_sources(&sources);
    let mut session = DirectorySession::default();
    loop {
        serve_mailbox(&mut session);
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
        let wait = if keytable::take_requests().is_some() || mailbox::pending() {
            Duration::ZERO
        } else {
            wait
        };
        if !BackgroundWorker::wait_latch(Some(wait.max(Duration::from_millis(1)))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            session = DirectorySession::default(); // the credential may have changed
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
