//! pam_pgaadauth.so on its own (pamtester), against a server that is not PostgreSQL: whatever
//! it answers, the module refuses the login and never crashes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SERVICE: &str = "/etc/pam.d/pgaadauth-module-test";

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// A server that logs anyone in, answers the module's lookup of pgaadauth_pooler_login with an
/// integer function, then answers the call itself with `answer_len` bytes. Tells `called`
/// when the call arrived.
fn fake_server(listener: TcpListener, answer_len: usize, called: mpsc::Sender<()>) {
    let (mut s, _) = listener.accept().unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut startup).unwrap();
    let mut hello = message(b'R', &0u32.to_be_bytes());
    for (k, v) in [
        ("server_version", "16.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
    ] {
        hello.extend(message(b'S', format!("{k}\0{v}\0").as_bytes()));
    }
    hello.extend(message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
    hello.extend(message(b'Z', b"I"));
    s.write_all(&hello).unwrap();
    while let Some((kind, _)) = read_message(&mut s) {
        match kind {
            b'Q' => {
                let mut fields = 2u16.to_be_bytes().to_vec();
                for (name, typ) in [("f", 26u32), ("integer", 16u32)] {
                    fields.extend_from_slice(name.as_bytes());
                    fields.push(0);
                    fields.extend_from_slice(&0u32.to_be_bytes());
                    fields.extend_from_slice(&0u16.to_be_bytes());
                    fields.extend_from_slice(&typ.to_be_bytes());
                    fields.extend_from_slice(&4i16.to_be_bytes());
                    fields.extend_from_slice(&(-1i32).to_be_bytes());
                    fields.extend_from_slice(&0u16.to_be_bytes());
                }
                let mut row = 2u16.to_be_bytes().to_vec();
                for v in ["16999", "t"] {
                    row.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    row.extend_from_slice(v.as_bytes());
                }
                let mut out = message(b'T', &fields);
                out.extend(message(b'D', &row));
                out.extend(message(b'C', b"SELECT 1\0"));
                out.extend(message(b'Z', b"I"));
                s.write_all(&out).unwrap();
            }
            b'F' => {
                let _ = called.send(());
                let mut body = (answer_len as u32).to_be_bytes().to_vec();
                body.extend(std::iter::repeat_n(b'A', answer_len));
                let mut out = message(b'V', &body);
                out.extend(message(b'Z', b"I"));
                let _ = s.write_all(&out);
            }
            b'X' => break,
            _ => {}
        }
    }
}

#[test]
fn a_rogue_server_answering_the_call_with_a_mebibyte_gets_a_refusal_not_a_crash() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (called, call_arrived) = mpsc::channel();
    let server = std::thread::spawn(move || fake_server(listener, 1 << 20, called));
    std::fs::write(
        SERVICE,
        format!(
            "auth required pam_pgaadauth.so dsn=postgresql://pooler@127.0.0.1:{port}/postgres?sslmode=disable&gssencmode=disable timeout=1000\n\
             account required pam_pgaadauth.so\n"
        ),
    )
    .expect("write the PAM service (as root)");
    let mut pamtester = Command::new("pamtester")
        .args(["-v", "pgaadauth-module-test", "someone", "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pamtester (scripts/setup.sh installs it)");
    pamtester
        .stdin
        .take()
        .unwrap()
        .write_all(b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n")
        .unwrap();
    let out = pamtester.wait_with_output().unwrap();
    let _ = std::fs::remove_file(SERVICE);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        call_arrived.recv_timeout(Duration::from_secs(1)).is_ok(),
        "the module never made its call: {text}"
    );
    assert_eq!(out.status.signal(), None, "pamtester died: {text}");
    assert!(!out.status.success(), "the login must be refused: {text}");
    assert!(text.contains("Authentication"), "{text}");
    server.join().unwrap();
}
