//! pgaadauth-proxy for the tests: built once per test process (`cargo build -p
//! pgaadauth-proxy`), started on a reserved port with the arguments and environment a test
//! gives, and ready when it says it listens. It ends with the test process.

use crate::children;
use crate::cluster::check;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The proxy's binary: `$PGAADAUTH_PROXY` (the benchmark's release build), else the debug
/// build, built on first use.
pub fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Ok(path) = std::env::var("PGAADAUTH_PROXY") {
            return PathBuf::from(path);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        check(
            Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "pgaadauth-proxy"])
                .current_dir(&root)
                .output()
                .expect("run cargo"),
            "cargo build -p pgaadauth-proxy",
        );
        root.join("target/debug/pgaadauth-proxy")
    })
}

pub struct Proxy {
    pub port: u16,
    log: PathBuf,
    child: Mutex<Child>,
}

impl Proxy {
    /// Start the proxy listening on 127.0.0.1 with `args` (besides --listen) and only `env`
    /// (and PATH) as its environment; wait until it listens.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let port = crate::ports::reserve();
        let log = log_file(name);
        let child = spawn(port, &log, args, env);
        let proxy = Proxy {
            port,
            log,
            child: Mutex::new(child),
        };
        let listening = format!("listening on 127.0.0.1:{port}");
        assert!(
            crate::cluster::Cluster::wait_for(Duration::from_secs(20), || {
                proxy.output().contains(&listening) || proxy.exited()
            }) && !proxy.exited(),
            "pgaadauth-proxy did not start:\n{}",
            proxy.output()
        );
        proxy
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    fn exited(&self) -> bool {
        self.child
            .lock()
            .unwrap()
            .try_wait()
            .ok()
            .flatten()
            .is_some()
    }

    /// Everything the proxy has printed (its standard error).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Start the proxy with `args` (which it must refuse, before listening): whether it ended
    /// by itself within 20 s with a failure, and its output.
    pub fn refuses(args: &[&str]) -> (bool, String) {
        let port = crate::ports::reserve();
        let log = log_file(&format!("refuses-{port}"));
        let mut child = spawn(port, &log, args, &[]);
        let mut status = None;
        crate::cluster::Cluster::wait_for(Duration::from_secs(20), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        (status.is_some_and(|s| !s.success()), output)
    }
}

/// Where a proxy's output goes, named `…-<pid>`: the clusters' reaper removes the files of
/// test processes that ended, and only those.
fn log_file(name: &str) -> PathBuf {
    let log = crate::cluster::base_dir().join(format!("proxy-{name}-log-{}", std::process::id()));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    log
}

/// The proxy listening on 127.0.0.1:`port` with `args`, only `env` (and PATH) as its
/// environment, and its standard error to `log`.
fn spawn(port: u16, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(binary());
    c.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    children::spawn(c, children::SIGKILL).expect("start pgaadauth-proxy")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
