//! Monitoring with Prometheus: Debian's prometheus-postgres-exporter with the project's queries
//! (examples/monitoring/queries.yaml), connected as a role with pg_monitor alone, scraped before
//! and after known logins.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{mint_with, oid_for, tampered, Idp, RSA1};
use serde_json::json;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
const WAIT: Duration = Duration::from_secs(30);

/// GET /metrics; None while the exporter is not listening yet.
fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.0 200").then_some(body)
}

/// The value of series `name` whose labels include `labels`.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The exporter, stopped at the end of the test (and with the test process, however it ends).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_exporter_shows_pgaadauth_with_the_right_values_after_known_logins() {
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("monitoring", &idp.entra_settings());
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('mona', '{}', 'user', false, false)",
        oid_for("mona")
    ));
    pg.sql(
        "CREATE ROLE pgaadauth_exporter LOGIN PASSWORD 'exporter-secret' IN ROLE pg_monitor; \
         CREATE ROLE legacy LOGIN PASSWORD 'legacy-secret'",
    );
    let good = mint_with(&idp.entra_issuer(), &oid_for("mona"), &json!({}));
    assert!(Cluster::wait_for(WAIT, || pg
        .connect("mona", &good)
        .is_ok()));

    let port = pgaadauth_e2e::ports::reserve();
    let queries = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/monitoring/queries.yaml"
    );
    let mut exporter = Command::new(EXPORTER);
    exporter
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--extend.query-path={queries}"))
        .args(["--disable-default-metrics", "--disable-settings-metrics"])
        .env(
            "DATA_SOURCE_NAME",
            format!(
                "postgresql://pgaadauth_exporter:exporter-secret@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port
            ),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _exporter =
        Running(pgaadauth_e2e::children::spawn(exporter, 9).expect("start the exporter"));
    let mut before = String::new();
    assert!(
        Cluster::wait_for(WAIT, || {
            before = scrape(port).unwrap_or_default();
            value(&before, "pgaadauth_key_source_keys", &[]).is_some()
        }),
        "{before}"
    );
    let at = |body: &str, name: &str, labels: &[(&str, &str)]| {
        value(body, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"))
    };
    let accepted = [("method", "token"), ("outcome", "accepted")];
    let bad_signature = [("reason", "bad_signature")];
    let principal = [("reason", "principal")];

    // Known logins: three accepted, a forged signature, a token of another principal, a
    // password login; and a token session left open.
    for _ in 0..3 {
        pg.connect("mona", &good).unwrap();
    }
    assert!(pg.connect("mona", &tampered(&good)).is_err());
    let other = mint_with(&idp.entra_issuer(), &oid_for("someone"), &json!({}));
    assert!(pg.connect("mona", &other).is_err());
    pg.connect("legacy", "legacy-secret").unwrap();
    let _open = pg.connect("mona", &good).unwrap();

    let mut after = String::new();
    assert!(
        Cluster::wait_for(WAIT, || {
            after = scrape(port).unwrap_or_default();
            value(&after, "pgaadauth_logins_total", &accepted)
                == value(&before, "pgaadauth_logins_total", &accepted).map(|v| v + 4.0)
        }),
        "{before}\n---\n{after}"
    );
    assert_eq!(
        at(&after, "pgaadauth_rejections_total", &bad_signature),
        at(&before, "pgaadauth_rejections_total", &bad_signature) + 1.0
    );
    assert_eq!(
        at(&after, "pgaadauth_rejections_total", &principal),
        at(&before, "pgaadauth_rejections_total", &principal) + 1.0
    );
    let password = [("method", "password"), ("outcome", "accepted")];
    assert!(
        at(&after, "pgaadauth_logins_total", &password)
            >= at(&before, "pgaadauth_logins_total", &password) + 1.0
    );
    assert_eq!(
        at(
            &after,
            "pgaadauth_password_logins_total",
            &[("role", "legacy")]
        ),
        1.0
    );
    assert!(
        at(
            &after,
            "pgaadauth_password_logins_last_login_seconds",
            &[("role", "legacy")]
        ) > 1.7e9
    );

    // Keys: one source with keys, fetched moments ago, far from max_stale (1 day).
    let keys = at(&after, "pgaadauth_key_source_keys", &[]);
    assert!(keys >= 1.0, "{after}");
    let age = at(&after, "pgaadauth_key_source_age_seconds", &[]);
    assert!((0.0..600.0).contains(&age), "{after}");
    let to_stale = at(&after, "pgaadauth_key_source_seconds_to_max_stale", &[]);
    assert!((86_400.0 - 600.0..=86_400.0).contains(&to_stale), "{after}");
    assert_eq!(at(&after, "pgaadauth_key_source_failing", &[]), 0.0);
    assert!(
        at(
            &after,
            "pgaadauth_keys_total",
            &[("event", "key_fetches_ok")]
        ) >= 1.0
    );
    assert_eq!(
        at(
            &after,
            "pgaadauth_state_now",
            &[("what", "revocations_enforced")]
        ),
        0.0
    );
    assert!(
        at(&after, "pgaadauth_sessions_open", &[("method", "token")]) >= 1.0,
        "{after}"
    );
    assert!(value(
        &after,
        "pgaadauth_directory_total",
        &[("event", "directory_calls")]
    )
    .is_some());

    // A revocation shows, and pg_monitor alone read all of it (no query failed).
    pg.sql(&format!(
        "SELECT pgaadauth_revoke_tokens('{}')",
        oid_for("someone")
    ));
    assert!(Cluster::wait_for(WAIT, || {
        after = scrape(port).unwrap_or_default();
        value(
            &after,
            "pgaadauth_state_now",
            &[("what", "revocations_enforced")],
        ) == Some(1.0)
    }));
    assert!(
        !after.contains("pg_exporter_last_scrape_error 1"),
        "{after}"
    );
}
