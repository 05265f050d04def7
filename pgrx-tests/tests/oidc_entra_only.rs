//! A generic OpenID Connect issuer found through discovery, with pgaadauth.password_auth off
//! (Entra-only login on pgaadauth lines), then turned on again with a reload.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1};
use postgres::error::SqlState;
use std::time::Duration;

const OID: &str = "0b0b0b0b-1111-4222-8333-444455556666";

#[test]
fn discovery_issuer_and_password_auth_off_then_on() {
    let idp = Idp::start(&[&RSA1]);
    let issuer = format!("{}/realms/test", idp.base());
    let pg = Cluster::start(
        "oidc",
        &[
            ("pgaadauth.issuers", issuer.clone()),
            (
                "pgaadauth.audiences",
                "api://pg, https://ossrdbms-aad.database.windows.net".into(),
            ),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.password_auth", "off".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('svc-app', '{OID}', 'service', false, false)"
    ));
    pg.sql("CREATE ROLE judy LOGIN PASSWORD 'judy-secret'");

    // Keys come through discovery of the configured issuer.
    let mut c = claims(&issuer, OID);
    c["aud"] = serde_json::json!("api://pg");
    let token = mint(&RSA1, &c);
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("svc-app", &token)
            .is_ok()),
        "{}",
        pg.log()
    );
    let requests = idp.requests();
    assert!(
        requests.contains(&"/realms/test/.well-known/openid-configuration".to_string())
            && requests.contains(&"/realms/test/keys".to_string()),
        "{requests:?}"
    );

    // An Entra-issued token is not from an accepted issuer here.
    let entra = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    let err = pg.connect("svc-app", &entra).err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    assert!(pg
        .failure_detail("svc-app")
        .unwrap()
        .contains("is not an accepted issuer"));

    // password_auth off: even the right password of an unlabelled role is refused.
    let err = pg.connect("judy", "judy-secret").err().expect("refused");
    assert_eq!(
        err.as_db_error().unwrap().code(),
        &SqlState::INVALID_PASSWORD
    );
    let detail = pg.failure_detail("judy").unwrap();
    assert!(
        detail.contains("Role \"judy\" has no pgaadauth label and pgaadauth.password_auth is off"),
        "{detail}"
    );
    let (ok, out) = pg.psql_login("judy", Some("judy-secret"), "SELECT 1");
    assert!(
        !ok && out.contains("password authentication failed for user \"judy\""),
        "{out}"
    );

    // Turned on with a reload, the same password works (by SCRAM).
    pg.set(&[("pgaadauth.password_auth", "on")]);
    let mut client = pg
        .connect("judy", "judy-secret")
        .expect("SCRAM login after reload");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(user, "judy");
    // And the service principal still logs in with its token.
    assert!(pg.connect("svc-app", &token).is_ok());
}
