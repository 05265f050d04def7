//! End-to-end test support for pgaadauth: a throwaway cluster and a test identity provider.

pub mod children;
pub mod clients;
pub mod cluster;
pub mod idp;
pub mod managed_identity;
pub mod pgbench;
pub mod pgbouncer;
pub mod ports;
pub mod proxy;
