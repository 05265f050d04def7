//! Every SQL function of the extension (`#[pg_extern]`), by topic. DDL lives in `sql/*.sql`.

pub mod principals;
