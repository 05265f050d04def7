//! A test identity provider on 127.0.0.1: OpenID discovery, a JWKS endpoint, and token minting
//! with its own keys (fixtures/). Plain HTTP/1.1, one thread per connection.
//!
//! Serves, under any path prefix P:
//! - `P/.well-known/openid-configuration` → `{"issuer": base+P, "jwks_uri": base+P+"/keys"}`
//! - any path ending in `/keys` → the published key set.

use crate::managed_identity::{self, ManagedIdentity};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
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
    jwk: include_str!("../../crates/core/testdata/rsa1.jwk.json"),
    pem: include_str!("../../crates/core/testdata/rsa1.pem"),
};
pub const RSA2: Key = Key {
    kid: "rsa2",
    alg: Algorithm::RS256,
    jwk: include_str!("../../crates/core/testdata/rsa2.jwk.json"),
    pem: include_str!("../../crates/core/testdata/rsa2.pem"),
};
pub const EC1: Key = Key {
    kid: "ec1",
    alg: Algorithm::ES256,
    jwk: include_str!("../../crates/core/testdata/ec1.jwk.json"),
    pem: include_str!("../../crates/core/testdata/ec1.pem"),
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

/// An object of the test directory.
#[derive(Clone, Debug)]
pub struct DirObject {
    pub id: String,
    /// "user", "group" or "service".
    pub kind: &'static str,
    /// UPN of a user, display name of a group or service principal.
    pub name: String,
}

/// The Graph-compatible test directory: objects, group memberships, tokens issued.
#[derive(Default)]
struct Directory {
    objects: Vec<DirObject>,
    /// (group id, member id)
    members: Vec<(String, String)>,
    failing: bool,
    /// Directory answers wait this long first (a stalled directory).
    stall: Option<std::time::Duration>,
    issued: usize,
    /// Members per transitiveMembers page at most (Graph: `$top`, at most 999).
    page_size: usize,
    /// The next this many transitiveMembers requests answer 429 with `Retry-After:
    /// retry_after` (seconds, 1 unless set).
    throttle_next: usize,
    retry_after: u32,
    /// The transitiveMembers page starting at this member answers 500, once.
    fail_page_at: Option<usize>,
}

/// The client credential the test directory accepts.
pub const CLIENT_ID: &str = "pgaadauth-test";
pub const CLIENT_SECRET: &str = "s3cret&value=with+symbols";
/// The federated client assertion (as Kubernetes workload identity's token file holds) the test
/// directory accepts instead of the secret.
pub const CLIENT_ASSERTION: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";

struct State {
    published: Vec<&'static str>,
    requests: Vec<String>,
    mode: Mode,
    max_age: Option<u32>,
    /// A `jwks_uri` for discovery documents to name instead of the provider's own.
    jwks_uri: Option<String>,
    directory: Directory,
    /// Tokens for a client application, when it asks as a managed identity.
    managed_identity: Option<ManagedIdentity>,
}

pub struct Idp {
    pub port: u16,
    state: Arc<Mutex<State>>,
    tls: bool,
    listener: Arc<TcpListener>,
}

const SHUT_RD: i32 = 0;

unsafe extern "C" {
    fn shutdown(fd: i32, how: i32) -> i32;
    fn listen(fd: i32, backlog: i32) -> i32;
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
        // The port is this provider's for the life of the test process: going `Down` stops
        // listening on the same socket, which keeps the port bound, so nobody else can take it.
        // The socket that proved the port free is the one that serves: it is never unbound.
        let listener = Arc::new(crate::ports::listener());
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            published: keys.iter().map(|k| k.jwk).collect(),
            requests: Vec::new(),
            mode: Mode::Normal,
            max_age: None,
            jwks_uri: None,
            directory: Directory {
                page_size: 999,
                ..Directory::default()
            },
            managed_identity: None,
        }));
        let shared = state.clone();
        let with_tls = tls.is_some();
        let accepting = listener.clone();
        std::thread::spawn(move || loop {
            // While `Down` the socket does not listen and accept fails at once.
            match accepting.accept() {
                Ok((stream, _)) => {
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
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        });
        let idp = Idp {
            port,
            state,
            tls: with_tls,
            listener,
        };
        idp.set_mode(mode);
        idp
    }

    /// Change how the provider answers. `Down` stops listening (connections are refused) but
    /// keeps the port bound; leaving `Down` listens again on the same socket.
    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        let fd = self.listener.as_raw_fd();
        if mode == Mode::Down && s.mode != Mode::Down {
            // SAFETY: our own socket. On Linux, shutting down a listening socket's read side
            // stops listening and resets queued connections; a socket bound to an explicit
            // port keeps that port.
            assert_eq!(unsafe { shutdown(fd, SHUT_RD) }, 0, "stop listening");
        } else if mode != Mode::Down && s.mode == Mode::Down {
            // SAFETY: our own, bound socket.
            assert_eq!(unsafe { listen(fd, 128) }, 0, "listen again");
        }
        s.mode = mode;
    }

    /// Make discovery documents name `uri` as their `jwks_uri` (a hostile provider).
    pub fn set_discovery_jwks_uri(&self, uri: &str) {
        self.state.lock().unwrap().jwks_uri = Some(uri.into());
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

    /// Answer App Service managed identity requests (see `managed_identity`) with tokens for
    /// the service principal `name` with object id `oid`, signed by `key`, each valid for
    /// `lifetime_seconds`.
    pub fn issue_managed_identity_tokens(
        &self,
        key: &'static Key,
        name: &str,
        oid: &str,
        lifetime_seconds: i64,
    ) {
        self.state.lock().unwrap().managed_identity = Some(ManagedIdentity {
            key,
            oid: oid.into(),
            name: name.into(),
            lifetime_seconds,
            issued: Vec::new(),
        });
    }

    /// The managed identity endpoint, for `IDENTITY_ENDPOINT`.
    pub fn identity_endpoint(&self) -> String {
        format!("{}{}", self.base(), managed_identity::PATH)
    }

    /// The managed identity tokens issued so far, oldest first.
    pub fn managed_identity_tokens(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.managed_identity
            .as_ref()
            .map_or(Vec::new(), |m| m.issued.clone())
    }

    pub fn publish(&self, keys: &[&Key]) {
        self.state.lock().unwrap().published = keys.iter().map(|k| k.jwk).collect();
    }

    /// Add an object to the directory.
    pub fn dir_add(&self, id: &str, kind: &'static str, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.directory.objects.push(DirObject {
            id: id.into(),
            kind,
            name: name.into(),
        });
    }

    /// Remove the object `id` (and its memberships) from the directory.
    pub fn dir_remove(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        s.directory.objects.retain(|o| o.id != id);
        s.directory.members.retain(|(g, m)| g != id && m != id);
    }

    pub fn dir_add_member(&self, group: &str, member: &str) {
        self.state
            .lock()
            .unwrap()
            .directory
            .members
            .push((group.into(), member.into()));
    }

    pub fn dir_remove_member(&self, group: &str, member: &str) {
        self.state
            .lock()
            .unwrap()
            .directory
            .members
            .retain(|(g, m)| !(g == group && m == member));
    }

    /// Make every directory endpoint answer 503 (or answer again).
    pub fn dir_set_failing(&self, failing: bool) {
        self.state.lock().unwrap().directory.failing = failing;
    }

    /// Make every directory answer wait `stall` first (or answer at once again).
    pub fn dir_set_stall(&self, stall: Option<std::time::Duration>) {
        self.state.lock().unwrap().directory.stall = stall;
    }

    /// Serve at most `size` members per transitiveMembers page.
    pub fn dir_set_page_size(&self, size: usize) {
        self.state.lock().unwrap().directory.page_size = size;
    }

    /// Answer the next `count` transitiveMembers requests with 429 and `Retry-After: seconds`.
    pub fn dir_throttle_next(&self, count: usize, seconds: u32) {
        let mut s = self.state.lock().unwrap();
        s.directory.throttle_next = count;
        s.directory.retry_after = seconds;
    }

    /// Answer the transitiveMembers page that starts at member `offset` with 500, once.
    pub fn dir_fail_page_at(&self, offset: usize) {
        self.state.lock().unwrap().directory.fail_page_at = Some(offset);
    }

    /// Requests whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.requests().iter().filter(|p| p.contains(part)).count()
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
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body_in = buf[end..].to_vec();
    while body_in.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body_in.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Incoming {
        method: head.split_whitespace().next().unwrap_or("GET").to_string(),
        path: head.split_whitespace().nth(1).unwrap_or("/").to_string(),
        body: String::from_utf8_lossy(&body_in).into_owned(),
        head,
    };
    let path = request.path.clone();
    let (status, body, cache, stall) = {
        let mut s = state.lock().unwrap();
        s.requests.push(path.clone());
        let base = format!("{scheme}://127.0.0.1:{port}");
        let answer = match s.managed_identity.as_mut() {
            Some(identity) if path.starts_with(managed_identity::PATH) => Some(identity.answer(
                &path,
                header(&request.head, "x-identity-header").as_deref(),
                &format!("{base}/{TENANT}/v2.0"),
            )),
            _ => directory_answer(&mut s.directory, &request, &base),
        };
        let cache = s
            .max_age
            .map(|a| format!("Cache-Control: public, max-age={a}\r\n"));
        if let Some((status, body)) = answer {
            if let Some(pause) = s.directory.stall {
                drop(s);
                std::thread::sleep(pause);
            }
            (status, body, None, false)
        } else if let Some(prefix) = path.strip_suffix("/.well-known/openid-configuration") {
            let issuer = format!("{scheme}://127.0.0.1:{port}{prefix}");
            let jwks_uri = s.jwks_uri.clone().unwrap_or(format!("{issuer}/keys"));
            let doc = json!({"issuer": issuer, "jwks_uri": jwks_uri});
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
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let retry_after = if status == 429 {
        let seconds = state.lock().unwrap().directory.retry_after.max(1);
        format!("Retry-After: {seconds}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}{retry_after}Connection: close\r\n\r\n",
        body.len(),
        cache.unwrap_or_default()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

impl Idp {
    /// Settings for a cluster that uses this provider as its Entra authority and directory
    /// (client credentials; the secret in a file only `postgres` reads, named after `name`).
    pub fn directory_settings(&self, name: &str) -> Vec<(&'static str, String)> {
        let secret =
            crate::cluster::private_file(&format!("{name}-secret"), &format!("{CLIENT_SECRET}\n"));
        let mut settings = self.entra_settings();
        settings.extend([
            ("pgaadauth.graph_endpoint", self.base()),
            ("pgaadauth.client_id", CLIENT_ID.into()),
            ("pgaadauth.client_secret_file", secret.display().to_string()),
        ]);
        settings
    }

    /// Settings for a cluster that uses this provider as its Entra authority (no directory).
    pub fn entra_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", self.base()),
            ("pgaadauth.allow_http", "on".into()),
        ]
    }
}

/// `token` with a character inside its signature changed (a forgery).
pub fn tampered(token: &str) -> String {
    let at = token.len() - 10;
    let new = if &token[at..at + 1] == "A" { "B" } else { "A" };
    format!("{}{new}{}", &token[..at], &token[at + 1..])
}

/// A distinct, stable object id (a GUID) for a test principal's name.
pub fn oid_for(name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        h & 0xffff,
        (h >> 20) & 0xfff,
        (h >> 8) & 0xfff,
        h & 0xffffffffffff
    )
}

/// Claims of a valid Entra v2 access token for `oid`, issued by `issuer`, valid for an hour.
pub fn claims(issuer: &str, oid: &str) -> Value {
    let now = unix_now();
    json!({
        "aud": AUDIENCE, "iss": issuer, "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
        "tid": TENANT, "oid": oid, "upn": "someone@contoso.example", "amr": ["pwd"], "ver": "2.0",
    })
}

/// A token signed with RSA1 for `oid`, issued by `issuer`, with `extra` claims over the valid
/// ones (a null value removes that claim).
pub fn mint_with(issuer: &str, oid: &str, extra: &Value) -> String {
    let mut c = claims(issuer, oid);
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    mint(&RSA1, &c)
}

/// `key` published under another kid (two issuers' key sets naming different keys alike).
pub fn renamed(key: &Key, kid: &'static str) -> Key {
    let mut jwk: Value = serde_json::from_str(key.jwk).unwrap();
    jwk["kid"] = json!(kid);
    Key {
        kid,
        alg: key.alg,
        jwk: Box::leak(jwk.to_string().into_boxed_str()),
        pem: key.pem,
    }
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

struct Incoming {
    method: String,
    path: String,
    head: String,
    body: String,
}

pub(crate) fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A group's members, nested groups' members too (the nested groups themselves included), each
/// once, in the order they were added.
fn transitive_members(d: &Directory, group: &str) -> Vec<String> {
    let groups: std::collections::HashSet<&str> = d
        .objects
        .iter()
        .filter(|o| o.kind == "group")
        .map(|o| o.id.as_str())
        .collect();
    let mut seen = std::collections::HashSet::from([group.to_string()]);
    let mut found: Vec<String> = Vec::new();
    let mut queue = vec![group.to_string()];
    while let Some(g) = queue.pop() {
        for (mg, m) in &d.members {
            if *mg == g && seen.insert(m.clone()) {
                found.push(m.clone());
                if groups.contains(m.as_str()) {
                    queue.push(m.clone());
                }
            }
        }
    }
    found
}

/// `/v1.0/groups/{id}/transitiveMembers`: pages of `page_size` (or `$top`) members linked by
/// `@odata.nextLink` (`$skiptoken` is the offset), throttled or failing when told to.
fn members_page(d: &mut Directory, group: &str, query: &str, base: &str) -> (u16, String) {
    if d.throttle_next > 0 {
        d.throttle_next -= 1;
        return (429, r#"{"error":{"code":"TooManyRequests"}}"#.into());
    }
    if !d.objects.iter().any(|o| o.id == group && o.kind == "group") {
        return (
            404,
            r#"{"error":{"code":"Request_ResourceNotFound"}}"#.into(),
        );
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let offset = param("$skiptoken=").unwrap_or(0);
    if d.fail_page_at == Some(offset) {
        d.fail_page_at = None;
        return (500, r#"{"error":{"code":"InternalServerError"}}"#.into());
    }
    let size = param("$top=").unwrap_or(100).min(d.page_size.max(1));
    let all = transitive_members(d, group);
    let objects: std::collections::HashMap<&str, &DirObject> =
        d.objects.iter().map(|o| (o.id.as_str(), o)).collect();
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(size)
        .filter_map(|id| objects.get(id.as_str()))
        .map(|o| match o.kind {
            "user" => json!({"@odata.type": "#microsoft.graph.user", "id": o.id,
                             "userPrincipalName": o.name, "displayName": o.name}),
            "service" => json!({"@odata.type": "#microsoft.graph.servicePrincipal",
                                "id": o.id, "displayName": o.name}),
            _ => json!({"@odata.type": "#microsoft.graph.group", "id": o.id,
                        "displayName": o.name}),
        })
        .collect();
    let mut page = json!({ "value": items });
    if offset + size < all.len() {
        page["@odata.nextLink"] = json!(format!(
            "{base}/v1.0/groups/{group}/transitiveMembers?$select=id,userPrincipalName,displayName&$top={size}&$skiptoken={}",
            offset + size
        ));
    }
    (200, page.to_string())
}

/// The Graph-compatible endpoints: the token endpoint (client credentials, or IMDS-style
/// `/msi/token`), users by UPN, groups and service principals by display name,
/// checkMemberGroups and transitiveMembers. None: not a directory path.
fn directory_answer(d: &mut Directory, r: &Incoming, base: &str) -> Option<(u16, String)> {
    let path = r.path.as_str();
    let is_token = path.ends_with("/oauth2/v2.0/token") || path.starts_with("/msi/token");
    if !is_token && !path.starts_with("/v1.0/") {
        return None;
    }
    if d.failing {
        return Some((503, r#"{"error":{"code":"ServiceUnavailable"}}"#.into()));
    }
    if is_token {
        let ok = if path.starts_with("/msi/token") {
            header(&r.head, "metadata").as_deref() == Some("true") && path.contains("resource=")
        } else {
            let form: Vec<String> = r.body.split('&').map(percent_decode).collect();
            r.method == "POST"
                && form.iter().any(|f| f == "grant_type=client_credentials")
                && form.iter().any(|f| *f == format!("client_id={CLIENT_ID}"))
                && (form
                    .iter()
                    .any(|f| *f == format!("client_secret={CLIENT_SECRET}"))
                    || (form.iter().any(|f| {
                        f == "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    }) && form
                        .iter()
                        .any(|f| *f == format!("client_assertion={CLIENT_ASSERTION}"))))
                && form
                    .iter()
                    .any(|f| f.starts_with("scope=") && f.ends_with("/.default"))
        };
        if !ok {
            return Some((401, r#"{"error":"invalid_client"}"#.into()));
        }
        d.issued += 1;
        let expires_in = if path.starts_with("/msi/") {
            json!("3600")
        } else {
            json!(3600)
        };
        let token = json!({"access_token": format!("directory-access-{}", d.issued), "expires_in": expires_in});
        return Some((200, token.to_string()));
    }
    let bearer = header(&r.head, "authorization");
    if !bearer.is_some_and(|a| a.starts_with("Bearer directory-access-")) {
        return Some((
            401,
            r#"{"error":{"code":"InvalidAuthenticationToken"}}"#.into(),
        ));
    }
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let by_display_name = |kind: &str| -> Option<(u16, String)> {
        let filter = percent_decode(query.split('&').find_map(|p| p.strip_prefix("$filter="))?);
        let name = filter
            .strip_prefix("displayName eq '")?
            .strip_suffix('\'')?
            .replace("''", "'");
        let found: Vec<Value> = d
            .objects
            .iter()
            .filter(|o| o.kind == kind && o.name == name)
            .map(|o| json!({"id": o.id, "displayName": o.name}))
            .collect();
        Some((200, json!({ "value": found }).to_string()))
    };
    if let Some(upn) = route.strip_prefix("/v1.0/users/") {
        let upn = percent_decode(upn);
        let user = d
            .objects
            .iter()
            .find(|o| o.kind == "user" && o.name.eq_ignore_ascii_case(&upn));
        return Some(match user {
            Some(o) => (
                200,
                json!({"id": o.id, "userPrincipalName": o.name}).to_string(),
            ),
            None => (
                404,
                r#"{"error":{"code":"Request_ResourceNotFound"}}"#.into(),
            ),
        });
    }
    if let Some(group) = route
        .strip_prefix("/v1.0/groups/")
        .and_then(|r| r.strip_suffix("/transitiveMembers"))
    {
        let group = percent_decode(group);
        return Some(members_page(d, &group, query, base));
    }
    if route == "/v1.0/groups" {
        return by_display_name("group").or(Some((400, "{}".into())));
    }
    if route == "/v1.0/servicePrincipals" {
        return by_display_name("service").or(Some((400, "{}".into())));
    }
    if let Some(member) = route
        .strip_prefix("/v1.0/directoryObjects/")
        .and_then(|r| r.strip_suffix("/checkMemberGroups"))
    {
        let member = percent_decode(member);
        let member = member.as_str();
        if !d.objects.iter().any(|o| o.id == member) {
            return Some((
                404,
                r#"{"error":{"code":"Request_ResourceNotFound"}}"#.into(),
            ));
        }
        let asked: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let hits: Vec<&str> = asked["groupIds"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|g| d.members.iter().any(|(mg, mm)| mg == g && mm == member))
            .collect();
        return Some((200, json!({ "value": hits }).to_string()));
    }
    Some((404, "{}".into()))
}
