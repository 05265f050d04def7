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
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> Member {
        Member {
            id: id.into(),
            kind: MemberKind::User,
            name: name.into(),
        }
    }

    fn synced(role: &str, id: &str, login: bool, groups: &[&str]) -> SyncedRole {
        SyncedRole {
            role: role.into(),
            object_id: id.into(),
            can_login: login,
            // As the sync leaves a role it disabled itself.
            disabled_by_sync: !login,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn an_administrators_nologin_is_kept_and_reported() {
        let groups = [GroupMembers {
            group_role: "analysts".into(),
            members: vec![user(U1, "ann@contoso.com"), user(U2, "bob@contoso.com")],
        }];
        let ann = SyncedRole {
            disabled_by_sync: false,
            ..synced("ann@contoso.com", U1, false, &["analysts"])
        };
        let bob = synced("bob@contoso.com", U2, false, &["analysts"]);
        assert_eq!(
            plan(&groups, &none(), &[ann, bob], &|_| true),
            vec![
                Action::KeptDisabled {
                    role: "ann@contoso.com".into()
                },
                Action::Enable {
                    role: "bob@contoso.com".into()
                },
            ]
        );
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|g| g.to_string()).collect()
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    const U1: &str = "00000000-0000-4000-8000-000000000001";
    const U2: &str = "00000000-0000-4000-8000-000000000002";
    const U3: &str = "00000000-0000-4000-8000-000000000003";

    #[test]
    fn pages_members_of_the_kinds_the_sync_names_and_the_next_link() {
        let body = br##"{"@odata.nextLink":"https://graph.example/v1.0/groups/g/transitiveMembers?$skiptoken=x",
            "value":[
            {"@odata.type":"#microsoft.graph.user","id":"u1","userPrincipalName":"ann@contoso.com"},
            {"@odata.type":"#microsoft.graph.user","id":"u2","userPrincipalName":"bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"},
            {"@odata.type":"#microsoft.graph.servicePrincipal","id":"s1","displayName":"etl-identity"},
            {"@odata.type":"#microsoft.graph.group","id":"g2","displayName":"nested"},
            {"@odata.type":"#microsoft.graph.device","id":"d1","displayName":"laptop"},
            {"@odata.type":"#microsoft.graph.user","id":"u3"},
            {"@odata.type":"#microsoft.graph.user"}]}"##;
        let page = parse_members_page(200, None, body).unwrap();
        assert_eq!(
            page.members,
            vec![
                user("u1", "ann@contoso.com"),
                user("u2", "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"),
                Member {
                    id: "s1".into(),
                    kind: MemberKind::Service,
                    name: "etl-identity".into()
                },
                user("u3", ""),
            ]
        );
        assert_eq!((page.skipped, page.unnamed), (3, 1));
        assert!(page.next_link.as_deref().unwrap().ends_with("$skiptoken=x"));
        let last = parse_members_page(200, None, br#"{"value":[]}"#).unwrap();
        assert_eq!(last.next_link, None);
    }

    #[test]
    fn throttling_and_failures() {
        assert_eq!(
            parse_members_page(429, Some("7"), b""),
            Err(PageError::Throttled { retry_after: 7 })
        );
        assert_eq!(
            parse_members_page(429, None, b""),
            Err(PageError::Throttled { retry_after: 10 })
        );
        assert_eq!(
            parse_members_page(429, Some("86400"), b""),
            Err(PageError::Throttled {
                retry_after: MAX_RETRY_AFTER
            })
        );
        assert_eq!(
            parse_members_page(503, Some("2"), b""),
            Err(PageError::Throttled { retry_after: 2 })
        );
        assert_eq!(
            parse_members_page(
                404,
                None,
                br#"{"error":{"code":"Request_ResourceNotFound"}}"#
            ),
            Err(PageError::Gone)
        );
        assert!(matches!(
            parse_members_page(404, None, b"<html>not found</html>"),
            Err(PageError::Failed(_))
        ));
        assert!(matches!(
            parse_members_page(503, None, b""),
            Err(PageError::Failed(_))
        ));
        assert!(matches!(
            parse_members_page(200, None, b"not json"),
            Err(PageError::Failed(_))
        ));
        assert!(matches!(
            parse_members_page(200, None, br#"{"items":[]}"#),
            Err(PageError::Failed(_))
        ));
    }

    #[test]
    fn next_links_stay_on_the_graph_endpoint() {
        let ok = next_page_request(
            "https://graph.example/",
            "https://graph.example/v1.0/groups/g/transitiveMembers?$skiptoken=x",
            "t",
        )
        .unwrap();
        assert_eq!(ok.headers, vec![("Authorization", "Bearer t".to_string())]);
        assert!(next_page_request(
            "https://graph.example",
            "https://graph.example.evil/v1.0/x",
            "t"
        )
        .is_err());
        assert!(
            next_page_request("https://graph.example", "http://graph.example/v1.0/x", "t").is_err()
        );
        let first = members_request("https://graph.example/", "g 1", "t");
        assert_eq!(
            first.url,
            "https://graph.example/v1.0/groups/g%201/transitiveMembers?$select=id,userPrincipalName,displayName&$top=999"
        );
    }

    #[test]
    fn new_members_get_roles_unless_their_name_is_taken_or_too_long() {
        let groups = [
            GroupMembers {
                group_role: "analysts".into(),
                members: vec![user(U1, "ann@contoso.com"), user(U2, "postgres")],
            },
            GroupMembers {
                group_role: "admins".into(),
                members: vec![user(U1, "ann@contoso.com"), user(U3, &"x".repeat(64))],
            },
        ];
        let actions = plan(&groups, &none(), &[], &|name| name == "postgres");
        assert_eq!(
            actions[0],
            Action::Create {
                role: "ann@contoso.com".into(),
                member: user(U1, "ann@contoso.com"),
                groups: set(&["admins", "analysts"]),
            }
        );
        assert!(matches!(&actions[1], Action::Skipped { name, why, .. }
            if name == "postgres" && why.contains("did not create")));
        assert!(matches!(&actions[2], Action::Skipped { why, .. } if why.contains("63-byte")));
        assert_eq!(actions.len(), 3);
    }

    #[test]
    fn two_members_with_one_name_get_one_role() {
        let groups = [GroupMembers {
            group_role: "g".into(),
            members: vec![user(U1, "same"), user(U2, "same")],
        }];
        let actions = plan(&groups, &none(), &[], &|_| false);
        assert!(matches!(&actions[0], Action::Create { role, .. } if role == "same"));
        assert!(matches!(&actions[1], Action::Skipped { object_id, why, .. }
            if object_id == U2 && why.contains("another member")));
    }

    #[test]
    fn synced_roles_follow_membership_and_are_never_dropped() {
        let groups = [GroupMembers {
            group_role: "analysts".into(),
            members: vec![user(U1, "ann@contoso.com"), user(U2, "bob.new@contoso.com")],
        }];
        let before = [
            synced("ann@contoso.com", U1, true, &["admins"]),
            synced("bob@contoso.com", U2, false, &[]),
            synced("cy@contoso.com", U3, true, &["analysts"]),
        ];
        // The sync's own names count as taken; they never matter for roles it knows.
        let actions = plan(&groups, &none(), &before, &|_| true);
        assert_eq!(
            actions,
            vec![
                Action::Grant {
                    role: "ann@contoso.com".into(),
                    group_role: "analysts".into()
                },
                Action::Revoke {
                    role: "ann@contoso.com".into(),
                    group_role: "admins".into()
                },
                Action::Renamed {
                    role: "bob@contoso.com".into(),
                    object_id: U2.into(),
                    directory_name: "bob.new@contoso.com".into()
                },
                Action::Enable {
                    role: "bob@contoso.com".into()
                },
                Action::Grant {
                    role: "bob@contoso.com".into(),
                    group_role: "analysts".into()
                },
                Action::Revoke {
                    role: "cy@contoso.com".into(),
                    group_role: "analysts".into()
                },
                Action::Disable {
                    role: "cy@contoso.com".into()
                },
            ]
        );
        // In step: nothing to do.
        let after = [
            synced("ann@contoso.com", U1, true, &["analysts"]),
            synced("bob.new@contoso.com", U2, true, &["analysts"]),
        ];
        assert!(plan(&groups, &none(), &after, &|_| true).is_empty());
    }

    #[test]
    fn members_of_unread_groups_keep_their_memberships_and_login() {
        // "admins" could not be read: ann keeps it, cy keeps it and LOGIN, dee (only in
        // "analysts", which was read) loses hers.
        let groups = [GroupMembers {
            group_role: "analysts".into(),
            members: vec![user(U1, "ann@contoso.com")],
        }];
        let before = [
            synced("ann@contoso.com", U1, true, &["admins", "analysts"]),
            synced("cy@contoso.com", U2, true, &["admins", "analysts"]),
            synced("dee@contoso.com", U3, true, &["analysts"]),
        ];
        let actions = plan(&groups, &set(&["admins"]), &before, &|_| true);
        assert_eq!(
            actions,
            vec![
                Action::Revoke {
                    role: "cy@contoso.com".into(),
                    group_role: "analysts".into()
                },
                Action::Revoke {
                    role: "dee@contoso.com".into(),
                    group_role: "analysts".into()
                },
                Action::Disable {
                    role: "dee@contoso.com".into()
                },
            ]
        );
    }

    #[test]
    fn ids_are_lower_case_guids_or_the_member_is_skipped() {
        let body = br##"{"value":[
            {"@odata.type":"#microsoft.graph.user","id":"00000000-0000-4000-8000-00000000000A","userPrincipalName":"a@x"}]}"##;
        let page = parse_members_page(200, None, body).unwrap();
        assert_eq!(page.members[0].id, "00000000-0000-4000-8000-00000000000a");
        let groups = [GroupMembers {
            group_role: "g".into(),
            members: vec![user("not-a-guid", "b@x")],
        }];
        assert!(matches!(&plan(&groups, &none(), &[], &|_| false)[0],
            Action::Skipped { why, .. } if why.contains("GUID")));
    }

    #[test]
    fn names_postgresql_refuses_or_that_would_squat_are_skipped() {
        let service = |name: &str| Member {
            id: U2.into(),
            kind: MemberKind::Service,
            name: name.into(),
        };
        for name in ["pg_dba@contoso.com", "public", "none", "a\u{0}b", "a\nb"] {
            assert!(name_refused(&user(U1, name)).is_some(), "{name:?}");
        }
        assert!(name_refused(&service("ceo@contoso.com")).is_some());
        assert!(name_refused(&service("etl-identity")).is_none());
        assert!(name_refused(&user(U1, "Public")).is_none());
        // Letter case: one role per name, however it is written.
        let groups = [GroupMembers {
            group_role: "g".into(),
            members: vec![user(U1, "Ann@x"), user(U2, "ann@x")],
        }];
        let actions = plan(&groups, &none(), &[], &|_| false);
        assert!(matches!(&actions[0], Action::Create { role, .. } if role == "Ann@x"));
        assert!(matches!(&actions[1], Action::Skipped { .. }));
    }

    #[test]
    fn an_unnamed_member_keeps_its_role_and_gets_none() {
        let groups = [GroupMembers {
            group_role: "g".into(),
            members: vec![user(U1, ""), user(U2, "")],
        }];
        let before = [synced("ann@x", U1, true, &["g"])];
        assert!(plan(&groups, &none(), &before, &|_| true).is_empty());
    }

    #[test]
    fn creations_beyond_the_cap_wait_for_the_next_run() {
        let groups = [GroupMembers {
            group_role: "g".into(),
            members: vec![user(U1, "a"), user(U2, "b"), user(U3, "c")],
        }];
        let before = [synced(
            "old",
            "00000000-0000-4000-8000-000000000009",
            true,
            &["g"],
        )];
        let (now, deferred) = limit_creates(plan(&groups, &none(), &before, &|_| false), 2);
        assert_eq!(deferred, 1);
        assert_eq!(
            now.iter()
                .filter(|a| matches!(a, Action::Create { .. }))
                .count(),
            2
        );
        // Everything else still happens now.
        assert!(now
            .iter()
            .any(|a| matches!(a, Action::Disable { role } if role == "old")));
    }
}
