//! pgaadauth-core: everything about a token login that never touches PostgreSQL — the token
//! validator, key-set and discovery parsing, the label grammar, settings derivation, key
//! refresh schedules, the directory's requests and answers, the audit line, the HTTPS
//! transport and the clock. No pgrx: the extension, the PostgreSQL 18 OAuth validator and the
//! PgBouncer module all link this crate, so all three decide alike.

pub mod audit;
pub mod binding;
pub mod clock;
pub mod config;
pub mod directory;
pub mod group_sync;
pub mod http;
pub mod jwks;
pub mod label;
pub mod log_text;
pub mod oauth_line;
pub mod pooler;
pub mod sasl;
pub mod schedule;
pub mod session;
pub mod strict_json;
pub mod token;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod proptests;
