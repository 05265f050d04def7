//! What the text settings derive (the accepted issuers, the token policy), computed when one of
//! them is assigned: in the postmaster at start and at every reload, so that each backend it
//! forks starts with it, and a login never parses a setting.

use super::{text, ALLOWED_ALGORITHMS, AUDIENCES, AUTHORITY_HOST, CLOCK_SKEW, ISSUERS, JWKS_URI};
use super::{PRINCIPAL_CLAIM, TENANT_ID};
use pgaadauth_core::config::{parse_algorithms, split_list, IssuerSettings};
use pgaadauth_core::label::normalize_guid;
use pgaadauth_core::token::Policy;
use std::cell::RefCell;
use std::rc::Rc;

/// The text settings the derivation reads.
#[derive(Clone, Copy)]
pub enum Input {
    TenantId,
    AuthorityHost,
    Issuers,
    JwksUri,
    Audiences,
    PrincipalClaim,
    AllowedAlgorithms,
}

/// Their values as last assigned.
#[derive(Default)]
struct Values {
    tenant_id: String,
    authority_host: String,
    issuers: String,
    jwks_uri: String,
    audiences: String,
    principal_claim: String,
    allowed_algorithms: String,
}

pub struct Derived {
    pub issuers: IssuerSettings,
    pub policy: Rc<Policy>,
}

thread_local! {
    static VALUES: RefCell<Option<Values>> = const { RefCell::new(None) };
    static DERIVED: RefCell<Option<Rc<Derived>>> = const { RefCell::new(None) };
}

fn derive(v: &Values) -> Derived {
    let issuers = IssuerSettings {
        tenant_id: normalize_guid(&v.tenant_id).unwrap_or_default(),
        authority_host: v.authority_host.clone(),
        issuers: v.issuers.clone(),
        jwks_uri: v.jwks_uri.clone(),
    };
    let policy = Policy {
        issuers: issuers.accepted_issuers(),
        audiences: split_list(&v.audiences),
        // The check hook refuses invalid lists, so this cannot fail for a value in force.
        algorithms: parse_algorithms(&v.allowed_algorithms).unwrap_or_default(),
        principal_claim: v.principal_claim.clone(),
        clock_skew: i64::from(CLOCK_SKEW.get()),
        tenant_id: normalize_guid(&v.tenant_id),
    };
    Derived {
        issuers,
        policy: Rc::new(policy),
    }
}

/// The values in force now, read from the settings.
fn read() -> Values {
    Values {
        tenant_id: text(&TENANT_ID),
        authority_host: text(&AUTHORITY_HOST),
        issuers: text(&ISSUERS),
        jwks_uri: text(&JWKS_URI),
        audiences: text(&AUDIENCES),
        principal_claim: text(&PRINCIPAL_CLAIM),
        allowed_algorithms: text(&ALLOWED_ALGORITHMS),
    }
}

/// An input's assign hook: `value` is about to be in force (PostgreSQL stores it after the
/// hook returns), so derive with it in place of the old value. Cannot fail.
pub fn assigned(input: Input, value: &str) {
    VALUES.with(|values| {
        let mut values = values.borrow_mut();
        let v = values.get_or_insert_with(read);
        let value = value.trim().to_string();
        match input {
            Input::TenantId => v.tenant_id = value,
            Input::AuthorityHost => v.authority_host = value,
            Input::Issuers => v.issuers = value,
            Input::JwksUri => v.jwks_uri = value,
            Input::Audiences => v.audiences = value,
            Input::PrincipalClaim => v.principal_claim = value,
            Input::AllowedAlgorithms => v.allowed_algorithms = value,
        }
        let derived = Rc::new(derive(v));
        DERIVED.with(|d| *d.borrow_mut() = Some(derived));
    });
}

/// What the settings in force derive.
pub fn current() -> Rc<Derived> {
    DERIVED.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(|| Rc::new(derive(&read())))
            .clone()
    })
}
