//! The framing of a client's first SASL message (pure, no pgrx): read by the PostgreSQL 14 path
//! of a password login, which runs the SCRAM exchange over PostgreSQL's exported steps
//! (PostgreSQL parses the SCRAM messages themselves). Protocol docs, "SASLInitialResponse".

use std::ffi::CStr;

/// The body of a client's first SASL message: the mechanism it chose and its initial response
/// (`None` when it sent none, length -1).
pub fn parse_initial_response(body: &[u8]) -> Result<(&[u8], Option<&[u8]>), &'static CStr> {
    let end = body
        .iter()
        .position(|b| *b == 0)
        .ok_or(c"The SASL mechanism name is not terminated.")?;
    let (mech, rest) = (&body[..end], &body[end + 1..]);
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(c"The SASL initial response has no length.")?;
    let data = &rest[4..];
    match i32::from_be_bytes(len_bytes) {
        -1 if data.is_empty() => Ok((mech, None)),
        n if n >= 0 && n as usize == data.len() => Ok((mech, Some(data))),
        _ => Err(c"The SASL initial response's length does not match its message."),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_initial_response;

    fn message(mech: &[u8], len: i32, data: &[u8]) -> Vec<u8> {
        let mut m = mech.to_vec();
        m.push(0);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(data);
        m
    }

    #[test]
    fn initial_response_is_parsed() {
        let m = message(b"SCRAM-SHA-256", 3, b"n,,");
        assert_eq!(
            parse_initial_response(&m),
            Ok((&b"SCRAM-SHA-256"[..], Some(&b"n,,"[..])))
        );
        let m = message(b"SCRAM-SHA-256", -1, b"");
        assert_eq!(
            parse_initial_response(&m),
            Ok((&b"SCRAM-SHA-256"[..], None))
        );
    }

    #[test]
    fn malformed_initial_responses_are_refused() {
        assert!(parse_initial_response(b"SCRAM-SHA-256").is_err());
        assert!(parse_initial_response(b"SCRAM\0\0\0").is_err());
        assert!(parse_initial_response(&message(b"M", 4, b"abc")).is_err());
        assert!(parse_initial_response(&message(b"M", 2, b"abc")).is_err());
        assert!(parse_initial_response(&message(b"M", -1, b"x")).is_err());
        assert!(parse_initial_response(&message(b"M", -2, b"")).is_err());
    }
}
