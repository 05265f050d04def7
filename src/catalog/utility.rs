//! The ProcessUtility hook: dropping a role mapped to an Entra principal, or setting a role's
//! pgaadauth label, is reserved to superusers and Entra administrators, as creating one is.

use crate::catalog::labels::{label_of_role_name, RoleLabel, PROVIDER};
use crate::catalog::managers::{as_bootstrap_superuser, require_principal_manager};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgList;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::ffi::{c_char, CStr};

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        let node = (*pstmt).utilityStmt;
        let mut elevate = false;
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_DropRoleStmt {
            elevate = check_drop_role(node as *mut pg_sys::DropRoleStmt);
        }
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_SecLabelStmt {
            check_security_label(node as *mut pg_sys::SecLabelStmt);
        }
        let run = || match PREV_PROCESS_UTILITY {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        };
        if elevate {
            as_bootstrap_superuser(run)
        } else {
            run()
        }
    }
}

/// Refuse a DROP ROLE of an Entra role by anyone but a principal manager. Whether to run it
/// with the bootstrap superuser's rights: when a principal manager that is not a superuser
/// drops only existing Entra roles, none of them a superuser, a REPLICATION or BYPASSRLS role,
/// a predefined role, the session user or the current user; so that an Entra administrator
/// drops Entra roles on PostgreSQL 16+ (where CREATEROLE covers only roles one created) as on
/// 15. Anything else follows PostgreSQL's own rules.
unsafe fn check_drop_role(stmt: *mut pg_sys::DropRoleStmt) -> bool {
    let mut elevate = true;
    let mut any = false;
    let (session, current) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
    for spec in unsafe { PgList::<pg_sys::RoleSpec>::from_pg((*stmt).roles).iter_ptr() } {
        let spec = unsafe { &*spec };
        if spec.roletype != pg_sys::RoleSpecType::ROLESPEC_CSTRING || spec.rolename.is_null() {
            elevate = false;
            continue;
        }
        let name = unsafe { CStr::from_ptr(spec.rolename) };
        let roleid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
        if roleid == pg_sys::InvalidOid {
            continue;
        }
        if matches!(label_of_role_name(name), RoleLabel::None) {
            elevate = false;
            continue;
        }
        require_principal_manager(&format!(
            "drop role \"{}\", which is mapped to an Entra principal",
            name.to_string_lossy()
        ));
        any = true;
        let protected = unsafe {
            pg_sys::superuser_arg(roleid)
                || pg_sys::has_rolreplication(roleid)
                || pg_sys::has_bypassrls_privilege(roleid)
        };
        let predefined = roleid.to_u32() < pg_sys::FirstNormalObjectId;
        if roleid == session || roleid == current || protected || predefined {
            elevate = false;
        }
    }
    elevate && any && !unsafe { pg_sys::superuser() }
}

/// A `SECURITY LABEL FOR pgaadauth ON ROLE`: only principal managers, never on a superuser
/// role but by a superuser. PostgreSQL's own rules apply on top (from 16: ADMIN OPTION on the
/// role), and are never lifted: a label lets whoever holds its principal's token log in as the
/// role, so labelling a role one may not administer would be taking it over.
unsafe fn check_security_label(stmt: *mut pg_sys::SecLabelStmt) {
    let stmt = unsafe { &*stmt };
    let ours = stmt.provider.is_null() || unsafe { CStr::from_ptr(stmt.provider) } == PROVIDER;
    if stmt.objtype != pg_sys::ObjectType::OBJECT_ROLE || !ours || stmt.object.is_null() {
        return;
    }
    // The role's name: a String node (a Value node on PostgreSQL 14).
    #[cfg(feature = "pg14")]
    let name = unsafe { (*(stmt.object as *mut pg_sys::Value)).val.str_ };
    #[cfg(not(feature = "pg14"))]
    let name = unsafe { (*(stmt.object as *mut pg_sys::String)).sval };
    if name.is_null() {
        return;
    }
    let name = unsafe { CStr::from_ptr(name) };
    let roleid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    if roleid == pg_sys::InvalidOid {
        return;
    }
    let what = format!(
        "set the pgaadauth label of role \"{}\"",
        name.to_string_lossy()
    );
    require_principal_manager(&what);
    if unsafe { pg_sys::superuser_arg(roleid) && !pg_sys::superuser() } {
        // Mapping a superuser role to a principal would hand that principal the superuser.
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}: it is a superuser"),
            "pgaadauth",
        )
        .set_hint("Only superusers may map a superuser role to an Entra principal.")
        .report(PgLogLevel::ERROR);
    }
}

pub fn install() {
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}
