//! `pam_pgaadauth.so`: a PAM module for PgBouncer (`auth_type = pam`) that has the PostgreSQL
//! server decide every client login, exactly as it would decide a direct login (the server's
//! `pgaadauth_pooler_login`), over one connection kept open between logins (crates/pam/src/
//! server.rs). PAM line: `auth required pam_pgaadauth.so dsn=<libpq connection string>
//! [timeout=<ms>]`, and `account required pam_pgaadauth.so` (PgBouncer calls pam_acct_mgmt).
//!
//! Fails closed: no answer from the server within the timeout is a refusal, with the reason in
//! PgBouncer's log (a PAM_ERROR_MSG, which PgBouncer logs as a warning); the next login tries
//! again, at most one connection attempt per second while the server is unreachable.

mod server;
mod wake;

use pgaadauth_core::log_text::log_safe;
use pgaadauth_core::pooler::{looks_cut_by_pgbouncer, Answer, ModuleArgs};
use server::{Failure, Server};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[repr(C)]
pub struct PamHandle {
    _opaque: [u8; 0],
}

const PAM_SUCCESS: c_int = 0;
const PAM_SERVICE_ERR: c_int = 3;
const PAM_AUTH_ERR: c_int = 7;
const PAM_AUTHINFO_UNAVAIL: c_int = 9;
const PAM_AUTHTOK: c_int = 6;
const PAM_RHOST: c_int = 4;
const PAM_ERROR_MSG: c_int = 3;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
        -> c_int;
    fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_set_data(
        pamh: *mut PamHandle,
        name: *const c_char,
        data: *mut c_void,
        cleanup: Option<unsafe extern "C" fn(*mut PamHandle, *mut c_void, c_int)>,
    ) -> c_int;
    fn pam_prompt(
        pamh: *mut PamHandle,
        style: c_int,
        response: *mut *mut c_char,
        fmt: *const c_char,
        ...
    ) -> c_int;
}

/// The connection to the server, and when connecting last failed (and why).
struct State {
    server: Option<Server>,
    failed: Option<(Instant, String)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    server: None,
    failed: None,
});

/// A value the module shares with one thread of its own, which runs on it for the life of the
/// process (the module is linked `nodelete`): the watchdog of server calls, the closer of
/// knocks. Started at first use.
struct Resident<T: 'static> {
    value: std::sync::OnceLock<T>,
    running: std::sync::OnceLock<bool>,
}

impl<T: Sync> Resident<T> {
    const fn new() -> Resident<T> {
        Resident {
            value: std::sync::OnceLock::new(),
            running: std::sync::OnceLock::new(),
        }
    }

    /// The value, its thread started if need be; None when the thread could not be started.
    fn start(
        &'static self,
        init: impl FnOnce() -> T,
        name: &str,
        work: fn(&'static T),
    ) -> Option<&'static T> {
        let value = self.value.get_or_init(init);
        let running = *self.running.get_or_init(|| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || work(value))
                .is_ok()
        });
        running.then_some(value)
    }

    /// The value, when its thread runs (never started: None).
    fn running(&'static self) -> Option<&'static T> {
        (self.running.get() == Some(&true))
            .then(|| self.value.get())
            .flatten()
    }
}

/// How long a failed connection attempt is trusted before the next one.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Tell PgBouncer's log (a PAM_ERROR_MSG through its conversation).
fn tell(pamh: *mut PamHandle, text: &str) {
    let text = format!("pam_pgaadauth: {text}").replace('\0', "");
    if let Ok(text) = std::ffi::CString::new(text) {
        let mut response: *mut c_char = std::ptr::null_mut();
        unsafe {
            pam_prompt(
                pamh,
                PAM_ERROR_MSG,
                &mut response,
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        };
        if !response.is_null() {
            unsafe { free(response.cast()) };
        }
    }
}

unsafe extern "C" {
    fn free(p: *mut c_void);
}

fn c_text<'a>(p: *const c_char) -> Option<&'a str> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().ok())?
}

/// The PAM arguments, as words.
fn words<'a>(argc: c_int, argv: *const *const c_char) -> Vec<&'a str> {
    (0..usize::try_from(argc).unwrap_or(0))
        .filter_map(|i| c_text(unsafe { *argv.add(i) }))
        .collect()
}

/// # Safety
/// Called by libpam with a valid handle and `argc` arguments.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // A panic must not unwind into libpam or PgBouncer: it is a refusal.
    std::panic::catch_unwind(|| authenticate(pamh, &words(argc, argv))).unwrap_or_else(|_| {
        tell(pamh, "internal error; login refused");
        PAM_AUTH_ERR
    })
}

fn authenticate(pamh: *mut PamHandle, args: &[&str]) -> c_int {
    let args = match ModuleArgs::parse(args.iter().copied()) {
        Ok(a) => a,
        Err(e) => {
            tell(pamh, &format!("misconfigured PAM line: {e}"));
            return PAM_SERVICE_ERR;
        }
    };
    // Whatever the answer, PgBouncer's loop is woken when it is about to store it.
    wake::want(&args.wake);
    wake::after_this_login(pamh);
    if let Some(news) = wake::news() {
        tell(pamh, &news);
    }
    let (mut user, mut password): (*const c_char, *const c_char) =
        (std::ptr::null(), std::ptr::null());
    let mut rhost: *const c_void = std::ptr::null();
    unsafe {
        if pam_get_user(pamh, &mut user, std::ptr::null()) != PAM_SUCCESS
            || pam_get_authtok(pamh, PAM_AUTHTOK, &mut password, std::ptr::null()) != PAM_SUCCESS
        {
            tell(pamh, "no user name or password from the application");
            return PAM_AUTH_ERR;
        }
        pam_get_item(pamh, PAM_RHOST, &mut rhost);
    }
    let (Some(user), Some(password)) = (c_text(user), c_text(password)) else {
        tell(pamh, "the user name or password is not UTF-8");
        return PAM_AUTH_ERR;
    };
    let client = c_text(rhost.cast()).unwrap_or("");
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    match check(&args, user, password, client, deadline) {
        Ok(Answer::Accepted) => PAM_SUCCESS,
        Ok(Answer::Rejected(why)) => {
            tell(
                pamh,
                &format!("login of \"{}\" refused: {why}", log_safe(user)),
            );
            PAM_AUTH_ERR
        }
        Err(e) => {
            // The server decides a cut token too (and audits it); without it, say so here.
            let cut = looks_cut_by_pgbouncer(password)
                .map(|why| format!("; besides, {why}"))
                .unwrap_or_default();
            tell(
                pamh,
                &format!(
                    "login of \"{}\" refused (failing closed): {}{cut}",
                    log_safe(user),
                    e.text
                ),
            );
            PAM_AUTHINFO_UNAVAIL
        }
    }
}

/// The server's answer, on the kept connection or a new one. A lost connection is dropped; a
/// kept one that is found lost (the server restarted since) is replaced once, time allowing.
fn check(
    args: &ModuleArgs,
    user: &str,
    password: &str,
    client: &str,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    // A changed PAM line (another dsn) gets its own connection.
    if state.server.as_ref().is_some_and(|s| s.dsn != args.dsn) {
        state.server = None;
        state.failed = None;
    }
    let kept = state.server.is_some();
    match ask(&mut state, args, user, password, client, deadline) {
        Err(e) if e.connection_lost && kept && Instant::now() < deadline => {
            ask(&mut state, args, user, password, client, deadline)
        }
        answer => answer,
    }
}

fn ask(
    state: &mut State,
    args: &ModuleArgs,
    user: &str,
    password: &str,
    client: &str,
    deadline: Instant,
) -> Result<Answer, Failure> {
    if state.server.is_none() {
        if let Some((at, why)) = &state.failed {
            if at.elapsed() < RETRY_AFTER {
                return Err(Failure {
                    text: why.clone(),
                    connection_lost: true,
                });
            }
        }
        match Server::connect(&args.dsn, deadline) {
            Ok(s) => {
                state.server = Some(s);
                state.failed = None;
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.text.clone()));
                return Err(e);
            }
        }
    }
    let server = state.server.as_mut().expect("connected above");
    let answer = server.check(user, password, client, deadline);
    if answer.as_ref().is_err_and(|e| e.connection_lost) {
        state.server = None;
    }
    answer
}

/// # Safety
/// Called by libpam.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SUCCESS
}

/// Accounts: what authentication decided is all there is (PgBouncer calls pam_acct_mgmt).
///
/// # Safety
/// Called by libpam.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_SUCCESS
}
