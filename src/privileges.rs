//! Who may bind an Entra principal to a role: the catalogs' facts, decided by
//! `pgaadauth_core::binding`. Every path that binds one asks here: the create and update
//! functions, `SECURITY LABEL` (the label provider's hook) and group sync (for the group roles
//! it grants).

use pgaadauth_core::binding::{self, Ancestor, Change, Refusal, RoleFacts};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

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

/// `roleid` and every role it is a member of, through any chain, with their attributes (from
/// pg_roles, which every role may read).
fn role_and_ancestors(roleid: pg_sys::Oid) -> Vec<(pg_sys::Oid, RoleFacts)> {
    let query = format!(
        "WITH RECURSIVE up(oid) AS (SELECT {}::pg_catalog.oid UNION \
           SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid) \
         SELECT r.oid, r.rolname::pg_catalog.text, r.rolsuper, r.rolreplication, \
           r.rolbypassrls, r.rolcreaterole, r.rolcreatedb \
         FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid",
        roleid.to_u32()
    );
    Spi::connect(|c| {
        c.select(&query, None, &[])
            .unwrap_or_else(|e| error!("could not read the memberships of a role: {e}"))
            .filter_map(|row| {
                let oid: pg_sys::Oid = row.get(1).ok().flatten()?;
                let flag = |i| row.get::<bool>(i).ok().flatten().unwrap_or(true);
                Some((
                    oid,
                    RoleFacts {
                        name: row.get(2).ok().flatten().unwrap_or_default(),
                        superuser: flag(3),
                        replication: flag(4),
                        bypassrls: flag(5),
                        createrole: flag(6),
                        createdb: flag(7),
                        predefined: oid.to_u32() < pg_sys::FirstNormalObjectId,
                    },
                ))
            })
            .collect()
    })
}

fn facts(roleid: pg_sys::Oid, all: &[(pg_sys::Oid, RoleFacts)]) -> RoleFacts {
    all.iter()
        .find(|(oid, _)| *oid == roleid)
        .map(|(_, f)| f.clone())
        .unwrap_or_else(|| RoleFacts {
            // Gone meanwhile: nothing to bind, and nothing granted.
            predefined: true,
            ..RoleFacts::default()
        })
}

/// The floor of the rule for `roleid` (see `pgaadauth_core::binding::check_floor`).
pub fn floor(roleid: pg_sys::Oid) -> Result<(), Refusal> {
    let all = role_and_ancestors(roleid);
    let ancestors: Vec<Ancestor> = all
        .iter()
        .filter(|(oid, _)| *oid != roleid)
        .map(|(_, role)| Ancestor {
            role: role.clone(),
            manager_holds_or_grants: false,
        })
        .collect();
    binding::check_floor(&facts(roleid, &all), &ancestors)
}

/// Refuse (42501, naming the reason) when one of `managers` may not make `change` to the
/// binding of `roleid`, named `role` in the message.
pub fn require_may_bind(managers: &[pg_sys::Oid], roleid: pg_sys::Oid, role: &str, change: Change) {
    if managers.is_empty() {
        return;
    }
    let all = role_and_ancestors(roleid);
    let target = facts(roleid, &all);
    for &manager in managers {
        let ancestors: Vec<Ancestor> = all
            .iter()
            .filter(|(oid, _)| *oid != roleid)
            .map(|(oid, role)| Ancestor {
                role: role.clone(),
                manager_holds_or_grants: unsafe {
                    pg_sys::is_member_of_role(manager, *oid)
                        || pg_sys::is_admin_of_role(manager, *oid)
                },
            })
            .collect();
        let manager_facts = facts(manager, &role_and_ancestors(manager));
        if let Err(why) = binding::check(&target, &ancestors, &manager_facts, change) {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to map role \"{role}\" to an Entra principal: {why}"),
                "pgaadauth",
            )
            .set_detail(
                "A principal mapped to a role logs in with all of the role's privileges.",
            )
            .set_hint(
                "Only superusers may map a role whose privileges reach beyond your own; see \"Who may map a role\" in docs/sql.md.",
            )
            .report(PgLogLevel::ERROR);
        }
    }
}

/// What a label change does to the binding: the same object id and type is a change of flags.
pub fn change_between(
    before: Option<&pgaadauth_core::label::Label>,
    after: &pgaadauth_core::label::Label,
) -> Change {
    match before {
        Some(b) if b.oid == after.oid && b.principal_type == after.principal_type => {
            Change::FlagsOnly
        }
        _ => Change::NewBinding,
    }
}
