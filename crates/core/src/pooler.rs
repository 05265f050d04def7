//! PgBouncer's side of pgaadauth (pure, no pgrx): the PAM module's arguments, the server's
//! answer to it, and what PgBouncer does to passwords that pgaadauth must recognise.
//!
//! PgBouncer up to at least 1.25 copies a client's password into a 2048-byte buffer
//! (`MAX_PASSWORD`): a longer one is cut to 2047 bytes without telling the client, and the cut
//! password is what its PAM module and its server connections get. Entra tokens with many
//! `groups` are longer than that.

/// The SHA-256 of a token: how the server remembers the tokens a pooler's check accepted
/// (never the token itself).
pub fn fingerprint(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// One entry of `pgaadauth.pooler_addresses`: where a connection pooler's server connections
/// come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolerSource {
    /// `local`: a Unix-domain socket.
    Local,
    /// An address, or a block of them (`10.0.0.0/24`).
    Net(std::net::IpAddr, u8),
}

/// Parse `pgaadauth.pooler_addresses`: comma-separated IP addresses, CIDR blocks and `local`.
pub fn parse_pooler_addresses(s: &str) -> Result<Vec<PoolerSource>, String> {
    crate::config::split_list(s)
        .iter()
        .map(|item| {
            if item == "local" {
                return Ok(PoolerSource::Local);
            }
            let bad = || {
                format!(
                    "\"{}\" is not an IP address, a CIDR block (10.0.0.0/24) or local",
                    crate::log_text::log_safe(item)
                )
            };
            let (ip, bits) = match item.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (item.as_str(), None),
            };
            let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                None => max,
            };
            Ok(PoolerSource::Net(ip, bits))
        })
        .collect()
}

/// Whether a connection from `peer` (None: a Unix-domain socket) comes from a pooler listed.
pub fn from_pooler(list: &[PoolerSource], peer: Option<std::net::IpAddr>) -> bool {
    use std::net::IpAddr;
    let Some(peer) = peer else {
        return list.contains(&PoolerSource::Local);
    };
    let peer = peer.to_canonical();
    list.iter().any(|source| match (*source, peer) {
        (PoolerSource::Net(IpAddr::V4(net), bits), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (PoolerSource::Net(IpAddr::V6(net), bits), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    })
}

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
    /// How the module wakes PgBouncer's event loop once a login is decided.
    pub wake: Wake,
}

/// `wake=`: where the module knocks so that PgBouncer's event loop notices a decided login at
/// once (it collects PAM results only after a pass of its loop, which otherwise waits for its
/// timer, a third of a second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// `auto` (the default): a listening socket of the PgBouncer process the module is loaded
    /// in (its Unix socket; else a TCP one that no other process may share).
    Auto,
    /// `off`: never.
    Off,
    /// An absolute path (or `@name`, Linux's abstract namespace) of this process's Unix socket.
    Unix(String),
    /// An IP address and port this process alone listens on.
    Tcp(std::net::SocketAddr),
}

impl Wake {
    fn parse(v: &str) -> Result<Wake, String> {
        match v {
            "auto" => Ok(Wake::Auto),
            "off" => Ok(Wake::Off),
            _ if (v.starts_with('/') || v.starts_with('@')) && v.len() > 1 && v.len() < 108 => {
                Ok(Wake::Unix(v.to_string()))
            }
            _ => v.parse().map(Wake::Tcp).map_err(|_| {
                format!(
                    "wake={} is not auto, off, the path of a Unix socket, or IP:port",
                    crate::log_text::log_safe(v)
                )
            }),
        }
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

impl ModuleArgs {
    /// Parse `dsn=…` (required) and `timeout=<ms>`. Errors never quote the dsn (it may hold a
    /// password).
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<ModuleArgs, String> {
        let (mut dsn, mut timeout_ms, mut wake) = (None, DEFAULT_TIMEOUT_MS, Wake::Auto);
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
                            crate::log_text::log_safe(v)
                        )
                    })?;
            } else if let Some(v) = arg.strip_prefix("wake=") {
                wake = Wake::parse(v)?;
            } else {
                let name = arg.split('=').next().unwrap_or_default();
                return Err(format!(
                    "unknown argument \"{}\" (known: dsn=, timeout=, wake=)",
                    crate::log_text::log_safe(name)
                ));
            }
        }
        let dsn = dsn.ok_or("the argument dsn=<libpq connection string> is missing")?;
        Ok(ModuleArgs {
            dsn,
            timeout_ms,
            wake,
        })
    }
}

/// The server's answer to `pgaadauth_pooler_login`.
///
/// The function returns an `int4` ([`ACCEPTED`] or [`REFUSED`]) and, before refusing, sends
/// the reason as an `INFO` message starting with [`REASON_PREFIX`]. An integer because libpq's
/// fast-path call writes a text result into the caller's buffer without checking its length
/// (a rogue server would write past it), while an integer result of any other size than 4
/// bytes is refused by libpq itself; the reason arrives in a message libpq allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// Refused, and why (for PgBouncer's log).
    Rejected(String),
}

pub const ACCEPTED: i32 = 1;
pub const REFUSED: i32 = 0;
/// The start of the `INFO` message that carries a refusal's reason.
pub const REASON_PREFIX: &str = "pgaadauth: pooler login refused: ";
/// Longest reason the server sends, and the module keeps.
pub const MAX_ANSWER: usize = 4000;

impl Answer {
    /// The answer from the function's result and the last `INFO` message of the call (None
    /// when the result is neither [`ACCEPTED`] nor [`REFUSED`]).
    pub fn from_call(result: i32, message: Option<&str>) -> Option<Answer> {
        match result {
            ACCEPTED => Some(Answer::Accepted),
            REFUSED => {
                let why = message
                    .and_then(|m| m.strip_prefix(REASON_PREFIX))
                    .map(|why| cut(why, MAX_ANSWER))
                    .filter(|why| !why.is_empty())
                    .unwrap_or_else(|| "the reason is in the PostgreSQL server's log".into());
                Some(Answer::Rejected(why))
            }
            _ => None,
        }
    }

    /// The `INFO` message the server sends with a refusal: the prefix and the reason, cut to
    /// [`MAX_ANSWER`] bytes at a character boundary.
    pub fn reason_message(why: &str) -> String {
        format!("{REASON_PREFIX}{}", cut(why, MAX_ANSWER))
    }
}

fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

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
    fn pooler_addresses() {
        let list = parse_pooler_addresses("10.0.0.7, 192.168.1.0/24, local, fd00::/8").unwrap();
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(from_pooler(&list, ip("10.0.0.7")));
        assert!(!from_pooler(&list, ip("10.0.0.8")));
        assert!(from_pooler(&list, ip("192.168.1.200")));
        assert!(!from_pooler(&list, ip("192.168.2.1")));
        assert!(from_pooler(&list, ip("fd12::1")));
        assert!(from_pooler(&list, ip("::ffff:10.0.0.7")), "IPv4-mapped");
        assert!(from_pooler(&list, None), "local");
        assert!(!from_pooler(
            &parse_pooler_addresses("10.0.0.7").unwrap(),
            None
        ));
        assert!(!from_pooler(&[], ip("10.0.0.7")));
        let all = parse_pooler_addresses("0.0.0.0/0").unwrap();
        assert!(from_pooler(&all, ip("203.0.113.9")));
        assert!(!from_pooler(&all, ip("::1")), "one family only");
        assert_eq!(parse_pooler_addresses(" , ").unwrap(), vec![]);
        for bad in [
            "10.0.0.0/33",
            "pgbouncer.internal",
            "10.0.0.1/x",
            "::/129",
            "10.0.0",
        ] {
            let e = parse_pooler_addresses(bad).unwrap_err();
            assert!(e.contains("is not an IP address"), "{bad}: {e}");
        }
    }

    #[test]
    fn wake_arguments() {
        let wake = |v: &str| ModuleArgs::parse(["dsn=x", v]).map(|a| a.wake);
        assert_eq!(ModuleArgs::parse(["dsn=x"]).unwrap().wake, Wake::Auto);
        assert_eq!(wake("wake=auto"), Ok(Wake::Auto));
        assert_eq!(wake("wake=off"), Ok(Wake::Off));
        assert_eq!(
            wake("wake=/run/pgbouncer/.s.PGSQL.6432"),
            Ok(Wake::Unix("/run/pgbouncer/.s.PGSQL.6432".into()))
        );
        assert_eq!(wake("wake=@pgb"), Ok(Wake::Unix("@pgb".into())));
        assert_eq!(
            wake("wake=127.0.0.1:6433"),
            Ok(Wake::Tcp("127.0.0.1:6433".parse().unwrap()))
        );
        assert_eq!(
            wake("wake=[::1]:6433"),
            Ok(Wake::Tcp("[::1]:6433".parse().unwrap()))
        );
        // Names are not resolved (the PAM thread must not wait for DNS); paths fit sun_path.
        for bad in [
            "wake=localhost:6432",
            "wake=",
            "wake=/",
            "wake=on",
            "wake=6432",
        ] {
            assert!(wake(bad).unwrap_err().contains("is not auto, off"), "{bad}");
        }
        assert!(wake(&format!("wake=/{}", "x".repeat(107))).is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(Answer::from_call(ACCEPTED, None), Some(Answer::Accepted));
        let message = Answer::reason_message("expired");
        assert_eq!(
            Answer::from_call(REFUSED, Some(&message)),
            Some(Answer::Rejected("expired".into()))
        );
        // Without our message (another notice, or none) the reason is the server's log's.
        for other in [None, Some("NOTICE from elsewhere"), Some(REASON_PREFIX)] {
            assert_eq!(
                Answer::from_call(REFUSED, other),
                Some(Answer::Rejected(
                    "the reason is in the PostgreSQL server's log".into()
                ))
            );
        }
        assert_eq!(Answer::from_call(2, None), None);
        assert_eq!(Answer::from_call(-1, Some(&message)), None);
        // Long reasons are cut at a character boundary, on both sides.
        let long = Answer::reason_message(&"é".repeat(3000));
        assert!(long.len() <= REASON_PREFIX.len() + MAX_ANSWER);
        let huge = format!("{REASON_PREFIX}{}", "é".repeat(1 << 19));
        match Answer::from_call(REFUSED, Some(&huge)) {
            Some(Answer::Rejected(why)) => assert!(why.len() <= MAX_ANSWER),
            other => panic!("{other:?}"),
        }
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
