//! A throwaway PostgreSQL cluster with pgaadauth preloaded, run as the `postgres` OS user.
//!
//! The superuser connects through `local ... peer`; every TCP connection from 127.0.0.1 goes
//! through a `trust` line, i.e. through pgaadauth.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn pg_config() -> String {
    std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into())
}

/// The major version of the PostgreSQL under test (that of `PG_CONFIG`).
pub fn major() -> u32 {
    let out = Command::new(pg_config())
        .arg("--version")
        .output()
        .expect("run pg_config");
    let text = String::from_utf8(out.stdout).unwrap();
    // "PostgreSQL 18.6", "PostgreSQL 15.14 (Debian 15.14-0+deb12u1)"
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected pg_config --version: {text}"))
}

/// `pg_config --<what>` of the PostgreSQL whose pg_config is `pg_config`.
pub fn pg_config_dir(pg_config: &str, what: &str) -> PathBuf {
    let out = Command::new(pg_config)
        .arg(format!("--{what}"))
        .output()
        .unwrap_or_else(|e| panic!("run {pg_config}: {e}"));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The pg_config of PostgreSQL major `major` (scripts/pg.sh's list), if it is on this machine.
pub fn pg_config_for(major: u32) -> Option<String> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". '{}/pg.sh' && pg_config_for {major}",
            scripts.display()
        ))
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && Path::new(&path).exists()).then_some(path)
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// A command run as the `postgres` OS user when we are root (PostgreSQL refuses root).
pub fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// `out`'s standard output; a test failure naming `what` if the command failed.
pub fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("pgaadauth-e2e")
}

/// A port for a server: reserved for this test process, so no other test takes it (see
/// `ports`).
fn free_port() -> u16 {
    crate::ports::reserve()
}

/// Stop clusters, and remove files, left behind by test processes that no longer run.
fn reap_stale(bin: &Path) {
    let Ok(entries) = fs::read_dir(base_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name.rsplit('-').next().unwrap_or("");
        if !owner.is_empty() && !Path::new(&format!("/proc/{owner}")).exists() {
            if e.path().is_dir() {
                let _ = as_postgres(&bin.join("pg_ctl"))
                    .args(["stop", "-m", "immediate", "-D"])
                    .arg(e.path().join("data"))
                    .output();
                let _ = fs::remove_dir_all(e.path());
            } else {
                let _ = fs::remove_file(e.path()); // a private_file of a finished test run
            }
        }
    }
}

/// A fresh directory for a cluster, owned by `postgres`.
pub(crate) fn new_dir(name: &str) -> PathBuf {
    let dir = base_dir().join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    if is_root() {
        // Only this cluster's directory: others may be creating and removing files meanwhile.
        check(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .output()
                .unwrap(),
            "chown",
        );
    }
    dir
}

/// A file only the `postgres` OS user can read (mode 600), e.g. a client secret.
pub fn private_file(name: &str, content: &str) -> PathBuf {
    let dir = base_dir();
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}", std::process::id()));
    fs::write(&path, content).unwrap();
    Command::new("chmod")
        .arg("600")
        .arg(&path)
        .status()
        .unwrap();
    if is_root() {
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(&path)
            .status()
            .unwrap();
    }
    path
}

/// A server's settings for TLS with the fixtures' certificate for 127.0.0.1, its key copied
/// where only `postgres` reads it (as the server requires), named after `name`.
pub fn tls_settings(name: &str) -> [(&'static str, String); 3] {
    let key = private_file(
        &format!("{name}-tls.key"),
        &fs::read_to_string(crate::idp::fixture_path("tls.key")).unwrap(),
    );
    [
        ("ssl", "on".into()),
        ("ssl_cert_file", crate::idp::fixture_path("tls.pem")),
        ("ssl_key_file", key.display().to_string()),
    ]
}

/// A protocol 3.0 StartupMessage with `params` (user, database, …), for a raw client.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// Log in over TCP to 127.0.0.1:`port` (a server, or PgBouncer) with the Rust client.
pub fn tcp_login(
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(20))
        .connect(postgres::NoTls)
}

/// The TCP line of [`Cluster::start`]'s pg_hba.conf: every login from 127.0.0.1 through pgaadauth.
const TRUST_LINE: &str = "host all all 127.0.0.1/32 trust\n";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// The postmaster, a child of this process (crate::children): it ends when the test does.
    postmaster: std::sync::Mutex<Option<std::process::Child>>,
}

impl Cluster {
    /// initdb, pgaadauth preloaded with `settings`, pg_hba.conf rewritten, started, and
    /// `CREATE EXTENSION pgaadauth` done.
    pub fn start(name: &str, settings: &[(&str, String)]) -> Cluster {
        Cluster::start_on(&pg_config(), name, settings)
    }

    /// As [`Cluster::start`], on the PostgreSQL whose pg_config is `pg_config`.
    pub fn start_on(pg_config: &str, name: &str, settings: &[(&str, String)]) -> Cluster {
        Cluster::prepare(pg_config, name, settings).with_extension()
    }

    /// As [`Cluster::start`], with `hba` as the TCP lines of pg_hba.conf.
    pub fn start_with_hba(name: &str, settings: &[(&str, String)], hba: &str) -> Cluster {
        let cluster = Cluster::prepare(&pg_config(), name, settings);
        cluster.write_hba(hba);
        cluster.with_extension()
    }

    /// Started, with `CREATE EXTENSION pgaadauth` done.
    fn with_extension(self) -> Cluster {
        self.launch();
        self.sql("CREATE EXTENSION pgaadauth");
        self
    }

    /// initdb with the PostgreSQL of `pg_config`, pgaadauth preloaded with `settings`, pg_hba.conf
    /// as [`Cluster::start`] writes it; not started.
    pub fn prepare(pg_config: &str, name: &str, settings: &[(&str, String)]) -> Cluster {
        let cluster = Cluster::create(
            pg_config,
            name,
            "shared_preload_libraries = 'pgaadauth'\n",
            settings,
        );
        cluster.write_hba(TRUST_LINE);
        cluster
    }

    /// A cluster without pgaadauth, whose TCP lines are `hba` (after the superuser's peer
    /// lines), started: a baseline for benchmarks.
    pub fn start_plain(name: &str, hba: &str, settings: &[(&str, String)]) -> Cluster {
        let cluster = Cluster::create(&pg_config(), name, "", settings);
        cluster.write_hba(hba);
        cluster.launch();
        cluster
    }

    fn create(pg_config: &str, name: &str, preload: &str, settings: &[(&str, String)]) -> Cluster {
        let bin = pg_config_dir(pg_config, "bindir");
        reap_stale(&bin);
        let dir = new_dir(name);
        check(
            as_postgres(&bin.join("initdb"))
                // Data checksums on every major, as 18's initdb has them by default (and
                // pg_upgrade wants them alike on both sides).
                .args(["-A", "trust", "-k", "--no-sync", "-U", "postgres", "-D"])
                .arg(dir.join("data"))
                .output()
                .unwrap(),
            "initdb",
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             {preload}fsync = off\nmax_connections = 50\n",
            dir.display()
        );
        for (k, v) in settings {
            conf.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        let cluster = Cluster {
            dir,
            port,
            bin,
            postmaster: Default::default(),
        };
        cluster.append_conf(&conf);
        cluster
    }

    fn write_hba(&self, tcp_lines: &str) {
        self.write_as_postgres(
            &self.dir.join("data/pg_hba.conf"),
            &format!("local all postgres peer\nlocal replication postgres peer\n{tcp_lines}"),
        );
    }

    /// Replace pg_ident.conf with `lines` (takes effect at the next reload).
    pub fn write_ident(&self, lines: &str) {
        self.write_as_postgres(&self.dir.join("data/pg_ident.conf"), lines);
    }

    pub fn bindir(&self) -> &Path {
        &self.bin
    }

    /// A streaming replica of `primary` (pg_basebackup), with the same settings, started.
    pub fn standby_of(primary: &Cluster, name: &str) -> Cluster {
        let dir = new_dir(name);
        check(
            as_postgres(&primary.bin.join("pg_basebackup"))
                .arg("-h")
                .arg(&primary.dir)
                .args([
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-D",
                ])
                .arg(dir.join("data"))
                .output()
                .unwrap(),
            "pg_basebackup",
        );
        let port = free_port();
        let cluster = Cluster {
            dir,
            port,
            bin: primary.bin.clone(),
            postmaster: Default::default(),
        };
        // The replication connection written here, not by `pg_basebackup -R`: a newer
        // pg_basebackup names options (sslnegotiation) the server's libpq may not know.
        cluster.write_as_postgres(&cluster.dir.join("data/standby.signal"), "");
        cluster.append_conf(&format!(
            "port = {port}\nunix_socket_directories = '{}'\n\
             primary_conninfo = 'host={} port={} user=postgres'\n",
            cluster.dir.display(),
            primary.dir.display(),
            primary.port
        ));
        cluster.launch();
        cluster
    }

    /// Stop the server (fast shutdown); [`Cluster::launch`] starts it again on its port.
    pub fn stop(&self) {
        check(
            as_postgres(&self.bin.join("pg_ctl"))
                .args(["stop", "-w", "-m", "fast", "-D"])
                .arg(self.dir.join("data"))
                .output()
                .unwrap(),
            "pg_ctl stop",
        );
        self.reap();
    }

    /// Wait for the postmaster this process started, once it has ended.
    fn reap(&self) {
        let mut postmaster = self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = postmaster.take() {
            let _ = child.wait();
        }
    }

    /// Start the postmaster (as `pg_ctl start -w` would, its output appended to the log) and
    /// wait until it accepts connections.
    pub fn launch(&self) {
        self.reap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if is_root() {
            let (uid, gid) = crate::children::postgres_ids();
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(move || crate::children::become_postgres(uid, gid));
            }
        }
        let mut child = crate::children::spawn(command, crate::children::SIGQUIT)
            .expect("start the postmaster");
        let pid = child.id().to_string();
        let pid_file = self.dir.join("data/postmaster.pid");
        let started = Cluster::wait_for(Duration::from_secs(60), || {
            if child.try_wait().ok().flatten().is_some() {
                return true;
            }
            let text = fs::read_to_string(&pid_file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines.first() == Some(&pid.as_str())
                && matches!(lines.get(7).map(|l| l.trim()), Some("ready" | "standby"))
        });
        let exited = child.try_wait().ok().flatten();
        assert!(
            started && exited.is_none(),
            "the server did not start ({exited:?}):\n{}",
            self.log()
        );
        *self.postmaster.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    fn write_as_postgres(&self, path: &Path, text: &str) {
        fs::write(path, text).unwrap();
        if is_root() {
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status()
                .unwrap();
        }
    }

    pub fn append_conf(&self, text: &str) {
        let path = self.dir.join("data/postgresql.conf");
        let mut conf = fs::read_to_string(&path).unwrap();
        conf.push_str(text);
        self.write_as_postgres(&path, &conf);
    }

    /// Change settings and reload.
    pub fn set(&self, settings: &[(&str, &str)]) {
        let text: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = '{v}'\n"))
            .collect();
        self.append_conf(&text);
        self.sql("SELECT pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The postmaster's pid (it runs from [`Cluster::launch`] on).
    pub fn pid(&self) -> u32 {
        let postmaster = self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        postmaster.as_ref().expect("the server runs").id()
    }

    /// The pid of the postmaster's child whose process title contains `title`.
    pub fn child_pid(&self, title: &str) -> Option<String> {
        let pidfile = fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        let postmaster = pidfile.lines().next()?.trim().to_string();
        let out = Command::new("pgrep")
            .args(["-P", &postmaster, "-f", title])
            .output()
            .ok()?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!pid.is_empty()).then_some(pid)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The whole server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Run SQL as the superuser (peer over the Unix socket); the unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql("postgres", sql)
            .unwrap_or_else(|e| panic!("{sql} failed: {e}"))
    }

    /// Run SQL as the superuser in `db`: the output, or the error psql printed.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .tool("psql")
            .args(["-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// This PostgreSQL's client program `name` (psql, pg_dumpall, ...) run as the `postgres` OS
    /// user, aimed at this server as the superuser over the Unix socket.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = as_postgres(&self.bin.join(name));
        c.arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
        c
    }

    /// Restart the server (for settings that need a restart).
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// Log in over TCP as `user` with `password` using the Rust client.
    pub fn connect(&self, user: &str, password: &str) -> Result<postgres::Client, postgres::Error> {
        self.connect_to("postgres", user, password)
    }

    /// As [`Cluster::connect`], to database `db`.
    pub fn connect_to(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<postgres::Client, postgres::Error> {
        tcp_login(self.port, db, user, password)
    }

    /// Log in with psql (libpq, password from PGPASSWORD) and run `sql`: (success, output).
    pub fn psql_login(&self, user: &str, password: Option<&str>, sql: &str) -> (bool, String) {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-XAtw", "-c", sql])
        .env_remove("PGPASSWORD");
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim().to_string())
    }

    /// Wait until `ok()` holds, up to `limit`.
    pub fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ok()
    }

    /// The DETAIL logged with the login failure of `user`, waiting briefly for it.
    pub fn failure_detail(&self, user: &str) -> Option<String> {
        let marker = format!("FATAL:  password authentication failed for user \"{user}\"");
        let mut found = None;
        Cluster::wait_for(Duration::from_secs(5), || {
            let log = self.log();
            found = log.rfind(&marker).map(|at| {
                let rest = &log[at..];
                let detail = rest.find("DETAIL:  ").map(|d| &rest[d + 9..]).unwrap_or("");
                // The detail runs until the next log line (which starts with a timestamp).
                let end = detail.find("\n20").unwrap_or(detail.len());
                detail[..end].to_string()
            });
            found.is_some()
        });
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        self.reap();
    }
}
