//! Debian's PgBouncer (1.18) in front of a test cluster, started as docs/pgbouncer.md says:
//! `auth_type = pam` with pam_pgaadauth.so (installed by scripts/install.sh), as the `postgres`
//! OS user, with its own PAM view (what examples/pgbouncer/pam-view.conf asks of systemd): a
//! mount namespace where /etc/pam.d is an empty read-only tmpfs holding only its service file
//! (`pgbouncer`) and `other` (deny). Every PgBouncer of a test has its own service file (no
//! lock, nothing of the machine's changed). It ends when the test process ends
//! (crate::children).

use crate::children;
use crate::cluster::{new_dir, Cluster};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// How PgBouncer authenticates its clients.
pub enum Auth {
    /// `auth_type = pam`, with this text as its PAM service file.
    Pam(String),
    /// `auth_type = trust` (a benchmark's ceiling): this user's password for the server, from
    /// `auth_file`.
    Trust { user: String, password: String },
}

/// The PAM service file that points PgBouncer at pam_pgaadauth.so with `module_args`.
pub fn pam_service(module_args: &str) -> String {
    format!(
        "# Written by pgaadauth's end-to-end tests (pgrx-tests/src/pgbouncer.rs).\n\
         auth    required pam_pgaadauth.so {module_args}\n\
         account required pam_pgaadauth.so\n"
    )
}

/// What docs/pgbouncer.md ships as PgBouncer's `other` service: nothing else is allowed.
pub const PAM_OTHER: &str = include_str!("../../examples/pgbouncer/pam.d/other");

pub struct Setup<'a> {
    pub pool_mode: &'a str,
    pub dbs: &'a [&'a str],
    pub auth: Auth,
    /// Clients must use TLS, with this certificate and key (paths readable by `postgres`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// TLS to the server (`verify-full`), with this CA file (readable by `postgres`).
    pub server_ca: Option<PathBuf>,
    /// `so_reuseport = 1` on this port (several processes on one port) instead of a new one.
    pub reuse_port: Option<u16>,
    /// The machine's whole /etc/pam.d (a copy, with the service file added) instead of the
    /// view docs/pgbouncer.md sets up: what a login costs without it.
    pub machine_pam: bool,
    /// `default_pool_size`: server connections per database and user.
    pub pool_size: u32,
}

impl<'a> Setup<'a> {
    pub fn pam(pool_mode: &'a str, dbs: &'a [&'a str], module_args: &str) -> Setup<'a> {
        Setup {
            pool_mode,
            dbs,
            auth: Auth::Pam(pam_service(module_args)),
            tls: None,
            server_ca: None,
            reuse_port: None,
            machine_pam: false,
            pool_size: 4,
        }
    }
}

pub struct PgBouncer {
    pub port: u16,
    pub dir: PathBuf,
    child: Mutex<Child>,
}

impl PgBouncer {
    /// PgBouncer on 127.0.0.1 with pam_pgaadauth.so given `module_args`, `pool_mode`
    /// `session` or `transaction`, pooling the server's databases `dbs`, accepting connections.
    pub fn start(
        name: &str,
        server: &Cluster,
        pool_mode: &str,
        dbs: &[&str],
        module_args: &str,
    ) -> PgBouncer {
        PgBouncer::start_with(name, server, Setup::pam(pool_mode, dbs, module_args))
    }

    pub fn start_with(name: &str, server: &Cluster, setup: Setup) -> PgBouncer {
        // Not a cluster's directory of the same name (new_dir empties it).
        let dir = new_dir(&format!("pgbouncer-{name}"));
        let port = setup.reuse_port.unwrap_or_else(crate::ports::reserve);
        let databases: String = setup
            .dbs
            .iter()
            .map(|db| format!("{db} = host=127.0.0.1 port={} dbname={db}\n", server.port))
            .collect();
        let pam_dir = dir.join("pam.d");
        if setup.machine_pam {
            let copied = Command::new("cp")
                .args(["-a", "/etc/pam.d"])
                .arg(&pam_dir)
                .status()
                .unwrap();
            assert!(copied.success(), "copy /etc/pam.d");
        } else {
            fs::create_dir_all(&pam_dir).unwrap();
            fs::write(pam_dir.join("other"), PAM_OTHER).unwrap();
        }
        let auth = match &setup.auth {
            Auth::Pam(service) => {
                fs::write(pam_dir.join("pgbouncer"), service).unwrap();
                "auth_type = pam\n".to_string()
            }
            Auth::Trust { user, password } => {
                fs::write(pam_dir.join("pgbouncer"), "# auth_type = trust: no PAM\n").unwrap();
                fs::write(
                    dir.join("users.txt"),
                    format!("\"{user}\" \"{password}\"\n"),
                )
                .unwrap();
                format!(
                    "auth_type = trust\nauth_file = {}/users.txt\n",
                    dir.display()
                )
            }
        };
        let tls = match &setup.tls {
            Some((cert, key)) => format!(
                "client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let tls = match &setup.server_ca {
            Some(ca) => format!(
                "{tls}server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\n",
                ca.display()
            ),
            None => tls,
        };
        let reuse = if setup.reuse_port.is_some() {
            "so_reuseport = 1\n"
        } else {
            ""
        };
        let ini = format!(
            "[databases]\n{databases}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir = {dir}\n{auth}{tls}{reuse}pool_mode = {pool_mode}\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             max_client_conn = 200\ndefault_pool_size = {pool_size}\nlog_connections = 1\n\
             ignore_startup_parameters = extra_float_digits\n",
            dir = dir.display(),
            pool_mode = setup.pool_mode,
            pool_size = setup.pool_size,
        );
        let ini_path = dir.join("pgbouncer.ini");
        fs::write(&ini_path, ini).unwrap();
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        let child = start_in_own_pam_view(&ini_path, &pam_dir, setup.machine_pam);
        let bouncer = PgBouncer {
            port,
            dir,
            child: Mutex::new(child),
        };
        let socket = bouncer.dir.join(format!(".s.PGSQL.{port}"));
        assert!(
            Cluster::wait_for(Duration::from_secs(10), || socket.exists()
                && std::os::unix::net::UnixStream::connect(&socket).is_ok()),
            "pgbouncer did not start:\n{}",
            bouncer.log()
        );
        bouncer
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Log in through PgBouncer as `user` with `password`.
    pub fn connect(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<postgres::Client, postgres::Error> {
        crate::cluster::tcp_login(self.port, db, user, password)
    }
}

/// PgBouncer as `postgres`, in a mount namespace whose /etc/pam.d holds `pam_dir`'s two files
/// and nothing else.
fn start_in_own_pam_view(ini: &Path, pam_dir: &Path, whole_dir: bool) -> Child {
    let (uid, gid) = children::postgres_ids();
    let c = |p: PathBuf| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).unwrap();
    let files = if whole_dir {
        vec![(c(pam_dir.into()), c("/etc/pam.d".into()))]
    } else {
        vec![
            (
                c(pam_dir.join("pgbouncer")),
                c("/etc/pam.d/pgbouncer".into()),
            ),
            (c(pam_dir.join("other")), c("/etc/pam.d/other".into())),
        ]
    };
    let mut command = Command::new("/usr/sbin/pgbouncer");
    command.arg(ini).stdout(Stdio::null()).stderr(Stdio::null());
    unsafe {
        command.pre_exec(move || {
            own_pam_view(&files)?;
            children::become_postgres(uid, gid)?;
            no_netlink()
        });
    }
    children::spawn(command, children::SIGKILL).expect("start pgbouncer")
}

/// In a child about to exec, as root: systemd's `TemporaryFileSystem=/etc/pam.d:ro` and
/// `BindReadOnlyPaths=` of each (source, target) file; or, given one directory for
/// /etc/pam.d, that directory bound there.
fn own_pam_view(files: &[(std::ffi::CString, std::ffi::CString)]) -> std::io::Result<()> {
    use std::ffi::{c_char, c_void};
    unsafe extern "C" {
        fn unshare(flags: i32) -> i32;
        fn mount(
            source: *const c_char,
            target: *const c_char,
            fstype: *const c_char,
            flags: u64,
            data: *const c_void,
        ) -> i32;
        fn open(path: *const c_char, flags: i32, mode: u32) -> i32;
        fn close(fd: i32) -> i32;
    }
    const CLONE_NEWNS: i32 = 0x0002_0000;
    const MS_RDONLY: u64 = 1;
    const MS_NOSUID: u64 = 2;
    const MS_NODEV: u64 = 4;
    const MS_REMOUNT: u64 = 32;
    const MS_BIND: u64 = 4096;
    const MS_REC: u64 = 16384;
    const MS_PRIVATE: u64 = 1 << 18;
    const O_CREAT_WRONLY: i32 = 0o100 | 0o1;
    let null = std::ptr::null();
    let failed = || Err(std::io::Error::last_os_error());
    unsafe {
        if unshare(CLONE_NEWNS) != 0
            || mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                null,
                MS_REC | MS_PRIVATE,
                null.cast(),
            ) != 0
        {
            return failed();
        }
        if let [(dir, target)] = files {
            if mount(dir.as_ptr(), target.as_ptr(), null, MS_BIND, null.cast()) != 0 {
                return failed();
            }
            return Ok(());
        }
        if mount(
            c"tmpfs".as_ptr(),
            c"/etc/pam.d".as_ptr(),
            c"tmpfs".as_ptr(),
            MS_NOSUID | MS_NODEV,
            c"mode=0755".as_ptr().cast(),
        ) != 0
        {
            return failed();
        }
        for (source, target) in files {
            let fd = open(target.as_ptr(), O_CREAT_WRONLY, 0o644);
            if fd < 0 {
                return failed();
            }
            close(fd);
            if mount(source.as_ptr(), target.as_ptr(), null, MS_BIND, null.cast()) != 0
                || mount(
                    null,
                    target.as_ptr(),
                    null,
                    MS_REMOUNT | MS_BIND | MS_RDONLY,
                    null.cast(),
                ) != 0
            {
                return failed();
            }
        }
        if mount(
            null,
            c"/etc/pam.d".as_ptr(),
            null,
            MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
            null.cast(),
        ) != 0
        {
            return failed();
        }
    }
    Ok(())
}

/// In a child about to exec: systemd's `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6` as
/// far as PgBouncer feels it, a seccomp filter that fails `socket(AF_NETLINK, …)` with
/// EAFNOSUPPORT. Linux-PAM then skips the kernel audit records it would otherwise try to send
/// (and the kernel refuse, PgBouncer lacking CAP_AUDIT_WRITE) twice per login.
fn no_netlink() -> std::io::Result<()> {
    #[repr(C)]
    struct Filter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct Program {
        len: u16,
        filter: *const Filter,
    }
    const LOAD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const ARCH_X86_64: u32 = 0xc000_003e;
    const SOCKET_X86_64: u32 = 41;
    const AF_NETLINK: u32 = 16;
    const FAIL_EAFNOSUPPORT: u32 = 0x0005_0000 | 97;
    const ALLOW: u32 = 0x7fff_0000;
    let f = |code, jt, jf, k| Filter { code, jt, jf, k };
    let filter = [
        f(LOAD, 0, 0, 4), // the architecture
        f(JUMP_IF_EQUAL, 0, 5, ARCH_X86_64),
        f(LOAD, 0, 0, 0), // the system call
        f(JUMP_IF_EQUAL, 0, 3, SOCKET_X86_64),
        f(LOAD, 0, 0, 16), // its first argument, the address family
        f(JUMP_IF_EQUAL, 0, 1, AF_NETLINK),
        f(RETURN, 0, 0, FAIL_EAFNOSUPPORT),
        f(RETURN, 0, 0, ALLOW),
    ];
    let program = Program {
        len: filter.len() as u16,
        filter: filter.as_ptr(),
    };
    const PR_SET_NO_NEW_PRIVS: i32 = 38;
    const PR_SET_SECCOMP: i32 = 22;
    const SECCOMP_MODE_FILTER: u64 = 2;
    unsafe {
        if crate::children::prctl(PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64) != 0
            || crate::children::prctl(
                PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                &program as *const Program as u64,
                0u64,
                0u64,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
