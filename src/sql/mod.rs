//! Every SQL function of the extension (`#[pg_extern]`), by topic. DDL lives in `sql/*.sql`.

pub mod diagnostics;
pub mod group_sync;
pub mod keys;
pub mod password_logins;
pub mod pooler;
pub mod principals;
pub mod revocations;
pub mod sessions;

use pgrx::prelude::*;

// The SQL functions written in SQL (sql/pgaadauth.sql), over the Rust ones they call.
extension_sql_file!(
    "../../sql/pgaadauth.sql",
    name = "pgaadauth_sql",
    requires = [
        principals::pgaadauth_label_fields,
        keys::pgaadauth_jwks_rows,
        diagnostics::pgaadauth_validate_token_for
    ]
);
