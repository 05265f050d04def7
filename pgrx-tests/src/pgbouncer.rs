//! Debian's PgBouncer (1.18) in front of a test cluster, with `auth_type = pam` and the PAM
//! module pam_pgaadauth.so (installed by scripts/install.sh), run as the `postgres` OS user.
//!
//! PgBouncer 1.18 always uses the PAM service `pgbouncer`: [`write_pam_service`] writes
//! /etc/pam.d/pgbouncer, one file for the machine, so whoever uses it holds [`pam_lock`] (a lock
//! across processes), which puts back what the file held before when it is released.

use crate::cluster::{new_dir, Cluster};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PAM_SERVICE: &str = "/etc/pam.d/pgbouncer";

/// Held by whoever writes /etc/pam.d/pgbouncer or logs in through PgBouncer: a lock within
/// this process and across processes (an advisory lock on a file), which restores the file's
/// earlier content (or its absence) when dropped.
pub struct PamLock {
    _in_process: std::sync::MutexGuard<'static, ()>,
    _across: fs::File,
    before: Option<String>,
}

unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

pub fn pam_lock() -> PamLock {
    use std::os::fd::AsRawFd;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let in_process = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = fs::File::create(std::env::temp_dir().join("pgaadauth-pam-service.lock")).unwrap();
    // LOCK_EX: waits for another process's tests or benchmark to finish.
    assert_eq!(
        unsafe { flock(file.as_raw_fd(), 2) },
        0,
        "lock the PAM service"
    );
    PamLock {
        _in_process: in_process,
        _across: file,
        before: fs::read_to_string(PAM_SERVICE).ok(),
    }
}

impl Drop for PamLock {
    fn drop(&mut self) {
        let _ = match &self.before {
            Some(text) => fs::write(PAM_SERVICE, text),
            None => fs::remove_file(PAM_SERVICE),
        };
    }
}

/// Point PgBouncer's PAM service at pam_pgaadauth.so with these arguments.
pub fn write_pam_service(module_args: &str) {
    let text = format!(
        "# Written by pgaadauth's end-to-end tests (pgrx-tests/src/pgbouncer.rs).\n\
         auth    required pam_pgaadauth.so {module_args}\n\
         account required pam_pgaadauth.so\n"
    );
    fs::write(PAM_SERVICE, text).expect("write /etc/pam.d/pgbouncer (as root)");
}

pub struct PgBouncer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// PgBouncer on 127.0.0.1, `pool_mode` `session` or `transaction`, pooling the server's
    /// databases `dbs`, started and accepting connections.
    pub fn start(name: &str, server: &Cluster, pool_mode: &str, dbs: &[&str]) -> PgBouncer {
        let dir = new_dir(name);
        let port = crate::ports::reserve();
        let databases: String = dbs
            .iter()
            .map(|db| format!("{db} = host=127.0.0.1 port={} dbname={db}\n", server.port))
            .collect();
        let ini = format!(
            "[databases]\n{databases}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir = {dir}\nauth_type = pam\npool_mode = {pool_mode}\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             max_client_conn = 200\ndefault_pool_size = 4\nlog_connections = 1\n\
             ignore_startup_parameters = extra_float_digits\n",
            dir = dir.display()
        );
        let ini_path = dir.join("pgbouncer.ini");
        fs::write(&ini_path, ini).unwrap();
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        // Started as the postgres OS user directly (not through runuser), so that the child
        // is pgbouncer itself and dropping this stops it.
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let child = Command::new("/usr/sbin/pgbouncer")
            .uid(id("-u"))
            .gid(id("-g"))
            .arg(&ini_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = PgBouncer { port, dir, child };
        assert!(
            Cluster::wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "pgbouncer did not start:\n{}",
            bouncer.log()
        );
        bouncer
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
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

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
