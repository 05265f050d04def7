//! The one cached token every connection shares: fetched when first needed, used until
//! shortly before it expires (a minute, or a quarter of a short lifetime), never handed out
//! within that margin. A failing source is reported once until it works again, and its error
//! is the answer for the next few seconds (the connections waiting meanwhile do not each wait
//! for a fetch of their own); no token is ever printed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pgaadauth_core::directory::{self, Credential};
use pgaadauth_core::http::Fetcher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// The Azure CLI's command for a token of `resource` (its signed-in account).
pub fn azure_cli_command(resource: &str) -> String {
    format!(
        "az account get-access-token --resource '{}' --query accessToken --output tsv",
        resource.replace('\'', "'\\''")
    )
}

/// How long a command may take to print a token.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a token endpoint may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the credential for one token request (so that a rotated file is read afresh).
pub type MakeCredential = Box<dyn Fn() -> Result<Credential, String> + Send + Sync>;

pub enum Source {
    /// A shell command that prints a token on standard output.
    Command { command: String, what: String },
    /// A token endpoint (client credentials, a managed identity's).
    Endpoint {
        what: String,
        /// What the token is for: the resource, or with Entra's client credentials the scope
        /// `<resource>/.default`.
        resource: String,
        credential: MakeCredential,
    },
}

impl Source {
    /// What the source is, for messages.
    pub fn what(&self) -> &str {
        match self {
            Source::Command { what, .. } | Source::Endpoint { what, .. } => what,
        }
    }
}

/// How long a source's failure is the answer before it is asked again.
const FAILURE_HOLD: i64 = 5;

enum Cached {
    Token {
        token: String,
        /// Seconds since the epoch: refetch from then on.
        refresh_at: i64,
    },
    Failed {
        error: String,
        retry_at: i64,
    },
}

pub struct Tokens {
    source: Source,
    fetcher: Arc<Fetcher>,
    cached: Mutex<Option<Cached>>,
    failing: AtomicBool,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A token's `exp` and `iat` (seconds since the epoch), read without verifying it: the server
/// verifies; the proxy only needs to know when to fetch the next one.
pub fn lifetime(token: &str) -> Result<(i64, Option<i64>), String> {
    let payload = token
        .split('.')
        .nth(1)
        .filter(|_| token.split('.').count() == 3)
        .ok_or("what the token source printed is not a JWT")?;
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("what the token source printed is not a JWT")?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or("the token has no exp claim")?;
    Ok((exp, claims.get("iat").and_then(serde_json::Value::as_i64)))
}

/// When to fetch the next token after one with `exp`, fetched at `fetched` (its `iat` when it
/// says): a minute before it expires, or a quarter of its lifetime when that is shorter than
/// four minutes.
pub fn refresh_at(exp: i64, fetched: i64) -> i64 {
    let margin = ((exp - fetched) / 4).clamp(0, 60);
    exp - margin
}

impl Tokens {
    pub fn new(source: Source) -> Result<Tokens, String> {
        Ok(Tokens {
            source,
            fetcher: Arc::new(Fetcher::new(HTTP_TIMEOUT, "", false)?),
            cached: Mutex::new(None),
            failing: AtomicBool::new(false),
        })
    }

    /// A token valid for at least the margin: the cached one, or a new one (one fetch at a
    /// time; the others wait for it).
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some(Cached::Token { token, refresh_at }) if now() < *refresh_at => {
                return Ok(token.clone())
            }
            Some(Cached::Failed { error, retry_at }) if now() < *retry_at => {
                return Err(error.clone())
            }
            _ => {}
        }
        let fetched = now();
        let result = self.fetch().await.and_then(|token| {
            let (exp, iat) = lifetime(&token)?;
            let at = refresh_at(exp, iat.unwrap_or(fetched).min(fetched));
            if at <= now() {
                return Err(format!(
                    "the token source gave a token that expires in {} s",
                    exp - now()
                ));
            }
            Ok((token, at))
        });
        match result {
            Ok((token, refresh_at)) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("pgaadauth-proxy: the token source works again");
                }
                *cached = Some(Cached::Token {
                    token: token.clone(),
                    refresh_at,
                });
                Ok(token)
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!("pgaadauth-proxy: no token: {e} (said once until it works again)");
                }
                *cached = Some(Cached::Failed {
                    error: e.clone(),
                    retry_at: now() + FAILURE_HOLD,
                });
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<String, String> {
        match &self.source {
            Source::Command { command, what } => run(command, what).await,
            Source::Endpoint {
                what,
                resource,
                credential,
            } => {
                let request = directory::token_request(&credential()?, resource);
                let fetcher = self.fetcher.clone();
                let (status, body) = tokio::task::spawn_blocking(move || fetcher.send(&request))
                    .await
                    .map_err(|e| format!("{what}: {e}"))?
                    .map_err(|e| format!("{what}: {e}"))?;
                if status != 200 {
                    let said = directory::token_error_summary(&body)
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    return Err(format!("{what} answered HTTP status {status}{said}"));
                }
                directory::parse_token_response(&body)
                    .map(|(token, _)| token)
                    .map_err(|e| format!("{what}: {e}"))
            }
        }
    }
}

/// Run `command` with `sh -c`: its standard output, trimmed. An error says what failed, with
/// the first line of its standard error, never its output.
async fn run(command: &str, what: &str) -> Result<String, String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{what}: could not run it: {e}"))?;
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{what}: no token within {} s", COMMAND_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let first: String = first
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(format!("{what} failed ({}): {first}", out.status));
    }
    let token = String::from_utf8(out.stdout)
        .map_err(|_| format!("{what} printed something that is not text"))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(format!("{what} printed no token"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn refreshes_a_minute_or_a_quarter_of_a_short_lifetime_before_exp() {
        assert_eq!(refresh_at(10_000, 10_000 - 3600), 10_000 - 60);
        assert_eq!(refresh_at(10_000, 10_000 - 240), 10_000 - 60);
        assert_eq!(refresh_at(10_000, 10_000 - 8), 10_000 - 2);
        assert_eq!(refresh_at(10_000, 10_001), 10_000);
        assert_eq!(
            lifetime(&jwt(serde_json::json!({"exp": 5, "iat": 1}))).unwrap(),
            (5, Some(1))
        );
        assert!(lifetime("opaque").is_err());
        assert!(lifetime(&jwt(serde_json::json!({"iat": 1}))).is_err());
    }

    #[tokio::test]
    async fn caches_and_reports_a_failing_source_without_its_output() {
        let dir = std::env::temp_dir().join(format!("proxy-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("count");
        let token = jwt(serde_json::json!({"exp": now() + 3600, "iat": now()}));
        let command = format!("echo x >> '{}'; echo '{token}'", count.display());
        let tokens = Tokens::new(Source::Command {
            command,
            what: "the token command".into(),
        })
        .unwrap();
        assert_eq!(tokens.token().await.unwrap(), token);
        assert_eq!(tokens.token().await.unwrap(), token);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);

        // About to expire: refused, as is a failing command, whose output is not shown.
        let soon = jwt(serde_json::json!({"exp": now() + 30, "iat": now() - 3600}));
        let tokens = Tokens::new(Source::Command {
            command: format!("echo '{soon}'"),
            what: "the token command".into(),
        })
        .unwrap();
        assert!(tokens.token().await.unwrap_err().contains("expires in"));
        let tokens = Tokens::new(Source::Command {
            command: "echo secret-output; echo 'not signed in' >&2; exit 3".into(),
            what: "the token command".into(),
        })
        .unwrap();
        let e = tokens.token().await.unwrap_err();
        assert!(
            e.contains("not signed in") && !e.contains("secret-output"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
