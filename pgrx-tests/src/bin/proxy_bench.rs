//! pgaadauth-proxy against direct token logins to the same server over TLS, side by side in one
//! run, rounds interleaved:
//!
//! - new connections (`pgbench -C`, a login for every `SELECT 1`), 1 client: through the proxy
//!   (no password; the proxy's cached token) and direct (the same token in PGPASSWORD,
//!   `sslmode=verify-full`);
//! - statements on kept connections (`pgbench` without -C), 4 clients, the same two ways:
//!   pgbench's own TPC-B-like transaction (its default), and `SELECT 1` (the relay's worst
//!   case: nothing but the hop).
//!
//! Each round runs them twice: with the server on one half of the CPUs and pgbench and the
//! proxy on the other (as deployed: the proxy beside its clients, the server on another
//! machine), and with every process on every CPU. Prints the medians and the medians of the
//! per-round ratios proxy/direct, against the goals (≥ 0.7 for new connections, ≥ 0.8 for
//! kept ones) for the first. Run by bench/proxy.sh (after release
//! builds of the extension and the proxy). Environment: BENCH_ROUNDS (5), BENCH_SECONDS (3).

use pgaadauth_e2e::cluster::{private_file, tls_settings, Cluster};
use pgaadauth_e2e::idp::{claims, fixture_path, mint, Idp, RSA1};
use pgaadauth_e2e::pgbench::{cpus, env_or, median, pgbench_run, pin};
use pgaadauth_e2e::pgbouncer::{Auth, PgBouncer, Setup};
use pgaadauth_e2e::proxy::Proxy;

const OID: &str = "0c0c0000-1111-4222-8333-444455556666";
const ROLE: &str = "bench_user";

fn main() {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let seconds: u32 = env_or("BENCH_SECONDS", 3);
    let idp = Idp::start(&[&RSA1]);
    let mut settings = idp.entra_settings();
    settings.extend(tls_settings("proxy-bench"));
    settings.push(("max_connections", "100".into()));
    let pg = Cluster::start_with_hba(
        "proxy-bench",
        &settings,
        "hostssl all all 127.0.0.1/32 trust\n",
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('{ROLE}', '{OID}', 'user', false, false)"
    ));
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    let token_file = private_file("proxy-bench-token", &token);
    let upstream = format!(
        "host=127.0.0.1 port={} sslmode=verify-full sslrootcert={}",
        pg.port,
        fixture_path("ca.pem")
    );
    let command = format!("cat {}", token_file.display());
    let proxy = Proxy::start(
        "bench",
        &[
            "--upstream",
            &upstream,
            "--token-source",
            "command",
            "--token-command",
            &command,
        ],
        &[],
    );
    let script = std::env::temp_dir().join(format!("proxy-bench-{}.sql", std::process::id()));
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let script = script.to_str().unwrap();
    let bin = pg.bindir().to_path_buf();
    let ca = fixture_path("ca.pem");
    let tls = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())];
    // Warm both paths (the keys fetched, the proxy's token cached).
    let direct_login = || {
        std::process::Command::new(bin.join("psql"))
            .args(["-XAtw", "-h", "127.0.0.1", "-p", &pg.port.to_string()])
            .args(["-U", ROLE, "-d", "postgres", "-c", "SELECT 1"])
            .env("PGPASSWORD", &token)
            .envs(tls)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(Cluster::wait_for(
        std::time::Duration::from_secs(20),
        direct_login
    ));
    pgbench_run(&bin, proxy.port, ROLE, None, 1, 1, script, &[], true);

    /// One comparison per round: tps direct, through the proxy and through PgBouncer (none
    /// for new connections: it would reuse its server connections).
    #[derive(Default)]
    struct Row {
        tps: [Vec<f64>; 3],
        ratios: [Vec<f64>; 2],
    }
    // pgbench's own tables, for its default (TPC-B-like) transaction, owned by the role.
    pg.sql(&format!("GRANT CREATE ON SCHEMA public TO {ROLE}"));
    let init = std::process::Command::new(bin.join("pgbench"))
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
        ])
        .args(["-U", ROLE, "postgres"])
        .env("PGPASSWORD", &token)
        .envs(tls)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let cases = [
        (
            "new connections, 1 client (pgbench -C)",
            script,
            true,
            1,
            0.7,
        ),
        (
            "pgbench's TPC-B-like, kept connections, 4 clients",
            "builtin:tpcb-like",
            false,
            4,
            0.8,
        ),
        (
            "SELECT 1, kept connections, 4 clients",
            script,
            false,
            4,
            0.8,
        ),
    ];
    // Where the processes run. The goals are for the proxy as deployed: beside its clients,
    // the server on another machine, here the other half of the CPUs. On shared CPUs (printed
    // too) every hop also waits for a CPU the server and pgbench keep busy.
    let cpus = cpus();
    let mut topologies: Vec<(String, Option<(String, String)>)> = vec![];
    if let Some((clients, server)) = cpus.halves.clone() {
        topologies.push((
            format!("the server on CPUs {server}; pgbench and the proxy on CPUs {clients}"),
            Some((clients, server)),
        ));
    }
    topologies.push(("every process on every CPU".into(), None));
    // A relay in C for reference: PgBouncer in session mode, trusting its clients and logging
    // in to the server with the token, as the proxy does (TLS to the server, none to pgbench).
    let bouncer = PgBouncer::start_with(
        "proxy-bench-pgbouncer",
        &pg,
        Setup {
            auth: Auth::Trust {
                user: ROLE.into(),
                password: token.clone(),
            },
            server_ca: Some(ca.clone().into()),
            pool_size: 4,
            ..Setup::pam("session", &["postgres"], "")
        },
    );
    let me = std::process::id();
    let mut rows: Vec<Vec<Row>> = topologies
        .iter()
        .map(|_| cases.iter().map(|_| Row::default()).collect())
        .collect();
    for round in 0..rounds {
        for (rows, (_, halves)) in rows.iter_mut().zip(&topologies) {
            let (clients_cpus, server_cpus) = match halves {
                Some((c, s)) => (c.as_str(), s.as_str()),
                None => (cpus.all.as_str(), cpus.all.as_str()),
            };
            pin(pg.pid(), server_cpus, true);
            pin(proxy.pid(), clients_cpus, false);
            pin(bouncer.pid(), clients_cpus, false);
            // pgbench, started from here, inherits this process's CPUs.
            pin(me, clients_cpus, false);
            for (row, (_, script, connect_each, clients, _)) in rows.iter_mut().zip(cases) {
                let run = |port, password, env: &[(&str, &str)]| {
                    pgbench_run(
                        &bin,
                        port,
                        ROLE,
                        password,
                        clients,
                        seconds,
                        script,
                        env,
                        connect_each,
                    )
                    .tps
                };
                let mut runs: Vec<Box<dyn Fn() -> f64>> = vec![
                    Box::new(|| run(pg.port, Some(&token), &tls)),
                    Box::new(|| run(proxy.port, None, &[])),
                ];
                if !connect_each {
                    runs.push(Box::new(|| run(bouncer.port, None, &[])));
                }
                // A different one goes first in each round.
                let mut tps = vec![0.0; runs.len()];
                for i in 0..runs.len() {
                    let i = (i + round) % runs.len();
                    tps[i] = runs[i]();
                }
                for (i, t) in tps.iter().enumerate() {
                    row.tps[i].push(*t);
                    if i > 0 {
                        row.ratios[i - 1].push(t / tps[0]);
                    }
                }
            }
        }
    }
    println!(
        "{rounds} rounds of {seconds} s; median tps direct over TLS | through the proxy | through \
         PgBouncer (a relay in C, for reference); medians of the per-round ratios to direct:"
    );
    for (t, (rows, (where_, _))) in rows.into_iter().zip(&topologies).enumerate() {
        println!("{where_}:");
        for (mut row, (what, _, _, _, goal)) in rows.into_iter().zip(cases) {
            let ratio = median(&mut row.ratios[0]);
            // The goals are judged where the processes run as deployed (the first).
            let verdict = match (t, ratio >= goal) {
                (0, true) => format!("(goal >= {goal}: met)"),
                (0, false) => format!("(goal >= {goal}: NOT met)"),
                _ => String::new(),
            };
            let bouncer = if row.tps[2].is_empty() {
                format!("{:>9}", "-")
            } else {
                format!(
                    "{:>9.1} (ratio {:.2})",
                    median(&mut row.tps[2]),
                    median(&mut row.ratios[1])
                )
            };
            println!(
                "  {what:<50} {:>9.1} | {:>9.1} (ratio {ratio:.2}) | {bouncer}  {verdict}",
                median(&mut row.tps[0]),
                median(&mut row.tps[1]),
            );
        }
    }
    let out = proxy.output();
    assert!(!out.contains(&token), "the token in the proxy's output");
}
