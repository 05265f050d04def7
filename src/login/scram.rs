//! The SCRAM-SHA-256 exchange of a password login. From PostgreSQL 15 it is PostgreSQL's own
//! (`CheckSASLAuth`); PostgreSQL 14 keeps that loop static, so there it runs here, over
//! PostgreSQL's exported SCRAM steps (SASL messages: protocol docs, "SASL Authentication").

use crate::shim::Port;
use std::ffi::{c_char, c_int};

/// STATUS_OK, STATUS_ERROR or STATUS_EOF; a NULL `shadow` runs PostgreSQL's mock exchange,
/// which always fails and learns nothing.
pub unsafe fn check_scram(
    port: *mut Port,
    shadow: *mut c_char,
    logdetail: &mut *const c_char,
) -> c_int {
    #[cfg(not(feature = "pg14"))]
    unsafe {
        crate::shim::pgaadauth_check_scram(port, shadow, logdetail)
    }
    #[cfg(feature = "pg14")]
    unsafe {
        pg14::exchange(port, shadow, logdetail)
    }
}

#[cfg(feature = "pg14")]
mod pg14 {
    use crate::shim::{self, ClientMessage, Port};
    use pgaadauth_core::sasl::parse_initial_response;
    use pgrx::pg_sys;
    use std::ffi::{c_char, c_int, CString};

    /// PostgreSQL's limit on one SASL message (PG_MAX_AUTH_TOKEN_LENGTH).
    const MAX_SASL_MESSAGE: usize = 65535;
    const EXCHANGE_CONTINUE: c_int = 0;
    const EXCHANGE_SUCCESS: c_int = 1;

    pub unsafe fn exchange(
        port: *mut Port,
        shadow: *mut c_char,
        logdetail: &mut *const c_char,
    ) -> c_int {
        unsafe {
            // AuthenticationSASL: the mechanisms offered, each NUL-terminated, then a NUL.
            let mut mechs: pg_sys::StringInfoData = std::mem::zeroed();
            pg_sys::initStringInfo(&mut mechs);
            shim::pgaadauth_scram_mechanisms(port, &mut mechs);
            pg_sys::appendStringInfoChar(&mut mechs, 0);
            shim::pgaadauth_send_auth_request(port, shim::AUTH_REQ_SASL, mechs.data, mechs.len);

            let mut state: *mut std::ffi::c_void = std::ptr::null_mut();
            loop {
                let body = match shim::read_client_message(MAX_SASL_MESSAGE) {
                    ClientMessage::Password(body) => body,
                    ClientMessage::HungUp => return pg_sys::STATUS_EOF,
                    ClientMessage::Other(_) => {
                        *logdetail = c"Expected a SASL response.".as_ptr();
                        return pg_sys::STATUS_ERROR;
                    }
                };
                // PostgreSQL 14's SCRAM step expects its input NUL-terminated, as PostgreSQL's
                // own message buffers are (the NUL is not counted in its length).
                let input = if state.is_null() {
                    let (mech, input) = match parse_initial_response(&body) {
                        Ok(parsed) => parsed,
                        Err(why) => {
                            *logdetail = why.as_ptr();
                            return pg_sys::STATUS_ERROR;
                        }
                    };
                    let mech = CString::new(mech).unwrap_or_default();
                    state = shim::pgaadauth_scram_init(port, mech.as_ptr(), shadow);
                    input.map(<[u8]>::to_vec)
                } else {
                    Some(body)
                };
                let input = input.map(|mut i| {
                    let len = i.len() as c_int;
                    i.push(0);
                    (i, len)
                });
                let (ptr, len) = match &input {
                    Some((i, len)) => (i.as_ptr().cast(), *len),
                    None => (std::ptr::null(), 0),
                };
                let mut output: *mut c_char = std::ptr::null_mut();
                let mut outlen: c_int = 0;
                let result = shim::pgaadauth_scram_exchange(
                    state,
                    ptr,
                    len,
                    &mut output,
                    &mut outlen,
                    logdetail,
                );
                if !output.is_null() {
                    let areq = if result == EXCHANGE_SUCCESS {
                        shim::AUTH_REQ_SASL_FIN
                    } else {
                        shim::AUTH_REQ_SASL_CONT
                    };
                    shim::pgaadauth_send_auth_request(port, areq, output, outlen);
                    pg_sys::pfree(output.cast());
                }
                if result != EXCHANGE_CONTINUE {
                    return if result == EXCHANGE_SUCCESS {
                        pg_sys::STATUS_OK as c_int
                    } else {
                        pg_sys::STATUS_ERROR
                    };
                }
            }
        }
    }
}
