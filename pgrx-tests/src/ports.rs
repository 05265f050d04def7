//! Listening ports for test servers that no other test, in this process or another, can take.
//!
//! A port handed out here is outside the kernel's ephemeral range (so no outgoing connection
//! gets it as its local port) and is reserved for the life of this process by an advisory lock
//! on `<temp>/pgaadauth-e2e-ports/<port>.lock`. Every test server gets its port from here, so
//! a port is never released by one test and bound by another: the lock outlives every server
//! that uses the port, and the kernel drops it when the process exits, however it exits.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// Locks held for the life of the process: dropping one would release its port.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;

unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
fn ephemeral() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Candidate ports: 10000..=65000 outside the ephemeral range, starting at a place that
/// depends on the process id so that parallel test processes rarely even try the same ports.
fn candidates() -> impl Iterator<Item = u16> {
    let (lo, hi) = ephemeral();
    let pool: Vec<u16> = (10000..=65000u16).filter(|p| *p < lo || *p > hi).collect();
    let start = (std::process::id() as usize * 7919) % pool.len();
    (0..pool.len()).map(move |i| pool[(start + i) % pool.len()])
}

/// Reserve a port for this process: locked for us, and not in use by anything else now. For a
/// server that binds it itself (PostgreSQL).
pub fn reserve() -> u16 {
    let (port, probe) = reserve_bound();
    drop(probe);
    port
}

/// A listening socket on a reserved port, for a server of the test process itself (the test
/// identity provider): the socket that proved the port free is the one kept, so there is no
/// moment at which the port is unbound.
pub fn listener() -> TcpListener {
    reserve_bound().1
}

fn reserve_bound() -> (u16, TcpListener) {
    let dir = std::env::temp_dir().join("pgaadauth-e2e-ports");
    fs::create_dir_all(&dir).expect("create the port lock directory");
    let mut held = HELD.lock().unwrap();
    for port in candidates() {
        let Ok(file) = File::create(dir.join(format!("{port}.lock"))) else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } != 0 {
            continue; // another test (thread or process) holds it
        }
        // Nothing outside the tests may be listening on it either.
        let Ok(socket) = TcpListener::bind(("127.0.0.1", port)) else {
            continue; // keep no lock on a port we cannot use; the file closes here
        };
        held.push(file);
        return (port, socket);
    }
    panic!("no free port outside the ephemeral range");
}
