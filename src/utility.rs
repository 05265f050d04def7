//! The ProcessUtility hook: dropping a role mapped to an Entra principal is reserved to
//! superusers and Entra administrators, as creating one is.

use crate::seclabel::{
    as_bootstrap_superuser, label_of_role_name, require_principal_manager, RoleLabel,
};
use pgrx::pg_sys;
use pgrx::PgList;
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
/// with the bootstrap superuser's rights: when a principal manager drops only existing Entra
/// roles that are neither superusers nor itself, so that an Entra administrator drops Entra
/// roles on PostgreSQL 16+ (where CREATEROLE covers only roles one created) as on 15.
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
        if roleid == session || roleid == current || unsafe { pg_sys::superuser_arg(roleid) } {
            elevate = false;
        }
    }
    elevate && any
}

pub fn install() {
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}
