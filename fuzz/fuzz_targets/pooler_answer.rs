//! What the PAM module reads of the server's answer: the call's integer result and the last
//! message (the first four bytes are the result, the rest the message).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgaadauth_core::pooler::{Answer, MAX_ANSWER};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let result = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let message = String::from_utf8_lossy(&data[4..]);
    match Answer::from_call(result, Some(&message)) {
        Some(Answer::Rejected(why)) => assert!(why.len() <= MAX_ANSWER),
        Some(Answer::Accepted) | None => {}
    }
});
