//! pgbench runs for the benchmarks, and where their processes may run.

use std::path::Path;
use std::process::Command;

/// One run: transactions per second, and how many (each a login).
pub struct Run {
    pub tps: f64,
    pub logins: u64,
}

/// `pgbench -C -n` with `script` against 127.0.0.1:`port` as `user` (password from
/// PGPASSWORD), `clients` clients for `seconds`; no transaction may fail.
pub fn pgbench(
    bin: &Path,
    port: u16,
    user: &str,
    password: Option<&str>,
    clients: u32,
    seconds: u32,
    script: &str,
) -> Run {
    pgbench_run(
        bin,
        port,
        user,
        password,
        clients,
        seconds,
        script,
        &[],
        true,
    )
}

/// [`pgbench`] with libpq's environment `env` (e.g. `PGSSLMODE`), a new connection for every
/// transaction only when `connect_each` (else each client keeps its connection; `logins` is
/// then the transactions' count). `script` is a file, or `builtin:<name>` for one of
/// pgbench's own (`builtin:tpcb-like`).
#[allow(clippy::too_many_arguments)]
pub fn pgbench_run(
    bin: &Path,
    port: u16,
    user: &str,
    password: Option<&str>,
    clients: u32,
    seconds: u32,
    script: &str,
    env: &[(&str, &str)],
    connect_each: bool,
) -> Run {
    let mut cmd = Command::new(bin.join("pgbench"));
    cmd.envs(env.iter().copied());
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-n"])
        .args(connect_each.then_some("-C"))
        .args([
            "-T",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "-j",
            &clients.to_string(),
        ])
        .args(match script.strip_prefix("builtin:") {
            Some(name) => ["-b", name, "postgres"],
            None => ["-f", script, "postgres"],
        })
        .env_remove("PGPASSWORD");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench as {user}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    let failed = text
        .lines()
        .any(|l| l.contains("number of failed transactions") && !l.contains(": 0 "));
    assert!(!failed, "failed transactions as {user}:\n{text}");
    Run {
        tps: value("tps = "),
        logins: value("number of transactions actually processed: ") as u64,
    }
}

/// A benchmark's setting from the environment, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The CPUs this process may run on, as taskset lists: all of them, and (on two or more) in
/// two halves, the clients' and the server's, for a benchmark whose server must not share CPUs
/// with its clients, as when they are different machines. Read before any [`pin`] of this
/// process.
pub struct Cpus {
    pub all: String,
    pub halves: Option<(String, String)>,
}

pub fn cpus() -> Cpus {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim()
        .to_string();
    let mut ids: Vec<u32> = vec![];
    for part in list.split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        ids.extend(from.parse::<u32>().unwrap()..=to.parse::<u32>().unwrap());
    }
    let join = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let half = ids.len() / 2;
    Cpus {
        halves: (half > 0).then(|| (join(&ids[..half]), join(&ids[half..]))),
        all: list,
    }
}

/// Run process `pid` (every thread of it and, with `children`, of each of its children) on
/// `cpus`, a taskset list. Processes started later inherit their parent's CPUs.
pub fn pin(pid: u32, cpus: &str, children: bool) {
    let taskset = |pid: &str| {
        Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, pid])
            .output()
            .expect("run taskset")
    };
    let out = taskset(&pid.to_string());
    assert!(
        out.status.success(),
        "taskset {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if children {
        let out = Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .expect("run pgrep");
        // A child may end meanwhile: its taskset fails, and it no longer matters.
        for child in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            taskset(child);
        }
    }
}
