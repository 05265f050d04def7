//! A test identity provider on 127.0.0.1: OpenID discovery, a JWKS endpoint, and token minting
//! with its own keys (fixtures/). Plain HTTP/1.1, one thread per connection.
//!
//! Serves, under any path prefix P:
//! - `P/.well-known/openid-configuration` → `{"issuer": base+P, "jwks_uri": base+P+"/keys"}`
//! - any path ending in `/keys` → the published key set.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const AUDIENCE: &str = "https://ossrdbms-aad.database.windows.net";

/// A signing key of the provider: its JWK (public) and PEM (private).
pub struct Key {
    pub kid: &'static str,
    pub alg: Algorithm,
    pub jwk: &'static str,
    pub pem: &'static str,
}

pub const RSA1: Key = Key {
    kid: "rsa1",
    alg: Algorithm::RS256,
    jwk: include_str!("../fixtures/rsa1.jwk.json"),
    pem: include_str!("../fixtures/rsa1.pem"),
};
pub const RSA2: Key = Key {
    kid: "rsa2",
    alg: Algorithm::RS256,
    jwk: include_str!("../fixtures/rsa2.jwk.json"),
    pem: include_str!("../fixtures/rsa2.pem"),
};
pub const EC1: Key = Key {
    kid: "ec1",
    alg: Algorithm::ES256,
    jwk: include_str!("../fixtures/ec1.jwk.json"),
    pem: include_str!("../fixtures/ec1.pem"),
};

/// How the provider answers key set requests (discovery always answers, unless `Down`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// The port is closed: connections are refused.
    Down,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `200` with `{"keys": []}`.
    EmptySet,
    /// `200` with a 5 MiB body.
    Huge,
    /// Answers after 30 s.
    Stall,
    /// `500 Internal Server Error`.
    ServerError,
}

/// An HMAC key: never usable for verification, published to prove it is skipped.
pub const OCT: Key = Key {
    kid: "hmac1",
    alg: Algorithm::HS256,
    jwk: r#"{"kty":"oct","kid":"hmac1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#,
    pem: "",
};

struct State {
    published: Vec<&'static str>,
    requests: Vec<String>,
    mode: Mode,
    max_age: Option<u32>,
}

pub struct Idp {
    pub port: u16,
    state: Arc<Mutex<State>>,
    tls: bool,
}

/// The test CA that signed the provider's TLS certificate (for 127.0.0.1), and another CA.
pub fn fixture_path(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture_path("tls.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(fixture_path("tls.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Idp {
    /// Start serving on a free port, publishing `keys`.
    pub fn start(keys: &[&Key]) -> Idp {
        Idp::start_in(keys, Mode::Normal)
    }

    /// Start serving HTTPS with the certificate of fixtures/tls.pem (issued by fixtures/ca.pem).
    pub fn start_tls(keys: &[&Key]) -> Idp {
        Idp::start_with(keys, Mode::Normal, Some(tls_config()))
    }

    /// Start in `mode` (e.g. `Down`: the port is known but refuses connections).
    pub fn start_in(keys: &[&Key], mode: Mode) -> Idp {
        Idp::start_with(keys, mode, None)
    }

    fn start_with(keys: &[&Key], mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> Idp {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind test identity provider")
            .local_addr()
            .unwrap()
            .port();
        let state = Arc::new(Mutex::new(State {
            published: keys.iter().map(|k| k.jwk).collect(),
            requests: Vec::new(),
            mode,
            max_age: None,
        }));
        let shared = state.clone();
        let with_tls = tls.is_some();
        // The acceptor holds the listening socket only while the provider is not `Down`.
        std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            loop {
                let down = shared.lock().unwrap().mode == Mode::Down;
                if down {
                    listener = None;
                } else if listener.is_none() {
                    let l = TcpListener::bind(("127.0.0.1", port)).expect("rebind provider port");
                    l.set_nonblocking(true).unwrap();
                    listener = Some(l);
                }
                match listener.as_ref().map(|l| l.accept()) {
                    Some(Ok((stream, _))) => {
                        stream.set_nonblocking(false).unwrap();
                        let state = shared.clone();
                        let tls = tls.clone();
                        std::thread::spawn(move || match tls {
                            None => serve(stream, port, "http", &state),
                            Some(config) => {
                                let Ok(conn) = rustls::ServerConnection::new(config) else {
                                    return;
                                };
                                serve(
                                    rustls::StreamOwned::new(conn, stream),
                                    port,
                                    "https",
                                    &state,
                                )
                            }
                        });
                    }
                    _ => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        });
        Idp {
            port,
            state,
            tls: with_tls,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
        // Let the acceptor notice before the caller goes on.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    /// Send `Cache-Control: max-age=N` with key sets.
    pub fn set_max_age(&self, seconds: Option<u32>) {
        self.state.lock().unwrap().max_age = seconds;
    }

    /// How many key set documents were requested so far.
    pub fn key_set_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|p| p.ends_with("/keys"))
            .count()
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The v2.0 issuer of the test tenant, as Entra would name it under this authority.
    pub fn entra_issuer(&self) -> String {
        format!("{}/{TENANT}/v2.0", self.base())
    }

    pub fn publish(&self, keys: &[&Key]) {
        self.state.lock().unwrap().published = keys.iter().map(|k| k.jwk).collect();
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(mut stream: impl Read + Write, port: u16, scheme: &str, state: &Mutex<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body, cache, stall) = {
        let mut s = state.lock().unwrap();
        s.requests.push(path.clone());
        let cache = s
            .max_age
            .map(|a| format!("Cache-Control: public, max-age={a}\r\n"));
        if let Some(prefix) = path.strip_suffix("/.well-known/openid-configuration") {
            let issuer = format!("{scheme}://127.0.0.1:{port}{prefix}");
            let doc = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")});
            (200, doc.to_string(), None, false)
        } else if path.ends_with("/keys") {
            let keys = format!("{{\"keys\":[{}]}}", s.published.join(","));
            match s.mode {
                Mode::Normal | Mode::Down => (200, keys, cache, false),
                Mode::Garbage => (200, "<html>upstream error</html>".into(), None, false),
                Mode::EmptySet => (200, r#"{"keys":[]}"#.into(), None, false),
                Mode::Huge => (
                    200,
                    format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(5 << 20)),
                    None,
                    false,
                ),
                Mode::Stall => (200, keys, None, true),
                Mode::ServerError => (500, "{}".into(), None, false),
            }
        } else {
            (404, "{}".to_string(), None, false)
        }
    };
    if stall {
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        body.len(),
        cache.unwrap_or_default()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

/// Claims of a valid Entra v2 access token for `oid`, issued by `issuer`, valid for an hour.
pub fn claims(issuer: &str, oid: &str) -> Value {
    let now = unix_now();
    json!({
        "aud": AUDIENCE, "iss": issuer, "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
        "tid": TENANT, "oid": oid, "upn": "someone@contoso.example", "amr": ["pwd"], "ver": "2.0",
    })
}

/// Sign `claims` with `key`, naming it by `kid` in the header.
pub fn mint_as(key: &Key, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(String::from);
    header.typ = Some("JWT".into());
    let encoding = match key.alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(key.pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(key.pem.as_bytes()),
    }
    .unwrap();
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// Sign `claims` with `key` under its own kid.
pub fn mint(key: &Key, claims: &Value) -> String {
    mint_as(key, Some(key.kid), claims)
}
