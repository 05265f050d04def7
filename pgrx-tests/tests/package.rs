//! The Debian package for PostgreSQL 15, as a DBA uses it: `dpkg -i` into Debian's PostgreSQL
//! 15, the extension enabled and a token login; a newer package build installed over it and
//! the server restarted onto it; then `dpkg -r`, which leaves none of its files behind.
//!
//! Ignored by default: it installs into the system's PostgreSQL 15 (replacing a development
//! install) and needs root. scripts/test.sh runs it last, on its own.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LIB: &str = "/usr/lib/postgresql/15/lib/pgaadauth.so";

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Build the PostgreSQL 15 package with package revision `revision`; its path.
fn build(revision: &str) -> String {
    run(
        "scripts/package.sh",
        &[],
        &[("PG_VERSIONS", "15"), ("PACKAGE_REVISION", revision)],
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/packages");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .find(|p| p.ends_with(&format!("-{revision}_amd64.deb")) && p.contains("postgresql-15_"))
        .unwrap_or_else(|| panic!("no package of revision {revision} in {dir}"))
}

/// The extension's version (the root package's).
fn extension_version() -> String {
    let manifest = include_str!("../../Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_string()
}

#[test]
#[ignore]
fn the_postgresql_15_package_installs_upgrades_and_removes_cleanly() {
    assert!(
        pgaadauth_e2e::cluster::pg_config().starts_with("/usr/lib/postgresql/15/"),
        "run with PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config"
    );
    let first = build("1");
    let second = build("2");
    run("dpkg", &["-i", &first], &[]);
    assert!(run("dpkg-query", &["-W", "pgaadauth-postgresql-15"], &[]).contains("-1"));
    assert!(Path::new(LIB).exists());

    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("package", &idp.entra_settings());
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), &oid_for("ann")));
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('ann', '{}', 'user', false, false)",
        oid_for("ann")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token)
        .is_ok()));

    // A newer build over it; the server restarts onto it and logins go on.
    run("dpkg", &["-i", &second], &[]);
    assert!(run("dpkg-query", &["-W", "pgaadauth-postgresql-15"], &[]).contains("-2"));
    pg.restart();
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token)
        .is_ok()));
    assert_eq!(
        pg.sql("SELECT extversion FROM pg_extension WHERE extname = 'pgaadauth'"),
        extension_version()
    );
    pg.stop();

    // Removed: none of its files is left.
    let files = run("dpkg", &["-L", "pgaadauth-postgresql-15"], &[]);
    run("dpkg", &["-r", "pgaadauth-postgresql-15"], &[]);
    for file in files.lines().filter(|f| f.contains("pgaadauth")) {
        assert!(
            !Path::new(file).is_file(),
            "{file} is still there after dpkg -r"
        );
    }
    assert!(!Path::new(LIB).exists());
}
