//! One client connection: its startup packet (TLS when the proxy has a certificate; GSS
//! encryption declined), a cancel passed on, or a login to the server with the shared token
//! (and with --fallback-password, the client's own password when that login is refused); then
//! the bytes relayed both ways unchanged (crate::relay).

use crate::relay::{IntoSide, IntoSocket};
use crate::token::Tokens;
use crate::upstream::{Connector, Server};
use crate::wire::{self, First, Message};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// How long a client or the server may take for each step of the login (PostgreSQL's own
/// authentication_timeout is a minute at most by default).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Shared {
    pub connector: Connector,
    pub tokens: Tokens,
    pub user: Option<String>,
    pub fallback_password: bool,
    pub tls: Option<TlsAcceptor>,
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + IntoSide {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + IntoSide> Stream for T {}

/// Why a connection ended early: what the client is told (a SQLSTATE and a message; nothing
/// when it is gone or was answered already), and the proxy's log line.
struct Failure {
    client: Option<(&'static str, String)>,
    log: String,
}

impl Failure {
    /// Only a log line.
    fn quiet(e: impl ToString) -> Failure {
        Failure {
            client: None,
            log: e.to_string(),
        }
    }

    /// The same text for the client (with `code`) and the log.
    fn told(code: &'static str, text: String) -> Failure {
        Failure {
            client: Some((code, text.clone())),
            log: text,
        }
    }
}

/// `step`, within [`STEP_TIMEOUT`].
async fn timed<T>(what: &str, step: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| format!("{what}: nothing within {} s", STEP_TIMEOUT.as_secs()))?
}

/// Serve one client.
pub async fn run<C: Stream + IntoSocket>(mut client: C, shared: Arc<Shared>) {
    // libpq sends a GSSENCRequest (declined here) before its SSLRequest when it has Kerberos
    // credentials: TLS is offered for an SSLRequest first or second.
    let mut first = timed("a client's startup", wire::read_first(&mut client)).await;
    if matches!(first, Ok(First::GssEncRequest)) {
        if client.write_all(b"N").await.is_err() {
            return;
        }
        first = timed("a client's startup", wire::read_first(&mut client)).await;
    }
    let result = match (first, &shared.tls) {
        (Ok(First::SslRequest), Some(acceptor)) => {
            if client.write_all(b"S").await.is_err() {
                return;
            }
            match acceptor.accept(client).await {
                Ok(mut tls) => {
                    let first = timed("a client's startup", wire::read_first(&mut tls)).await;
                    finish(tls, &shared, first, true).await
                }
                Err(e) => Err(format!("a client's TLS handshake failed: {e}")),
            }
        }
        (first, _) => finish(client, &shared, first, false).await,
    };
    if let Err(e) = result {
        eprintln!("pgaadauth-proxy: {e}");
    }
}

/// The rest of a client's connection after its first packet (`encrypted`: in TLS already).
async fn finish<C: Stream>(
    mut client: C,
    shared: &Shared,
    first: Result<First, String>,
    encrypted: bool,
) -> Result<(), String> {
    let failure = match serve(&mut client, shared, first, encrypted).await {
        Ok(Some(server)) => return relay(client, server).await.map_err(|f| f.log),
        Ok(None) => None,
        Err(f) => Some(f),
    };
    if let Some(Failure {
        client: Some((code, text)),
        ..
    }) = &failure
    {
        let _ = client
            .write_all(&wire::error_response(
                code,
                &format!("pgaadauth-proxy: {text}"),
            ))
            .await;
    }
    let _ = client.shutdown().await;
    failure.map_or(Ok(()), |f| Err(f.log))
}

/// The login: the server's connection to relay, or none (a cancel, passed on).
async fn serve<C: Stream>(
    client: &mut C,
    shared: &Shared,
    first: Result<First, String>,
    encrypted: bool,
) -> Result<Option<Server>, Failure> {
    let mut first = first.map_err(Failure::quiet)?;
    // Encryption requests declined (at most one of each, as libpq sends them).
    for _ in 0..2 {
        match first {
            First::SslRequest if !encrypted => {}
            First::GssEncRequest => {}
            _ => break,
        }
        client.write_all(b"N").await.map_err(Failure::quiet)?;
        first = timed("a client's startup", wire::read_first(client))
            .await
            .map_err(Failure::quiet)?;
    }
    let (version, mut params) = match first {
        First::Cancel(packet) => {
            // The key is the server's, relayed to the client at its login: pass it on.
            let mut server = shared.connector.connect().await.map_err(Failure::quiet)?;
            server.write_all(&packet).await.map_err(Failure::quiet)?;
            let _ = server.shutdown().await;
            return Ok(None);
        }
        First::Startup { version, params } => (version, params),
        First::SslRequest | First::GssEncRequest => {
            return Err(Failure::told(
                "08P01",
                "too many encryption requests".into(),
            ))
        }
    };
    if params.iter().filter(|(k, _)| k == "user").count() > 1 {
        return Err(Failure::told(
            "08P01",
            "two user names in the startup packet".into(),
        ));
    }
    if let Some(user) = &shared.user {
        params.retain(|(k, _)| k != "user");
        params.push(("user".into(), user.clone()));
    }
    let user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Failure::told("28000", "no user name in the startup packet".into()))?;
    // The server's NegotiateProtocolVersion goes to the client once, however many logins.
    let mut negotiated = false;

    let why = match shared.tokens.token().await {
        // The source's failure is in the log once already (crate::token).
        Err(e) if !shared.fallback_password => {
            return Err(Failure {
                client: Some(("28000", format!("no token to log {user:?} in with: {e}"))),
                log: format!("{user:?} refused: no token"),
            })
        }
        Err(e) => format!("no token: {e}"),
        Ok(token) => {
            let mut server = connect(shared, version, &params).await?;
            let login = login(
                &mut server,
                client,
                Secret::Token(&token),
                &user,
                &mut negotiated,
            );
            match login.await? {
                Login::Done => return Ok(Some(server)),
                Login::Refused(error)
                    if shared.fallback_password
                        && matches!(wire::error_code(&error.body).as_str(), "28P01" | "28000") =>
                {
                    format!("the token was refused: {}", wire::error_text(&error.body))
                }
                Login::Refused(error) => {
                    // As the server sent it.
                    let _ = client.write_all(&error.bytes()).await;
                    return Err(Failure::quiet(format!(
                        "the server refused {user:?}: {:?}",
                        wire::error_text(&error.body)
                    )));
                }
                Login::Other(method) if shared.fallback_password => {
                    format!("the server asked for {method}, not a token")
                }
                Login::Other(method) => {
                    return Err(Failure::told(
                        "28000",
                        format!(
                            "the server asked {user:?} for {method}, not a token: the role has no pgaadauth label, or its pg_hba.conf line is not one pgaadauth serves (--fallback-password logs in with the client's password)"
                        ),
                    ))
                }
            }
        }
    };
    // The fallback: the client's own password, and a notice saying so.
    client
        .write_all(&wire::auth_cleartext_request())
        .await
        .map_err(Failure::quiet)?;
    let password = timed("a client's password", wire::read_password(client))
        .await
        .map_err(Failure::quiet)?;
    let mut server = connect(shared, version, &params).await?;
    let login = login(
        &mut server,
        client,
        Secret::Password(&password),
        &user,
        &mut negotiated,
    );
    match login.await? {
        Login::Done => {
            let notice = format!(
                "pgaadauth-proxy: logged in with your password, not Microsoft Entra ID ({why})"
            );
            client
                .write_all(&wire::notice_response(&notice))
                .await
                .map_err(Failure::quiet)?;
            eprintln!("pgaadauth-proxy: {user:?} logged in with a password, not a token");
            Ok(Some(server))
        }
        Login::Refused(error) => {
            let _ = client.write_all(&error.bytes()).await;
            Err(Failure::quiet(format!(
                "{user:?}'s password was refused too: {:?}",
                wire::error_text(&error.body)
            )))
        }
        Login::Other(method) => Err(Failure::told(
            "28000",
            format!("the server asked {user:?} for {method}, which pgaadauth-proxy cannot answer"),
        )),
    }
}

async fn connect(
    shared: &Shared,
    version: u32,
    params: &[(String, String)],
) -> Result<Server, Failure> {
    let mut server = shared
        .connector
        .connect()
        .await
        .map_err(|e| Failure::told("08001", format!("could not reach the server: {e}")))?;
    server
        .write_all(&wire::startup_message(version, params))
        .await
        .map_err(|e| Failure::told("08006", e.to_string()))?;
    Ok(server)
}

enum Secret<'a> {
    Token(&'a str),
    Password(&'a str),
}

enum Login {
    /// AuthenticationOk, passed on to the client.
    Done,
    /// The server's error, not yet passed on.
    Refused(Message),
    /// The server asked for a method the secret cannot answer (its name).
    Other(&'static str),
}

/// Answer the server's authentication requests with `secret` until it says yes or no.
/// Notices, and protocol negotiation once (`negotiated`), go to the client as they come.
async fn login<C: Stream>(
    server: &mut Server,
    client: &mut C,
    secret: Secret<'_>,
    user: &str,
    negotiated: &mut bool,
) -> Result<Login, Failure> {
    let io = |e: String| Failure::told("08006", e);
    let mut scram: Option<ScramSha256> = None;
    loop {
        let m = timed("the server's login", wire::read_message(server))
            .await
            .map_err(io)?;
        let auth_body = || m.body.get(4..).unwrap_or(&[]);
        let reply = match (m.kind, m.auth_code(), &secret) {
            (b'R', Some(0), _) => {
                if scram.is_some() {
                    return Err(io("the server ended SCRAM without its proof".into()));
                }
                client.write_all(&m.bytes()).await.map_err(Failure::quiet)?;
                return Ok(Login::Done);
            }
            (b'R', Some(3), Secret::Token(s) | Secret::Password(s)) => wire::password_message(s),
            (b'R', Some(5), Secret::Password(p)) => {
                let salt: [u8; 4] = m
                    .body
                    .get(4..8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| io("a short MD5 request".into()))?;
                wire::password_message(&postgres_protocol::authentication::md5_hash(
                    user.as_bytes(),
                    p.as_bytes(),
                    salt,
                ))
            }
            (b'R', Some(10), Secret::Password(p)) => {
                if !wire::sasl_mechanisms(auth_body())
                    .iter()
                    .any(|x| x == SCRAM_SHA_256)
                {
                    return Ok(Login::Other("a SASL mechanism other than SCRAM-SHA-256"));
                }
                let s = ScramSha256::new(p.as_bytes(), ChannelBinding::unsupported());
                let first = wire::sasl_initial_response(SCRAM_SHA_256, s.message());
                scram = Some(s);
                first
            }
            (b'R', Some(11), Secret::Password(_)) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| io("SASLContinue before SASL".into()))?;
                s.update(auth_body()).map_err(|e| io(e.to_string()))?;
                wire::sasl_response(s.message())
            }
            (b'R', Some(12), Secret::Password(_)) => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| io("SASLFinal before SASL".into()))?;
                s.finish(auth_body())
                    .map_err(|e| io(format!("the server's SCRAM proof: {e}")))?;
                continue;
            }
            (b'R', Some(code), _) => return Ok(Login::Other(wire::auth_method_name(code))),
            (b'E', _, _) => return Ok(Login::Refused(m)),
            (b'v', _, _) => {
                if !*negotiated {
                    *negotiated = true;
                    client.write_all(&m.bytes()).await.map_err(Failure::quiet)?;
                }
                continue;
            }
            (b'N', _, _) => {
                client.write_all(&m.bytes()).await.map_err(Failure::quiet)?;
                continue;
            }
            (kind, _, _) => {
                return Err(Failure::told(
                    "08P01",
                    format!(
                        "the server sent message type {:?} during the login",
                        kind as char
                    ),
                ))
            }
        };
        server
            .write_all(&reply)
            .await
            .map_err(|e| io(e.to_string()))?;
    }
}

/// The bytes both ways, unchanged, until both sides close (a side that just goes away is no
/// error).
async fn relay<C: Stream>(client: C, server: Server) -> Result<(), Failure> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let client = client.into_side().map_err(Failure::quiet)?;
    let server = server.into_side().map_err(Failure::quiet)?;
    let refusal = |e: &std::io::Error| {
        wire::error_response(
            "53000",
            &format!("pgaadauth-proxy: could not start a relay thread: {e}"),
        )
    };
    match crate::relay::relay(client, server, refusal).await {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Failure::quiet(e)),
    }
}
