//! Access-token validation: a pure function of (token, keys, policy, label, now), no pgrx.
//!
//! Every way a token can be refused is a [`Reject`] variant with its own log text; nothing here
//! ever formats the token or its signature.

use crate::config::Alg;
use crate::jwks::{KeyMaterial, PublicKey};
use crate::label::{normalize_guid, same_id, Label, PrincipalType};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Longest token read from a client: PostgreSQL's own limit for authentication messages.
pub const MAX_TOKEN_LEN: usize = 65535;

/// What the settings say a token must satisfy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub principal_claim: String,
    /// Seconds of leeway on `exp`, `nbf` and `iat`.
    pub clock_skew: i64,
    /// `pgaadauth.tenant_id`, when set.
    pub tenant_id: Option<String>,
}

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
fn keys_for_issuer<K: KeyLookup + ?Sized>(
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
fn verify_with(parts: &Parts<'_>, key: &PublicKey, alg: Alg, kid: &str) -> Result<(), Reject> {
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

/// Whether a principal belongs to a group, for tokens that cannot tell (group overage, or no
/// `groups` claim): the directory, in production.
pub trait Membership {
    fn is_member(&self, member: &str, group: &str) -> Result<bool, String>;
}

/// No directory: membership beyond the `groups` claim cannot be known.
pub struct NoDirectory;

impl Membership for NoDirectory {
    fn is_member(&self, _member: &str, _group: &str) -> Result<bool, String> {
        Err("no directory is configured (pgaadauth.client_id or pgaadauth.managed_identity_endpoint)".into())
    }
}

/// An accepted token: who it speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The token's principal: for a group login, the member.
    pub principal: String,
    /// For a group login, the group's object id.
    pub via_group: Option<String>,
    pub kid: String,
    pub tid: Option<String>,
    pub upn: Option<String>,
    pub appid: Option<String>,
    /// The token's `exp` and `iat` (Unix seconds).
    pub exp: i64,
    pub iat: Option<i64>,
    /// Every verified claim of the token (shared with the [`Authentic`] it came from: no copy
    /// per login).
    pub claims: Arc<Map<String, Value>>,
}

/// Why a token was refused. Values quoted from the token are made log-safe when displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    TooLong(usize),
    NotCompactJws,
    HeaderNotJson,
    ClaimsNotJson,
    /// The header or the claims name a member twice (parsers disagree on which one wins).
    DuplicateMember {
        part: &'static str,
        name: String,
    },
    /// The header's `crit` lists extensions (RFC 7515 4.1.11): none is understood here.
    CritNotUnderstood(String),
    /// `exp`, `nbf` or `iat` is present but not a number.
    TimeClaimNotNumeric(&'static str),
    TypeNotAccepted(String),
    AlgNeverAccepted(String),
    AlgNotAllowed(String),
    MissingKid,
    UnknownKid(String),
    KeysExpired {
        kid: String,
        failing_for: i64,
    },
    IssuerNotServedByKey {
        iss: String,
        kid: String,
        served: String,
    },
    AlgKeyMismatch {
        alg: Alg,
        kid: String,
        kty: &'static str,
    },
    AlgNotKeyAlg {
        alg: Alg,
        kid: String,
        key_alg: Alg,
    },
    BadSignature(String),
    MissingIssuer,
    IssuerNotAccepted(String),
    MissingAudience,
    AudienceNotAccepted(Vec<String>),
    MissingExp,
    Expired {
        exp: i64,
        now: i64,
    },
    NotYetValid {
        nbf: i64,
        now: i64,
    },
    IssuedInFuture {
        iat: i64,
        now: i64,
    },
    TenantMissing,
    TenantMismatch {
        tid: String,
        want: String,
    },
    PrincipalMissing(String),
    /// The principal claim holds a control character (or a line or paragraph separator, or an
    /// invisible formatting character): it would reach `SYSTEM_USER`, `log_connections` and
    /// the audit line.
    PrincipalUnsafe(String),
    PrincipalMismatch {
        claim: String,
        got: String,
        want: String,
    },
    MfaRequired,
    NotGroupMember {
        member: String,
        group: String,
        by: &'static str,
    },
    MembershipUnknown {
        member: String,
        group: String,
        why: String,
    },
    /// `pgaadauth_revoke_tokens` revoked the principal's tokens issued at or before
    /// `revoked_before`; this one was issued then (or does not say when).
    Revoked {
        iat: Option<i64>,
        revoked_before: i64,
    },
    /// The revocation list has not been read since the server started.
    RevocationsUnknown(String),
}

/// Every [`Reject::code`], in a stable order (statistics).
pub const REASON_CODES: [&str; 24] = [
    "malformed",
    "bad_json",
    "duplicate_member",
    "crit",
    "bad_time_claim",
    "bad_typ",
    "alg_not_allowed",
    "alg_key_mismatch",
    "missing_kid",
    "unknown_kid",
    "keys_expired",
    "bad_signature",
    "issuer",
    "audience",
    "missing_exp",
    "expired",
    "not_yet_valid",
    "tenant",
    "principal",
    "mfa_required",
    "not_group_member",
    "membership_unknown",
    "revoked",
    "revocations_unknown",
];

impl Reject {
    /// A short stable code for the reason (statistics, audit lines).
    pub fn code(&self) -> &'static str {
        match self {
            Reject::TooLong(_) | Reject::NotCompactJws => "malformed",
            Reject::HeaderNotJson | Reject::ClaimsNotJson => "bad_json",
            Reject::DuplicateMember { .. } => "duplicate_member",
            Reject::CritNotUnderstood(_) => "crit",
            Reject::TimeClaimNotNumeric(_) => "bad_time_claim",
            Reject::TypeNotAccepted(_) => "bad_typ",
            Reject::AlgNeverAccepted(_) | Reject::AlgNotAllowed(_) => "alg_not_allowed",
            Reject::AlgKeyMismatch { .. } | Reject::AlgNotKeyAlg { .. } => "alg_key_mismatch",
            Reject::MissingKid => "missing_kid",
            Reject::UnknownKid(_) => "unknown_kid",
            Reject::KeysExpired { .. } => "keys_expired",
            Reject::IssuerNotServedByKey { .. } => "issuer",
            Reject::BadSignature(_) => "bad_signature",
            Reject::MissingIssuer | Reject::IssuerNotAccepted(_) => "issuer",
            Reject::MissingAudience | Reject::AudienceNotAccepted(_) => "audience",
            Reject::MissingExp => "missing_exp",
            Reject::Expired { .. } => "expired",
            Reject::NotYetValid { .. } | Reject::IssuedInFuture { .. } => "not_yet_valid",
            Reject::TenantMissing | Reject::TenantMismatch { .. } => "tenant",
            Reject::PrincipalMissing(_)
            | Reject::PrincipalUnsafe(_)
            | Reject::PrincipalMismatch { .. } => "principal",
            Reject::MfaRequired => "mfa_required",
            Reject::NotGroupMember { .. } => "not_group_member",
            Reject::MembershipUnknown { .. } => "membership_unknown",
            Reject::Revoked { .. } => "revoked",
            Reject::RevocationsUnknown(_) => "revocations_unknown",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reject::*;
        let s = log_safe;
        match self {
            TooLong(n) => write!(f, "The token is {n} bytes long, more than {MAX_TOKEN_LEN}."),
            NotCompactJws => write!(
                f,
                "The password is not a compact JWS token (three base64url parts separated by dots)."
            ),
            DuplicateMember { part, name } => write!(
                f,
                "The token {part} names the member \"{}\" more than once.",
                s(name)
            ),
            CritNotUnderstood(list) => write!(
                f,
                "The token header lists critical extensions ({}) in \"crit\"; none is understood.",
                s(list)
            ),
            TimeClaimNotNumeric(name) => write!(
                f,
                "The token claim \"{name}\" is not a number."
            ),
            HeaderNotJson => write!(f, "The token header is not a JSON object."),
            ClaimsNotJson => write!(f, "The token claims are not a JSON object."),
            TypeNotAccepted(t) => write!(
                f,
                "The token type \"{}\" is not accepted; expected \"JWT\" or \"at+jwt\".",
                s(t)
            ),
            AlgNeverAccepted(a) => write!(
                f,
                "The token algorithm \"{}\" is never accepted (only asymmetric signatures are).",
                s(a)
            ),
            AlgNotAllowed(a) => write!(
                f,
                "The token algorithm \"{}\" is not in pgaadauth.allowed_algorithms.",
                s(a)
            ),
            MissingKid => write!(f, "The token header has no \"kid\"."),
            UnknownKid(k) => write!(f, "No cached signing key has kid \"{}\".", s(k)),
            KeysExpired { kid, failing_for } => write!(
                f,
                "The signing key \"{}\" is no longer used: refreshes of its key set have failed for {failing_for} s, beyond pgaadauth.max_stale.",
                s(kid)
            ),
            IssuerNotServedByKey { iss, kid, served } => write!(
                f,
                "The token issuer \"{}\" differs from the issuer \"{served}\" whose key set holds key \"{}\".",
                s(iss),
                s(kid)
            ),
            AlgKeyMismatch { alg, kid, kty } => write!(
                f,
                "The token algorithm {alg} does not match the {kty} key \"{}\".",
                s(kid)
            ),
            AlgNotKeyAlg { alg, kid, key_alg } => write!(
                f,
                "The token algorithm {alg} differs from the algorithm {key_alg} of key \"{}\".",
                s(kid)
            ),
            BadSignature(k) => write!(
                f,
                "The token signature does not verify with key \"{}\".",
                s(k)
            ),
            MissingIssuer => write!(f, "The token has no \"iss\" claim."),
            IssuerNotAccepted(i) => write!(
                f,
                "The token issuer \"{}\" is not an accepted issuer (pgaadauth.issuers).",
                s(i)
            ),
            MissingAudience => write!(f, "The token has no \"aud\" claim."),
            AudienceNotAccepted(list) => {
                let quoted: Vec<String> = list.iter().map(|a| format!("\"{}\"", s(a))).collect();
                write!(
                    f,
                    "The token audience {} is not an accepted audience (pgaadauth.audiences).",
                    quoted.join(", ")
                )
            }
            MissingExp => write!(f, "The token has no numeric \"exp\" claim."),
            Expired { exp, now } => write!(
                f,
                "The token expired at {exp}, {} s ago (beyond pgaadauth.clock_skew).",
                now - exp
            ),
            NotYetValid { nbf, now } => write!(
                f,
                "The token is not valid before {nbf}, {} s from now (beyond pgaadauth.clock_skew).",
                nbf - now
            ),
            IssuedInFuture { iat, now } => write!(
                f,
                "The token was issued at {iat}, {} s in the future (beyond pgaadauth.clock_skew).",
                iat - now
            ),
            TenantMissing => write!(f, "The token has no \"tid\" claim but a tenant is required."),
            TenantMismatch { tid, want } => write!(
                f,
                "The token tenant \"{}\" is not the required tenant \"{want}\".",
                s(tid)
            ),
            PrincipalMissing(c) => write!(f, "The token has no \"{}\" claim.", s(c)),
            PrincipalUnsafe(c) => write!(
                f,
                "The token's \"{}\" claim holds a control or formatting character; it cannot name a principal.",
                s(c)
            ),
            PrincipalMismatch { claim, got, want } => write!(
                f,
                "The token {} \"{}\" does not match the role's object id \"{want}\".",
                s(claim),
                s(got)
            ),
            MfaRequired => write!(
                f,
                "The role requires multi-factor authentication but the token's \"amr\" claim does not contain \"mfa\"."
            ),
            NotGroupMember { member, group, by } => write!(
                f,
                "The token principal \"{}\" is not a member of group \"{group}\" according to {by}.",
                s(member)
            ),
            MembershipUnknown { member, group, why } => write!(
                f,
                "Whether \"{}\" is a member of group \"{group}\" could not be learned from the directory: {why}.",
                s(member)
            ),
            Revoked { iat: Some(iat), revoked_before } => write!(
                f,
                "The principal's tokens issued at or before {revoked_before} were revoked (pgaadauth_revoke_tokens); this one was issued at {iat}. A token issued after the revocation is accepted."
            ),
            Revoked { iat: None, revoked_before } => write!(
                f,
                "The principal's tokens issued at or before {revoked_before} were revoked (pgaadauth_revoke_tokens); this one has no \"iat\" claim, so it counts as issued before."
            ),
            RevocationsUnknown(why) => write!(
                f,
                "Token revocations are not known yet, so no token is accepted: {why}."
            ),
        }
    }
}

/// A claim value made safe for a log line: control characters replaced, quotes escaped,
/// at most 128 characters.
pub fn log_safe(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 128 {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Text from outside (an identity provider's URLs, error bodies, directory answers) made safe
/// for the server log, whole: every control character becomes a visible escape (`\n`,
/// `\u{1b}`), so nothing from outside can start a log line of its own.
pub fn escape_log_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The three parts of a compact JWS, each checked to be non-empty base64url.
struct Parts<'a> {
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
    signed: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, Reject> {
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
fn json_object(part: &str, err: Reject, which: &'static str) -> Result<Map<String, Value>, Reject> {
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

fn jwt_alg(alg: Alg) -> jsonwebtoken::Algorithm {
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

fn signature_ok(parts: &Parts<'_>, key: &PublicKey, alg: Alg) -> bool {
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

/// A NumericDate claim: absent → `None`; present but not a number → refused.
fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Reject> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f.floor() as i64))
            .ok_or(Reject::TimeClaimNotNumeric(name)),
    }
}

fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name)?.as_str()
}

/// Control characters, line and paragraph separators, and the invisible formatting characters
/// (bidirectional overrides, zero-width ones): a principal holding one could forge or disguise
/// a log line.
fn spoofs_a_log_line(c: char) -> bool {
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

/// Group login: the `groups` claim decides when it is complete; on group overage
/// (`_claim_names.groups`) or without the claim, the directory does.
fn check_group_member(
    claims: &Map<String, Value>,
    member: &str,
    group: &str,
    membership: &dyn Membership,
) -> Result<(), Reject> {
    let listed = claims.get("groups").and_then(Value::as_array);
    // Group ids are GUIDs: an entry that is not one never names the group, whatever its text.
    let group_id = normalize_guid(group);
    if listed.is_some_and(|l| {
        l.iter()
            .filter_map(Value::as_str)
            .any(|g| group_id.is_some() && normalize_guid(g) == group_id)
    }) {
        return Ok(());
    }
    let overage = claims
        .get("_claim_names")
        .and_then(|c| c.get("groups"))
        .is_some();
    let not_member = |by| Reject::NotGroupMember {
        member: member.into(),
        group: group.into(),
        by,
    };
    if listed.is_some() && !overage {
        return Err(not_member("the token's groups claim"));
    }
    match membership.is_member(member, group) {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_member("the directory")),
        Err(why) => Err(Reject::MembershipUnknown {
            member: member.into(),
            group: group.into(),
            why,
        }),
    }
}

/// Verify a fixed RS256 and ES256 signature once, so that the crypto library's one-time
/// initialisation (CPU feature detection, the default provider) happens in the postmaster
/// before it forks, instead of in every login. True when both verify.
pub fn warm_up() -> bool {
    let v: Value = serde_json::from_str(include_str!("warm_up.json")).unwrap_or(Value::Null);
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

/// Decide whether `token` lets its bearer log in as the principal of `label`: [`verify`],
/// then [`authorize`].
pub fn validate<K: KeyLookup + ?Sized>(
    token: &str,
    keys: &K,
    membership: &dyn Membership,
    policy: &Policy,
    label: &Label,
    now: i64,
) -> Result<Verified, Reject> {
    let authentic = verify(token, keys, policy, now)?;
    authorize(&authentic, label, membership, policy)
}

/// A token whose signature, issuer, audience, times and tenant (`pgaadauth.tenant_id`) hold,
/// and which names its principal: who it speaks for, not yet for which role.
#[derive(Clone, Debug)]
pub struct Authentic {
    claims: Arc<Map<String, Value>>,
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

fn check_tenant(claims: &Map<String, Value>, want: &str) -> Result<(), Reject> {
    let got = string(claims, "tid").ok_or(Reject::TenantMissing)?;
    if !same_id(got, want) {
        return Err(Reject::TenantMismatch {
            tid: got.into(),
            want: want.into(),
        });
    }
    Ok(())
}

/// Decide whether the verified token lets its bearer log in as the principal of `label`: the
/// label's tenant, its principal (or, for a group, membership), and its MFA requirement.
pub fn authorize(
    authentic: &Authentic,
    label: &Label,
    membership: &dyn Membership,
    policy: &Policy,
) -> Result<Verified, Reject> {
    let claims = &authentic.claims;
    if let Some(want) = label.tid.as_deref() {
        check_tenant(claims, want)?;
    }
    let principal = string(claims, &policy.principal_claim)
        .ok_or_else(|| Reject::PrincipalMissing(policy.principal_claim.clone()))?;
    let via_group = match label.principal_type {
        PrincipalType::Group => {
            check_group_member(claims, principal, &label.oid, membership)?;
            Some(label.oid.clone())
        }
        PrincipalType::User | PrincipalType::Service => {
            if !same_id(principal, &label.oid) {
                return Err(Reject::PrincipalMismatch {
                    claim: policy.principal_claim.clone(),
                    got: principal.into(),
                    want: label.oid.clone(),
                });
            }
            None
        }
    };
    if label.mfa {
        let has_mfa = claims
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| amr.iter().any(|m| m.as_str() == Some("mfa")));
        if !has_mfa {
            return Err(Reject::MfaRequired);
        }
    }

    Ok(Verified {
        via_group,
        ..authentic.identity()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::parse_jwks;
    use crate::jwks::tests::{jwks_of, EC1_JWK, RSA1_JWK, RSA2_JWK};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const RSA1: &str = include_str!("../testdata/rsa1.pem");
    const RSA2: &str = include_str!("../testdata/rsa2.pem");
    const EC1: &str = include_str!("../testdata/ec1.pem");
    const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    const TID: &str = "11111111-2222-3333-4444-555555555555";
    const ISS: &str = "https://sts.windows.net/11111111-2222-3333-4444-555555555555/";
    const AUD: &str = "https://ossrdbms-aad.database.windows.net";
    const NOW: i64 = 1_900_000_000;

    fn keys() -> Vec<PublicKey> {
        parse_jwks(jwks_of(&[RSA1_JWK, EC1_JWK]).as_bytes())
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
            tenant_id: Some(TID.into()),
        }
    }

    fn label() -> Label {
        Label::parse(&format!("aadauth,oid={OID},type=user")).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": AUD, "exp": NOW + 3600, "nbf": NOW - 60, "iat": NOW - 60,
               "tid": TID, "oid": OID, "upn": "alice@example.com", "amr": ["pwd"]})
    }

    fn sign_with(alg: jsonwebtoken::Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        let key = match alg {
            jsonwebtoken::Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        encode(&h, claims, &key).unwrap()
    }

    fn sign(claims: &Value) -> String {
        sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA1, claims)
    }

    fn check(token: &str) -> Result<Verified, Reject> {
        validate(
            token,
            keys().as_slice(),
            &NoDirectory,
            &policy(),
            &label(),
            NOW,
        )
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        sign(&c)
    }

    /// A token with a hand-made header and claims, signed (or not) as given.
    fn raw(header: &Value, claims_b64: &str, sig: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        format!("{h}.{claims_b64}.{sig}")
    }

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn outside_text_never_starts_a_log_line() {
        let text = "bad\n2026-11-23 LOG:  forged\r\u{1b}[31m\u{85}end\ttab";
        let safe = escape_log_text(text);
        assert!(!safe.chars().any(char::is_control), "{safe}");
        assert_eq!(
            safe,
            "bad\\n2026-11-23 LOG:  forged\\r\\u{1b}[31m\\u{85}end\\ttab"
        );
        assert_eq!(
            escape_log_text("https://ok.example/keys"),
            "https://ok.example/keys"
        );
    }

    #[test]
    fn crit_header_is_refused() {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("rsa1".into());
        let mut header = serde_json::to_value(&h).unwrap();
        header["crit"] = json!(["exp-ext"]);
        header["exp-ext"] = json!(true);
        let t = raw(&header, &b64(&claims().to_string()), "c2ln");
        assert_eq!(
            check(&t),
            Err(Reject::CritNotUnderstood(r#"["exp-ext"]"#.into()))
        );
    }

    #[test]
    fn non_numeric_time_claims_are_refused() {
        for name in ["nbf", "iat", "exp"] {
            for bad in [json!("1900000000"), json!(null), json!([1]), json!(true)] {
                let t = with(|c| {
                    c.insert(name.into(), bad.clone());
                });
                assert_eq!(
                    check(&t),
                    Err(Reject::TimeClaimNotNumeric(name)),
                    "{name}={bad}"
                );
            }
        }
    }

    #[test]
    fn duplicate_members_are_refused() {
        // Claims naming "oid" twice, properly signed: which oid counts is ambiguous.
        let other = "00000000-0000-4000-8000-000000000000";
        let c = claims().to_string();
        let dup = format!("{},\"oid\":\"{other}\"}}", &c[..c.len() - 1]);
        let header = json!({"alg": "RS256", "kid": "rsa1", "typ": "JWT"}).to_string();
        let signing_input = format!("{}.{}", b64(&header), b64(&dup));
        let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &key,
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap();
        let t = format!("{signing_input}.{sig}");
        assert_eq!(
            check(&t),
            Err(Reject::DuplicateMember {
                part: "claims",
                name: "oid".into()
            })
        );
        let dup_header = r#"{"alg":"RS256","kid":"rsa1","alg":"RS256"}"#;
        let t = format!("{}.{}.{sig}", b64(dup_header), b64(&c));
        assert_eq!(
            check(&t),
            Err(Reject::DuplicateMember {
                part: "header",
                name: "alg".into()
            })
        );
    }

    #[test]
    fn valid_rs256_token_is_accepted() {
        let v = check(&sign(&claims())).unwrap();
        assert_eq!(v.principal, OID);
        assert_eq!(v.upn.as_deref(), Some("alice@example.com"));
        assert_eq!(v.kid, "rsa1");
    }

    #[test]
    fn valid_es256_token_is_accepted() {
        let t = sign_with(jsonwebtoken::Algorithm::ES256, "ec1", EC1, &claims());
        assert!(check(&t).is_ok());
    }

    #[test]
    fn at_jwt_type_and_upper_case_oid_are_accepted() {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("rsa1".into());
        h.typ = Some("at+jwt".into());
        let mut c = claims();
        c["oid"] = json!(OID.to_uppercase());
        let t = encode(&h, &c, &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap()).unwrap();
        assert!(check(&t).is_ok());
    }

    #[test]
    fn not_three_base64url_parts() {
        let good = sign(&claims());
        let two = good.rsplit_once('.').unwrap().0.to_string();
        for bad in [
            "".to_string(),
            "hunter2".into(),
            two,
            format!("{good}.x"),
            good.replacen('.', ".+", 1),
            format!("{good}=="),
        ] {
            assert_eq!(check(&bad), Err(Reject::NotCompactJws), "{bad:?}");
        }
    }

    #[test]
    fn too_long() {
        let t = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(check(&t), Err(Reject::TooLong(MAX_TOKEN_LEN + 1)));
    }

    #[test]
    fn bad_json() {
        let t = raw(
            &json!({"alg":"RS256","kid":"rsa1"}),
            &b64("{not json"),
            "c2ln",
        );
        assert_eq!(check(&t), Err(Reject::ClaimsNotJson));
        let t = format!("{}.{}.c2ln", b64("[1,2]"), b64("{}"));
        assert_eq!(check(&t), Err(Reject::HeaderNotJson));
    }

    #[test]
    fn alg_none_and_hmac_are_never_accepted() {
        let body = b64(&claims().to_string());
        for sig in ["", "c2ln"] {
            let t = raw(&json!({"alg":"none","kid":"rsa1"}), &body, sig);
            assert_eq!(check(&t), Err(Reject::AlgNeverAccepted("none".into())));
        }
        // An empty signature with a real algorithm is a bad signature, not a parse error.
        let good = sign(&claims());
        let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
        assert_eq!(check(&unsigned), Err(Reject::BadSignature("rsa1".into())));
        // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("rsa1".into());
        let t = encode(
            &h,
            &claims(),
            &EncodingKey::from_secret(RSA1_JWK.as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&t), Err(Reject::AlgNeverAccepted("HS256".into())));
    }

    #[test]
    fn alg_not_in_allowed_algorithms() {
        let t = sign_with(jsonwebtoken::Algorithm::RS384, "rsa1", RSA1, &claims());
        assert_eq!(check(&t), Err(Reject::AlgNotAllowed("RS384".into())));
    }

    #[test]
    fn alg_must_match_key_type() {
        // ES256 header naming the RSA key.
        let t = sign_with(jsonwebtoken::Algorithm::ES256, "rsa1", EC1, &claims());
        assert!(matches!(
            check(&t),
            Err(Reject::AlgKeyMismatch { kty: "RSA", .. })
        ));
        // PS256 is RSA, but the JWK pins RS256.
        let mut p = policy();
        p.algorithms.push(Alg::PS256);
        let t = sign_with(jsonwebtoken::Algorithm::PS256, "rsa1", RSA1, &claims());
        assert!(matches!(
            validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW),
            Err(Reject::AlgNotKeyAlg {
                key_alg: Alg::RS256,
                ..
            })
        ));
    }

    #[test]
    fn missing_and_unknown_kid() {
        let t = encode(
            &Header::new(jsonwebtoken::Algorithm::RS256),
            &claims(),
            &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(check(&t), Err(Reject::MissingKid));
        let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa2", RSA2, &claims());
        assert_eq!(check(&t), Err(Reject::UnknownKid("rsa2".into())));
    }

    #[test]
    fn bad_signature() {
        // Signed by rsa2's private key but claiming to be rsa1.
        let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &claims());
        assert_eq!(check(&t), Err(Reject::BadSignature("rsa1".into())));
        // A claims part swapped after signing.
        let good = sign(&claims());
        let mut forged: Vec<&str> = good.split('.').collect();
        let other = b64(&json!({"iss": ISS, "oid": "someone-else"}).to_string());
        forged[1] = &other;
        assert_eq!(
            check(&forged.join(".")),
            Err(Reject::BadSignature("rsa1".into()))
        );
        // The rsa2 key set cannot verify rsa1's signatures either.
        let set = parse_jwks(jwks_of(&[&RSA2_JWK.replace("rsa2", "rsa1")]).as_bytes()).unwrap();
        assert_eq!(
            validate(
                &good,
                set.keys.as_slice(),
                &NoDirectory,
                &policy(),
                &label(),
                NOW
            ),
            Err(Reject::BadSignature("rsa1".into()))
        );
    }

    #[test]
    fn issuer() {
        let t = with(|c| {
            c.insert("iss".into(), json!("https://evil.example/"));
        });
        assert_eq!(
            check(&t),
            Err(Reject::IssuerNotAccepted("https://evil.example/".into()))
        );
        let t = with(|c| {
            c.remove("iss");
        });
        assert_eq!(check(&t), Err(Reject::MissingIssuer));
    }

    /// Two issuers' key sets, each publishing a different key under the same kid "rsa1".
    struct Colliding {
        first: &'static str,
        second: &'static str,
        second_expired: Option<i64>,
    }
    impl KeyLookup for Colliding {
        fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
            let rsa1 = keys()[0].clone();
            let mut rsa2 = parse_jwks(jwks_of(&[RSA2_JWK]).as_bytes()).unwrap().keys[0].clone();
            rsa2.kid = "rsa1".into();
            if kid != "rsa1" {
                return Err(Reject::UnknownKid(kid.into()));
            }
            Ok(vec![
                CachedKey {
                    key: rsa1,
                    issuer: Some(self.first.into()),
                    expired: None,
                },
                CachedKey {
                    key: rsa2,
                    issuer: Some(self.second.into()),
                    expired: self.second_expired,
                },
            ])
        }
    }

    /// Two issuers whose key sets publish the same kid: each one's tokens verify with its own
    /// key, and neither can lock the other out.
    #[test]
    fn issuers_sharing_a_kid_each_log_in() {
        const OTHER: &str = "https://login.microsoftonline.com/other/v2.0";
        let mut p = policy();
        p.issuers.push(OTHER.into());
        p.tenant_id = None;
        let lookup = Colliding {
            first: ISS,
            second: OTHER,
            second_expired: None,
        };
        let run = |t: &str, keys: &Colliding| validate(t, keys, &NoDirectory, &p, &label(), NOW);
        // Issuer 1 signs with rsa1's private key, issuer 2 with rsa2's, both naming kid rsa1.
        let first = sign(&claims());
        let mut c = claims();
        c["iss"] = json!(OTHER);
        let second = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &c);
        assert!(run(&first, &lookup).is_ok());
        assert!(run(&second, &lookup).is_ok());
        // The same key pairs listed the other way round.
        let swapped = Colliding {
            first: OTHER,
            second: ISS,
            second_expired: None,
        };
        assert_eq!(
            run(&first, &swapped),
            Err(Reject::BadSignature("rsa1".into()))
        );
        // A token of issuer 2 signed by issuer 1's key is not accepted as issuer 2's.
        let cross = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA1, &c);
        assert_eq!(
            run(&cross, &lookup),
            Err(Reject::BadSignature("rsa1".into()))
        );
        // Only issuer 2's source is past max_stale: issuer 1 is unaffected.
        let stale = Colliding {
            first: ISS,
            second: OTHER,
            second_expired: Some(999),
        };
        assert!(run(&first, &stale).is_ok());
        assert!(matches!(
            run(&second, &stale),
            Err(Reject::KeysExpired {
                failing_for: 999,
                ..
            })
        ));
    }

    /// Keys from an issuer's own discovery document verify only that issuer's tokens.
    #[test]
    fn key_only_serves_its_sources_issuer() {
        struct FromOtherIssuer(Vec<PublicKey>);
        impl KeyLookup for FromOtherIssuer {
            fn keys(&self, kid: &str) -> Result<Vec<CachedKey>, Reject> {
                let mut k = self.0.as_slice().keys(kid)?;
                k[0].issuer = Some("https://other.example/".into());
                Ok(k)
            }
        }
        let mut p = policy();
        p.issuers.push("https://other.example/".into());
        let t = sign(&claims());
        assert!(matches!(
            validate(
                &t,
                &FromOtherIssuer(keys()),
                &NoDirectory,
                &p,
                &label(),
                NOW
            ),
            Err(Reject::IssuerNotServedByKey { .. })
        ));
        let t = with(|c| {
            c.insert("iss".into(), json!("https://other.example/"));
        });
        assert!(validate(
            &t,
            &FromOtherIssuer(keys()),
            &NoDirectory,
            &p,
            &label(),
            NOW
        )
        .is_ok());
    }

    #[test]
    fn audience_string_or_array() {
        let t = with(|c| {
            c.insert("aud".into(), json!("api://other"));
        });
        assert!(matches!(check(&t), Err(Reject::AudienceNotAccepted(_))));
        let t = with(|c| {
            c.insert("aud".into(), json!(["api://other", "api://more"]));
        });
        assert!(matches!(check(&t), Err(Reject::AudienceNotAccepted(_))));
        let t = with(|c| {
            c.insert("aud".into(), json!(["api://other", AUD]));
        });
        assert!(check(&t).is_ok());
        let t = with(|c| {
            c.remove("aud");
        });
        assert_eq!(check(&t), Err(Reject::MissingAudience));
    }

    #[test]
    fn expiry_and_skew() {
        let t = with(|c| {
            c.remove("exp");
        });
        assert_eq!(check(&t), Err(Reject::MissingExp));
        let t = with(|c| {
            c.insert("exp".into(), json!("tomorrow"));
        });
        assert_eq!(check(&t), Err(Reject::TimeClaimNotNumeric("exp")));
        let t = with(|c| {
            c.insert("exp".into(), json!(NOW - 301));
        });
        assert_eq!(
            check(&t),
            Err(Reject::Expired {
                exp: NOW - 301,
                now: NOW
            })
        );
        let t = with(|c| {
            c.insert("exp".into(), json!(NOW - 299));
        });
        assert!(check(&t).is_ok(), "expired within clock_skew");
    }

    #[test]
    fn nbf_and_iat_in_the_future() {
        let t = with(|c| {
            c.insert("nbf".into(), json!(NOW + 301));
        });
        assert_eq!(
            check(&t),
            Err(Reject::NotYetValid {
                nbf: NOW + 301,
                now: NOW
            })
        );
        let t = with(|c| {
            c.insert("iat".into(), json!(NOW + 301));
        });
        assert_eq!(
            check(&t),
            Err(Reject::IssuedInFuture {
                iat: NOW + 301,
                now: NOW
            })
        );
        let t = with(|c| {
            c.insert("nbf".into(), json!(NOW + 299));
            c.insert("iat".into(), json!(NOW + 299));
        });
        assert!(check(&t).is_ok(), "in the future within clock_skew");
    }

    #[test]
    fn tenant() {
        let other = "99999999-2222-3333-4444-555555555555";
        let t = with(|c| {
            c.insert("tid".into(), json!(other));
        });
        assert!(matches!(check(&t), Err(Reject::TenantMismatch { .. })));
        let t = with(|c| {
            c.remove("tid");
        });
        assert_eq!(check(&t), Err(Reject::TenantMissing));
        // Without pgaadauth.tenant_id any tenant is accepted, unless the label pins one.
        let mut p = policy();
        p.tenant_id = None;
        let t = with(|c| {
            c.insert("tid".into(), json!(other));
        });
        assert!(validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW).is_ok());
        let pinned = Label::parse(&format!("aadauth,oid={OID},type=user,tid={TID}")).unwrap();
        assert!(matches!(
            validate(&t, keys().as_slice(), &NoDirectory, &p, &pinned, NOW),
            Err(Reject::TenantMismatch { .. })
        ));
    }

    #[test]
    fn principal_claim() {
        let t = with(|c| {
            c.remove("oid");
        });
        assert_eq!(check(&t), Err(Reject::PrincipalMissing("oid".into())));
        let t = with(|c| {
            c.insert("oid".into(), json!("00000000-0000-0000-0000-000000000000"));
        });
        assert!(matches!(check(&t), Err(Reject::PrincipalMismatch { .. })));
        // Another principal claim: `sub`, as an OIDC provider would use.
        let mut p = policy();
        p.principal_claim = "sub".into();
        let t = with(|c| {
            c.insert("sub".into(), json!(OID));
            c.remove("oid");
        });
        assert!(validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW).is_ok());
    }

    #[test]
    fn a_principal_with_a_control_character_is_refused() {
        let mut p = policy();
        p.principal_claim = "upn".into();
        for bad in [
            "ann@contoso.com\nLOG:  forged",
            "ann\r@contoso.com",
            "ann\u{1b}[31m",
            "ann\u{85}",
            "ann\u{2028}x",
            "\u{7f}",
            "nna\u{202e}@contoso.com",
            "ann\u{200b}@contoso.com",
        ] {
            let t = with(|c| {
                c.insert("upn".into(), json!(bad));
            });
            let refused = validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW);
            assert_eq!(
                refused,
                Err(Reject::PrincipalUnsafe("upn".into())),
                "{bad:?}"
            );
            assert_eq!(refused.unwrap_err().code(), "principal");
        }
        // Spaces and non-ASCII letters are not control characters.
        let t = with(|c| {
            c.insert("upn".into(), json!("ann zoë@contoso.com"));
        });
        assert!(!matches!(
            validate(&t, keys().as_slice(), &NoDirectory, &p, &label(), NOW),
            Err(Reject::PrincipalUnsafe(_))
        ));
    }

    #[test]
    fn service_principal_matches_like_a_user() {
        let sp = Label::parse(&format!("aadauth,oid={OID},type=service")).unwrap();
        assert!(validate(
            &sign(&claims()),
            keys().as_slice(),
            &NoDirectory,
            &policy(),
            &sp,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn mfa() {
        let mfa = Label::parse(&format!("aadauth,oid={OID},type=user,mfa")).unwrap();
        let t = sign(&claims());
        assert_eq!(
            validate(&t, keys().as_slice(), &NoDirectory, &policy(), &mfa, NOW),
            Err(Reject::MfaRequired)
        );
        let t = with(|c| {
            c.insert("amr".into(), json!(["pwd", "mfa"]));
        });
        assert!(validate(&t, keys().as_slice(), &NoDirectory, &policy(), &mfa, NOW).is_ok());
    }

    /// A directory that knows one membership, and counts how often it is asked.
    struct FakeDirectory(std::cell::Cell<u32>, Result<bool, String>);

    impl Membership for FakeDirectory {
        fn is_member(&self, member: &str, group: &str) -> Result<bool, String> {
            self.0.set(self.0.get() + 1);
            assert_eq!((member, group), (OID, GROUP));
            self.1.clone()
        }
    }

    const GROUP: &str = "0e0e0e0e-1111-4222-8333-444455556666";

    fn group_login(
        f: impl FnOnce(&mut Map<String, Value>),
        dir: &FakeDirectory,
    ) -> Result<Verified, Reject> {
        let g = Label::parse(&format!("aadauth,oid={GROUP},type=group")).unwrap();
        validate(&with(f), keys().as_slice(), dir, &policy(), &g, NOW)
    }

    #[test]
    fn groups_entries_that_are_not_guids_never_name_the_group() {
        let dir = FakeDirectory(0.into(), Ok(false));
        for entry in [
            format!("{{{GROUP}}}"),
            format!(" {GROUP}"),
            format!("{GROUP}\u{0}"),
            format!("{GROUP}x"),
            GROUP.replace('-', ""),
        ] {
            let r = group_login(
                |c| {
                    c.insert("groups".into(), json!([entry]));
                },
                &dir,
            );
            assert!(
                matches!(r, Err(Reject::NotGroupMember { .. })),
                "{entry:?}: {r:?}"
            );
        }
    }

    #[test]
    fn group_member_by_claim() {
        let dir = FakeDirectory(0.into(), Ok(false));
        let v = group_login(
            |c| {
                c.insert("groups".into(), json!(["x", GROUP.to_uppercase()]));
            },
            &dir,
        )
        .unwrap();
        assert_eq!(
            (v.principal.as_str(), v.via_group.as_deref()),
            (OID, Some(GROUP))
        );
        assert_eq!(dir.0.get(), 0, "the claim suffices");
        let r = group_login(
            |c| {
                c.insert("groups".into(), json!(["x"]));
            },
            &dir,
        );
        assert!(matches!(
            r,
            Err(Reject::NotGroupMember {
                by: "the token's groups claim",
                ..
            })
        ));
        assert_eq!(
            dir.0.get(),
            0,
            "a complete groups claim is not second-guessed"
        );
    }

    #[test]
    fn group_overage_or_no_claim_asks_the_directory() {
        let overage = |c: &mut Map<String, Value>| {
            c.insert("_claim_names".into(), json!({"groups": "src1"}));
            c.insert(
                "_claim_sources".into(),
                json!({"src1": {"endpoint": "https://graph"}}),
            );
        };
        let yes = FakeDirectory(0.into(), Ok(true));
        assert!(group_login(overage, &yes).is_ok());
        assert!(group_login(|_| {}, &yes).is_ok(), "no groups claim at all");
        assert_eq!(yes.0.get(), 2);
        let no = FakeDirectory(0.into(), Ok(false));
        assert!(matches!(
            group_login(overage, &no),
            Err(Reject::NotGroupMember {
                by: "the directory",
                ..
            })
        ));
        let down = FakeDirectory(0.into(), Err("HTTP status 503".into()));
        let r = group_login(overage, &down).unwrap_err();
        assert!(
            r.to_string()
                .contains("could not be learned from the directory: HTTP status 503"),
            "{r}"
        );
        let r = group_login(overage, &FakeDirectory(0.into(), Ok(true)));
        assert!(r.is_ok());
        let none = group_login(
            overage,
            &FakeDirectory(
                0.into(),
                Err(NoDirectory.is_member(OID, GROUP).unwrap_err()),
            ),
        );
        assert!(matches!(none, Err(Reject::MembershipUnknown { .. })));
    }

    #[test]
    fn group_label_with_mfa() {
        let g = Label::parse(&format!("aadauth,oid={GROUP},type=group,mfa")).unwrap();
        let t = with(|c| {
            c.insert("groups".into(), json!([GROUP]));
        });
        let dir = FakeDirectory(0.into(), Ok(false));
        assert_eq!(
            validate(&t, keys().as_slice(), &dir, &policy(), &g, NOW),
            Err(Reject::MfaRequired)
        );
    }

    #[test]
    fn bad_typ() {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("rsa1".into());
        h.typ = Some("id+jwt".into());
        let t = encode(
            &h,
            &claims(),
            &EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(matches!(check(&t), Err(Reject::TypeNotAccepted(_))));
    }

    #[test]
    fn every_code_is_listed() {
        use Reject::*;
        let all = [
            TooLong(1),
            NotCompactJws,
            HeaderNotJson,
            ClaimsNotJson,
            DuplicateMember {
                part: "header",
                name: String::new(),
            },
            CritNotUnderstood(String::new()),
            TimeClaimNotNumeric("nbf"),
            TypeNotAccepted(String::new()),
            AlgNeverAccepted(String::new()),
            AlgNotAllowed(String::new()),
            MissingKid,
            UnknownKid(String::new()),
            KeysExpired {
                kid: String::new(),
                failing_for: 0,
            },
            IssuerNotServedByKey {
                iss: String::new(),
                kid: String::new(),
                served: String::new(),
            },
            AlgKeyMismatch {
                alg: Alg::RS256,
                kid: String::new(),
                kty: "RSA",
            },
            AlgNotKeyAlg {
                alg: Alg::RS256,
                kid: String::new(),
                key_alg: Alg::RS384,
            },
            BadSignature(String::new()),
            MissingIssuer,
            IssuerNotAccepted(String::new()),
            MissingAudience,
            AudienceNotAccepted(vec![]),
            MissingExp,
            Expired { exp: 0, now: 0 },
            NotYetValid { nbf: 0, now: 0 },
            IssuedInFuture { iat: 0, now: 0 },
            TenantMissing,
            TenantMismatch {
                tid: String::new(),
                want: String::new(),
            },
            PrincipalMissing(String::new()),
            PrincipalMismatch {
                claim: String::new(),
                got: String::new(),
                want: String::new(),
            },
            MfaRequired,
            NotGroupMember {
                member: String::new(),
                group: String::new(),
                by: "",
            },
            MembershipUnknown {
                member: String::new(),
                group: String::new(),
                why: String::new(),
            },
            Revoked {
                iat: None,
                revoked_before: 0,
            },
            RevocationsUnknown(String::new()),
        ];
        for r in &all {
            assert!(REASON_CODES.contains(&r.code()), "{r:?}");
        }
        let used: std::collections::HashSet<&str> = all.iter().map(Reject::code).collect();
        assert_eq!(
            used.len(),
            REASON_CODES.len(),
            "a listed code no variant uses"
        );
    }

    #[test]
    fn warm_up_vectors_verify() {
        assert!(warm_up());
    }

    #[test]
    fn log_safe_escapes_and_truncates() {
        assert_eq!(log_safe("a\nb\"c"), "a?b\\\"c");
        assert_eq!(log_safe(&"x".repeat(500)).len(), 131);
    }

    #[test]
    fn reasons_never_contain_the_token() {
        let t = sign_with(jsonwebtoken::Algorithm::RS256, "rsa1", RSA2, &claims());
        let sig = t.rsplit('.').next().unwrap();
        let text = check(&t).unwrap_err().to_string();
        assert!(!text.contains(sig) && !text.contains(&t));
    }
}
