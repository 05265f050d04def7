//! Microbenchmark of the pure validator (run by bench/validator.sh in release mode):
//! p50 and p99 of `validate` for a ~2.5 KB RS256 token and an ES256 token, and of its parts.

use crate::config::Alg;
use crate::jwks::parse_jwks;
use crate::label::Label;
use crate::token::{validate, NoDirectory, Policy};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::Instant;

const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const ISS: &str = "https://login.microsoftonline.com/t/v2.0";
const AUD: &str = "https://ossrdbms-aad.database.windows.net";

fn percentiles(mut ns: Vec<u128>) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn measure(name: &str, iterations: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..iterations / 10 {
        f();
    }
    let times: Vec<u128> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos()
        })
        .collect();
    let (p50, p99) = percentiles(times);
    println!("{name:<44} p50 {p50:>7.1} µs   p99 {p99:>7.1} µs");
    (p50, p99)
}

#[test]
#[ignore = "a benchmark: bench/validator.sh runs it in release mode"]
fn validator_benchmark() {
    let jwks = format!(
        "{{\"keys\":[{},{}]}}",
        include_str!("../testdata/rsa1.jwk.json"),
        include_str!("../testdata/ec1.jwk.json")
    );
    let keys = parse_jwks(jwks.as_bytes()).unwrap().keys;
    let policy = Policy {
        issuers: vec![ISS.into()],
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        principal_claim: "oid".into(),
        clock_skew: 300,
        tenant_id: None,
    };
    let label = Label::parse(&format!("aadauth,oid={OID},type=user")).unwrap();
    let now = 1_900_000_000;
    let claims = json!({"iss": ISS, "aud": AUD, "exp": now + 3600, "iat": now, "nbf": now, "oid": OID,
                        "upn": "alice@contoso.com", "groups_padding": "g".repeat(1350)});
    let mint = |alg: Algorithm, kid: &str, key: EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, &claims, &key).unwrap()
    };
    let rs = mint(
        Algorithm::RS256,
        "rsa1",
        EncodingKey::from_rsa_pem(include_bytes!("../testdata/rsa1.pem")).unwrap(),
    );
    let es = mint(
        Algorithm::ES256,
        "ec1",
        EncodingKey::from_ec_pem(include_bytes!("../testdata/ec1.pem")).unwrap(),
    );
    println!(
        "token sizes: RS256 {} bytes, ES256 {} bytes",
        rs.len(),
        es.len()
    );
    assert!(rs.len() >= 2500);
    let n: usize = std::env::var("PGAADAUTH_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (rs50, _) = measure("validate, RS256-2048, 2.5 KB token", n, || {
        assert!(validate(&rs, keys.as_slice(), &NoDirectory, &policy, &label, now).is_ok())
    });
    let (es50, _) = measure("validate, ES256 P-256", n, || {
        assert!(validate(&es, keys.as_slice(), &NoDirectory, &policy, &label, now).is_ok())
    });
    // Its parts, to see where the time goes.
    let sig = rs.rsplit('.').next().unwrap();
    let signed = &rs[..rs.len() - sig.len() - 1];
    let crate::jwks::KeyMaterial::Rsa { n: modulus, e } = &keys[0].material else {
        unreachable!()
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_raw_components(modulus, e);
    measure("  of which: RS256 signature check alone", n, || {
        assert!(
            jsonwebtoken::crypto::verify(sig, signed.as_bytes(), &key, Algorithm::RS256).unwrap()
        )
    });
    let es_sig = es.rsplit('.').next().unwrap();
    let es_signed = &es[..es.len() - es_sig.len() - 1];
    let crate::jwks::KeyMaterial::Ec { point, .. } = &keys[1].material else {
        unreachable!()
    };
    let ec_key = jsonwebtoken::DecodingKey::from_ec_der(point);
    measure("  of which: ES256 signature check alone", n, || {
        assert!(jsonwebtoken::crypto::verify(
            es_sig,
            es_signed.as_bytes(),
            &ec_key,
            Algorithm::ES256
        )
        .unwrap())
    });
    {
        use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        use base64::Engine;
        let raw_sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(es_sig)
            .unwrap();
        let unparsed = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.clone());
        let parsed = unparsed.parse().unwrap();
        measure("  aws-lc: ES256 parse key", n, || {
            assert!(unparsed.parse().is_ok())
        });
        measure("  aws-lc: ES256 verify, key parsed before", n, || {
            assert!(parsed.verify_sig(es_signed.as_bytes(), &raw_sig).is_ok())
        });
    }
    measure("  of which: claims base64 + JSON", n, || {
        assert!(crate::audit::unverified_claims(&rs).is_some())
    });
    let verdict = |p50: f64| if p50 <= 50.0 { "met" } else { "missed" };
    println!(
        "goal, validation <= 50 µs at p50: RS256 {}, ES256 {}",
        verdict(rs50),
        verdict(es50)
    );
}
