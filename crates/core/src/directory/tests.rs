//! Tests of `directory.rs`.

use super::*;

const GRAPH: &str = "https://graph.microsoft.com";

#[test]
fn client_credentials_token_request() {
    let c = Credential::Client {
        token_url: entra_token_url("https://login.microsoftonline.com/", "t1"),
        client_id: "app".into(),
        proof: ClientProof::Secret("s3cr&t=".into()),
        scope: None,
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
fn client_assertion_token_request() {
    let c = Credential::Client {
        token_url: entra_token_url("https://login.microsoftonline.com", "t1"),
        client_id: "mi-client".into(),
        proof: ClientProof::Assertion("eyJh.eyJz.c2ln".into()),
        scope: None,
    };
    let body = token_request(&c, GRAPH).body.unwrap().1;
    assert_eq!(
        body,
        "grant_type=client_credentials&client_id=mi-client\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion=eyJh.eyJz.c2ln&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
    assert!(!body.contains("client_secret"));
    // Another provider's endpoint and scope, as given.
    let c = Credential::Client {
        token_url: "https://idp.example/oauth/token".into(),
        client_id: "c".into(),
        proof: ClientProof::Secret("s".into()),
        scope: Some("db:login".into()),
    };
    let r = token_request(&c, GRAPH);
    assert_eq!(r.url, "https://idp.example/oauth/token");
    assert!(r.body.unwrap().1.ends_with("&scope=db%3Alogin"));
}

#[test]
fn app_service_token_request() {
    let c = Credential::AppService {
        endpoint: "http://127.0.0.1:41741/msi/token".into(),
        header: "h".into(),
    };
    let r = token_request(&c, "https://ossrdbms-aad.database.windows.net");
    assert_eq!(
        r.url,
        "http://127.0.0.1:41741/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fossrdbms-aad.database.windows.net"
    );
    assert_eq!(r.headers, vec![("X-IDENTITY-HEADER", "h".to_string())]);
    assert!(r.plain_http_ok, "the host's own endpoint");
    for (url, local) in [
        ("http://localhost:8081/token", true),
        ("http://[::1]:8081/token", true),
        ("http://127.0.0.1.evil.example/token", false),
        ("http://user@127.0.0.1/token", false),
        ("https://127.0.0.1/token", false),
        ("http://10.0.0.1/token", false),
    ] {
        assert_eq!(crate::config::is_local_http(url), local, "{url}");
    }
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
    // A hostile lifetime is kept within a day (and never negative).
    assert_eq!(
        parse_token_response(br#"{"access_token":"a","expires_in":9223372036854775807}"#)
            .unwrap()
            .1,
        86_400
    );
    assert_eq!(
        parse_token_response(br#"{"access_token":"a","expires_in":"-5"}"#)
            .unwrap()
            .1,
        0
    );
    assert_eq!(
        token_error_summary(br#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found","error_codes":[700213]}"#),
        Some("invalid_client (AADSTS700213)".to_string())
    );
    assert_eq!(
        token_error_summary(br#"{"error":"bad\nline"}"#).unwrap(),
        crate::log_text::log_safe("bad\nline")
    );
    assert_eq!(token_error_summary(b"<html>"), None);
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
