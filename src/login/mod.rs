//! Logins: the doors (the ClientAuthentication hook, PostgreSQL 18's OAuth validator, the
//! pooler's function, `pgaadauth_validate_token`) each turn what they know into an attempt;
//! one decision ([`decision`]) decides every attempt and one place ([`outcome`]) records it.
//! A login reads shared memory and the catalogs only: it never imports a worker, the network
//! or an SQL function, and never waits on the network (it wakes a worker and waits on its
//! latch).

pub mod decision;
pub mod hook;
pub mod identity;
#[cfg(feature = "pg18")]
pub mod oauth;
pub mod outcome;
pub mod password;
pub mod pooler;
pub mod scram;
