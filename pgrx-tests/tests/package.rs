//! The Debian packages, as a DBA uses them: the PostgreSQL 15 package, the PAM module's and
//! the proxy's installed with `dpkg -i` into Debian's PostgreSQL 15, the extension enabled, a
//! token login to the server and one through PgBouncer, the proxy's version; newer package builds installed over them and the
//! server restarted onto them; then `dpkg -r`, which leaves none of their files behind. Last,
//! the tarball, installed as its INSTALL says, serves a token login too.
//!
//! Ignored by default: it installs into the system's PostgreSQL 15 (replacing a development
//! install) and needs root. scripts/test.sh runs it last, on its own.

use pgaadauth_e2e::cluster::{base_dir, check, Cluster};
use pgaadauth_e2e::idp::{claims, mint, oid_for, Idp, RSA1};
use pgaadauth_e2e::pgbouncer::{PgBouncer, PAM_OTHER};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LIB: &str = "/usr/lib/postgresql/15/lib/pgaadauth.so";
const EXTENSION_DIR: &str = "/usr/share/postgresql/15/extension";
const PACKAGES: [&str; 3] = [
    "pgaadauth-postgresql-15",
    "libpam-pgaadauth",
    "pgaadauth-proxy",
];

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    check(out, &format!("{program} {args:?}"))
}

/// Build the PostgreSQL 15 package, the PAM module's and the proxy's with package revision
/// `revision`: their paths.
fn build(revision: &str) -> [String; 3] {
    run(
        "scripts/package.sh",
        &[],
        &[("PG_VERSIONS", "15"), ("PACKAGE_REVISION", revision)],
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/packages");
    let built: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains(&format!("_{}-{revision}_", extension_version())))
        .filter(|p| p.ends_with(".deb"))
        .collect();
    [
        "pgaadauth-postgresql-15_",
        "libpam-pgaadauth_",
        "pgaadauth-proxy_",
    ]
    .map(|name| {
        built
            .iter()
            .find(|p| p.contains(name))
            .unwrap_or_else(|| panic!("no {name} package of revision {revision} in {dir}"))
            .clone()
    })
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
    run("dpkg", &["-i", &first[0], &first[1], &first[2]], &[]);
    for package in PACKAGES {
        assert!(run("dpkg-query", &["-W", package], &[]).contains("-1"));
    }
    assert!(Path::new(LIB).exists());
    assert_eq!(
        run("/usr/bin/pgaadauth-proxy", &["--version"], &[]).trim(),
        format!("pgaadauth-proxy {}", extension_version())
    );

    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start("package", &idp.entra_settings());
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), &oid_for("ann")));
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('ann', '{}', 'user', false, false); \
         CREATE ROLE pgbouncer_auth LOGIN PASSWORD 'pooler-Secret-1'; \
         GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pgbouncer_auth",
        oid_for("ann")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token)
        .is_ok()));
    // The packaged PAM module: a token login through PgBouncer.
    // Its PAM view's `other` is the one docs/pgbouncer.md's drop-in mounts.
    assert_eq!(
        std::fs::read_to_string("/usr/share/libpam-pgaadauth/pam.d/other").unwrap(),
        PAM_OTHER
    );
    let bouncer = PgBouncer::start(
        "package-bouncer",
        &pg,
        "session",
        &["postgres"],
        &format!(
            "dsn=postgresql://pgbouncer_auth:pooler-Secret-1@127.0.0.1:{}/postgres",
            pg.port
        ),
    );
    let through_pgbouncer = || bouncer.connect("postgres", "ann", &token).is_ok();
    assert!(through_pgbouncer(), "{}", bouncer.log());

    // Newer builds over them; the server restarts onto the new library and logins go on.
    run("dpkg", &["-i", &second[0], &second[1], &second[2]], &[]);
    for package in PACKAGES {
        assert!(run("dpkg-query", &["-W", package], &[]).contains("-2"));
    }
    pg.restart();
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token)
        .is_ok()));
    assert!(through_pgbouncer(), "{}", bouncer.log());
    assert_eq!(
        pg.sql("SELECT extversion FROM pg_extension WHERE extname = 'pgaadauth'"),
        extension_version()
    );
    drop(bouncer);
    pg.stop();

    // Removed: none of their files is left.
    for package in PACKAGES {
        let files = run("dpkg", &["-L", package], &[]);
        run("dpkg", &["-r", package], &[]);
        for file in files.lines().filter(|f| f.contains("pgaadauth")) {
            assert!(
                !Path::new(file).is_file(),
                "{file} is still there after dpkg -r {package}"
            );
        }
    }
    assert!(!Path::new(LIB).exists());

    // The tarball, installed by the commands of its INSTALL, serves the same login.
    let version = extension_version();
    let work = base_dir().join(format!("unpacked-tarball-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let tarball = format!(
        "{}/../target/packages/pgaadauth-postgresql-15-{version}.tar.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    run(
        "tar",
        &["-xzf", &tarball, "-C", &work.display().to_string()],
        &[],
    );
    let tree = work.join(format!("pgaadauth-postgresql-15-{version}"));
    let install = std::fs::read_to_string(tree.join("INSTALL")).unwrap();
    let commands: Vec<&str> = install
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    assert_eq!(commands.len(), 2, "{install}");
    let path = format!(
        "/usr/lib/postgresql/15/bin:{}",
        std::env::var("PATH").unwrap()
    );
    for command in commands {
        let out = Command::new("sh")
            .args(["-c", command])
            .current_dir(&tree)
            .env("PATH", &path)
            .output()
            .unwrap();
        check(out, command);
    }
    let pg = Cluster::start("package-tarball", &idp.entra_settings());
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('ann', '{}', 'user', false, false)",
        oid_for("ann")
    ));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect("ann", &token)
        .is_ok()));
    pg.stop();
    std::fs::remove_file(LIB).unwrap();
    for file in std::fs::read_dir(tree.join("extension")).unwrap() {
        let name = file.unwrap().file_name();
        std::fs::remove_file(Path::new(EXTENSION_DIR).join(name)).unwrap();
    }
    std::fs::remove_dir_all(&work).unwrap();
}
