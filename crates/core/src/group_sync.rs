//! Entra group sync, the pure part: Graph's transitive member list of a group, page by page,
//! with throttling; and the plan that brings the login roles the sync created in step with the
//! directory. The plan only ever touches roles the sync created, never drops a role, and reports
//! what it will not do.

use crate::directory::{encode, Request};
use crate::label::normalize_guid;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// PostgreSQL cuts role names at NAMEDATALEN - 1 bytes.
pub const MAX_ROLE_NAME: usize = 63;

/// The longest a throttled sync waits before asking again, whatever `Retry-After` says.
pub const MAX_RETRY_AFTER: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    /// A service principal; managed identities are service principals too.
    Service,
}

impl MemberKind {
    /// The label's `type=`.
    pub fn label_type(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Service => "service",
        }
    }
}

/// A member as its login role is named: users by UPN (guests in their `#EXT#` form), service
/// principals by display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub kind: MemberKind,
    pub name: String,
}

/// The first page of `group`'s transitive members, only the fields the sync needs.
pub fn members_request(graph_endpoint: &str, group: &str, token: &str) -> Request {
    Request {
        method: "GET",
        url: format!(
            "{}/v1.0/groups/{}/transitiveMembers?$select=id,userPrincipalName,displayName&$top=999",
            graph_endpoint.trim_end_matches('/'),
            encode(group)
        ),
        headers: vec![("Authorization", format!("Bearer {token}"))],
        body: None,
        plain_http_ok: false,
    }
}

/// The request for a page Graph named in `@odata.nextLink`. The link must point into the
/// configured Graph endpoint: the directory's token is never sent anywhere else.
pub fn next_page_request(
    graph_endpoint: &str,
    next_link: &str,
    token: &str,
) -> Result<Request, String> {
    let base = format!("{}/", graph_endpoint.trim_end_matches('/'));
    if !next_link.starts_with(&base) {
        return Err(format!(
            "the directory's next page link does not start with the Graph endpoint {base}"
        ));
    }
    Ok(Request {
        method: "GET",
        url: next_link.to_string(),
        headers: vec![("Authorization", format!("Bearer {token}"))],
        body: None,
        plain_http_ok: false,
    })
}

/// One page of members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub members: Vec<Member>,
    /// Members of other kinds (nested groups, devices, contacts).
    pub skipped: usize,
    /// Users without a UPN and service principals without a display name (Graph answers with
    /// just the id when the application may not read that kind of object). They are in
    /// `members` with an empty name.
    pub unnamed: usize,
    pub next_link: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageError {
    /// HTTP 429 (or 503 with `Retry-After`): ask again after this many seconds.
    Throttled {
        retry_after: u64,
    },
    /// HTTP 404: the group no longer exists in the directory, so it has no members.
    Gone,
    Failed(String),
}

/// `Retry-After` in seconds (Graph sends seconds), at least 1, at most [`MAX_RETRY_AFTER`];
/// 10 when absent or not a number.
fn retry_after_seconds(header: Option<&str>) -> u64 {
    header
        .and_then(|h| h.trim().parse::<u64>().ok())
        .unwrap_or(10)
        .clamp(1, MAX_RETRY_AFTER)
}

/// A transitiveMembers answer.
pub fn parse_members_page(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<Page, PageError> {
    if status == 429 || (status == 503 && retry_after.is_some()) {
        return Err(PageError::Throttled {
            retry_after: retry_after_seconds(retry_after),
        });
    }
    if status == 404 {
        // Only Graph's own "no such object": a wrong endpoint or a proxy answers 404 too, and
        // must not make every group look empty.
        let code = serde_json::from_slice::<Value>(body).ok().and_then(|d| {
            d.pointer("/error/code")
                .and_then(Value::as_str)
                .map(String::from)
        });
        if code.as_deref() == Some("Request_ResourceNotFound") {
            return Err(PageError::Gone);
        }
        return Err(PageError::Failed(
            "the directory answered HTTP status 404 without Graph's Request_ResourceNotFound"
                .into(),
        ));
    }
    if status != 200 {
        return Err(PageError::Failed(format!(
            "the directory answered HTTP status {status}"
        )));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| PageError::Failed("the directory's answer is not JSON".into()))?;
    let items = doc
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| PageError::Failed("the directory's answer has no \"value\" list".into()))?;
    let mut page = Page {
        members: Vec::new(),
        skipped: 0,
        unnamed: 0,
        next_link: doc
            .get("@odata.nextLink")
            .and_then(Value::as_str)
            .map(String::from),
    };
    for item in items {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let (kind, name) = match item.get("@odata.type").and_then(Value::as_str) {
            Some("#microsoft.graph.user") => (MemberKind::User, text("userPrincipalName")),
            Some("#microsoft.graph.servicePrincipal") => (MemberKind::Service, text("displayName")),
            _ => {
                page.skipped += 1;
                continue;
            }
        };
        let Some(id) = text("id") else {
            page.skipped += 1;
            continue;
        };
        if name.is_none() {
            page.unnamed += 1;
        }
        page.members.push(Member {
            id: normalize_guid(&id).unwrap_or(id),
            kind,
            // Unnamed: still a member (its role, if any, stays), but no new role is made.
            name: name.unwrap_or_default(),
        });
    }
    Ok(page)
}

/// A group role and its members in the directory, all pages read.
#[derive(Clone, Debug)]
pub struct GroupMembers {
    pub group_role: String,
    pub members: Vec<Member>,
}

/// A login role the sync created (as recorded by an earlier run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncedRole {
    pub role: String,
    pub object_id: String,
    pub can_login: bool,
    /// NOLOGIN was set by the sync itself (the label's `disabled`), not by an administrator.
    pub disabled_by_sync: bool,
    /// The group roles the sync made it a member of.
    pub groups: BTreeSet<String>,
}

/// One change, or one thing reported and not done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new login role, labelled with the member's object id and type, a member of `groups`.
    Create {
        role: String,
        member: Member,
        groups: BTreeSet<String>,
    },
    Grant {
        role: String,
        group_role: String,
    },
    Revoke {
        role: String,
        group_role: String,
    },
    /// In no synced group any more: NOLOGIN (never dropped: it may own objects).
    Disable {
        role: String,
    },
    /// Back in a synced group, after the sync had disabled it.
    Enable {
        role: String,
    },
    /// In a synced group, but an administrator set NOLOGIN: the sync leaves it so.
    KeptDisabled {
        role: String,
    },
    /// The member's directory name changed; the role keeps its name (identity is the object id).
    Renamed {
        role: String,
        object_id: String,
        directory_name: String,
    },
    /// Not created: the name belongs to a role the sync did not create, or is too long.
    Skipped {
        name: String,
        object_id: String,
        why: String,
    },
}

impl Action {
    /// The `action` column of a sync's rows.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "created",
            Action::Grant { .. } => "granted",
            Action::Revoke { .. } => "revoked",
            Action::Disable { .. } => "disabled",
            Action::Enable { .. } => "enabled",
            Action::KeptDisabled { .. } => "kept_nologin",
            Action::Renamed { .. } => "renamed_in_directory",
            Action::Skipped { .. } => "skipped",
        }
    }
}

/// Why a member may not have a role of its directory name, if it may not: names PostgreSQL
/// reserves or refuses, names with control characters, names longer than role names, and
/// service principals named like a user's UPN (display names are chosen by whoever owns the
/// application, and must not claim a user's name).
pub fn name_refused(member: &Member) -> Option<String> {
    let name = &member.name;
    if name.starts_with("pg_") || name == "public" || name == "none" {
        return Some("PostgreSQL reserves that role name".into());
    }
    if name.chars().any(char::is_control) {
        return Some("the name holds control characters".into());
    }
    if name.len() > MAX_ROLE_NAME {
        return Some(format!(
            "the name is longer than PostgreSQL's {MAX_ROLE_NAME}-byte role names"
        ));
    }
    if member.kind == MemberKind::Service && name.contains('@') {
        return Some("a service principal's display name may not look like a user's UPN".into());
    }
    None
}

/// At most `cap` roles created in one run (PostgreSQL 16 and later lock each role they create
/// until the transaction ends, and the lock table is shared by the whole server): the actions
/// to run now, and how many creations wait for the next run.
pub fn limit_creates(actions: Vec<Action>, cap: usize) -> (Vec<Action>, usize) {
    let mut created = 0;
    let mut deferred = 0;
    let now = actions
        .into_iter()
        .filter(|a| {
            if !matches!(a, Action::Create { .. }) {
                return true;
            }
            created += 1;
            if created > cap {
                deferred += 1;
            }
            created <= cap
        })
        .collect();
    (now, deferred)
}

/// What brings the synced roles in step with `groups`. `unread`: group roles whose members
/// could not be read this time; memberships in them stay as they are. `taken(name)`: whether a
/// role of that name exists now, in any letter case (the sync's own roles included). Actions
/// come in a stable order: by object id, then by group role.
pub fn plan(
    groups: &[GroupMembers],
    unread: &BTreeSet<String>,
    synced: &[SyncedRole],
    taken: &dyn Fn(&str) -> bool,
) -> Vec<Action> {
    // Wanted: object id -> (member, the group roles it belongs to).
    let mut wanted: BTreeMap<&str, (&Member, BTreeSet<String>)> = BTreeMap::new();
    for g in groups {
        for m in &g.members {
            wanted
                .entry(m.id.as_str())
                .or_insert_with(|| (m, BTreeSet::new()))
                .1
                .insert(g.group_role.clone());
        }
    }
    let by_oid: BTreeMap<&str, &SyncedRole> =
        synced.iter().map(|s| (s.object_id.as_str(), s)).collect();
    let synced_names: BTreeSet<String> = synced.iter().map(|s| s.role.to_lowercase()).collect();
    let mut actions = Vec::new();
    let mut names_planned: BTreeSet<String> = BTreeSet::new();
    for (oid, (member, want)) in &wanted {
        match by_oid.get(oid) {
            Some(s) => {
                let mut want = want.clone();
                want.extend(s.groups.intersection(unread).cloned());
                let want = &want;
                if s.role != member.name && !member.name.is_empty() {
                    actions.push(Action::Renamed {
                        role: s.role.clone(),
                        object_id: oid.to_string(),
                        directory_name: member.name.clone(),
                    });
                }
                if !s.can_login {
                    let role = s.role.clone();
                    actions.push(if s.disabled_by_sync {
                        Action::Enable { role }
                    } else {
                        Action::KeptDisabled { role }
                    });
                }
                for g in want.difference(&s.groups) {
                    actions.push(Action::Grant {
                        role: s.role.clone(),
                        group_role: g.clone(),
                    });
                }
                for g in s.groups.difference(want) {
                    actions.push(Action::Revoke {
                        role: s.role.clone(),
                        group_role: g.clone(),
                    });
                }
            }
            None => {
                let skip = |why: String| Action::Skipped {
                    name: member.name.clone(),
                    object_id: oid.to_string(),
                    why,
                };
                let lower = member.name.to_lowercase();
                if member.name.is_empty() {
                    // Reported per group, with the permission it needs.
                } else if normalize_guid(&member.id).is_none() {
                    actions.push(skip("the directory object id is not a GUID".into()));
                } else if let Some(why) = name_refused(member) {
                    actions.push(skip(why));
                } else if synced_names.contains(&lower) || names_planned.contains(&lower) {
                    actions.push(skip(
                        "the sync's role of another member has that name".into(),
                    ));
                } else if taken(&member.name) {
                    actions.push(skip(
                        "a role of that name exists that the sync did not create".into(),
                    ));
                } else {
                    names_planned.insert(lower);
                    actions.push(Action::Create {
                        role: member.name.clone(),
                        member: (*member).clone(),
                        groups: want.clone(),
                    });
                }
            }
        }
    }
    for s in synced {
        if wanted.contains_key(s.object_id.as_str()) {
            continue;
        }
        for g in s.groups.difference(unread) {
            actions.push(Action::Revoke {
                role: s.role.clone(),
                group_role: g.clone(),
            });
        }
        if s.can_login && s.groups.is_disjoint(unread) {
            actions.push(Action::Disable {
                role: s.role.clone(),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
