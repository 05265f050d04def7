//! One client connection: its startup packet (TLS when the proxy has a certificate; GSS
//! encryption declined), a cancel passed on, or a login to the server with the shared token
//! (and with --fallback-password, the client's own password when that login is refused); then
//! the bytes relayed both ways unchanged, with tokio's backpressure.

use crate::token::Tokens;
use crate::upstream::{Connector, Server};
use crate::wire::{self, First, Message};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

pub struct Shared {
    pub connector: Connector,
    pub tokens: Tokens,
    pub user: Option<String>,
    pub fallback_password: bool,
    pub tls: Option<TlsAcceptor>,
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An error for the client (SQLSTATE; none when the client is not to be answered) and for the
/// proxy's log.
type Failure = (&'static str, String);

fn quiet(e: impl ToString) -> Failure {
    ("", e.to_string())
}

/// Serve one client.
pub async fn run<C: Stream>(mut client: C, shared: Arc<Shared>) {
    let first = wire::read_first(&mut client).await;
    let result = match (first, &shared.tls) {
        (Ok(First::SslRequest), Some(acceptor)) => {
            if let Err(e) = client.write_all(b"S").await {
                eprintln!("pgaadauth-proxy: {e}");
                return;
            }
            match acceptor.accept(client).await {
                Ok(mut tls) => {
                    let first = wire::read_first(&mut tls).await;
                    finish(tls, &shared, first, true).await
                }
                Err(e) => {
                    eprintln!("pgaadauth-proxy: a client's TLS handshake failed: {e}");
                    return;
                }
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
    let outcome = serve(&mut client, shared, first, encrypted).await;
    if let Err((code, e)) = outcome {
        if !code.is_empty() {
            let _ = client.write_all(&wire::error_response(code, &e)).await;
        }
        let _ = client.shutdown().await;
        return Err(e);
    }
    let _ = client.shutdown().await;
    Ok(())
}

async fn serve<C: Stream>(
    client: &mut C,
    shared: &Shared,
    first: Result<First, String>,
    encrypted: bool,
) -> Result<(), Failure> {
    let mut first = first.map_err(quiet)?;
    // Declined encryption requests (at most one of each, as libpq sends them) before the
    // startup packet.
    for _ in 0..2 {
        match first {
            First::SslRequest if !encrypted => {}
            First::GssEncRequest => {}
            _ => break,
        }
        client.write_all(b"N").await.map_err(quiet)?;
        first = wire::read_first(client).await.map_err(quiet)?;
    }
    let (version, mut params) = match first {
        First::Cancel(packet) => {
            // The key is the server's, relayed to the client at its login: pass it on.
            let mut server = shared.connector.connect().await.map_err(quiet)?;
            server.write_all(&packet).await.map_err(quiet)?;
            let _ = server.shutdown().await;
            return Ok(());
        }
        First::Startup { version, params } => (version, params),
        First::SslRequest | First::GssEncRequest => {
            return Err((
                "08P01",
                "an encryption request after the startup began".into(),
            ))
        }
    };
    if let Some(user) = &shared.user {
        params.retain(|(k, _)| k != "user");
        params.push(("user".into(), user.clone()));
    }
    let user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone())
        .ok_or(("28000", "no user name in the startup packet".to_string()))?;

    let why = match shared.tokens.token().await {
        Err(e) => format!("no token: {e}"),
        Ok(token) => {
            let mut server = connect(shared, version, &params).await?;
            match login(&mut server, client, Secret::Token(&token), &user).await? {
                Login::Done => return relay(client, server).await,
                Login::Refused(error) if !shared.fallback_password => {
                    // As the server sent it.
                    let _ = client.write_all(&error.bytes()).await;
                    return Err(quiet(format!(
                        "the server refused \"{user}\": {}",
                        wire::error_text(&error.body)
                    )));
                }
                Login::Refused(error) => {
                    format!("the token was refused: {}", wire::error_text(&error.body))
                }
                Login::Other(method) if shared.fallback_password => {
                    format!("the server asked for {method}, not a token")
                }
                Login::Other(method) => {
                    return Err((
                        "28000",
                        format!(
                            "the server asked \"{user}\" for {method}, not a token: the role has no pgaadauth label, or its pg_hba.conf line is not one pgaadauth serves (--fallback-password logs in with the client's password)"
                        ),
                    ))
                }
            }
        }
    };
    if !shared.fallback_password {
        return Err((
            "28000",
            format!("pgaadauth-proxy could not log \"{user}\" in with a token: {why}"),
        ));
    }
    // The fallback: the client's own password, and a notice saying so.
    client
        .write_all(&wire::auth_cleartext_request())
        .await
        .map_err(quiet)?;
    let password = wire::read_password(client).await.map_err(quiet)?;
    let mut server = connect(shared, version, &params).await?;
    match login(&mut server, client, Secret::Password(&password), &user).await? {
        Login::Done => {
            let notice = format!(
                "pgaadauth-proxy: logged in with your password, not Microsoft Entra ID ({why})"
            );
            client
                .write_all(&wire::notice_response(&notice))
                .await
                .map_err(quiet)?;
            eprintln!("pgaadauth-proxy: \"{user}\" logged in with a password: {why}");
            relay(client, server).await
        }
        Login::Refused(error) => {
            let _ = client.write_all(&error.bytes()).await;
            Err(quiet(format!(
                "\"{user}\"'s password was refused too: {}",
                wire::error_text(&error.body)
            )))
        }
        Login::Other(method) => Err((
            "28000",
            format!(
                "the server asked \"{user}\" for {method}, which pgaadauth-proxy cannot answer"
            ),
        )),
    }
}

async fn connect(
    shared: &Shared,
    version: u32,
    params: &[(String, String)],
) -> Result<Server, Failure> {
    let mut server = shared.connector.connect().await.map_err(|e| {
        (
            "08001",
            format!("pgaadauth-proxy could not reach the server: {e}"),
        )
    })?;
    server
        .write_all(&wire::startup_message(version, params))
        .await
        .map_err(|e| ("08006", e.to_string()))?;
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
/// Notices and protocol negotiation go to the client as they come.
async fn login<C: Stream>(
    server: &mut Server,
    client: &mut C,
    secret: Secret<'_>,
    user: &str,
) -> Result<Login, Failure> {
    let io = |e: String| ("08006", e);
    let mut scram: Option<ScramSha256> = None;
    loop {
        let m = wire::read_message(server).await.map_err(io)?;
        let reply = match (m.kind, m.auth_code(), &secret) {
            (b'R', Some(0), _) => {
                client.write_all(&m.bytes()).await.map_err(quiet)?;
                return Ok(Login::Done);
            }
            (b'R', Some(3), Secret::Token(s) | Secret::Password(s)) => wire::password_message(s),
            (b'R', Some(5), Secret::Password(p)) => {
                let salt: [u8; 4] = m.body[4..8]
                    .try_into()
                    .map_err(|_| io("a short MD5 request".into()))?;
                wire::password_message(&postgres_protocol::authentication::md5_hash(
                    user.as_bytes(),
                    p.as_bytes(),
                    salt,
                ))
            }
            (b'R', Some(10), Secret::Password(p)) => {
                if !wire::sasl_mechanisms(&m.body[4..])
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
                s.update(&m.body[4..]).map_err(|e| io(e.to_string()))?;
                wire::sasl_response(s.message())
            }
            (b'R', Some(12), Secret::Password(_)) => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| io("SASLFinal before SASL".into()))?;
                s.finish(&m.body[4..])
                    .map_err(|e| io(format!("the server's SCRAM proof: {e}")))?;
                continue;
            }
            (b'R', Some(code), _) => return Ok(Login::Other(wire::auth_method_name(code))),
            (b'E', _, _) => return Ok(Login::Refused(m)),
            (b'N' | b'v', _, _) => {
                client.write_all(&m.bytes()).await.map_err(quiet)?;
                continue;
            }
            (kind, _, _) => {
                return Err((
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

/// The bytes both ways, unchanged, until either side closes (a side that just goes away is
/// no error).
async fn relay<C: Stream>(client: &mut C, mut server: Server) -> Result<(), Failure> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match tokio::io::copy_bidirectional(client, &mut server).await {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(quiet(e)),
    }
}
