//! Who the current session is: recorded once, at login, in the backend's own memory (and its
//! slot of the shared session table); `pgaadauth_session()`, `pgaadauth_session_claims()` and
//! the rows of the `pgaadauth.sessions` view. Nothing in SQL can change it.

use crate::settings;
use crate::shmem::sessions::{self, Identity};
use pgaadauth_core::audit::Method;
use pgaadauth_core::token::Verified;
use std::cell::RefCell;

/// A token's verified claims, shared.
pub type Claims = std::sync::Arc<serde_json::Map<String, serde_json::Value>>;

struct Session {
    identity: Identity,
    /// The token's verified claims, when `pgaadauth.session_claims` was on at login.
    claims: Option<Claims>,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// A token login succeeded (token as password, or OAuth). `pooled`: the token is one a
/// connection pooler's check accepted, so this is the pooler's session, for whichever of its
/// clients comes next: it shows no person and keeps no claims (the token's principal is kept
/// only for revocation and expiry).
pub fn record_token(method: Method, verified: &Verified, pooled: bool) {
    let identity = Identity {
        method: if pooled { "pooler" } else { method.as_str() }.into(),
        object_id: Some(verified.principal.clone()),
        tenant_id: verified.tid.clone(),
        upn: verified.upn.clone(),
        app_id: verified.appid.clone(),
        via_group: verified.via_group.clone(),
        expires: Some(verified.exp),
        issued: verified.iat,
        pooled,
    };
    // Bounded: the claims of a token of at most token::MAX_TOKEN_LEN bytes.
    let claims = (settings::SESSION_CLAIMS.get() && !pooled).then(|| verified.claims.clone());
    record(identity, claims);
}

/// A login without a token: pgaadauth's password fallback (`password`), or another method
/// of pg_hba.conf (its name).
pub fn record_other(method: &str) {
    record(
        Identity {
            method: method.into(),
            ..Identity::default()
        },
        None,
    );
}

fn record(identity: Identity, claims: Option<Claims>) {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return; // recorded once, at login
        }
        sessions::register(&identity);
        *s = Some(Session { identity, claims });
    });
}

/// This session's identity, recorded at login (none before login, or in a background worker);
/// a pooler's session shows its method and deadline only.
pub fn current() -> Option<Identity> {
    SESSION.with(|s| s.borrow().as_ref().map(|s| shown(s.identity.clone())))
}

/// An identity as SQL shows it: a pooler's session without the person of its token.
pub fn shown(identity: Identity) -> Identity {
    if !identity.pooled {
        return identity;
    }
    Identity {
        method: identity.method,
        expires: identity.expires,
        pooled: true,
        ..Identity::default()
    }
}

/// This session's verified token claims: `None` for a session without a token; `Some(None)`
/// when they were not kept (`pgaadauth.session_claims` was off at login, or a pooler's
/// session, which has none: see [`current`]).
pub fn claims() -> Option<Option<Claims>> {
    SESSION.with(|s| {
        let s = s.borrow();
        let session = s.as_ref()?;
        session.identity.expires?;
        Some(session.claims.clone())
    })
}
