//! The pgaadauth demo: a throwaway cluster, a local identity provider, a principal, and a login
//! with a token through psql. Run by scripts/demo.sh after the extension is installed.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, Idp, RSA1, TENANT};
use std::time::Duration;

const OID: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const ROLE: &str = "alice@contoso.example";

fn step(text: &str) {
    println!("\n== {text}");
}

fn main() {
    step("local identity provider (OpenID discovery + JWKS, its own RS256 keys)");
    let idp = Idp::start(&[&RSA1]);
    println!("   authority {}  tenant {TENANT}", idp.base());

    step("throwaway cluster with shared_preload_libraries = 'pgaadauth'");
    let pg = Cluster::start(
        "demo",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    println!("   data directory {}  port {}", pg.dir.display(), pg.port);
    println!("   pg_hba.conf: local all postgres peer / host all all 127.0.0.1/32 trust");

    step("a principal, as on Azure");
    let sql = format!(
        "SELECT pgaadauth_create_principal_with_oid('{ROLE}', '{OID}', 'user', false, false)"
    );
    println!("   postgres=# {sql};");
    println!("   {}", pg.sql(&sql));
    println!(
        "   postgres=# SELECT * FROM pgaadauth_list_principals(false);\n   {}",
        pg.sql("SELECT * FROM pgaadauth_list_principals(false)")
    );

    step("a token from the identity provider, sent as the password");
    let token = mint(&RSA1, &claims(&idp.entra_issuer(), OID));
    println!("   token: {}... ({} bytes)", &token[..24], token.len());
    let sql = "SELECT current_user, session_user";
    println!(
        "   $ PGPASSWORD=$TOKEN psql -h 127.0.0.1 -p {} -U '{ROLE}' -d postgres -c '{sql}'",
        pg.port
    );
    let mut result = (false, String::new());
    Cluster::wait_for(Duration::from_secs(20), || {
        result = pg.psql_login(ROLE, Some(&token), sql);
        result.0
    });
    println!("   {}", result.1);
    assert!(result.0, "token login failed:\n{}", pg.log());

    step("a tampered token is refused; the reason is in the server log only");
    let at = token.len() - 20;
    let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    let (ok, out) = pg.psql_login(ROLE, Some(&tampered), sql);
    assert!(!ok);
    println!("   client: {out}");
    println!(
        "   server log DETAIL: {}",
        pg.failure_detail(ROLE).unwrap_or_default().trim()
    );
    println!("   audit lines (pgaadauth.log_logins = all):");
    for line in pg
        .log()
        .lines()
        .filter(|l| l.contains("pgaadauth: login outcome="))
    {
        let at = line.find("pgaadauth: login").unwrap_or(0);
        println!("   {}", &line[at..]);
    }
    println!("\nThe cluster and the identity provider stop now.");
}
