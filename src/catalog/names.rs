//! Names in SQL and C: quoting identifiers and literals, role names by oid, C strings.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

pub fn quote_ident(name: &str) -> String {
    let c = c_string(name);
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

pub fn quote_literal(text: &str) -> String {
    let c = c_string(text);
    unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

pub fn role_name(roleid: pg_sys::Oid) -> String {
    let name = unsafe { pg_sys::GetUserNameFromId(roleid, true) };
    if name.is_null() {
        format!("{}", roleid.to_u32())
    } else {
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}

/// `s` with its first letter upper-case (a DETAIL sentence), unless it starts with a setting's
/// name, which keeps its case.
pub fn capitalized(s: &str) -> String {
    if s.starts_with("pgaadauth.") {
        return s.to_string();
    }
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `name` as a C string; role names never hold NUL, but never panic on one.
pub fn c_string(name: &str) -> CString {
    CString::new(name.replace('\0', "")).unwrap_or_default()
}

pub fn role_exists(name: &str) -> bool {
    // A catalog lookup, no SQL: it also runs with the superuser's rights.
    let name = c_string(name);
    unsafe { pg_sys::get_role_oid(name.as_ptr(), true) != pg_sys::InvalidOid }
}

/// Whether `pgaadauth.<relname>` is a table of the extension (not a view or table someone else
/// made under that name where the extension is not created: workers read and write it as a
/// superuser).
pub fn is_extension_table(c: &pgrx::spi::SpiClient<'_>, relname: &str) -> Result<bool, String> {
    c.select(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
              AND d.objid = c.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgaadauth' \
         WHERE n.nspname = 'pgaadauth' AND c.relname = $1 AND c.relkind = 'r')",
        None,
        &[relname.into()],
    )
    .and_then(|t| t.first().get_one::<bool>())
    .map(|b| b.unwrap_or(false))
    .map_err(|e| e.to_string())
}
