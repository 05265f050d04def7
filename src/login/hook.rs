//! The ClientAuthentication hook: token or password login on every `trust` line of pg_hba.conf.
//!
//! Reads only shared memory and the catalogs; never touches the network.

use crate::catalog::labels::{label_of_role_name, RoleLabel};
use crate::login::identity;
use crate::login::outcome::{self, LoginAttempt};
use crate::login::scram;
use crate::settings;
use crate::shim::{self, ClientMessage, Port};
use crate::shmem::counters::{self, Counter};
use crate::shmem::keys::{self, Refresh, SharedKeys};
use crate::shmem::mailbox::{self, Question};
use pgaadauth_core::audit::Method;
use pgaadauth_core::label::{normalize_guid, Label};
use pgaadauth_core::token::{self, Authentic, Membership, NoDirectory, Policy, Reject, Verified};
use pgrx::pg_sys;
use std::ffi::{c_char, c_int, CStr, CString};

pub fn install() {
    unsafe { shim::pgaadauth_install_auth_hook(client_auth_hook) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn client_auth_hook(port: *mut Port, status: c_int) {
    unsafe {
        shim::pgaadauth_call_prev_auth_hook(port, status);
        #[cfg(feature = "pg18")]
        if shim::pgaadauth_port_is_oauth(port) {
            crate::login::oauth::finish(status == pg_sys::STATUS_OK as c_int);
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
            RoleLabel::Label(label) => login.with_token(&label),
            RoleLabel::Malformed(e) => {
                let raw = login.read_password();
                login.audit(&String::from_utf8_lossy(&raw), None, Err("label_malformed"));
                login.fail(&format!("The role's pgaadauth label is malformed: {e}."))
            }
            RoleLabel::None => login.with_password(),
        }
    }
}

/// Group membership beyond the token's `groups` claim: the shared cache, else a question to
/// the key worker, which asks the directory.
struct DirectoryMembership {
    now: i64,
}

impl Membership for DirectoryMembership {
    fn is_member(&self, member: &str, group: &str) -> Result<bool, String> {
        let member = normalize_guid(member).unwrap_or_else(|| member.to_string());
        if let Some(known) = mailbox::cached_membership(&member, group, self.now) {
            counters::bump(Counter::GroupCacheHits);
            return Ok(known);
        }
        if !settings::directory_configured() {
            return NoDirectory.is_member(&member, group);
        }
        let wait = settings::http_timeout() * 3;
        mailbox::ask(Question::Membership, &member, group, wait).map(|a| a == "true")
    }
}

/// What a login with `token` to a role labelled `label` decides, now: [`verify_token`] with
/// the settings' policy, then the label's rules. The error carries a note on a key refresh for
/// the log. Shared by logins and `pgaadauth_validate_token`.
pub fn decide_token(token: &str, label: &Label) -> Result<Verified, (Reject, String)> {
    let policy = settings::policy();
    let authentic = verify_token(token, &policy)?;
    authorize_token(&authentic, label, &policy).map_err(|r| (r, String::new()))
}

/// The label's rules for a verified token (group membership through the directory).
pub fn authorize_token(
    authentic: &Authentic,
    label: &Label,
    policy: &Policy,
) -> Result<Verified, Reject> {
    let now = pgaadauth_core::clock::unix_now();
    token::authorize(authentic, label, &DirectoryMembership { now }, policy)
}

/// Everything about `token` that does not depend on the role, against the shared keys; on an
/// unknown kid one coalesced, rate-limited refresh first. The error carries a note on that
/// refresh for the log.
pub fn verify_token(token: &str, policy: &Policy) -> Result<Authentic, (Reject, String)> {
    let timing = settings::timing();
    let check = || {
        let now = pgaadauth_core::clock::unix_now();
        token::verify(token, &SharedKeys { now, timing }, policy, now)
    };
    let result = check().and_then(not_revoked);
    // An unknown kid, or a kid that only another issuer's key set holds: perhaps this
    // issuer's new key (issuers may name keys alike).
    let key_miss = |r: &Result<Authentic, Reject>| {
        matches!(
            r,
            Err(Reject::UnknownKid(_)) | Err(Reject::IssuerNotServedByKey { .. })
        )
    };
    if !key_miss(&result) {
        return result.map_err(|r| (r, String::new()));
    }
    // Perhaps a new signing key: have the worker refresh (once for every login waiting now,
    // at most once per min_refresh_interval), then decide.
    counters::bump(Counter::KidMisses);
    let now = pgaadauth_core::clock::unix_now();
    let refresh = keys::refresh_and_wait(now, &timing, settings::kid_miss_wait(), true);
    if !matches!(refresh, Refresh::RateLimited | Refresh::NoWorker) {
        counters::bump(Counter::KidMissRefreshes);
    }
    let (result, note) = match refresh {
        Refresh::Changed => (
            check().and_then(not_revoked),
            " The key set was refreshed and still lacks it.",
        ),
        Refresh::Unchanged => (result, " A refresh of the key set did not bring it."),
        Refresh::RateLimited => (
            result,
            " The key set was refreshed less than pgaadauth.min_refresh_interval ago.",
        ),
        Refresh::TimedOut => (
            result,
            " A refresh of the key set did not finish within pgaadauth.kid_miss_wait.",
        ),
        Refresh::NoWorker => (result, " The pgaadauth key worker is not running."),
    };
    result.map_err(|r| {
        let mut note = note.to_string();
        if !matches!(r, Reject::UnknownKid(_) | Reject::IssuerNotServedByKey { .. }) {
            note.clear();
        } else if keys::key_count() == 0 {
            note.push_str(" No signing keys are cached yet; see the pgaadauth key worker's messages in this log.");
        }
        (r, note)
    })
}

/// A verified token whose principal's tokens were revoked since it was issued is refused.
fn not_revoked(authentic: Authentic) -> Result<Authentic, Reject> {
    crate::shmem::revocations::check(&authentic.principal, authentic.iat)?;
    Ok(authentic)
}

/// auth_delay's pause before a failed login: `auth_delay.milliseconds`, when auth_delay is
/// loaded (the setting is its own, not a placeholder). Neither order in
/// shared_preload_libraries lets auth_delay see a login pgaadauth refuses: its hook runs
/// either before pgaadauth's decision or never returns from it.
fn pause_as_auth_delay() {
    let name = c"auth_delay.milliseconds";
    let flags = unsafe { pg_sys::GetConfigOptionFlags(name.as_ptr(), true) };
    if flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as c_int != 0 {
        return;
    }
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        return;
    }
    let millis: i64 = unsafe { CStr::from_ptr(value) }
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if millis > 0 {
        unsafe { pg_sys::pg_usleep((millis * 1000) as _) };
    }
}

struct Login {
    port: *mut Port,
    user: CString,
}

impl Login {
    fn user(&self) -> std::borrow::Cow<'_, str> {
        self.user.to_string_lossy()
    }

    /// Refuse the connection: 28P01 to the client, `detail` to the server log only; after
    /// auth_delay's pause when it is loaded (pgaadauth's refusal never returns to its hook).
    fn fail(&self, detail: &str) -> ! {
        pause_as_auth_delay();
        let line = unsafe { shim::pgaadauth_port_hba_line(self.port) };
        let detail = format!("{detail}\nConnection matched pg_hba.conf line {line}.");
        let detail = CString::new(detail.replace('\0', "")).unwrap_or_default();
        unsafe { shim::pgaadauth_auth_failed(self.port, detail.as_ptr()) }
    }

    /// Record the authenticated identity (`SYSTEM_USER` on 16+, `log_connections`).
    fn set_authn_id(&self, id: &str) {
        let id = CString::new(id.replace('\0', "")).unwrap_or_default();
        unsafe { shim::pgaadauth_set_authn_id(self.port, id.as_ptr()) }
    }

    /// End quietly, as PostgreSQL does when a client hangs up at the password request
    /// (psql does so before prompting for a password).
    /// (pgrx binds proc_exit as returning on some majors.)
    #[allow(unreachable_code)]
    fn hung_up(&self) -> ! {
        unsafe { pg_sys::proc_exit(0) };
        unreachable!("proc_exit returned")
    }

    /// Read one password message; `None` when the client hung up.
    fn read_password_message(&self) -> Option<Vec<u8>> {
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
    fn read_password(&self) -> Vec<u8> {
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

    fn with_token(&self, label: &Label) {
        let raw = self.read_password();
        let token = String::from_utf8_lossy(&raw);
        let decision = if raw.is_empty() {
            Err((
                Reject::NotCompactJws,
                " The client sent an empty password.".into(),
            ))
        } else {
            decide_token(&token, label)
        };
        self.audit(
            &token,
            Some(label),
            decision.as_ref().map_err(|(r, _)| r.code()),
        );
        match decision {
            Ok(verified) => {
                // The principal who logged in (for a group login, the member): SYSTEM_USER
                // and log_connections show it.
                self.set_authn_id(&verified.principal);
                counters::bump(Counter::LoginsAccepted);
                identity::record_token(Method::Token, &verified);
            }
            Err((reject, note)) => {
                counters::bump_rejected(reject.code());
                self.fail(&format!(
                    "Token login to role \"{}\" refused: {reject}{note}",
                    pgaadauth_core::log_text::log_safe(&self.user())
                ))
            }
        }
    }

    /// The audit line of a token login, as `pgaadauth.log_logins` says.
    fn audit(&self, token: &str, label: Option<&Label>, outcome: Result<&Verified, &str>) {
        let client = unsafe { shim::pgaadauth_port_remote_host(self.port) };
        let client =
            (!client.is_null()).then(|| unsafe { CStr::from_ptr(client) }.to_string_lossy());
        outcome::write(LoginAttempt {
            role: &self.user(),
            client: client.as_deref(),
            token,
            label,
            outcome,
            method: Method::Token,
        });
    }

    fn with_password(&self) {
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
