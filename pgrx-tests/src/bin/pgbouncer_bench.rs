//! Client logins through PgBouncer (auth_type = pam, pam_pgaadauth.so, session pooling) vs
//! direct token logins to the same server, with the same token: `pgbench -C` (a new connection
//! for every `SELECT 1`), without and with TLS (ECDSA P-256, on both paths), at each client
//! count. Within each round the configurations alternate:
//!
//! - direct token logins to the server;
//! - PgBouncer as docs/pgbouncer.md sets it up (its own PAM view; the module wakes PgBouncer);
//! - the same with `wake=off` (what the wake is worth);
//! - the same with the machine's whole /etc/pam.d (what the PAM view is worth);
//! - PgBouncer's own `trust` with the token in its auth_file (no PAM: the ceiling);
//! - two PgBouncer processes sharing the port with `so_reuseport`, each waking itself.
//!
//! Prints the medians, the medians of the per-round ratios to direct logins, where PgBouncer's
//! and the server's CPU time goes per login, and checks that the server decided every login
//! through PgBouncer (its counter against pgbench's count). Run by bench/pgbouncer.sh (after a
//! release install). Environment: BENCH_ROUNDS (5), BENCH_SECONDS (3), BENCH_CLIENTS ("1,8"),
//! BENCH_TLS ("off,on").

use pgaadauth_e2e::cluster::{self, private_file, Cluster};
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbench::{env_or, median, pgbench_run};
use pgaadauth_e2e::pgbouncer::{pam_service, Auth, PgBouncer, Setup};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const OID: &str = "0b0b0000-1111-4222-8333-444455556666";
const ROLE: &str = "bench_user";

/// An ECDSA P-256 certificate for 127.0.0.1 and its key, readable by `postgres` only.
fn ecdsa_certificate() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("pgaadauth-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = private_file("bench-ecdsa.key", &std::fs::read_to_string(&key).unwrap());
    let cert = private_file("bench-ecdsa.pem", &std::fs::read_to_string(&cert).unwrap());
    (cert, key)
}

/// CPU time (µs) of each thread of process `pid`, by thread name.
fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let tick = 1e6 / 100.0; // USER_HZ
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let mut name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if name.trim() == "pgbouncer" {
            // PgBouncer's event loop (its main thread) and its PAM thread.
            let main = t.file_name().to_str() == Some(&pid.to_string());
            name = if main {
                "pgbouncer (event loop)"
            } else {
                "pgbouncer (PAM)"
            }
            .into();
        }
        // After "(comm)": state, then fields 4.. ; utime and stime are fields 14 and 15.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        *out.entry(name.trim().to_string()).or_insert(0.0) += ticks * tick;
    }
    out
}

fn main() {
    let (rounds, seconds) = (env_or("BENCH_ROUNDS", 5), env_or("BENCH_SECONDS", 3));
    let list = |name: &str, default: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let client_counts: Vec<u32> = list("BENCH_CLIENTS", "1,8")
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let tls_modes = list("BENCH_TLS", "off,on");
    let idp = Idp::start(&[&RSA1]);
    let (cert, key) = ecdsa_certificate();
    let pg = Cluster::start(
        "pgbouncer-bench",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.log_logins", "failures".into()),
            ("ssl", "on".into()),
            ("ssl_cert_file", cert.display().to_string()),
            ("ssl_key_file", key.display().to_string()),
            ("max_connections", "100".into()),
        ],
    );
    pg.sql(
        "CREATE ROLE pgbouncer_auth LOGIN PASSWORD 'bench-pooler'; \
         GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pgbouncer_auth",
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('{ROLE}', '{OID}', 'user', false, false)"
    ));
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg.connect(ROLE, &token).is_ok()),
        "keys were never fetched:\n{}",
        pg.log()
    );
    let module = format!(
        "dsn=postgresql://pgbouncer_auth:bench-pooler@127.0.0.1:{}/postgres",
        pg.port
    );
    let dbs = &["postgres"];
    let start = |name: &str, tls: bool, f: &dyn Fn(&mut Setup)| {
        let mut setup = Setup::pam("session", dbs, &module);
        if tls {
            setup.tls = Some((cert.clone(), key.clone()));
        }
        f(&mut setup);
        let tag = if tls { "-tls" } else { "" };
        PgBouncer::start_with(&format!("bench-{name}{tag}"), &pg, setup)
    };
    let bin = pg.bindir().to_path_buf();
    let script = std::env::temp_dir().join("pgaadauth-bench-select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let script = script.display().to_string();
    let pooler_backend = || -> u32 {
        pg.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'pam_pgaadauth' LIMIT 1")
            .parse()
            .unwrap_or(0)
    };
    let decided = || -> u64 {
        pg.sql("SELECT value FROM pgaadauth_stats() WHERE counter = 'pgbouncer_logins_accepted'")
            .parse()
            .unwrap()
    };
    println!(
        "PostgreSQL {}, PgBouncer 1.18 (session pooling, pool size 4), {} cores: pgbench -C, \
         {rounds} rounds of {seconds} s per configuration, token {} bytes",
        cluster::major(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        token.len()
    );
    let mut through_pgbouncer = 0usize;
    let before = decided();
    for tls_mode in &tls_modes {
        let tls = tls_mode == "on";
        let sslmode = if tls { "require" } else { "disable" };
        let checked = start("checked", tls, &|_| {});
        let no_wake = start("no-wake", tls, &|s| {
            s.auth = Auth::Pam(pam_service(&format!("{module} wake=off")))
        });
        let machine_pam = start("machine-pam", tls, &|s| s.machine_pam = true);
        let trust = start("trust", tls, &|s| {
            s.auth = Auth::Trust {
                user: ROLE.into(),
                password: token.clone(),
            }
        });
        let shared = pgaadauth_e2e::ports::reserve();
        let reuse: Vec<PgBouncer> = (0..2)
            .map(|i| start(&format!("reuse{i}"), tls, &|s| s.reuse_port = Some(shared)))
            .collect();
        let configs: Vec<(&str, u16)> = vec![
            ("direct token logins", pg.port),
            ("PgBouncer, pam_pgaadauth (docs' setup)", checked.port),
            ("  the same, wake=off", no_wake.port),
            ("  the same, the machine's /etc/pam.d", machine_pam.port),
            ("  two processes, so_reuseport", shared),
            ("PgBouncer trust, no PAM (ceiling)", trust.port),
        ];
        for &clients in &client_counts {
            let mut rates: Vec<Vec<f64>> = vec![vec![]; configs.len()];
            let mut ratios: Vec<Vec<f64>> = vec![vec![]; configs.len()];
            let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
            let mut checked_logins = 0u64;
            for _ in 0..rounds {
                let mut round = vec![];
                for (i, (_, port)) in configs.iter().enumerate() {
                    let watched = (i == 1).then(|| (checked.pid(), pooler_backend()));
                    let cpu_before = watched.map(|(b, s)| (cpu_by_thread(b), cpu_by_thread(s)));
                    let run = pgbench_run(
                        &bin,
                        *port,
                        ROLE,
                        Some(&token),
                        clients,
                        seconds,
                        &script,
                        &[("PGSSLMODE", sslmode)],
                        true,
                    );
                    if let (Some((b, s)), Some((b0, s0))) = (watched, cpu_before) {
                        checked_logins += run.logins;
                        for (name, us) in cpu_by_thread(b) {
                            *cpu.entry(format!("PgBouncer thread {name}")).or_default() +=
                                us - b0.get(&name).copied().unwrap_or(0.0);
                        }
                        let server: f64 =
                            cpu_by_thread(s).values().sum::<f64>() - s0.values().sum::<f64>();
                        *cpu.entry("server backend of the module".into())
                            .or_default() += server;
                    }
                    round.push(run.tps);
                }
                for (i, r) in round.iter().enumerate() {
                    rates[i].push(*r);
                    ratios[i].push(r / round[0]);
                }
            }
            println!("\nTLS {tls_mode}, {clients} client(s): logins/s (median), ratio to direct (median of per-round ratios)");
            for (i, (name, _)) in configs.iter().enumerate() {
                println!(
                    "  {name:<42} {:8.1}   {:6.2}x",
                    median(&mut rates[i]),
                    median(&mut ratios[i])
                );
            }
            println!("  CPU per login through PgBouncer (docs' setup), µs:");
            for (name, us) in cpu {
                println!("    {name:<40} {:8.1}", us / checked_logins.max(1) as f64);
            }
        }
        // PgBouncer logs every client login ("login attempt"): each one through the module.
        for b in [&checked, &no_wake, &machine_pam].into_iter().chain(&reuse) {
            through_pgbouncer += b.log().matches("login attempt: db=postgres").count();
        }
    }
    let after = decided();
    let accepted = (after - before) as usize;
    println!(
        "\nthe server accepted {accepted} logins through pam_pgaadauth; PgBouncer logged \
         {through_pgbouncer} client logins through it (every one decided by the server: {})",
        if accepted == through_pgbouncer {
            "yes"
        } else {
            "NO"
        }
    );
    assert_eq!(
        accepted, through_pgbouncer,
        "a login through PgBouncer was not decided by the server"
    );
}
