//! pgaadauth-proxy (docs/proxy.md) against a server that takes token logins only over TLS:
//! psql with no password; logins after the first token expired (tokens of a few seconds from
//! the test provider's managed identity endpoint, in App Service's protocol); a server whose
//! certificate another CA signed, refused before any credential reaches it; a cancel of
//! pg_sleep; the password fallback with its NOTICE, and a wrong password refused; a psycopg
//! pool through the proxy past a token's lifetime; no token in the proxy's output.

use pgaadauth_e2e::cluster::{private_file, startup_packet, Cluster};
use pgaadauth_e2e::idp::{fixture_path, Idp};
use pgaadauth_e2e::managed_identity::{served_identity, IDENTITY_HEADER};
use pgaadauth_e2e::proxy::Proxy;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Seconds a token from the test provider is valid.
const LIFETIME: i64 = 4;
const ROLE: &str = "report-app";
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    idp: Idp,
    pg: Cluster,
}

/// The provider issuing short tokens for the managed identity ROLE, mapped to a role; a server
/// taking TCP logins only over TLS (pgaadauth's trust line).
fn setup(name: &str) -> Setup {
    let (idp, pg) = served_identity(
        name,
        ROLE,
        LIFETIME,
        &[
            ("pgaadauth.clock_skew", "2".into()),
            ("log_connections", "on".into()),
        ],
    );
    Setup { idp, pg }
}

impl Setup {
    fn upstream(&self, ca: &str) -> String {
        format!(
            "host=127.0.0.1 port={} sslmode=verify-full sslrootcert={}",
            self.pg.port,
            fixture_path(ca)
        )
    }

    /// The proxy in front of the server, tokens from the managed identity, and `extra` args.
    fn proxy(&self, name: &str, ca: &str, extra: &[&str]) -> Proxy {
        let upstream = self.upstream(ca);
        let mut args = vec![
            "--upstream",
            &upstream,
            "--token-source",
            "managed-identity",
        ];
        args.extend_from_slice(extra);
        let endpoint = self.idp.identity_endpoint();
        Proxy::start(
            name,
            &args,
            &[
                ("IDENTITY_ENDPOINT", &endpoint),
                ("IDENTITY_HEADER", IDENTITY_HEADER),
            ],
        )
    }

    /// psql to `host` (an address, or a socket's directory) and `port` as `user`, with libpq's
    /// `env` (and no PGPASSWORD unless given there), running `sql`: (success, output).
    fn run_psql(
        &self,
        host: &str,
        port: u16,
        user: &str,
        env: &[(&str, &str)],
        sql: &str,
    ) -> (bool, String) {
        let out = Command::new(self.pg.bindir().join("psql"))
            .args(["-XAtw", "-h", host, "-p", &port.to_string(), "-U", user])
            .args(["-d", "postgres", "-c", sql])
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim().to_string())
    }

    /// psql through `proxy` as `user`, without a password unless given: (success, output).
    fn psql(&self, proxy: &Proxy, user: &str, password: Option<&str>, sql: &str) -> (bool, String) {
        let env: Vec<(&str, &str)> = password.map(|p| ("PGPASSWORD", p)).into_iter().collect();
        self.run_psql("127.0.0.1", proxy.port, user, &env, sql)
    }

    /// Whether `token` logs ROLE in directly to the server (TLS, verify-full).
    fn direct_login(&self, token: &str) -> bool {
        let ca = fixture_path("ca.pem");
        let env = [
            ("PGPASSWORD", token),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca.as_str()),
        ];
        self.run_psql("127.0.0.1", self.pg.port, ROLE, &env, "SELECT 1")
            .0
    }

    /// The proxy's output holds none of the tokens the provider issued.
    fn no_token_in(&self, proxy: &Proxy) {
        let out = proxy.output();
        for token in self.idp.managed_identity_tokens() {
            assert!(
                !out.contains(&token),
                "a token in the proxy's output:\n{out}"
            );
            let signature = token.rsplit('.').next().unwrap();
            assert!(!out.contains(signature));
        }
        assert!(!out.contains("eyJ"), "{out}");
    }
}

#[test]
fn psql_logs_in_without_a_password_and_later_logins_take_a_new_token() {
    let s = setup("proxy-login");
    let proxy = s.proxy("login", "ca.pem", &[]);
    let (ok, out) = s.psql(
        &proxy,
        ROLE,
        None,
        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{out}\n{}", proxy.output());
    assert_eq!(out, format!("{ROLE}|t"), "over TLS to the server");
    // Once the server refuses the first token (expired, past the skew), logins through the
    // proxy go on: it has fetched another.
    let first = s.idp.managed_identity_tokens()[0].clone();
    assert!(Cluster::wait_for(WAIT, || !s.direct_login(&first)));
    let detail = s.pg.failure_detail(ROLE).unwrap_or_default();
    assert!(detail.contains("The token expired at"), "{detail}");
    let (ok, out) = s.psql(&proxy, ROLE, None, "SELECT current_user");
    assert!(ok, "{out}\n{}", proxy.output());
    assert_eq!(out, ROLE);
    assert!(s.idp.managed_identity_tokens().len() >= 2);
    s.no_token_in(&proxy);
}

#[test]
fn a_server_certificate_of_another_ca_gets_no_credential() {
    let s = setup("proxy-ca");
    let proxy = s.proxy("ca", "other-ca.pem", &[]);
    let (ok, out) = s.psql(&proxy, ROLE, None, "SELECT 1");
    assert!(!ok, "{out}");
    assert!(out.contains("no credential sent"), "{out}");
    // The server saw a TLS handshake refused (its backend logs it once the proxy has hung
    // up, maybe after psql returned), and nothing of a login.
    assert!(
        Cluster::wait_for(WAIT, || s
            .pg
            .log()
            .contains("could not accept SSL connection")),
        "{}",
        s.pg.log()
    );
    let log = s.pg.log();
    assert!(!log.contains(&format!("role={ROLE}")), "{log}");
    assert!(!log.contains(&format!("user={ROLE}")), "{log}");
    s.no_token_in(&proxy);
}

#[test]
fn a_cancel_reaches_the_server() {
    let s = setup("proxy-cancel");
    let proxy = s.proxy("cancel", "ca.pem", &[]);
    let config = format!(
        "host=127.0.0.1 port={} user={ROLE} dbname=postgres",
        proxy.port
    );
    let mut client = postgres::Client::connect(&config, postgres::NoTls).unwrap();
    let cancel = client.cancel_token();
    let sleeper = std::thread::spawn(move || client.batch_execute("SELECT pg_sleep(60)"));
    assert!(Cluster::wait_for(WAIT, || {
        s.pg.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'"
    ) == "1"
    }));
    cancel.cancel_query(postgres::NoTls).unwrap();
    let e = sleeper.join().unwrap().unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().clone()),
        Some(postgres::error::SqlState::QUERY_CANCELED),
        "{e}"
    );
}

#[test]
fn the_password_fallback_says_so_and_a_wrong_password_is_refused() {
    let s = setup("proxy-fallback");
    s.pg.sql("CREATE ROLE pat LOGIN PASSWORD 'pat-secret'");
    let proxy = s.proxy("fallback", "ca.pem", &["--fallback-password"]);
    let (ok, out) = s.psql(&proxy, "pat", Some("pat-secret"), "SELECT current_user");
    assert!(ok, "{out}\n{}", proxy.output());
    // pgaadauth asks a role without a label for its SCRAM password, which no token answers.
    assert!(
        out.contains("NOTICE:  pgaadauth-proxy: logged in with your password, not Microsoft Entra ID (the server asked for SASL, not a token)"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "pat"), "{out}");
    let (ok, out) = s.psql(&proxy, "pat", Some("wrong"), "SELECT current_user");
    assert!(!ok, "{out}");
    assert!(
        out.contains("password authentication failed for user \"pat\""),
        "{out}"
    );
    // Without the fallback, no login: the proxy says why.
    let strict = s.proxy("strict", "ca.pem", &[]);
    let (ok, out) = s.psql(&strict, "pat", Some("pat-secret"), "SELECT current_user");
    assert!(
        !ok && out.contains("the server asked \"pat\" for SASL, not a token"),
        "{out}"
    );
    s.no_token_in(&proxy);
    assert!(!proxy.output().contains("pat-secret"));
}

#[test]
fn a_psycopg_pool_through_the_proxy_outlives_the_first_token() {
    let s = setup("proxy-pool");
    let proxy = s.proxy("pool", "ca.pem", &[]);
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/clients-venv/bin/python");
    let script = format!(
        r#"
import contextlib, time
from psycopg_pool import ConnectionPool
def show(label, conn):
    print(label, *conn.execute("SELECT current_user, pg_backend_pid()").fetchone())
with ConnectionPool("host=127.0.0.1 port={port} user={ROLE} dbname=postgres", min_size=1, max_size=4, open=True) as pool:
    with pool.connection() as conn:
        show("first", conn)
    time.sleep({pause})
    with contextlib.ExitStack() as held:
        for conn in [held.enter_context(pool.connection()) for _ in range(4)]:
            show("later", conn)
"#,
        port = proxy.port,
        pause = LIFETIME + 4
    );
    let out = Command::new(python).arg("-c").arg(script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.output()
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(rows.iter().all(|r| r[1] == ROLE), "{text}");
    let later: std::collections::HashSet<&str> = rows[1..].iter().map(|r| r[2]).collect();
    assert_eq!(later.len(), 4, "four sessions at once: {text}");
    assert!(
        s.idp.managed_identity_tokens().len() >= 2,
        "the later connections took a new token"
    );
    s.no_token_in(&proxy);
}

#[test]
fn tls_from_clients_a_unix_socket_and_a_pinned_role() {
    let s = setup("proxy-tls");
    let dir =
        pgaadauth_e2e::cluster::base_dir().join(format!("proxy-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join(".s.PGSQL.6432");
    let socket_arg = socket.display().to_string();
    let (cert, key) = client_tls("proxy-client-tls.key");
    let proxy = s.proxy(
        "tls",
        "ca.pem",
        &[
            "--listen",
            &socket_arg,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--user",
            ROLE,
        ],
    );
    // TLS with the client, verified by it; any user name logs in as the pinned role.
    let ca = fixture_path("ca.pem");
    let tls = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())];
    let (ok, out) = s.run_psql(
        "127.0.0.1",
        proxy.port,
        "anyone",
        &tls,
        "SELECT current_user",
    );
    assert!(ok, "{out}");
    assert_eq!(out, ROLE);
    // The Unix socket: the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out) = s.run_psql(
        dir.to_str().unwrap(),
        6432,
        "someone",
        &[],
        "SELECT current_user",
    );
    assert!(ok, "{out}");
    assert_eq!(out, ROLE);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_copies_pass_unchanged_both_ways_with_and_without_client_tls() {
    let s = setup("proxy-copy");
    s.pg.sql(&format!(
        "CREATE TABLE lines (n serial PRIMARY KEY, line text); \
         GRANT ALL ON lines, lines_n_seq TO \"{ROLE}\""
    ));
    let (cert, key) = client_tls("proxy-copy-tls.key");
    let proxy = s.proxy("copy", "ca.pem", &["--tls-cert", &cert, "--tls-key", &key]);
    // About 16 MB of lines, each different.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let text: String = (0..150_000)
        .map(|i| {
            let mut line = format!("{i:08}");
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                line.push_str(&format!(" {x:016x}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n");
    let file =
        pgaadauth_e2e::cluster::base_dir().join(format!("proxy-copy-lines-{}", std::process::id()));
    std::fs::write(&file, format!("{text}\n")).unwrap();
    let ca = fixture_path("ca.pem");
    for env in [
        vec![("PGSSLMODE", "disable")],
        vec![("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())],
    ] {
        s.pg.sql("TRUNCATE lines RESTART IDENTITY");
        let upload = format!("\\copy lines(line) FROM '{}'", file.display());
        let (ok, out) = s.run_psql("127.0.0.1", proxy.port, ROLE, &env, &upload);
        assert!(ok && out == "COPY 150000", "{env:?}: {out}");
        // What the server holds, read past the proxy.
        let stored =
            s.pg.sql("SELECT string_agg(line, E'\\n' ORDER BY n) FROM lines");
        assert!(stored == text, "{env:?}: the server holds other lines");
        let (ok, out) = s.run_psql(
            "127.0.0.1",
            proxy.port,
            ROLE,
            &env,
            "COPY (SELECT line FROM lines ORDER BY n) TO STDOUT",
        );
        assert!(ok, "{env:?}: {}", &out[..out.len().min(500)]);
        assert!(out == text, "{env:?}: other lines came back");
    }
    let _ = std::fs::remove_file(&file);
    s.no_token_in(&proxy);
}

/// The proxy's certificate and key (a private copy named `name`) for TLS with its clients.
fn client_tls(name: &str) -> (String, String) {
    let key = private_file(
        name,
        &std::fs::read_to_string(fixture_path("tls.key")).unwrap(),
    );
    (fixture_path("tls.pem"), key.display().to_string())
}

/// The relay threads the proxy has (each logged-in connection has two).
fn relay_threads(proxy: &Proxy) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", proxy.pid()))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "relay")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_session_the_server_ends_ends_for_an_idle_client_and_sockets_have_keepalive() {
    use std::io::{Read, Write};
    let s = setup("proxy-end");
    let proxy = s.proxy("end", "ca.pem", &[]);
    // A client that logs in and then neither reads nor writes, as psql at its prompt.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client
        .write_all(&startup_packet(&[("user", ROLE), ("database", "postgres")]))
        .unwrap();
    let mut seen = Vec::new();
    // Until ReadyForQuery ('Z', length 5, then the status).
    while !seen.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5]) {
        let mut buf = [0u8; 4096];
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "the proxy closed the login: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(Cluster::wait_for(WAIT, || relay_threads(&proxy) == 2));
    // Both of the proxy's sockets of this connection have TCP keepalive ("tr" 2 in
    // /proc/net/tcp: its timer runs).
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let with = |port: u16, local: bool| {
        tcp.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let address = if local { f[1] } else { f[2] };
            address.ends_with(&format!(":{port:04X}")) && f[3] == "01" && f[5].starts_with("02:")
        })
    };
    assert!(with(proxy.port, true), "the client's socket:\n{tcp}");
    assert!(with(s.pg.port, false), "the server's socket:\n{tcp}");
    // The server ends the session: the client reads the server's FATAL and the end, and the
    // relay's threads are gone while the client still holds its socket.
    s.pg.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ROLE}'"
    ));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(
        String::from_utf8_lossy(&rest).contains("terminating connection"),
        "{rest:?}"
    );
    assert!(
        Cluster::wait_for(WAIT, || relay_threads(&proxy) == 0),
        "{} relay threads remain",
        relay_threads(&proxy)
    );
    drop(client);
    s.no_token_in(&proxy);
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let ca = fixture_path("ca.pem");
    let db = format!("host=db sslrootcert={ca}");
    for (args, needle) in [
        (
            vec!["--upstream", "host=db sslmode=require"],
            "only verify-full or verify-ca",
        ),
        (
            vec!["--upstream", "host=db sslmode=verify-ca"],
            "needs sslrootcert=<a file>",
        ),
        (
            vec!["--upstream", "host=db sslrootcert=/nonexistent/ca.pem"],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["--upstream", &db, "--token-source", "command"],
            "needs --token-command",
        ),
        (
            vec!["--upstream", &db, "--token-source", "environment"],
            "needs AZURE_TENANT_ID",
        ),
    ] {
        let (refused, out) = Proxy::refuses(&args);
        assert!(refused && out.contains(needle), "{args:?}: {out}");
    }
}
