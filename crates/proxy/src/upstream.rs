//! The connection to the real server: TCP, PostgreSQL's SSLRequest, then TLS verified as the
//! upstream string's `sslmode` says. Nothing is sent before the server's certificate is
//! accepted, so a refused certificate never sees a credential.

use crate::conninfo::{Roots, SslMode, Upstream};
use crate::wire;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub type Server = TlsStream<TcpStream>;

/// How long to wait for the server when the upstream string sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Connector {
    upstream: Upstream,
    tls: TlsConnector,
    name: ServerName<'static>,
}

/// verify-ca: the chain must verify; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err("the system has no trusted root certificates: give sslrootcert=<file> in the upstream string".into());
            }
        }
        Roots::File(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert \"{shown}\": {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert \"{shown}\": {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert \"{shown}\": {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert \"{shown}\" holds no certificate"));
            }
        }
    }
    Ok(store)
}

impl Connector {
    pub fn new(upstream: Upstream) -> Result<Connector, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let store = Arc::new(roots(&upstream.roots)?);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match upstream.sslmode {
            SslMode::VerifyFull => builder.with_root_certificates(store),
            SslMode::VerifyCa => {
                let inner = WebPkiServerVerifier::builder_with_provider(store, provider)
                    .build()
                    .map_err(|e| e.to_string())?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
            }
        }
        .with_no_client_auth();
        let name = ServerName::try_from(upstream.host.clone())
            .map_err(|e| format!("upstream host \"{}\": {e}", upstream.host))?;
        Ok(Connector {
            upstream,
            tls: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// A TLS connection to the server, its certificate verified.
    pub async fn connect(&self) -> Result<Server, String> {
        let u = &self.upstream;
        let limit = u.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let at = format!("{}:{}", u.host, u.port);
        let connect = async {
            let mut tcp = TcpStream::connect((u.host.as_str(), u.port))
                .await
                .map_err(|e| format!("could not connect to {at}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            tcp.write_all(&wire::ssl_request())
                .await
                .map_err(|e| format!("{at}: {e}"))?;
            let answer = tcp
                .read_u8()
                .await
                .map_err(|e| format!("{at} closed the connection: {e}"))?;
            if answer != b'S' {
                return Err(format!("{at} does not accept TLS connections"));
            }
            self.tls
                .connect(self.name.clone(), tcp)
                .await
                .map_err(|e| format!("{at}: TLS refused, no credential sent: {e}"))
        };
        tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| format!("{at} did not answer within {} s", limit.as_secs()))?
    }
}
