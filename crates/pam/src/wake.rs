//! Waking PgBouncer's event loop as soon as a login is decided.
//!
//! PgBouncer runs PAM in a thread of its own and collects the results in its main thread after
//! each pass of its event loop. The waiting client's socket is paused meanwhile, so with nothing
//! else happening the loop sleeps until its maintenance timer, a third of a second later: one
//! login per client every 0.3 s. The module ends that wait itself: `pam_end`, which PgBouncer
//! calls right before it stores the result, runs a cleanup the module registered
//! ([`after_this_login`]); the cleanup hands over to one thread of the module, which a moment
//! later knocks on a listening socket of this very process (connects and closes at once; the
//! loop wakes to accept it, then collects the result) and once more a little later, in case
//! PgBouncer had not stored the result yet. PgBouncer 1.18 logs nothing for such a connection.
//!
//! Which socket ([`Wake`]): by default one this process listens on, found among its own file
//! descriptors — a Unix socket, else a TCP one without `SO_REUSEPORT` (with it, the kernel may
//! hand the connection to another PgBouncer process). Found once, looked up again when a knock
//! fails (at most once a second). Never another process's: only this process's descriptors
//! are read, and only ever queried.

use pgaadauth_core::pooler::Wake;
use std::ffi::c_int;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where to knock.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Door {
    /// A Unix socket: its address bytes (sun_path; a leading NUL for the abstract namespace).
    Unix(Vec<u8>),
    Tcp(SocketAddr),
}

/// The late knock, for when the PAM thread was held up between `pam_end` and storing the
/// result: this long after the first.
const LATE_KNOCK: Duration = Duration::from_micros(800);
/// How long the late knock may wait for a TCP handshake (loopback: microseconds).
const KNOCK_TIMEOUT_MS: c_int = 20;
/// How soon a failed lookup or knock is retried.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(1);

struct State {
    /// Logins decided (cleanups run) so far, and how many the thread has knocked for.
    decided: u64,
    knocked: u64,
    /// The PAM line's choice, and the door it led to (None: none found).
    wanted: Wake,
    door: Option<Door>,
    looked_at: Option<Instant>,
    /// Why no door was found, for PgBouncer's log once (taken by [`news`]).
    news: Option<String>,
    told: bool,
}

struct Waker {
    state: Mutex<State>,
    signal: Condvar,
}

static WAKER: OnceLock<Waker> = OnceLock::new();

fn waker() -> &'static Waker {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let waker = WAKER.get_or_init(|| Waker {
        state: Mutex::new(State {
            decided: 0,
            knocked: 0,
            wanted: Wake::Auto,
            door: None,
            looked_at: None,
            news: None,
            told: false,
        }),
        signal: Condvar::new(),
    });
    // One thread for the life of the process (the module is never unloaded).
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("pam_pgaadauth".into())
            .spawn(move || knocker(waker));
    });
    waker
}

/// The PAM line's `wake=`, given at each login (a reload may change it).
pub fn want(wake: &Wake) {
    if *wake == Wake::Off && WAKER.get().is_none() {
        return;
    }
    let mut state = waker().state.lock().unwrap_or_else(|e| e.into_inner());
    if state.wanted != *wake {
        state.wanted = wake.clone();
        state.door = None;
        state.looked_at = None;
        state.told = false;
    }
}

/// Why PgBouncer cannot be woken, once (for its log).
pub fn news() -> Option<String> {
    let mut state = WAKER.get()?.state.lock().unwrap_or_else(|e| e.into_inner());
    state.news.take()
}

/// A login was decided and PgBouncer is about to store the result: knock now (its event loop
/// takes longer to wake than the PAM thread takes to store it), and have the thread knock
/// again a little later in case it did not.
pub fn decided() {
    let Some(waker) = WAKER.get() else { return };
    let door = {
        let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
        state.decided += 1;
        waker.signal.notify_one();
        state.door.clone()
    };
    if let Some(door) = door {
        knock(&door, 0);
    }
}

fn knocker(waker: &Waker) {
    loop {
        let door = {
            let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.decided == state.knocked {
                state = waker.signal.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.knocked = state.decided;
            door_of(&mut state)
        };
        let Some(door) = door else { continue };
        // The late knock, once for every login decided meanwhile.
        std::thread::sleep(LATE_KNOCK);
        if !knock(&door, KNOCK_TIMEOUT_MS) {
            // Gone (PgBouncer restarted its listeners?): look again, at most once a second.
            let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.door.as_ref() == Some(&door) {
                state.door = None;
            }
        }
    }
}

/// The door to knock on, looked up when there is none (at most once a second).
fn door_of(state: &mut State) -> Option<Door> {
    if state.door.is_some() {
        return state.door.clone();
    }
    if state
        .looked_at
        .is_some_and(|at| at.elapsed() < LOOK_AGAIN_AFTER)
    {
        return None;
    }
    state.looked_at = Some(Instant::now());
    let found = match &state.wanted {
        Wake::Off => return None,
        Wake::Auto => own_listener(),
        Wake::Unix(path) => Ok(Door::Unix(unix_address(path))),
        Wake::Tcp(addr) => Ok(Door::Tcp(*addr)),
    };
    match found {
        Ok(door) => state.door = Some(door),
        Err(why) if !state.told => {
            state.told = true;
            state.news = Some(why);
        }
        Err(_) => {}
    }
    state.door.clone()
}

fn unix_address(path: &str) -> Vec<u8> {
    match path.strip_prefix('@') {
        Some(name) => [&[0u8][..], name.as_bytes()].concat(),
        None => path.as_bytes().to_vec(),
    }
}

/// A listening socket of this process: a Unix one first, else TCP without `SO_REUSEPORT`.
fn own_listener() -> Result<Door, String> {
    let mut tcp = None;
    let mut shared_port = false;
    for fd in own_descriptors() {
        if option(fd, libc::SO_ACCEPTCONN) != Some(1) {
            continue;
        }
        match local_address(fd) {
            Some(Door::Unix(path)) if !path.is_empty() => return Ok(Door::Unix(path)),
            Some(Door::Tcp(addr)) if option(fd, libc::SO_REUSEPORT) == Some(0) => {
                tcp.get_or_insert(addr);
            }
            Some(Door::Tcp(_)) => shared_port = true,
            _ => {}
        }
    }
    tcp.map(Door::Tcp).ok_or_else(|| {
        let why = if shared_port {
            "PgBouncer listens only on TCP with so_reuseport (a knock could reach another process)"
        } else {
            "no listening socket of PgBouncer was found"
        };
        format!(
            "cannot wake PgBouncer after a login: {why}; each login then waits for PgBouncer's \
             timer (up to a third of a second). Give each PgBouncer process a unix_socket_dir, \
             or name its socket with wake= on the PAM line"
        )
    })
}

/// This process's open descriptors (from /proc; without it, the first 4096 numbers).
fn own_descriptors() -> Vec<c_int> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (0..4096).collect(),
    }
}

fn option(fd: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// The address `fd` is bound to, as a door (a wildcard TCP address: the loopback one).
fn local_address(fd: c_int) -> Option<Door> {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &mut len) } != 0 {
        return None;
    }
    match c_int::from(storage.ss_family) {
        libc::AF_UNIX => {
            let un: &libc::sockaddr_un = unsafe { &*(&raw const storage).cast() };
            let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            let n = (len as usize).saturating_sub(offset).min(un.sun_path.len());
            let bytes: Vec<u8> = un.sun_path[..n].iter().map(|&c| c as u8).collect();
            // A path ends at its NUL; an abstract name starts with one and is all of `len`.
            let path = if bytes.first() == Some(&0) {
                bytes
            } else {
                bytes.into_iter().take_while(|&b| b != 0).collect()
            };
            Some(Door::Unix(path))
        }
        libc::AF_INET => {
            let v4: &libc::sockaddr_in = unsafe { &*(&raw const storage).cast() };
            let mut ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            if ip.is_unspecified() {
                ip = std::net::Ipv4Addr::LOCALHOST;
            }
            Some(Door::Tcp(SocketAddr::from((ip, u16::from_be(v4.sin_port)))))
        }
        libc::AF_INET6 => {
            let v6: &libc::sockaddr_in6 = unsafe { &*(&raw const storage).cast() };
            let mut ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            if ip.is_unspecified() {
                ip = std::net::Ipv6Addr::LOCALHOST;
            }
            Some(Door::Tcp(SocketAddr::from((
                ip,
                u16::from_be(v6.sin6_port),
            ))))
        }
        _ => None,
    }
}

/// Connect to `door` and close at once (a TCP handshake waited for up to `wait_ms`). False
/// when nobody listens there.
fn knock(door: &Door, wait_ms: c_int) -> bool {
    match door {
        Door::Unix(path) => knock_unix(path),
        Door::Tcp(addr) => knock_tcp(*addr, wait_ms),
    }
}

fn knock_unix(path: &[u8]) -> bool {
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= addr.sun_path.len() {
        return false;
    }
    for (slot, &b) in addr.sun_path.iter_mut().zip(path) {
        *slot = b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len() + 1;
    // An abstract name's length is exact (no terminating NUL).
    let len = if path.first() == Some(&0) {
        len - 1
    } else {
        len
    };
    unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return true; // out of descriptors: not the door's fault
        }
        let rc = libc::connect(fd, (&raw const addr).cast(), len as libc::socklen_t);
        let err = std::io::Error::last_os_error().raw_os_error();
        libc::close(fd);
        // EAGAIN: its backlog is full, so it is awake anyway.
        rc == 0 || err == Some(libc::EAGAIN)
    }
}

fn knock_tcp(addr: SocketAddr, wait_ms: c_int) -> bool {
    let (family, storage, len) = socket_address(addr);
    unsafe {
        let fd = libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return true;
        }
        let mut ok = libc::connect(fd, (&raw const storage).cast(), len) == 0;
        if !ok && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // Not waited for: on loopback the handshake is usually done by now.
            ok = wait_ms == 0
                || (libc::poll(&mut pfd, 1, wait_ms) == 1 && option(fd, libc::SO_ERROR) == Some(0));
        }
        libc::close(fd);
        ok
    }
}

fn socket_address(addr: SocketAddr) -> (c_int, libc::sockaddr_storage, libc::socklen_t) {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let v4: &mut libc::sockaddr_in = unsafe { &mut *(&raw mut storage).cast() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>();
            (libc::AF_INET, storage, len as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let v6: &mut libc::sockaddr_in6 = unsafe { &mut *(&raw mut storage).cast() };
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            let len = std::mem::size_of::<libc::sockaddr_in6>();
            (libc::AF_INET6, storage, len as libc::socklen_t)
        }
    }
}

/// Register the knock for when PgBouncer ends this login's PAM transaction (`pam_end` runs
/// the cleanup of the module's data; replacing the data does not knock).
pub fn after_this_login(pamh: *mut crate::PamHandle) {
    unsafe {
        crate::pam_set_data(
            pamh,
            c"pam_pgaadauth_wake".as_ptr(),
            (&raw const WAKER).cast_mut().cast(),
            Some(at_pam_end),
        );
    }
}

const PAM_DATA_REPLACE: c_int = 0x2000_0000;

unsafe extern "C" fn at_pam_end(
    _pamh: *mut crate::PamHandle,
    _data: *mut std::ffi::c_void,
    error_status: c_int,
) {
    if error_status & PAM_DATA_REPLACE == 0 {
        let _ = std::panic::catch_unwind(decided);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// One test: the lookup must see only its own listeners.
    #[test]
    fn finds_its_own_listener_and_knocks_on_unix_tcp_and_abstract_doors() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(own_listener(), Ok(Door::Tcp(tcp.local_addr().unwrap())));
        assert!(knock(
            &Door::Tcp(tcp.local_addr().unwrap()),
            KNOCK_TIMEOUT_MS
        ));
        tcp.set_nonblocking(true).unwrap();
        assert!(tcp.accept().is_ok());

        let dir = std::env::temp_dir().join(format!("pam-wake-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join(".s.PGSQL.6432");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let door = own_listener().unwrap();
        assert_eq!(
            door,
            Door::Unix(path.as_os_str().as_encoded_bytes().to_vec())
        );
        assert!(knock(&door, 0));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok(), "the knock reached the listener");
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        assert!(!knock(&door, 0), "nobody listens any more");

        let name = format!("pam-wake-{}", std::process::id());
        let door = Door::Unix(unix_address(&format!("@{name}")));
        assert!(!knock(&door, 0), "no listener yet");
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(own_listener(), Ok(door.clone()));
        assert!(knock(&door, 0));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok());
    }
}
