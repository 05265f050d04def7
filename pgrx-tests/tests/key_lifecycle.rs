//! The key lifecycle with faults injected for real: rotation, floods of unknown kids, provider
//! outages and bad answers, a server started while the provider is down, a terminated key
//! worker, and a standby.

use pgaadauth_e2e::cluster::Cluster;
use pgaadauth_e2e::idp::{claims, mint, mint_as, Idp, Key, Mode, RSA1, RSA2};
use postgres::error::SqlState;
use std::time::{Duration, Instant};

const OID: &str = "7a7a7a7a-1111-4222-8333-444455556666";
const ROLE: &str = "kim";

struct Setup {
    idp: Idp,
    pg: Cluster,
}

impl Setup {
    /// A provider publishing `keys` in `mode`, and a cluster using it (Entra-style settings plus
    /// `extra`) with the principal `kim`.
    fn new(name: &str, keys: &[&Key], mode: Mode, extra: &[(&str, &str)]) -> Setup {
        let idp = Idp::start_in(keys, mode);
        let mut settings = idp.entra_settings();
        settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let pg = Cluster::start(name, &settings);
        pg.sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{ROLE}', '{OID}', 'user', false, false)"
        ));
        Setup { idp, pg }
    }

    fn token(&self, key: &Key) -> String {
        mint(key, &claims(&self.idp.entra_issuer(), OID))
    }

    fn login(&self, token: &str) -> Result<(), postgres::Error> {
        self.pg.connect(ROLE, token).map(|_| ())
    }

    fn wait_login(&self, token: &str, limit: Duration) -> bool {
        Cluster::wait_for(limit, || self.login(token).is_ok())
    }

    fn refused(&self, token: &str) -> String {
        let err = self.login(token).expect_err("login should be refused");
        assert_eq!(
            err.as_db_error().map(|d| d.code()),
            Some(&SqlState::INVALID_PASSWORD),
            "{err}"
        );
        self.pg.failure_detail(ROLE).unwrap_or_default()
    }

    /// Whether every key source reports a failed fetch. What a dead provider's socket says
    /// (refused, reset, closed) is the operating system's business: any error means down.
    fn fetch_failing(&self) -> bool {
        let status = self.status();
        !status.is_empty() && status.lines().all(|l| !l.ends_with('|'))
    }

    /// `pgaadauth_jwks_status()` as `kid|last_error` lines.
    fn status(&self) -> String {
        self.pg.sql("SELECT coalesce(kid, '-') || '|' || coalesce(last_error, '') FROM pgaadauth_jwks_status() ORDER BY kid")
    }
}

#[test]
fn rotation_new_key_is_picked_up_within_kid_miss_wait_and_removed_key_stops_working() {
    let s = Setup::new(
        "rotation",
        &[&RSA1],
        Mode::Normal,
        &[("pgaadauth.kid_miss_wait", "2s")],
    );
    let old = s.token(&RSA1);
    assert!(
        s.wait_login(&old, Duration::from_secs(20)),
        "{}",
        s.pg.log()
    );

    // The provider adds a key and signs with it.
    s.idp.publish(&[&RSA1, &RSA2]);
    let new = s.token(&RSA2);
    let started = Instant::now();
    s.login(&new).expect("a new kid is fetched on demand");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    s.login(&old)
        .expect("the old key works while it is published");

    // The provider removes the old key: once the keys are refreshed, its tokens fail.
    s.idp.publish(&[&RSA2]);
    let summary = s.pg.sql("SELECT pgaadauth_refresh_jwks()");
    assert_eq!(
        summary,
        "1 signing keys cached; 1 of 1 key sources refreshed"
    );
    let detail = s.refused(&old);
    assert!(
        detail.contains("No cached signing key has kid \"rsa1\""),
        "{detail}"
    );
    s.login(&new).expect("the new key keeps working");
}

#[test]
fn flood_of_unknown_kids_costs_at_most_one_fetch_per_min_refresh_interval() {
    let s = Setup::new(
        "flood",
        &[&RSA1],
        Mode::Normal,
        &[("pgaadauth.min_refresh_interval", "60s")],
    );
    assert!(
        s.wait_login(&s.token(&RSA1), Duration::from_secs(20)),
        "{}",
        s.pg.log()
    );
    let before = s.idp.key_set_requests();
    let claims = claims(&s.idp.entra_issuer(), OID);
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (port, claims) = (s.pg.port, claims.clone());
            std::thread::spawn(move || {
                let mut refused = 0;
                for i in 0..125 {
                    let kid = format!("forged-{t}-{i}-{}", std::process::id());
                    let token = mint_as(&RSA2, Some(&kid), &claims);
                    let err = postgres::Config::new()
                        .host("127.0.0.1")
                        .port(port)
                        .user(ROLE)
                        .password(&token)
                        .dbname("postgres")
                        .connect(postgres::NoTls)
                        .err()
                        .expect("forged kid must be refused");
                    if err.as_db_error().map(|d| d.code()) == Some(&SqlState::INVALID_PASSWORD) {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = started.elapsed();
    let fetches = s.idp.key_set_requests() - before;
    println!(
        "500 forged logins in {elapsed:?}: {refused} refused with 28P01, {fetches} key set fetches"
    );
    assert_eq!(refused, 500);
    assert!(fetches <= 1, "{fetches} key set fetches during the flood");
    let detail = s.pg.failure_detail(ROLE).unwrap();
    assert!(
        detail.contains("refreshed less than pgaadauth.min_refresh_interval ago"),
        "{detail}"
    );
}

#[test]
fn outage_keeps_cached_keys_and_recovery_clears_the_error() {
    let s = Setup::new(
        "outage",
        &[&RSA1],
        Mode::Normal,
        &[("pgaadauth.refresh_interval", "1s")],
    );
    let token = s.token(&RSA1);
    assert!(
        s.wait_login(&token, Duration::from_secs(20)),
        "{}",
        s.pg.log()
    );

    s.idp.set_mode(Mode::Down);
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || s.fetch_failing()),
        "{}",
        s.status()
    );
    s.login(&token)
        .expect("cached keys keep logins going during an outage");
    assert!(s.pg.log().contains("could not refresh signing keys"));

    s.idp.set_mode(Mode::Normal);
    assert!(
        Cluster::wait_for(Duration::from_secs(40), || s.status() == "rsa1|"),
        "error not cleared: {}",
        s.status()
    );
    s.login(&token).expect("login after recovery");
}

#[test]
fn bad_answers_never_replace_good_keys() {
    let s = Setup::new(
        "badanswers",
        &[&RSA1],
        Mode::Normal,
        &[
            ("pgaadauth.http_timeout", "1s"),
            ("pgaadauth.kid_miss_wait", "1s"),
            ("pgaadauth.min_refresh_interval", "1s"),
        ],
    );
    let token = s.token(&RSA1);
    assert!(
        s.wait_login(&token, Duration::from_secs(20)),
        "{}",
        s.pg.log()
    );
    let cases = [
        (Mode::Garbage, "not valid JSON"),
        (Mode::EmptySet, "no usable key"),
        (Mode::Huge, "limit"),
        (Mode::ServerError, "HTTP status 500"),
        (Mode::Stall, "timeout"),
    ];
    for (mode, error) in cases {
        s.idp.set_mode(mode);
        let summary = s.pg.sql("SELECT pgaadauth_refresh_jwks()");
        assert_eq!(
            summary, "1 signing keys cached; 0 of 1 key sources refreshed",
            "{mode:?}"
        );
        let status = s.status();
        assert!(
            status.starts_with("rsa1|") && status.to_lowercase().contains(&error.to_lowercase()),
            "{mode:?}: {status}"
        );
        s.login(&token)
            .unwrap_or_else(|e| panic!("{mode:?}: good key lost: {e}"));
    }

    // During a stall, a login with an unknown kid returns within kid_miss_wait and a margin.
    let started = Instant::now();
    let detail = s.refused(&s.token(&RSA2));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        detail.contains("No cached signing key has kid \"rsa2\""),
        "{detail}"
    );

    s.idp.set_mode(Mode::Normal);
    assert_eq!(
        s.pg.sql("SELECT pgaadauth_refresh_jwks()"),
        "1 signing keys cached; 1 of 1 key sources refreshed"
    );
}

#[test]
fn cache_control_max_age_sets_the_next_refresh_within_bounds() {
    let s = Setup::new(
        "maxage",
        &[&RSA1],
        Mode::Normal,
        &[("pgaadauth.min_refresh_interval", "60s")],
    );
    assert!(s.wait_login(&s.token(&RSA1), Duration::from_secs(20)));
    let next = |s: &Setup| -> i64 {
        s.pg.sql("SELECT round(extract(epoch FROM next_refresh - fetched_at)) FROM pgaadauth_jwks_status()").parse().unwrap()
    };
    assert_eq!(next(&s), 3600, "refresh_interval without max-age");
    s.idp.set_max_age(Some(600));
    s.pg.sql("SELECT pgaadauth_refresh_jwks()");
    assert_eq!(next(&s), 600, "the provider's max-age");
    s.idp.set_max_age(Some(5));
    s.pg.sql("SELECT pgaadauth_refresh_jwks()");
    assert_eq!(next(&s), 60, "never below min_refresh_interval");
    s.idp.set_max_age(Some(999_999));
    s.pg.sql("SELECT pgaadauth_refresh_jwks()");
    assert_eq!(next(&s), 3600, "never above refresh_interval");
}

#[test]
fn server_started_while_provider_is_down_gets_keys_when_it_comes_back() {
    let s = Setup::new(
        "startdown",
        &[&RSA1],
        Mode::Down,
        &[("pgaadauth.min_refresh_interval", "1s")],
    );
    let token = s.token(&RSA1);
    let detail = s.refused(&token);
    assert!(
        detail.contains("No signing keys are cached yet"),
        "{detail}"
    );
    assert!(
        s.status().starts_with("-|") && s.fetch_failing(),
        "{}",
        s.status()
    );

    s.idp.set_mode(Mode::Normal);
    let back = Instant::now();
    assert!(
        s.wait_login(&token, Duration::from_secs(10)),
        "{}",
        s.pg.log()
    );
    println!(
        "logged in {:?} after the provider came back",
        back.elapsed()
    );
}

#[test]
fn terminated_worker_comes_back_and_logins_continue() {
    let s = Setup::new("workerdeath", &[&RSA1], Mode::Normal, &[]);
    let token = s.token(&RSA1);
    assert!(s.wait_login(&token, Duration::from_secs(20)));
    // A worker without a database connection is not in pg_stat_activity: it is the
    // postmaster's child titled "pgaadauth key worker".
    let worker = || s.pg.child_pid("pgaadauth key worker").unwrap_or_default();
    let pid = worker();
    assert!(!pid.is_empty());
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    s.login(&token)
        .expect("cached keys stay while the worker is away");
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || {
            let now = worker();
            !now.is_empty() && now != pid
        }),
        "the worker did not come back (pgrep: {:?}):\n{}",
        worker(),
        s.pg.log()
    );
    s.login(&token).expect("login after the worker came back");
    assert_eq!(
        s.pg.sql("SELECT count(*) FROM pgaadauth_jwks_status() WHERE kid = 'rsa1'"),
        "1"
    );
}

#[test]
fn standby_accepts_token_logins_for_principals_created_on_the_primary() {
    let s = Setup::new("primary", &[&RSA1], Mode::Normal, &[]);
    let token = s.token(&RSA1);
    assert!(s.wait_login(&token, Duration::from_secs(20)));
    let standby = Cluster::standby_of(&s.pg, "standby");
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || standby
            .connect(ROLE, &token)
            .is_ok()),
        "{}",
        standby.log()
    );
    let mut client = standby.connect(ROLE, &token).unwrap();
    let row = client
        .query_one("SELECT current_user::text, pg_is_in_recovery()", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        (ROLE.to_string(), true)
    );
}

/// Two issuers found through discovery, each with its own keys: a key only verifies tokens of
/// the issuer whose key set holds it. A second issuer added by reload is fetched at once.
#[test]
fn several_sources_keys_bound_to_their_issuer_and_reload_adds_a_source() {
    use pgaadauth_e2e::idp::EC1;
    let a = Idp::start(&[&RSA1]);
    let b = Idp::start(&[&EC1]);
    let (iss_a, iss_b) = (
        format!("{}/realms/a", a.base()),
        format!("{}/realms/b", b.base()),
    );
    let pg = Cluster::start(
        "sources",
        &[
            ("pgaadauth.issuers", iss_a.clone()),
            ("pgaadauth.allowed_algorithms", "RS256, ES256".into()),
            ("pgaadauth.allow_http", "on".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('{ROLE}', '{OID}', 'user', false, false)"
    ));
    let from_a = mint(&RSA1, &claims(&iss_a, OID));
    assert!(Cluster::wait_for(Duration::from_secs(20), || pg
        .connect(ROLE, &from_a)
        .is_ok()));
    assert!(b.requests().is_empty(), "B is not configured yet");

    // Reload with a second issuer: its keys are fetched without waiting for refresh_interval.
    pg.set(&[("pgaadauth.issuers", &format!("{iss_a}, {iss_b}"))]);
    let from_b = mint(&EC1, &claims(&iss_b, OID));
    assert!(
        Cluster::wait_for(Duration::from_secs(10), || pg
            .connect(ROLE, &from_b)
            .is_ok()),
        "ES256 token of the second issuer: {}",
        pg.log()
    );
    let rows = pg
        .sql("SELECT kid || ' ' || issuer || ' ' || kty FROM pgaadauth_jwks_status() ORDER BY kid");
    assert_eq!(rows, format!("ec1 {iss_b} EC P-256\nrsa1 {iss_a} RSA"));

    // A's key cannot vouch for a token claiming to come from B.
    let forged = mint(&RSA1, &claims(&iss_b, OID));
    let err = pg.connect(ROLE, &forged).err().expect("refused");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::INVALID_PASSWORD)
    );
    let detail = pg.failure_detail(ROLE).unwrap();
    assert!(
        detail.contains(&format!(
            "differs from the issuer \"{iss_a}\" whose key set holds key \"rsa1\""
        )),
        "{detail}"
    );

    // Dropping A on reload drops its keys.
    pg.set(&[("pgaadauth.issuers", &iss_b)]);
    assert!(Cluster::wait_for(Duration::from_secs(10), || pg
        .connect(ROLE, &from_a)
        .is_err()));
    assert_eq!(
        pg.sql("SELECT string_agg(kid, ',') FROM pgaadauth_jwks_status()"),
        "ec1"
    );
}

/// While refreshes fail, cached keys are served (with a warning) for max_stale, then refused.
#[test]
fn keys_are_served_stale_until_max_stale_then_refused() {
    let s = Setup::new(
        "maxstale",
        &[&RSA1],
        Mode::Normal,
        &[
            ("pgaadauth.refresh_interval", "1s"),
            ("pgaadauth.max_stale", "4s"),
        ],
    );
    let token = s.token(&RSA1);
    assert!(s.wait_login(&token, Duration::from_secs(20)));
    s.idp.set_mode(Mode::Down);
    let down = Instant::now();
    assert!(Cluster::wait_for(Duration::from_secs(5), || s.fetch_failing()));
    s.login(&token).expect("stale keys are still served");
    assert!(Cluster::wait_for(Duration::from_secs(5), || s
        .pg
        .log()
        .contains("serving signing keys from")));
    assert!(Cluster::wait_for(Duration::from_secs(15), || s
        .login(&token)
        .is_err()));
    assert!(
        down.elapsed() >= Duration::from_secs(4),
        "refused too early: {:?}",
        down.elapsed()
    );
    let detail = s.pg.failure_detail(ROLE).unwrap();
    assert!(detail.contains("beyond pgaadauth.max_stale"), "{detail}");
    s.idp.set_mode(Mode::Normal);
    assert!(
        s.wait_login(&token, Duration::from_secs(40)),
        "{}",
        s.status()
    );
}

/// More keys than pgaadauth.max_keys is a failed refresh (the last good keys stay), and keys of
/// unsupported types are skipped with a log line.
#[test]
fn too_many_keys_keep_the_old_set_and_unsupported_keys_are_skipped() {
    use pgaadauth_e2e::idp::OCT;
    let s = Setup::new(
        "maxkeys",
        &[&RSA1, &OCT],
        Mode::Normal,
        &[("pgaadauth.max_keys", "1")],
    );
    let token = s.token(&RSA1);
    assert!(s.wait_login(&token, Duration::from_secs(20)));
    assert!(
        s.pg.log().contains("skipped a signing key from"),
        "{}",
        s.pg.log()
    );
    assert!(s.pg.log().contains("key type \"oct\" is not supported"));

    s.idp.publish(&[&RSA1, &RSA2]);
    assert_eq!(
        s.pg.sql("SELECT pgaadauth_refresh_jwks()"),
        "1 signing keys cached; 0 of 1 key sources refreshed"
    );
    assert!(
        s.status().contains("raise pgaadauth.max_keys"),
        "{}",
        s.status()
    );
    s.login(&token).expect("the last good key stays");
}
