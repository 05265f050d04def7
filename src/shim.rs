//! Declarations of the C shim (csrc/shim.c): what pgrx does not bind.

use pgrx::pg_sys;
use std::ffi::{c_char, c_int};

/// PostgreSQL's `Port`, opaque to Rust: only the shim reads its fields.
#[repr(C)]
pub struct Port {
    _opaque: [u8; 0],
}

pub type ClientAuthHook = unsafe extern "C-unwind" fn(port: *mut Port, status: c_int);

/// Protocol codes of `AuthenticationRequest` messages (src/include/libpq/protocol.h).
pub const AUTH_REQ_PASSWORD: c_int = 3;
pub const AUTH_REQ_MD5: c_int = 5;

unsafe extern "C-unwind" {
    pub fn pgaadauth_install_auth_hook(hook: ClientAuthHook);
    pub fn pgaadauth_call_prev_auth_hook(port: *mut Port, status: c_int);
    pub fn pgaadauth_port_is_trust(port: *mut Port) -> bool;
    pub fn pgaadauth_port_user(port: *mut Port) -> *const c_char;
    pub fn pgaadauth_port_remote_host(port: *mut Port) -> *const c_char;
    pub fn pgaadauth_port_hba_line(port: *mut Port) -> c_int;
    pub fn pgaadauth_send_auth_request(
        port: *mut Port,
        areq: c_int,
        extradata: *const c_char,
        extralen: c_int,
    );
    pub fn pgaadauth_pq_startmsgread();
    pub fn pgaadauth_pq_getbyte() -> c_int;
    pub fn pgaadauth_pq_getmessage(buf: *mut pg_sys::StringInfoData, maxlen: c_int) -> c_int;
    pub fn pgaadauth_check_scram(
        port: *mut Port,
        shadow_pass: *mut c_char,
        logdetail: *mut *const c_char,
    ) -> c_int;
    pub fn pgaadauth_auth_failed(port: *mut Port, logdetail: *const c_char) -> !;
}
