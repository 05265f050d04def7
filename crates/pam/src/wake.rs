//! Waking PgBouncer's event loop as soon as a login is decided.
//!
//! PgBouncer runs PAM in a thread of its own and collects the results in its main thread after
//! each pass of its event loop. The waiting client's socket is paused meanwhile, so with nothing
//! else happening the loop sleeps until its maintenance timer, a third of a second later: one
//! login per client every 0.3 s. The module ends that wait itself: `pam_end`, which PgBouncer
//! calls right before it stores the result, runs a cleanup the module registered
//! ([`after_this_login`]). The cleanup knocks on a listening socket of this very process: it
//! connects, so the loop wakes to accept the connection and then collects the results stored by
//! then; and one thread of the module closes that connection a moment later ([`LATE_KNOCK`]),
//! so the loop wakes once more, in case the PAM thread had not stored the result yet when it
//! first woke. PgBouncer 1.18 logs nothing for a connection that never sends a startup packet.
//!
//! Which socket ([`Wake`]): by default one this process listens on, found among its own file
//! descriptors — a Unix socket, else a TCP one without `SO_REUSEPORT` (with it, the kernel may
//! hand the connection to another PgBouncer process). Found once, looked up again when a knock
//! fails (at most once a second). Never another process's: only this process's descriptors
//! are read, and only ever queried.

use pgaadauth_core::pooler::Wake;
use std::ffi::c_int;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where to knock.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Door {
    /// A Unix socket: its address bytes (sun_path; a leading NUL for the abstract namespace).
    Unix(Vec<u8>),
    Tcp(SocketAddr),
}

/// How long after a knock its connection is closed (the loop's second wake-up, for when the
/// PAM thread was held up between `pam_end` and storing the result).
const LATE_KNOCK: Duration = Duration::from_micros(600);
/// Knocks held open at most; beyond, a knock's connection is closed at once.
const MAX_OPEN_KNOCKS: usize = 64;
/// How soon a failed lookup or knock is retried.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(1);

struct State {
    /// The knocks' connections, for the thread to close.
    open: Vec<c_int>,
    /// A login found no door: the thread looks for one.
    look: bool,
    /// The thread waits to be signalled (else it will see new work by itself).
    idle: bool,
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

static WAKER: crate::Resident<Waker> = crate::Resident::new();

/// The waker, or None when its thread could not be started (then nothing is knocked: a knock's
/// connection would stay open until PgBouncer's `client_login_timeout`).
fn waker() -> Option<&'static Waker> {
    WAKER.start(
        || Waker {
            state: Mutex::new(State {
                open: Vec::new(),
                look: false,
                idle: false,
                wanted: Wake::Auto,
                door: None,
                looked_at: None,
                news: None,
                told: false,
            }),
            signal: Condvar::new(),
        },
        "pam_pgaadauth",
        knocker,
    )
}

/// The PAM line's `wake=`, given at each login (a reload may change it).
pub fn want(wake: &Wake) {
    if *wake == Wake::Off && WAKER.running().is_none() {
        return;
    }
    let Some(waker) = waker() else { return };
    let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
    if state.wanted != *wake {
        state.wanted = wake.clone();
        state.door = None;
        state.looked_at = None;
        state.told = false;
    }
}

/// Why PgBouncer cannot be woken, once (for its log).
pub fn news() -> Option<String> {
    let mut state = WAKER
        .running()?
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    state.news.take()
}

/// A login was decided and PgBouncer is about to store the result: knock now, and have the
/// thread close the knock's connection a moment later.
pub fn decided() {
    let Some(waker) = WAKER.running() else { return };
    let door = waker
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .door
        .clone();
    let knocked = door.as_ref().map(knock);
    let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
    match knocked {
        Some(Ok(fd)) if state.open.len() < MAX_OPEN_KNOCKS => state.open.push(fd),
        Some(Ok(fd)) => unsafe {
            libc::close(fd);
        },
        // Out of descriptors, say: not the door's fault.
        Some(Err(Knock::Failed)) => {}
        Some(Err(Knock::NobodyThere)) | None => {
            // Gone (PgBouncer restarted its listeners?), or never found: look again.
            if state.door == door {
                state.door = None;
            }
            state.look = true;
        }
    }
    if state.idle {
        waker.signal.notify_one();
    }
}

fn knocker(waker: &Waker) {
    loop {
        let door = {
            let mut state = waker.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.open.is_empty() && !state.look {
                state.idle = true;
                state = waker.signal.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            let look = std::mem::take(&mut state.look);
            if look {
                door_of(&mut state)
            } else {
                None
            }
        };
        // A door just found: knock for the login that looked for it.
        let fresh = door.and_then(|d| knock(&d).ok());
        std::thread::sleep(LATE_KNOCK);
        let open = std::mem::take(&mut waker.state.lock().unwrap_or_else(|e| e.into_inner()).open);
        for fd in open.into_iter().chain(fresh) {
            unsafe { libc::close(fd) };
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

/// Why a knock failed.
#[derive(Debug, PartialEq, Eq)]
enum Knock {
    /// Nobody listens there (any more).
    NobodyThere,
    /// No socket for it (out of descriptors).
    Failed,
}

/// Connect to `door` without waiting (a TCP handshake on loopback is done within the call):
/// the connection, for the caller to close.
fn knock(door: &Door) -> Result<c_int, Knock> {
    let (family, storage, len) = match door {
        Door::Unix(path) => unix_socket_address(path).ok_or(Knock::NobodyThere)?,
        Door::Tcp(addr) => socket_address(*addr),
    };
    unsafe {
        let fd = libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return Err(Knock::Failed);
        }
        if libc::connect(fd, (&raw const storage).cast(), len) == 0 {
            return Ok(fd);
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        // EINPROGRESS: a TCP handshake under way; EAGAIN: a Unix backlog full, so the loop is
        // awake anyway.
        if matches!(err, Some(libc::EINPROGRESS | libc::EAGAIN)) {
            return Ok(fd);
        }
        libc::close(fd);
        Err(Knock::NobodyThere)
    }
}

fn unix_socket_address(path: &[u8]) -> Option<(c_int, libc::sockaddr_storage, libc::socklen_t)> {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let addr: &mut libc::sockaddr_un = unsafe { &mut *(&raw mut storage).cast() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.is_empty() || path.len() >= addr.sun_path.len() {
        return None;
    }
    for (slot, &b) in addr.sun_path.iter_mut().zip(path) {
        *slot = b as libc::c_char;
    }
    // A path ends with its NUL; an abstract name's length is exact.
    let nul = usize::from(path[0] != 0);
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len() + nul;
    Some((libc::AF_UNIX, storage, len as libc::socklen_t))
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
/// pam_end in a child process that forked after pam_start: not PgBouncer's loop to wake.
const PAM_DATA_SILENT: c_int = 0x4000_0000;

unsafe extern "C" fn at_pam_end(
    _pamh: *mut crate::PamHandle,
    _data: *mut std::ffi::c_void,
    error_status: c_int,
) {
    if error_status & (PAM_DATA_REPLACE | PAM_DATA_SILENT) == 0 {
        let _ = std::panic::catch_unwind(decided);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn knocked(door: &Door) -> bool {
        knock(door).map(|fd| unsafe { libc::close(fd) }).is_ok()
    }

    /// One test: the lookup must see only its own listeners.
    #[test]
    fn finds_its_own_listener_and_knocks_on_unix_tcp_and_abstract_doors() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(own_listener(), Ok(Door::Tcp(tcp.local_addr().unwrap())));
        assert!(knocked(&Door::Tcp(tcp.local_addr().unwrap())));
        tcp.set_nonblocking(true).unwrap();
        let accepted = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            tcp.accept().is_ok()
        });
        assert!(accepted, "the knock reached the TCP listener");

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
        assert!(knocked(&door));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok(), "the knock reached the listener");
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            knock(&door),
            Err(Knock::NobodyThere),
            "nobody listens any more"
        );

        let name = format!("pam-wake-{}", std::process::id());
        let door = Door::Unix(unix_address(&format!("@{name}")));
        assert_eq!(knock(&door), Err(Knock::NobodyThere), "no listener yet");
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(own_listener(), Ok(door.clone()));
        assert!(knocked(&door));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok());
    }
}
