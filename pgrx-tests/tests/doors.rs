//! One decision for every door: the same tokens, through the token-as-password login (the
//! ClientAuthentication hook), the pooler's function (`pgaadauth_pooler_login`, as PgBouncer's
//! PAM module calls it), `pgaadauth_validate_token`, and on PostgreSQL 18 an `oauth` line with
//! `delegate_ident_mapping=1`, get the same verdict and the same reason code from each (the
//! audit line's `reason=` for the doors that log in, the JSON's `reason_code` for validation).

use once_cell::sync::Lazy;
use pgaadauth_e2e::clients;
use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, tampered, Idp, RSA1};
use serde_json::{json, Value};
use std::time::Duration;

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const GROUP: &str = "0d0a0000-1111-4222-8333-000000000001";

struct World {
    idp: Idp,
    pg: Cluster,
}

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1]);
    let mut settings = idp.entra_settings();
    let mut hba = String::new();
    if cluster::major() >= 18 {
        settings.push(("oauth_validator_libraries", "pgaadauth".into()));
        hba.push_str(&format!(
            "host oauthdb all 127.0.0.1/32 oauth issuer=\"{}\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n",
            idp.entra_issuer()
        ));
    }
    hba.push_str("host all all 127.0.0.1/32 trust\n");
    let pg = Cluster::start_with_hba("doors", &settings, &hba);
    if cluster::major() >= 18 {
        pg.sql("CREATE DATABASE oauthdb");
    }
    for (role, oid, kind, mfa) in [
        ("door_user", oid("door-user"), "user", false),
        ("door_mfa", oid("door-mfa"), "user", true),
        ("door_group", GROUP.to_string(), "group", false),
        ("door_revoked", oid("door-revoked"), "user", false),
    ] {
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{oid}', '{kind}', false, {mfa})"
        ));
    }
    let w = World { idp, pg };
    let token = w.token("door-user", json!({}));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || w
            .pg
            .connect("door_user", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        w.pg.log()
    );
    w
});

fn oid(name: &str) -> String {
    pgaadauth_e2e::idp::oid_for(name)
}

impl World {
    /// A token for the principal `name` with `extra` claims (null removes one).
    fn token(&self, name: &str, extra: Value) -> String {
        pgaadauth_e2e::idp::mint_with(&self.idp.entra_issuer(), &oid(name), &extra)
    }

    /// The verdict and reason code of the audit line of `role`'s login by `method` after `mark`.
    fn audited(&self, mark: usize, role: &str, method: &str) -> Option<(String, String)> {
        let mut found = None;
        Cluster::wait_for(Duration::from_secs(10), || {
            let log = self.pg.log();
            found = log[mark..]
                .lines()
                .rev()
                .find(|l| {
                    l.contains("pgaadauth: login outcome=")
                        && l.contains(&format!(" role={role} "))
                        && l.ends_with(&format!(" method={method}"))
                })
                .map(|l| {
                    let field = |name: &str| {
                        l.split(&format!(" {name}="))
                            .nth(1)
                            .map(|v| v.split(' ').next().unwrap_or("").to_string())
                            .unwrap_or_default()
                    };
                    let outcome = l
                        .split("outcome=")
                        .nth(1)
                        .and_then(|v| v.split(' ').next())
                        .unwrap_or("")
                        .to_string();
                    (outcome, field("reason"))
                });
            found.is_some()
        });
        found
    }

    /// The token as the password of a direct login.
    fn by_password(&self, role: &str, token: &str) -> (String, String) {
        let mark = self.pg.log().len();
        let _ = self.pg.connect(role, token);
        self.audited(mark, role, "token")
            .unwrap_or_else(|| ("no audit line".into(), self.pg.log()[mark..].to_string()))
    }

    /// The token as a PgBouncer client's password, as the PAM module asks.
    fn by_pooler(&self, role: &str, token: &str) -> (String, String) {
        let mark = self.pg.log().len();
        // Tokens and role names here are plain (base64url, dots, letters): safe in literals.
        let answer: i32 = self
            .pg
            .sql(&format!(
                "SELECT pg_catalog.pgaadauth_pooler_login('{role}', '{token}', '127.0.0.1')"
            ))
            .parse()
            .unwrap();
        let audited = self
            .audited(mark, role, "pgbouncer")
            .unwrap_or_else(|| ("no audit line".into(), self.pg.log()[mark..].to_string()));
        assert_eq!(answer == 1, audited.0 == "accepted", "{role}: {audited:?}");
        audited
    }

    /// `pgaadauth_validate_token(token, role)`.
    fn by_validation(&self, role: &str, token: &str) -> (String, String) {
        let out = self.pg.sql(&format!(
            "SELECT pg_catalog.pgaadauth_validate_token('{token}', '{role}')::text"
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        let verdict = v["verdict"].as_str().unwrap_or_default();
        (
            if verdict == "rejected" {
                "rejected".into()
            } else {
                verdict.to_string()
            },
            v["reason_code"].as_str().unwrap_or("-").to_string(),
        )
    }

    /// The token in an OAUTHBEARER exchange on the `oauth` line (PostgreSQL 18).
    fn by_oauth(&self, role: &str, token: &str) -> (String, String) {
        let mark = self.pg.log().len();
        let conninfo = format!(
            "host=127.0.0.1 port={} dbname=oauthdb user={role} \
             oauth_issuer={}/.well-known/openid-configuration oauth_client_id=pgaadauth-test \
             connect_timeout=20",
            self.pg.port,
            self.idp.entra_issuer()
        );
        let _ = clients::run_oauth_client(&["login", &conninfo], token);
        self.audited(mark, role, "oauth")
            .unwrap_or_else(|| ("no audit line".into(), self.pg.log()[mark..].to_string()))
    }
}

#[test]
fn every_door_gives_the_same_verdict_and_reason_for_the_same_token() {
    let w = &*WORLD;
    let now = pgaadauth_e2e::idp::unix_now();
    // Revoked: a token issued before its principal's revocation.
    let revoked = w.token("door-revoked", json!({}));
    w.pg.sql(&format!(
        "SELECT pgaadauth_revoke_tokens('{}')",
        oid("door-revoked")
    ));
    let none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let good = w.token("door-user", json!({}));
        let claims = good.split('.').nth(1).unwrap().to_string();
        format!(
            "{}.{claims}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa1"}"#)
        )
    };
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("good", "door_user", w.token("door-user", json!({})), "-"),
        (
            "expired",
            "door_user",
            w.token(
                "door-user",
                json!({"exp": now - 3600, "nbf": now - 7200, "iat": now - 7200}),
            ),
            "expired",
        ),
        (
            "wrong audience",
            "door_user",
            w.token("door-user", json!({"aud": "api://someone-else"})),
            "audience",
        ),
        (
            "another principal",
            "door_user",
            w.token("door-someone-else", json!({})),
            "principal",
        ),
        (
            "tampered",
            "door_user",
            tampered(&w.token("door-user", json!({}))),
            "bad_signature",
        ),
        ("alg none", "door_user", none, "alg_not_allowed"),
        (
            "another tenant",
            "door_user",
            w.token(
                "door-user",
                json!({"tid": "99999999-1111-4222-8333-000000000000"}),
            ),
            "tenant",
        ),
        (
            "unknown crit",
            "door_user",
            {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                h.kid = Some("rsa1".into());
                h.crit = Some(vec!["exp-by-policy".into()]);
                let c = claims(&w.idp.entra_issuer(), &oid("door-user"));
                jsonwebtoken::encode(
                    &h,
                    &c,
                    &jsonwebtoken::EncodingKey::from_rsa_pem(RSA1.pem.as_bytes()).unwrap(),
                )
                .unwrap()
            },
            "crit",
        ),
        (
            "mfa missing",
            "door_mfa",
            w.token("door-mfa", json!({})),
            "mfa_required",
        ),
        (
            "mfa present",
            "door_mfa",
            w.token("door-mfa", json!({"amr": ["pwd", "mfa"]})),
            "-",
        ),
        (
            "group member",
            "door_group",
            w.token("door-member", json!({"groups": [GROUP]})),
            "-",
        ),
        (
            "group non-member",
            "door_group",
            w.token(
                "door-member",
                json!({"groups": ["0d0a0000-1111-4222-8333-0000000000ff"]}),
            ),
            "not_group_member",
        ),
        ("revoked", "door_revoked", revoked, "revoked"),
    ];
    let mut wrong = Vec::new();
    for (case, role, token, reason) in &cases {
        let want = (
            if *reason == "-" {
                "accepted"
            } else {
                "rejected"
            }
            .to_string(),
            reason.to_string(),
        );
        let mut doors = vec![
            ("token as password", w.by_password(role, token)),
            ("pooler", w.by_pooler(role, token)),
            ("validate_token", w.by_validation(role, token)),
        ];
        if cluster::major() >= 18 {
            doors.push(("oauth", w.by_oauth(role, token)));
        }
        for (door, got) in doors {
            if got != want {
                wrong.push(format!("{case} through {door}: {got:?}, want {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
