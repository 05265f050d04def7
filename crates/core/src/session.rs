//! Token sessions after login: when one must end (its token expired, its tokens were revoked),
//! and what it is told then. Pure: the extension's session worker applies it.

use crate::token::Reject;

/// Longest object id a revocation names (OpenID Connect caps `sub` at 255 characters).
pub const MAX_OBJECT_ID_LEN: usize = 255;

/// Whether a token issued at `iat` falls under a revocation of everything issued at or before
/// `revoked_before`. Times are whole seconds, so a token of the revocation's own second counts
/// as revoked; a token that does not say when it was issued counts as revoked too.
pub fn is_revoked(iat: Option<i64>, revoked_before: i64) -> bool {
    iat.is_none_or(|iat| iat <= revoked_before)
}

/// The login's decision on a verified token, given the principal's revocation (if any).
pub fn check_revocation(iat: Option<i64>, revoked_before: Option<i64>) -> Result<(), Reject> {
    match revoked_before {
        Some(revoked_before) if is_revoked(iat, revoked_before) => Err(Reject::Revoked {
            iat,
            revoked_before,
        }),
        _ => Ok(()),
    }
}

/// `pgaadauth.session_lifetime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    Unlimited,
    /// Until the token's `exp` plus `after` seconds: the clock skew a login allows on `exp`,
    /// plus the grace.
    Token {
        after: i64,
    },
}

/// Why a token session is ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Expired { exp: i64, after: i64 },
    Revoked { revoked_before: i64 },
}

/// What is known of one open token session.
#[derive(Clone, Copy, Debug)]
pub struct OpenSession {
    pub exp: i64,
    pub iat: Option<i64>,
}

/// Whether the session must end now: a revocation that covers its token first, then, under
/// `pgaadauth.session_lifetime = token`, its token's expiry plus the clock skew and grace.
pub fn must_end(
    session: OpenSession,
    now: i64,
    lifetime: Lifetime,
    revoked_before: Option<i64>,
) -> Option<EndReason> {
    if let Some(revoked_before) = revoked_before.filter(|r| is_revoked(session.iat, *r)) {
        return Some(EndReason::Revoked { revoked_before });
    }
    match lifetime {
        // A login accepts the token while now <= exp + skew: the session ends after that.
        Lifetime::Token { after } if now > session.exp.saturating_add(after) => {
            Some(EndReason::Expired {
                exp: session.exp,
                after,
            })
        }
        _ => None,
    }
}

impl EndReason {
    /// The FATAL message the session's client and the server log get. `at` formats a Unix
    /// time as the server shows timestamps.
    pub fn message(&self, at: impl Fn(i64) -> String) -> String {
        match self {
            EndReason::Expired { exp, .. } => format!(
                "terminating connection because its access token expired at {}",
                at(*exp)
            ),
            EndReason::Revoked { revoked_before } => format!(
                "terminating connection because the tokens of its principal issued at or before {} were revoked",
                at(*revoked_before)
            ),
        }
    }

    pub fn detail(&self) -> String {
        match self {
            EndReason::Expired { after, .. } => format!(
                "pgaadauth.session_lifetime is \"token\": a token session lasts until its token expires, plus pgaadauth.clock_skew and pgaadauth.session_expiry_grace ({after} s here)."
            ),
            EndReason::Revoked { .. } => {
                "An administrator ran pgaadauth_revoke_tokens for this session's principal.".into()
            }
        }
    }

    pub fn hint(&self) -> &'static str {
        "Connect again with a new access token."
    }

    /// The reason code in the server log.
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::Expired { .. } => "expired",
            EndReason::Revoked { .. } => "revoked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: OpenSession = OpenSession {
        exp: 1000,
        iat: Some(400),
    };

    #[test]
    fn revocation_covers_its_own_second_and_tokens_without_iat() {
        assert!(is_revoked(Some(500), 500));
        assert!(is_revoked(Some(499), 500));
        assert!(!is_revoked(Some(501), 500));
        assert!(is_revoked(None, 500));
        assert_eq!(check_revocation(Some(501), Some(500)), Ok(()));
        assert_eq!(check_revocation(Some(1), None), Ok(()));
        assert_eq!(
            check_revocation(Some(500), Some(500)).unwrap_err().code(),
            "revoked"
        );
    }

    #[test]
    fn sessions_end_at_expiry_plus_skew_and_grace_only_under_token_lifetime() {
        assert_eq!(must_end(S, 5000, Lifetime::Unlimited, None), None);
        let token = Lifetime::Token { after: 60 };
        assert_eq!(must_end(S, 1060, token, None), None);
        assert_eq!(
            must_end(S, 1061, token, None),
            Some(EndReason::Expired {
                exp: 1000,
                after: 60
            })
        );
        assert_eq!(must_end(S, 1000, Lifetime::Token { after: 0 }, None), None);
    }

    #[test]
    fn revocation_ends_sessions_whatever_the_lifetime() {
        assert_eq!(
            must_end(S, 0, Lifetime::Unlimited, Some(400)),
            Some(EndReason::Revoked {
                revoked_before: 400
            })
        );
        // A session whose token came after the revocation stays.
        assert_eq!(must_end(S, 0, Lifetime::Unlimited, Some(399)), None);
    }

    #[test]
    fn messages_say_why() {
        let at = |t: i64| format!("t{t}");
        let e = EndReason::Expired { exp: 5, after: 30 };
        assert_eq!(
            e.message(at),
            "terminating connection because its access token expired at t5"
        );
        assert!(e.detail().ends_with("(30 s here)."));
        let r = EndReason::Revoked { revoked_before: 7 };
        assert!(r
            .message(at)
            .contains("issued at or before t7 were revoked"));
        assert!(r.detail().contains("pgaadauth_revoke_tokens"));
    }
}
