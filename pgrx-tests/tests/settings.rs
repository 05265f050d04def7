//! Settings as a DBA meets them: invalid values in postgresql.conf are refused on reload with a
//! message naming the problem, and the value in force stays.

use pgaadauth_e2e::cluster::Cluster;
use std::time::Duration;

#[test]
fn invalid_values_are_refused_on_reload_and_the_old_value_stays() {
    let pg = Cluster::start(
        "settings",
        &[("pgaadauth.jwks_uri", "http://127.0.0.1:1/keys".into())],
    );
    let cases = [
        (
            "pgaadauth.allowed_algorithms",
            "HS256",
            "\"HS256\" is not supported",
        ),
        (
            "pgaadauth.allowed_algorithms",
            "none",
            "\"none\" is not supported",
        ),
        (
            "pgaadauth.tenant_id",
            "contoso",
            "\"contoso\" is not a GUID",
        ),
        (
            "pgaadauth.jwks_uri",
            "ftp://keys",
            "\"ftp://keys\" is not an https:// URL",
        ),
        (
            "pgaadauth.issuers",
            "https://ok.example, nope",
            "\"nope\" is not an https:// URL",
        ),
        (
            "pgaadauth.audiences",
            " , ",
            "At least one value is required",
        ),
        ("pgaadauth.principal_claim", "", "A value is required"),
        (
            "pgaadauth.authority_host",
            "login.example",
            "is not an https:// URL",
        ),
    ];
    for (name, value, detail) in cases {
        let before = pg.sql(&format!("SHOW {name}"));
        pg.set(&[(name, value)]);
        let line = format!("invalid value for parameter \"{name}\": \"{value}\"");
        assert!(
            Cluster::wait_for(Duration::from_secs(5), || pg.log().contains(&line)),
            "{name}: no complaint in the log"
        );
        let log = pg.log();
        let at = log.rfind(&line).unwrap();
        assert!(
            log[at..].lines().nth(1).unwrap_or("").contains(detail),
            "{name}: {}",
            &log[at..]
        );
        assert_eq!(pg.sql(&format!("SHOW {name}")), before, "{name} changed");
        // Take the bad line out again so the next reload is clean.
        pg.set(&[(name, &before)]);
    }
    // Units work as documented.
    pg.set(&[
        ("pgaadauth.clock_skew", "2min"),
        ("pgaadauth.http_timeout", "1500ms"),
    ]);
    assert_eq!(pg.sql("SHOW pgaadauth.clock_skew"), "2min");
    assert_eq!(pg.sql("SHOW pgaadauth.http_timeout"), "1500ms");
    // max_keys sizes shared memory: a restart setting.
    assert_eq!(
        pg.sql("SELECT context FROM pg_settings WHERE name = 'pgaadauth.max_keys'"),
        "postmaster"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_settings WHERE name LIKE 'pgaadauth.%' AND context <> 'sighup' AND name <> 'pgaadauth.max_keys'"),
        "0"
    );
}
