//! A password as a token: the compact JWS, its header and claims, and the whole `verify` and
//! `authorize` against a fixed key set and policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgaadauth_core::label::Label;
use pgaadauth_core::token::{validate, NoDirectory};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<Vec<pgaadauth_core::jwks::PublicKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(pgaadauth_fuzz::keys);
    let token = String::from_utf8_lossy(data);
    let label = Label::parse(&format!("aadauth,oid={},type=user", pgaadauth_fuzz::OID)).unwrap();
    let policy = pgaadauth_fuzz::policy();
    if let Err(reject) = validate(
        &token,
        keys.as_slice(),
        &NoDirectory,
        &policy,
        &label,
        pgaadauth_fuzz::NOW,
    ) {
        // Every refusal has a code and a sentence, and the sentence never spans lines.
        assert!(!reject.code().is_empty());
        assert!(!reject.to_string().contains('\n'));
    }
});
