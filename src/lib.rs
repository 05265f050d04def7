//! pgaadauth: Microsoft Entra ID (and OpenID Connect) access-token login for PostgreSQL.
//!
//! The decisions live in the pure core crate (`pgaadauth_core`, crates/core). This crate is the
//! PostgreSQL glue, one folder per concern (docs/development.md, "Layout"): `settings`, `shmem`
//! (every shared segment), `catalog` (labels, who may map which role), `login` (the doors, one
//! decision, one outcome), `net` and `group_sync` (reached by workers only), `workers`, `sql`
//! (every SQL function), and `shim` (the C bridge). `_PG_init` starts each, in order.

mod catalog;
mod group_sync;
mod login;
mod net;
mod settings;
mod shim;
mod shmem;
mod sql;
mod workers;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pgaadauth must be loaded via shared_preload_libraries",
            "pgaadauth",
        )
        .set_hint(
            "Add pgaadauth to shared_preload_libraries in postgresql.conf and restart the server.",
        )
        .report(PgLogLevel::ERROR);
    }
    settings::define();
    settings::report_at_startup();
    if !pgaadauth_core::token::warm_up() {
        pgrx::warning!("pgaadauth: the signature self-test failed at start-up");
    }
    catalog::relabel::register();
    login::hook::install();
    catalog::utility::install();
    shmem::install_hooks();
    shmem::sessions::install_message_hook();
    workers::register_all();
}

/// Settings for the `#[pg_test]` harness, which connects over TCP without a password: its
/// pg_hba.conf admits it through `ident` (scripts/identd.py), a method pgaadauth leaves alone.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pgaadauth'",
            concat!(
                "hba_file = '",
                env!("CARGO_MANIFEST_DIR"),
                "/pgrx-tests/pg_test_hba.conf'"
            ),
            concat!(
                "ident_file = '",
                env!("CARGO_MANIFEST_DIR"),
                "/pgrx-tests/pg_test_ident.conf'"
            ),
        ]
    }
}
