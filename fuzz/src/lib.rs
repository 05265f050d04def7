//! What the fuzz targets share: a fixed key set (the core's test keys), a policy, a clock.

use pgaadauth_core::config::Alg;
use pgaadauth_core::jwks::{parse_jwks, PublicKey};
use pgaadauth_core::token::Policy;

pub const NOW: i64 = 1_900_000_000;
pub const ISS: &str = "https://sts.windows.net/11111111-2222-3333-4444-555555555555/";
pub const AUD: &str = "https://ossrdbms-aad.database.windows.net";
pub const TID: &str = "11111111-2222-3333-4444-555555555555";
pub const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
pub const EC1_PEM: &str = include_str!("../../crates/core/testdata/ec1.pem");

pub fn keys() -> Vec<PublicKey> {
    let jwks = format!(
        "{{\"keys\":[{},{}]}}",
        include_str!("../../crates/core/testdata/rsa1.jwk.json"),
        include_str!("../../crates/core/testdata/ec1.jwk.json")
    );
    parse_jwks(jwks.as_bytes())
        .expect("the test keys parse")
        .keys
}

pub fn policy() -> Policy {
    Policy {
        issuers: vec![ISS.into()],
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        principal_claim: "oid".into(),
        clock_skew: 300,
        tenant_id: Some(TID.into()),
    }
}
