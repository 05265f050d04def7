//! The label provider's hook: checks every `SECURITY LABEL FOR pgaadauth` (the grammar, who
//! may set `synced` and `disabled`, and the binding rule of [`crate::catalog::privileges`]).

use crate::catalog::labels::{stored_label_of_role, RoleLabel, PROVIDER};
use crate::catalog::managers::require_principal_manager;
use crate::catalog::names::{capitalized, role_name};
use pgaadauth_core::label::Label;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr};

#[pg_guard]
unsafe extern "C-unwind" fn check_relabel(
    object: *const pg_sys::ObjectAddress,
    seclabel: *const c_char,
) {
    let object = unsafe { &*object };
    if object.classId != pg_sys::AuthIdRelationId {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "pgaadauth labels can only be set on roles",
            "pgaadauth",
        )
        .report(PgLogLevel::ERROR);
    }
    let role = role_name(object.objectId);
    require_principal_manager(&format!("set the pgaadauth label of role \"{role}\""));
    // `synced` hands the role to group sync, which runs as a superuser; taking it away makes the
    // sync's grants and LOGIN permanent. Either way only a superuser (or the sync) decides.
    let refuse_synced = |what: &str| {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what} role \"{role}\""),
            "pgaadauth",
        )
        .set_hint(
            "Only superusers may set or remove \"synced\" or \"disabled\" in a pgaadauth label.",
        )
        .report(PgLogLevel::ERROR)
    };
    let superuser = unsafe { pg_sys::superuser() };
    let before = match stored_label_of_role(object.objectId) {
        RoleLabel::Label(l) => Some(l),
        RoleLabel::None | RoleLabel::Malformed(_) => None,
    };
    let was_synced = before.as_ref().is_some_and(|l| l.synced);
    if seclabel.is_null() {
        if was_synced && !superuser {
            refuse_synced("take from group sync");
        }
        return;
    }
    let text = unsafe { CStr::from_ptr(seclabel) }.to_string_lossy();
    match Label::parse(&text) {
        Err(e) => ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            format!("invalid pgaadauth label for role \"{role}\""),
            "pgaadauth",
        )
        .set_detail(format!("{}.", capitalized(&e.to_string())))
        .set_hint("The form is 'aadauth,oid=<guid>,type=<user|group|service>[,tid=<guid>][,admin][,mfa][,synced][,disabled]'.")
        .report(PgLogLevel::ERROR),
        Ok(label) if label.synced && !was_synced && !superuser => {
            refuse_synced("hand to group sync")
        }
        Ok(label) if !label.synced && was_synced && !superuser => {
            refuse_synced("take from group sync")
        }
        Ok(label) if label.disabled != before.as_ref().is_some_and(|l| l.disabled) && !superuser => {
            refuse_synced("change group sync's NOLOGIN mark of")
        }
        Ok(label) => {
            let change = crate::catalog::privileges::change_between(before.as_ref(), &label);
            crate::catalog::privileges::require_may_bind(
                &crate::catalog::privileges::managers(),
                object.objectId,
                &role,
                change,
            );
        }
    }
}

pub fn register() {
    unsafe { pg_sys::register_label_provider(PROVIDER.as_ptr(), Some(check_relabel)) };
}
