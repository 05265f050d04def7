//! Login rate on PostgreSQL 18: the same token by SASL OAUTHBEARER on an `oauth` line
//! (pgaadauth as the validator) and as the password on a `trust` line, of one server, in one
//! libpq 18 client (clients/oauth_client.c), interleaved round by round; prints logins per
//! second of each and their ratio. Run by bench/oauth.sh (after a release install).
//! Environment: BENCH_LOGINS (logins per method and round, 200), BENCH_ROUNDS (10).

use pgaadauth_e2e::clients::run_oauth_client;
use pgaadauth_e2e::cluster::{self, Cluster};
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1, TENANT};
use pgaadauth_e2e::pgbench::env_or;
use std::time::Duration;

const OID: &str = "0a7b0000-1111-4222-8333-444455556666";
const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

fn main() {
    assert!(
        cluster::major() >= 18,
        "the oauth method needs PostgreSQL 18 (PG_CONFIG)"
    );
    let (logins, rounds) = (env_or("BENCH_LOGINS", 200), env_or("BENCH_ROUNDS", 10));
    let idp = Idp::start(&[&RSA1]);
    let issuer = idp.entra_issuer();
    let pg = Cluster::start_with_hba(
        "oauth-bench",
        &[
            ("oauth_validator_libraries", "pgaadauth".into()),
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.log_logins", "failures".into()),
        ],
        &format!(
            "host oauthdb all 127.0.0.1/32 oauth issuer=\"{issuer}\" scope=\"{SCOPE}\" delegate_ident_mapping=1\n\
             host all all 127.0.0.1/32 trust\n"
        ),
    );
    pg.sql("CREATE DATABASE oauthdb");
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('bench_user', '{OID}', 'user', false, false)"
    ));
    let token = mint(&RSA1, &claims(&issuer, OID));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("bench_user", &token)
            .is_ok()),
        "keys were never fetched:\n{}",
        pg.log()
    );
    let base = format!("host=127.0.0.1 port={} user=bench_user", pg.port);
    let oauth = format!(
        "{base} dbname=oauthdb oauth_issuer={issuer}/.well-known/openid-configuration \
         oauth_client_id=pgaadauth-bench"
    );
    let password = format!("{base} dbname=postgres");
    println!(
        "PostgreSQL {}: {rounds} rounds of {logins} logins by each method, interleaved; token {} bytes",
        cluster::major(),
        token.len()
    );
    match run_oauth_client(
        &[
            "bench",
            &logins.to_string(),
            &rounds.to_string(),
            &oauth,
            &password,
        ],
        &token,
    ) {
        Ok(out) => println!("{out}"),
        Err(e) => panic!("benchmark failed: {e}\n{}", pg.log()),
    }
}
