//! Parsing of JWKS and OpenID discovery documents into public keys (pure, no pgrx).

use crate::config::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Largest RSA modulus accepted: 4096 bits.
pub const MAX_RSA_MODULUS: usize = 512;
/// Smallest RSA modulus accepted: 2048 bits.
pub const MIN_RSA_MODULUS: usize = 256;
/// Largest RSA public exponent accepted, in bytes.
pub const MAX_RSA_EXPONENT: usize = 8;
/// Longest `kid` kept.
pub const MAX_KID: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// Public key material, decoded once when the key set is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

impl KeyMaterial {
    pub fn kty(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec {
                curve: Curve::P256, ..
            } => "EC P-256",
            KeyMaterial::Ec {
                curve: Curve::P384, ..
            } => "EC P-384",
        }
    }

    /// Whether `alg` can be verified with this key.
    pub fn fits(&self, alg: Alg) -> bool {
        match self {
            KeyMaterial::Rsa { .. } => matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyMaterial::Ec { curve, .. } => {
                matches!(
                    (curve, alg),
                    (Curve::P256, Alg::ES256) | (Curve::P384, Alg::ES384)
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// The JWK's own `alg`, when it names one: tokens must then use exactly that.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

/// A parsed key set: the usable keys, and one line per key that was skipped and why.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
    pub skipped: Vec<String>,
}

/// Parse a JWKS document (`{"keys": [...]}`).
pub fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("key set is not valid JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("key set has no \"keys\" array")?;
    let mut set = KeySet::default();
    for (i, jwk) in keys.iter().enumerate() {
        match parse_jwk(jwk) {
            Ok(k) => set.keys.push(k),
            Err(why) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                set.skipped.push(format!(
                    "key {i} (kid \"{}\"): {why}",
                    crate::log_text::log_safe(kid)
                ))
            }
        }
    }
    if set.keys.is_empty() {
        return Err(format!(
            "key set has no usable key ({} skipped)",
            set.skipped.len()
        ));
    }
    Ok(set)
}

fn parse_jwk(jwk: &Value) -> Result<PublicKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = field("kid").ok_or("no kid")?;
    if kid.is_empty() || kid.len() > MAX_KID {
        return Err(format!("kid must be 1 to {MAX_KID} bytes long"));
    }
    if let Some(u) = field("use") {
        if u != "sig" {
            return Err(format!(
                "use is \"{}\", not \"sig\"",
                crate::log_text::log_safe(u)
            ));
        }
    }
    let alg =
        match field("alg") {
            None => None,
            Some(a) => Some(Alg::parse(a).ok_or_else(|| {
                format!("alg \"{}\" is not supported", crate::log_text::log_safe(a))
            })?),
        };
    let material = match field("kty") {
        Some("RSA") => {
            let n = strip_leading_zeros(b64(field("n").ok_or("RSA key without n")?, "n")?);
            let e = strip_leading_zeros(b64(field("e").ok_or("RSA key without e")?, "e")?);
            if n.len() < MIN_RSA_MODULUS || n.len() > MAX_RSA_MODULUS {
                return Err(format!(
                    "RSA modulus of {} bits is outside 2048 to 4096 bits",
                    n.len() * 8
                ));
            }
            if e.is_empty() || e.len() > MAX_RSA_EXPONENT {
                return Err("RSA exponent is out of range".into());
            }
            KeyMaterial::Rsa { n, e }
        }
        Some("EC") => {
            let curve = match field("crv") {
                Some("P-256") => Curve::P256,
                Some("P-384") => Curve::P384,
                other => {
                    return Err(format!(
                        "curve \"{}\" is not supported",
                        crate::log_text::log_safe(other.unwrap_or(""))
                    ))
                }
            };
            let x = b64(field("x").ok_or("EC key without x")?, "x")?;
            let y = b64(field("y").ok_or("EC key without y")?, "y")?;
            let len = curve.coordinate_len();
            if x.len() != len || y.len() != len {
                return Err("EC coordinates have the wrong length for the curve".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::Ec { curve, point }
        }
        Some(other) => {
            return Err(format!(
                "key type \"{}\" is not supported",
                crate::log_text::log_safe(other)
            ))
        }
        None => return Err("no kty".into()),
    };
    if let Some(a) = alg {
        if !material.fits(a) {
            return Err(format!("alg {a} does not fit a {} key", material.kty()));
        }
    }
    Ok(PublicKey {
        kid: kid.to_string(),
        alg,
        material,
    })
}

fn b64(s: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("{name} is not base64url"))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

/// From an OpenID discovery document: its `jwks_uri`, after checking that the document is
/// about the issuer we asked for (OpenID Connect Discovery 1.0, section 4.3).
pub fn parse_discovery(body: &[u8], expected_issuer: &str) -> Result<String, String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("discovery document is not valid JSON: {e}"))?;
    let issuer = doc
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("discovery document has no \"issuer\"")?;
    if issuer.trim_end_matches('/') != expected_issuer.trim_end_matches('/') {
        return Err(format!(
            "discovery document names issuer \"{}\", not \"{expected_issuer}\"",
            crate::log_text::log_safe(issuer)
        ));
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| "discovery document has no \"jwks_uri\"".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The public half of pgrx-tests/fixtures/rsa1.pem, as its JWK.
    pub const RSA1_JWK: &str = include_str!("../testdata/rsa1.jwk.json");
    pub const RSA2_JWK: &str = include_str!("../testdata/rsa2.jwk.json");
    pub const EC1_JWK: &str = include_str!("../testdata/ec1.jwk.json");

    pub fn jwks_of(jwks: &[&str]) -> String {
        format!("{{\"keys\":[{}]}}", jwks.join(","))
    }

    #[test]
    fn parses_rsa_and_ec_keys() {
        let set = parse_jwks(jwks_of(&[RSA1_JWK, EC1_JWK]).as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 2, "skipped: {:?}", set.skipped);
        assert!(
            matches!(&set.keys[0].material, KeyMaterial::Rsa { n, e } if n.len() == 256 && e == &[1, 0, 1])
        );
        assert!(
            matches!(&set.keys[1].material, KeyMaterial::Ec { curve: Curve::P256, point } if point.len() == 65)
        );
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let hmac = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        let enc = RSA1_JWK.replace("\"use\":\"sig\"", "\"use\":\"enc\"");
        let small = r#"{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}"#;
        let set = parse_jwks(jwks_of(&[hmac, &enc, small, RSA2_JWK]).as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 3);
        assert!(set.skipped[0].contains("\"oct\" is not supported"));
        assert!(set.skipped[1].contains("not \"sig\""));
        assert!(set.skipped[2].contains("outside 2048 to 4096 bits"));
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(parse_jwks(b"<html>")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse_jwks(b"{}").unwrap_err().contains("no \"keys\""));
        assert!(parse_jwks(br#"{"keys":[]}"#)
            .unwrap_err()
            .contains("no usable key"));
    }

    #[test]
    fn discovery() {
        let doc = br#"{"issuer":"https://idp.example/t/","jwks_uri":"https://idp.example/keys"}"#;
        assert_eq!(
            parse_discovery(doc, "https://idp.example/t").unwrap(),
            "https://idp.example/keys"
        );
        assert!(parse_discovery(doc, "https://evil.example/t")
            .unwrap_err()
            .contains("names issuer"));
        assert!(parse_discovery(
            br#"{"issuer":"https://idp.example/t"}"#,
            "https://idp.example/t"
        )
        .is_err());
    }
}
