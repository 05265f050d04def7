//! `pgbench -C` runs for the benchmarks: a new connection (a login) for every transaction.

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
    pgbench_env(bin, port, user, password, clients, seconds, script, &[])
}

/// [`pgbench`] with libpq's environment `env` (e.g. `PGSSLMODE`).
#[allow(clippy::too_many_arguments)]
pub fn pgbench_env(
    bin: &Path,
    port: u16,
    user: &str,
    password: Option<&str>,
    clients: u32,
    seconds: u32,
    script: &str,
    env: &[(&str, &str)],
) -> Run {
    pgbench_run(
        bin, port, user, password, clients, seconds, script, env, true,
    )
}

/// [`pgbench_env`], a new connection for every transaction only when `connect_each` (else
/// each client keeps its connection; `logins` is then the transactions' count). `script` is a
/// file, or `builtin:<name>` for one of pgbench's own (`builtin:tpcb-like`).
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
