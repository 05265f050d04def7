//! Who may bind an Entra principal to a role: the catalogs' facts, decided by
//! `pgaadauth_core::binding`. Every path that binds one asks here: the create and update
//! functions, `SECURITY LABEL` (the label provider's hook) and group sync (for the group roles
//! it grants).
//!
//! The facts come from the system caches and PostgreSQL's own shared-dependency check, never
//! from SQL: no operator or function of the caller's `search_path` takes part, and what is read
//! is the latest committed state (not a REPEATABLE READ snapshot taken before a GRANT).

use pgaadauth_core::binding::{self, Ancestor, Change, Refusal, RoleFacts, Target};
use pgaadauth_core::label::Label;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr};

/// The roles this session acts as that are not superusers: the session user and the current
/// user. The binding rule holds for each. Read before elevating.
pub fn managers() -> Vec<pg_sys::Oid> {
    let (session, current) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
    let mut managers = vec![session];
    if current != session {
        managers.push(current);
    }
    managers.retain(|m| !unsafe { pg_sys::superuser_arg(*m) });
    managers
}

/// The roles `member` is directly a member of (pg_auth_members, by the system cache).
pub fn direct_groups(member: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // pg_auth_members.roleid: the first column up to 15, the second (after oid) from 16.
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    const ROLEID: pg_sys::AttrNumber = 1;
    #[cfg(not(any(feature = "pg14", feature = "pg15")))]
    const ROLEID: pg_sys::AttrNumber = 2;
    let cache = pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE as i32;
    let zero = pg_sys::Datum::from(0usize);
    // SAFETY: a syscache list by member, read and released here; the catalogs are readable
    // from authentication on.
    unsafe {
        let list = pg_sys::SearchSysCacheList(
            cache,
            1,
            pg_sys::Datum::from(member.to_u32() as usize),
            zero,
            zero,
        );
        let members = (*list).members.as_slice((*list).n_members as usize);
        let groups = members
            .iter()
            .filter_map(|m| {
                let mut isnull = false;
                let group = pg_sys::SysCacheGetAttr(cache, &mut (**m).tuple, ROLEID, &mut isnull);
                (!isnull).then(|| pg_sys::Oid::from(group.value() as u32))
            })
            .collect();
        pg_sys::ReleaseCatCacheList(list);
        groups
    }
}

/// What a login needs to know of a role before its password or token.
pub struct LoginAttributes {
    pub roleid: pg_sys::Oid,
    pub can_login: bool,
}

/// The login attributes of the role named `name` (pg_authid, by the system cache: no SQL);
/// None when there is no such role.
pub fn login_attributes(name: &std::ffi::CStr) -> Option<LoginAttributes> {
    let cache = pg_sys::SysCacheIdentifier::AUTHNAME as i32;
    // SAFETY: one syscache tuple, read and released here.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache, pg_sys::Datum::from(name.as_ptr()));
        if tuple.is_null() {
            return None;
        }
        let flag = |attnum: u32| {
            let mut isnull = false;
            let d =
                pg_sys::SysCacheGetAttr(cache, tuple, attnum as pg_sys::AttrNumber, &mut isnull);
            !isnull && d.value() != 0
        };
        let mut isnull = false;
        let oid = pg_sys::SysCacheGetAttr(
            cache,
            tuple,
            pg_sys::Anum_pg_authid_oid as pg_sys::AttrNumber,
            &mut isnull,
        );
        let attributes = LoginAttributes {
            roleid: pg_sys::Oid::from(oid.value() as u32),
            can_login: flag(pg_sys::Anum_pg_authid_rolcanlogin),
        };
        pg_sys::ReleaseSysCache(tuple);
        Some(attributes)
    }
}

/// A role's name and attributes (pg_authid, by the system cache); None when it is gone.
fn role_facts(roleid: pg_sys::Oid) -> Option<RoleFacts> {
    let cache = pg_sys::SysCacheIdentifier::AUTHOID as i32;
    // SAFETY: one syscache tuple, read and released here.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache, pg_sys::Datum::from(roleid.to_u32() as usize));
        if tuple.is_null() {
            return None;
        }
        // A NULL attribute (never, in pg_authid) counts as the privilege held.
        let flag = |attnum: u32| {
            let mut isnull = false;
            let d =
                pg_sys::SysCacheGetAttr(cache, tuple, attnum as pg_sys::AttrNumber, &mut isnull);
            isnull || d.value() != 0
        };
        let facts = RoleFacts {
            name: crate::catalog::names::role_name(roleid),
            superuser: flag(pg_sys::Anum_pg_authid_rolsuper),
            replication: flag(pg_sys::Anum_pg_authid_rolreplication),
            bypassrls: flag(pg_sys::Anum_pg_authid_rolbypassrls),
            createrole: flag(pg_sys::Anum_pg_authid_rolcreaterole),
            createdb: flag(pg_sys::Anum_pg_authid_rolcreatedb),
            predefined: roleid.to_u32() < pg_sys::FirstNormalObjectId,
        };
        pg_sys::ReleaseSysCache(tuple);
        Some(facts)
    }
}

/// Every role `roleid` is a member of, through any chain (whatever the memberships' INHERIT
/// and SET options), each once.
fn ancestors(roleid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let mut found = vec![roleid];
    let mut next = 0;
    while next < found.len() {
        for group in direct_groups(found[next]) {
            if !found.contains(&group) {
                found.push(group);
            }
        }
        next += 1;
    }
    found.remove(0);
    found
}

/// When `roleid` is, or through any chain of memberships (whatever their INHERIT and SET
/// options) reaches, a superuser or REPLICATION role: what it is, in words ("a superuser",
/// "a member of \"postgres\", a superuser").
pub fn superuser_or_replication(roleid: pg_sys::Oid) -> Option<String> {
    let what = |f: &RoleFacts| {
        if f.superuser {
            Some("a superuser")
        } else if f.replication {
            Some("a REPLICATION role")
        } else {
            None
        }
    };
    if let Some(w) = role_facts(roleid).as_ref().and_then(what) {
        return Some(w.to_string());
    }
    ancestors(roleid).into_iter().find_map(|group| {
        let facts = role_facts(group)?;
        let w = what(&facts)?;
        Some(format!(
            "a member of \"{}\", {w}",
            pgaadauth_core::log_text::log_safe(&facts.name)
        ))
    })
}

/// Facts of a role that is gone (dropped meanwhile): nothing may be bound to it.
fn gone() -> RoleFacts {
    RoleFacts {
        predefined: true,
        ..RoleFacts::default()
    }
}

/// What `roleid` owns or holds privileges on, in PostgreSQL's words (as DROP ROLE reports it),
/// when anything.
fn objects_of(roleid: pg_sys::Oid) -> Option<String> {
    let (mut detail, mut detail_log): (*mut c_char, *mut c_char) =
        (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: scans pg_shdepend with the catalog snapshot; the messages are palloc'd.
    let any = unsafe {
        pg_sys::checkSharedDependencies(
            pg_sys::AuthIdRelationId,
            roleid,
            &mut detail,
            &mut detail_log,
        )
    };
    any.then(|| {
        if detail.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(detail) }
                .to_string_lossy()
                .into_owned()
        }
    })
}

/// The floor of the rule for `roleid` (see `pgaadauth_core::binding::check_floor`).
pub fn floor(roleid: pg_sys::Oid) -> Result<(), Refusal> {
    let ancestors: Vec<Ancestor> = ancestors(roleid)
        .into_iter()
        .map(|oid| Ancestor {
            role: role_facts(oid).unwrap_or_else(gone),
            manager_holds_or_grants: false,
        })
        .collect();
    binding::check_floor(&role_facts(roleid).unwrap_or_else(gone), &ancestors)
}

/// Whether `manager` is a member of `role` (any chain) or holds ADMIN OPTION on it.
fn holds_or_grants(manager: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::is_member_of_role(manager, role) || pg_sys::is_admin_of_role(manager, role) }
}

/// Refuse (42501, naming the reason) when one of `managers` may not make `change` to the
/// binding of `roleid`, named `role` in the message.
pub fn require_may_bind(managers: &[pg_sys::Oid], roleid: pg_sys::Oid, role: &str, change: Change) {
    if managers.is_empty() {
        return;
    }
    let facts = role_facts(roleid).unwrap_or_else(gone);
    let ancestors = ancestors(roleid);
    let objects = objects_of(roleid);
    for &manager in managers {
        let target = Target {
            role: facts.clone(),
            ancestors: ancestors
                .iter()
                .map(|&oid| Ancestor {
                    role: role_facts(oid).unwrap_or_else(gone),
                    manager_holds_or_grants: holds_or_grants(manager, oid),
                })
                .collect(),
            objects: objects.clone(),
            manager_holds_role: holds_or_grants(manager, roleid),
        };
        let manager_facts = role_facts(manager).unwrap_or_default();
        if let Err(why) = binding::check(&target, &manager_facts, change) {
            let mut detail =
                "A principal mapped to a role logs in with all of the role's privileges."
                    .to_string();
            if why == Refusal::Objects {
                if let Some(objects) = &objects {
                    detail = format!("{detail} The role holds:\n{objects}");
                }
            }
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to map role \"{role}\" to an Entra principal: {why}"),
                "pgaadauth",
            )
            .set_detail(detail)
            .set_hint(
                "Only superusers may map a role whose privileges reach beyond your own; see \"Who may map a role\" in docs/sql.md.",
            )
            .report(PgLogLevel::ERROR);
        }
    }
}

/// What a label change does to the binding: the same object id, type and `admin` flag is a
/// change of the MFA requirement only.
pub fn change_between(before: Option<&Label>, after: &Label) -> Change {
    match before {
        Some(b)
            if b.oid == after.oid
                && b.principal_type == after.principal_type
                && b.admin == after.admin =>
        {
            Change::FlagsOnly
        }
        _ => Change::NewBinding,
    }
}
