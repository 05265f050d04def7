//! The bytes both ways after the login, unchanged: each connection on two threads of its own,
//! one per direction, in blocking reads and writes (TLS through rustls on either side).
//!
//! Why not the runtime's tasks: a statement on a kept connection crosses the proxy twice, and
//! a task woken through the runtime's event loop runs wherever a worker is free. A thread
//! blocked in `read` is woken by the kernel as its peer writes and runs where that peer ran,
//! as a client and its backend do. Measured with pgbench on 2 CPUs shared with the server
//! (docs/proxy.md): `SELECT 1` on kept connections at 0.35 of direct on tasks, 0.71 here.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};

/// Bytes read from a socket at once.
const READ_SIZE: usize = 32 * 1024;
/// A relay thread's stack: the buffers are on the heap.
const STACK_SIZE: usize = 256 * 1024;

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
}

/// A runtime's socket, as a [`Socket`].
pub trait IntoSocket {
    fn into_socket(self) -> io::Result<Socket>;
}

impl IntoSocket for tokio::net::TcpStream {
    fn into_socket(self) -> io::Result<Socket> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
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
    /// order they were sealed (both threads may send: data, or an answer to the peer's
    /// key update). Taken before `session`.
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    /// `raw` as needed: at least one byte, or none when it has closed.
    fn read(&self, raw: &mut [u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let Some(tls) = &self.tls else {
            let n = self.socket.read(raw)?;
            out.extend_from_slice(&raw[..n]);
            return Ok(());
        };
        loop {
            let mut session = lock(&tls.session);
            // Appends what there is; WouldBlock once nothing is left, Ok at close_notify.
            match session.reader().read_to_end(out) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !out.is_empty() {
                return Ok(());
            }
            drop(session);
            let n = self.socket.read(raw)?;
            let mut session = lock(&tls.session);
            let mut rest = &raw[..n];
            loop {
                // Ok(0) at the socket's end: the reader then says whether it was clean.
                session.read_tls(&mut rest)?;
                session
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if rest.is_empty() {
                    break;
                }
                // The session's buffer was full: take its plaintext out, then feed the rest.
                match session.reader().read_to_end(out) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let answer = session.wants_write();
            drop(session);
            if answer {
                self.write(&[], &mut Vec::new())?;
            }
        }
    }

    /// Send `data` (and any records waiting), sealing into `sealed` first with TLS.
    fn write(&self, data: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return self.socket.write_all(data);
        };
        let _send = lock(&tls.send);
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

/// Relay between `client` and `server` until both directions have ended; a failure of either
/// ends both (its sockets shut, so the other thread's read returns).
pub async fn relay(client: Side, server: Side) -> io::Result<()> {
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("relay".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _ = done.send(both_ways(client, server));
        })?;
    ended.await.unwrap_or(Ok(()))
}

fn both_ways(client: Side, server: Side) -> io::Result<()> {
    let (client, server) = (Arc::new(client), Arc::new(server));
    let fail = |client: &Side, server: &Side| {
        client.socket.shutdown(Shutdown::Both);
        server.socket.shutdown(Shutdown::Both);
    };
    // Records the login left sealed and unsent.
    for side in [&client, &server] {
        if let Err(e) = side.write(&[], &mut Vec::new()) {
            fail(&client, &server);
            return Err(e);
        }
    }
    let (c, s) = (client.clone(), server.clone());
    let upward = std::thread::Builder::new()
        .name("relay".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let result = pump(&c, &s);
            if result.is_err() {
                fail(&c, &s);
            }
            result
        });
    let upward = match upward {
        Ok(thread) => thread,
        Err(e) => {
            fail(&client, &server);
            return Err(e);
        }
    };
    let downward = pump(&server, &client);
    if downward.is_err() {
        fail(&client, &server);
    }
    let upward = upward
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a relay thread panicked")));
    downward.and(upward)
}
