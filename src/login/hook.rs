//! The ClientAuthentication hook: token or password login on every `trust` line of pg_hba.conf.
//!
//! Reads only shared memory and the catalogs; never touches the network.

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::login::decision::{self, Attempt, Door, Mapping};
use crate::login::identity;
use crate::login::outcome;
use crate::shim::{self, ClientMessage, Port};
use pgaadauth_core::token;
use pgrx::pg_sys;
use std::ffi::{c_int, CStr, CString};

pub fn install() {
    unsafe { shim::pgaadauth_install_auth_hook(client_auth_hook) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn client_auth_hook(port: *mut Port, status: c_int) {
    unsafe {
        shim::pgaadauth_call_prev_auth_hook(port, status);
        #[cfg(feature = "pg18")]
        if shim::pgaadauth_port_is_oauth(port) {
            super::oauth::finish(status == pg_sys::STATUS_OK as c_int);
            return;
        }
        if status != pg_sys::STATUS_OK as c_int {
            return;
        }
        if !shim::pgaadauth_port_is_trust(port) {
            // Another method logged the session in: pgaadauth_session() names it.
            let method = CStr::from_ptr(shim::pgaadauth_port_hba_method(port)).to_string_lossy();
            identity::record_other(&method);
            return;
        }
        let user = CStr::from_ptr(shim::pgaadauth_port_user(port)).to_owned();
        let login = Login { port, user };
        match label_of_role_name(&login.user) {
            RoleLabel::None => login.with_password(),
            label => login.with_token(label),
        }
    }
}

/// One login on this connection, and what the door can do with its port.
pub struct Login {
    pub(super) port: *mut Port,
    pub(super) user: CString,
}

impl Login {
    pub(super) fn user(&self) -> std::borrow::Cow<'_, str> {
        self.user.to_string_lossy()
    }

    /// Refuse the connection: 28P01 to the client, `detail` to the server log only; after
    /// auth_delay's pause when it is loaded (pgaadauth's refusal never returns to its hook).
    pub(super) fn fail(&self, detail: &str) -> ! {
        outcome::pause_as_auth_delay();
        let line = unsafe { shim::pgaadauth_port_hba_line(self.port) };
        let detail = format!("{detail}\nConnection matched pg_hba.conf line {line}.");
        let detail = CString::new(detail.replace('\0', "")).unwrap_or_default();
        unsafe { shim::pgaadauth_auth_failed(self.port, detail.as_ptr()) }
    }

    /// Record the authenticated identity (`SYSTEM_USER` on 16+, `log_connections`).
    pub(super) fn set_authn_id(&self, id: &str) {
        let id = CString::new(id.replace('\0', "")).unwrap_or_default();
        unsafe { shim::pgaadauth_set_authn_id(self.port, id.as_ptr()) }
    }

    /// End quietly, as PostgreSQL does when a client hangs up at the password request
    /// (psql does so before prompting for a password).
    /// (pgrx binds proc_exit as returning on some majors.)
    #[allow(unreachable_code)]
    pub(super) fn hung_up(&self) -> ! {
        unsafe { pg_sys::proc_exit(0) };
        unreachable!("proc_exit returned")
    }

    /// Read one password message; `None` when the client hung up.
    pub(super) fn read_password_message(&self) -> Option<Vec<u8>> {
        let bytes = match shim::read_client_message(token::MAX_TOKEN_LEN) {
            ClientMessage::Password(bytes) => bytes,
            ClientMessage::HungUp => return None,
            ClientMessage::Other(mtype) => self.fail(&format!(
                "Expected a password response, got message type {mtype}."
            )),
        };
        // The message is the password and its terminating NUL.
        match bytes.iter().position(|b| *b == 0) {
            Some(end) if end + 1 == bytes.len() => Some(bytes[..end].to_vec()),
            _ => self.fail("The password message is malformed."),
        }
    }

    /// Ask for a cleartext password (a token) and read it; exits quietly on hang-up.
    pub(super) fn read_password(&self) -> Vec<u8> {
        unsafe {
            shim::pgaadauth_send_auth_request(
                self.port,
                shim::AUTH_REQ_PASSWORD,
                std::ptr::null(),
                0,
            )
        };
        match self.read_password_message() {
            Some(p) => p,
            None => self.hung_up(),
        }
    }

    /// Whether the client's address is one of `pgaadauth.pooler_addresses`.
    fn comes_from_pooler(&self) -> bool {
        let sources = crate::settings::pooler_addresses();
        if sources.is_empty() {
            return false;
        }
        let mut buf = [0 as std::ffi::c_char; 64];
        match unsafe { shim::pgaadauth_port_remote_ip(self.port, buf.as_mut_ptr(), 64) } {
            0 => pgaadauth_core::pooler::from_pooler(&sources, None),
            1 => unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_str()
                .ok()
                .and_then(|ip| ip.split('%').next()?.parse().ok())
                .is_some_and(|ip| pgaadauth_core::pooler::from_pooler(&sources, Some(ip))),
            _ => false,
        }
    }

    /// A labelled (or malformed-labelled) role: the token decides.
    fn with_token(&self, label: RoleLabel) {
        let raw = self.read_password();
        let token = String::from_utf8_lossy(&raw);
        let client = unsafe { shim::pgaadauth_port_remote_host(self.port) };
        let client =
            (!client.is_null()).then(|| unsafe { CStr::from_ptr(client) }.to_string_lossy());
        let user = self.user();
        let attempt = Attempt {
            door: Door::Password,
            role: &user,
            token: &token,
            client: client.as_deref(),
            mapping: Mapping::Label(label),
            line_issuer: None,
        };
        match decision::decide(&attempt) {
            Ok(verified) => {
                // The principal who logged in (for a group login, the member): SYSTEM_USER
                // and log_connections show it; a pooler's session has none.
                if !outcome::accepted(&attempt, &verified, self.comes_from_pooler()) {
                    self.set_authn_id(&verified.principal);
                }
            }
            Err(refusal) => self.fail(&outcome::refused(&attempt, &refusal)),
        }
    }
}
