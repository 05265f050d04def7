//! Tests of `binding.rs`.

use super::*;

fn role(name: &str) -> RoleFacts {
    RoleFacts {
        name: name.into(),
        ..RoleFacts::default()
    }
}

fn held(role: RoleFacts) -> Ancestor {
    Ancestor {
        role,
        manager_holds_or_grants: true,
    }
}

fn target(role: RoleFacts, ancestors: &[Ancestor]) -> Target {
    Target {
        role,
        ancestors: ancestors.to_vec(),
        ..Target::default()
    }
}

fn admin() -> RoleFacts {
    RoleFacts {
        createrole: true,
        createdb: true,
        ..role("boss")
    }
}

#[test]
fn a_plain_role_is_bound() {
    let ancestors = [held(role("azure_ad_admin"))];
    assert_eq!(
        check(
            &target(role("ann"), &ancestors),
            &admin(),
            Change::NewBinding
        ),
        Ok(())
    );
}

#[test]
fn a_role_reaching_a_superuser_through_a_chain_is_refused_even_for_flags() {
    let sup = RoleFacts {
        superuser: true,
        ..role("postgres")
    };
    let ancestors = [held(role("middle")), held(sup)];
    for change in [Change::NewBinding, Change::FlagsOnly] {
        let refused = check(&target(role("ops"), &ancestors), &admin(), change).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "it is a member of \"postgres\", a superuser role"
        );
    }
}

#[test]
fn replication_and_bypassrls_are_refused_directly_and_through_members() {
    let repl = RoleFacts {
        replication: true,
        ..role("repl")
    };
    assert_eq!(
        check(&target(repl.clone(), &[]), &admin(), Change::FlagsOnly),
        Err(Refusal::Privileged {
            attribute: "REPLICATION",
            via: None
        })
    );
    let rls = RoleFacts {
        bypassrls: true,
        ..role("rls")
    };
    assert_eq!(
        check(
            &target(role("x"), &[held(rls)]),
            &admin(),
            Change::NewBinding
        ),
        Err(Refusal::Privileged {
            attribute: "BYPASSRLS",
            via: Some("rls".into())
        })
    );
}

#[test]
fn privileged_predefined_roles_are_refused_even_when_the_manager_holds_them() {
    for name in PRIVILEGED_PREDEFINED {
        let p = RoleFacts {
            predefined: true,
            ..role(name)
        };
        assert_eq!(
            check(&target(role("x"), &[held(p)]), &admin(), Change::NewBinding),
            Err(Refusal::PrivilegedPredefined(name.into()))
        );
    }
    // pg_monitor and its like fall under the general rule: held, so allowed.
    let monitor = RoleFacts {
        predefined: true,
        ..role("pg_monitor")
    };
    assert_eq!(
        check(
            &target(role("x"), &[held(monitor)]),
            &admin(),
            Change::NewBinding
        ),
        Ok(())
    );
}

#[test]
fn predefined_roles_themselves_are_never_bound() {
    let p = RoleFacts {
        predefined: true,
        ..role("pg_monitor")
    };
    assert_eq!(
        check(&target(p.clone(), &[]), &admin(), Change::FlagsOnly),
        Err(Refusal::Predefined)
    );
}

#[test]
fn a_membership_the_manager_neither_holds_nor_grants_refuses_a_new_binding_only() {
    let secret = Ancestor {
        role: role("secret_readers"),
        manager_holds_or_grants: false,
    };
    let ancestors = [held(role("azure_ad_admin")), secret];
    assert_eq!(
        check(
            &target(role("ops"), &ancestors),
            &admin(),
            Change::NewBinding
        ),
        Err(Refusal::Membership("secret_readers".into()))
    );
    assert_eq!(
        check(
            &target(role("ops"), &ancestors),
            &admin(),
            Change::FlagsOnly
        ),
        Ok(())
    );
}

#[test]
fn objects_refuse_a_new_binding_unless_the_manager_holds_the_role() {
    let secret = Ancestor {
        role: role("secret_readers"),
        manager_holds_or_grants: false,
    };
    let mut owner = target(role("ops"), &[]);
    owner.objects = Some("owner of table t".into());
    assert_eq!(
        check(&owner, &admin(), Change::NewBinding),
        Err(Refusal::Objects)
    );
    assert_eq!(check(&owner, &admin(), Change::FlagsOnly), Ok(()));
    // A manager that is a member of the role (or holds ADMIN OPTION on it) has, or could
    // grant itself, all of it: its objects and memberships too, but never the floor.
    owner.manager_holds_role = true;
    owner.ancestors = vec![secret];
    assert_eq!(check(&owner, &admin(), Change::NewBinding), Ok(()));
    owner.ancestors.push(held(RoleFacts {
        superuser: true,
        ..role("postgres")
    }));
    assert!(matches!(
        check(&owner, &admin(), Change::NewBinding),
        Err(Refusal::Privileged { .. })
    ));
}

#[test]
fn attributes_beyond_the_managers_are_refused() {
    let creator = RoleFacts {
        createrole: true,
        ..role("creator")
    };
    let plain_admin = role("labelled-admin");
    assert_eq!(
        check(
            &target(creator.clone(), &[]),
            &plain_admin,
            Change::NewBinding
        ),
        Err(Refusal::Attribute("CREATEROLE"))
    );
    assert_eq!(
        check(&target(creator.clone(), &[]), &admin(), Change::NewBinding),
        Ok(())
    );
    let db = RoleFacts {
        createdb: true,
        ..role("db")
    };
    assert_eq!(
        check(&target(db.clone(), &[]), &plain_admin, Change::NewBinding),
        Err(Refusal::Attribute("CREATEDB"))
    );
}
