//! The start-up self-test of the signature library.

use serde_json::Value;

/// before it forks, instead of in every login. True when both verify.
pub fn warm_up() -> bool {
    let v: Value = serde_json::from_str(include_str!("../warm_up.json")).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let message = b"pgaadauth warm-up";
    let rsa = jsonwebtoken::DecodingKey::from_rsa_components(text("n"), text("e"));
    let ec = jsonwebtoken::DecodingKey::from_ec_components(text("x"), text("y"));
    let verify = |sig: &str, key: Result<jsonwebtoken::DecodingKey, _>, alg| {
        key.ok()
            .and_then(|k| jsonwebtoken::crypto::verify(sig, message, &k, alg).ok())
            .unwrap_or(false)
    };
    let rs = verify(text("rs_sig"), rsa, jsonwebtoken::Algorithm::RS256);
    let es = verify(text("es_sig"), ec, jsonwebtoken::Algorithm::ES256);
    rs && es
}
