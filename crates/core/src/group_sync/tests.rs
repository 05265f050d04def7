//! Tests of `group_sync.rs`.

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
