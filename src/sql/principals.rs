//! SQL functions with Azure Database for PostgreSQL's names and shapes.

use crate::catalog::labels::{as_bootstrap_superuser, c_string, require_principal_manager};
use crate::settings;
use pgaadauth_core::label::{normalize_guid, Label, PrincipalType};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::CStr;

pub(crate) fn quote_ident(name: &str) -> String {
    let c = c_string(name);
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

fn quote_literal(text: &str) -> String {
    let c = c_string(text);
    unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

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

fn role_exists(name: &str) -> bool {
    // A catalog lookup, no SQL: it also runs with the superuser's rights.
    let name = c_string(name);
    unsafe { pg_sys::get_role_oid(name.as_ptr(), true) != pg_sys::InvalidOid }
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
            "Set pgaadauth.client_id and pgaadauth.client_secret_file, or pgaadauth.managed_identity_endpoint; or use pgaadauth_create_principal_with_oid(roleName, objectId, objectType, isAdmin, isMfa).",
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
                .set_detail(format!("{}.", crate::catalog::labels::capitalized(&why)))
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

extension_sql_file!(
    "../../sql/pgaadauth.sql",
    name = "pgaadauth_sql",
    requires = [
        pgaadauth_label_fields,
        pgaadauth_jwks_rows,
        pgaadauth_validate_token_for
    ]
);

/// Raw rows of `pgaadauth_jwks_status()` (times as Unix seconds); superusers and Entra admins.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn pgaadauth_jwks_rows() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(issuer, Option<String>),
        name!(kid, Option<String>),
        name!(kty, Option<String>),
        name!(alg, Option<String>),
        name!(fetched_at, Option<i64>),
        name!(next_refresh, Option<i64>),
        name!(last_error, Option<String>),
        name!(refreshes, i64),
        name!(failures, i64),
    ),
> {
    require_principal_manager("read the pgaadauth key status");
    let rows: Vec<_> = crate::shmem::keys::status()
        .into_iter()
        .map(|r| {
            (
                r.source,
                r.issuer,
                r.kid,
                r.kty.map(String::from),
                r.alg,
                r.fetched_at,
                r.next_refresh,
                r.last_error,
                r.refreshes,
                r.failures,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Fetch every key source now and wait for the outcome (not rate-limited).
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_refresh_jwks() -> String {
    use crate::shmem::keys::{refresh_and_wait, Refresh};
    require_principal_manager("refresh the pgaadauth signing keys");
    let sources = settings::issuer_settings().key_sources().len().max(1) as u32;
    // Discovery and key set for each source, each within http_timeout, and a margin.
    let wait = settings::http_timeout() * 2 * sources + std::time::Duration::from_secs(2);
    let now = pgaadauth_core::clock::unix_now();
    match refresh_and_wait(now, &settings::timing(), wait, false) {
        Refresh::NoWorker => {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "the pgaadauth key worker is not running",
                "pgaadauth",
            )
            .set_hint("Check the server log; the postmaster restarts the worker after it exits.")
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
        Refresh::TimedOut => {
            warning!(
                "pgaadauth: the key refresh did not finish within {} s",
                wait.as_secs()
            );
        }
        Refresh::Changed | Refresh::Unchanged | Refresh::RateLimited => {}
    }
    let status = crate::shmem::keys::status();
    let errors: Vec<String> = status
        .iter()
        .filter_map(|r| r.last_error.as_ref().map(|e| format!("{}: {e}", r.source)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for e in &errors {
        warning!("pgaadauth: {e}");
    }
    let keys = status.iter().filter(|r| r.kid.is_some()).count();
    let failed = status
        .iter()
        .filter(|r| r.last_error.is_some())
        .map(|r| &r.source)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let total = status
        .iter()
        .map(|r| &r.source)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    format!(
        "{keys} signing keys cached; {} of {total} key sources refreshed",
        total - failed
    )
}

/// Counters since server start (superusers, Entra admins and pg_monitor members).
#[pg_extern(volatile, parallel_safe)]
fn pgaadauth_stats() -> TableIterator<'static, (name!(counter, String), name!(value, i64))> {
    let monitor = unsafe {
        pg_sys::has_privs_of_role(
            pg_sys::GetUserId(),
            pg_sys::Oid::from(pg_sys::ROLE_PG_MONITOR),
        )
    };
    if !monitor {
        require_principal_manager("read the pgaadauth statistics");
    }
    let mut rows = crate::shmem::counters::snapshot();
    rows.push((
        "mailbox_slots_in_use".into(),
        crate::shmem::mailbox::slots_in_use() as i64,
    ));
    TableIterator::new(rows)
}

/// Decode a token and decide it exactly as a login to `role` would (without a role: everything
/// but the principal's mapping). Header and claims, never the signature. Superusers and Entra
/// admins; errors leave the statement (which holds the token) out of the log.
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_validate_token_for(token: &str, role: Option<&str>) -> pgrx::JsonB {
    use crate::catalog::labels::{label_of_role_name, RoleLabel};
    use pgaadauth_core::label::Label;
    use serde_json::{json, Value};
    crate::catalog::labels::require_principal_manager_quietly("validate tokens");
    let part = |i: usize| -> Value {
        use base64::Engine;
        token
            .split('.')
            .nth(i)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let (header, claims) = (part(0), part(1));
    let principal_claim = settings::text(&settings::PRINCIPAL_CLAIM);
    let label: Result<Label, String> = match role {
        Some(name) => match label_of_role_name(&c_string(name)) {
            RoleLabel::Label(l) => Ok(l),
            RoleLabel::Malformed(e) => Err(format!("The role's pgaadauth label is malformed: {e}.")),
            RoleLabel::None if role_exists(name) => Err(format!(
                "Role \"{name}\" has no pgaadauth label: a login would check its PostgreSQL password instead (or be refused when pgaadauth.password_auth is off)."
            )),
            RoleLabel::None => Err(format!("Role \"{name}\" does not exist.")),
        },
        // No role: a label that accepts the token's own principal.
        None => Ok(Label {
            oid: claims
                .get(&principal_claim)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            principal_type: PrincipalType::User,
            tid: None,
            admin: false,
            mfa: false,
            synced: false,
            disabled: false,
        }),
    };
    let mut out = json!({"header": header, "claims": claims, "role": role});
    match label.map(|l| crate::login::hook::decide_token(token, &l)) {
        Err(reason) => {
            out["verdict"] = json!("rejected");
            out["reason"] = json!(reason);
            out["reason_code"] = json!("no_label");
        }
        Ok(Ok(v)) => {
            out["verdict"] = json!("accepted");
            out["reason"] = Value::Null;
            out["principal"] = json!(v.principal);
            out["via_group"] = json!(v.via_group);
        }
        Ok(Err((reject, note))) => {
            out["verdict"] = json!("rejected");
            out["reason"] = json!(format!("{reject}{note}"));
            out["reason_code"] = json!(reject.code());
        }
    }
    let kid = out["header"]
        .get("kid")
        .and_then(Value::as_str)
        .map(String::from);
    let iss = out["claims"]
        .get("iss")
        .and_then(Value::as_str)
        .map(String::from);
    out["issuer_accepted"] = json!(iss
        .as_ref()
        .is_some_and(|i| settings::policy().issuers.contains(i)));
    out["key"] = crate::shmem::keys::status()
        .into_iter()
        .find(|r| r.kid.is_some() && r.kid == kid)
        .map_or(Value::Null, |r| {
            json!({"kid": r.kid, "kty": r.kty, "alg": r.alg, "source": r.source, "issuer": r.issuer})
        });
    pgrx::JsonB(out)
}
