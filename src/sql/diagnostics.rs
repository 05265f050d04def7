//! Diagnostics from SQL: `pgaadauth_stats()` (the counters) and `pgaadauth_validate_token_for()`
//! (a token decided exactly as a login would, through the login's decision).

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::catalog::names::{c_string, role_exists};
use crate::login::decision::{self, Attempt, Door, Mapping};
use crate::login::outcome;
use crate::settings;
use pgaadauth_core::label::{Label, PrincipalType};
use pgrx::prelude::*;
use serde_json::{json, Value};

/// Counters since server start (superusers, Entra admins and pg_monitor members).
#[pg_extern(volatile, parallel_safe)]
fn pgaadauth_stats() -> TableIterator<'static, (name!(counter, String), name!(value, i64))> {
    crate::catalog::managers::require_reader_or_principal_manager(
        pg_sys::ROLE_PG_MONITOR,
        "read the pgaadauth statistics",
    );
    let mut rows = crate::shmem::counters::snapshot();
    rows.push((
        "mailbox_slots_in_use".into(),
        crate::shmem::mailbox::slots_in_use() as i64,
    ));
    rows.push((
        "revocations_enforced".into(),
        crate::shmem::revocations::snapshot().len() as i64,
    ));
    TableIterator::new(rows)
}

/// Decode a token and decide it exactly as a login to `role` would (without a role: everything
/// but the principal's mapping). Header and claims, never the signature. Superusers and Entra
/// admins; errors leave the statement (which holds the token) out of the log.
#[pg_extern(volatile, parallel_unsafe)]
fn pgaadauth_validate_token_for(token: &str, role: Option<&str>) -> pgrx::JsonB {
    crate::catalog::managers::require_principal_manager_quietly("validate tokens");
    let part = |i: usize| -> Value {
        use base64::Engine;
        token
            .split('.')
            .nth(i)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let (header, claims) = (part(0), part(1));
    let policy = settings::policy();
    let mapping = match role {
        Some(name) if !role_exists(name) => None,
        Some(name) => Some(Mapping::Label(label_of_role_name(&c_string(name)))),
        // No role: a label that accepts the token's own principal.
        None => Some(Mapping::Label(RoleLabel::Label(Label {
            oid: claims
                .get(&policy.principal_claim)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            principal_type: PrincipalType::User,
            tid: None,
            admin: false,
            mfa: false,
            synced: false,
            disabled: false,
        }))),
    };
    let mut out = json!({"header": header, "claims": claims, "role": role});
    match mapping {
        // No such role: nothing to decide the mapping with; the token's key and issuer below
        // are still reported.
        None => {
            out["verdict"] = json!("rejected");
            out["reason"] = json!(format!(
                "Role \"{}\" does not exist.",
                pgaadauth_core::log_text::log_safe(role.unwrap_or_default())
            ));
            out["reason_code"] = json!("role_not_found");
        }
        Some(mapping) => {
            let attempt = Attempt {
                door: Door::Validate,
                role: role.unwrap_or_default(),
                token,
                client: None,
                mapping,
                line_issuer: None,
            };
            match decision::decide(&attempt) {
                Ok(v) => {
                    out["verdict"] = json!("accepted");
                    out["reason"] = Value::Null;
                    out["principal"] = json!(v.principal);
                    out["via_group"] = json!(v.via_group);
                }
                Err(refusal) => {
                    out["verdict"] = json!("rejected");
                    out["reason"] = json!(outcome::refused(&attempt, &refusal));
                    out["reason_code"] = json!(refusal.code);
                }
            }
        }
    }
    let kid = out["header"]
        .get("kid")
        .and_then(Value::as_str)
        .map(String::from);
    let iss = out["claims"]
        .get("iss")
        .and_then(Value::as_str)
        .map(String::from);
    out["issuer_accepted"] = json!(iss.as_ref().is_some_and(|i| policy.issuers.contains(i)));
    out["key"] = crate::shmem::keys::status()
        .into_iter()
        .find(|r| r.kid.is_some() && r.kid == kid)
        .map_or(Value::Null, |r| {
            json!({"kid": r.kid, "kty": r.kty, "alg": r.alg, "source": r.source, "issuer": r.issuer})
        });
    pgrx::JsonB(out)
}
