//! The compact JWS: three base64url parts, JSON header and claims, the signature.

use super::reject::*;
use crate::config::Alg;
use crate::jwks::{KeyMaterial, PublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The three parts of a compact JWS, each checked to be non-empty base64url.
pub(super) struct Parts<'a> {
    pub(super) header: &'a str,
    pub(super) claims: &'a str,
    pub(super) signature: &'a str,
    pub(super) signed: &'a str,
}

pub(super) fn split(token: &str) -> Result<Parts<'_>, Reject> {
    let mut it = token.split('.');
    let (Some(h), Some(c), Some(sig), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Reject::NotCompactJws);
    };
    // Header and claims are checked by their base64url decoding (see `json_object`); the
    // signature part here. It may be empty (an unsecured JWS): `alg` then decides the refusal.
    let b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.is_empty() || c.is_empty() || !b64url(sig) {
        return Err(Reject::NotCompactJws);
    }
    Ok(Parts {
        header: h,
        claims: c,
        signature: sig,
        signed: &token[..h.len() + 1 + c.len()],
    })
}

/// A base64url part holding a JSON object: not base64url → not a compact JWS; not a JSON
/// object → `err`; an object (at any depth) naming a member twice → [`Reject::DuplicateMember`].
pub(super) fn json_object(
    part: &str,
    err: Reject,
    which: &'static str,
) -> Result<Map<String, Value>, Reject> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Reject::NotCompactJws)?;
    match crate::strict_json::parse_object(&bytes) {
        Ok(m) => Ok(m),
        Err(crate::strict_json::Error::Duplicate(name)) => {
            Err(Reject::DuplicateMember { part: which, name })
        }
        Err(crate::strict_json::Error::Invalid) => Err(err),
    }
}

pub(super) fn jwt_alg(alg: Alg) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Alg::RS256 => J::RS256,
        Alg::RS384 => J::RS384,
        Alg::RS512 => J::RS512,
        Alg::PS256 => J::PS256,
        Alg::PS384 => J::PS384,
        Alg::PS512 => J::PS512,
        Alg::ES256 => J::ES256,
        Alg::ES384 => J::ES384,
    }
}

pub(super) fn signature_ok(parts: &Parts<'_>, key: &PublicKey, alg: Alg) -> bool {
    let decoding = match &key.material {
        KeyMaterial::Rsa { n, e } => jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e),
        KeyMaterial::Ec { point, .. } => jsonwebtoken::DecodingKey::from_ec_der(point),
    };
    jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signed.as_bytes(),
        &decoding,
        jwt_alg(alg),
    )
    .unwrap_or(false)
}
