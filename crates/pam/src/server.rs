//! The module's connection to the PostgreSQL server (libpq), kept open between logins, and the
//! one call it makes: `pgaadauth_pooler_login(role, password, client)` by the fast-path
//! function call protocol, so no statement text (and no log line, no `pg_stat_activity` row)
//! ever holds the password. Every call ends within the module's timeout: connecting is bounded
//! by libpq's `connect_timeout`, and a call still waiting at the deadline has its socket shut
//! down by a watchdog, which makes libpq return.

use pgaadauth_core::pgbouncer::{Answer, MAX_ANSWER};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[repr(C)]
struct PGconn {
    _opaque: [u8; 0],
}
#[repr(C)]
struct PGresult {
    _opaque: [u8; 0],
}

/// libpq's `PQArgBlock` for a by-reference argument (`isint` 0: `u.ptr`).
#[repr(C)]
struct ArgBlock {
    len: c_int,
    isint: c_int,
    ptr: *const c_void,
}

const CONNECTION_OK: c_int = 0;
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const SHUT_RDWR: c_int = 2;

#[link(name = "pq")]
unsafe extern "C" {
    fn PQconnectdbParams(
        keywords: *const *const c_char,
        values: *const *const c_char,
        expand_dbname: c_int,
    ) -> *mut PGconn;
    fn PQstatus(conn: *const PGconn) -> c_int;
    fn PQerrorMessage(conn: *const PGconn) -> *const c_char;
    fn PQfinish(conn: *mut PGconn);
    fn PQsocket(conn: *const PGconn) -> c_int;
    fn PQexec(conn: *mut PGconn, query: *const c_char) -> *mut PGresult;
    fn PQresultStatus(res: *const PGresult) -> c_int;
    fn PQntuples(res: *const PGresult) -> c_int;
    fn PQgetvalue(res: *const PGresult, row: c_int, col: c_int) -> *const c_char;
    fn PQclear(res: *mut PGresult);
    fn PQfn(
        conn: *mut PGconn,
        fnid: c_int,
        result_buf: *mut c_int,
        result_len: *mut c_int,
        result_is_int: c_int,
        args: *const ArgBlock,
        nargs: c_int,
    ) -> *mut PGresult;
}

unsafe extern "C" {
    fn shutdown(fd: c_int, how: c_int) -> c_int;
}

/// An open connection and the oid of `pgaadauth_pooler_login` on it.
pub struct Server {
    conn: *mut PGconn,
    function: c_int,
}

// SAFETY: a connection is used by one thread at a time (the module's mutex).
unsafe impl Send for Server {}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { PQfinish(self.conn) };
    }
}

/// libpq's message for the connection, one line (it names host and port, never a password).
fn error_of(conn: *const PGconn) -> String {
    let text = unsafe { CStr::from_ptr(PQerrorMessage(conn)) }.to_string_lossy();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Server {
    /// Connect with `dsn`; libpq's `connect_timeout` is the module's timeout (at least 2 s,
    /// libpq's minimum) unless the dsn names one.
    pub fn connect(dsn: &str, timeout: Duration) -> Result<Server, String> {
        let seconds = timeout.as_secs().max(2).to_string();
        let keywords = [c"connect_timeout", c"dbname", c"application_name"];
        let dsn = CString::new(dsn).map_err(|_| "the dsn holds a NUL byte".to_string())?;
        let seconds = CString::new(seconds).unwrap_or_default();
        // The dsn is expanded in place of dbname: what it names overrides the defaults
        // before it, and application_name after it says who is connected.
        let values = [seconds.as_ptr(), dsn.as_ptr(), c"pam_pgaadauth".as_ptr()];
        let mut k: Vec<*const c_char> = keywords.iter().map(|k| k.as_ptr()).collect();
        let mut v: Vec<*const c_char> = values.to_vec();
        k.push(std::ptr::null());
        v.push(std::ptr::null());
        let conn = unsafe { PQconnectdbParams(k.as_ptr(), v.as_ptr(), 1) };
        if conn.is_null() {
            return Err("libpq could not allocate a connection".into());
        }
        let mut server = Server { conn, function: 0 };
        if unsafe { PQstatus(conn) } != CONNECTION_OK {
            return Err(format!(
                "cannot connect to the PostgreSQL server: {}",
                error_of(conn)
            ));
        }
        server.function = server.function_oid()?;
        Ok(server)
    }

    fn function_oid(&self) -> Result<c_int, String> {
        let query = c"SELECT pg_catalog.to_regprocedure('pg_catalog.pgaadauth_pooler_login(text,text,text)')::pg_catalog.oid";
        unsafe {
            let res = PQexec(self.conn, query.as_ptr());
            let ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
            let oid = if ok {
                CStr::from_ptr(PQgetvalue(res, 0, 0))
                    .to_str()
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
            } else {
                None
            };
            PQclear(res);
            match oid {
                Some(oid) if oid != 0 => Ok(oid as c_int),
                _ if !ok => Err(format!(
                    "cannot look up pgaadauth_pooler_login on the server: {}",
                    error_of(self.conn)
                )),
                _ => Err("the server has no pgaadauth_pooler_login: run CREATE EXTENSION pgaadauth (or ALTER EXTENSION pgaadauth UPDATE) in the database of the module's dsn".into()),
            }
        }
    }

    /// Ask the server whether `role` may log in with `password` (from `client`), by `deadline`.
    /// An error means the connection is no longer usable.
    pub fn check(
        &mut self,
        role: &str,
        password: &str,
        client: &str,
        deadline: Instant,
    ) -> Result<Answer, String> {
        let args: Vec<ArgBlock> = [role, password, client]
            .iter()
            .map(|a| ArgBlock {
                len: a.len() as c_int,
                isint: 0,
                ptr: a.as_ptr().cast(),
            })
            .collect();
        // The server cuts its answer to MAX_ANSWER bytes; libpq writes the whole of it here.
        let mut buf = vec![0u8; MAX_ANSWER + 1024];
        let mut len: c_int = 0;
        let socket = unsafe { PQsocket(self.conn) };
        let (done, wait) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            if wait.recv_timeout(left).is_err() && socket >= 0 {
                // The call is still waiting: end it (libpq then reports a lost connection).
                unsafe { shutdown(socket, SHUT_RDWR) };
                return true;
            }
            false
        });
        let res = unsafe {
            PQfn(
                self.conn,
                self.function,
                buf.as_mut_ptr().cast(),
                &mut len,
                0,
                args.as_ptr(),
                args.len() as c_int,
            )
        };
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(true);
        let status = if res.is_null() {
            -1
        } else {
            unsafe { PQresultStatus(res) }
        };
        unsafe { PQclear(res) };
        if timed_out {
            return Err("the PostgreSQL server did not answer within the module's timeout".into());
        }
        if status != PGRES_COMMAND_OK {
            return Err(format!(
                "pgaadauth_pooler_login failed on the server: {}",
                error_of(self.conn)
            ));
        }
        let len = usize::try_from(len).unwrap_or(0).min(buf.len());
        let text = String::from_utf8_lossy(&buf[..len]);
        Answer::parse(&text).ok_or_else(|| "the server's answer was not understood".into())
    }
}
