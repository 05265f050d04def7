//! Keys over HTTPS, as in production: the provider's certificate is trusted through
//! pgaadauth.ca_file; a certificate the server does not trust is a failed refresh that keeps the
//! last good keys.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, fixture_path, mint, Idp, RSA1, TENANT};
use std::time::Duration;

const OID: &str = "5c5c5c5c-1111-4222-8333-444455556666";

#[test]
fn https_provider_through_ca_file_and_untrusted_certificate_keeps_keys() {
    let idp = Idp::start_tls(&[&RSA1]);
    assert!(idp.base().starts_with("https://"));
    let pg = Cluster::start(
        "tls",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.ca_file", fixture_path("ca.pem")),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('tina', '{OID}', 'user', false, false)"
    ));
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("tina", &token)
            .is_ok()),
        "{}",
        pg.log()
    );

    // A CA that did not sign the provider's certificate: the refresh fails, the keys stay.
    pg.set(&[("pgaadauth.ca_file", &fixture_path("other-ca.pem"))]);
    // (Once, on a fresh clone under PostgreSQL 18, this found 0 keys cached: the server log
    // comes with a failure, to tell a lost key table from a restarted server.)
    assert_eq!(
        pg.sql("SELECT pgaadauth_refresh_jwks()"),
        "1 signing keys cached; 0 of 1 key sources refreshed",
        "{}",
        pg.log()
    );
    let error = pg.sql("SELECT last_error FROM pgaadauth_jwks_status()");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(
        pg.connect("tina", &token).is_ok(),
        "the last good key stays"
    );

    // An unreadable ca_file is named in the error.
    pg.set(&[("pgaadauth.ca_file", "/nonexistent/ca.pem")]);
    pg.sql("SELECT pgaadauth_refresh_jwks()");
    let error = pg.sql("SELECT last_error FROM pgaadauth_jwks_status()");
    assert!(
        error.contains("could not read pgaadauth.ca_file \"/nonexistent/ca.pem\""),
        "{error}"
    );

    // Plain http is refused unless allowed.
    pg.set(&[
        ("pgaadauth.ca_file", &fixture_path("ca.pem")),
        ("pgaadauth.jwks_uri", "http://127.0.0.1:9/keys"),
    ]);
    pg.sql("SELECT pgaadauth_refresh_jwks()");
    let error =
        pg.sql("SELECT string_agg(coalesce(last_error, ''), ';') FROM pgaadauth_jwks_status()");
    assert!(
        error.contains("set pgaadauth.allow_http to permit it"),
        "{error}"
    );
}
