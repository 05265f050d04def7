//! Tests of `config.rs`.

use super::*;

const TID: &str = "11111111-2222-3333-4444-555555555555";

fn settings(tenant: &str, issuers: &str, jwks: &str) -> IssuerSettings {
    IssuerSettings {
        tenant_id: tenant.into(),
        authority_host: "https://login.microsoftonline.com".into(),
        issuers: issuers.into(),
        jwks_uri: jwks.into(),
    }
}

#[test]
fn only_the_instance_metadata_service_is_plain_http_by_design() {
    let imds = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01";
    assert!(is_instance_metadata(imds));
    assert!(is_instance_metadata("http://169.254.169.254:80/metadata"));
    for other in [
        "https://169.254.169.254/metadata",
        "http://169.254.169.254:8080/metadata",
        "http://169.254.169.254.evil.example/metadata",
        "http://evil.example/169.254.169.254",
        "http://user@169.254.169.254/metadata",
        "http://127.0.0.1/msi/token",
    ] {
        assert!(!is_instance_metadata(other), "{other}");
    }
}

#[test]
fn lists_are_trimmed() {
    assert_eq!(split_list(" a, ,b ,"), vec!["a", "b"]);
    assert!(split_list("  ").is_empty());
}

#[test]
fn algorithms() {
    assert_eq!(
        parse_algorithms("rs256, ES256").unwrap(),
        vec![Alg::RS256, Alg::ES256]
    );
    assert!(parse_algorithms("HS256").unwrap_err().contains("HS256"));
    assert!(parse_algorithms("none").is_err());
    assert!(parse_algorithms(" , ").is_err());
}

#[test]
fn urls() {
    assert!(check_url("https://login.example.com/keys", false).is_ok());
    assert!(check_url("http://127.0.0.1:8080/keys", false)
        .unwrap_err()
        .contains("allow_http"));
    assert!(check_url("http://127.0.0.1:8080/keys", true).is_ok());
    assert!(check_url("ftp://x", true).is_err());
    assert!(check_url("https://", true).is_err());
}

#[test]
fn tenant_derives_issuers_and_keys() {
    let s = settings(TID, "", "");
    assert_eq!(
        s.accepted_issuers(),
        vec![
            format!("https://sts.windows.net/{TID}/"),
            format!("https://login.microsoftonline.com/{TID}/v2.0"),
        ]
    );
    assert_eq!(
        s.key_sources(),
        vec![KeySource::Jwks(format!(
            "https://login.microsoftonline.com/{TID}/discovery/v2.0/keys"
        ))]
    );
}

#[test]
fn explicit_issuers_use_discovery_and_jwks_uri_wins() {
    let s = settings(TID, "https://idp.example/realms/a, https://b.example/", "");
    assert_eq!(
        s.accepted_issuers(),
        vec!["https://idp.example/realms/a", "https://b.example/"]
    );
    assert_eq!(
        s.key_sources()[1].first_url(),
        "https://b.example/.well-known/openid-configuration"
    );
    let s = settings("", "https://idp.example", "https://idp.example/keys");
    assert_eq!(
        s.key_sources(),
        vec![KeySource::Jwks("https://idp.example/keys".into())]
    );
}

#[test]
fn startup_summary_and_problems() {
    let v = StartupView {
        issuers: settings(TID, "", ""),
        audiences: "https://ossrdbms-aad.database.windows.net".into(),
        password_auth: true,
        ..Default::default()
    };
    assert_eq!(
        v.summary(),
        format!("pgaadauth: issuers: https://sts.windows.net/{TID}/, https://login.microsoftonline.com/{TID}/v2.0; \
                 keys from: https://login.microsoftonline.com/{TID}/discovery/v2.0/keys; \
                 audiences: https://ossrdbms-aad.database.windows.net; password_auth: on; directory: none")
    );
    assert!(v.problems(&|_| None).is_empty());

    let bad = StartupView {
        issuers: settings("", "", "http://idp.local/keys"),
        ca_file: "/etc/ca.pem".into(),
        client_id: "app".into(),
        client_secret_file: "/etc/secret".into(),
        graph_endpoint: "https://graph.microsoft.com".into(),
        ..Default::default()
    };
    let problems = bad.problems(&|p| Some(format!("{p} is missing")));
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(problems[0].starts_with("No token issuer is configured"));
    assert!(problems[1].contains("\"http://idp.local/keys\" uses plain http"));
    assert!(problems[2]
        .contains("pgaadauth.ca_file \"/etc/ca.pem\" cannot be read: /etc/ca.pem is missing"));
    assert!(problems[3].contains("pgaadauth.client_secret_file \"/etc/secret\" cannot be read"));
    assert!(problems[4].contains("without pgaadauth.tenant_id"));
    assert!(
        !bad.summary().contains("/etc/secret"),
        "the summary names no secret file"
    );
    // A client assertion instead of a secret; both, or neither, is a problem.
    let assertion = StartupView {
        issuers: settings(TID, "", ""),
        client_id: "mi".into(),
        client_assertion_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
        graph_endpoint: "https://graph.microsoft.com".into(),
        ..Default::default()
    };
    assert!(assertion.summary().ends_with("directory: client assertion"));
    assert!(assertion.problems(&|_| None).is_empty());
    let both = StartupView {
        client_secret_file: "/etc/secret".into(),
        ..assertion.clone()
    };
    assert_eq!(
        both.problems(&|_| None),
        ["pgaadauth.client_secret_file and pgaadauth.client_assertion_file are both set: set only one."]
    );
    let neither = StartupView {
        client_assertion_file: String::new(),
        ..assertion.clone()
    };
    assert_eq!(
        neither.problems(&|_| None),
        ["pgaadauth.client_id needs pgaadauth.client_secret_file or pgaadauth.client_assertion_file."]
    );
    // The instance metadata endpoint is plain http by design: no warning for it; another plain
    // http endpoint is warned about.
    let imds = StartupView {
        issuers: settings(TID, "", ""),
        managed_identity_endpoint:
            "http://169.254.169.254/metadata/identity/oauth2/token?client_id=x".into(),
        ..Default::default()
    };
    assert!(
        imds.problems(&|_| None).is_empty(),
        "{:?}",
        imds.problems(&|_| None)
    );
    let other = StartupView {
        managed_identity_endpoint: "http://identity.local/token".into(),
        ..imds
    };
    assert!(other.problems(&|_| None)[0].contains("uses plain http"));
}

#[test]
fn nothing_configured_means_nothing_accepted() {
    let s = settings("", "", "");
    assert!(s.accepted_issuers().is_empty());
    assert!(s.key_sources().is_empty());
}
