//! The label's rules for a verified token: tenant, principal or group membership, MFA.

use super::{reject::*, verify::*, Policy, Verified};
use crate::label::{normalize_guid, same_id, Label, PrincipalType};
use serde_json::{Map, Value};

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
/// Group login: the `groups` claim decides when it is complete; on group overage
/// (`_claim_names.groups`) or without the claim, the directory does.
pub(super) fn check_group_member(
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
/// label's tenant, its principal (or, for a group, membership), and its MFA requirement.
/// Decide whether the verified token lets its bearer log in as the principal of `label`: the
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
                    // An application's own token (no delegated scopes): a user's token names
                    // the app the user signed in through, whose principal is not this one.
                    want_is_appid: !claims.contains_key("scp")
                        && ["appid", "azp"]
                            .iter()
                            .filter_map(|c| string(claims, c))
                            .any(|app| same_id(app, &label.oid)),
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
