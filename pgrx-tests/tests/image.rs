//! The CloudNativePG image volume extension (docs/kubernetes.md), as the operator uses it: the
//! archive scripts/package.sh writes, read and unpacked as a container runtime would (skopeo
//! copies it, umoci unpacks its layers), mounted where the operator mounts it, into a
//! PostgreSQL 18 whose own tree has no pgaadauth: found through `extension_control_path` and
//! `dynamic_library_path` alone, it serves a token login. Built again (files staged afresh, with
//! new times), it has the same digest.
//!
//! Ignored by default: it runs scripts/package.sh (release builds, both cores for minutes),
//! which would slow the tests beside it. scripts/test.sh runs it after the majors, on its own.

use pgaadauth_e2e::cluster::{base_dir, check, major, pg_config, pg_config_dir, Cluster};
use pgaadauth_e2e::idp::{mint_with, oid_for, Idp, RSA1};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap();
    check(out, &format!("{program} {args:?}"))
}

fn version() -> String {
    include_str!("../../Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the version in Cargo.toml")
        .to_string()
}

/// Build the packages of the major under test: the image archive's path and its SHA-256.
fn build() -> (PathBuf, String) {
    let out = run(
        "scripts/package.sh",
        &[],
        &[("PG_VERSIONS", &major().to_string())],
    );
    let archive = repo().join(format!(
        "target/packages/pgaadauth-postgresql-{}-{}.oci.tar",
        major(),
        version()
    ));
    assert!(archive.exists(), "no {} after:\n{out}", archive.display());
    let sum = run("sha256sum", &[archive.to_str().unwrap()], &[]);
    (archive, sum.split_whitespace().next().unwrap().to_string())
}

/// Every path under `dir`, relative, directories with a trailing `/`, sorted.
fn listing(dir: &Path, under: &Path) -> Vec<String> {
    let mut all = vec![];
    for e in fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        let rel = path.strip_prefix(under).unwrap().display().to_string();
        if path.is_dir() {
            all.push(format!("{rel}/"));
            all.extend(listing(&path, under));
        } else {
            all.push(rel);
        }
    }
    all.sort();
    all
}

#[test]
#[ignore]
fn the_image_alone_serves_a_token_login_and_builds_reproducibly() {
    assert!(
        major() >= 18,
        "image volume extensions need PostgreSQL 18 (extension_control_path): PG_CONFIG names {}",
        major()
    );
    let (archive, sum) = build();
    let work = base_dir().join(format!("image-volume-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let layout = work.join("layout");
    let reference = format!("{}-{}", major(), version());

    // As a runtime pulls it: into an image layout, then its configuration and labels.
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci-archive:{}:{reference}", archive.display()),
            &format!("oci:{}:pgaadauth", layout.display()),
        ],
        &[],
    );
    let config: Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:pgaadauth", layout.display()),
        ],
        &[],
    ))
    .unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version());
    assert_eq!(labels["org.opencontainers.image.licenses"], "PostgreSQL");
    assert_eq!(labels["io.pgaadauth.postgresql.major"], major().to_string());
    assert_eq!(config["os"], "linux");
    let revision = run("git", &["rev-parse", "HEAD"], &[]);
    let label = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    // "-dirty" when built from a tree with uncommitted changes.
    assert_eq!(label.trim_end_matches("-dirty"), revision.trim());

    // Its layers unpacked where the operator mounts `.spec.postgresql.extensions[name=pgaadauth]`.
    let mount = work.join("extensions/pgaadauth");
    fs::create_dir_all(mount.parent().unwrap()).unwrap();
    run(
        "umoci",
        &[
            "raw",
            "unpack",
            "--image",
            &format!("{}:pgaadauth", layout.display()),
            mount.to_str().unwrap(),
        ],
        &[],
    );
    // Nothing but lib/, share/extension/ and the license.
    let files = listing(&mount, &mount);
    let expected_sql: Vec<String> = fs::read_dir(repo().join("sql"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgaadauth--"))
        .collect();
    let mut expected = vec![
        "lib/".to_string(),
        "lib/pgaadauth.so".into(),
        "licenses/".into(),
        "licenses/pgaadauth/".into(),
        "licenses/pgaadauth/LICENSE".into(),
        "share/".into(),
        "share/extension/".into(),
        "share/extension/pgaadauth.control".into(),
        // The fresh install's script, generated at the build.
        format!("share/extension/pgaadauth--{}.sql", version()),
    ];
    expected.extend(expected_sql.iter().map(|n| format!("share/extension/{n}")));
    expected.sort();
    expected.dedup();
    assert_eq!(files, expected);
    assert_eq!(
        fs::read(mount.join("licenses/pgaadauth/LICENSE")).unwrap(),
        fs::read(repo().join("LICENSE")).unwrap()
    );

    // A PostgreSQL 18 tree without pgaadauth (a copy of the one under test, which has it).
    let tree = work.join("postgresql");
    let own = pg_config_dir(&pg_config(), "bindir");
    run(
        "cp",
        &[
            "-a",
            own.parent().unwrap().to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
        &[],
    );
    let tree_config = tree.join("bin/pg_config").display().to_string();
    let pkglibdir = pg_config_dir(&tree_config, "pkglibdir");
    let extdir = pg_config_dir(&tree_config, "sharedir").join("extension");
    for dir in [&pkglibdir, &extdir] {
        assert!(
            dir.starts_with(&tree),
            "{} is not in the copy",
            dir.display()
        );
        for e in fs::read_dir(dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("pgaadauth") {
                fs::remove_file(e.path()).unwrap();
            }
        }
    }
    assert!(!pkglibdir.join("pgaadauth.so").exists());

    // The settings the operator writes for the image, and pgaadauth's own.
    let idp = Idp::start(&[&RSA1]);
    let mut settings = idp.entra_settings();
    settings.extend([
        (
            "extension_control_path",
            format!("$system:{}/share", mount.display()),
        ),
        (
            "dynamic_library_path",
            format!("$libdir:{}/lib", mount.display()),
        ),
    ]);
    let pg = Cluster::start_on(&tree_config, "image", &settings);
    assert_eq!(
        pg.sql("SELECT extversion FROM pg_extension WHERE extname = 'pgaadauth'"),
        version()
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('kim', '{}', 'user', false, false)",
        oid_for("kim")
    ));
    let token = mint_with(&idp.entra_issuer(), &oid_for("kim"), &json!({}));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("kim", &token)
            .is_ok()),
        "{}",
        pg.log()
    );
    let mut kim = pg.connect("kim", &token).unwrap();
    let who = kim
        .query_one("SELECT object_id FROM pgaadauth_session()", &[])
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(who, oid_for("kim"));
    drop(pg);

    // The same commit, built again: the same archive, byte for byte.
    let (_, again) = build();
    assert_eq!(again, sum, "the image is not reproducible");
    let _ = fs::remove_dir_all(&work);
}
