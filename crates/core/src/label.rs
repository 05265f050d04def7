//! The `pgaadauth` security label grammar (pure, no pgrx).
//!
//! `aadauth,oid=<guid>,type=<user|group|service>[,tid=<guid>][,admin][,mfa][,synced][,disabled]`
//!
//! The head `aadauth` comes first; the other items follow in any order, each at most once.
//! Azure's documented form `aadauth,oid=<objectId>,type=<objectType>,admin` is valid.

use std::fmt;

/// What kind of directory object a role stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalType {
    User,
    Group,
    Service,
}

impl PrincipalType {
    pub fn parse(s: &str) -> Option<PrincipalType> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Some(PrincipalType::User),
            "group" => Some(PrincipalType::Group),
            "service" => Some(PrincipalType::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
            PrincipalType::Service => "service",
        }
    }
}

/// A parsed label: the principal a role is mapped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Directory object id, lower case.
    pub oid: String,
    pub principal_type: PrincipalType,
    /// Tenant id, lower case, when the label pins one.
    pub tid: Option<String>,
    pub admin: bool,
    pub mfa: bool,
    /// The role was created by Entra group sync, which keeps it in step with the directory.
    pub synced: bool,
    /// Group sync set the role NOLOGIN (its member left every synced group): the sync alone
    /// gives LOGIN back. A NOLOGIN without it is an administrator's, which the sync keeps.
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    Empty,
    BadHead(String),
    UnknownItem(String),
    Duplicate(&'static str),
    BadGuid { item: &'static str, value: String },
    BadType(String),
    Missing(&'static str),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::Empty => write!(f, "the label is empty"),
            LabelError::BadHead(h) => {
                write!(f, "the label must start with \"aadauth\", not \"{h}\"")
            }
            LabelError::UnknownItem(i) => write!(
                f,
                "unknown item \"{i}\"; expected oid=, type=, tid=, admin, mfa, synced or disabled"
            ),
            LabelError::Duplicate(i) => write!(f, "item \"{i}\" appears more than once"),
            LabelError::BadGuid { item, value } => {
                write!(f, "{item} \"{value}\" is not a GUID")
            }
            LabelError::BadType(t) => write!(
                f,
                "type \"{t}\" is not one of \"user\", \"group\" or \"service\""
            ),
            LabelError::Missing(i) => write!(f, "the label has no \"{i}=\" item"),
        }
    }
}

/// The lower-case form of a GUID (`8-4-4-4-12` hex digits), or None when `s` is not one.
pub fn normalize_guid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        if dash != (*c == b'-') || (!dash && !c.is_ascii_hexdigit()) {
            return None;
        }
    }
    Some(s.to_ascii_lowercase())
}

/// GUIDs compare case-insensitively; anything else compares exactly.
pub fn same_id(a: &str, b: &str) -> bool {
    match (normalize_guid(a), normalize_guid(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Label {
    pub fn parse(text: &str) -> Result<Label, LabelError> {
        let mut items = text.split(',').map(str::trim);
        let head = items.next().unwrap_or("");
        if head.is_empty() && text.trim().is_empty() {
            return Err(LabelError::Empty);
        }
        if !head.eq_ignore_ascii_case("aadauth") {
            return Err(LabelError::BadHead(head.to_string()));
        }
        let (mut oid, mut ptype, mut tid) = (None, None, None);
        let (mut admin, mut mfa, mut synced, mut disabled) = (false, false, false, false);
        for item in items {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (item.to_ascii_lowercase(), None),
            };
            match (key.as_str(), value) {
                ("oid", Some(v)) => {
                    let g = normalize_guid(v).ok_or_else(|| LabelError::BadGuid {
                        item: "oid",
                        value: v.to_string(),
                    })?;
                    set_once(&mut oid, g, "oid")?;
                }
                ("tid", Some(v)) => {
                    let g = normalize_guid(v).ok_or_else(|| LabelError::BadGuid {
                        item: "tid",
                        value: v.to_string(),
                    })?;
                    set_once(&mut tid, g, "tid")?;
                }
                ("type", Some(v)) => {
                    let t = PrincipalType::parse(v)
                        .ok_or_else(|| LabelError::BadType(v.to_string()))?;
                    set_once(&mut ptype, t, "type")?;
                }
                ("admin", None) => set_flag(&mut admin, "admin")?,
                ("mfa", None) => set_flag(&mut mfa, "mfa")?,
                ("synced", None) => set_flag(&mut synced, "synced")?,
                ("disabled", None) => set_flag(&mut disabled, "disabled")?,
                _ => return Err(LabelError::UnknownItem(item.to_string())),
            }
        }
        Ok(Label {
            oid: oid.ok_or(LabelError::Missing("oid"))?,
            principal_type: ptype.ok_or(LabelError::Missing("type"))?,
            tid,
            admin,
            mfa,
            synced,
            disabled,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), LabelError> {
    if slot.is_some() {
        return Err(LabelError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

fn set_flag(flag: &mut bool, name: &'static str) -> Result<(), LabelError> {
    if *flag {
        return Err(LabelError::Duplicate(name));
    }
    *flag = true;
    Ok(())
}

/// The canonical text form, as `pgaadauth_create_principal*` writes it.
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "aadauth,oid={},type={}",
            self.oid,
            self.principal_type.as_str()
        )?;
        if let Some(tid) = &self.tid {
            write!(f, ",tid={tid}")?;
        }
        if self.admin {
            write!(f, ",admin")?;
        }
        if self.mfa {
            write!(f, ",mfa")?;
        }
        if self.synced {
            write!(f, ",synced")?;
        }
        if self.disabled {
            write!(f, ",disabled")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    const TID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn azure_documented_form_parses() {
        let l = Label::parse(&format!("aadauth,oid={OID},type=user,admin")).unwrap();
        assert_eq!(l.oid, OID);
        assert_eq!(l.principal_type, PrincipalType::User);
        assert!(l.admin && !l.mfa && l.tid.is_none());
    }

    #[test]
    fn items_in_any_order_with_all_options() {
        let l = Label::parse(&format!(
            "aadauth, mfa ,tid={TID},admin,type=service,oid={}",
            OID.to_uppercase()
        ))
        .unwrap();
        assert_eq!(l.oid, OID, "oid is normalised to lower case");
        assert_eq!(l.tid.as_deref(), Some(TID));
        assert_eq!(l.principal_type, PrincipalType::Service);
        assert!(l.admin && l.mfa);
    }

    #[test]
    fn canonical_form_round_trips() {
        let text = format!("aadauth,oid={OID},type=group,tid={TID},admin,mfa,synced");
        let l = Label::parse(&text).unwrap();
        assert_eq!(l.to_string(), text);
        assert_eq!(Label::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn malformed_labels_are_refused() {
        let cases: Vec<(String, LabelError)> = vec![
            ("".into(), LabelError::Empty),
            (
                format!("oid={OID},type=user"),
                LabelError::BadHead(format!("oid={OID}")),
            ),
            (
                format!("aadauth,type=user,oid={OID},colour=red"),
                LabelError::UnknownItem("colour=red".into()),
            ),
            (
                format!("aadauth,oid={OID},oid={OID},type=user"),
                LabelError::Duplicate("oid"),
            ),
            (
                format!("aadauth,oid={OID},type=user,admin,admin"),
                LabelError::Duplicate("admin"),
            ),
            (
                "aadauth,oid=bob,type=user".into(),
                LabelError::BadGuid {
                    item: "oid",
                    value: "bob".into(),
                },
            ),
            (
                format!("aadauth,oid={OID},type=robot"),
                LabelError::BadType("robot".into()),
            ),
            ("aadauth,type=user".into(), LabelError::Missing("oid")),
            (format!("aadauth,oid={OID}"), LabelError::Missing("type")),
            (
                format!("aadauth,oid={OID},type=user,tid=x"),
                LabelError::BadGuid {
                    item: "tid",
                    value: "x".into(),
                },
            ),
            (
                format!("aadauth,oid={OID},type=user,admin=yes"),
                LabelError::UnknownItem("admin=yes".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Label::parse(&text), Err(want), "label {text:?}");
        }
    }

    #[test]
    fn guid_rules() {
        assert_eq!(normalize_guid(&OID.to_uppercase()).as_deref(), Some(OID));
        assert!(normalize_guid("6f1e2a3b4c5d4e6f8a9b0c1d2e3f4a5b").is_none());
        assert!(normalize_guid("6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5g").is_none());
        assert!(same_id(OID, &OID.to_uppercase()));
        assert!(!same_id("Alice", "alice"), "non-GUIDs compare exactly");
    }
}
