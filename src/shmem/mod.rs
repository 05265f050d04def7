//! Shared memory: every segment pgaadauth keeps (the key table, the directory mailbox and
//! membership cache, the session table, the revocations' copy, the counters), sized and started
//! in one place, and the one way a backend waits for a worker. Imports nothing of logins,
//! workers, SQL functions or the catalog.

pub mod counters;
pub mod keys;
pub mod mailbox;
pub mod revocations;
pub mod sessions;
pub mod wait;
