//! The table `pgaadauth.revocations` read from SQL: whether it is the extension's own, and its
//! rows (the session worker copies them into shared memory).

use pgrx::prelude::*;

/// The table's rows (none when the extension is not created in this database), newest first.
/// Whether `pgaadauth.revocations` is the extension's own table (not a view or table someone
/// else made under that name where the extension is not created: the session worker reads it
/// as a superuser).
const TABLE_IS_THE_EXTENSIONS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
          AND d.objid = c.oid AND d.deptype = 'e' \
     JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgaadauth' \
     WHERE n.nspname = 'pgaadauth' AND c.relname = 'revocations' AND c.relkind = 'r')";

pub fn read_table() -> Result<Vec<(String, i64)>, String> {
    Spi::connect(|c| {
        let exists = c
            .select(TABLE_IS_THE_EXTENSIONS, None, &[])
            .and_then(|t| t.first().get_one::<bool>())
            .map_err(|e| e.to_string())?
            .unwrap_or(false);
        if !exists {
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
    Spi::get_one::<bool>(TABLE_IS_THE_EXTENSIONS)
        .ok()
        .flatten()
        .unwrap_or(false)
}
