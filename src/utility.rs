//! The ProcessUtility hook: dropping a role mapped to an Entra principal is reserved to
//! superusers and Entra administrators, as creating one is.

use crate::seclabel::{label_of_role_name, require_principal_manager, RoleLabel};
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
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_DropRoleStmt {
            let stmt = node as *mut pg_sys::DropRoleStmt;
            for spec in PgList::<pg_sys::RoleSpec>::from_pg((*stmt).roles).iter_ptr() {
                if (*spec).roletype != pg_sys::RoleSpecType::ROLESPEC_CSTRING
                    || (*spec).rolename.is_null()
                {
                    continue;
                }
                let name = CStr::from_ptr((*spec).rolename);
                if !matches!(label_of_role_name(name), RoleLabel::None) {
                    require_principal_manager(&format!(
                        "drop role \"{}\", which is mapped to an Entra principal",
                        name.to_string_lossy()
                    ));
                }
            }
        }
        match PREV_PROCESS_UTILITY {
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
        }
    }
}

pub fn install() {
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}
