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
    /// OAuth 2.0 client credentials of an app registration.
    ClientSecret {
        authority_host: String,
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// An IMDS-style managed identity endpoint.
    ManagedIdentity { endpoint: String },
}

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

/// The request for the directory's own access token.
pub fn token_request(credential: &Credential, graph_endpoint: &str) -> Request {
    let graph = graph_endpoint.trim_end_matches('/');
    match credential {
        Credential::ClientSecret {
            authority_host,
            tenant,
            client_id,
            secret,
        } => Request {
            method: "POST",
            url: format!(
                "{}/{}/oauth2/v2.0/token",
                authority_host.trim_end_matches('/'),
                encode(tenant)
            ),
            headers: vec![],
            body: Some((
                "application/x-www-form-urlencoded",
                format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    encode(client_id),
                    encode(secret),
                    encode(&format!("{graph}/.default"))
                ),
            )),
            plain_http_ok: false,
        },
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
    // IMDS sends expires_in as a string.
    let expires_in = match doc.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(300);
    Ok((token.to_string(), expires_in))
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
mod tests {
    use super::*;

    const GRAPH: &str = "https://graph.microsoft.com";

    #[test]
    fn client_credentials_token_request() {
        let c = Credential::ClientSecret {
            authority_host: "https://login.microsoftonline.com/".into(),
            tenant: "t1".into(),
            client_id: "app".into(),
            secret: "s3cr&t=".into(),
        };
        let r = token_request(&c, GRAPH);
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert_eq!(
            r.body.unwrap().1,
            "grant_type=client_credentials&client_id=app&client_secret=s3cr%26t%3D&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        );
    }

    #[test]
    fn managed_identity_token_request() {
        let c = Credential::ManagedIdentity {
            endpoint: "http://169.254.169.254/metadata/identity/oauth2/token".into(),
        };
        let r = token_request(&c, GRAPH);
        assert_eq!(r.method, "GET");
        assert!(r
            .url
            .ends_with("token?api-version=2018-02-01&resource=https%3A%2F%2Fgraph.microsoft.com"));
        assert_eq!(r.headers, vec![("Metadata", "true".to_string())]);
        assert!(
            r.plain_http_ok,
            "the instance metadata service is plain http by design"
        );
        // Any other plain-http endpoint, and every Graph request, needs pgaadauth.allow_http.
        let elsewhere = Credential::ManagedIdentity {
            endpoint: "http://127.0.0.1:40342/msi/token".into(),
        };
        assert!(!token_request(&elsewhere, GRAPH).plain_http_ok);
        let graph_on_imds = "http://169.254.169.254";
        assert!(!membership_request(graph_on_imds, "m", "g", "t").plain_http_ok);
        assert!(!lookup_requests(graph_on_imds, "a@b.example", "t")
            .iter()
            .any(|(_, r)| r.plain_http_ok));
    }

    #[test]
    fn token_responses() {
        assert_eq!(
            parse_token_response(br#"{"access_token":"abc","expires_in":3599}"#).unwrap(),
            ("abc".to_string(), 3599)
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"abc","expires_in":"86399"}"#)
                .unwrap()
                .1,
            86399
        );
        assert!(parse_token_response(br#"{"error":"invalid_client"}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }

    #[test]
    fn lookups_encode_names() {
        let r = lookup_requests(
            GRAPH,
            "bob_contoso.com#EXT#@fabrikam.onmicrosoft.com",
            "tok",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0].1.url,
            "https://graph.microsoft.com/v1.0/users/bob_contoso.com%23EXT%23%40fabrikam.onmicrosoft.com?$select=id,userPrincipalName"
        );
        assert_eq!(r[0].1.headers[0].1, "Bearer tok");
        let r = lookup_requests(GRAPH, "O'Brien's DBAs", "tok");
        assert_eq!(r.len(), 2, "no user lookup for a name without @");
        assert_eq!(
            r[0].1.url,
            "https://graph.microsoft.com/v1.0/groups?$filter=displayName%20eq%20%27O%27%27Brien%27%27s%20DBAs%27&$select=id,displayName"
        );
        assert!(r[1].1.url.contains("/v1.0/servicePrincipals?"));
    }

    #[test]
    fn lookup_answers() {
        assert_eq!(parse_lookup(404, b"{}").unwrap(), Vec::<String>::new());
        assert_eq!(parse_lookup(200, br#"{"id":"u1"}"#).unwrap(), vec!["u1"]);
        assert_eq!(
            parse_lookup(200, br#"{"value":[{"id":"g1"},{"id":"g2"}]}"#).unwrap(),
            vec!["g1", "g2"]
        );
        assert!(parse_lookup(503, b"").unwrap_err().contains("503"));
    }

    #[test]
    fn resolution() {
        assert_eq!(
            resolve(
                "x",
                &[(Kind::Group, vec!["g1".into()]), (Kind::Service, vec![])]
            )
            .unwrap(),
            (Kind::Group, "g1".to_string())
        );
        assert!(resolve("x", &[(Kind::Group, vec![])])
            .unwrap_err()
            .contains("no user, group or service principal named \"x\""));
        let e = resolve(
            "x",
            &[
                (Kind::Group, vec!["g1".into()]),
                (Kind::Service, vec!["s1".into()]),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("names 2 directory objects (group g1, service principal s1)"),
            "{e}"
        );
    }

    #[test]
    fn membership() {
        let r = membership_request(GRAPH, "u1", "g1", "tok");
        assert_eq!(
            r.url,
            "https://graph.microsoft.com/v1.0/directoryObjects/u1/checkMemberGroups"
        );
        assert_eq!(r.body.unwrap().1, r#"{"groupIds":["g1"]}"#);
        assert!(parse_membership(200, br#"{"value":["G1"]}"#, "g1").unwrap());
        assert!(!parse_membership(200, br#"{"value":[]}"#, "g1").unwrap());
        assert!(!parse_membership(404, b"", "g1").unwrap());
        assert!(parse_membership(500, b"", "g1").is_err());
    }
}
