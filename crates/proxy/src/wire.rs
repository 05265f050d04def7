//! The parts of PostgreSQL's wire protocol the proxy reads or writes itself: a client's first
//! packet, the server's messages until the login is done, and the messages it makes (the
//! password message, an error, a notice). Everything after the login is relayed unread.

use tokio::io::{AsyncRead, AsyncReadExt};

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;
/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
const MAX_STARTUP: usize = 10_000;
/// The largest server message read during the login (an error, a parameter, an auth request).
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

/// A client's first packet.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    SslRequest,
    GssEncRequest,
    /// The whole packet, to be forwarded unchanged (its key is the server's).
    Cancel(Vec<u8>),
    Startup {
        version: u32,
        params: Vec<(String, String)>,
    },
}

/// Read a client's first packet (or the one after an SSLRequest it was told no to).
pub async fn read_first<R: AsyncRead + Unpin>(r: &mut R) -> Result<First, String> {
    let len = r
        .read_u32()
        .await
        .map_err(|e| format!("reading the startup packet: {e}"))? as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(format!("a startup packet of {len} bytes"));
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading the startup packet: {e}"))?;
    let code = u32::from_be_bytes(body[..4].try_into().unwrap());
    match code {
        SSL_REQUEST if len == 8 => Ok(First::SslRequest),
        GSSENC_REQUEST if len == 8 => Ok(First::GssEncRequest),
        CANCEL_REQUEST => {
            let mut packet = (len as u32).to_be_bytes().to_vec();
            packet.extend_from_slice(&body);
            Ok(First::Cancel(packet))
        }
        version if version >> 16 == 3 => Ok(First::Startup {
            version,
            params: parse_params(&body[4..])?,
        }),
        other => Err(format!("an unsupported protocol or request code {other}")),
    }
}

fn parse_params(mut b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let cstr = |b: &mut &[u8]| -> Result<String, String> {
        let end = b
            .iter()
            .position(|&c| c == 0)
            .ok_or("a startup parameter without its terminator")?;
        let s = String::from_utf8(b[..end].to_vec())
            .map_err(|_| "a startup parameter that is not UTF-8".to_string())?;
        *b = &b[end + 1..];
        Ok(s)
    };
    loop {
        let key = cstr(&mut b)?;
        if key.is_empty() {
            if !b.is_empty() {
                return Err("bytes after the startup parameters".into());
            }
            return Ok(out);
        }
        let value = cstr(&mut b)?;
        out.push((key, value));
    }
}

/// The SSLRequest packet.
pub fn ssl_request() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&8u32.to_be_bytes());
    p[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    p
}

/// A StartupMessage of protocol `version` with `params`.
pub fn startup_message(version: u32, params: &[(String, String)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A typed message: its type byte, then its length (itself included), then `body`.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The PasswordMessage carrying `secret` (a token or a password).
pub fn password_message(secret: &str) -> Vec<u8> {
    let mut body = secret.as_bytes().to_vec();
    body.push(0);
    message(b'p', &body)
}

fn fields(severity: &str, code: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(tag);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    body
}

/// An ErrorResponse (severity FATAL) the proxy itself sends a client.
pub fn error_response(code: &str, text: &str) -> Vec<u8> {
    message(b'E', &fields("FATAL", code, text))
}

/// A NoticeResponse (severity NOTICE).
pub fn notice_response(text: &str) -> Vec<u8> {
    message(b'N', &fields("NOTICE", "00000", text))
}

/// AuthenticationCleartextPassword: asks the client for its password.
pub fn auth_cleartext_request() -> Vec<u8> {
    message(b'R', &3u32.to_be_bytes())
}

/// The client's PasswordMessage, after [`auth_cleartext_request`]: the password.
pub async fn read_password<R: AsyncRead + Unpin>(r: &mut R) -> Result<String, String> {
    let m = read_message(r).await.map_err(|_| {
        "the client closed the connection instead of giving its password".to_string()
    })?;
    if m.kind != b'p' {
        return Err(format!(
            "the client sent message type {:?} instead of its password",
            m.kind as char
        ));
    }
    let end = m.body.iter().position(|&c| c == 0).unwrap_or(m.body.len());
    String::from_utf8(m.body[..end].to_vec()).map_err(|_| "a password that is not UTF-8".into())
}

/// The mechanisms of an AuthenticationSASL request (after its code).
pub fn sasl_mechanisms(body: &[u8]) -> Vec<String> {
    body.split(|&c| c == 0)
        .take_while(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

/// SASLInitialResponse: the mechanism and its first message.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(data.len() as u32).to_be_bytes());
    body.extend_from_slice(data);
    message(b'p', &body)
}

/// SASLResponse: the mechanism's next message.
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    message(b'p', data)
}

/// The name of an authentication request's method, for messages.
pub fn auth_method_name(code: u32) -> &'static str {
    match code {
        2 => "Kerberos",
        3 => "a password",
        5 => "an MD5 password",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        10..=12 => "SASL",
        _ => "an unknown authentication",
    }
}

/// A server message read during the login: its type, its body, and its bytes as sent.
pub struct Message {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Message {
    pub fn bytes(&self) -> Vec<u8> {
        message(self.kind, &self.body)
    }

    /// For an authentication request ('R'), its code (0 is AuthenticationOk, 3 cleartext).
    pub fn auth_code(&self) -> Option<u32> {
        (self.kind == b'R' && self.body.len() >= 4)
            .then(|| u32::from_be_bytes(self.body[..4].try_into().unwrap()))
    }
}

/// Read one server message during the login.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, String> {
    let kind = r
        .read_u8()
        .await
        .map_err(|e| format!("the server closed the connection: {e}"))?;
    let len = r
        .read_u32()
        .await
        .map_err(|e| format!("the server closed the connection: {e}"))? as usize;
    if !(4..=MAX_LOGIN_MESSAGE).contains(&len) {
        return Err(format!(
            "the server sent a message of {len} bytes during the login"
        ));
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body)
        .await
        .map_err(|e| format!("the server closed the connection: {e}"))?;
    Ok(Message { kind, body })
}

/// Field `wanted` of an ErrorResponse body ('M' the message, 'C' the SQLSTATE).
fn error_field(body: &[u8], wanted: u8) -> String {
    let mut rest = body;
    while let Some((&tag, tail)) = rest.split_first() {
        if tag == 0 {
            break;
        }
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        if tag == wanted {
            return String::from_utf8_lossy(&tail[..end]).into_owned();
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    String::new()
}

/// The message of an ErrorResponse body.
pub fn error_text(body: &[u8]) -> String {
    error_field(body, b'M')
}

/// The SQLSTATE of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> String {
    error_field(body, b'C')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_first_packets() {
        let startup = startup_message(
            196608,
            &[
                ("user".into(), "ann".into()),
                ("database".into(), "db".into()),
            ],
        );
        assert_eq!(
            read_first(&mut &startup[..]).await.unwrap(),
            First::Startup {
                version: 196608,
                params: vec![
                    ("user".into(), "ann".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
        assert_eq!(
            read_first(&mut &ssl_request()[..]).await.unwrap(),
            First::SslRequest
        );
        let mut cancel = 16u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        cancel.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            read_first(&mut &cancel[..]).await.unwrap(),
            First::Cancel(cancel.clone())
        );
        // Too long, truncated, an unknown code, a parameter without its end.
        let mut huge = 20_000u32.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert!(read_first(&mut &huge[..]).await.is_err());
        assert!(read_first(&mut &startup[..10]).await.is_err());
        let mut odd = 8u32.to_be_bytes().to_vec();
        odd.extend_from_slice(&1234u32.to_be_bytes());
        assert!(read_first(&mut &odd[..])
            .await
            .unwrap_err()
            .contains("1234"));
        let mut open = startup_message(196608, &[]);
        open.truncate(open.len() - 1);
        open.extend_from_slice(b"user");
        let len = open.len() as u32;
        open[..4].copy_from_slice(&len.to_be_bytes());
        assert!(read_first(&mut &open[..]).await.is_err());
    }

    #[tokio::test]
    async fn messages_round_trip() {
        let e = error_response("28000", "no token");
        let m = read_message(&mut &e[..]).await.unwrap();
        assert_eq!(m.kind, b'E');
        assert_eq!(error_text(&m.body), "no token");
        assert_eq!(error_code(&m.body), "28000");
        assert_eq!(m.bytes(), e);
        let p = password_message("eyJ.x.y");
        assert_eq!(&p[..5], &[b'p', 0, 0, 0, 12]);
        let ok = message(b'R', &0u32.to_be_bytes());
        assert_eq!(
            read_message(&mut &ok[..]).await.unwrap().auth_code(),
            Some(0)
        );
        assert_eq!(
            sasl_mechanisms(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        );
        let mut client = password_message("pw");
        assert_eq!(read_password(&mut &client[..]).await.unwrap(), "pw");
        client[0] = b'Q';
        assert!(read_password(&mut &client[..]).await.is_err());
        let first = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc");
        assert_eq!(&first[5..19], b"SCRAM-SHA-256\0");
        let mut big = vec![b'E'];
        big.extend_from_slice(&(1u32 << 20).to_be_bytes());
        assert!(read_message(&mut &big[..]).await.is_err());
    }
}
