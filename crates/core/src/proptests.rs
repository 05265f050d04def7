//! Property-based tests of the pure parsers and the validator: they never panic, never accept
//! a token that a cached key did not sign, and canonical forms round-trip.
//!
//! Cases per property: `PGAADAUTH_PROPTEST_CASES` (default 1000, a few thousand over all the
//! properties in CI); the long run sets it to 100000 (see docs/development.md, "Tests").

use crate::config::Alg;
use crate::jwks::{parse_discovery, parse_jwks, PublicKey};
use crate::label::Label;
use crate::token::{validate, NoDirectory, Policy};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

const RSA1_PEM: &str = include_str!("../testdata/rsa1.pem");
const RSA2_PEM: &str = include_str!("../testdata/rsa2.pem");
const RSA1_JWK: &str = include_str!("../testdata/rsa1.jwk.json");
const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const ISS: &str = "https://issuer.example/";
const AUD: &str = "api://pg";
const NOW: i64 = 1_900_000_000;

fn cases() -> u32 {
    std::env::var("PGAADAUTH_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn cached() -> Vec<PublicKey> {
    parse_jwks(format!("{{\"keys\":[{RSA1_JWK}]}}").as_bytes())
        .unwrap()
        .keys
}

fn policy() -> Policy {
    Policy {
        issuers: vec![ISS.into()],
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        principal_claim: "oid".into(),
        clock_skew: 300,
        tenant_id: None,
    }
}

fn label() -> Label {
    Label::parse(&format!("aadauth,oid={OID},type=user")).unwrap()
}

fn sign(pem: &str, kid: &str, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn good_claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "exp": NOW + 600, "iat": NOW - 5, "oid": OID})
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Claims close to valid ones: each member kept, dropped or replaced by anything.
fn near_claims() -> impl Strategy<Value = Value> {
    let names = [
        "iss", "aud", "exp", "nbf", "iat", "oid", "tid", "groups", "amr",
    ];
    prop::collection::vec((0u8..3, any_json()), names.len()).prop_map(move |choices| {
        let base = good_claims();
        let mut out = serde_json::Map::new();
        for (name, (choice, v)) in names.iter().zip(choices) {
            match (choice, base.get(*name)) {
                (0, Some(keep)) => {
                    out.insert(name.to_string(), keep.clone());
                }
                (1, _) => {}
                _ => {
                    out.insert(name.to_string(), v);
                }
            }
        }
        Value::Object(out)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validator_never_panics_on_any_text(token in ".{0,300}") {
        let _ = validate(&token, cached().as_slice(), &NoDirectory, &policy(), &label(), NOW);
    }

    #[test]
    fn validator_never_panics_on_any_json_parts(header in any_json(), claims in any_json(), sig in "[A-Za-z0-9_-]{0,64}") {
        let token = format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let _ = validate(&token, cached().as_slice(), &NoDirectory, &policy(), &label(), NOW);
    }

    /// Signed by a key that is not cached, under the cached key's kid: never accepted.
    #[test]
    fn a_token_signed_by_another_key_is_never_accepted(claims in near_claims()) {
        let token = sign(RSA2_PEM, "rsa1", &claims);
        prop_assert!(validate(&token, cached().as_slice(), &NoDirectory, &policy(), &label(), NOW).is_err());
    }

    /// A valid token with any one byte changed is refused (unless the change is a no-op).
    #[test]
    fn a_tampered_token_is_never_accepted(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let token = sign(RSA1_PEM, "rsa1", &good_claims());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(tampered != token);
        let verdict = validate(&tampered, cached().as_slice(), &NoDirectory, &policy(), &label(), NOW);
        // base64url's last character may carry unused bits: the same bytes decode, and the
        // signature over the same signed input still holds. Anything else must be refused.
        if let Ok(v) = verdict {
            let same = |a: &str, b: &str| URL_SAFE_NO_PAD.decode(a).ok().zip(URL_SAFE_NO_PAD.decode(b).ok()).is_some_and(|(x, y)| x == y);
            let (t, o): (Vec<&str>, Vec<&str>) = (tampered.split('.').collect(), token.split('.').collect());
            prop_assert!(t.len() == 3 && same(t[0], o[0]) && same(t[1], o[1]) && same(t[2], o[2]), "accepted {v:?}");
        }
    }

    /// Claims near valid ones, signed by the cached key: accepted only when every rule holds.
    #[test]
    fn near_valid_claims_are_accepted_only_when_valid(claims in near_claims()) {
        let token = sign(RSA1_PEM, "rsa1", &claims);
        let verdict = validate(&token, cached().as_slice(), &NoDirectory, &policy(), &label(), NOW);
        if verdict.is_ok() {
            prop_assert_eq!(claims.get("iss"), Some(&json!(ISS)));
            prop_assert_eq!(claims.get("oid"), Some(&json!(OID)));
            let exp = claims.get("exp").and_then(Value::as_f64);
            prop_assert!(exp.is_some_and(|e| e >= (NOW - 300) as f64));
        }
    }

    #[test]
    fn label_parser_never_panics_and_canonical_forms_round_trip(text in "(aadauth)?[a-z=,0-9 -]{0,80}") {
        if let Ok(l) = Label::parse(&text) {
            let canonical = l.to_string();
            prop_assert_eq!(Label::parse(&canonical).unwrap(), l);
        }
    }

    #[test]
    fn generated_labels_round_trip(
        oid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        kind in prop::sample::select(vec!["user", "group", "service"]),
        tid in prop::option::of("[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"),
        admin in any::<bool>(),
        mfa in any::<bool>(),
        synced in any::<bool>(),
    ) {
        let mut text = format!("aadauth,oid={},type={kind}", oid.to_uppercase());
        if let Some(t) = &tid { text.push_str(&format!(",tid={t}")); }
        if admin { text.push_str(",admin"); }
        if mfa { text.push_str(",mfa"); }
        if synced { text.push_str(",synced"); }
        let l = Label::parse(&text).unwrap();
        prop_assert_eq!(&l.oid, &oid);
        prop_assert_eq!(l.tid.clone(), tid.map(|t| t.to_lowercase()));
        prop_assert_eq!((l.admin, l.mfa, l.synced), (admin, mfa, synced));
        prop_assert_eq!(Label::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn jwks_and_discovery_parsers_never_panic(doc in any_json(), raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_jwks(doc.to_string().as_bytes());
        let _ = parse_jwks(&raw);
        let _ = parse_jwks(json!({"keys": [doc.clone()]}).to_string().as_bytes());
        let _ = parse_discovery(doc.to_string().as_bytes(), ISS);
        let _ = parse_discovery(&raw, ISS);
    }

    #[test]
    fn directory_answer_parsers_never_panic(doc in any_json(), status in prop::sample::select(vec![200u16, 400, 401, 404, 429, 500]), raw in prop::collection::vec(any::<u8>(), 0..200)) {
        for body in [doc.to_string().into_bytes(), raw.clone(), json!({"value": doc.clone()}).to_string().into_bytes()] {
            let _ = crate::directory::parse_token_response(&body);
            let _ = crate::directory::parse_lookup(status, &body);
            let _ = crate::directory::parse_membership(status, &body, OID);
        }
    }
}
