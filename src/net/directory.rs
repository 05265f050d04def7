//! The directory session: the server's own token for the directory (cached until shortly
//! before it expires), its requests, and the answers to the questions backends post.

use crate::settings;
use crate::shmem::mailbox::{self, Question};
use pgaadauth_core::clock::unix_now;
use pgaadauth_core::directory;
use pgaadauth_core::http::Fetcher;

/// The directory as the worker uses it, with its own access token cached until a minute before
/// it expires. Neither the token nor the secret is ever logged.
#[derive(Default)]
pub struct DirectorySession {
    token: Option<(String, i64)>,
}

impl DirectorySession {
    pub fn access_token(&mut self, fetcher: &Fetcher) -> Result<String, String> {
        let now = unix_now();
        if let Some((token, expires_at)) = &self.token {
            if *expires_at - 60 > now {
                return Ok(token.clone());
            }
        }
        let credential = settings::directory_credential().ok_or(
            "no directory is configured: set pgaadauth.client_id and pgaadauth.client_secret_file (or pgaadauth.client_assertion_file), or pgaadauth.managed_identity_endpoint",
        )??;
        let graph = settings::text(&settings::GRAPH_ENDPOINT);
        let (status, body) = fetcher.send(&directory::token_request(&credential, &graph))?;
        if status != 200 {
            let said = directory::token_error_summary(&body)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(format!(
                "the directory's token endpoint answered HTTP status {status}{said}"
            ));
        }
        let (token, expires_in) = directory::parse_token_response(&body)?;
        self.token = Some((token.clone(), now + expires_in));
        Ok(token)
    }

    /// Send a directory request: status, `Retry-After` and body. A 401 drops the cached token
    /// for the next question.
    pub fn send(
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

    pub fn answer(
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
