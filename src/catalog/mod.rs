//! The catalog: roles' labels (`SECURITY LABEL FOR pgaadauth`), who may manage principals and
//! which roles they may map (the binding rule), and the utility guard (DROP ROLE, SECURITY
//! LABEL). Reads the system caches; imports nothing of logins, workers or SQL functions.

pub mod labels;
pub mod managers;
pub mod names;
pub mod password_logins;
pub mod privileges;
pub mod relabel;
pub mod revocations;
pub mod subtransaction;
pub mod utility;
