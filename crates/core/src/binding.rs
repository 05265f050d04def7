//! Who may bind an Entra principal to a role (pure, no pgrx).
//!
//! A label lets whoever holds its principal's token log in as the role, with every privilege
//! the role has. So a manager who is not a superuser (an Entra administrator) may bind a role
//! only when that hands out nothing the manager neither holds nor could grant itself:
//!
//! - never a predefined role, and never a role that is, or through any chain of memberships
//!   reaches, a superuser, REPLICATION or BYPASSRLS role, or one of [`PRIVILEGED_PREDEFINED`]
//!   (the floor: it holds even for a manager who has those privileges itself);
//! - for a new binding (a label on an unlabelled role, another object id or type, or the
//!   `admin` flag changed): no CREATEROLE or CREATEDB the manager lacks; and unless the manager
//!   is a member of the role or holds ADMIN OPTION on it (then it holds, or could grant itself,
//!   all the role has), every role the role is a member of (any chain) is one the manager is a
//!   member of or holds ADMIN OPTION on, and the role owns no object and holds no privilege on
//!   one (its objects would go to whoever the role is mapped to).
//!
//! Changing only the MFA requirement binds nobody new and gives nothing: the floor applies.

/// Predefined roles that reach the server's files, programs or all data, or act on other
/// sessions and the whole cluster: never bound by an Entra administrator.
pub const PRIVILEGED_PREDEFINED: [&str; 9] = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_signal_backend",
    "pg_signal_autovacuum_worker",
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
    /// A label on a role that had none, another object id or principal type, or the `admin`
    /// flag changed (which gives the role CREATEROLE, CREATEDB and the administrators' role).
    NewBinding,
    /// The same principal and `admin` flag; only the MFA requirement (or nothing) changes.
    FlagsOnly,
}

/// The role to bind, as the catalogs say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub role: RoleFacts,
    /// Every role it is a member of, directly or through others.
    pub ancestors: Vec<Ancestor>,
    /// What it owns or holds privileges on (PostgreSQL's summary), when anything.
    pub objects: Option<String>,
    /// The manager is a member of it, or holds ADMIN OPTION on it.
    pub manager_holds_role: bool,
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
    Objects,
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
            Refusal::Objects => write!(
                f,
                "it owns objects or holds privileges on them, and you are not a member of it and hold no ADMIN OPTION on it"
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
/// `change` to the binding of `target`.
pub fn check(target: &Target, manager: &RoleFacts, change: Change) -> Result<(), Refusal> {
    check_floor(&target.role, &target.ancestors)?;
    if change == Change::FlagsOnly {
        return Ok(());
    }
    if target.role.createrole && !manager.createrole {
        return Err(Refusal::Attribute("CREATEROLE"));
    }
    if target.role.createdb && !manager.createdb {
        return Err(Refusal::Attribute("CREATEDB"));
    }
    if target.manager_holds_role {
        return Ok(());
    }
    if let Some(a) = target.ancestors.iter().find(|a| !a.manager_holds_or_grants) {
        return Err(Refusal::Membership(a.role.name.clone()));
    }
    if target.objects.is_some() {
        return Err(Refusal::Objects);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
