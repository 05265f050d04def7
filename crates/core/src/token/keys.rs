//! Which cached signing keys may verify a token: by kid, by the issuer their source serves.

use super::{jws::*, reject::*};
use crate::config::Alg;
use crate::jwks::PublicKey;

/// A cached signing key and the issuer its source serves (`None`: every accepted issuer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedKey {
    pub key: PublicKey,
    pub issuer: Option<String>,
    /// Seconds its source's refreshes have failed, when that is beyond `max_stale`.
    pub expired: Option<i64>,
}

/// Where the validator finds the signing keys named by a token's `kid`: every cached key with
/// that kid, whatever its source (two issuers may publish the same kid), or
/// [`Reject::UnknownKid`] / [`Reject::KeysExpired`] (the latter carried by the key).
pub trait KeyLookup {
    fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject>;
}

impl KeyLookup for [PublicKey] {
    fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
        let found: Vec<CachedKey> = self
            .iter()
            .filter(|k| k.kid == kid)
            .map(|k| CachedKey {
                key: k.clone(),
                issuer: None,
                expired: None,
            })
            .collect();
        if found.is_empty() {
            return Err(Reject::UnknownKid(kid.into()));
        }
        Ok(found)
    }
}

/// The keys named by `kid` that may verify a token of issuer `iss`: those of sources serving
/// exactly `iss` first, then those of sources serving every accepted issuer. Keys of other
/// issuers are never used, so an issuer that publishes a colliding kid cannot lock out
/// another one.
pub(super) fn keys_for_issuer<K: KeyLookup + ?Sized>(
    keys: &K,
    kid: &str,
    iss: &str,
) -> Result<Vec<CachedKey>, Reject> {
    let all = keys.keys(kid)?;
    let mut usable: Vec<CachedKey> = all
        .iter()
        .filter(|k| k.issuer.as_deref() == Some(iss))
        .cloned()
        .collect();
    usable.extend(all.iter().filter(|k| k.issuer.is_none()).cloned());
    if usable.is_empty() {
        return Err(Reject::IssuerNotServedByKey {
            iss: iss.into(),
            kid: kid.into(),
            served: all[0].issuer.clone().unwrap_or_default(),
        });
    }
    // A key whose source has failed beyond max_stale counts only when nothing else is left.
    if let Some(failing_for) = usable
        .iter()
        .map(|k| k.expired)
        .all(|e| e.is_some())
        .then(|| usable.iter().filter_map(|k| k.expired).min().unwrap_or(0))
    {
        return Err(Reject::KeysExpired {
            kid: kid.into(),
            failing_for,
        });
    }
    usable.retain(|k| k.expired.is_none());
    Ok(usable)
}

/// Whether `key` verifies `parts` signed with `alg`: the first reason it does not, else Ok.
pub(super) fn verify_with(
    parts: &Parts<'_>,
    key: &PublicKey,
    alg: Alg,
    kid: &str,
) -> Result<(), Reject> {
    if !key.material.fits(alg) {
        return Err(Reject::AlgKeyMismatch {
            alg,
            kid: kid.into(),
            kty: key.material.kty(),
        });
    }
    if let Some(key_alg) = key.alg.filter(|a| *a != alg) {
        return Err(Reject::AlgNotKeyAlg {
            alg,
            kid: kid.into(),
            key_alg,
        });
    }
    if !signature_ok(parts, key, alg) {
        return Err(Reject::BadSignature(kid.into()));
    }
    Ok(())
}
