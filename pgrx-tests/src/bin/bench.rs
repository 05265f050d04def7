//! Connection-rate benchmark: pgbench -C (a new connection per transaction) against
//! - trust, SCRAM and the floor on a server without pgaadauth (the floor: the `password`
//!   method against an MD5 secret, i.e. trust plus one round trip and one MD5, the least any
//!   method that carries a credential in the password message can cost),
//! - token logins (a ~2.5 KB RS256 token) on servers with pgaadauth, audit lines on and off,
//!   and with 10 or 10,000 Entra roles in the catalog,
//!
//! alternating the configurations within each round, for 1 and 2 clients; prints medians and
//! ratios, the identity provider's requests during the token runs, and pgaadauth's shared memory.
//! Ratios are computed within each round (runs seconds apart) and their median reported, which
//! cancels the slow drift of a shared machine better than a ratio of medians.
//! Run by bench/connections.sh (after a release install). Environment: BENCH_ROUNDS (15),
//! BENCH_SECONDS (3), BENCH_CLIENTS ("1,2").

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbench::{env_or, median, pgbench};
use std::collections::BTreeMap;
use std::time::Duration;

const OID: &str = "be4c0000-1111-4222-8333-444455556666";

struct Config {
    name: &'static str,
    /// pgaadauth.log_logins to set (by reload) before the run, for token runs.
    log_logins: Option<&'static str>,
    port: u16,
    user: &'static str,
    password: Option<String>,
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 15);
    let seconds: u32 = env_or("BENCH_SECONDS", 3);
    let clients: Vec<u32> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();

    let idp = Idp::start(&[&RSA1]);
    // A pgaadauth server whose catalog holds `roles` Entra principals (bench_user among them).
    let aad = |name: &str, log: &str, roles: u32| {
        let pg = Cluster::start(
            name,
            &[
                ("pgaadauth.tenant_id", TENANT.into()),
                ("pgaadauth.authority_host", idp.base()),
                ("pgaadauth.allow_http", "on".into()),
                ("pgaadauth.log_logins", log.into()),
            ],
        );
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('bench_user', '{OID}', 'user', false, false)"
        ));
        // In batches: one transaction for 10,000 would outgrow the lock table.
        for from in (2..=roles).step_by(500) {
            let to = (from + 499).min(roles);
            pg.sql(&format!(
                "SELECT count(pgaadauth_create_principal_with_oid('entra_' || i, md5(i::text)::uuid::text, 'user', false, false)) \
                 FROM generate_series({from}, {to}) AS i"
            ));
        }
        let n = pg.sql("SELECT count(*) FROM pg_shseclabel WHERE provider = 'pgaadauth'");
        assert_eq!(n, roles.to_string(), "Entra roles in {name}");
        pg
    };
    // One pgaadauth server for both audit settings (log_logins is switched by reload), with 10
    // Entra roles; another with 10,000 (audit lines on in both).
    let aad_pg = aad("bench-token", "all", 10);
    let many_pg = aad("bench-token-10k", "all", 10_000);
    let plain = Cluster::start_plain(
        "bench-plain",
        "host all scram_user 127.0.0.1/32 scram-sha-256\n\
         host all md5_user 127.0.0.1/32 password\n\
         host all all 127.0.0.1/32 trust\n",
        &[("password_encryption", "scram-sha-256".into())],
    );
    plain.sql("CREATE ROLE trust_user LOGIN; CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret'");
    plain.sql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'");

    // A ~2.5 KB token, as Entra issues with some groups.
    let mut c = claims(&idp.entra_issuer(), OID);
    let mut pad = 1000;
    let token = loop {
        c["groups_padding"] = serde_json::json!("g".repeat(pad));
        let t = mint(&RSA1, &c);
        if t.len() >= 2500 {
            break t;
        }
        pad += 50;
    };
    for pg in [&aad_pg, &many_pg] {
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || pg
                .connect("bench_user", &token)
                .is_ok()),
            "no keys: {}",
            pg.log()
        );
    }

    let script = std::env::temp_dir().join("pgaadauth-bench-select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let script = script.display().to_string();
    let configs = [
        Config {
            name: "trust (no pgaadauth)",
            log_logins: None,
            port: plain.port,
            user: "trust_user",
            password: None,
        },
        Config {
            name: "SCRAM (no pgaadauth)",
            log_logins: None,
            port: plain.port,
            user: "scram_user",
            password: Some("scram-secret".into()),
        },
        Config {
            name: "floor (password, MD5)",
            log_logins: None,
            port: plain.port,
            user: "md5_user",
            password: Some("md5-secret".into()),
        },
        Config {
            name: "token, log_logins=all",
            log_logins: Some("all"),
            port: aad_pg.port,
            user: "bench_user",
            password: Some(token.clone()),
        },
        Config {
            name: "token, log_logins=none",
            log_logins: Some("none"),
            port: aad_pg.port,
            user: "bench_user",
            password: Some(token.clone()),
        },
        Config {
            name: "token, 10,000 roles",
            log_logins: None,
            port: many_pg.port,
            user: "bench_user",
            password: Some(token.clone()),
        },
    ];

    println!("pgaadauth connection-rate benchmark: pgbench -C, SELECT 1, {rounds} rounds x {seconds} s, token {} bytes", token.len());
    println!("machine: {} cores, {}", num_cpus(), cpu_model());
    let requests_before = idp.key_set_requests() + idp.count("openid-configuration");
    let mut token_logins = 0u64;
    let mut results: BTreeMap<(u32, usize), Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for &n in &clients {
            // Rotate the order each round so that no configuration always runs first.
            for k in 0..configs.len() {
                let i = (k + round as usize) % configs.len();
                if let Some(level) = configs[i].log_logins {
                    aad_pg.set(&[("pgaadauth.log_logins", level)]);
                }
                let c = &configs[i];
                let run = pgbench(
                    plain.bindir(),
                    c.port,
                    c.user,
                    c.password.as_deref(),
                    n,
                    seconds,
                    &script,
                );
                if configs[i].user == "bench_user" {
                    token_logins += run.logins;
                }
                results.entry((n, i)).or_default().push(run.tps);
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let requests = idp.key_set_requests() + idp.count("openid-configuration") - requests_before;

    for &n in &clients {
        println!("\n{n} client(s): connections per second, median of {rounds} (min .. max)");
        let mut medians = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let mut v = results[&(n, i)].clone();
            let (lo, hi) = (
                v.iter().cloned().fold(f64::MAX, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            );
            let m = median(&mut v);
            medians.push(m);
            println!("  {:<24} {:>8.1}   ({lo:.1} .. {hi:.1})", c.name, m);
        }
        let paired = |a: usize, b: usize| -> f64 {
            let (x, y) = (&results[&(n, a)], &results[&(n, b)]);
            let mut r: Vec<f64> = x.iter().zip(y).map(|(x, y)| x / y).collect();
            median(&mut r)
        };
        let (trust, token_all) = (medians[0], medians[3]);
        println!("  ratios, median of the per-round ratios:");
        println!(
            "  token (all) / trust      {:>8.2}   goal >= 0.9",
            paired(3, 0)
        );
        println!(
            "  token (all) / floor      {:>8.2}   goal >= 1.0 (the password method on an MD5 secret)",
            paired(3, 2)
        );
        println!(
            "  token (all) / SCRAM      {:>8.2}   goal >= 2.5",
            paired(3, 1)
        );
        println!("  token (none) / trust     {:>8.2}", paired(4, 0));
        println!("  floor / trust            {:>8.2}", paired(2, 0));
        println!(
            "  trust / SCRAM            {:>8.2}   (the ceiling for any login method)",
            paired(0, 1)
        );
        println!(
            "  audit line cost          {:>7.1} %   goal <= 5 %  (log_logins none vs all)",
            (paired(4, 3) - 1.0) * 100.0
        );
        println!(
            "  10,000 roles / 10 roles  {:>8.2}   goal >= 0.95 (token logins, audit on)",
            paired(5, 3)
        );
        println!(
            "  cost of a token login over trust: {:.3} ms per connection (from the medians)",
            (1000.0 / token_all) - (1000.0 / trust)
        );
    }
    println!("\nidentity-provider requests during {token_logins} token logins: {requests}");
    let shmem = aad_pg.sql(
        "SELECT string_agg(name || ' ' || size, ', ' ORDER BY name) || '; total ' || sum(size) \
         FROM pg_shmem_allocations WHERE name LIKE 'pgaadauth%'",
    );
    println!("pgaadauth shared memory at default settings (max_keys = 64): {shmem} bytes");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    cpu
}
