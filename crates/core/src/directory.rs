//! A Microsoft Graph–compatible directory client: request building and response parsing
//! (pure, no pgrx, no network). The key worker sends the requests.

use serde_json::Value;

/// An HTTP request, described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// `application/x-www-form-urlencoded` or JSON body, when there is one.
    pub body: Option<(&'static str, String)>,
    /// Plain http is fine without `pgaadauth.allow_http`: only the managed identity token
    /// request to the instance metadata service (which carries no secret).
    pub plain_http_ok: bool,
}

/// How the server proves itself to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// OAuth 2.0 client credentials of an app registration (or of a user-assigned managed
    /// identity, with a federated assertion).
    Client {
        /// The token endpoint: Entra's is [`entra_token_url`].
        token_url: String,
        client_id: String,
        proof: ClientProof,
        /// The scope asked for; `<resource>/.default` (Entra's form) when None.
        scope: Option<String>,
    },
    /// An IMDS-style managed identity endpoint.
    ManagedIdentity { endpoint: String },
    /// App Service's (and Container Apps', Functions') managed identity endpoint:
    /// `IDENTITY_ENDPOINT`, which wants `IDENTITY_HEADER` as `X-IDENTITY-HEADER`. A local,
    /// plain-http endpoint of the host.
    AppService { endpoint: String, header: String },
}

/// How the client proves itself at the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientProof {
    /// A client secret.
    Secret(String),
    /// A signed JWT another issuer gave the client (RFC 7523), e.g. Kubernetes workload
    /// identity's service account token, federated with the application or identity.
    Assertion(String),
}

/// The RFC 7523 client assertion type (`client_assertion_type`).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Percent-encoding of everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Entra's token endpoint of `tenant` under `authority_host`.
pub fn entra_token_url(authority_host: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/'),
        encode(tenant)
    )
}

/// The request for an access token to `graph` (the directory's, or any resource's).
pub fn token_request(credential: &Credential, graph_endpoint: &str) -> Request {
    let graph = graph_endpoint.trim_end_matches('/');
    match credential {
        Credential::Client {
            token_url,
            client_id,
            proof,
            scope,
        } => Request {
            method: "POST",
            url: token_url.clone(),
            headers: vec![],
            body: Some((
                "application/x-www-form-urlencoded",
                format!(
                    "grant_type=client_credentials&client_id={}&{}&scope={}",
                    encode(client_id),
                    match proof {
                        ClientProof::Secret(secret) => format!("client_secret={}", encode(secret)),
                        ClientProof::Assertion(jwt) => format!(
                            "client_assertion_type={}&client_assertion={}",
                            encode(JWT_BEARER),
                            encode(jwt)
                        ),
                    },
                    encode(scope.as_deref().unwrap_or(&format!("{graph}/.default")))
                ),
            )),
            plain_http_ok: false,
        },
        Credential::AppService { endpoint, header } => {
            let sep = if endpoint.contains('?') { '&' } else { '?' };
            Request {
                method: "GET",
                url: format!(
                    "{endpoint}{sep}api-version=2019-08-01&resource={}",
                    encode(graph)
                ),
                headers: vec![("X-IDENTITY-HEADER", header.clone())],
                body: None,
                plain_http_ok: crate::config::is_local_http(endpoint),
            }
        }
        Credential::ManagedIdentity { endpoint } => {
            let sep = if endpoint.contains('?') { '&' } else { '?' };
            Request {
                method: "GET",
                url: format!(
                    "{endpoint}{sep}api-version=2018-02-01&resource={}",
                    encode(graph)
                ),
                headers: vec![("Metadata", "true".into())],
                body: None,
                plain_http_ok: crate::config::is_instance_metadata(endpoint),
            }
        }
    }
}

/// An access token and its lifetime in seconds.
pub fn parse_token_response(body: &[u8]) -> Result<(String, i64), String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| "the token endpoint's answer is not JSON".to_string())?;
    let token = doc
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    // IMDS sends expires_in as a string. Within a day, whatever the endpoint says.
    let expires_in = match doc.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(300)
    .clamp(0, 86_400);
    Ok((token.to_string(), expires_in))
}

/// What a token endpoint's refusal says, for the error: its `error` and Entra's first
/// `error_codes` (`invalid_client (AADSTS700213)`), log-safe (and so short); None when it says
/// neither.
pub fn token_error_summary(body: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let error = doc.get("error").and_then(Value::as_str);
    let code = doc
        .get("error_codes")
        .and_then(Value::as_array)
        .and_then(|codes| codes.first())
        .and_then(Value::as_u64)
        .map(|c| format!("AADSTS{c}"));
    let text = match (error, code) {
        (Some(e), Some(c)) => format!("{e} ({c})"),
        (Some(e), None) => e.to_string(),
        (None, Some(c)) => c,
        (None, None) => return None,
    };
    Some(crate::log_text::log_safe(&text))
}

fn get(url: String, token: &str) -> Request {
    Request {
        method: "GET",
        url,
        headers: vec![("Authorization", format!("Bearer {token}"))],
        body: None,
        plain_http_ok: false,
    }
}

/// OData string literal: single quotes doubled.
fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Which directory object kinds a name is looked up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Service => "service",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Service => "service principal",
        }
    }
}

/// Requests that find `name`: a user by UPN (guests in their `#EXT#` form), groups and service
/// principals by display name.
pub fn lookup_requests(graph_endpoint: &str, name: &str, token: &str) -> Vec<(Kind, Request)> {
    let graph = graph_endpoint.trim_end_matches('/');
    let by_name = |collection: &str| {
        format!(
            "{graph}/v1.0/{collection}?$filter={}&$select=id,displayName",
            encode(&format!("displayName eq {}", odata_string(name)))
        )
    };
    let mut requests = Vec::new();
    if name.contains('@') {
        requests.push((
            Kind::User,
            get(
                format!(
                    "{graph}/v1.0/users/{}?$select=id,userPrincipalName",
                    encode(name)
                ),
                token,
            ),
        ));
    }
    requests.push((Kind::Group, get(by_name("groups"), token)));
    requests.push((Kind::Service, get(by_name("servicePrincipals"), token)));
    requests
}

/// Object ids in a lookup answer: a single object (users/{upn}) or a `value` list.
/// A 404 of a single-object lookup means "none".
pub fn parse_lookup(status: u16, body: &[u8]) -> Result<Vec<String>, String> {
    if status == 404 {
        return Ok(vec![]);
    }
    if status != 200 {
        return Err(format!("the directory answered HTTP status {status}"));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "the directory's answer is not JSON")?;
    let ids: Vec<String> = match doc.get("value") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_str).map(String::from))
            .collect(),
        _ => doc
            .get("id")
            .and_then(Value::as_str)
            .map(|id| vec![id.to_string()])
            .unwrap_or_default(),
    };
    Ok(ids)
}

/// The one object a name stands for, from the matches of each kind.
pub fn resolve(name: &str, matches: &[(Kind, Vec<String>)]) -> Result<(Kind, String), String> {
    let all: Vec<(Kind, &String)> = matches
        .iter()
        .flat_map(|(k, ids)| ids.iter().map(move |id| (*k, id)))
        .collect();
    match all.as_slice() {
        [] => Err(format!(
            "no user, group or service principal named \"{name}\" was found in the directory"
        )),
        [(kind, id)] => Ok((*kind, id.to_string())),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|(k, id)| format!("{} {id}", k.describe()))
                .collect();
            Err(format!(
                "\"{name}\" names {} directory objects ({}); use pgaadauth_create_principal_with_oid",
                several.len(),
                list.join(", ")
            ))
        }
    }
}

/// Whether `member` belongs to `group` (transitively): Graph's checkMemberGroups.
pub fn membership_request(graph_endpoint: &str, member: &str, group: &str, token: &str) -> Request {
    Request {
        method: "POST",
        url: format!(
            "{}/v1.0/directoryObjects/{}/checkMemberGroups",
            graph_endpoint.trim_end_matches('/'),
            encode(member)
        ),
        headers: vec![("Authorization", format!("Bearer {token}"))],
        body: Some((
            "application/json",
            serde_json::json!({ "groupIds": [group] }).to_string(),
        )),
        plain_http_ok: false,
    }
}

/// checkMemberGroups answers `{"value": [<ids of the asked groups the member is in>]}`.
pub fn parse_membership(status: u16, body: &[u8], group: &str) -> Result<bool, String> {
    if status == 404 {
        return Ok(false); // the member no longer exists
    }
    if status != 200 {
        return Err(format!("the directory answered HTTP status {status}"));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| "the directory's answer is not JSON")?;
    let listed = doc
        .get("value")
        .and_then(Value::as_array)
        .ok_or("the directory's answer has no \"value\" list")?;
    Ok(listed
        .iter()
        .filter_map(Value::as_str)
        .any(|g| g.eq_ignore_ascii_case(group)))
}

#[cfg(test)]
mod tests;
