//! A provider's answers: the JWKS document and the discovery document.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = pgaadauth_core::jwks::parse_jwks(data) {
        for key in &set.keys {
            let _ = key.material.kty();
        }
    }
    let _ = pgaadauth_core::jwks::parse_discovery(data, pgaadauth_fuzz::ISS);
});
