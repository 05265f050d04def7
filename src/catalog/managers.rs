//! Who may manage Entra principals (superusers and Entra administrators, in sessions they logged
//! in to themselves), and running a checked statement with the bootstrap superuser's rights.

use crate::catalog::labels::{label_of_role, RoleLabel};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

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

/// Refuse, with a hint, unless this role has the privileges of the built-in role `reader`
/// (pg_monitor, pg_read_all_stats) or this session may manage Entra principals.
pub fn require_reader_or_principal_manager(reader: u32, what: &str) {
    let reads =
        unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(reader)) };
    if !reads {
        require_principal_manager(what);
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
