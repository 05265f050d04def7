//! pgaadauth: Microsoft Entra ID (and OpenID Connect) access-token login for PostgreSQL.
//!
//! The decisions live in the pure core crate (`pgaadauth-core`, crates/core), re-exported
//! here under their module names. This crate is the PostgreSQL glue: `auth` (the login hook),
//! `sasl` (the SCRAM exchange), `utility` (the DROP ROLE guard), `seclabel`, `keytable`,
//! `mailbox` and `stats` (shared memory), `worker` (keys), `directory_worker`, `wait`,
//! `settings`, `sql_api`, `sync_roles` and `sync_worker` (group sync), `shim` (the C bridge).

pub use pgaadauth_core::{
    audit, clock, config, directory, group_sync, http, jwks, label, oauth_line, pgbouncer,
    schedule, session, strict_json, token,
};

pub(crate) mod auth;
mod directory_worker;
mod keytable;
mod login_audit;
mod mailbox;
#[cfg(feature = "pg18")]
mod oauth;
mod pooler;
mod privileges;
mod revocations;
mod sasl;
mod seclabel;
mod session_identity;
mod session_worker;
mod sessions;
mod settings;
mod shim;
mod sql_api;
mod stats;
mod sync_roles;
mod sync_worker;
mod utility;
mod wait;
mod worker;

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
    if !token::warm_up() {
        pgrx::warning!("pgaadauth: the signature self-test failed at start-up");
    }
    seclabel::register();
    auth::install();
    utility::install();
    keytable::install_hooks();
    sessions::install_message_hook();
    worker::register();
    session_worker::register();
    sync_worker::register();
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
