//! Which token source, from the command line and the environment Azure's SDKs read, in the
//! order `DefaultAzureCredential` tries them: environment (a client secret or certificate),
//! workload identity, managed identity (App Service's endpoint, else the instance metadata
//! service), the Azure CLI. And for any OpenID Connect provider: client credentials at a token
//! endpoint, or a command that prints a token.

use crate::token::{azure_cli_command, MakeCredential, Source};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pgaadauth_core::directory::{entra_token_url, ClientProof, Credential};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service's managed identity endpoint.
pub const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The first that applies, in DefaultAzureCredential's order.
    Auto,
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or
    /// AZURE_CLIENT_CERTIFICATE_PATH.
    Environment,
    /// AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID (Kubernetes).
    WorkloadIdentity,
    /// IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service, Container Apps), else the instance
    /// metadata service; --client-id (or AZURE_CLIENT_ID) picks a user-assigned identity.
    ManagedIdentity,
    /// The Azure CLI's signed-in account.
    AzureCli,
    /// --token-command.
    Command,
    /// Client credentials at --token-endpoint (any OpenID Connect provider).
    ClientCredentials,
}

/// What the command line says about tokens.
pub struct Options {
    pub kind: Kind,
    pub scope: String,
    pub command: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
}

/// The environment, as a function (tests give their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The resource of a scope (`<resource>/.default`).
fn resource_of(scope: &str) -> String {
    scope.strip_suffix("/.default").unwrap_or(scope).to_string()
}

fn read_trimmed(what: &str, path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read {what} \"{}\": {e}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(format!("{what} \"{}\" is empty", path.display()));
    }
    Ok(text)
}

/// The source `o` names, or for `auto` the first that applies (`imds_answers` says whether
/// the instance metadata service gave a token; asked only when nothing before it applies).
pub fn choose(o: &Options, env: Env, imds_answers: &dyn Fn() -> bool) -> Result<Source, String> {
    if o.command.is_some() && o.kind != Kind::Command {
        return Err("--token-command goes with --token-source command".into());
    }
    if o.token_endpoint.is_some() != (o.kind == Kind::ClientCredentials) {
        return Err(
            "--token-endpoint goes with --token-source client-credentials, and it needs it".into(),
        );
    }
    let resource = resource_of(&o.scope);
    match o.kind {
        Kind::Command => Ok(Source::Command {
            command: o
                .command
                .clone()
                .ok_or("--token-source command needs --token-command")?,
            what: "the token command".into(),
        }),
        Kind::AzureCli => Ok(Source::Command {
            command: azure_cli_command(&resource),
            what: "the Azure CLI".into(),
        }),
        Kind::ClientCredentials => {
            let token_url = o.token_endpoint.clone().unwrap_or_default();
            let client_id = o
                .client_id
                .clone()
                .ok_or("--token-source client-credentials needs --client-id")?;
            let secret_file = o
                .client_secret_file
                .clone()
                .ok_or("--token-source client-credentials needs --client-secret-file")?;
            let scope = o.scope.clone();
            Ok(Source::Endpoint {
                what: format!("the token endpoint {}", without_userinfo(&token_url)),
                resource,
                credential: Box::new(move || {
                    Ok(Credential::Client {
                        token_url: token_url.clone(),
                        client_id: client_id.clone(),
                        proof: ClientProof::Secret(read_trimmed(
                            "--client-secret-file",
                            &secret_file,
                        )?),
                        scope: Some(scope.clone()),
                    })
                }),
            })
        }
        Kind::Environment => environment(o, env)?.ok_or_else(|| {
            "--token-source environment needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH".into()
        }),
        Kind::WorkloadIdentity => workload_identity(o, env)?.ok_or_else(|| {
            "--token-source workload-identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID".into()
        }),
        Kind::ManagedIdentity => Ok(managed_identity(o, env)),
        Kind::Auto => {
            if let Some(s) = environment(o, env)? {
                return Ok(s);
            }
            if let Some(s) = workload_identity(o, env)? {
                return Ok(s);
            }
            if var(env, "IDENTITY_ENDPOINT").is_some() || imds_answers() {
                return Ok(managed_identity(o, env));
            }
            Ok(Source::Command {
                command: azure_cli_command(&resource),
                what: "the Azure CLI".into(),
            })
        }
    }
}

/// `url` without a `user:password@` before its host, for messages.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let host = rest[..end].rsplit('@').next().unwrap_or("");
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

fn authority(env: Env) -> String {
    var(env, "AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.into())
}

fn environment(o: &Options, env: Env) -> Result<Option<Source>, String> {
    let (Some(tenant), Some(client_id)) =
        (var(env, "AZURE_TENANT_ID"), var(env, "AZURE_CLIENT_ID"))
    else {
        return Ok(None);
    };
    let token_url = entra_token_url(&authority(env), &tenant);
    let scope = o.scope.clone();
    let resource = resource_of(&o.scope);
    if let Some(secret) = var(env, "AZURE_CLIENT_SECRET") {
        return Ok(Some(Source::Endpoint {
            what: "the environment's client secret (AZURE_CLIENT_SECRET)".into(),
            resource,
            credential: Box::new(move || {
                Ok(Credential::Client {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    proof: ClientProof::Secret(secret.clone()),
                    scope: Some(scope.clone()),
                })
            }),
        }));
    }
    let Some(path) = var(env, "AZURE_CLIENT_CERTIFICATE_PATH") else {
        return Ok(None);
    };
    let certificate = Certificate::read(&PathBuf::from(&path))?;
    Ok(Some(Source::Endpoint {
        what: format!("the environment's client certificate \"{path}\""),
        resource,
        credential: Box::new(move || {
            Ok(Credential::Client {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                proof: ClientProof::Assertion(certificate.assertion(&client_id, &token_url)?),
                scope: Some(scope.clone()),
            })
        }),
    }))
}

fn workload_identity(o: &Options, env: Env) -> Result<Option<Source>, String> {
    let (Some(file), Some(client_id), Some(tenant)) = (
        var(env, "AZURE_FEDERATED_TOKEN_FILE"),
        o.client_id.clone().or_else(|| var(env, "AZURE_CLIENT_ID")),
        var(env, "AZURE_TENANT_ID"),
    ) else {
        return Ok(None);
    };
    let token_url = entra_token_url(&authority(env), &tenant);
    let scope = o.scope.clone();
    let file = PathBuf::from(file);
    Ok(Some(Source::Endpoint {
        what: format!(
            "workload identity (AZURE_FEDERATED_TOKEN_FILE \"{}\")",
            file.display()
        ),
        resource: resource_of(&o.scope),
        credential: Box::new(move || {
            Ok(Credential::Client {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                // Read afresh each time: the kubelet rotates it.
                proof: ClientProof::Assertion(read_trimmed("AZURE_FEDERATED_TOKEN_FILE", &file)?),
                scope: Some(scope.clone()),
            })
        }),
    }))
}

fn managed_identity(o: &Options, env: Env) -> Source {
    let client_id = o.client_id.clone().or_else(|| var(env, "AZURE_CLIENT_ID"));
    let with_client = |endpoint: &str| match &client_id {
        Some(id) => format!(
            "{endpoint}{}client_id={}",
            if endpoint.contains('?') { '&' } else { '?' },
            pgaadauth_core::directory::encode(id)
        ),
        None => endpoint.to_string(),
    };
    let credential: MakeCredential;
    let what;
    if let (Some(endpoint), Some(header)) =
        (var(env, "IDENTITY_ENDPOINT"), var(env, "IDENTITY_HEADER"))
    {
        what = format!("the managed identity endpoint {endpoint}");
        let endpoint = with_client(&endpoint);
        credential = Box::new(move || {
            Ok(Credential::AppService {
                endpoint: endpoint.clone(),
                header: header.clone(),
            })
        });
    } else {
        what = "the instance metadata service's managed identity".to_string();
        let endpoint = with_client(IMDS);
        credential = Box::new(move || {
            Ok(Credential::ManagedIdentity {
                endpoint: endpoint.clone(),
            })
        });
    }
    Source::Endpoint {
        what,
        resource: resource_of(&o.scope),
        credential,
    }
}

/// A client certificate and its private key (one PEM file, as Azure's SDKs take it): signs the
/// client assertions Entra accepts instead of a secret.
struct Certificate {
    key: jsonwebtoken::EncodingKey,
    /// base64url SHA-1 of the certificate (the assertion's `x5t`).
    thumbprint: String,
}

impl Certificate {
    fn read(path: &PathBuf) -> Result<Certificate, String> {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| format!("AZURE_CLIENT_CERTIFICATE_PATH \"{shown}\": {e}"))?;
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or_else(|| {
                format!("AZURE_CLIENT_CERTIFICATE_PATH \"{shown}\" holds no certificate")
            })?
            .map_err(|e| format!("AZURE_CLIENT_CERTIFICATE_PATH \"{shown}\": {e}"))?;
        let text = String::from_utf8_lossy(&pem);
        let begin = text
            .find("-----BEGIN PRIVATE KEY-----")
            .or_else(|| text.find("-----BEGIN RSA PRIVATE KEY-----"))
            .ok_or_else(|| {
                format!("AZURE_CLIENT_CERTIFICATE_PATH \"{shown}\" holds no RSA private key")
            })?;
        let key_pem = &text[begin..];
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
            .map_err(|e| format!("AZURE_CLIENT_CERTIFICATE_PATH \"{shown}\": {e}"))?;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        Ok(Certificate {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// A client assertion for `client_id` at `token_url`, valid ten minutes.
    fn assertion(&self, client_id: &str, token_url: &str) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no random bytes for the assertion")?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(self.thumbprint.clone());
        let claims = serde_json::json!({
            "aud": token_url, "iss": client_id, "sub": client_id,
            "jti": URL_SAFE_NO_PAD.encode(jti), "iat": now, "nbf": now, "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kind: Kind) -> Options {
        Options {
            kind,
            scope: "https://ossrdbms-aad.database.windows.net/.default".into(),
            command: None,
            token_endpoint: None,
            client_id: None,
            client_secret_file: None,
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn what(s: Result<Source, String>) -> String {
        s.map(|s| s.what().to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn auto_takes_the_first_that_applies() {
        let no_imds = || false;
        let all = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
            ("IDENTITY_HEADER", "h"),
        ]);
        assert!(what(choose(&options(Kind::Auto), &all, &no_imds)).contains("AZURE_CLIENT_SECRET"));
        let workload = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert!(
            what(choose(&options(Kind::Auto), &workload, &no_imds)).contains("workload identity")
        );
        let app_service = env_of(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
            ("IDENTITY_HEADER", "h"),
        ]);
        assert!(what(choose(&options(Kind::Auto), &app_service, &no_imds))
            .contains("http://127.0.0.1:1/token"));
        let none = env_of(&[]);
        assert!(what(choose(&options(Kind::Auto), &none, &|| true)).contains("instance metadata"));
        assert_eq!(
            what(choose(&options(Kind::Auto), &none, &no_imds)),
            "the Azure CLI"
        );
    }

    #[test]
    fn named_sources_say_what_they_need() {
        let none = env_of(&[]);
        let no_imds = || false;
        assert!(what(choose(&options(Kind::Environment), &none, &no_imds))
            .contains("needs AZURE_TENANT_ID"));
        assert!(
            what(choose(&options(Kind::WorkloadIdentity), &none, &no_imds))
                .contains("needs AZURE_FEDERATED_TOKEN_FILE")
        );
        assert!(what(choose(&options(Kind::Command), &none, &no_imds))
            .contains("needs --token-command"));
        let mut o = options(Kind::AzureCli);
        o.command = Some("x".into());
        assert!(what(choose(&o, &none, &no_imds)).contains("goes with --token-source command"));
        let mut o = options(Kind::ClientCredentials);
        o.token_endpoint = Some("https://idp.example/token".into());
        assert!(what(choose(&o, &none, &no_imds)).contains("needs --client-id"));
        let o = options(Kind::ClientCredentials);
        assert!(what(choose(&o, &none, &no_imds)).contains("--token-endpoint"));
        assert_eq!(
            without_userinfo("https://u:p@idp.example/token?x=@"),
            "https://idp.example/token?x=@"
        );
    }

    #[test]
    fn managed_identity_requests_name_the_identity() {
        let app_service = env_of(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("AZURE_CLIENT_ID", "8f0c"),
        ]);
        let Source::Endpoint {
            credential,
            resource,
            ..
        } = choose(&options(Kind::ManagedIdentity), &app_service, &|| false).unwrap()
        else {
            panic!("an endpoint");
        };
        assert_eq!(resource, "https://ossrdbms-aad.database.windows.net");
        assert_eq!(
            credential().unwrap(),
            Credential::AppService {
                endpoint: "http://127.0.0.1:41741/msi/token?client_id=8f0c".into(),
                header: "h".into()
            }
        );
    }
}
