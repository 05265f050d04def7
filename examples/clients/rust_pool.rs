//! A deadpool pool of tokio-postgres connections whose every new connection logs in with a
//! fresh Microsoft Entra token. Connection settings come from PGHOST, PGPORT, PGUSER,
//! PGDATABASE and PGSSLROOTCERT.

use deadpool::managed::{self, Metrics, Pool, RecycleError, RecycleResult};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::io::Error;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A token from the Azure CLI (`az login`, or `az login --identity` for a managed identity),
/// which returns its cached token while it is valid and a new one before it expires. On
/// Windows the Azure CLI is az.cmd.
async fn access_token() -> Result<String, Error> {
    let az = tokio::process::Command::new("az")
        .args([
            "account",
            "get-access-token",
            "--resource-type",
            "oss-rdbms",
        ])
        .args(["--query", "accessToken", "--output", "tsv"])
        .kill_on_drop(true)
        .output();
    let az = tokio::time::timeout(Duration::from_secs(30), az)
        .await
        .map_err(|_| Error::other("az account get-access-token took over 30 s"))??;
    if !az.status.success() {
        let why = String::from_utf8_lossy(&az.stderr);
        return Err(Error::other(format!(
            "az account get-access-token failed: {why}"
        )));
    }
    Ok(String::from_utf8_lossy(&az.stdout).trim().to_string())
}

/// Opens the pool's connections, each with a fresh token.
struct EntraConnections {
    config: Config,
    tls: MakeRustlsConnect,
}

impl managed::Manager for EntraConnections {
    type Type = Client;
    type Error = Error;

    async fn create(&self) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.password(access_token().await?);
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(Error::other)?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<Error> {
        if client.is_closed() {
            return Err(RecycleError::message("the connection is closed"));
        }
        Ok(())
    }
}

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| Error::other(format!("{name} is not set")))
}

/// Verify the server's certificate and name against the root certificate in PGSSLROOTCERT.
fn tls() -> Result<MakeRustlsConnect, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(env("PGSSLROOTCERT")?).map_err(Error::other)? {
        roots
            .add(cert.map_err(Error::other)?)
            .map_err(Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

async fn print(label: &str, client: &Client) -> Result<(), Error> {
    let sql = "SELECT current_user, pg_backend_pid()";
    let row = client.query_one(sql, &[]).await.map_err(Error::other)?;
    println!(
        "{label} {} {}",
        row.get::<_, String>(0),
        row.get::<_, i32>(1)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let pause: f64 = std::env::args()
        .nth(1)
        .map_or(Ok(0.0), |a| a.parse())
        .map_err(Error::other)?;
    let mut config = Config::new();
    config
        .host(env("PGHOST")?)
        .port(
            env("PGPORT")
                .map_or(Ok(5432), |p| p.parse())
                .map_err(Error::other)?,
        )
        .user(env("PGUSER")?)
        .dbname(env("PGDATABASE")?)
        .ssl_mode(SslMode::Require);
    let manager = EntraConnections {
        config,
        tls: tls()?,
    };
    let pool: Pool<EntraConnections> = Pool::builder(manager)
        .max_size(4)
        .build()
        .map_err(Error::other)?;
    let first = pool.get().await.map_err(Error::other)?;
    print("first", &first).await?;
    drop(first);
    // Tokens last an hour or more (a few seconds in the tests): the pool outlives them.
    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
    // Holding four connections at once makes the pool open new ones.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.map_err(Error::other)?);
    }
    for client in &held {
        print("later", client).await?;
    }
    Ok(())
}
