//! The table `pgaadauth.password_logins` from SQL: the session worker adds what logins recorded
//! in shared memory (crate::shmem::password_logins) and reads the table back.
//!
//! It never holds the worker up, nor ends it: a lock it cannot have within 100 ms, or an error
//! (a read-only transaction, a full disk), rolls back only this work, whose logins stay pending.

use super::subtransaction::in_subtransaction;
use crate::shmem::password_logins::Logins;
use pgrx::prelude::*;

/// What the table held after [`write_and_read`], and whether the pending logins went into it.
pub struct Read {
    pub wrote: bool,
    pub rows: Vec<(String, Logins)>,
}

const ADD: &str = "INSERT INTO pgaadauth.password_logins AS t (role_name, logins, first_login, last_login) \
     SELECT r, n, pg_catalog.to_timestamp(f / 1000000.0), pg_catalog.to_timestamp(l / 1000000.0) \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[]), \
                     pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.int8[])) AS u(r, n, f, l) \
     ON CONFLICT (role_name) DO UPDATE SET logins = t.logins + excluded.logins, \
       first_login = LEAST(t.first_login, excluded.first_login), \
       last_login = GREATEST(t.last_login, excluded.last_login)";

const READ: &str = "SELECT role_name::pg_catalog.text, logins, \
     (extract(epoch FROM first_login) * 1000000)::pg_catalog.int8, \
     (extract(epoch FROM last_login) * 1000000)::pg_catalog.int8 \
     FROM pgaadauth.password_logins";

/// Add `pending` to the table (not on a hot standby) and read it whole; nothing when the
/// extension is not created in this database.
pub fn write_and_read(pending: &[(String, Logins)]) -> Result<Option<Read>, String> {
    in_subtransaction(|| {
        Spi::connect_mut(|c| {
            if !super::names::is_extension_table(c, "password_logins")? {
                return Ok(None);
            }
            c.update(
                "SET LOCAL lock_timeout = '100ms'; SET LOCAL statement_timeout = 0",
                None,
                &[],
            )
            .map_err(|e| e.to_string())?;
            let wrote = !pending.is_empty() && !unsafe { pg_sys::RecoveryInProgress() };
            if wrote {
                let column =
                    |f: fn(&Logins) -> i64| pending.iter().map(|(_, l)| f(l)).collect::<Vec<_>>();
                let roles: Vec<String> = pending.iter().map(|(r, _)| r.clone()).collect();
                let args = [
                    roles.into(),
                    column(|l| l.count).into(),
                    column(|l| l.first).into(),
                    column(|l| l.last).into(),
                ];
                c.update(ADD, None, &args).map_err(|e| e.to_string())?;
            }
            let rows = c.select(READ, None, &[]).map_err(|e| e.to_string())?;
            let rows = rows
                .filter_map(|row| {
                    let role: String = row.get(1).ok().flatten()?;
                    let count: i64 = row.get(2).ok().flatten()?;
                    let first: i64 = row.get(3).ok().flatten()?;
                    let last: i64 = row.get(4).ok().flatten()?;
                    Some((role, Logins { count, first, last }))
                })
                .collect();
            Ok(Some(Read { wrote, rows }))
        })
    })?
}
