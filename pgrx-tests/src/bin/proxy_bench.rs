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
//! Prints the medians and the medians of the per-round ratios proxy/direct, against the goals
//! (≥ 0.7 for new connections, ≥ 0.8 for kept ones). Run by bench/proxy.sh (after release
//! builds of the extension and the proxy). Environment: BENCH_ROUNDS (5), BENCH_SECONDS (3).

use pgaadauth_e2e::cluster::{private_file, Cluster};
use pgaadauth_e2e::idp::{claims, fixture_path, mint, Idp, RSA1};
use pgaadauth_e2e::pgbench::{env_or, median, pgbench_run};
use pgaadauth_e2e::proxy::Proxy;

const OID: &str = "0c0c0000-1111-4222-8333-444455556666";
const ROLE: &str = "bench_user";

fn main() {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let seconds: u32 = env_or("BENCH_SECONDS", 3);
    let idp = Idp::start(&[&RSA1]);
    let key = private_file(
        "proxy-bench-tls.key",
        &std::fs::read_to_string(fixture_path("tls.key")).unwrap(),
    );
    let mut settings = idp.entra_settings();
    settings.extend([
        ("ssl", "on".to_string()),
        ("ssl_cert_file", fixture_path("tls.pem")),
        ("ssl_key_file", key.display().to_string()),
        ("max_connections", "100".into()),
    ]);
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

    /// One comparison: its tps direct and through the proxy, and their ratio, per round.
    #[derive(Default)]
    struct Row {
        direct: Vec<f64>,
        proxy: Vec<f64>,
        ratio: Vec<f64>,
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
    let mut rows: Vec<Row> = cases.iter().map(|_| Row::default()).collect();
    for round in 0..rounds {
        for (row, (_, script, connect_each, clients, _)) in rows.iter_mut().zip(cases) {
            let direct = || {
                pgbench_run(
                    &bin,
                    pg.port,
                    ROLE,
                    Some(&token),
                    clients,
                    seconds,
                    script,
                    &tls,
                    connect_each,
                )
            };
            let via = || {
                pgbench_run(
                    &bin,
                    proxy.port,
                    ROLE,
                    None,
                    clients,
                    seconds,
                    script,
                    &[],
                    connect_each,
                )
            };
            // Alternate which goes first.
            let (d, p) = if round % 2 == 0 {
                let d = direct();
                (d, via())
            } else {
                let p = via();
                (direct(), p)
            };
            row.direct.push(d.tps);
            row.proxy.push(p.tps);
            row.ratio.push(p.tps / d.tps);
        }
    }
    println!("{rounds} rounds of {seconds} s; median tps direct over TLS | through the proxy; median of the per-round ratios:");
    for (mut row, (what, _, _, _, goal)) in rows.into_iter().zip(cases) {
        let ratio = median(&mut row.ratio);
        println!(
            "  {what:<50} {:>9.1} | {:>9.1}   ratio {ratio:.2} (goal >= {goal}: {})",
            median(&mut row.direct),
            median(&mut row.proxy),
            if ratio >= goal { "met" } else { "NOT met" }
        );
    }
    let out = proxy.output();
    assert!(!out.contains(&token), "the token in the proxy's output");
}
