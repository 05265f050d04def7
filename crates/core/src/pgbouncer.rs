//! PgBouncer's side of pgaadauth (pure, no pgrx): the PAM module's arguments, the server's
//! answer to it, and what PgBouncer does to passwords that pgaadauth must recognise.
//!
//! PgBouncer up to at least 1.25 copies a client's password into a 2048-byte buffer
//! (`MAX_PASSWORD`): a longer one is cut to 2047 bytes without telling the client, and the cut
//! password is what its PAM module and its server connections get. Entra tokens with many
//! `groups` are longer than that.

/// PgBouncer's `MAX_PASSWORD`: passwords are cut to one byte less.
pub const MAX_PASSWORD: usize = 2048;

/// When `password` is what PgBouncer leaves of a longer token, the reason to refuse it with.
pub fn looks_cut_by_pgbouncer(password: &str) -> Option<String> {
    if password.len() != MAX_PASSWORD - 1 || !password.starts_with("eyJ") {
        return None;
    }
    let is_token_text = password
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !is_token_text || !password.contains('.') {
        return None;
    }
    // PgBouncer cuts its log lines at about 500 bytes: the remedy comes early and short.
    Some(format!(
        "the password is {} bytes and looks like a cut token: PgBouncer cuts passwords to {} \
         bytes (MAX_PASSWORD {MAX_PASSWORD}). Use a shorter token (fewer claims, e.g. no \
         groups), connect directly, or use a PgBouncer with a larger MAX_PASSWORD.",
        MAX_PASSWORD - 1,
        MAX_PASSWORD - 1
    ))
}

/// The arguments of `pam_pgaadauth.so` on its PAM line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleArgs {
    /// libpq connection string of the PostgreSQL server (one word: a URI or key=value without
    /// spaces, since PAM splits its arguments on whitespace).
    pub dsn: String,
    /// How long one check may take, connection included, in milliseconds.
    pub timeout_ms: u64,
}

pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

impl ModuleArgs {
    /// Parse `dsn=…` (required) and `timeout=<ms>`. Errors never quote the dsn (it may hold a
    /// password).
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<ModuleArgs, String> {
        let (mut dsn, mut timeout_ms) = (None, DEFAULT_TIMEOUT_MS);
        for arg in args {
            if let Some(v) = arg.strip_prefix("dsn=") {
                if v.is_empty() {
                    return Err("the argument dsn= is empty".into());
                }
                dsn = Some(v.to_string());
            } else if let Some(v) = arg.strip_prefix("timeout=") {
                timeout_ms = v
                    .parse()
                    .ok()
                    .filter(|t| (100..=60_000).contains(t))
                    .ok_or_else(|| {
                        format!(
                            "timeout={} is not a number of milliseconds from 100 to 60000",
                            crate::token::log_safe(v)
                        )
                    })?;
            } else {
                let name = arg.split('=').next().unwrap_or_default();
                return Err(format!(
                    "unknown argument \"{}\" (known: dsn=, timeout=)",
                    crate::token::log_safe(name)
                ));
            }
        }
        let dsn = dsn.ok_or("the argument dsn=<libpq connection string> is missing")?;
        Ok(ModuleArgs { dsn, timeout_ms })
    }
}

/// The server's answer to `pgaadauth_pooler_login`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// Refused, and why (for PgBouncer's log).
    Rejected(String),
}

impl Answer {
    pub fn parse(text: &str) -> Option<Answer> {
        if text == "accepted" {
            return Some(Answer::Accepted);
        }
        text.strip_prefix("rejected: ")
            .map(|why| Answer::Rejected(why.to_string()))
    }

    /// The text the server sends, cut to `max` bytes (at a character boundary).
    pub fn to_text(&self, max: usize) -> String {
        let mut text = match self {
            Answer::Accepted => "accepted".to_string(),
            Answer::Rejected(why) => format!("rejected: {why}"),
        };
        if text.len() > max {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// Longest answer the server sends (the module's buffer is larger).
pub const MAX_ANSWER: usize = 4000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_arguments() {
        let a = ModuleArgs::parse(["dsn=postgresql:///db?host=/run&user=u"]).unwrap();
        assert_eq!(a.dsn, "postgresql:///db?host=/run&user=u");
        assert_eq!(a.timeout_ms, DEFAULT_TIMEOUT_MS);
        let a = ModuleArgs::parse(["timeout=250", "dsn=host=x"]).unwrap();
        assert_eq!((a.dsn.as_str(), a.timeout_ms), ("host=x", 250));
        assert!(ModuleArgs::parse([]).unwrap_err().contains("dsn="));
        assert!(ModuleArgs::parse(["dsn="]).is_err());
        assert!(ModuleArgs::parse(["dsn=x", "timeout=5"]).is_err());
        assert!(ModuleArgs::parse(["dsn=x", "timeout=abc"]).is_err());
        let e = ModuleArgs::parse(["dsn=x", "pasword=secret"]).unwrap_err();
        assert!(e.contains("\"pasword\"") && !e.contains("secret"), "{e}");
        let e = ModuleArgs::parse(["dsn=x", "timeout=x"]).unwrap_err();
        assert!(e.contains("timeout=x"));
    }

    #[test]
    fn answers() {
        assert_eq!(Answer::parse("accepted"), Some(Answer::Accepted));
        assert_eq!(
            Answer::parse("rejected: expired"),
            Some(Answer::Rejected("expired".into()))
        );
        assert_eq!(Answer::parse("maybe"), None);
        let long = Answer::Rejected("é".repeat(3000)).to_text(MAX_ANSWER);
        assert!(long.len() <= MAX_ANSWER && long.starts_with("rejected: "));
    }

    fn token_like(len: usize) -> String {
        let mut t = String::from("eyJhbGciOiJSUzI1NiJ9.eyJ");
        while t.len() < len {
            t.push('a');
        }
        t
    }

    #[test]
    fn a_token_cut_to_2047_bytes_is_recognised() {
        let why = looks_cut_by_pgbouncer(&token_like(2047)).unwrap();
        assert!(why.contains("PgBouncer cuts passwords to 2047 bytes"));
        assert!(why.contains("MAX_PASSWORD 2048"));
    }

    #[test]
    fn other_lengths_and_ordinary_passwords_are_left_alone() {
        assert!(looks_cut_by_pgbouncer(&token_like(2046)).is_none());
        assert!(looks_cut_by_pgbouncer(&token_like(2048)).is_none());
        assert!(looks_cut_by_pgbouncer(&"x".repeat(2047)).is_none());
        let mut spaced = token_like(2047);
        spaced.replace_range(30..31, " ");
        assert!(looks_cut_by_pgbouncer(&spaced).is_none());
    }
}
