//! The servers a test starts (PostgreSQL, PgBouncer) end when its test binary ends, however it
//! ends: a passed run, a failed assertion, a panic in a `static` world whose `Drop` never runs,
//! a kill. Each is started by one thread that lives as long as the process, with Linux's
//! parent-death signal: when the process ends, so does that thread, and the kernel signals
//! every server it started (PostgreSQL `SIGQUIT`, an immediate shutdown that takes its
//! backends along; PgBouncer `SIGKILL`).

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, i32, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (ask, requests) = channel::<Request>();
        std::thread::Builder::new()
            .name("test-servers".into())
            .spawn(move || {
                // Never returns while the process runs: the Sender lives in a static.
                for (mut command, signal, answer) in requests {
                    unsafe {
                        use std::os::unix::process::CommandExt;
                        // After any change of user (which would clear it), before exec.
                        let parent = std::process::id();
                        command.pre_exec(move || {
                            if prctl(PR_SET_PDEATHSIG, signal as u64) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            // The test process ended before the signal was set: end too
                            // (ESRCH; nothing allocated between fork and exec).
                            if getppid() != parent {
                                return Err(io::Error::from_raw_os_error(3));
                            }
                            Ok(())
                        });
                    }
                    let _ = answer.send(command.spawn());
                }
            })
            .expect("start the thread that starts test servers");
        Mutex::new(ask)
    })
}

const PR_SET_PDEATHSIG: i32 = 1;
pub const SIGKILL: i32 = 9;
pub const SIGQUIT: i32 = 3;

unsafe extern "C" {
    /// Linux's prctl(2).
    pub(crate) fn prctl(option: i32, ...) -> i32;
    fn getppid() -> u32;
}

/// Start `command` so that it gets `signal` when this test process ends. Any `pre_exec` of
/// `command` (e.g. a change of user) runs first.
pub fn spawn(command: Command, signal: i32) -> io::Result<Child> {
    let (answer, reply) = channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, signal, answer))
        .expect("the thread that starts test servers runs");
    reply
        .recv()
        .expect("the thread that starts test servers answers")
}

/// Switch to the `postgres` OS user in a child about to exec (when we are root): call from a
/// `pre_exec` closure, after whatever needs root (a mount namespace).
pub fn become_postgres(uid: u32, gid: u32) -> io::Result<()> {
    unsafe extern "C" {
        fn setgroups(size: usize, list: *const u32) -> i32;
        fn setgid(gid: u32) -> i32;
        fn setuid(uid: u32) -> i32;
    }
    unsafe {
        if setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The uid and gid of the `postgres` OS user.
pub fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the postgres OS user")
    };
    (id("-u"), id("-g"))
}
