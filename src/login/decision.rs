//! The one decision of a token login, for every door: from what the door knows (the role, its
//! label, the token, the oauth line's issuer) and one reading of the clock, the verified
//! identity or why not. It records nothing: [`crate::login::outcome`] does.
//!
//! The token is authenticated first (the shared keys; an unknown kid asks the key worker for
//! one coalesced, rate-limited refresh and waits on the latch: never the network), then the
//! role's mapping applies: the label's rules, or PostgreSQL's user map on an `oauth` line
//! without `delegate_ident_mapping`.

use crate::catalog::labels::RoleLabel;
use crate::settings;
use crate::shmem::counters::{self, Counter};
use crate::shmem::keys::{self, Refresh, SharedKeys};
use crate::shmem::mailbox::{self, Question};
use crate::shmem::revocations;
use pgaadauth_core::audit::Method;
use pgaadauth_core::label::{normalize_guid, Label};
use pgaadauth_core::log_text::log_safe;
use pgaadauth_core::oauth_line::{admitted_issuers, issuer_of_line_option};
use pgaadauth_core::token::{self, Authentic, Membership, NoDirectory, Policy, Reject, Verified};
use std::rc::Rc;

/// The way a token reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// As the password, on a `trust` line (the ClientAuthentication hook).
    Password,
    /// In a SASL OAUTHBEARER exchange, on an `oauth` line (PostgreSQL 18's validator).
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    OAuth,
    /// As the password of a PgBouncer client (`pgaadauth_pooler_login`).
    Pooler,
    /// `pgaadauth_validate_token`: decided as a login would be, and recorded nowhere.
    Validate,
}

impl Door {
    /// The `method` of the audit line and of `pgaadauth_session()`.
    pub fn method(self) -> Method {
        match self {
            Door::Password | Door::Validate => Method::Token,
            Door::OAuth => Method::OAuth,
            Door::Pooler => Method::PgBouncer,
        }
    }
}

/// Who decides which roles the token's principal may use.
pub enum Mapping {
    /// The role's pgaadauth label (every door; `oauth` lines with `delegate_ident_mapping=1`).
    Label(RoleLabel),
    /// PostgreSQL's user map, after the token verified (`oauth` lines without delegation).
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    UserMap,
}

/// What a door knows about one login.
pub struct Attempt<'a> {
    pub door: Door,
    pub role: &'a str,
    pub token: &'a str,
    /// The client's address, for the audit line.
    pub client: Option<&'a str>,
    pub mapping: Mapping,
    /// The `issuer` option of the `oauth` line (OAuth only).
    pub line_issuer: Option<&'a str>,
}

impl Attempt<'_> {
    /// The role's label, when it has a well-formed one.
    pub fn label(&self) -> Option<&Label> {
        match &self.mapping {
            Mapping::Label(RoleLabel::Label(l)) => Some(l),
            _ => None,
        }
    }
}

/// Why a login is refused.
#[derive(Debug)]
pub struct Refusal {
    /// The reason code (audit line, counters, `pgaadauth_validate_token`).
    pub code: &'static str,
    /// Why, for the server log (values from the token made log-safe).
    pub detail: String,
    /// Who the token speaks for, when it verified before the role's rules refused it.
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    pub principal: Option<String>,
}

impl Refusal {
    fn token(reject: Reject, note: &str, principal: Option<String>) -> Refusal {
        Refusal {
            code: reject.code(),
            detail: format!("{reject}{note}"),
            principal,
        }
    }
}

/// Decide `attempt` now: one reading of the clock, read again only after a wait (a key
/// refresh), so that a token never outlives its `exp` during the login.
pub fn decide(attempt: &Attempt<'_>) -> Result<Verified, Refusal> {
    if attempt.token.is_empty() {
        return Err(Refusal::token(
            Reject::NotCompactJws,
            " The client sent an empty password.",
            None,
        ));
    }
    let policy = policy_for(attempt)?;
    let (authentic, now) = verify(attempt.token, &policy, attempt.line_issuer)
        .map_err(|(reject, note)| Refusal::token(reject, &note, None))?;
    let principal = || Some(authentic.principal.clone());
    match &attempt.mapping {
        Mapping::UserMap => Ok(authentic.identity()),
        Mapping::Label(RoleLabel::Label(label)) => {
            let membership = DirectoryMembership { now };
            token::authorize(&authentic, label, &membership, &policy)
                .map_err(|reject| Refusal::token(reject, "", principal()))
        }
        Mapping::Label(RoleLabel::Malformed(e)) => Err(Refusal {
            code: token::LABEL_MALFORMED,
            detail: format!("The role's pgaadauth label is malformed: {e}."),
            principal: principal(),
        }),
        Mapping::Label(RoleLabel::None) => Err(Refusal {
            code: token::ROLE_NOT_LABELLED,
            detail: format!(
                "Role \"{}\" has no pgaadauth label{}",
                log_safe(attempt.role),
                match attempt.door {
                    Door::OAuth => "; an oauth line with delegate_ident_mapping=1 logs in only labelled roles.",
                    _ => ": a login checks its PostgreSQL password instead (or is refused when pgaadauth.password_auth is off).",
                }
            ),
            principal: principal(),
        }),
    }
}

/// The settings' policy; on an `oauth` line, its issuers narrowed to the line's.
fn policy_for(attempt: &Attempt<'_>) -> Result<Rc<Policy>, Refusal> {
    let policy = settings::policy();
    let Some(line_issuer) = attempt.line_issuer else {
        return Ok(policy);
    };
    let issuers = settings::issuer_settings();
    let mut narrowed = (*policy).clone();
    narrowed.issuers = admitted_issuers(
        line_issuer,
        &policy.issuers,
        &issuers.tenant_id,
        &issuers.authority_host,
    );
    if narrowed.issuers.is_empty() {
        return Err(Refusal {
            code: token::LINE_ISSUER,
            detail: format!(
                "The issuer \"{}\" of the oauth line is not one pgaadauth accepts.",
                log_safe(&issuer_of_line_option(line_issuer))
            ),
            principal: None,
        });
    }
    Ok(Rc::new(narrowed))
}

/// Everything about `token` that does not depend on the role, against the shared keys, and
/// not revoked; on an unknown kid one coalesced, rate-limited refresh first. With the time it
/// was decided at. The error carries a note for the log (on that refresh, or on an issuer this
/// line does not name).
fn verify(
    token: &str,
    policy: &Policy,
    line_issuer: Option<&str>,
) -> Result<(Authentic, i64), (Reject, String)> {
    let timing = settings::timing();
    let now = pgaadauth_core::clock::unix_now();
    let check = |now: i64| {
        token::verify(token, &SharedKeys { now, timing }, policy, now)
            .and_then(|a| revocations::check(&a.principal, a.iat).map(|()| a))
    };
    let result = check(now);
    // An unknown kid, or a kid that only another issuer's key set holds: perhaps this
    // issuer's new key (issuers may name keys alike).
    let key_miss = |r: &Reject| {
        matches!(
            r,
            Reject::UnknownKid(_) | Reject::IssuerNotServedByKey { .. }
        )
    };
    let reject = match result {
        Ok(a) => return Ok((a, now)),
        Err(r) if !key_miss(&r) => {
            let note = line_note(&r, line_issuer);
            return Err((r, note));
        }
        Err(r) => r,
    };
    // Perhaps a new signing key: have the worker refresh (once for every login waiting now,
    // at most once per min_refresh_interval), then decide.
    counters::bump(Counter::KidMisses);
    let now = pgaadauth_core::clock::unix_now();
    let refresh = keys::refresh_and_wait(now, &timing, settings::kid_miss_wait(), true);
    // The wait took time: decide at the time it ended.
    let now = pgaadauth_core::clock::unix_now();
    if !matches!(refresh, Refresh::RateLimited | Refresh::NoWorker) {
        counters::bump(Counter::KidMissRefreshes);
    }
    let (result, note) = match refresh {
        Refresh::Changed => (check(now), " The key set was refreshed and still lacks it."),
        Refresh::Unchanged => (Err(reject), " A refresh of the key set did not bring it."),
        Refresh::RateLimited => (
            Err(reject),
            " The key set was refreshed less than pgaadauth.min_refresh_interval ago.",
        ),
        Refresh::TimedOut => (
            Err(reject),
            " A refresh of the key set did not finish within pgaadauth.kid_miss_wait.",
        ),
        Refresh::NoWorker => (Err(reject), " The pgaadauth key worker is not running."),
    };
    result.map(|a| (a, now)).map_err(|r| {
        let mut note = note.to_string();
        if !key_miss(&r) {
            note = line_note(&r, line_issuer);
        } else if keys::key_count() == 0 {
            note.push_str(" No signing keys are cached yet; see the pgaadauth key worker's messages in this log.");
        }
        (r, note)
    })
}

/// On an `oauth` line whose issuer narrowed the policy: an issuer pgaadauth accepts, but not
/// this line's, is said so.
fn line_note(reject: &Reject, line_issuer: Option<&str>) -> String {
    match (reject, line_issuer) {
        (Reject::IssuerNotAccepted(iss), Some(line))
            if settings::policy().issuers.contains(iss) =>
        {
            format!(
                " pgaadauth accepts it, but this oauth line names the issuer \"{}\".",
                log_safe(&issuer_of_line_option(line))
            )
        }
        _ => String::new(),
    }
}

/// Group membership beyond the token's `groups` claim: the shared cache, else a question to
/// the directory worker, which asks the directory.
struct DirectoryMembership {
    now: i64,
}

impl Membership for DirectoryMembership {
    fn is_member(&self, member: &str, group: &str) -> Result<bool, String> {
        let member = normalize_guid(member).unwrap_or_else(|| member.to_string());
        if let Some(known) = mailbox::cached_membership(&member, group, self.now) {
            counters::bump(Counter::GroupCacheHits);
            return Ok(known);
        }
        if !settings::directory_configured() {
            return NoDirectory.is_member(&member, group);
        }
        let wait = settings::http_timeout() * 3;
        mailbox::ask(Question::Membership, &member, group, wait).map(|a| a == "true")
    }
}
