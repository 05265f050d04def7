//! Builds the C shim (csrc/shim.c) against the server headers of the PostgreSQL being targeted.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    let pg_config = std::env::var("PG_CONFIG")
        .ok()
        .or_else(pgrx_config_for_feature)
        .unwrap_or_else(|| "pg_config".into());
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
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .compile("pgaadauth_shim");
}

/// The pg_config that `cargo pgrx init` recorded for the enabled `pgNN` feature, so that the
/// shim is compiled against the same headers as pgrx's bindings.
fn pgrx_config_for_feature() -> Option<String> {
    let major = (13..=18).find(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())?;
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
