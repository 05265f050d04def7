//! Client logins through PgBouncer (auth_type = pam, session pooling) vs direct token logins to
//! the same server, with the same token: `pgbench -C` (a new connection for every `SELECT 1`).
//! Three configurations alternate within each round: direct, PgBouncer with `pam_permit.so`
//! (which checks nothing: the floor of any PAM module in PgBouncer), and PgBouncer with
//! `pam_pgaadauth.so`; prints the medians and the medians of the per-round ratios, per client
//! count. Run by bench/pgbouncer.sh (after a release install). Environment: BENCH_ROUNDS (5),
//! BENCH_SECONDS (3), BENCH_CLIENTS ("1,8").

use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbench::{env_or, median, pgbench};
use pgaadauth_e2e::pgbouncer::{pam_lock, write_pam_service, PgBouncer};
use std::time::Duration;

const OID: &str = "0b0b0000-1111-4222-8333-444455556666";

fn main() {
    let (rounds, seconds) = (env_or("BENCH_ROUNDS", 5), env_or("BENCH_SECONDS", 3));
    let client_counts: Vec<u32> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let _pam = pam_lock();
    let idp = Idp::start(&[&RSA1]);
    let pg = Cluster::start(
        "pgbouncer-bench",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.log_logins", "failures".into()),
        ],
    );
    pg.sql(
        "CREATE ROLE pgbouncer_auth LOGIN PASSWORD 'bench-pooler'; \
         GRANT EXECUTE ON FUNCTION pgaadauth_pooler_login(text, text, text) TO pgbouncer_auth",
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('bench_user', '{OID}', 'user', false, false)"
    ));
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("bench_user", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        pg.log()
    );
    let module = format!(
        "dsn=postgresql://pgbouncer_auth:bench-pooler@127.0.0.1:{}/postgres",
        pg.port
    );
    // The floor: a PAM service that checks nothing (only while this benchmark holds the lock).
    let permit = || {
        std::fs::write(
            "/etc/pam.d/pgbouncer",
            "auth required pam_permit.so\naccount required pam_permit.so\n",
        )
        .unwrap()
    };
    write_pam_service(&module);
    let bouncer = PgBouncer::start("pgbouncer-bench-b", &pg, "session", &["postgres"]);
    let bin = pg.bindir().to_path_buf();
    let script = std::env::temp_dir().join("pgaadauth-bench-select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let script = script.display().to_string();
    let logins_per_second = |port: u16, clients: u32| {
        pgbench(
            &bin,
            port,
            "bench_user",
            Some(&token),
            clients,
            seconds,
            &script,
        )
        .tps
    };
    println!(
        "PostgreSQL {}, PgBouncer 1.18 (session pooling, pool size 4): pgbench -C, \
         {rounds} rounds of {seconds} s per configuration, token {} bytes",
        cluster::major(),
        token.len()
    );
    for clients in client_counts {
        let (mut direct, mut permitted, mut checked) = (vec![], vec![], vec![]);
        let (mut r_permit, mut r_checked) = (vec![], vec![]);
        for _ in 0..rounds {
            let d = logins_per_second(pg.port, clients);
            permit();
            let p = logins_per_second(bouncer.port, clients);
            write_pam_service(&module);
            let c = logins_per_second(bouncer.port, clients);
            direct.push(d);
            permitted.push(p);
            checked.push(c);
            r_permit.push(p / d);
            r_checked.push(c / d);
        }
        println!("{clients} client(s): logins/s, median");
        println!(
            "  direct token logins                 {:8.1}",
            median(&mut direct)
        );
        println!(
            "  PgBouncer, pam_permit (no check)    {:8.1}",
            median(&mut permitted)
        );
        println!(
            "  PgBouncer, pam_pgaadauth            {:8.1}",
            median(&mut checked)
        );
        println!("  ratios, median of the per-round ratios");
        println!(
            "  pam_permit / direct                 {:8.2}",
            median(&mut r_permit)
        );
        println!(
            "  pam_pgaadauth / direct              {:8.2}",
            median(&mut r_checked)
        );
    }
    let server_logins =
        pg.sql("SELECT value FROM pgaadauth_stats() WHERE counter = 'pgbouncer_logins_accepted'");
    println!("pgbouncer_logins_accepted {server_logins} (every pam_pgaadauth login checked by the server)");
    // Dropping the lock puts back what /etc/pam.d/pgbouncer held before.
}
