//! Client programs of the tests that are not Rust: clients/oauth_client.c, a libpq 18 client
//! that hands its token over through PQAUTHDATA_OAUTH_BEARER_TOKEN.

use crate::cluster::{base_dir, pg_config};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// clients/oauth_client.c, built once per process against the libpq of the PostgreSQL under
/// test (`PG_CONFIG`).
pub fn oauth_client() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let ask = |flag: &str| {
            let out = Command::new(pg_config()).arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let (include, lib) = (ask("--includedir"), ask("--libdir"));
        std::fs::create_dir_all(base_dir()).unwrap();
        let out = base_dir().join(format!("oauth_client-{}", std::process::id()));
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/oauth_client.c");
        let built = Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(source)
            .arg(format!("-I{include}"))
            .arg(format!("-L{lib}"))
            .arg(format!("-Wl,-rpath,{lib}"))
            .arg("-lpq")
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "building oauth_client: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// Run the OAuth client with the token in its environment (never on its command line): its
/// output, `Err` when it failed. The test provider serves plain http on 127.0.0.1, which
/// libpq accepts as an issuer only with PGOAUTHDEBUG=UNSAFE.
pub fn run_oauth_client(args: &[&str], token: &str) -> Result<String, String> {
    let out = Command::new(oauth_client())
        .args(args)
        .env("PGAADAUTH_TOKEN", token)
        .env("PGOAUTHDEBUG", "UNSAFE")
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}
