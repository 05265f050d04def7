//! pgaadauth-proxy: accepts PostgreSQL connections without a password and logs each one in to
//! the real server with a fresh Microsoft Entra ID (or OpenID Connect) token, then relays the
//! bytes both ways unchanged. docs/proxy.md.

mod conninfo;
mod relay;
mod session;
mod sources;
mod token;
mod upstream;
mod wire;

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};

/// The scope of Azure Database for PostgreSQL's tokens, which pgaadauth accepts by default.
const AZURE_DATABASE_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// Log PostgreSQL clients in with Microsoft Entra ID tokens: each connection accepted here
/// without a password is logged in to the upstream server with a fresh token.
#[derive(Parser, Debug)]
#[command(name = "pgaadauth-proxy", version)]
struct Args {
    /// Where to listen: host:port, or a Unix socket's path. Repeatable. Loopback unless told
    /// otherwise (and then a warning).
    #[arg(long, default_value = "127.0.0.1:6432")]
    listen: Vec<String>,
    /// The real server, as a libpq connection string: host, port, sslmode (verify-full, the
    /// default, or verify-ca), sslrootcert (a PEM file, or "system", the default),
    /// connect_timeout.
    #[arg(long)]
    upstream: String,
    /// Where tokens come from.
    #[arg(long, value_enum, default_value = "auto")]
    token_source: sources::Kind,
    /// The scope tokens are asked for (its resource, without "/.default", for a managed
    /// identity and the Azure CLI).
    #[arg(long, default_value = AZURE_DATABASE_SCOPE)]
    scope: String,
    /// For --token-source command: a command that prints a token (run with `sh -c`).
    #[arg(long)]
    token_command: Option<String>,
    /// For --token-source client-credentials: the provider's token endpoint.
    #[arg(long)]
    token_endpoint: Option<String>,
    /// The client id: of client credentials, or of a user-assigned managed identity.
    #[arg(long)]
    client_id: Option<String>,
    /// For --token-source client-credentials: a file holding the client secret.
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// Log every client in as this role, whatever user it names.
    #[arg(long)]
    user: Option<String>,
    /// When the token login is refused (or no token can be had), ask the client for its
    /// password, log in with it, and tell the client so with a NOTICE.
    #[arg(long)]
    fallback_password: bool,
    /// A certificate (PEM) for TLS with clients; without it, clients' TLS requests are declined.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("pgaadauth-proxy: {e}");
        std::process::exit(1);
    }
}

/// Whether the instance metadata service gives a token (for `auto`), within two seconds.
fn imds_answers(scope: &str) -> bool {
    let Ok(fetcher) =
        pgaadauth_core::http::Fetcher::new(std::time::Duration::from_secs(2), "", false)
    else {
        return false;
    };
    let resource = scope.strip_suffix("/.default").unwrap_or(scope);
    let credential = pgaadauth_core::directory::Credential::ManagedIdentity {
        endpoint: sources::IMDS.into(),
    };
    let request = pgaadauth_core::directory::token_request(&credential, resource);
    matches!(fetcher.send(&request), Ok((200, _)))
}

fn client_tls(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert \"{}\": {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key \"{}\": {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn run(args: Args) -> Result<(), String> {
    let upstream = conninfo::Upstream::parse(&args.upstream)?;
    let connector = upstream::Connector::new(upstream)?;
    let options = sources::Options {
        kind: args.token_source,
        scope: args.scope.clone(),
        command: args.token_command,
        token_endpoint: args.token_endpoint,
        client_id: args.client_id,
        client_secret_file: args.client_secret_file,
    };
    let env = |name: &str| std::env::var(name).ok();
    let scope = args.scope.clone();
    let source = sources::choose(&options, &env, &|| imds_answers(&scope))?;
    eprintln!("pgaadauth-proxy: tokens from {}", source.what());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(client_tls(cert, key)?),
        _ => None,
    };
    let shared = Arc::new(session::Shared {
        connector,
        tokens: token::Tokens::new(source)?,
        user: args.user,
        fallback_password: args.fallback_password,
        tls,
    });
    let mut listeners = Vec::new();
    for at in &args.listen {
        listeners.push(listen(at).await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let shared = shared.clone();
        tasks.spawn(async move { serve(listener, shared).await });
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some(ended) = tasks.join_next() => ended.map_err(|e| e.to_string())?,
    }
}

async fn listen(at: &str) -> Result<Listener, String> {
    if at.starts_with('/') {
        // A socket left by an earlier run (never another kind of file, nor a live socket).
        if let Ok(meta) = std::fs::symlink_metadata(at) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(format!("listen on {at}: it exists and is not a socket"));
            }
            if std::os::unix::net::UnixStream::connect(at).is_ok() {
                return Err(format!("listen on {at}: another process listens there"));
            }
            let _ = std::fs::remove_file(at);
        }
        let l = UnixListener::bind(at).map_err(|e| format!("listen on {at}: {e}"))?;
        // The owner's alone (and keep it in a directory only the owner can enter: docs).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("listen on {at}: {e}"))?;
        eprintln!("pgaadauth-proxy: listening on {at}");
        return Ok(Listener::Unix(l));
    }
    let l = TcpListener::bind(at)
        .await
        .map_err(|e| format!("listen on {at}: {e}"))?;
    let local = l.local_addr().map_err(|e| e.to_string())?;
    if !local.ip().is_loopback() {
        eprintln!(
            "pgaadauth-proxy: WARNING: listening on {local}, beyond this machine: whoever reaches it is logged in with this proxy's tokens"
        );
    }
    eprintln!("pgaadauth-proxy: listening on {local}");
    Ok(Listener::Tcp(l))
}

async fn serve(listener: Listener, shared: Arc<session::Shared>) -> Result<(), String> {
    loop {
        match &listener {
            Listener::Tcp(l) => match l.accept().await {
                Ok((client, _)) => {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(session::run(client, shared.clone()));
                }
                Err(e) => accept_failed(e).await?,
            },
            Listener::Unix(l) => match l.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(session::run(client, shared.clone()));
                }
                Err(e) => accept_failed(e).await?,
            },
        }
    }
}

/// A failed accept: said, and accepting goes on (after a moment when out of file descriptors
/// or memory); only a listener that is no longer one (EBADF, EINVAL, ENOTSOCK) ends.
async fn accept_failed(e: std::io::Error) -> Result<(), String> {
    match e.raw_os_error() {
        Some(9 | 22 | 88) => return Err(format!("accept: {e}")),
        Some(12 | 23 | 24 | 105) => {
            eprintln!("pgaadauth-proxy: accept: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        _ => eprintln!("pgaadauth-proxy: accept: {e}"),
    }
    Ok(())
}
