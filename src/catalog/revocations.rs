//! The table `pgaadauth.revocations` read from SQL: whether it is the extension's own, and its
//! rows (the session worker copies them into shared memory).

use pgrx::prelude::*;

/// The table's rows (none when the extension is not created in this database), newest first.
pub fn read_table() -> Result<Vec<(String, i64)>, String> {
    Spi::connect(|c| {
        if !super::names::is_extension_table(c, "revocations")? {
            return Ok(vec![]);
        }
        let table = c
            .select(
                "SELECT object_id, pg_catalog.floor(pg_catalog.date_part('epoch', revoked_before))::bigint \
                 FROM pgaadauth.revocations ORDER BY revoked_before DESC",
                None,
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok(table
            .filter_map(|row| {
                let o: Option<String> = row.get(1).ok().flatten();
                let t: Option<i64> = row.get(2).ok().flatten();
                o.zip(t)
            })
            .collect())
    })
}

/// Whether `pgaadauth.revocations` in this database is the extension's own table.
pub fn table_is_the_extensions() -> bool {
    Spi::connect(|c| super::names::is_extension_table(c, "revocations")).unwrap_or(false)
}
