//! The directory's answers (Microsoft Graph and the token endpoint): a page of group members,
//! a lookup by name, a membership check, a token response. The first two bytes are the HTTP
//! status, the third says whether a Retry-After came; the rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgaadauth_core::{directory, group_sync};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 600;
    let retry_after = (data[2] & 1 == 1).then_some("7");
    let body = &data[3..];
    if let Ok(page) = group_sync::parse_members_page(status, retry_after, body) {
        for member in &page.members {
            let _ = group_sync::name_refused(member);
        }
    }
    let _ = directory::parse_lookup(status, body);
    let _ = directory::parse_membership(status, body, "0a7a0000-1111-4222-8333-000000000001");
    let _ = directory::parse_token_response(body);
});
