//! A client's first SASL message on the PostgreSQL 14 path of a password login (the mechanism
//! and the initial response; PostgreSQL's own SCRAM code reads what follows).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((mech, response)) = pgaadauth_core::sasl::parse_initial_response(data) {
        assert!(!mech.contains(&0));
        assert!(mech.len() + 5 + response.map_or(0, <[u8]>::len) == data.len());
    }
});
