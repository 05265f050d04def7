//! Entra group sync: for every role labelled `type=group`, a login role for each of the group's
//! members in the directory, kept in step (crates/core/src/group_sync.rs decides what changes).
//! A run takes a cluster-wide lock held to the end of its transaction (two runs never overlap),
//! reads every group's members, reads the roles again, plans and applies each change in a
//! subtransaction of its own: a change PostgreSQL refuses is a `failed` row and undoes nothing
//! else; a run cancelled or failed as a whole changes nothing. The roles it creates carry
//! `synced` in their label: that is how a later run knows them, and it never touches any other
//! role.

use crate::catalog::managers::as_bootstrap_superuser;
use crate::catalog::names::c_string;
use crate::catalog::names::quote_ident;
use crate::catalog::subtransaction::in_subtransaction;
use crate::net::DirectorySession;
use crate::settings;
use pgaadauth_core::group_sync::{
    limit_creates, members_request, next_page_request, parse_members_page, plan, Action,
    GroupMembers, MemberKind, PageError, SyncedRole,
};
use pgaadauth_core::label::{normalize_guid, Label, PrincipalType};
use pgrx::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Throttled answers in a row before a group counts as unread for this run.
const MAX_THROTTLED: u32 = 10;
/// Pages of one group before it counts as unread (10,000 members are 11 pages of 999).
const MAX_PAGES: usize = 1_000;

/// One row of a sync's result.
#[derive(Clone, Debug)]
pub struct Change {
    pub role: String,
    pub object_id: String,
    pub group_role: Option<String>,
    pub action: &'static str,
    pub detail: Option<String>,
}

/// How a run waits (throttling) and learns it must stop early.
pub struct Waiting<'a> {
    pub nap: &'a dyn Fn(Duration),
    pub stop: &'a dyn Fn() -> bool,
}

/// A role with a pgaadauth label, as the catalogs say now.
pub struct LabelledRole {
    oid: pg_sys::Oid,
    pub name: String,
    pub label: Label,
    pub can_login: bool,
    /// Why the sync never grants it (a superuser, REPLICATION, BYPASSRLS or predefined role,
    /// or a member of one: `crate::catalog::privileges::floor`); None for most roles.
    protected: Option<String>,
    pub member_of: Vec<String>,
}

/// Every role with a well-formed pgaadauth label, read with a fresh snapshot (not the one the
/// calling statement started with). Only catalogs every role may read.
pub fn labelled_roles() -> Vec<LabelledRole> {
    let query = "SELECT a.rolname::text, l.label, a.rolcanlogin, a.oid, \
           ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                 JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid) \
         FROM pg_catalog.pg_shseclabel l JOIN pg_catalog.pg_roles a ON a.oid = l.objoid \
         WHERE l.provider = 'pgaadauth' AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass";
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let rows = Spi::connect(|c| {
        let table = c
            .select(query, None, &[])
            .unwrap_or_else(|e| error!("could not read the pgaadauth labels: {e}"));
        table
            .filter_map(|row| {
                let name: String = row.get(1).ok().flatten()?;
                let text: String = row.get(2).ok().flatten()?;
                let label = Label::parse(&text).ok()?;
                Some(LabelledRole {
                    name,
                    label,
                    can_login: row.get(3).ok().flatten().unwrap_or(false),
                    oid: row.get(4).ok().flatten()?,
                    protected: None,
                    member_of: row.get::<Vec<String>>(5).ok().flatten().unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>()
    });
    // Only group roles are granted: the rule is read for them alone.
    let mut rows = rows;
    for r in rows
        .iter_mut()
        .filter(|r| r.label.principal_type == PrincipalType::Group)
    {
        r.protected = crate::catalog::privileges::floor(r.oid)
            .err()
            .map(|why| why.to_string());
    }
    unsafe { pg_sys::PopActiveSnapshot() };
    rows
}

/// Group roles the sync never grants, with the reason: they count as unread (their members
/// keep what they have, nobody is granted them).
fn protected_groups(roles: &[LabelledRole]) -> BTreeMap<String, String> {
    roles
        .iter()
        .filter_map(|r| Some((r.name.clone(), r.protected.clone()?)))
        .collect()
}

pub fn group_roles(roles: &[LabelledRole]) -> BTreeMap<String, &Label> {
    roles
        .iter()
        .filter(|r| r.label.principal_type == PrincipalType::Group)
        .map(|r| (r.name.clone(), &r.label))
        .collect()
}

/// A group's members as the directory lists them.
struct GroupRead {
    members: Vec<pgaadauth_core::group_sync::Member>,
    /// Members the directory did not name (see `Page::unnamed`).
    unnamed: usize,
    /// The directory answered 404: the group is gone, and has no members.
    gone: bool,
}

/// All transitive members of the group `group_oid`, page by page, waiting out throttling.
fn read_members(
    session: &mut DirectorySession,
    fetcher: &pgaadauth_core::http::Fetcher,
    group_oid: &str,
    waiting: &Waiting,
) -> Result<GroupRead, String> {
    let graph = settings::text(&settings::GRAPH_ENDPOINT);
    let mut read = GroupRead {
        members: Vec::new(),
        unnamed: 0,
        gone: false,
    };
    let mut next: Option<String> = None;
    let mut throttled = 0;
    let mut pages = 0;
    loop {
        if pages == MAX_PAGES {
            return Err(format!(
                "the group has more than {MAX_PAGES} pages of members"
            ));
        }
        if (waiting.stop)() {
            return Err("the sync was stopped".into());
        }
        let token = session.access_token(fetcher)?;
        let request = match &next {
            None => members_request(&graph, group_oid, &token),
            Some(link) => next_page_request(&graph, link, &token)?,
        };
        let (status, retry_after, body) = session.send(fetcher, &request)?;
        match parse_members_page(status, retry_after.as_deref(), &body) {
            Ok(page) => {
                throttled = 0;
                pages += 1;
                read.members.extend(page.members);
                read.unnamed += page.unnamed;
                match page.next_link {
                    Some(link) => next = Some(link),
                    None => return Ok(read),
                }
            }
            Err(PageError::Throttled { retry_after }) => {
                throttled += 1;
                if throttled > MAX_THROTTLED {
                    return Err(format!(
                        "the directory throttled {MAX_THROTTLED} requests in a row"
                    ));
                }
                let until = Instant::now() + Duration::from_secs(retry_after);
                while Instant::now() < until && !(waiting.stop)() {
                    (waiting.nap)(until.saturating_duration_since(Instant::now()));
                }
            }
            Err(PageError::Gone) if next.is_none() => {
                read.gone = true;
                return Ok(read);
            }
            Err(PageError::Gone) => return Err("a next page link led nowhere (HTTP 404)".into()),
            Err(PageError::Failed(why)) => return Err(why),
        }
    }
}

fn run_sql(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| error!("group sync could not run \"{sql}\": {e}"));
}

/// Write a synced role's label. Directly, not through SECURITY LABEL, which locks each role to
/// the end of the transaction: a run that labels 10,000 roles would fill the lock table. Only
/// the sync (under its lock) and superusers write labels with `synced`.
fn set_label(role: &str, label: &Label) {
    let roleid = unsafe { pg_sys::get_role_oid(c_string(role).as_ptr(), false) };
    let object = pg_sys::ObjectAddress {
        classId: pg_sys::AuthIdRelationId,
        objectId: roleid,
        objectSubId: 0,
    };
    let text = c_string(&label.to_string());
    unsafe {
        pg_sys::SetSecurityLabel(
            &object,
            crate::catalog::labels::PROVIDER.as_ptr(),
            text.as_ptr(),
        );
        pg_sys::CommandCounterIncrement();
    }
}

/// The cluster-wide lock of a run: an object lock no statement of PostgreSQL's takes
/// (`pg_authid`, object id 0), held to the end of the transaction. Without `wait`, false when
/// another run holds it.
fn lock_the_sync(wait: bool) -> bool {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: 0, // shared: no database
        locktag_field2: pg_sys::AuthIdRelationId.to_u32(),
        locktag_field3: 0,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    let got = unsafe {
        pg_sys::LockAcquire(
            &tag,
            pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
            false,
            !wait,
        )
    };
    if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return false;
    }
    unsafe { pg_sys::AcceptInvalidationMessages() };
    true
}

/// Sync once, inside the caller's transaction, as the bootstrap superuser: the rows of what
/// changed (and what was reported and not done), or None when `wait_for_lock` is false and
/// another run holds the lock. A PostgreSQL error outside the changes themselves aborts the
/// transaction, and with it the whole run.
pub fn sync_once(
    session: &mut DirectorySession,
    waiting: &Waiting,
    wait_for_lock: bool,
) -> Option<Vec<Change>> {
    as_bootstrap_superuser(|| {
        if !lock_the_sync(wait_for_lock) {
            return None;
        }
        let before = labelled_roles();
        let groups: Vec<(String, String)> = group_roles(&before)
            .into_iter()
            .map(|(name, label)| (name, label.oid.clone()))
            .collect();
        let mut changes = Vec::new();
        let mut read = Vec::new();
        let mut unread = BTreeSet::new();
        let fetcher = crate::net::new_fetcher();
        let report = |group_role: &str, group_oid: &str, action, detail: String| Change {
            role: group_role.to_string(),
            object_id: group_oid.to_string(),
            group_role: Some(group_role.to_string()),
            action,
            detail: Some(pgaadauth_core::log_text::escape_log_text(&detail)),
        };
        let protected = protected_groups(&before);
        for (group_role, group_oid) in &groups {
            if let Some(why) = protected.get(group_role) {
                unread.insert(group_role.clone());
                changes.push(report(
                    group_role,
                    group_oid,
                    "skipped",
                    format!("group sync never grants this group role: {why}"),
                ));
                continue;
            }
            let members = fetcher
                .as_ref()
                .map_err(String::clone)
                .and_then(|f| read_members(session, f, group_oid, waiting));
            match members {
                Ok(r) => {
                    if r.gone {
                        changes.push(report(
                            group_role,
                            group_oid,
                            "group_not_found",
                            "the group does not exist in the directory: it has no members".into(),
                        ));
                    }
                    if r.unnamed > 0 {
                        changes.push(report(group_role, group_oid, "skipped", format!(
                            "{} members came without a userPrincipalName or displayName: the directory application needs User.Read.All and Application.Read.All",
                            r.unnamed
                        )));
                    }
                    read.push((group_role.clone(), group_oid.clone(), r.members))
                }
                Err(why) => {
                    unread.insert(group_role.clone());
                    changes.push(report(
                        group_role,
                        group_oid,
                        "failed",
                        format!("could not read the group's members: {why}"),
                    ));
                }
            }
        }
        // The roles now (a role may have changed while the directory was read).
        let now = labelled_roles();
        let now_groups = group_roles(&now);
        let now_protected = protected_groups(&now);
        let members: Vec<GroupMembers> = read
            .into_iter()
            .filter(|(role, oid, _)| {
                now_groups.get(role).is_some_and(|l| &l.oid == oid)
                    && !now_protected.contains_key(role)
            })
            .map(|(group_role, _, members)| GroupMembers {
                group_role,
                members,
            })
            .collect();
        for role in now_groups.keys() {
            if !members.iter().any(|g| &g.group_role == role) {
                unread.insert(role.clone());
            }
        }
        let mfa_groups: BTreeSet<String> = now_groups
            .iter()
            .filter(|(_, l)| l.mfa)
            .map(|(name, _)| name.clone())
            .collect();
        let synced: Vec<SyncedRole> = now
            .iter()
            .filter(|r| r.label.synced)
            .map(|r| SyncedRole {
                role: r.name.clone(),
                object_id: r.label.oid.clone(),
                can_login: r.can_login,
                disabled_by_sync: r.label.disabled,
                groups: r
                    .member_of
                    .iter()
                    .filter(|g| now_groups.contains_key(*g))
                    .cloned()
                    .collect(),
            })
            .collect();
        let taken = all_role_names_lower_case();
        let (actions, deferred) = limit_creates(
            plan(&members, &unread, &synced, &|name| {
                taken.contains(&name.to_lowercase())
            }),
            max_creates_per_run(),
        );
        if deferred > 0 {
            changes.push(Change {
                role: String::new(),
                object_id: String::new(),
                group_role: None,
                action: "deferred",
                detail: Some(format!(
                    "{deferred} more members get their roles at the next sync: a sync creates at most {} roles (max_locks_per_transaction x 16)",
                    max_creates_per_run()
                )),
            });
        }
        let oid_of: BTreeMap<&str, &str> = synced
            .iter()
            .map(|s| (s.role.as_str(), s.object_id.as_str()))
            .collect();
        let tid = normalize_guid(&settings::text(&settings::TENANT_ID));
        // SPI's statements need an outer snapshot (a worker has none of its own).
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
        // A role the sync disabled that an administrator gave LOGIN back is no longer the
        // sync's to enable: a later NOLOGIN is the administrator's.
        for r in now
            .iter()
            .filter(|r| r.label.synced && r.label.disabled && r.can_login)
        {
            let _ = in_subtransaction(|| mark_disabled(&r.name, false));
        }
        let mut refused: BTreeSet<String> = BTreeSet::new();
        for action in &actions {
            if (waiting.stop)() {
                break; // the worker is stopping: the run will be rolled back
            }
            let mut applied = Vec::new();
            let done = in_subtransaction(|| {
                apply(action, &oid_of, tid.as_deref(), &mfa_groups, &mut applied)
            });
            match done {
                Ok(()) => changes.extend(applied),
                Err(why) => {
                    let (role, object_id, group) = action_subject(action, &oid_of);
                    refused.insert(role.clone());
                    changes.push(Change {
                        role,
                        object_id,
                        group_role: group,
                        action: "failed",
                        detail: Some(format!("could not {}: {why}", action.name())),
                    });
                }
            }
        }
        // A synced role's MFA requirement follows its groups': a member of a group that
        // requires MFA must not log in without it under its own name.
        for role in now
            .iter()
            .filter(|r| r.label.synced && !refused.contains(&r.name))
        {
            let groups = wanted_groups(&role.name, &role.member_of, &actions, &now_groups);
            let mfa = groups.iter().any(|g| mfa_groups.contains(g));
            if groups.is_empty() || mfa == role.label.mfa {
                continue;
            }
            let mut changed = false;
            let done = in_subtransaction(|| changed = set_mfa(&role.name, &role.label, mfa));
            let (action, detail) = match done {
                Ok(()) if !changed => continue, // rebound or dropped meanwhile: not the sync's
                Ok(()) if mfa => ("mfa_required", None),
                Ok(()) => ("mfa_not_required", None),
                Err(why) => ("failed", Some(format!("could not set its MFA flag: {why}"))),
            };
            changes.push(Change {
                role: role.name.clone(),
                object_id: role.label.oid.clone(),
                group_role: None,
                action,
                detail,
            });
        }
        unsafe { pg_sys::PopActiveSnapshot() };
        Some(changes)
    })
}

/// The most roles one run creates: PostgreSQL 16 and later lock each role created until the
/// transaction ends, in a lock table of about max_locks_per_transaction x max_connections
/// entries shared by the whole server.
fn max_creates_per_run() -> usize {
    (unsafe { pg_sys::max_locks_per_xact }.max(10) as usize) * 16
}

/// Set or clear `mfa` in a synced role's label, if the label is still the one the run read
/// (an administrator may have rebound it meanwhile). Whether it did.
fn set_mfa(role: &str, read: &Label, mfa: bool) -> bool {
    let roleid = unsafe { pg_sys::get_role_oid(c_string(role).as_ptr(), true) };
    if roleid == pg_sys::InvalidOid {
        return false;
    }
    match crate::catalog::labels::stored_label_of_role(roleid) {
        crate::catalog::labels::RoleLabel::Label(now) if now == *read => {
            set_label(role, &Label { mfa, ..now });
            true
        }
        _ => false,
    }
}

/// Set or clear `disabled` in a synced role's label: the mark that the sync set NOLOGIN.
fn mark_disabled(role: &str, disabled: bool) {
    let roleid = unsafe { pg_sys::get_role_oid(c_string(role).as_ptr(), false) };
    if let crate::catalog::labels::RoleLabel::Label(now) =
        crate::catalog::labels::stored_label_of_role(roleid)
    {
        if now.disabled != disabled {
            set_label(role, &Label { disabled, ..now });
        }
    }
}

/// Every role's name in lower case (Rust's, whatever the database's collation): a member gets
/// no role whose name differs from an existing one's only in letter case.
fn all_role_names_lower_case() -> BTreeSet<String> {
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let names = Spi::connect(|c| {
        c.select("SELECT rolname::text FROM pg_catalog.pg_roles", None, &[])
            .unwrap_or_else(|e| error!("could not read the role names: {e}"))
            .filter_map(|row| row.get::<String>(1).ok().flatten())
            .map(|name| name.to_lowercase())
            .collect()
    });
    unsafe { pg_sys::PopActiveSnapshot() };
    names
}

/// The role, object id and group an action is about (for its `failed` row).
fn action_subject(
    action: &Action,
    oid_of: &BTreeMap<&str, &str>,
) -> (String, String, Option<String>) {
    let oid = |role: &str| oid_of.get(role).copied().unwrap_or_default().to_string();
    match action {
        Action::Create { role, member, .. } => (role.clone(), member.id.clone(), None),
        Action::Grant { role, group_role } | Action::Revoke { role, group_role } => {
            (role.clone(), oid(role), Some(group_role.clone()))
        }
        Action::Disable { role } | Action::Enable { role } | Action::KeptDisabled { role } => {
            (role.clone(), oid(role), None)
        }
        Action::Renamed {
            role, object_id, ..
        } => (role.clone(), object_id.clone(), None),
        Action::Skipped {
            name, object_id, ..
        } => (name.clone(), object_id.clone(), None),
    }
}

/// The group roles a synced role is a member of once `actions` are applied.
fn wanted_groups(
    role: &str,
    member_of: &[String],
    actions: &[Action],
    groups: &BTreeMap<String, &Label>,
) -> BTreeSet<String> {
    let mut now: BTreeSet<String> = member_of
        .iter()
        .filter(|g| groups.contains_key(*g))
        .cloned()
        .collect();
    for action in actions {
        match action {
            Action::Grant {
                role: r,
                group_role,
            } if r == role => {
                now.insert(group_role.clone());
            }
            Action::Revoke {
                role: r,
                group_role,
            } if r == role => {
                now.remove(group_role);
            }
            _ => {}
        }
    }
    now
}

fn apply(
    action: &Action,
    oid_of: &BTreeMap<&str, &str>,
    tid: Option<&str>,
    mfa_groups: &BTreeSet<String>,
    changes: &mut Vec<Change>,
) {
    let change =
        |role: &str, object_id: &str, group: Option<&str>, detail: Option<String>| Change {
            role: role.to_string(),
            object_id: object_id.to_string(),
            group_role: group.map(String::from),
            action: action.name(),
            detail,
        };
    let oid = |role: &str| oid_of.get(role).copied().unwrap_or_default().to_string();
    match action {
        Action::Create {
            role,
            member,
            groups,
        } => {
            run_sql(&format!("CREATE ROLE {} LOGIN", quote_ident(role)));
            let label = Label {
                oid: member.id.clone(),
                principal_type: match member.kind {
                    MemberKind::User => PrincipalType::User,
                    MemberKind::Service => PrincipalType::Service,
                },
                tid: tid.map(String::from),
                admin: false,
                mfa: groups.iter().any(|g| mfa_groups.contains(g)),
                synced: true,
                disabled: false,
            };
            set_label(role, &label);
            changes.push(change(
                role,
                &member.id,
                None,
                Some(format!("type={}", member.kind.label_type())),
            ));
            for g in groups {
                run_sql(&format!(
                    "GRANT {} TO {}",
                    quote_ident(g),
                    quote_ident(role)
                ));
                changes.push(Change {
                    action: "granted",
                    ..change(role, &member.id, Some(g), None)
                });
            }
        }
        Action::Grant { role, group_role } => {
            run_sql(&format!(
                "GRANT {} TO {}",
                quote_ident(group_role),
                quote_ident(role)
            ));
            changes.push(change(role, &oid(role), Some(group_role), None));
        }
        Action::Revoke { role, group_role } => {
            run_sql(&format!(
                "REVOKE {} FROM {}",
                quote_ident(group_role),
                quote_ident(role)
            ));
            changes.push(change(role, &oid(role), Some(group_role), None));
        }
        Action::Disable { role } => {
            run_sql(&format!("ALTER ROLE {} NOLOGIN", quote_ident(role)));
            mark_disabled(role, true);
            changes.push(change(
                role,
                &oid(role),
                None,
                Some("in no synced group; kept (it may own objects)".into()),
            ));
        }
        Action::Enable { role } => {
            run_sql(&format!("ALTER ROLE {} LOGIN", quote_ident(role)));
            mark_disabled(role, false);
            changes.push(change(role, &oid(role), None, None));
        }
        Action::KeptDisabled { role } => changes.push(change(
            role,
            &oid(role),
            None,
            Some(
                "in a synced group, but an administrator set NOLOGIN; the sync leaves it (ALTER ROLE ... LOGIN gives it back)"
                    .into(),
            ),
        )),
        Action::Renamed {
            role,
            object_id,
            directory_name,
        } => changes.push(change(
            role,
            object_id,
            None,
            Some(format!(
                "the directory now names it \"{directory_name}\"; the role keeps its name"
            )),
        )),
        Action::Skipped {
            name,
            object_id,
            why,
        } => changes.push(change(name, object_id, None, Some(why.clone()))),
    }
}

/// A run asked for from SQL, with a directory session of its own: every change, also those
/// reported and not done.
pub fn sync_now(waiting: &Waiting) -> Vec<Change> {
    sync_once(&mut DirectorySession::default(), waiting, true).unwrap_or_default()
}
