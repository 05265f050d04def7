//! The strict JSON reader of token headers and claims: no panic, and what it accepts is an
//! object serde_json reads alike.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = pgaadauth_core::strict_json::parse_object(data) {
        let again: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(data).expect("serde_json reads what the strict reader accepts");
        assert_eq!(object, again);
    }
});
