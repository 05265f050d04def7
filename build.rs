//! Builds the C shim (csrc/shim.c) against the server headers of the PostgreSQL whose pgrx
//! bindings are being built: the same pg_config that pgrx's own build script picks
//! (`PGRX_PG_CONFIG_PATH`, else `cargo pgrx init`'s entry for the enabled `pgNN` feature).
//! The shim refuses to compile against another major (`#error` on `PG_VERSION_NUM`).

use std::process::Command;

const MAJORS: std::ops::RangeInclusive<u32> = 14..=18;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    let majors: Vec<u32> = MAJORS
        .filter(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())
        .collect();
    let [major] = majors[..] else {
        panic!("enable exactly one of the features pg14 … pg18 (enabled: {majors:?})");
    };
    let pg_config = std::env::var("PGRX_PG_CONFIG_PATH")
        .ok()
        .or_else(|| pgrx_config_for(major))
        .unwrap_or_else(|| {
            panic!("no pg_config for pg{major}: run `cargo pgrx init --pg{major} <pg_config>`")
        });
    let out = Command::new(&pg_config)
        .arg("--includedir-server")
        .output()
        .unwrap_or_else(|e| panic!("could not run {pg_config}: {e}"));
    assert!(
        out.status.success(),
        "{pg_config} --includedir-server failed"
    );
    let include = String::from_utf8(out.stdout).unwrap();
    cc::Build::new()
        .file("csrc/shim.c")
        .include(include.trim())
        .define("PGAADAUTH_PG_MAJOR", major.to_string().as_str())
        .flag("-Werror=implicit-function-declaration")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .compile("pgaadauth_shim");
}

/// The pg_config that `cargo pgrx init` recorded for `pg{major}`.
fn pgrx_config_for(major: u32) -> Option<String> {
    let home = std::env::var("PGRX_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pgrx")))?;
    println!("cargo:rerun-if-changed={home}/config.toml");
    let text = std::fs::read_to_string(format!("{home}/config.toml")).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == format!("pg{major}")).then(|| value.trim().trim_matches('"').to_string())
    })
}
