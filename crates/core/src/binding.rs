//! Who may bind an Entra principal to a role (pure, no pgrx).
//!
//! A label lets whoever holds its principal's token log in as the role, with every privilege
//! the role has. So a manager who is not a superuser (an Entra administrator) may bind a role
//! only when that hands out nothing the manager neither holds nor could grant itself:
//!
//! - never a predefined role, and never a role that is, or through any chain of memberships
//!   reaches, a superuser, REPLICATION or BYPASSRLS role, or one of [`PRIVILEGED_PREDEFINED`]
//!   (the floor: it holds even for a manager who has those privileges itself);
//! - for a new binding (a label on an unlabelled role, or another object id or type): no
//!   CREATEROLE or CREATEDB the manager lacks, and every role the role is a member of (any
//!   chain) is one the manager is a member of or holds ADMIN OPTION on.
//!
//! Changing only a label's flags (admin, MFA) binds nobody new: the floor applies.

/// Predefined roles that reach the server's files, programs or all data, or act on other
/// sessions and the whole cluster: never bound by an Entra administrator.
pub const PRIVILEGED_PREDEFINED: [&str; 8] = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_signal_backend",
    "pg_create_subscription",
    "pg_maintain",
];

/// What the catalogs say of one role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub superuser: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub createrole: bool,
    pub createdb: bool,
    /// A role of PostgreSQL's own (object id below FirstNormalObjectId).
    pub predefined: bool,
}

/// A role the bound role is a member of, directly or through others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ancestor {
    pub role: RoleFacts,
    /// The manager is a member of it, or holds ADMIN OPTION on it.
    pub manager_holds_or_grants: bool,
}

/// What the change does to the role's binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A label on a role that had none, or another object id or principal type.
    NewBinding,
    /// The same principal; only the label's flags change.
    FlagsOnly,
}

/// Why a manager may not bind a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Predefined,
    /// The role, or `via` a role it is a member of, is a superuser (or REPLICATION, ...).
    Privileged {
        attribute: &'static str,
        via: Option<String>,
    },
    PrivilegedPredefined(String),
    Attribute(&'static str),
    Membership(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Predefined => write!(f, "it is a predefined role"),
            Refusal::Privileged {
                attribute,
                via: None,
            } => write!(f, "it is a {attribute} role"),
            Refusal::Privileged {
                attribute,
                via: Some(via),
            } => write!(f, "it is a member of \"{via}\", a {attribute} role"),
            Refusal::PrivilegedPredefined(name) => write!(f, "it is a member of \"{name}\""),
            Refusal::Attribute(attribute) => {
                write!(f, "it has {attribute}, which you do not have")
            }
            Refusal::Membership(name) => write!(
                f,
                "it is a member of \"{name}\", which you are not a member of and hold no ADMIN OPTION on"
            ),
        }
    }
}

fn privileged_attribute(role: &RoleFacts) -> Option<&'static str> {
    if role.superuser {
        Some("superuser")
    } else if role.replication {
        Some("REPLICATION")
    } else if role.bypassrls {
        Some("BYPASSRLS")
    } else {
        None
    }
}

/// The floor alone: whether `role`, with the roles it is a member of, may be bound by anyone
/// but a superuser. Also what group sync asks of a group role before granting it.
pub fn check_floor(role: &RoleFacts, ancestors: &[Ancestor]) -> Result<(), Refusal> {
    if role.predefined {
        return Err(Refusal::Predefined);
    }
    if let Some(attribute) = privileged_attribute(role) {
        return Err(Refusal::Privileged {
            attribute,
            via: None,
        });
    }
    for a in ancestors {
        if let Some(attribute) = privileged_attribute(&a.role) {
            return Err(Refusal::Privileged {
                attribute,
                via: Some(a.role.name.clone()),
            });
        }
        if a.role.predefined && PRIVILEGED_PREDEFINED.contains(&a.role.name.as_str()) {
            return Err(Refusal::PrivilegedPredefined(a.role.name.clone()));
        }
    }
    Ok(())
}

/// Whether a manager who is not a superuser, with the attributes in `manager`, may make
/// `change` to the binding of `role`, a member of `ancestors`.
pub fn check(
    role: &RoleFacts,
    ancestors: &[Ancestor],
    manager: &RoleFacts,
    change: Change,
) -> Result<(), Refusal> {
    check_floor(role, ancestors)?;
    if change == Change::FlagsOnly {
        return Ok(());
    }
    if role.createrole && !manager.createrole {
        return Err(Refusal::Attribute("CREATEROLE"));
    }
    if role.createdb && !manager.createdb {
        return Err(Refusal::Attribute("CREATEDB"));
    }
    match ancestors.iter().find(|a| !a.manager_holds_or_grants) {
        Some(a) => Err(Refusal::Membership(a.role.name.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
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
            check(&role("ann"), &ancestors, &admin(), Change::NewBinding),
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
            let refused = check(&role("ops"), &ancestors, &admin(), change).unwrap_err();
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
            check(&repl, &[], &admin(), Change::FlagsOnly),
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
            check(&role("x"), &[held(rls)], &admin(), Change::NewBinding),
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
                check(&role("x"), &[held(p)], &admin(), Change::NewBinding),
                Err(Refusal::PrivilegedPredefined(name.into()))
            );
        }
        // pg_monitor and its like fall under the general rule: held, so allowed.
        let monitor = RoleFacts {
            predefined: true,
            ..role("pg_monitor")
        };
        assert_eq!(
            check(&role("x"), &[held(monitor)], &admin(), Change::NewBinding),
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
            check(&p, &[], &admin(), Change::FlagsOnly),
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
            check(&role("ops"), &ancestors, &admin(), Change::NewBinding),
            Err(Refusal::Membership("secret_readers".into()))
        );
        assert_eq!(
            check(&role("ops"), &ancestors, &admin(), Change::FlagsOnly),
            Ok(())
        );
    }

    #[test]
    fn attributes_beyond_the_managers_are_refused() {
        let creator = RoleFacts {
            createrole: true,
            ..role("creator")
        };
        let plain_admin = role("labelled-admin");
        assert_eq!(
            check(&creator, &[], &plain_admin, Change::NewBinding),
            Err(Refusal::Attribute("CREATEROLE"))
        );
        assert_eq!(check(&creator, &[], &admin(), Change::NewBinding), Ok(()));
        let db = RoleFacts {
            createdb: true,
            ..role("db")
        };
        assert_eq!(
            check(&db, &[], &plain_admin, Change::NewBinding),
            Err(Refusal::Attribute("CREATEDB"))
        );
    }
}
