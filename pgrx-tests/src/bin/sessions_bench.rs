//! What session identity, claims and revocations cost a login: pgbench -C token logins on one
//! pgaadauth server, with `pgaadauth.session_claims` off and on (switched by reload), and on a
//! second server that enforces 1,000 revocations of other principals under
//! `pgaadauth.session_lifetime = token` (its session worker checking every session each second);
//! trust on a server without pgaadauth as the floor. The configurations alternate within each
//! round; ratios are medians of the per-round ratios. Run by bench/sessions.sh (after a release
//! install). Environment: BENCH_ROUNDS (10), BENCH_SECONDS (3), BENCH_CLIENTS (1).

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1};
use pgaadauth_e2e::pgbench::{env_or, median, pgbench};
use std::time::Duration;

const OID: &str = "be4c0000-1111-4222-8333-444455556666";

fn main() {
    let rounds: usize = env_or("BENCH_ROUNDS", 10);
    let seconds: u32 = env_or("BENCH_SECONDS", 3);
    let clients: u32 = env_or("BENCH_CLIENTS", 1);
    let idp = Idp::start(&[&RSA1]);
    let server = |name: &str, extra: &[(&'static str, &str)]| {
        let mut settings = idp.entra_settings();
        settings.push(("pgaadauth.log_logins", "none".to_string()));
        settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let pg = Cluster::start(name, &settings);
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('bench_user', '{OID}', 'user', false, false)"
        ));
        pg
    };
    let plain_pg = server("bench-sessions", &[]);
    let revoking_pg = server(
        "bench-sessions-revoked",
        &[("pgaadauth.session_lifetime", "token")],
    );
    revoking_pg.sql(
        "SELECT count(pgaadauth_revoke_tokens(md5(i::text)::uuid::text)) FROM generate_series(1, 1000) AS i",
    );
    let trust = Cluster::start_plain(
        "bench-sessions-trust",
        "host all all 127.0.0.1/32 trust\n",
        &[],
    );
    trust.sql("CREATE ROLE trust_user LOGIN");
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    for pg in [&plain_pg, &revoking_pg] {
        assert!(
            Cluster::wait_for(Duration::from_secs(20), || pg
                .connect("bench_user", &token)
                .is_ok()),
            "no keys: {}",
            pg.log()
        );
    }
    assert_eq!(
        revoking_pg.sql("SELECT count(*) FROM pgaadauth_list_revocations() WHERE enforced"),
        "1000"
    );
    let script = std::env::temp_dir().join("pgaadauth-bench-select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let script = script.display().to_string();

    // (name, server, user, password, session_claims to set first)
    type Config<'a> = (
        &'a str,
        &'a Cluster,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    let configs: [Config; 4] = [
        ("trust (no pgaadauth)", &trust, "trust_user", None, None),
        ("token", &plain_pg, "bench_user", Some(&token), Some("off")),
        (
            "token, session_claims=on",
            &plain_pg,
            "bench_user",
            Some(&token),
            Some("on"),
        ),
        (
            "token, 1,000 revocations",
            &revoking_pg,
            "bench_user",
            Some(&token),
            None,
        ),
    ];
    println!(
        "pgaadauth session benchmark: pgbench -C, SELECT 1, {clients} client(s), {rounds} rounds x {seconds} s, token {} bytes",
        token.len()
    );
    let mut tps = vec![Vec::new(); configs.len()];
    for round in 0..rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let (_, pg, user, password, claims_setting) = configs[i];
            if let Some(v) = claims_setting {
                pg.set(&[("pgaadauth.session_claims", v)]);
            }
            let run = pgbench(
                trust.bindir(),
                pg.port,
                user,
                password,
                clients,
                seconds,
                &script,
            );
            tps[i].push(run.tps);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    println!("\nconnections per second, median of {rounds}:");
    for (i, (name, ..)) in configs.iter().enumerate() {
        println!("  {name:<28} {:>8.1}", median(&mut tps[i].clone()));
    }
    let ratio = |a: usize, b: usize| {
        median(
            &mut tps[a]
                .iter()
                .zip(&tps[b])
                .map(|(x, y)| x / y)
                .collect::<Vec<_>>(),
        )
    };
    let cost = |a: usize| {
        (1000.0 / median(&mut tps[a].clone()) - 1000.0 / median(&mut tps[1].clone())) * 1000.0
    };
    println!("ratios, median of the per-round ratios:");
    println!(
        "  token / trust                          {:>6.3}",
        ratio(1, 0)
    );
    println!(
        "  session_claims=on / off                {:>6.3}   ({:+.0} us per login)",
        ratio(2, 1),
        cost(2)
    );
    println!(
        "  1,000 revocations / none               {:>6.3}   ({:+.0} us per login)",
        ratio(3, 1),
        cost(3)
    );
}
