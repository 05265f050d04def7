//! Soak test: 32 concurrent clients for 2 minutes against one server, mixing valid, expired,
//! forged-kid, wrong-audience and other-principal tokens, group logins that need the directory,
//! and passwords, while the provider rotates its signing key every 20 s (signing with the new
//! key at once: logins find it by a kid-miss refresh), the key worker is killed twice and the
//! directory stalls and recovers.
//!
//! Reports decisions, wrong decisions, backends alive past authentication_timeout, mailbox slots
//! in use at the end, postmaster restarts and peak backend RSS; exits 1 when a goal is missed.
//! Run by bench/soak.sh. Environment: SOAK_SECONDS (120), SOAK_CLIENTS (32).

use pgaadauth_e2e::cluster::{private_file, Cluster};
use pgaadauth_e2e::idp::{
    claims, mint, mint_as, Idp, Key, CLIENT_ID, CLIENT_SECRET, EC1, RSA1, RSA2, TENANT,
};
use pgaadauth_e2e::pgbench::env_or;
use postgres::error::SqlState;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const USER: &str = "50a50000-1111-4222-8333-000000000001";
const OTHER: &str = "50a50000-1111-4222-8333-000000000002";
const GROUP: &str = "50a50000-1111-4222-8333-000000000003";
const MEMBER: &str = "50a50000-1111-4222-8333-000000000004";
const OUTSIDER: &str = "50a50000-1111-4222-8333-000000000005";
const AUTH_TIMEOUT: u64 = 4;
/// `ps` counts whole seconds: a backend is stuck when it is still authenticating more than one
/// second after authentication_timeout.
const STUCK_MARGIN: u64 = 1;

/// What a login attempt must come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    Expired,
    ForgedKid,
    WrongAudience,
    OtherPrincipal,
    MemberOverage,
    OutsiderOverage,
    PasswordGood,
    PasswordBad,
}

const KINDS: [Kind; 9] = [
    Kind::Valid,
    Kind::Expired,
    Kind::ForgedKid,
    Kind::WrongAudience,
    Kind::OtherPrincipal,
    Kind::MemberOverage,
    Kind::OutsiderOverage,
    Kind::PasswordGood,
    Kind::PasswordBad,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accept,
    Refuse,
    /// The directory decides and may be stalled: accepted or refused are both right.
    Either,
}

fn expect(kind: Kind) -> Expect {
    match kind {
        Kind::Valid | Kind::PasswordGood => Expect::Accept,
        Kind::MemberOverage => Expect::Either,
        _ => Expect::Refuse,
    }
}

#[derive(Default, Clone)]
struct Tally {
    accepted: usize,
    refused: usize,
    wrong: usize,
    /// Neither accepted nor refused with 28P01 (e.g. the connection ended at
    /// authentication_timeout while the directory stalled).
    other: usize,
}

/// (process id, seconds alive, RSS in KiB, command line) of the postmaster's children.
fn children(postmaster: &str) -> Vec<(String, u64, u64, String)> {
    let out = Command::new("ps")
        .args(["-o", "pid=,etimes=,rss=,args=", "--ppid", postmaster])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.to_string();
            // A process forked within the last instant may show a wrapped-around age: skip it.
            let age = it.next()?.parse().ok().filter(|a| *a < 86_400)?;
            let rss = it.next()?.parse().ok()?;
            Some((pid, age, rss, it.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn postmaster_pid(pg: &Cluster) -> String {
    std::fs::read_to_string(pg.dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string()
}

fn main() {
    let seconds: u64 = env_or("SOAK_SECONDS", 120);
    let clients: usize = env_or("SOAK_CLIENTS", 32);
    let idp = Arc::new(Idp::start(&[&RSA1]));
    for (id, name) in [
        (USER, "user@contoso.example"),
        (MEMBER, "member@contoso.example"),
        (OUTSIDER, "outsider@contoso.example"),
    ] {
        idp.dir_add(id, "user", name);
    }
    idp.dir_add(GROUP, "group", "Soak Group");
    idp.dir_add_member(GROUP, MEMBER);
    let secret = private_file("soak-secret", &format!("{CLIENT_SECRET}\n"));
    let pg = Cluster::start(
        "soak",
        &[
            ("pgaadauth.tenant_id", TENANT.into()),
            ("pgaadauth.authority_host", idp.base()),
            ("pgaadauth.graph_endpoint", idp.base()),
            ("pgaadauth.client_id", CLIENT_ID.into()),
            ("pgaadauth.client_secret_file", secret.display().to_string()),
            ("pgaadauth.allow_http", "on".into()),
            ("pgaadauth.allowed_algorithms", "RS256, ES256".into()),
            ("pgaadauth.min_refresh_interval", "1s".into()),
            ("pgaadauth.kid_miss_wait", "3s".into()),
            ("pgaadauth.http_timeout", "3s".into()),
            ("pgaadauth.group_cache_ttl", "2s".into()),
            ("pgaadauth.log_logins", "failures".into()),
            ("authentication_timeout", format!("{AUTH_TIMEOUT}s")),
            ("max_connections", "150".into()),
        ],
    );
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('soak-user', '{USER}', 'user', false, false)"
    ));
    pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('soak-group', '{GROUP}', 'group', false, false)"
    ));
    pg.sql("CREATE ROLE soak_pw LOGIN PASSWORD 'soak-secret-pw'");
    let signer: Arc<RwLock<&'static Key>> = Arc::new(RwLock::new(&RSA1));
    let issuer = idp.entra_issuer();
    let first = mint(&RSA1, &claims(&issuer, USER));
    assert!(
        Cluster::wait_for(Duration::from_secs(20), || pg
            .connect("soak-user", &first)
            .is_ok()),
        "{}",
        pg.log()
    );
    let postmaster = postmaster_pid(&pg);
    let log_before = pg.log().len();

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Arc<Mutex<BTreeMap<Kind, Tally>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let wrong_examples: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let port = pg.port;
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, tallies, wrong_examples, counter, signer, issuer) = (
                stop.clone(),
                tallies.clone(),
                wrong_examples.clone(),
                counter.clone(),
                signer.clone(),
                issuer.clone(),
            );
            std::thread::spawn(move || {
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    let kind = KINDS[n % KINDS.len()];
                    n += 1 + counter.fetch_add(1, Ordering::Relaxed) % 3;
                    let key = *signer.read().unwrap();
                    let token = |oid: &str, extra: serde_json::Value| {
                        let mut c = claims(&issuer, oid);
                        for (k, v) in extra.as_object().unwrap() {
                            c[k] = v.clone();
                        }
                        mint(key, &c)
                    };
                    let overage = json!({"_claim_names": {"groups": "src1"}});
                    let (user, password) = match kind {
                        Kind::Valid => ("soak-user", token(USER, json!({}))),
                        Kind::Expired => (
                            "soak-user",
                            token(USER, json!({"exp": pgaadauth_e2e::idp::unix_now() - 3600})),
                        ),
                        Kind::ForgedKid => (
                            "soak-user",
                            mint_as(key, Some(&format!("forged-{n}")), &claims(&issuer, USER)),
                        ),
                        Kind::WrongAudience => {
                            ("soak-user", token(USER, json!({"aud": "api://elsewhere"})))
                        }
                        Kind::OtherPrincipal => ("soak-user", token(OTHER, json!({}))),
                        Kind::MemberOverage => ("soak-group", token(MEMBER, overage)),
                        Kind::OutsiderOverage => ("soak-group", token(OUTSIDER, overage)),
                        Kind::PasswordGood => ("soak_pw", "soak-secret-pw".to_string()),
                        Kind::PasswordBad => ("soak_pw", "not-the-password".to_string()),
                    };
                    let result = postgres::Config::new()
                        .host("127.0.0.1")
                        .port(port)
                        .user(user)
                        .password(password)
                        .dbname("postgres")
                        .connect_timeout(Duration::from_secs(20))
                        .connect(postgres::NoTls);
                    let outcome = match &result {
                        Ok(_) => Some(true),
                        Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => Some(false),
                        Err(_) => None,
                    };
                    drop(result);
                    let mut t = tallies.lock().unwrap();
                    let tally = t.entry(kind).or_default();
                    match outcome {
                        None => tally.other += 1,
                        Some(accepted) => {
                            if accepted {
                                tally.accepted += 1;
                            } else {
                                tally.refused += 1;
                            }
                            let wrong = match expect(kind) {
                                Expect::Accept => !accepted,
                                Expect::Refuse => accepted,
                                Expect::Either => false,
                            };
                            if wrong {
                                tally.wrong += 1;
                                let mut ex = wrong_examples.lock().unwrap();
                                if ex.len() < 10 {
                                    ex.push(format!("{kind:?} accepted={accepted}"));
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // The faults, on a schedule (seconds from the start), and the sampling.
    let start = Instant::now();
    let keys: [&'static Key; 3] = [&RSA1, &RSA2, &EC1];
    let mut rotation = 0usize;
    let mut kills = 0;
    let (mut stalled, mut recovered) = (false, false);
    let (mut past_timeout_max, mut rss_peak, mut oldest_auth) = (0usize, 0u64, 0u64);
    let mut events = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = start.elapsed().as_secs();
        if t >= 20 * (rotation as u64 + 1) {
            let (cur, next) = (keys[rotation % 3], keys[(rotation + 1) % 3]);
            idp.publish(&[cur, next]);
            *signer.write().unwrap() = next; // signs with it at once: a kid miss
            rotation += 1;
            events.push(format!("{t:>3} s: key rotated to {}", next.kid));
        }
        let kill_at = [seconds * 30 / 120, seconds * 85 / 120];
        if kills < 2 && t >= kill_at[kills] {
            if let Some(pid) = pg.child_pid("pgaadauth key worker") {
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                events.push(format!("{t:>3} s: key worker {pid} killed"));
            }
            kills += 1;
        }
        if !stalled && t >= seconds * 45 / 120 {
            idp.dir_set_stall(Some(Duration::from_secs(8)));
            stalled = true;
            events.push(format!("{t:>3} s: directory stalls (8 s per request)"));
        }
        if stalled && !recovered && t >= seconds * 65 / 120 {
            idp.dir_set_stall(None);
            recovered = true;
            events.push(format!("{t:>3} s: directory recovers"));
        }
        let kids = children(&postmaster);
        let authenticating = kids
            .iter()
            .filter(|(_, _, _, args)| args.ends_with("authentication"));
        oldest_auth = oldest_auth.max(authenticating.clone().map(|k| k.1).max().unwrap_or(0));
        let stuck = authenticating
            .filter(|(_, age, _, _)| *age > AUTH_TIMEOUT + STUCK_MARGIN)
            .count();
        past_timeout_max = past_timeout_max.max(stuck);
        let rss = kids
            .iter()
            .filter(|(_, _, _, args)| args.contains("127.0.0.1("))
            .map(|(_, _, rss, _)| *rss)
            .max()
            .unwrap_or(0);
        rss_peak = rss_peak.max(rss);
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // Quiet now: every directory question must be collected or freed.
    let settled = Cluster::wait_for(Duration::from_secs(30), || {
        pg.sql("SELECT value FROM pgaadauth_stats() WHERE counter = 'mailbox_slots_in_use'") == "0"
    });
    let slots =
        pg.sql("SELECT value FROM pgaadauth_stats() WHERE counter = 'mailbox_slots_in_use'");
    let log = pg.log();
    let restarts = log[log_before..]
        .matches("all server processes terminated; reinitializing")
        .count()
        + usize::from(postmaster_pid(&pg) != postmaster);

    let t = tallies.lock().unwrap();
    println!("soak: {clients} clients, {seconds} s");
    for e in &events {
        println!("  {e}");
    }
    println!(
        "  {:<16} {:>9} {:>9} {:>7} {:>7}",
        "kind", "accepted", "refused", "wrong", "other"
    );
    let mut total = Tally::default();
    for (kind, x) in t.iter() {
        println!(
            "  {:<16} {:>9} {:>9} {:>7} {:>7}",
            format!("{kind:?}"),
            x.accepted,
            x.refused,
            x.wrong,
            x.other
        );
        total.accepted += x.accepted;
        total.refused += x.refused;
        total.wrong += x.wrong;
        total.other += x.other;
    }
    let decisions = total.accepted + total.refused;
    println!(
        "decisions: {decisions} ({:.0}/s), accepted {}, refused {}, neither (connection ended otherwise) {}",
        decisions as f64 / seconds as f64,
        total.accepted,
        total.refused,
        total.other
    );
    println!("wrong decisions: {} (goal 0)", total.wrong);
    for e in wrong_examples.lock().unwrap().iter() {
        println!("  wrong: {e}");
    }
    println!(
        "backends alive past authentication_timeout ({AUTH_TIMEOUT} s + {STUCK_MARGIN} s), most at once: {past_timeout_max} (goal 0); oldest seen authenticating: {oldest_auth} s"
    );
    println!("mailbox slots in use at the end: {slots} (goal 0)");
    println!("postmaster restarts: {restarts} (goal 0)");
    println!("peak backend RSS: {rss_peak} KiB");
    let ok = total.wrong == 0 && past_timeout_max == 0 && settled && restarts == 0 && decisions > 0;
    println!(
        "soak: {}",
        if ok { "all goals met" } else { "GOALS MISSED" }
    );
    if !ok {
        std::process::exit(1);
    }
}
