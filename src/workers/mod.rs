//! The background workers: keys (fetches the signing keys into shared memory), directory
//! (answers the backends' directory questions), sessions (keeps the revocations' shared copy
//! and ends sessions whose token expired or was revoked), group sync. Workers may reach the
//! network (`crate::net`); nothing else on a login's path does.

pub mod directory;
pub mod group_sync;
pub mod keys;
pub mod sessions;

/// From `_PG_init`: every worker, in start order; none in a server pg_upgrade started
/// (binary upgrade mode), which takes no logins and whose databases pg_upgrade drops and
/// re-creates while it runs.
pub fn register_all() {
    // SAFETY: set from the postmaster's command line before shared_preload_libraries load.
    if unsafe { pgrx::pg_sys::IsBinaryUpgrade } {
        return;
    }
    keys::register();
    directory::register();
    sessions::register();
    group_sync::register();
}
