//! Every way a token can be refused: one variant each, its reason code and its log text.

use super::MAX_TOKEN_LEN;
use crate::config::Alg;
use crate::log_text::log_safe;
use std::fmt;

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
        /// The label's id is the token's application (client) id (`appid`/`azp`): a common
        /// mistake for a service principal, whose object id differs.
        want_is_appid: bool,
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

/// The refusals of a login decided before the token's own checks (the role's label, an `oauth`
/// line's issuer), logged and counted as a [`Reject`]'s codes are.
pub const LABEL_MALFORMED: &str = "label_malformed";
pub const ROLE_NOT_LABELLED: &str = "role_not_labelled";
pub const LINE_ISSUER: &str = "line_issuer";
/// The three above, in a stable order (statistics, after [`REASON_CODES`]).
pub const DECISION_CODES: [&str; 3] = [LABEL_MALFORMED, ROLE_NOT_LABELLED, LINE_ISSUER];

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
            PrincipalMismatch {
                claim,
                got,
                want,
                want_is_appid,
            } => {
                write!(
                    f,
                    "The token {} \"{}\" does not match the role's object id \"{want}\".",
                    s(claim),
                    s(got)
                )?;
                if *want_is_appid {
                    write!(
                        f,
                        " The role is labelled with the token's application (client) id, not an object id: label it with the object id of the token's principal, \"{}\", instead (pgaadauth_update_principal_with_oid).",
                        s(got)
                    )?;
                }
                Ok(())
            }
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
