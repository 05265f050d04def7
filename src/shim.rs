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
#[cfg(feature = "pg14")]
pub const AUTH_REQ_SASL: c_int = 10;
#[cfg(feature = "pg14")]
pub const AUTH_REQ_SASL_CONT: c_int = 11;
#[cfg(feature = "pg14")]
pub const AUTH_REQ_SASL_FIN: c_int = 12;

const EOF: c_int = -1;

/// One message of the client during authentication.
pub enum ClientMessage {
    /// A password message ('p'): its body.
    Password(Vec<u8>),
    /// The client hung up.
    HungUp,
    /// A message of another type.
    Other(c_int),
}

/// Read the client's next message, of at most `maxlen` bytes.
pub fn read_client_message(maxlen: usize) -> ClientMessage {
    unsafe {
        pgaadauth_pq_startmsgread();
        let mtype = pgaadauth_pq_getbyte();
        if mtype == EOF {
            return ClientMessage::HungUp;
        }
        if mtype != b'p' as c_int {
            return ClientMessage::Other(mtype);
        }
        let mut buf: pg_sys::StringInfoData = std::mem::zeroed();
        pg_sys::initStringInfo(&mut buf);
        if pgaadauth_pq_getmessage(&mut buf, maxlen as c_int) == EOF {
            return ClientMessage::HungUp;
        }
        let body = std::slice::from_raw_parts(buf.data as *const u8, buf.len as usize).to_vec();
        pg_sys::pfree(buf.data.cast());
        ClientMessage::Password(body)
    }
}

unsafe extern "C-unwind" {
    pub fn pgaadauth_install_auth_hook(hook: ClientAuthHook);
    pub fn pgaadauth_call_prev_auth_hook(port: *mut Port, status: c_int);
    pub fn pgaadauth_port_is_trust(port: *mut Port) -> bool;
    pub fn pgaadauth_port_uses_ssl(port: *mut Port) -> bool;
    pub fn pgaadauth_port_user(port: *mut Port) -> *const c_char;
    pub fn pgaadauth_port_remote_host(port: *mut Port) -> *const c_char;
    /// The client's address as numbers into `buf`: 1 written, 0 a Unix-domain socket, -1
    /// unknown.
    pub fn pgaadauth_port_remote_ip(port: *mut Port, buf: *mut c_char, len: c_int) -> c_int;
    pub fn pgaadauth_port_hba_line(port: *mut Port) -> c_int;
    /// The pg_hba.conf method name of the port's line (`scram-sha-256`, `peer`, ...).
    pub fn pgaadauth_port_hba_method(port: *mut Port) -> *const c_char;
    pub fn pgaadauth_send_auth_request(
        port: *mut Port,
        areq: c_int,
        extradata: *const c_char,
        extralen: c_int,
    );
    pub fn pgaadauth_pq_startmsgread();
    pub fn pgaadauth_pq_getbyte() -> c_int;
    pub fn pgaadauth_pq_getmessage(buf: *mut pg_sys::StringInfoData, maxlen: c_int) -> c_int;
    #[cfg(not(feature = "pg14"))]
    pub fn pgaadauth_check_scram(
        port: *mut Port,
        shadow_pass: *mut c_char,
        logdetail: *mut *const c_char,
    ) -> c_int;
    #[cfg(feature = "pg14")]
    pub fn pgaadauth_scram_mechanisms(port: *mut Port, buf: *mut pg_sys::StringInfoData);
    #[cfg(feature = "pg14")]
    pub fn pgaadauth_scram_init(
        port: *mut Port,
        mech: *const c_char,
        shadow_pass: *const c_char,
    ) -> *mut std::ffi::c_void;
    #[cfg(feature = "pg14")]
    pub fn pgaadauth_scram_exchange(
        state: *mut std::ffi::c_void,
        input: *const c_char,
        inputlen: c_int,
        output: *mut *mut c_char,
        outputlen: *mut c_int,
        logdetail: *mut *const c_char,
    ) -> c_int;
    pub fn pgaadauth_set_authn_id(port: *mut Port, id: *const c_char);
    pub fn pgaadauth_auth_failed(port: *mut Port, logdetail: *const c_char) -> !;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_oauth_callbacks(validate: OAuthValidate) -> *const std::ffi::c_void;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_my_port() -> *mut Port;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_port_is_oauth(port: *mut Port) -> bool;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_port_oauth_issuer(port: *mut Port) -> *const c_char;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_port_oauth_delegates_mapping(port: *mut Port) -> bool;
    #[cfg(feature = "pg18")]
    pub fn pgaadauth_oauth_set_result(
        result: *mut OAuthResult,
        authorized: bool,
        authn_id: *const c_char,
    );
}

/// PostgreSQL 18's `ValidatorModuleResult`, opaque: only the shim fills it.
#[cfg(feature = "pg18")]
#[repr(C)]
pub struct OAuthResult {
    _opaque: [u8; 0],
}

/// PostgreSQL 18's `ValidatorValidateCB` (the module state is not used).
#[cfg(feature = "pg18")]
pub type OAuthValidate = unsafe extern "C-unwind" fn(
    state: *const std::ffi::c_void,
    token: *const c_char,
    role: *const c_char,
    result: *mut OAuthResult,
) -> bool;
