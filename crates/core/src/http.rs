//! The thin HTTPS transport used by the key worker (never by a login).

use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// Largest document accepted from the identity provider.
pub const MAX_BODY: u64 = 1 << 20;

pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<i64>,
}

pub struct Fetcher {
    agent: ureq::Agent,
    allow_http: bool,
}

/// Trusted roots: the system's store plus the PEM certificates of `ca_file`.
fn root_certs(ca_file: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file)
            .map_err(|e| format!("could not read pgaadauth.ca_file \"{ca_file}\": {e}"))?;
        let before = roots.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => roots.push(c.to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("pgaadauth.ca_file \"{ca_file}\": {e}")),
            }
        }
        if roots.len() == before {
            return Err(format!(
                "pgaadauth.ca_file \"{ca_file}\" holds no PEM certificate"
            ));
        }
    }
    Ok(roots)
}

impl Fetcher {
    pub fn new(timeout: Duration, ca_file: &str, allow_http: bool) -> Result<Fetcher, String> {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(root_certs(ca_file)?)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .max_redirects_will_error(true)
            .http_status_as_error(false)
            // Which URLs may use plain http is decided by `check_url` before every request
            // (and redirects are never followed).
            .https_only(false)
            .tls_config(tls)
            .user_agent(concat!("pgaadauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Fetcher { agent, allow_http })
    }

    /// Send `request`: its status and body (at most [`MAX_BODY`] bytes).
    pub fn send(&self, request: &crate::directory::Request) -> Result<(u16, Vec<u8>), String> {
        self.send_reading(request, "retry-after")
            .map(|(status, _, body)| (status, body))
    }

    /// As [`Fetcher::send`], with the answer's `header` too.
    pub fn send_reading(
        &self,
        request: &crate::directory::Request,
        header: &str,
    ) -> Result<(u16, Option<String>, Vec<u8>), String> {
        let url = &request.url;
        // The managed identity token request may go to the instance metadata service over
        // plain http without pgaadauth.allow_http; nothing else may.
        let http_ok = self.allow_http || request.plain_http_ok;
        crate::config::check_url(url, http_ok)?;
        let shown = url.split('?').next().unwrap_or(url);
        let result = match (request.method, &request.body) {
            ("POST", Some((content_type, body))) => {
                let mut r = self.agent.post(url).header("Content-Type", *content_type);
                for (k, v) in &request.headers {
                    r = r.header(*k, v);
                }
                r.send(body.as_bytes())
            }
            _ => {
                let mut r = self.agent.get(url);
                for (k, v) in &request.headers {
                    r = r.header(*k, v);
                }
                r.call()
            }
        };
        let mut resp = result.map_err(|e| format!("{} {shown}: {e}", request.method))?;
        let status = resp.status().as_u16();
        let value = resp
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("{} {shown}: {e}", request.method))?;
        Ok((status, value, body))
    }

    /// GET `url`: the body of a 200 answer (at most [`MAX_BODY`] bytes) and its Cache-Control
    /// max-age, or why not.
    pub fn get(&self, url: &str) -> Result<Fetched, String> {
        crate::config::check_url(url, self.allow_http)?;
        let mut resp = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        if status != 200 {
            return Err(format!("GET {url}: HTTP status {}", status.as_u16()));
        }
        let max_age = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::schedule::parse_max_age);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(Fetched { body, max_age })
    }
}
