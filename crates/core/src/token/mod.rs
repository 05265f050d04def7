//! Access-token validation: a pure function of (token, keys, policy, label, now), no pgrx.
//!
//! Every way a token can be refused is a [`Reject`] variant with its own log text; nothing here
//! ever formats the token or its signature.

//! Split by concern: [`reject`] (the catalogue of reasons), [`jws`] (the compact form and its
//! signature), [`keys`] (which cached keys may verify a token), [`verify`] (everything that does
//! not depend on the role), [`authorize`] (the label's rules), [`self_test`].

mod authorize;
mod jws;
mod keys;
mod reject;
mod self_test;
#[cfg(test)]
mod tests;
mod verify;

pub use authorize::{authorize, Membership, NoDirectory};
pub use keys::{CachedKey, KeyLookup};
pub use reject::{
    Reject, DECISION_CODES, LABEL_MALFORMED, LINE_ISSUER, REASON_CODES, ROLE_NOT_LABELLED,
};
pub use self_test::warm_up;
pub use verify::{verify, Authentic};

use crate::config::Alg;
use crate::label::Label;
use serde_json::{Map, Value};
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
/// then [`authorize`].
/// Decide whether `token` lets its bearer log in as the principal of `label`: [`verify`],
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
