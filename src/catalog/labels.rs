//! The `pgaadauth` security label provider, and reading a role's label.

use pgaadauth_core::label::{Label, LabelError};
use pgrx::prelude::*;
use std::ffi::CStr;

pub const PROVIDER: &CStr = c"pgaadauth";

/// What a role's `pgaadauth` label says.
pub enum RoleLabel {
    None,
    Label(Label),
    Malformed(LabelError),
}

/// A role's label. For a role group sync created, MFA is required also when the role is a
/// member of a group role whose label requires it: from the moment the group's label says so,
/// not only from the sync that copies it into the member's label.
pub fn label_of_role(roleid: pg_sys::Oid) -> RoleLabel {
    match stored_label_of_role(roleid) {
        RoleLabel::Label(mut label) if label.synced && !label.mfa => {
            label.mfa = member_of_a_group_requiring_mfa(roleid);
            RoleLabel::Label(label)
        }
        other => other,
    }
}

/// Whether `roleid` is directly a member of a role labelled `type=group` with `mfa`.
fn member_of_a_group_requiring_mfa(roleid: pg_sys::Oid) -> bool {
    crate::catalog::privileges::direct_groups(roleid).into_iter().any(|group| {
        matches!(
            stored_label_of_role(group),
            RoleLabel::Label(l) if l.principal_type == pgaadauth_core::label::PrincipalType::Group && l.mfa
        )
    })
}

/// The label as stored.
pub fn stored_label_of_role(roleid: pg_sys::Oid) -> RoleLabel {
    let object = pg_sys::ObjectAddress {
        classId: pg_sys::AuthIdRelationId,
        objectId: roleid,
        objectSubId: 0,
    };
    // SAFETY: reads pg_shseclabel, a shared catalog available from authentication on.
    let text = unsafe { pg_sys::GetSecurityLabel(&object, PROVIDER.as_ptr()) };
    if text.is_null() {
        return RoleLabel::None;
    }
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    match Label::parse(&text) {
        Ok(label) => RoleLabel::Label(label),
        Err(e) => RoleLabel::Malformed(e),
    }
}

/// The label of the role named `name`; `None` also when no such role exists.
pub fn label_of_role_name(name: &CStr) -> RoleLabel {
    let roleid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if roleid == pg_sys::InvalidOid {
        return RoleLabel::None;
    }
    label_of_role(roleid)
}
