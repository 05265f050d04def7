//! The examples of docs/clients.md, run as a user runs them: each client library's pool against
//! a server that requires TLS, with tokens from the test provider that expire after a few
//! seconds. Each pool must keep opening new connections after the first token has expired,
//! and the sessions it already has must go on. The page's code blocks must be the files run
//! here, byte for byte.
//!
//! The token sources are the page's: azure-identity's DefaultAzureCredential (Python, Node.js)
//! finds a managed identity through IDENTITY_ENDPOINT and IDENTITY_HEADER, which the test
//! provider answers as App Service does; psql, Java and Rust run `az`, here clients/az, which
//! asks the same endpoint. Installed by scripts/setup.sh: the Python packages into
//! target/clients-venv, the npm packages into examples/clients/node_modules, pgjdbc and HikariCP
//! from Debian.

use pgaadauth_e2e::cluster::{base_dir, Cluster};
use pgaadauth_e2e::idp::{fixture_path, oid_for, Idp, RSA1};
use pgaadauth_e2e::managed_identity::{served_identity, IDENTITY_HEADER};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Seconds a token from the test provider is valid.
const LIFETIME: i64 = 4;
/// pgaadauth.clock_skew on the test server, in seconds.
const SKEW: i64 = 2;
/// How long each example waits before it opens new connections: past the first token's
/// expiry and the skew (both in whole seconds: the token is accepted until the second after).
const PAUSE: &str = "8";
/// Whether an example's PATH has the Azure CLI stand-in: not for the examples that get their
/// token from azure-identity, so that only the managed identity can have given it.
const WITH_AZ: bool = true;
const NO_AZ: bool = false;
const ROLE: &str = "orders-app";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Setup {
    idp: Idp,
    pg: Cluster,
}

/// The examples of the page.
#[derive(Clone, Copy, Debug)]
enum Example {
    Psql,
    Psycopg,
    NodePostgres,
    HikariCp,
    Deadpool,
}

const EXAMPLES: [Example; 5] = [
    Example::Psql,
    Example::Psycopg,
    Example::NodePostgres,
    Example::HikariCp,
    Example::Deadpool,
];

/// The test provider issuing tokens for the managed identity `orders-app`, mapped to a role;
/// a server that accepts TCP logins only over TLS, with its log prefixed by the epoch time.
fn setup(name: &str) -> Setup {
    let (idp, pg) = served_identity(
        name,
        ROLE,
        LIFETIME,
        &[
            ("pgaadauth.clock_skew", SKEW.to_string()),
            ("log_line_prefix", "%m [%p] %n ".into()),
        ],
    );
    Setup { idp, pg }
}

impl Setup {
    /// `program` with the environment of an application of the page and nothing else of the
    /// test's: libpq's connection variables, the managed identity's, HOME, and on PATH the
    /// server's binaries and, `with_az`, clients/az.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, with_az: bool) -> Command {
        let mut path = format!(
            "{}:{}",
            self.pg.bindir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        if with_az {
            path = format!("{}:{path}", repo("pgrx-tests/clients").display());
        }
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", path)
            .env("HOME", std::env::var("HOME").unwrap_or("/root".into()))
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.pg.port.to_string())
            .env("PGUSER", ROLE)
            .env("PGDATABASE", "postgres")
            .env("PGSSLROOTCERT", fixture_path("ca.pem"))
            .env("IDENTITY_ENDPOINT", self.idp.identity_endpoint())
            .env("IDENTITY_HEADER", IDENTITY_HEADER)
            .current_dir(repo("examples/clients"));
        c
    }

    /// An example, as its test runs it, with `args`.
    fn example(&self, which: Example, args: &[&str]) -> Command {
        let mut c = match which {
            Example::Psql => {
                let mut c = self.command("sh", WITH_AZ);
                c.arg("psql.sh");
                c
            }
            Example::Psycopg => {
                let mut c = self.command(repo("target/clients-venv/bin/python"), NO_AZ);
                c.arg("psycopg_token_pool.py");
                c
            }
            Example::NodePostgres => {
                assert!(
                    repo("examples/clients/node_modules").exists(),
                    "the Node.js example's packages are not installed: scripts/setup.sh \
                     installs them with Node.js 20 or later and npm"
                );
                let mut c = self.command("node", NO_AZ);
                c.arg("node_pool.js");
                c
            }
            Example::HikariCp => {
                let mut c = self.command("java", WITH_AZ);
                c.args(["-cp", java_classpath(), "TokenPool"]);
                c
            }
            Example::Deadpool => self.command(env!("CARGO_BIN_EXE_client-example-rust"), WITH_AZ),
        };
        c.args(args);
        c
    }

    /// psql as `user` with `password` (verifying the server): (success, what it printed).
    fn psql(&self, user: &str, password: &str) -> (bool, String) {
        let out = self
            .command("psql", NO_AZ)
            .env("PGUSER", user)
            .env("PGPASSWORD", password)
            .args(["-XAt", "sslmode=verify-full", "-c", "SELECT current_user"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Run `c`; its standard output, or a failure with everything it and the server said.
    fn run(&self, c: &mut Command) -> String {
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{c:?} failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- server log\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.pg.log()
        );
        stdout
    }

    /// When each backend of ROLE logged in (epoch seconds), by pid, from the audit lines.
    fn logins(&self) -> HashMap<u32, f64> {
        let log = self.pg.log();
        assert!(
            !log.contains(&format!("outcome=rejected role={ROLE}")),
            "a login was refused:\n{log}"
        );
        log.lines()
            .filter(|l| l.contains(&format!("login outcome=accepted role={ROLE} ")))
            .map(|l| {
                let after_pid = &l[l.find(" [").unwrap() + 2..];
                let (pid, rest) = after_pid.split_once("] ").unwrap();
                let epoch = rest.split_whitespace().next().unwrap();
                (pid.parse().unwrap(), epoch.parse().unwrap())
            })
            .collect()
    }

    /// Check an example's output: one `first` line and four `later` lines, `<label> <role>
    /// <pid>`. The later connections are four sessions; the first one goes on past its
    /// token's expiry; and at least two are new, logged in after the first token expired (a
    /// pool may have opened a second connection before the pause).
    fn check_pool_output(&self, output: &str) {
        let rows: Vec<(&str, &str, u32)> = output
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 3, "unexpected line {l:?} in\n{output}");
                (f[0], f[1], f[2].parse().unwrap())
            })
            .collect();
        let labels: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            labels,
            ["first", "later", "later", "later", "later"],
            "{output}"
        );
        assert!(rows.iter().all(|r| r.1 == ROLE), "{output}");
        let first = rows[0].2;
        let later: Vec<u32> = rows[1..].iter().map(|r| r.2).collect();
        let distinct: std::collections::HashSet<u32> = later.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "four sessions at once: {output}");
        assert!(
            later.contains(&first),
            "the first session goes on after its token expired: {output}"
        );
        let logins = self.logins();
        let first_login = logins[&first];
        // The first token was issued before the first login and is accepted until the second
        // after its expiry plus the skew: a login later than that had a newer token.
        let new = later
            .iter()
            .filter(|pid| logins[pid] > first_login + (LIFETIME + SKEW + 1) as f64)
            .count();
        assert!(
            new >= 2,
            "at least two logins after the first token expired ({new}); logins {logins:?}, output\n{output}"
        );
        // And the server did refuse that first token by then.
        let tokens = self.idp.managed_identity_tokens();
        assert!(!tokens.is_empty(), "the example asked for no token");
        let (ok, text) = self.psql(ROLE, &tokens[0]);
        assert!(!ok, "{text}");
        let detail = self.pg.failure_detail(ROLE).unwrap_or_default();
        assert!(detail.contains("The token expired at"), "{detail}");
    }
}

/// The classpath of the Java example, compiled once per test process.
fn java_classpath() -> &'static str {
    static CLASSPATH: OnceLock<String> = OnceLock::new();
    CLASSPATH.get_or_init(|| {
        let classes = base_dir().join(format!("clients-java-classes-{}", std::process::id()));
        let jars = [
            "postgresql.jar",
            "HikariCP.jar",
            "slf4j-api.jar",
            "slf4j-nop.jar",
        ]
        .map(|j| format!("/usr/share/java/{j}"))
        .join(":");
        let out = Command::new("javac")
            .args(["-d", &classes.display().to_string(), "-cp", &jars])
            .arg(repo("examples/clients/TokenPool.java"))
            .output()
            .unwrap();
        assert!(out.status.success(), "javac: {out:?}");
        format!("{}:{jars}", classes.display())
    })
}

/// The page's code blocks that name a file (```lang file=examples/clients/...) are that file;
/// those that name a file to be contained in (```toml contained-in=...) are lines of it.
#[test]
fn the_page_shows_the_files_that_run() {
    let page = read("docs/clients.md");
    let mut shown = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        for word in info.split_whitespace() {
            if let Some(file) = word.strip_prefix("file=") {
                assert_eq!(
                    format!("{}\n", block.join("\n")),
                    read(file),
                    "docs/clients.md shows {file} otherwise than it is"
                );
                shown.push(file.to_string());
            } else if let Some(file) = word.strip_prefix("contained-in=") {
                let text = read(file);
                for l in &block {
                    assert!(text.lines().any(|t| t == *l), "{file} has no line {l:?}");
                }
            }
        }
    }
    for file in [
        "examples/clients/psql.sh",
        "examples/clients/psycopg_token_pool.py",
        "examples/clients/requirements.txt",
        "examples/clients/node_pool.js",
        "examples/clients/package.json",
        "examples/clients/TokenPool.java",
        "examples/clients/rust_pool.rs",
    ] {
        assert!(
            shown.iter().any(|s| s == file),
            "docs/clients.md does not show {file}"
        );
    }
}

#[test]
fn psql_gets_a_fresh_token_for_each_connection() {
    let s = setup("clients-psql");
    let mut psql = s.example(Example::Psql, &[]);
    let first = s.run(&mut psql);
    assert!(first.contains(ROLE), "{first}");
    std::thread::sleep(std::time::Duration::from_secs(PAUSE.parse().unwrap()));
    let second = s.run(&mut psql);
    assert!(second.contains(ROLE), "{second}");
    assert_eq!(s.logins().len(), 2);
    assert_eq!(s.idp.managed_identity_tokens().len(), 2);
}

/// A pool example, run past the first token's expiry.
fn pool_example_outlives_the_first_token(name: &str, which: Example) {
    let s = setup(name);
    let output = s.run(&mut s.example(which, &[PAUSE]));
    s.check_pool_output(&output);
}

#[test]
fn psycopg_pool_opens_new_connections_after_the_first_token_expired() {
    pool_example_outlives_the_first_token("clients-psycopg", Example::Psycopg);
}

#[test]
fn node_postgres_pool_opens_new_connections_after_the_first_token_expired() {
    pool_example_outlives_the_first_token("clients-node", Example::NodePostgres);
}

#[test]
fn hikaricp_over_pgjdbc_opens_new_connections_after_the_first_token_expired() {
    pool_example_outlives_the_first_token("clients-java", Example::HikariCp);
}

#[test]
fn rust_deadpool_opens_new_connections_after_the_first_token_expired() {
    pool_example_outlives_the_first_token("clients-rust", Example::Deadpool);
}

/// Every example checks the server's certificate and name: with a root certificate that did
/// not sign the server's, or under a name the certificate does not have (`localhost`; it names
/// 127.0.0.1), none connects, so no token reaches the server.
#[test]
fn no_example_connects_to_a_server_whose_certificate_it_cannot_verify() {
    let s = setup("clients-unverified");
    let mut running = Vec::new();
    for (what, variable, value) in [
        ("another CA", "PGSSLROOTCERT", fixture_path("other-ca.pem")),
        ("another name", "PGHOST", "localhost".to_string()),
    ] {
        for which in EXAMPLES {
            let child = s
                .example(which, &[])
                .env(variable, &value)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            running.push((format!("{which:?} with {what}"), child));
        }
    }
    for (example, child) in running {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_lowercase()
            + &String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(!out.status.success(), "{example} connected: {said}");
        assert!(
            ["certificat", "hostname", "host name"]
                .iter()
                .any(|w| said.contains(w)),
            "{example} failed otherwise: {said}"
        );
    }
    let log = s.pg.log();
    assert!(!log.contains("pgaadauth: login"), "{log}");
}

/// The client-side mistakes of the page's troubleshooting table, each made once: what the
/// client is told (nothing but "password authentication failed") and the DETAIL the server logs,
/// which the page quotes.
#[test]
fn client_side_mistakes_leave_the_details_the_page_quotes() {
    let s = setup("clients-mistakes");
    let page = read("docs/clients.md");
    let psql = |user: &str, password: &str| s.psql(user, password);
    let az = |args: &[&str]| {
        let token = s.run(
            s.command("az", WITH_AZ)
                .args(["account", "get-access-token"])
                .args(args),
        );
        token.trim().to_string()
    };
    let refused = |user: &str, password: &str, detail: &str| {
        let (ok, text) = psql(user, password);
        assert!(!ok, "{text}");
        assert!(
            text.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{text}"
        );
        let logged = s.pg.failure_detail(user).unwrap_or_default();
        assert!(
            logged.contains(detail),
            "logged {logged:?}, expected {detail:?}"
        );
        assert!(
            page.contains(detail),
            "docs/clients.md does not quote {detail:?}"
        );
    };
    let token_args = ["--resource-type", "oss-rdbms", "--query", "accessToken"];
    let token_args = [&token_args[..], &["--output", "tsv"]].concat();

    // A tool that cuts the password (here at 100 characters, about where psql's own prompt
    // cut it before PostgreSQL 14).
    let token = az(&token_args);
    refused(
        ROLE,
        &token[..100],
        "The password is not a compact JWS token (three base64url parts separated by dots).",
    );
    // Cut inside the signature.
    refused(
        ROLE,
        &token[..token.len() - 20],
        "The token signature does not verify with key \"rsa1\".",
    );

    // A token for another resource: the Azure CLI's default is Azure Resource Manager.
    let arm = az(&["--query", "accessToken", "--output", "tsv"]);
    refused(
        ROLE,
        &arm,
        "The token audience \"https://management.core.windows.net/\" is not an accepted audience",
    );

    // A pool that kept the first token for its new connections.
    std::thread::sleep(std::time::Duration::from_secs((LIFETIME + SKEW + 1) as u64));
    refused(ROLE, &token, "The token expired at");
    assert!(psql(ROLE, &az(&token_args)).0, "a fresh token logs in");

    // A group's member logs in under the group's name, not their own.
    let (group, alice) = (oid_for("db-readers"), oid_for("alice"));
    s.pg.sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('db-readers', '{group}', 'group', false, false)"
    ));
    let mut claims = pgaadauth_e2e::idp::claims(&s.idp.entra_issuer(), &alice);
    claims["upn"] = serde_json::json!("alice@contoso.example");
    claims["groups"] = serde_json::json!([group]);
    let alice_token = pgaadauth_e2e::idp::mint(&RSA1, &claims);
    refused(
        "alice@contoso.example",
        &alice_token,
        "Role \"alice@contoso.example\" does not exist.",
    );
    let (ok, text) = psql("db-readers", &alice_token);
    assert!(ok && text.trim() == "db-readers", "{text}");
}
