//! The `pgaadauth` security label provider, and reading a role's label.

use pgaadauth_core::label::{Label, LabelError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr, CString};

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

/// Superusers and Entra administrators (a label with `admin`) manage Entra principals.
pub fn may_manage_principals(roleid: pg_sys::Oid) -> bool {
    let superuser = unsafe { pg_sys::superuser_arg(roleid) };
    superuser || matches!(label_of_role(roleid), RoleLabel::Label(l) if l.admin)
}

/// Whether this session may manage Entra principals: the role it logged in as (the session
/// user) and the role it acts as now (the current user) must both be superusers or Entra
/// administrators. The session user is what keeps a CREATEROLE role out: on PostgreSQL 15
/// and older it can grant itself an administrator's role and `SET ROLE` to it, which changes
/// the current user but never the session user.
fn session_may_manage_principals() -> bool {
    let (session, current) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
    may_manage_principals(session) && (current == session || may_manage_principals(current))
}

/// Refuse, with a hint, when this session may not manage Entra principals.
pub fn require_principal_manager(what: &str) {
    if !session_may_manage_principals() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}"),
            "pgaadauth",
        )
        .set_hint(
            "Only superusers and Entra administrators (roles whose pgaadauth label has \"admin\") may manage Entra principals, and only in sessions they logged in to themselves.",
        )
        .report(PgLogLevel::ERROR);
    }
}

/// As [`require_principal_manager`], for functions whose arguments may hold a token: from here
/// to the end of the transaction no error logs its statement (`log_min_error_statement` is
/// raised to `panic` for the transaction), whether it is this refusal, a cancel, or
/// `statement_timeout` while the function waits for a key refresh.
pub fn require_principal_manager_quietly(what: &str) {
    quiet_errors_until_end_of_transaction();
    require_principal_manager(what);
}

/// From here to the end of the transaction no error logs its statement
/// (`log_min_error_statement` is raised to `panic` for the transaction): for functions whose
/// arguments may hold a token or a password.
pub fn quiet_errors_until_end_of_transaction() {
    unsafe {
        pg_sys::set_config_option(
            c"log_min_error_statement".as_ptr(),
            c"panic".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

/// Run `f` with the bootstrap superuser's rights, for statements on Entra roles that this
/// session was already found allowed to run ([`require_principal_manager`]). PostgreSQL 16
/// made CREATEROLE a per-role right (ADMIN OPTION); with this an Entra administrator creates,
/// promotes and drops Entra principals on every major as CREATEROLE did up to 15.
///
/// While elevated, `search_path` is `pg_catalog, pg_temp` (no function or operator of the
/// caller's schemas can run as the superuser), and the context is a security-restricted
/// operation. The previous user comes back when `f` returns or unwinds (a PostgreSQL error
/// inside `f` unwinds through here), and the search path at the end of `f` or with the
/// (sub)transaction's abort.
pub fn as_bootstrap_superuser<R>(f: impl FnOnce() -> R) -> R {
    /// Gives the user id and security context back, also during an unwind.
    struct Restore {
        user: pg_sys::Oid,
        context: i32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
        }
    }
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let restore = Restore { user, context };
    let nest_level = unsafe {
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest_level
    };
    let result = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    drop(restore);
    result
}

pub fn role_name(roleid: pg_sys::Oid) -> String {
    let name = unsafe { pg_sys::GetUserNameFromId(roleid, true) };
    if name.is_null() {
        format!("{}", roleid.to_u32())
    } else {
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}

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

pub(crate) fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

pub fn register() {
    unsafe { pg_sys::register_label_provider(PROVIDER.as_ptr(), Some(check_relabel)) };
}

/// `name` as a C string; role names never hold NUL, but never panic on one.
pub fn c_string(name: &str) -> CString {
    CString::new(name.replace('\0', "")).unwrap_or_default()
}
