//! Operating pgaadauth: the audit line and pgaadauth.log_logins, forged claims, token diagnosis
//! agreeing with logins, statistics, start-up reporting, the preload guard, and the upgrade from
//! the previous version.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use once_cell::sync::Lazy;
use pgaadauth_e2e::cluster::{self, as_postgres, pg_config, pg_config_dir, Cluster};
use pgaadauth_e2e::idp::{
    claims, fixture_path, mint, mint_as, mint_with, oid_for, Idp, EC1, RSA1, RSA2, TENANT,
};
use postgres::error::SqlState;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

struct World {
    idp: Idp,
    pg: Cluster,
}

/// Tests that change pgaadauth.log_logins hold this for writing; the others for reading.
static LOGGING: RwLock<()> = RwLock::new(());

static WORLD: Lazy<World> = Lazy::new(|| {
    let idp = Idp::start(&[&RSA1, &EC1]);
    let pg = Cluster::start(
        "operations",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    let w = World { idp, pg };
    w.principal("probe", "user", "");
    let probe = w.token("probe", json!({}));
    assert!(Cluster::wait_for(Duration::from_secs(20), || w
        .pg
        .connect("probe", &probe)
        .is_ok()));
    w
});

impl World {
    fn principal(&self, role: &str, kind: &str, flags: &str) {
        self.pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', '{kind}', false, {})",
            oid_for(role),
            flags.contains("mfa")
        ));
    }

    /// A token for `role` with claims of `extra` set (`null`: the claim removed).
    fn token(&self, role: &str, extra: Value) -> String {
        pgaadauth_e2e::idp::mint_with(&self.idp.entra_issuer(), &oid_for(role), &extra)
    }

    /// The audit lines of `role` in the log.
    fn audit_lines(&self, role: &str) -> Vec<String> {
        let marker = format!(" role={role} ");
        self.pg
            .log()
            .lines()
            .filter(|l| l.contains("pgaadauth: login outcome=") && l.contains(&marker))
            .map(String::from)
            .collect()
    }

    /// The fields of an audit line.
    fn fields(line: &str) -> HashMap<String, String> {
        let at = line.find("pgaadauth: login ").unwrap() + "pgaadauth: login ".len();
        line[at..]
            .split(' ')
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    fn validate(&self, token: &str, role: Option<&str>) -> Value {
        let role = role.map_or("NULL".to_string(), |r| format!("'{r}'"));
        serde_json::from_str(&self.pg.sql(&format!(
            "SELECT pgaadauth_validate_token('{token}', {role})"
        )))
        .unwrap()
    }

    fn stats(&self) -> HashMap<String, i64> {
        self.pg
            .sql("SELECT counter || '=' || value FROM pgaadauth_stats()")
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect()
    }
}

#[test]
fn accepted_and_rejected_logins_have_audit_lines_with_the_right_fields() {
    let w = &*WORLD;
    let _shared = LOGGING.read().unwrap_or_else(|e| e.into_inner());
    w.principal("audited", "user", "");
    let token = w.token("audited", json!({"upn": "audited@contoso.example"}));
    w.pg.connect("audited", &token).expect("login");
    let forged = mint_as(
        &RSA2,
        Some("rsa1"),
        &claims(&w.idp.entra_issuer(), &oid_for("audited")),
    );
    assert!(w.pg.connect("audited", &forged).is_err());
    let lines = w.audit_lines("audited");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("LOG:  pgaadauth: login outcome=")),
        "{lines:#?}"
    );
    let ok = World::fields(&lines[0]);
    assert_eq!(ok["outcome"], "accepted");
    assert_eq!(ok["type"], "user");
    assert_eq!(ok["oid"], oid_for("audited"));
    assert_eq!(ok["tid"], TENANT);
    assert_eq!(ok["upn"], "audited@contoso.example");
    assert_eq!(
        (
            ok["appid"].as_str(),
            ok["via_group"].as_str(),
            ok["reason"].as_str()
        ),
        ("-", "-", "-")
    );
    assert_eq!(ok["client"], "127.0.0.1");
    let bad = World::fields(&lines[1]);
    assert_eq!(
        (bad["outcome"].as_str(), bad["reason"].as_str()),
        ("rejected", "bad_signature")
    );
    assert_eq!(
        bad["oid"],
        oid_for("audited"),
        "claimed, unverified: still useful to trace"
    );

    // A group login names the member and the group; an app token its appid.
    w.principal("audit-grp", "group", "");
    let app = w.token(
        "some-app",
        json!({"groups": [oid_for("audit-grp")], "appid": "a1b2", "upn": null}),
    );
    w.pg.connect("audit-grp", &app)
        .expect("group login by claim");
    let line = World::fields(&w.audit_lines("audit-grp")[0]);
    assert_eq!(line["type"], "group");
    assert_eq!(line["oid"], oid_for("some-app"));
    assert_eq!(line["via_group"], oid_for("audit-grp"));
    assert_eq!(
        (line["appid"].as_str(), line["upn"].as_str()),
        ("a1b2", "-")
    );
}

#[test]
fn a_crafted_claim_cannot_forge_an_audit_line() {
    let w = &*WORLD;
    let _shared = LOGGING.read().unwrap_or_else(|e| e.into_inner());
    w.principal("forger", "user", "");
    let evil = "x\n2026-11-22 20:00:00.000 UTC [1] LOG:  pgaadauth: login outcome=accepted role=postgres type=user";
    let good = w.token("forger", json!({"upn": evil}));
    w.pg.connect("forger", &good)
        .expect("a weird upn is just data");
    let mut forged = claims(&w.idp.entra_issuer(), &oid_for("forger"));
    forged["upn"] = json!(evil);
    let bad = mint_as(&RSA2, Some("rsa1"), &forged);
    let mut c: Value = claims(&w.idp.entra_issuer(), "evil oid=1 reason=-");
    c["upn"] = json!(evil);
    let _ = w.pg.connect("forger", &bad);
    let _ = w.pg.connect("forger", &mint(&RSA1, &c));
    let log = w.pg.log();
    assert!(
        !log.contains("outcome=accepted role=postgres"),
        "a line was forged"
    );
    let lines = w.audit_lines("forger");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for l in &lines {
        assert_eq!(l.matches("outcome=").count(), 1, "{l}");
        assert_eq!(l.matches(" oid=").count(), 1, "{l}");
        assert!(l.contains("upn=x%0A2026-11-22%2020:00:00.000%20UTC"), "{l}");
    }
    assert!(
        lines[2].contains("oid=evil%20oid%3D1%20reason%3D-"),
        "{}",
        lines[2]
    );
}

#[test]
fn log_logins_all_failures_none() {
    let w = &*WORLD;
    let _only = LOGGING.write().unwrap_or_else(|e| e.into_inner());
    w.principal("levels", "user", "");
    let good = w.token("levels", json!({}));
    let bad = w.token("levels", json!({"exp": 1}));
    let mut seen = Vec::new();
    for level in ["all", "failures", "none"] {
        w.pg.set(&[("pgaadauth.log_logins", level)]);
        assert_eq!(w.pg.sql("SHOW pgaadauth.log_logins"), level);
        let before = w.audit_lines("levels").len();
        w.pg.connect("levels", &good).expect("login");
        let _ = w.pg.connect("levels", &bad);
        let lines = w.audit_lines("levels");
        let outcomes: Vec<String> = lines[before..]
            .iter()
            .map(|l| World::fields(l)["outcome"].clone())
            .collect();
        seen.push((level, outcomes));
    }
    w.pg.set(&[("pgaadauth.log_logins", "all")]);
    assert_eq!(
        seen,
        vec![
            ("all", vec!["accepted".to_string(), "rejected".to_string()]),
            ("failures", vec!["rejected".to_string()]),
            ("none", vec![]),
        ]
    );
    let e =
        w.pg.try_sql("postgres", "ALTER SYSTEM SET pgaadauth.log_logins = 'some'")
            .unwrap_err();
    assert!(
        e.contains("invalid value for parameter \"pgaadauth.log_logins\""),
        "{e}"
    );
}

/// For every rejection reason of a login, pgaadauth_validate_token gives the same verdict and
/// reason; and it never shows the signature.
#[test]
fn validate_token_agrees_with_the_login_decision() {
    let w = &*WORLD;
    let _shared = LOGGING.read().unwrap_or_else(|e| e.into_inner());
    let iss = w.idp.entra_issuer();
    let now = pgaadauth_e2e::idp::unix_now();
    let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
    let with = |role: &str, extra: Value| w.token(role, extra);
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("v_ok", "", w.token("v_ok", json!({})), "accepted"),
        ("v_malformed", "", "not-a-token".into(), "malformed"),
        (
            "v_bad_json",
            "",
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"RS256","kid":"rsa1"}"#),
                b64("{oops")
            ),
            "bad_json",
        ),
        (
            "v_none",
            "",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","kid":"rsa1"}"#),
                b64(&claims(&iss, &oid_for("v_none")).to_string())
            ),
            "alg_not_allowed",
        ),
        (
            "v_es256",
            "",
            mint(&EC1, &claims(&iss, &oid_for("v_es256"))),
            "alg_not_allowed",
        ),
        (
            "v_no_kid",
            "",
            mint_as(&RSA1, None, &claims(&iss, &oid_for("v_no_kid"))),
            "missing_kid",
        ),
        (
            "v_unknown_kid",
            "",
            mint(&RSA2, &claims(&iss, &oid_for("v_unknown_kid"))),
            "unknown_kid",
        ),
        (
            "v_bad_sig",
            "",
            mint_as(&RSA2, Some("rsa1"), &claims(&iss, &oid_for("v_bad_sig"))),
            "bad_signature",
        ),
        (
            "v_issuer",
            "",
            with("v_issuer", json!({"iss": "https://evil.example/"})),
            "issuer",
        ),
        (
            "v_audience",
            "",
            with("v_audience", json!({"aud": ["api://a"]})),
            "audience",
        ),
        (
            "v_no_exp",
            "",
            with("v_no_exp", json!({"exp": null})),
            "missing_exp",
        ),
        (
            "v_exp_text",
            "",
            with("v_exp_text", json!({"exp": "tomorrow"})),
            "bad_time_claim",
        ),
        (
            "v_expired",
            "",
            with("v_expired", json!({"exp": now - 1000})),
            "expired",
        ),
        (
            "v_nbf",
            "",
            with("v_nbf", json!({"nbf": now + 1000})),
            "not_yet_valid",
        ),
        (
            "v_tenant",
            "",
            with(
                "v_tenant",
                json!({"tid": "99999999-2222-3333-4444-555555555555"}),
            ),
            "tenant",
        ),
        (
            "v_other",
            "",
            w.token("someone-else", json!({})),
            "principal",
        ),
        ("v_mfa", "mfa", w.token("v_mfa", json!({})), "mfa_required"),
        (
            "v_group",
            "group",
            w.token("v_group", json!({"groups": ["x"]})),
            "not_group_member",
        ),
    ];
    for (role, flags, token, want) in &cases {
        let kind = if flags.contains("group") {
            "group"
        } else {
            "user"
        };
        w.principal(role, kind, flags);
        let login = w.pg.connect(role, token);
        let v = w.validate(token, Some(role));
        if *want == "accepted" {
            assert!(login.is_ok());
            assert_eq!(v["verdict"], "accepted", "{v}");
            assert_eq!(v["key"]["kid"], "rsa1");
            assert_eq!(
                v["key"]["source"],
                format!("{}/{TENANT}/discovery/v2.0/keys", w.idp.base())
            );
            assert_eq!(v["issuer_accepted"], true);
            continue;
        }
        let err = login.err().expect("refused");
        assert_eq!(
            err.as_db_error().unwrap().code(),
            &SqlState::INVALID_PASSWORD
        );
        let detail = w.pg.failure_detail(role).unwrap();
        assert_eq!(v["verdict"], "rejected", "{role}: {v}");
        assert_eq!(v["reason_code"], *want, "{role}: {v}");
        // The same reason (the note on a kid-miss refresh may differ with timing).
        // Seconds counted from "now" may differ by one between the two calls: digits aside.
        let reason = v["reason"].as_str().unwrap();
        let first = &reason[..reason.find(". ").map_or(reason.len(), |i| i + 1)];
        let digits_aside = |t: &str| {
            let mut out = String::new();
            for c in t.chars() {
                if !c.is_ascii_digit() {
                    out.push(c);
                } else if !out.ends_with('#') {
                    out.push('#');
                }
            }
            out
        };
        assert!(
            digits_aside(&detail).contains(&digits_aside(first)),
            "{role}: login said {detail:?}, validate said {reason:?}"
        );
        // Never the signature.
        let sig = token.rsplit('.').next().unwrap();
        if sig.len() > 8 {
            assert!(
                !v.to_string().contains(sig),
                "{role}: the signature is in the output"
            );
        }
    }
    // Without a role: everything but the mapping.
    let v = w.validate(&w.token("anyone", json!({})), None);
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["principal"], oid_for("anyone"));
    assert_eq!(v["claims"]["tid"], TENANT);
    assert_eq!(v["header"]["kid"], "rsa1");
    // A role without a label: what a login would do instead.
    w.pg.sql("CREATE ROLE v_plain LOGIN");
    let v = w.validate(&w.token("anyone", json!({})), Some("v_plain"));
    assert_eq!(v["verdict"], "rejected");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("has no pgaadauth label"),
        "{v}"
    );
}

#[test]
fn validate_token_needs_an_admin_and_keeps_the_token_out_of_the_log() {
    let w = &*WORLD;
    let _shared = LOGGING.read().unwrap_or_else(|e| e.into_inner());
    w.pg.sql("CREATE ROLE nosy LOGIN PASSWORD 'nosy-secret'");
    let token = w.token("nosy", json!({}));
    let mut nosy = w.pg.connect("nosy", "nosy-secret").unwrap();
    let err = nosy
        .query_one(&format!("SELECT pgaadauth_validate_token('{token}')"), &[])
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(db.message(), "permission denied to validate tokens");
    std::thread::sleep(Duration::from_millis(200));
    let log = w.pg.log();
    assert!(log.contains("permission denied to validate tokens"));
    assert!(
        !log.contains(token.rsplit('.').next().unwrap()),
        "the statement with the token was logged"
    );
}

#[test]
fn stats_counters_move() {
    let w = &*WORLD;
    let _shared = LOGGING.read().unwrap_or_else(|e| e.into_inner());
    w.principal("counted", "user", "");
    w.pg.sql("CREATE ROLE counted_pw LOGIN PASSWORD 'pw-secret'");
    let before = w.stats();
    w.pg.connect("counted", &w.token("counted", json!({})))
        .unwrap();
    let _ =
        w.pg.connect("counted", &w.token("counted", json!({"exp": 1})));
    let _ = w.pg.connect(
        "counted",
        &mint(&RSA2, &claims(&w.idp.entra_issuer(), &oid_for("counted"))),
    );
    w.pg.connect("counted_pw", "pw-secret").unwrap();
    let _ = w.pg.connect("counted_pw", "wrong");
    // A label that does not parse (written around the label hook, as an older or newer
    // version might have left it) is counted too.
    w.principal("counted_bad_label", "user", "");
    w.pg.sql(
        "SET allow_system_table_mods = on; \
         UPDATE pg_shseclabel SET label = 'aadauth,oid=not-a-guid,type=user' \
         WHERE objoid = 'counted_bad_label'::regrole AND provider = 'pgaadauth'",
    );
    assert!(w
        .pg
        .connect(
            "counted_bad_label",
            &w.token("counted_bad_label", json!({}))
        )
        .is_err());
    let after = w.stats();
    let grew = |k: &str| after[k] - before[k];
    // Other tests log in meanwhile: at least ours are counted.
    assert!(grew("logins_accepted") >= 1);
    assert!(grew("logins_rejected_expired") >= 1);
    assert!(grew("logins_rejected_unknown_kid") >= 1);
    assert!(grew("logins_rejected_label_malformed") >= 1);
    assert!(grew("kid_misses") >= 1);
    assert!(grew("password_logins_accepted") >= 1);
    assert!(grew("password_logins_rejected") >= 1);
    assert!(after["key_fetches_ok"] >= 1);
    // 14 counters, 27 reasons, 2 values of now.
    assert_eq!(after.len(), 43, "{after:?}");
    assert_eq!(
        after["mailbox_slots_in_use"], 0,
        "no directory question in flight"
    );
    // pg_monitor members may read them too.
    w.pg.sql("CREATE ROLE watcher LOGIN PASSWORD 'w-secret' IN ROLE pg_monitor");
    let mut watcher = w.pg.connect("watcher", "w-secret").unwrap();
    assert!(
        watcher
            .query("SELECT * FROM pgaadauth_stats()", &[])
            .unwrap()
            .len()
            == 43
    );
}

#[test]
fn startup_logs_one_summary_and_warns_about_inconsistent_settings() {
    let pg = Cluster::start(
        "startup",
        &[
            ("pgaadauth.jwks_uri", "http://127.0.0.1:9/keys".into()),
            ("pgaadauth.ca_file", "/nonexistent/ca.pem".into()),
            ("pgaadauth.client_id", "app".into()),
            ("pgaadauth.client_secret_file", "/nonexistent/secret".into()),
            ("pgaadauth.password_auth", "off".into()),
        ],
    );
    let log = pg.log();
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("LOG:  pgaadauth: issuers:"))
        .collect();
    assert_eq!(summaries.len(), 1, "{log}");
    assert!(
        summaries[0].contains("issuers: none; keys from: http://127.0.0.1:9/keys;"),
        "{}",
        summaries[0]
    );
    assert!(
        summaries[0].contains("password_auth: off; directory: client secret"),
        "{}",
        summaries[0]
    );
    for warning in [
        "WARNING:  pgaadauth: No token issuer is configured",
        "WARNING:  pgaadauth: The key source \"http://127.0.0.1:9/keys\" uses plain http",
        "WARNING:  pgaadauth: pgaadauth.ca_file \"/nonexistent/ca.pem\" cannot be read",
        "WARNING:  pgaadauth: pgaadauth.client_secret_file \"/nonexistent/secret\" cannot be read",
        "WARNING:  pgaadauth: pgaadauth.client_id is set without pgaadauth.tenant_id",
    ] {
        assert!(log.contains(warning), "missing {warning:?} in\n{log}");
    }
}

#[test]
fn create_extension_refuses_without_preload_and_update_from_the_previous_version() {
    let pg = Cluster::start("install", &[]);
    // The previous version's install script, as a DBA's server would have it.
    let extdir = pg_config_dir(&pg_config(), "sharedir")
        .join("extension")
        .display()
        .to_string();
    std::fs::copy(
        fixture_path("pgaadauth--0.1.0.sql"),
        format!("{extdir}/pgaadauth--0.1.0.sql"),
    )
    .expect("install the 0.1.0 script (the tests run as root)");

    let version_in_old = || {
        pg.try_sql(
            "old",
            "SELECT extversion FROM pg_extension WHERE extname = 'pgaadauth'",
        )
        .unwrap()
    };
    pg.sql("CREATE DATABASE old");
    pg.try_sql("old", "CREATE EXTENSION pgaadauth VERSION '0.1.0'")
        .unwrap();
    assert_eq!(version_in_old(), "0.1.0");
    assert!(pg.try_sql("old", "SELECT pgaadauth_stats()").is_err());
    pg.try_sql("old", "ALTER EXTENSION pgaadauth UPDATE")
        .unwrap();
    assert_eq!(version_in_old(), "0.7.0");
    // The updated extension has exactly the objects of a fresh install.
    let members = "SELECT string_agg(d, E'\\n' ORDER BY d) FROM (SELECT pg_describe_object(classid, objid, 0) AS d FROM pg_depend \
                   WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e' \
                   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgaadauth')) m";
    let signatures = "SELECT string_agg(f, E'\\n' ORDER BY f) FROM (SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' \
                      || pg_get_function_result(p.oid) AS f FROM pg_proc p WHERE p.proname LIKE 'pgaadauth%') s";
    assert_eq!(
        pg.try_sql("old", members).unwrap(),
        pg.try_sql("postgres", members).unwrap()
    );
    assert_eq!(
        pg.try_sql("old", signatures).unwrap(),
        pg.try_sql("postgres", signatures).unwrap()
    );
    assert!(pg
        .try_sql("old", signatures)
        .unwrap()
        .contains("pgaadauth_validate_token(token text, role name DEFAULT NULL::name) jsonb"));
    // From every other release too: each updated database has a fresh install's objects.
    for version in ["0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0"] {
        let db = format!("from_{}", version.replace('.', "_"));
        pg.sql(&format!("CREATE DATABASE {db}"));
        pg.try_sql(
            &db,
            &format!("CREATE EXTENSION pgaadauth VERSION '{version}'"),
        )
        .unwrap();
        pg.try_sql(&db, "ALTER EXTENSION pgaadauth UPDATE").unwrap();
        for query in [members, signatures] {
            assert_eq!(
                pg.try_sql(&db, query).unwrap(),
                pg.try_sql("postgres", query).unwrap(),
                "updated from {version}"
            );
        }
    }
    // And the same privileges: only poolers granted EXECUTE may check logins.
    let acl = "SELECT proacl::text FROM pg_proc WHERE proname = 'pgaadauth_pooler_login'";
    assert_eq!(
        pg.try_sql("old", acl).unwrap(),
        pg.try_sql("postgres", acl).unwrap()
    );
    assert_eq!(pg.try_sql("old", acl).unwrap(), "{postgres=X/postgres}");

    // A database still on 0.5.0 with the new library: its text-returning pooler function
    // answers with an error (never an integer read as text); the update keeps its grants.
    pg.sql("CREATE DATABASE five");
    pg.sql("CREATE ROLE pooler_a LOGIN; CREATE ROLE pooler_b LOGIN");
    pg.try_sql("five", "CREATE EXTENSION pgaadauth VERSION '0.5.0'")
        .unwrap();
    pg.try_sql(
        "five",
        "GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pooler_a; \
         GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pooler_b WITH GRANT OPTION",
    )
    .unwrap();
    let e = pg
        .try_sql("five", "SELECT pgaadauth_pooler_login('x', 'y', 'z')")
        .unwrap_err();
    assert!(
        e.contains("ERROR:  pgaadauth's SQL objects in this database are older than its library"),
        "{e}"
    );
    pg.try_sql("five", "ALTER EXTENSION pgaadauth UPDATE")
        .unwrap();
    assert_eq!(
        pg.try_sql("five", acl).unwrap(),
        "{postgres=X/postgres,pooler_a=X/postgres,pooler_b=X*/postgres}"
    );
    assert_eq!(
        pg.try_sql(
            "five",
            "SET ROLE pooler_a; SELECT pgaadauth_pooler_login('nobody', 'x', '')"
        )
        .unwrap(),
        "0"
    );

    // Without the library preloaded, CREATE EXTENSION refuses with a hint.
    pg.append_conf("shared_preload_libraries = ''\n");
    pg.restart();
    pg.sql("CREATE DATABASE fresh");
    // SQLSTATE 55000, object_not_in_prerequisite_state: caught by exactly that name.
    pg.try_sql(
        "fresh",
        "DO $$ BEGIN CREATE EXTENSION pgaadauth; RAISE EXCEPTION 'created'; \
         EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL; END $$",
    )
    .unwrap();
    let e = pg
        .try_sql("fresh", "CREATE EXTENSION pgaadauth")
        .unwrap_err();
    assert!(
        e.contains("ERROR:  pgaadauth must be loaded via shared_preload_libraries"),
        "{e}"
    );
    assert!(e.contains("HINT:  Add pgaadauth to shared_preload_libraries in postgresql.conf and restart the server."), "{e}");
    pg.append_conf("shared_preload_libraries = 'pgaadauth'\n");
    pg.restart();
    pg.try_sql("fresh", "CREATE EXTENSION pgaadauth").unwrap();
}

/// pg_upgrade from the nearest older major with pgaadauth installed (scripts/test.sh installs
/// the majors in order; 15 excepted, below) to the one under test, as docs/operations.md gives it: the new cluster's
/// preload and peer line first. Roles keep their labels, the extension its tables, and token
/// logins and revocations hold at once.
#[test]
fn pg_upgrade_keeps_labels_tables_and_logins() {
    let new_major = cluster::major();
    let has_pgaadauth = |c: &String| {
        pg_config_dir(c, "pkglibdir").join("pgaadauth.so").exists()
            && pg_config_dir(c, "sharedir")
                .join("extension/pgaadauth.control")
                .exists()
    };
    // Not from 15: Debian 12's PostgreSQL 15 (15.20-0+deb12u1) gives every column an
    // attribute option of its own (`pg_attver`) that the other builds' servers refuse when
    // pg_upgrade restores any table, pgaadauth's or not.
    let Some(old_config) = (14..new_major)
        .rev()
        .filter(|m| *m != 15)
        .filter_map(cluster::pg_config_for)
        .find(has_pgaadauth)
    else {
        assert_eq!(
            new_major, 14,
            "no older PostgreSQL with pgaadauth installed to upgrade from: \
             PG_VERSIONS=<older major> scripts/install.sh first"
        );
        return;
    };
    let idp = Idp::start(&[&RSA1]);
    let old = Cluster::start_on(&old_config, "upgrade-old", &idp.entra_settings());
    for (role, kind) in [("ann", "user"), ("bob", "user"), ("ops", "group")] {
        old.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{role}', '{}', '{kind}', false, false)",
            oid_for(role)
        ));
    }
    let token = |who: &str, extra: Value| mint_with(&idp.entra_issuer(), &oid_for(who), &extra);
    let ann = token("ann", json!({}));
    let bob = token("bob", json!({}));
    assert!(Cluster::wait_for(Duration::from_secs(20), || old
        .connect("ann", &ann)
        .is_ok()));
    old.sql(&format!(
        "SELECT pgaadauth_revoke_tokens('{}')",
        oid_for("bob")
    ));
    let labels = "SELECT string_agg(r.rolname || '=' || s.label, ',' ORDER BY r.rolname) \
                  FROM pg_shseclabel s JOIN pg_roles r ON r.oid = s.objoid WHERE s.provider = 'pgaadauth'";
    let revocations = "SELECT string_agg(object_id, ',') FROM pgaadauth.revocations";
    let (old_labels, old_revocations) = (old.sql(labels), old.sql(revocations));
    assert!(old_labels.contains("ops="), "{old_labels}");
    old.stop();

    let new = Cluster::prepare(&pg_config(), "upgrade-new", &idp.entra_settings());
    let new_bin = new.bindir().to_path_buf();
    let out = as_postgres(&new_bin.join("pg_upgrade"))
        .current_dir(&new.dir)
        .arg("-b")
        .arg(old.bindir())
        .arg("-B")
        .arg(&new_bin)
        .arg("-d")
        .arg(old.dir.join("data"))
        .arg("-D")
        .arg(new.dir.join("data"))
        .arg("-s")
        .arg(&new.dir)
        .args(["-p", &old.port.to_string(), "-P", &new.port.to_string()])
        .args(["-U", "postgres"])
        .output()
        .unwrap();
    let logs = || {
        let dir = new.dir.join("data/pg_upgrade_output.d");
        let mut text = String::new();
        for f in walk(&dir) {
            text += &format!(
                "--- {}\n{}\n",
                f.display(),
                std::fs::read_to_string(&f).unwrap_or_default()
            );
        }
        text
    };
    assert!(
        out.status.success(),
        "pg_upgrade failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    new.launch();
    assert_eq!(new.sql(labels), old_labels);
    assert_eq!(new.sql(revocations), old_revocations);
    new.sql("ALTER EXTENSION pgaadauth UPDATE");
    assert_eq!(
        new.sql("SELECT extversion = default_version FROM pg_extension JOIN pg_available_extensions ON name = extname WHERE extname = 'pgaadauth'"),
        "t"
    );
    // The workers run again, and logins and revocations hold.
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || new.connect("ann", &ann).is_ok()),
        "{}",
        new.log()
    );
    let member = token("cleo", json!({"groups": [oid_for("ops")]}));
    new.connect("ops", &member).unwrap();
    assert!(new.connect("bob", &bob).is_err());
    let detail = new.failure_detail("bob").unwrap_or_default();
    assert!(detail.contains("revoked"), "{detail}");
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
