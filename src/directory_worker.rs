//! The directory worker: answers the backends' directory questions (the mailbox), with its own
//! access token to the directory. A process of its own, beside the key worker, so that neither
//! one's network waits delay the other. Needs no database, so it also runs on standbys.

use crate::directory;
use crate::http::Fetcher;
use crate::mailbox::{self, Question};
use crate::settings;
use crate::stats::{self, Counter};
use crate::worker::{new_fetcher, unix_now};
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

/// The directory as the worker uses it, with its own access token cached until a minute before
/// it expires. Neither the token nor the secret is ever logged.
#[derive(Default)]
pub(crate) struct DirectorySession {
    token: Option<(String, i64)>,
}

impl DirectorySession {
    pub(crate) fn access_token(&mut self, fetcher: &Fetcher) -> Result<String, String> {
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

    /// Send a directory request: status, `Retry-After` and body. A 401 drops the cached token
    /// for the next question.
    pub(crate) fn send(
        &mut self,
        fetcher: &Fetcher,
        request: &directory::Request,
    ) -> Result<(u16, Option<String>, Vec<u8>), String> {
        let answer = fetcher.send_reading(request, "retry-after")?;
        if answer.0 == 401 {
            self.token = None;
        }
        Ok(answer)
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
                    let (status, _, body) = self.send(fetcher, &request)?;
                    matches.push((kind, directory::parse_lookup(status, &body)?));
                }
                let (kind, oid) = directory::resolve(arg1, &matches)?;
                Ok(format!("{} {oid}", kind.as_str()))
            }
            Question::Membership => {
                let request = directory::membership_request(&graph, arg1, arg2, &token);
                let (status, _, body) = self.send(fetcher, &request)?;
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
    mailbox::serve(|question, arg1, arg2| {
        stats::bump(Counter::DirectoryCalls);
        let fetcher = fetcher.as_ref().map_err(String::clone)?;
        // An error may quote the directory's answer: it reaches the log in a login's DETAIL.
        let answer = session
            .answer(fetcher, question, arg1, arg2)
            .map_err(|e| crate::token::escape_log_text(&e));
        if answer.is_err() {
            stats::bump(Counter::DirectoryFailures);
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
