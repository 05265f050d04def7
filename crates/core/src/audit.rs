//! The audit line of a token login (pure, no pgrx):
//! `pgaadauth: login outcome=… role=… type=… oid=… tid=… upn=… appid=… via_group=… client=… reason=… method=…`
//!
//! `method` says how the token came: `token` (the password message of a `trust` line),
//! `oauth` (PostgreSQL 18's SASL OAUTHBEARER, on an `oauth` line) or `pgbouncer` (a client
//! login that PgBouncer's PAM module had checked, `client` being PgBouncer's client).
//!
//! Values are percent-encoded outside a safe set, so a crafted claim cannot add fields or lines
//! (spaces, `=`, newlines and `%` are encoded), and cut to [`MAX_VALUE`] characters.

use serde_json::{Map, Value};

pub const MAX_VALUE: usize = 128;

/// The fields of one audit line; `None` prints as `-`.
#[derive(Debug, Default)]
pub struct AuditLine<'a> {
    pub accepted: bool,
    pub role: &'a str,
    pub principal_type: Option<&'a str>,
    pub oid: Option<&'a str>,
    pub tid: Option<&'a str>,
    pub upn: Option<&'a str>,
    pub appid: Option<&'a str>,
    pub via_group: Option<&'a str>,
    pub client: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub method: Method,
}

/// How the token reached the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// As the password, on a `trust` line.
    #[default]
    Token,
    /// In a SASL OAUTHBEARER exchange, on an `oauth` line (PostgreSQL 18).
    OAuth,
    /// As the password of a client of PgBouncer, checked through its PAM module.
    PgBouncer,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::OAuth => "oauth",
            Method::PgBouncer => "pgbouncer",
        }
    }
}

/// A value made safe for a key=value line.
pub fn escape(value: Option<&str>) -> String {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return "-".into();
    };
    let mut out = String::new();
    for (n, c) in v.chars().enumerate() {
        if n == MAX_VALUE {
            out.push_str("...");
            break;
        }
        if c.is_ascii_alphanumeric() || "-._~@:/+#,!*()[]{}'$&;".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

impl std::fmt::Display for AuditLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pgaadauth: login outcome={} role={} type={} oid={} tid={} upn={} appid={} via_group={} client={} reason={} method={}",
            if self.accepted { "accepted" } else { "rejected" },
            escape(Some(self.role)),
            escape(self.principal_type),
            escape(self.oid),
            escape(self.tid),
            escape(self.upn),
            escape(self.appid),
            escape(self.via_group),
            escape(self.client),
            escape(self.reason),
            self.method.as_str(),
        )
    }
}

/// An accepted login as Azure Database for PostgreSQL words it (`pgaadauth.log_format = 'azure'`),
/// for Azure's audit query: a line holding `Microsoft Entra ID connection authorized` is a
/// login; the person is the text between the last `UPN=` and the following `oid=` (users), or
/// between the last `appid=` and the following `oid=` (service principals). So the person's
/// value runs straight into `oid=`, a user's line never holds `appid` and an application's never
/// `UPN` (the query tests both in any case), and nothing holds `session=`. No client address or
/// host name: a host name is the client's to choose, and could hold `appid`.
#[derive(Debug, Default)]
pub struct AzureLine<'a> {
    pub principal_type: Option<&'a str>,
    pub oid: Option<&'a str>,
    pub tid: Option<&'a str>,
    pub upn: Option<&'a str>,
    pub appid: Option<&'a str>,
    pub via_group: Option<&'a str>,
    pub method: Method,
    /// A connection pooler's session, shared by the pooler's clients (`pooled=yes`).
    pub pooled: bool,
    /// Name no person: a session from one of `pgaadauth.pooler_addresses`, whose statements
    /// are its clients', one after another.
    pub person_hidden: bool,
}

impl std::fmt::Display for AzureLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Microsoft Entra ID connection authorized: type={} ",
            escape(self.principal_type)
        )?;
        let present = |v: Option<&'_ str>| v.filter(|v| !v.is_empty()).is_some();
        if self.pooled {
            f.write_str("pooled=yes ")?;
        }
        if self.person_hidden {
            // Nothing.
        } else if present(self.upn) {
            write!(f, "UPN={}oid={} ", escape(self.upn), escape(self.oid))?;
        } else if present(self.appid) {
            write!(f, "appid={}oid={} ", escape(self.appid), escape(self.oid))?;
        } else {
            write!(f, "oid={} ", escape(self.oid))?;
        }
        write!(
            f,
            "tid={} via_group={} method={}",
            escape(self.tid),
            escape(self.via_group),
            self.method.as_str()
        )
    }
}

/// The claims of a token without verifying anything: for audit lines of refused logins and for
/// diagnosis only, never for a decision.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A string claim, or the first of several names that is present.
pub fn claim<'a>(claims: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| claims.get(*n).and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_line() {
        let line = AuditLine {
            accepted: true,
            role: "alice@contoso.com",
            principal_type: Some("user"),
            oid: Some("6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"),
            tid: Some("11111111-2222-3333-4444-555555555555"),
            upn: Some("alice@contoso.com"),
            client: Some("10.0.0.7"),
            ..Default::default()
        };
        assert_eq!(
            line.to_string(),
            "pgaadauth: login outcome=accepted role=alice@contoso.com type=user \
             oid=6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b tid=11111111-2222-3333-4444-555555555555 \
             upn=alice@contoso.com appid=- via_group=- client=10.0.0.7 reason=- method=token"
        );
    }

    #[test]
    fn crafted_values_cannot_forge_fields_or_lines() {
        let evil = "x\n2026-01-01 LOG:  pgaadauth: login outcome=accepted role=postgres";
        let line = AuditLine {
            role: "r",
            upn: Some(evil),
            reason: Some("bad_signature"),
            ..Default::default()
        }
        .to_string();
        assert!(!line.contains('\n'));
        assert_eq!(line.matches("outcome=").count(), 1);
        assert_eq!(line.matches(" role=").count(), 1);
        assert!(line.contains("upn=x%0A2026-01-01%20LOG:%20%20pgaadauth:%20login%20outcome%3Daccepted%20role%3Dpostgres"));
        assert_eq!(escape(Some("100%")), "100%25");
        assert_eq!(escape(Some("é")), "%C3%A9");
        assert_eq!(escape(Some("")), "-");
    }

    #[test]
    fn azure_lines_give_azures_query_the_person() {
        let user = AzureLine {
            principal_type: Some("group"),
            oid: Some("6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"),
            upn: Some("alice@contoso.com"),
            appid: Some("04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
            via_group: Some("11111111-2222-3333-4444-555555555555"),
            ..Default::default()
        }
        .to_string();
        assert!(user.starts_with("Microsoft Entra ID connection authorized: "));
        assert!(!user.to_lowercase().contains("appid"), "{user}");
        assert!(
            user.contains(" UPN=alice@contoso.comoid=6f1e2a3b-"),
            "{user}"
        );
        assert_eq!(user.matches("oid=").count(), 1, "{user}");
        let app = AzureLine {
            principal_type: Some("service"),
            oid: Some("6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"),
            appid: Some("04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
            ..Default::default()
        }
        .to_string();
        assert!(!app.to_lowercase().contains("upn"), "{app}");
        assert!(
            app.contains(" appid=04b07795-8ddb-461a-bbee-02f9e1bf7b46oid=6f1e2a3b-"),
            "{app}"
        );
        // A crafted UPN cannot add an `oid=` or a `session=` of its own.
        let evil = AzureLine {
            upn: Some("x oid=y session=z,sess_time"),
            oid: Some("o"),
            ..Default::default()
        }
        .to_string();
        assert_eq!(evil.matches("oid=").count(), 1, "{evil}");
        assert!(!evil.contains("session="));
        assert!(
            evil.contains(" UPN=x%20oid%3Dy%20session%3Dz,sess_timeoid=o "),
            "{evil}"
        );
        // A pooler's session from one of pgaadauth.pooler_addresses names no person; one known
        // only by its token (which the token's holder can arrange) still does.
        let hidden = AzureLine {
            upn: Some("alice@contoso.com"),
            oid: Some("o"),
            pooled: true,
            person_hidden: true,
            ..Default::default()
        }
        .to_string();
        assert!(hidden.contains(" pooled=yes "), "{hidden}");
        assert!(
            !hidden.contains("alice") && !hidden.contains("UPN"),
            "{hidden}"
        );
        let by_token = AzureLine {
            upn: Some("alice@contoso.com"),
            oid: Some("o"),
            pooled: true,
            ..Default::default()
        }
        .to_string();
        assert!(
            by_token.contains(" pooled=yes UPN=alice@contoso.comoid=o "),
            "{by_token}"
        );
    }

    #[test]
    fn long_values_are_cut() {
        let v = escape(Some(&"a".repeat(1000)));
        assert_eq!(v.len(), MAX_VALUE + 3);
        assert!(v.ends_with("..."));
    }

    #[test]
    fn claims_without_verification() {
        let t = format!(
            "e30.{}.sig",
            base64::engine::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"oid":"o","appid":"a"}"#
            )
        );
        let c = unverified_claims(&t).unwrap();
        assert_eq!(claim(&c, &["upn", "appid"]), Some("a"));
        assert!(unverified_claims("not a token").is_none());
    }
}
