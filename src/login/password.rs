//! A role without a label on a pgaadauth line: its PostgreSQL password, as PostgreSQL's own
//! methods check it (SCRAM, or the MD5 challenge for an MD5 secret); or, with
//! `pgaadauth.password_auth` off, the same request a labelled role gets and a refusal.

use crate::login::hook::Login;
use crate::login::identity;
use crate::login::scram;
use crate::settings;
use crate::shim;
use crate::shmem::counters::{self, Counter};
use pgrx::pg_sys;
use std::ffi::{c_char, c_int, CStr, CString};

impl Login {
    pub(super) fn with_password(&self) {
        if !settings::PASSWORD_AUTH.get() {
            // The same request as a labelled role's (a cleartext password, for a token), so
            // that a client cannot tell Entra roles from others before logging in. What comes
            // back is never checked, logged or kept.
            let mut answer = self.read_password();
            for b in answer.iter_mut() {
                // SAFETY: a byte of our own buffer; volatile, so the wipe is never elided.
                unsafe { std::ptr::write_volatile(b, 0) };
            }
            counters::bump(Counter::PasswordLoginsRejected);
            let in_clear = if unsafe { shim::pgaadauth_port_uses_ssl(self.port) } {
                ""
            } else {
                " The connection does not use SSL: what the client sent as a password crossed the network in the clear. Use hostssl lines."
            };
            self.fail(&format!(
                "Role \"{}\" has no pgaadauth label and pgaadauth.password_auth is off.{in_clear}",
                pgaadauth_core::log_text::log_safe(&self.user())
            ));
        }
        unsafe {
            let mut logdetail: *const c_char = std::ptr::null();
            let shadow = pg_sys::get_role_password(self.user.as_ptr(), (&raw mut logdetail).cast());
            let is_md5 = !shadow.is_null()
                && pg_sys::get_password_type(shadow) == pg_sys::PasswordType::PASSWORD_TYPE_MD5;
            let status = if is_md5 {
                self.md5_exchange(shadow, &mut logdetail)
            } else {
                // SCRAM, or PostgreSQL's mock SCRAM exchange when the role has no usable secret.
                scram::check_scram(self.port, shadow, &mut logdetail)
            };
            if status == pg_sys::STATUS_OK as c_int {
                // As PostgreSQL's password methods do: the identity is the role.
                self.set_authn_id(&self.user());
                counters::bump(Counter::PasswordLoginsAccepted);
                crate::shmem::password_logins::record(
                    &self.user(),
                    crate::shmem::password_logins::now_micros(),
                );
                identity::record_other("password");
                return;
            }
            if status == pg_sys::STATUS_EOF {
                self.hung_up();
            }
            counters::bump(Counter::PasswordLoginsRejected);
            let detail = if logdetail.is_null() {
                format!(
                    "Password authentication of role \"{}\" failed.",
                    pgaadauth_core::log_text::log_safe(&self.user())
                )
            } else {
                CStr::from_ptr(logdetail).to_string_lossy().into_owned()
            };
            self.fail(&detail)
        }
    }

    /// The MD5 challenge PostgreSQL uses for roles whose secret is MD5.
    unsafe fn md5_exchange(&self, shadow: *mut c_char, logdetail: *mut *const c_char) -> c_int {
        unsafe {
            let mut salt = [0u8; 4];
            if !pg_sys::pg_strong_random(salt.as_mut_ptr().cast(), salt.len()) {
                self.fail("Could not generate a random MD5 salt.");
            }
            shim::pgaadauth_send_auth_request(
                self.port,
                shim::AUTH_REQ_MD5,
                salt.as_ptr().cast(),
                salt.len() as c_int,
            );
            let Some(password) = self.read_password_message() else {
                return pg_sys::STATUS_EOF;
            };
            let password = CString::new(password).unwrap_or_default();
            pg_sys::md5_crypt_verify(
                self.user.as_ptr(),
                shadow,
                password.as_ptr(),
                salt.as_ptr().cast(),
                salt.len() as c_int,
                logdetail.cast(),
            )
        }
    }
}
