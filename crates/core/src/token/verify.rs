//! Everything about a token that does not depend on the role: form, signature, issuer,
//! audience, times, the tenant setting, and a principal that is safe to log.

use super::{jws::*, keys::*, reject::*, Policy, Verified, MAX_TOKEN_LEN};
use crate::config::Alg;
use crate::label::{normalize_guid, same_id};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A NumericDate claim: absent → `None`; present but not a number → refused.
pub(super) fn numeric(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, Reject> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f.floor() as i64))
            .ok_or(Reject::TimeClaimNotNumeric(name)),
    }
}

pub(super) fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name)?.as_str()
}

/// Control characters, line and paragraph separators, and the invisible formatting characters
/// (bidirectional overrides, zero-width ones): a principal holding one could forge or disguise
/// a log line.
pub(super) fn spoofs_a_log_line(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// A token whose signature, issuer, audience, times and tenant (`pgaadauth.tenant_id`) hold,
/// and which names its principal: who it speaks for, not yet for which role.
#[derive(Clone, Debug)]
pub struct Authentic {
    pub(super) claims: Arc<Map<String, Value>>,
    /// The principal claim's value, GUIDs in canonical form.
    pub principal: String,
    pub kid: String,
    pub exp: i64,
    pub iat: Option<i64>,
}

impl Authentic {
    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Who the token speaks for, with no role's rules applied (no group).
    pub fn identity(&self) -> Verified {
        Verified {
            principal: self.principal.clone(),
            via_group: None,
            kid: self.kid.clone(),
            tid: string(&self.claims, "tid").map(String::from),
            upn: string(&self.claims, "upn")
                .or_else(|| string(&self.claims, "preferred_username"))
                .map(String::from),
            appid: string(&self.claims, "appid")
                .or_else(|| string(&self.claims, "azp"))
                .map(String::from),
            exp: self.exp,
            iat: self.iat,
            claims: self.claims.clone(),
        }
    }
}

/// Check everything about `token` that does not depend on the role: its form, signature,
/// issuer, audience, times, the tenant setting, and that it names a principal.
pub fn verify<K: KeyLookup + ?Sized>(
    token: &str,
    keys: &K,
    policy: &Policy,
    now: i64,
) -> Result<Authentic, Reject> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Reject::TooLong(token.len()));
    }
    let parts = split(token)?;
    let header = json_object(parts.header, Reject::HeaderNotJson, "header")?;
    let claims = json_object(parts.claims, Reject::ClaimsNotJson, "claims")?;
    if let Some(crit) = header.get("crit") {
        return Err(Reject::CritNotUnderstood(crit.to_string()));
    }

    // Header: type, algorithm, key.
    if let Some(typ) = header.get("typ") {
        let t = typ.as_str().unwrap_or("").to_ascii_lowercase();
        let t = t.strip_prefix("application/").unwrap_or(&t);
        if t != "jwt" && t != "at+jwt" {
            return Err(Reject::TypeNotAccepted(typ.to_string()));
        }
    }
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = match Alg::parse(alg_name) {
        Some(a) if policy.algorithms.contains(&a) => a,
        Some(_) => return Err(Reject::AlgNotAllowed(alg_name.into())),
        None => return Err(Reject::AlgNeverAccepted(alg_name.into())),
    };
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(Reject::MissingKid)?;
    // The issuer (not yet verified) only selects the keys that may verify the token; after
    // the signature it is checked like every other claim.
    let iss = string(&claims, "iss").ok_or(Reject::MissingIssuer)?;
    if !policy.issuers.iter().any(|i| i == iss) {
        return Err(Reject::IssuerNotAccepted(iss.into()));
    }
    let candidates = keys_for_issuer(keys, kid, iss)?;
    let mut verified = false;
    let mut first_failure = Reject::UnknownKid(kid.into());
    for (i, candidate) in candidates.iter().enumerate() {
        match verify_with(&parts, &candidate.key, alg, kid) {
            Ok(()) => {
                verified = true;
                break;
            }
            Err(why) if i == 0 => first_failure = why,
            Err(_) => {}
        }
    }
    if !verified {
        return Err(first_failure);
    }

    // Claims: audience, time.
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if audiences.is_empty() {
        return Err(Reject::MissingAudience);
    }
    if !audiences
        .iter()
        .any(|a| policy.audiences.iter().any(|p| p == a))
    {
        return Err(Reject::AudienceNotAccepted(
            audiences.iter().map(|a| a.to_string()).collect(),
        ));
    }
    let exp = numeric(&claims, "exp")?.ok_or(Reject::MissingExp)?;
    let iat = numeric(&claims, "iat")?;
    if now > exp.saturating_add(policy.clock_skew) {
        return Err(Reject::Expired { exp, now });
    }
    if let Some(nbf) = numeric(&claims, "nbf")? {
        if nbf > now.saturating_add(policy.clock_skew) {
            return Err(Reject::NotYetValid { nbf, now });
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(policy.clock_skew) {
            return Err(Reject::IssuedInFuture { iat, now });
        }
    }

    // Tenant: the setting.
    if let Some(want) = policy.tenant_id.as_deref() {
        check_tenant(&claims, want)?;
    }

    let principal = string(&claims, &policy.principal_claim)
        .ok_or_else(|| Reject::PrincipalMissing(policy.principal_claim.clone()))?;
    if principal.chars().any(spoofs_a_log_line) {
        return Err(Reject::PrincipalUnsafe(policy.principal_claim.clone()));
    }
    Ok(Authentic {
        principal: normalize_guid(principal).unwrap_or_else(|| principal.to_string()),
        kid: kid.into(),
        exp,
        iat,
        claims: Arc::new(claims),
    })
}

pub(super) fn check_tenant(claims: &Map<String, Value>, want: &str) -> Result<(), Reject> {
    let got = string(claims, "tid").ok_or(Reject::TenantMissing)?;
    if !same_id(got, want) {
        return Err(Reject::TenantMismatch {
            tid: got.into(),
            want: want.into(),
        });
    }
    Ok(())
}
