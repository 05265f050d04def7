//! The module's connection to the PostgreSQL server (libpq), kept open between logins, and the
//! one call it makes: `pgaadauth_pooler_login(role, password, client)` by the fast-path
//! function call protocol, so no statement text (and no log line, no `pg_stat_activity` row)
//! ever holds the password. The result is an integer, which libpq takes only when it is 4
//! bytes (a text result it would copy unchecked into our buffer, whatever its length); the
//! reason of a refusal comes as an `INFO` message, which libpq allocates itself.
//!
//! Everything ends by the caller's deadline: connecting is libpq's non-blocking connect, polled
//! until the deadline (name resolution aside: libpq resolves host names before it polls); a
//! call still waiting at the deadline has a duplicate of its socket shut down by the module's
//! one watchdog thread, which makes libpq return. The duplicate, kept as long as the
//! connection, keeps the socket's number from being reused by PgBouncer meanwhile.

use pgaadauth_core::pooler::{Answer, MAX_ANSWER};
use std::ffi::{c_char, c_int, c_short, c_void, CStr, CString};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

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
const PGRES_POLLING_FAILED: c_int = 0;
const PGRES_POLLING_READING: c_int = 1;
const PGRES_POLLING_WRITING: c_int = 2;
const PGRES_POLLING_OK: c_int = 3;
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
/// `PG_DIAG_MESSAGE_PRIMARY`.
const MESSAGE_PRIMARY: c_int = b'M' as c_int;
const SHUT_RDWR: c_int = 2;
const POLLIN: c_short = 1;
const POLLOUT: c_short = 4;

#[link(name = "pq")]
unsafe extern "C" {
    fn PQconnectStartParams(
        keywords: *const *const c_char,
        values: *const *const c_char,
        expand_dbname: c_int,
    ) -> *mut PGconn;
    fn PQconnectPoll(conn: *mut PGconn) -> c_int;
    fn PQstatus(conn: *const PGconn) -> c_int;
    fn PQerrorMessage(conn: *const PGconn) -> *const c_char;
    fn PQfinish(conn: *mut PGconn);
    fn PQsocket(conn: *const PGconn) -> c_int;
    fn PQexec(conn: *mut PGconn, query: *const c_char) -> *mut PGresult;
    fn PQresultStatus(res: *const PGresult) -> c_int;
    fn PQntuples(res: *const PGresult) -> c_int;
    fn PQgetvalue(res: *const PGresult, row: c_int, col: c_int) -> *const c_char;
    fn PQclear(res: *mut PGresult);
    fn PQsetNoticeReceiver(
        conn: *mut PGconn,
        receiver: Option<unsafe extern "C" fn(arg: *mut c_void, res: *const PGresult)>,
        arg: *mut c_void,
    ) -> *mut c_void;
    fn PQresultErrorField(res: *const PGresult, field: c_int) -> *const c_char;
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

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

unsafe extern "C" {
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn poll(fds: *mut PollFd, nfds: u64, timeout: c_int) -> c_int;
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct Failure {
    pub text: String,
    /// The connection is gone (or was never made): connect again.
    pub connection_lost: bool,
}

fn lost(text: impl Into<String>) -> Failure {
    Failure {
        text: text.into(),
        connection_lost: true,
    }
}

/// The primary text of the last notice or `INFO` message on a connection, cut to
/// [`MAX_ANSWER`] bytes (libpq calls this, with the connection's [`Server::messages`]).
unsafe extern "C" fn keep_message(arg: *mut c_void, res: *const PGresult) {
    let _ = std::panic::catch_unwind(|| {
        let text = unsafe { PQresultErrorField(res, MESSAGE_PRIMARY) };
        if arg.is_null() || text.is_null() {
            return;
        }
        let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
        let bytes = &bytes[..bytes.len().min(4 * MAX_ANSWER)];
        let slot = unsafe { &*(arg as *const Mutex<Option<String>>) };
        *slot.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(String::from_utf8_lossy(bytes).into_owned());
    });
}

/// An open connection and the oid of `pgaadauth_pooler_login` on it.
pub struct Server {
    conn: *mut PGconn,
    function: c_int,
    /// The last message libpq received (boxed: libpq holds its address).
    messages: Box<Mutex<Option<String>>>,
    /// The dsn it was opened with (a changed PAM line opens a new one).
    pub dsn: String,
    /// A duplicate of the connection's socket, for the watchdog (-1 before it is connected).
    /// Its number cannot be reused by PgBouncer while the watchdog may act on it.
    spare: c_int,
}

// SAFETY: a connection is used by one thread at a time (the module's mutex).
unsafe impl Send for Server {}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { PQfinish(self.conn) };
        if self.spare >= 0 {
            unsafe { close(self.spare) };
        }
    }
}

/// libpq's message for the connection, on one line.
fn error_of(conn: *const PGconn) -> String {
    let text = unsafe { CStr::from_ptr(PQerrorMessage(conn)) }.to_string_lossy();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn millis_until(deadline: Instant) -> c_int {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_millis();
    c_int::try_from(left).unwrap_or(c_int::MAX)
}

const TIMED_OUT: &str = "the PostgreSQL server did not answer within the module's timeout";

/// The one watchdog thread: while a call is armed and its deadline passes, it shuts the
/// call's socket down (through the connection's duplicate), which makes libpq return. It is
/// signalled only when it sleeps past a new deadline: calls come and go without waking it.
struct Watchdog {
    state: Mutex<Watch>,
    signal: Condvar,
}

struct Watch {
    /// The armed call: the duplicate socket, its deadline, and whether it fired.
    armed: Option<(c_int, Instant, bool)>,
    /// Until when the thread sleeps (None: until signalled).
    sleeping_until: Option<Instant>,
}

static WATCHDOG: crate::Resident<Watchdog> = crate::Resident::new();

/// The watchdog, or None when its thread could not be started (then no call is made: a call
/// without a deadline could stall PgBouncer's PAM thread for good).
fn watchdog() -> Option<&'static Watchdog> {
    WATCHDOG.start(
        || Watchdog {
            state: Mutex::new(Watch {
                armed: None,
                sleeping_until: None,
            }),
            signal: Condvar::new(),
        },
        "pam_pgaadauth_watchdog",
        watch,
    )
}

fn watch(w: &Watchdog) {
    let mut state = w.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        state = match state.armed {
            Some((spare, deadline, false)) => {
                if Instant::now() >= deadline {
                    unsafe { shutdown(spare, SHUT_RDWR) };
                    state.armed = Some((spare, deadline, true));
                    continue;
                }
                state.sleeping_until = Some(deadline);
                let left = deadline.saturating_duration_since(Instant::now());
                w.signal
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            _ => {
                state.sleeping_until = None;
                w.signal.wait(state).unwrap_or_else(|e| e.into_inner())
            }
        };
    }
}

/// Run `call` on the connection whose socket's duplicate is `spare`; if it is still waiting at
/// `deadline`, the watchdog shuts the socket down so that libpq returns. True when it had to.
/// Without a duplicate or a watchdog, the call is not made: the connection counts as lost.
/// (The module's mutex makes calls one at a time.)
fn with_watchdog<T>(
    spare: c_int,
    deadline: Instant,
    call: impl FnOnce() -> T,
) -> Result<(T, bool), Failure> {
    let Some(w) = watchdog().filter(|_| spare >= 0) else {
        return Err(lost(
            "no deadline could be kept for the call (out of descriptors or threads)",
        ));
    };
    {
        let mut state = w.state.lock().unwrap_or_else(|e| e.into_inner());
        state.armed = Some((spare, deadline, false));
        if state.sleeping_until.is_none_or(|t| t > deadline) {
            w.signal.notify_one();
        }
    }
    let result = call();
    let fired = w
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .armed
        .take()
        .is_some_and(|(_, _, fired)| fired);
    Ok((result, fired))
}

impl Server {
    /// Connect with `dsn` by `deadline`. The answer comes in UTF-8 whatever the dsn says.
    pub fn connect(dsn: &str, deadline: Instant) -> Result<Server, Failure> {
        let dsn_c = CString::new(dsn).map_err(|_| lost("the dsn holds a NUL byte"))?;
        // The dsn is expanded in place of dbname: what comes after it overrides it.
        let keywords = [c"dbname", c"application_name", c"client_encoding"];
        let values = [dsn_c.as_ptr(), c"pam_pgaadauth".as_ptr(), c"UTF8".as_ptr()];
        let mut k: Vec<*const c_char> = keywords.iter().map(|k| k.as_ptr()).collect();
        let mut v: Vec<*const c_char> = values.to_vec();
        k.push(std::ptr::null());
        v.push(std::ptr::null());
        let conn = unsafe { PQconnectStartParams(k.as_ptr(), v.as_ptr(), 1) };
        if conn.is_null() {
            return Err(lost("libpq could not allocate a connection"));
        }
        let mut server = Server {
            conn,
            function: 0,
            messages: Box::new(Mutex::new(None)),
            dsn: dsn.to_string(),
            spare: -1,
        };
        let slot: *const Mutex<Option<String>> = &*server.messages;
        unsafe { PQsetNoticeReceiver(conn, Some(keep_message), slot as *mut c_void) };
        server.finish_connecting(deadline)?;
        server.spare = unsafe { dup(PQsocket(conn)) };
        server.function = server.function_oid(deadline)?;
        Ok(server)
    }

    /// libpq's connection state machine, waiting on its socket until `deadline`.
    fn finish_connecting(&self, deadline: Instant) -> Result<(), Failure> {
        let cannot = |why: String| lost(format!("cannot connect to the PostgreSQL server: {why}"));
        if unsafe { PQstatus(self.conn) } == 1 {
            return Err(cannot(error_of(self.conn))); // CONNECTION_BAD at once
        }
        let mut state = PGRES_POLLING_WRITING;
        loop {
            let events = match state {
                PGRES_POLLING_OK => break,
                PGRES_POLLING_FAILED => return Err(cannot(error_of(self.conn))),
                PGRES_POLLING_READING => POLLIN,
                _ => POLLOUT,
            };
            let mut fd = PollFd {
                fd: unsafe { PQsocket(self.conn) },
                events,
                revents: 0,
            };
            let left = millis_until(deadline);
            if left == 0 || unsafe { poll(&mut fd, 1, left) } == 0 {
                return Err(cannot("no connection within the module's timeout".into()));
            }
            state = unsafe { PQconnectPoll(self.conn) };
        }
        if unsafe { PQstatus(self.conn) } != CONNECTION_OK {
            return Err(cannot(error_of(self.conn)));
        }
        Ok(())
    }

    fn function_oid(&self, deadline: Instant) -> Result<c_int, Failure> {
        // The function's oid, and whether it returns an integer (from 0.6.0).
        let query = c"SELECT f::pg_catalog.oid, (SELECT p.prorettype = 'pg_catalog.int4'::pg_catalog.regtype FROM pg_catalog.pg_proc p WHERE p.oid = f) FROM pg_catalog.to_regprocedure('pg_catalog.pgaadauth_pooler_login(text,text,text)') f";
        let conn = self.conn;
        let ((ok, oid, integer), fired) = with_watchdog(self.spare, deadline, || unsafe {
            let res = PQexec(conn, query.as_ptr());
            let ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
            let field = |col| CStr::from_ptr(PQgetvalue(res, 0, col)).to_str().ok();
            let (oid, integer) = if ok {
                (
                    field(0).and_then(|s| s.parse::<u32>().ok()),
                    field(1) == Some("t"),
                )
            } else {
                (None, false)
            };
            PQclear(res);
            (ok, oid, integer)
        })?;
        match oid {
            _ if fired => Err(lost(TIMED_OUT)),
            Some(oid) if oid != 0 && !integer => Err(lost("the server's pgaadauth is older than this module (pgaadauth_pooler_login returns text): run ALTER EXTENSION pgaadauth UPDATE in the database of the module's dsn")),
            Some(oid) if oid != 0 => Ok(oid as c_int),
            _ if !ok => Err(lost(format!(
                "cannot look up pgaadauth_pooler_login on the server: {}",
                error_of(self.conn)
            ))),
            _ => Err(lost("the server has no pgaadauth_pooler_login: run CREATE EXTENSION pgaadauth (or ALTER EXTENSION pgaadauth UPDATE) in the database of the module's dsn")),
        }
    }

    /// Ask the server whether `role` may log in with `password` (from `client`), by `deadline`.
    pub fn check(
        &mut self,
        role: &str,
        password: &str,
        client: &str,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let args: Vec<ArgBlock> = [role, password, client]
            .iter()
            .map(|a| ArgBlock {
                len: a.len() as c_int,
                isint: 0,
                ptr: a.as_ptr().cast(),
            })
            .collect();
        // An integer result: libpq takes exactly 2 or 4 bytes, never more.
        let mut result: c_int = -1;
        let mut len: c_int = 0;
        let conn = self.conn;
        let function = self.function;
        *self.messages.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (status, fired) = with_watchdog(self.spare, deadline, || unsafe {
            let res = PQfn(
                conn,
                function,
                &mut result,
                &mut len,
                1,
                args.as_ptr(),
                args.len() as c_int,
            );
            let status = if res.is_null() {
                -1
            } else {
                PQresultStatus(res)
            };
            PQclear(res);
            status
        })?;
        if fired {
            return Err(lost(TIMED_OUT));
        }
        if status != PGRES_COMMAND_OK {
            return Err(Failure {
                text: format!(
                    "pgaadauth_pooler_login failed on the server: {}",
                    error_of(conn)
                ),
                connection_lost: unsafe { PQstatus(conn) } != CONNECTION_OK,
            });
        }
        let message = self
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let answer = if len == 4 {
            Answer::from_call(result, message.as_deref())
        } else {
            None
        };
        answer.ok_or_else(|| Failure {
            text: "the server's answer was not understood".into(),
            connection_lost: false,
        })
    }
}
