//! The bytes both ways after the login, unchanged: each connection on two threads of its own,
//! one per direction, in blocking reads and writes (TLS through rustls on either side).
//!
//! Why not the runtime's tasks: a statement on a kept connection crosses the proxy twice, and
//! a task woken through the runtime's event loop runs wherever a worker is free. A thread
//! blocked in `read` is woken by the kernel as its peer writes and runs where that peer ran,
//! as a client and its backend do. Measured with pgbench on 2 CPUs shared with the server
//! (docs/proxy.md): `SELECT 1` on kept connections at 0.35 of direct on tasks, 0.67–0.71 here.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes read from a socket at once.
const READ_SIZE: usize = 32 * 1024;
/// A relay thread's stack: the buffers are on the heap.
const STACK_SIZE: usize = 256 * 1024;
/// TCP keepalive on both sockets: a peer gone without a word (a machine off, a NAT's state
/// dropped) ends its connection and threads after about 2 minutes, as PostgreSQL's own
/// tcp_keepalives_* would.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_PROBES: u32 = 4;
/// How long the last words to a client may take once its server failed.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// A connected socket, out of the runtime, in blocking mode.
pub enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Unix(s) => (&*s).read(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => (&*s).write_all(buf),
            Socket::Unix(s) => (&*s).write_all(buf),
        }
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        };
    }

    fn set_write_timeout(&self, timeout: Duration) {
        let _ = match self {
            Socket::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Socket::Unix(s) => s.set_write_timeout(Some(timeout)),
        };
    }
}

/// A runtime's socket, as a [`Socket`].
pub trait IntoSocket {
    fn into_socket(self) -> io::Result<Socket>;
}

impl IntoSocket for tokio::net::TcpStream {
    fn into_socket(self) -> io::Result<Socket> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES);
        socket2::SockRef::from(&s).set_tcp_keepalive(&keepalive)?;
        Ok(Socket::Tcp(s))
    }
}

impl IntoSocket for tokio::net::UnixStream {
    fn into_socket(self) -> io::Result<Socket> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        Ok(Socket::Unix(s))
    }
}

/// One end of the relay: its socket, and its TLS session when it has one (with whatever the
/// login left in it: plaintext received and not yet read, records not yet sent).
pub struct Side {
    socket: Socket,
    tls: Option<Tls>,
}

struct Tls {
    session: Mutex<rustls::Connection>,
    /// Held while records are taken from the session and written, so that they leave in the
    /// order they were sealed. Taken before `session`, never while holding it.
    send: Mutex<()>,
}

/// A runtime's connection, as a [`Side`].
pub trait IntoSide {
    fn into_side(self) -> io::Result<Side>;
}

impl<S: IntoSocket> IntoSide for S {
    fn into_side(self) -> io::Result<Side> {
        Ok(Side {
            socket: self.into_socket()?,
            tls: None,
        })
    }
}

impl<S: IntoSocket> IntoSide for tokio_rustls::server::TlsStream<S> {
    fn into_side(self) -> io::Result<Side> {
        let (socket, session) = self.into_inner();
        Side::with_tls(socket.into_socket()?, session.into())
    }
}

impl<S: IntoSocket> IntoSide for tokio_rustls::client::TlsStream<S> {
    fn into_side(self) -> io::Result<Side> {
        let (socket, session) = self.into_inner();
        Side::with_tls(socket.into_socket()?, session.into())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Side {
    fn with_tls(socket: Socket, mut session: rustls::Connection) -> io::Result<Side> {
        // Sealed records are taken out after every write: no limit needed on what waits.
        session.set_buffer_limit(None);
        Ok(Side {
            socket,
            tls: Some(Tls {
                session: Mutex::new(session),
                send: Mutex::new(()),
            }),
        })
    }

    /// The plaintext this side sent next, into `out` (emptied first), reading its socket into
    /// `raw` as needed: at least one byte, or none when it has closed. At most what one read
    /// of the socket decrypts to.
    fn read(&self, raw: &mut [u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let Some(tls) = &self.tls else {
            let n = self.socket.read(raw)?;
            out.extend_from_slice(&raw[..n]);
            return Ok(());
        };
        loop {
            if take_plaintext(&mut lock(&tls.session), out)? || !out.is_empty() {
                return Ok(());
            }
            let n = self.socket.read(raw)?;
            let mut session = lock(&tls.session);
            let mut rest = &raw[..n];
            let result = loop {
                // Ok(0) at the socket's end: the reader then says whether it was clean.
                if let Err(e) = session.read_tls(&mut rest) {
                    break Err(e);
                }
                if let Err(e) = session.process_new_packets() {
                    break Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                if rest.is_empty() {
                    break Ok(false);
                }
                // The session takes a few KiB at a time: its plaintext out, then the rest.
                match take_plaintext(&mut session, out) {
                    Ok(false) => {}
                    other => break other,
                }
            };
            let answer = session.wants_write();
            drop(session);
            if answer {
                // An alert, or the refusal of a renegotiation: sent now unless the other
                // thread is writing to this side (then with its next write), so that this one
                // never waits on a peer that may be waiting on it.
                if let Ok(_sending) = tls.send.try_lock() {
                    self.send_sealed(tls, &[], &mut Vec::new())?;
                }
            }
            if result? {
                return Ok(());
            }
        }
    }

    /// Send `data` (and any records waiting), sealing into `sealed` first with TLS.
    fn write(&self, data: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        match &self.tls {
            None => self.socket.write_all(data),
            Some(tls) => {
                let _sending = lock(&tls.send);
                self.send_sealed(tls, data, sealed)
            }
        }
    }

    /// [`Side::write`] with TLS, `tls.send` held.
    fn send_sealed(&self, tls: &Tls, data: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        sealed.clear();
        {
            let mut session = lock(&tls.session);
            session.writer().write_all(data)?;
            while session.wants_write() {
                session.write_tls(sealed)?;
            }
        }
        self.socket.write_all(sealed)
    }

    /// No more data this way: close_notify with TLS, then the socket's writing half.
    fn finish(&self) {
        if let Some(tls) = &self.tls {
            lock(&tls.session).send_close_notify();
            let _ = self.write(&[], &mut Vec::new());
        }
        self.socket.shutdown(Shutdown::Write);
    }
}

/// The session's plaintext appended to `out`; whether the peer closed it (close_notify).
fn take_plaintext(session: &mut rustls::Connection, out: &mut Vec<u8>) -> io::Result<bool> {
    // Appends what there is, then WouldBlock; Ok once the peer has closed.
    match session.reader().read_to_end(out) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// One direction until `from` closes (then `to` is told) or fails.
fn pump(from: &Side, to: &Side) -> io::Result<()> {
    let mut raw = vec![0; READ_SIZE];
    let mut plain = Vec::with_capacity(READ_SIZE);
    let mut sealed = Vec::new();
    loop {
        from.read(&mut raw, &mut plain)?;
        if plain.is_empty() {
            to.finish();
            return Ok(());
        }
        to.write(&plain, &mut sealed)?;
    }
}

/// The two sides, and the first failure of either direction: the cause (what follows it,
/// such as the other thread's read ending when the sockets are shut, is not).
struct Pair {
    client: Side,
    server: Side,
    failure: Mutex<Option<io::Error>>,
}

impl Pair {
    /// Both directions end: `e` is kept if it is the first failure, the client is told with
    /// close_notify when its server failed, and both sockets are shut so that a thread
    /// blocked on either returns.
    fn fail(&self, e: io::Error, server_failed: bool) {
        let first = {
            let mut failure = lock(&self.failure);
            let first = failure.is_none();
            if first {
                *failure = Some(e);
            }
            first
        };
        if first && server_failed {
            self.client.socket.set_write_timeout(LAST_WORDS);
            self.client.finish();
        }
        self.client.socket.shutdown(Shutdown::Both);
        self.server.socket.shutdown(Shutdown::Both);
    }

    /// One direction on this thread, and the connection failed if it fails or panics.
    fn pump(&self, upward: bool) {
        struct OnUnwind<'a>(&'a Pair, bool);
        impl Drop for OnUnwind<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0
                        .fail(io::Error::other("a relay thread panicked"), !self.1);
                }
            }
        }
        let _guard = OnUnwind(self, upward);
        let result = if upward {
            pump(&self.client, &self.server)
        } else {
            pump(&self.server, &self.client)
        };
        match result {
            Err(e) => self.fail(e, !upward),
            // The server has closed: nothing more from the client can reach it, so the
            // upward thread need not wait for the client's next word.
            Ok(()) if !upward => self.client.socket.shutdown(Shutdown::Read),
            Ok(()) => {}
        }
    }
}

/// Relay between `client` and `server` until both directions have ended; a failure of either
/// ends both. When a thread cannot start, the client gets `refusal(the error)` (a protocol
/// message) and the error its context.
pub async fn relay(
    client: Side,
    server: Side,
    refusal: impl FnOnce(&io::Error) -> Vec<u8>,
) -> io::Result<()> {
    let connection = Arc::new(Pair {
        client,
        server,
        failure: Mutex::new(None),
    });
    // Records the login left sealed and unsent.
    for side in [&connection.client, &connection.server] {
        side.write(&[], &mut Vec::new())?;
    }
    // Each thread holds the sender: the receiver wakes once both have ended (even by a panic).
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(done);
    let spawn = |upward: bool| {
        let (connection, done) = (connection.clone(), done.clone());
        std::thread::Builder::new()
            .name("relay".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                connection.pump(upward);
                drop(done);
            })
    };
    // Upward first: until the downward thread runs, nothing but this writes to the client.
    if let Err(e) = spawn(true).and_then(|_| spawn(false)) {
        let _ = connection.client.write(&refusal(&e), &mut Vec::new());
        connection.fail(io::Error::other("no relay thread"), false);
        return Err(io::Error::new(
            e.kind(),
            format!("could not start a relay thread: {e}"),
        ));
    }
    drop(done);
    let _ = ended.await;
    let failure = lock(&connection.failure).take();
    failure.map_or(Ok(()), Err)
}
