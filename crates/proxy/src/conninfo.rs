//! The upstream server, given as a libpq connection string (`host=… port=… sslmode=…`).

use std::path::PathBuf;

/// How the upstream server's certificate is checked. Only the modes that verify it: the token
/// is a credential, and a server that is not verified could replay it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// The certificate chains to a trusted root and names the host (libpq's default here).
    VerifyFull,
    /// The certificate chains to a trusted root; its name is not checked.
    VerifyCa,
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The system's store (`sslrootcert=system`, and the default).
    System,
    /// The PEM certificates of a file.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    pub roots: Roots,
    pub connect_timeout: Option<std::time::Duration>,
}

/// The keyword/value pairs of a libpq connection string: values bare or single-quoted, with
/// backslash escapes in either.
fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("missing \"=\" after \"{key}\""));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value of \"{key}\"")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or("a value ends in \"\\\"")?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next().ok_or("a value ends in \"\\\"")?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

impl Upstream {
    /// Parse `text`; every problem named.
    pub fn parse(text: &str) -> Result<Upstream, String> {
        let mut host = None;
        let mut port = 5432u16;
        let mut sslmode = SslMode::VerifyFull;
        let mut roots = Roots::System;
        let mut connect_timeout = None;
        for (key, value) in pairs(text).map_err(|e| format!("the upstream string: {e}"))? {
            match key.as_str() {
                "host" => {
                    if value.is_empty() || value.contains(',') || value.starts_with('/') {
                        return Err(format!(
                            "upstream host \"{value}\": one host name or address (no list, no Unix socket: the token needs TLS)"
                        ));
                    }
                    host = Some(value);
                }
                "port" => {
                    port = value
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("upstream port \"{value}\" is not a port number"))?
                }
                "sslmode" => {
                    sslmode = match value.as_str() {
                        "verify-full" => SslMode::VerifyFull,
                        "verify-ca" => SslMode::VerifyCa,
                        other => {
                            return Err(format!(
                                "upstream sslmode \"{other}\": only verify-full or verify-ca, so that a token goes only to a verified server"
                            ))
                        }
                    }
                }
                "sslrootcert" => {
                    roots = match value.as_str() {
                        "" => return Err("upstream sslrootcert is empty".into()),
                        "system" => Roots::System,
                        path => Roots::File(PathBuf::from(path)),
                    }
                }
                "connect_timeout" => {
                    let seconds: u64 = value.parse().map_err(|_| {
                        format!("upstream connect_timeout \"{value}\" is not a number of seconds")
                    })?;
                    connect_timeout = (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
                }
                other => {
                    return Err(format!(
                        "upstream keyword \"{other}\" is not one pgaadauth-proxy takes (host, port, sslmode, sslrootcert, connect_timeout; user, database and options come from each client)"
                    ))
                }
            }
        }
        if sslmode == SslMode::VerifyCa && roots == Roots::System {
            // As libpq refuses it: with the system's roots and no name check, any publicly
            // trusted certificate, for any name, would get the token.
            return Err("upstream sslmode=verify-ca needs sslrootcert=<a file> (with the system's roots, any publicly trusted certificate would do): use verify-full".into());
        }
        Ok(Upstream {
            host: host.ok_or("the upstream string names no host")?,
            port,
            sslmode,
            roots,
            connect_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libpq_strings() {
        let u = Upstream::parse(
            "host=db.example.com  port = 6543 sslmode=verify-ca sslrootcert='/etc/ca dir/ca.pem'",
        )
        .unwrap();
        assert_eq!(u.host, "db.example.com");
        assert_eq!(u.port, 6543);
        assert_eq!(u.sslmode, SslMode::VerifyCa);
        assert_eq!(u.roots, Roots::File("/etc/ca dir/ca.pem".into()));
        let d = Upstream::parse("host=h").unwrap();
        assert_eq!(
            (d.port, d.sslmode, d.roots),
            (5432, SslMode::VerifyFull, Roots::System)
        );
        assert_eq!(
            Upstream::parse(r"host=h sslrootcert='it\'s'")
                .unwrap()
                .roots,
            Roots::File("it's".into())
        );
    }

    #[test]
    fn refuses_what_would_send_a_token_unverified_or_is_unclear() {
        for (text, needle) in [
            ("host=h sslmode=require", "only verify-full or verify-ca"),
            ("host=h sslmode=disable", "only verify-full or verify-ca"),
            ("port=5432", "names no host"),
            ("host=/var/run/postgresql", "no Unix socket"),
            ("host=a,b", "no list"),
            ("host=h port=x", "not a port number"),
            ("host=h password=x", "not one pgaadauth-proxy takes"),
            ("host", "missing \"=\""),
            ("host='h", "unterminated"),
            ("host=h sslmode=verify-ca", "needs sslrootcert=<a file>"),
        ] {
            let e = Upstream::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
