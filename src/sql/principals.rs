//! SQL functions with Azure Database for PostgreSQL's names and shapes.

use crate::catalog::managers::{as_bootstrap_superuser, require_principal_manager};
use crate::catalog::names::{c_string, quote_ident, quote_literal, role_exists};
use crate::settings;
use pgaadauth_core::label::{normalize_guid, Label, PrincipalType};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

fn invalid_argument(message: String, hint: &str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        "pgaadauth",
    )
    .set_hint(hint)
    .report(PgLogLevel::ERROR);
    unreachable!()
}

/// `SECURITY LABEL FOR pgaadauth ON ROLE rolename IS label` (the label hook checks it).
fn label_role(rolename: &str, label: &Label) {
    Spi::run(&format!(
        "SECURITY LABEL FOR \"pgaadauth\" ON ROLE {} IS {}",
        quote_ident(rolename),
        quote_literal(&label.to_string())
    ))
    .unwrap_or_else(|e| error!("could not label role \"{rolename}\": {e}"));
}

/// Create the role Entra administrators are members of, when it does not exist yet.
fn ensure_admin_role(admin_role: &str) {
    if !role_exists(admin_role) {
        Spi::run(&format!("CREATE ROLE {} NOLOGIN", quote_ident(admin_role)))
            .unwrap_or_else(|e| error!("could not create role \"{admin_role}\": {e}"));
    }
}

/// The label the create and update functions give a role, from Azure's arguments.
fn principal_label(
    rolename: &str,
    objectid: &str,
    objecttype: &str,
    isadmin: bool,
    ismfa: bool,
) -> Label {
    if rolename.is_empty() {
        invalid_argument("roleName must not be empty".into(), "Name the role.");
    }
    let oid = normalize_guid(objectid.trim()).unwrap_or_else(|| {
        invalid_argument(
            format!("objectId \"{objectid}\" is not a GUID"),
            "Pass the directory object id, e.g. 6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b.",
        )
    });
    let principal_type = PrincipalType::parse(objecttype.trim()).unwrap_or_else(|| {
        invalid_argument(
            format!("objectType \"{objecttype}\" is not valid"),
            "Use \"user\", \"group\" or \"service\".",
        )
    });
    Label {
        oid,
        principal_type,
        tid: normalize_guid(&settings::text(&settings::TENANT_ID)),
        admin: isadmin,
        mfa: ismfa,
        synced: false,
        disabled: false,
    }
}

/// Rebind an existing Entra role in place: its object id, type, MFA requirement and
/// administrator membership (Azure's signature). Superusers and Entra administrators, as for
/// the create functions; an Entra administrator only for roles already mapped to a principal
/// (mapping any other role would take it over), never for its own, and only as the binding
/// rule allows (`crate::catalog::privileges`).
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_update_principal_with_oid(
    rolename: &str,
    objectid: &str,
    objecttype: &str,
    isadmin: bool,
    ismfa: bool,
) -> String {
    use crate::catalog::labels::{label_of_role, RoleLabel};
    require_principal_manager("update Entra principals");
    let mut label = principal_label(rolename, objectid, objecttype, isadmin, ismfa);
    let roleid = unsafe { pg_sys::get_role_oid(c_string(rolename).as_ptr(), true) };
    if roleid == pg_sys::InvalidOid {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{rolename}\" does not exist"),
            "pgaadauth",
        )
        .set_hint("Create it with pgaadauth_create_principal_with_oid.")
        .report(PgLogLevel::ERROR);
    }
    let before = match label_of_role(roleid) {
        RoleLabel::Label(l) => Some(l),
        RoleLabel::None | RoleLabel::Malformed(_) => None,
    };
    if !unsafe { pg_sys::superuser() } {
        let refuse = |why: &str| {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to update role \"{rolename}\": {why}"),
                "pgaadauth",
            )
            .set_hint("Only superusers may do that.")
            .report(PgLogLevel::ERROR);
        };
        if before.is_none() {
            refuse("it is not mapped to an Entra principal");
        }
        if roleid == unsafe { pg_sys::GetSessionUserId() }
            || roleid == unsafe { pg_sys::GetUserId() }
        {
            refuse("it is your own role");
        }
    }
    // A role group sync created stays the sync's (only a superuser may take it away).
    label.synced = before.as_ref().is_some_and(|l| l.synced);
    label.disabled = before.as_ref().is_some_and(|l| l.disabled);
    let change = crate::catalog::privileges::change_between(before.as_ref(), &label);
    let managers = crate::catalog::privileges::managers();
    let role = quote_ident(rolename);
    let was_admin = before.as_ref().is_some_and(|l| l.admin);
    // Authorized above; as for create, PostgreSQL 16+ gives a CREATEROLE administrator these
    // rights only over roles it created itself.
    as_bootstrap_superuser(|| {
        let admin_role = settings::admin_role();
        if isadmin && !was_admin {
            ensure_admin_role(&admin_role);
            Spi::run(&format!("ALTER ROLE {role} CREATEROLE CREATEDB"))
                .unwrap_or_else(|e| error!("could not alter role \"{rolename}\": {e}"));
            Spi::run(&format!("GRANT {} TO {role}", quote_ident(&admin_role))).unwrap_or_else(
                |e| error!("could not grant \"{admin_role}\" to \"{rolename}\": {e}"),
            );
        } else if !isadmin && was_admin {
            Spi::run(&format!("ALTER ROLE {role} NOCREATEROLE NOCREATEDB"))
                .unwrap_or_else(|e| error!("could not alter role \"{rolename}\": {e}"));
            if role_exists(&admin_role) {
                Spi::run(&format!("REVOKE {} FROM {role}", quote_ident(&admin_role)))
                    .unwrap_or_else(|e| {
                        error!("could not revoke \"{admin_role}\" from \"{rolename}\": {e}")
                    });
            }
        }
        crate::catalog::privileges::require_may_bind(&managers, roleid, rolename, change);
        label_role(rolename, &label);
    });
    format!("Updated role for {rolename}")
}

/// Create a role mapped to the Entra principal `objectid` (Azure's signature and result).
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_create_principal_with_oid(
    rolename: &str,
    objectid: &str,
    objecttype: &str,
    isadmin: bool,
    ismfa: bool,
) -> String {
    require_principal_manager("create Entra principals");
    let label = principal_label(rolename, objectid, objecttype, isadmin, ismfa);
    let role = quote_ident(rolename);
    let extra = if isadmin { " CREATEROLE CREATEDB" } else { "" };
    let managers = crate::catalog::privileges::managers();
    // Authorized above; the statements need rights that PostgreSQL 16+ gives a CREATEROLE
    // administrator only over roles it created itself.
    as_bootstrap_superuser(|| {
        Spi::run(&format!("CREATE ROLE {role} LOGIN{extra}"))
            .unwrap_or_else(|e| error!("could not create role \"{rolename}\": {e}"));
        if isadmin {
            let admin_role = settings::admin_role();
            ensure_admin_role(&admin_role);
            Spi::run(&format!("GRANT {} TO {role}", quote_ident(&admin_role))).unwrap_or_else(
                |e| error!("could not grant \"{admin_role}\" to \"{rolename}\": {e}"),
            );
        }
        let roleid = unsafe { pg_sys::get_role_oid(c_string(rolename).as_ptr(), false) };
        crate::catalog::privileges::require_may_bind(
            &managers,
            roleid,
            rolename,
            pgaadauth_core::binding::Change::NewBinding,
        );
        label_role(rolename, &label);
    });
    format!("Created role for {rolename}")
}

/// Make sure role `rolename` is mapped to the Entra principal `objectid` with these flags, so that
/// scripts (Terraform, Bicep, shell) can run again: `created` (as
/// pgaadauth_create_principal_with_oid), `unchanged`, or `updated` (its administrator or MFA
/// flag, or the tenant `pgaadauth.tenant_id` names, as pgaadauth_update_principal_with_oid,
/// under the same privilege rules). A role that
/// exists mapped to another principal, or not mapped at all, is an error naming both: it is
/// never rebound here.
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_ensure_principal_with_oid(
    rolename: &str,
    objectid: &str,
    objecttype: &str,
    isadmin: bool,
    ismfa: bool,
) -> &'static str {
    use crate::catalog::labels::{label_of_role, RoleLabel};
    require_principal_manager("create Entra principals");
    let wanted = principal_label(rolename, objectid, objecttype, isadmin, ismfa);
    let roleid = unsafe { pg_sys::get_role_oid(c_string(rolename).as_ptr(), true) };
    if roleid == pg_sys::InvalidOid {
        pgaadauth_create_principal_with_oid(rolename, objectid, objecttype, isadmin, ismfa);
        return "created";
    }
    let refuse = |detail: String| -> ! {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("role \"{rolename}\" already exists and is not mapped to {} {}", wanted.principal_type.as_str(), wanted.oid),
            "pgaadauth",
        )
        .set_detail(detail)
        .set_hint("To map the role to another principal on purpose, use pgaadauth_update_principal_with_oid; or choose another role name.")
        .report(PgLogLevel::ERROR);
        unreachable!()
    };
    let existing = match label_of_role(roleid) {
        RoleLabel::Label(l) => l,
        RoleLabel::None => refuse("It is not mapped to any Entra principal.".into()),
        RoleLabel::Malformed(_) => refuse("Its pgaadauth label is malformed.".into()),
    };
    if !pgaadauth_core::label::same_id(&existing.oid, &wanted.oid)
        || existing.principal_type != wanted.principal_type
    {
        refuse(format!(
            "It is mapped to {} {}.",
            existing.principal_type.as_str(),
            existing.oid
        ));
    }
    // The tenant as pgaadauth.tenant_id says now, as the create and update functions record it.
    if existing.admin == isadmin && existing.mfa == ismfa && existing.tid == wanted.tid {
        return "unchanged";
    }
    pgaadauth_update_principal_with_oid(rolename, objectid, objecttype, isadmin, ismfa);
    "updated"
}

/// Create a role for a user (by UPN, guests in their `#EXT#` form), group or service principal
/// (by unique display name), resolved through the directory (Azure's signature and result).
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_create_principal(rolename: &str, isadmin: bool, ismfa: bool) -> String {
    require_principal_manager("create Entra principals");
    if !settings::directory_configured() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("no directory is configured to resolve \"{rolename}\""),
            "pgaadauth",
        )
        .set_hint(
            "Set pgaadauth.client_id and pgaadauth.client_secret_file (or pgaadauth.client_assertion_file), or pgaadauth.managed_identity_endpoint; or use pgaadauth_create_principal_with_oid(roleName, objectId, objectType, isAdmin, isMfa).",
        )
        .report(PgLogLevel::ERROR);
    }
    // A token, then a user, a group and a service principal lookup, each within http_timeout.
    let wait = settings::http_timeout() * 4 + std::time::Duration::from_secs(1);
    let answer =
        crate::shmem::mailbox::ask(crate::shmem::mailbox::Question::Resolve, rolename, "", wait)
            .unwrap_or_else(|why| {
                ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                    format!("could not resolve \"{rolename}\" in the directory"),
                    "pgaadauth",
                )
                .set_detail(format!("{}.", crate::catalog::names::capitalized(&why)))
                .report(PgLogLevel::ERROR);
                unreachable!()
            });
    let (kind, oid) = answer.split_once(' ').unwrap_or(("", ""));
    pgaadauth_create_principal_with_oid(rolename, oid, kind, isadmin, ismfa)
}

/// The fields of a pgaadauth label, for `pgaadauth_list_principals`; NULLs when malformed.
// pgrx reads the column names from `name!` in the signature, so no type alias here.
#[allow(clippy::type_complexity)]
#[pg_extern(immutable, parallel_safe)]
fn pgaadauth_label_fields(
    label: &str,
) -> TableIterator<
    'static,
    (
        name!(principal_type, Option<String>),
        name!(object_id, Option<String>),
        name!(tenant_id, Option<String>),
        name!(is_mfa, Option<i32>),
        name!(is_admin, Option<i32>),
    ),
> {
    let row = match Label::parse(label) {
        Ok(l) => (
            Some(l.principal_type.as_str().to_string()),
            Some(l.oid),
            l.tid,
            Some(l.mfa as i32),
            Some(l.admin as i32),
        ),
        Err(_) => (None, None, None, None, None),
    };
    TableIterator::once(row)
}
