//! pgaadauth: Microsoft Entra ID (and OpenID Connect) access-token login for PostgreSQL.

pub mod config;
pub mod jwks;
pub mod label;
pub mod token;

::pgrx::pg_module_magic!();
