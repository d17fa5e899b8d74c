//! Shared test helpers: the golden-file harness and one entry point per layer.
#![allow(dead_code)]

use flowc::check::{self, CheckOptions};
use flowc::diag::render::{self, HumanOptions};
use flowc::workspace::{self, Root};
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `f` on every `*.flow` under `tests/data/<dir>` and compares with the
/// `.out` file beside it. `UPDATE_EXPECT=1` rewrites the expectations.
#[track_caller]
pub fn golden(dir: &str, f: impl Fn(&Path) -> String) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let base = root().join("tests/data").join(dir);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&base)
        .expect("test data folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", base.display());
    let mut failures = Vec::new();
    for input in &inputs {
        let rel = input.strip_prefix(root()).unwrap_or(input).to_path_buf();
        let actual = f(&rel);
        let expect_path = input.with_extension("out");
        if update {
            std::fs::write(&expect_path, &actual).expect("write expectation");
            continue;
        }
        let expected = std::fs::read_to_string(&expect_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("{}\n{}", rel.display(), first_difference(&expected, &actual)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (UPDATE_EXPECT=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        if e.get(i) != a.get(i) {
            return format!(
                "  line {}:\n  - {}\n  + {}",
                i + 1,
                e.get(i).unwrap_or(&"<none>"),
                a.get(i).unwrap_or(&"<none>")
            );
        }
    }
    String::new()
}

pub fn human(diags: &[flowc::diag::Diagnostic], sources: &flowc::source::SourceMap) -> String {
    render::human(diags, sources, HumanOptions { color: false, width: 100 })
}

/// Parses one file: the tree dump, then its rendered syntax diagnostics.
pub fn parse_file(rel: &Path) -> String {
    let text = std::fs::read(root().join(rel)).expect("read input");
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut sources = flowc::source::SourceMap::default();
    let id = sources.add(rel, text);
    let (tree, diags) = flowc::syntax::parse(&sources.get(id).text, id);
    let mut out = flowc::syntax::dump::dump(&tree);
    if !diags.is_empty() {
        out.push_str("--- diagnostics\n");
        out.push_str(&human(&diags, &sources));
    }
    out
}

/// Loads and checks one root file (cwd = crate root, so paths are relative).
pub fn check_file(rel: &Path, opts: &CheckOptions) -> (check::Analysis, workspace::Workspace) {
    let root = Root::discover(rel).expect("a workspace root");
    let ws = workspace::load(&[root], &workspace::read_from_disk);
    let analysis = check::check_all(&ws, &[], opts);
    (analysis, ws)
}

/// The options goldens check with: a fixed present, so checks against the
/// clock give the same answer every day.
pub fn golden_options() -> CheckOptions {
    CheckOptions {
        now: chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").ok().map(|t| t.to_utc()),
        ..CheckOptions::default()
    }
}

/// Checks every `*.flow` of a folder as its own root, as `flowc check DIR` does.
pub fn check_folder(rel: &Path, opts: &CheckOptions) -> (check::Analysis, workspace::Workspace) {
    let base = root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(base.join(rel))
        .expect("test data folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .filter_map(|p| p.strip_prefix(&base).ok().map(Path::to_path_buf))
        .collect();
    files.sort();
    let workspace = workspace::WorkspaceRoot::discover(rel).expect("a workspace root");
    let roots: Vec<Root> = files.into_iter().map(|path| Root { path, workspace: workspace.clone() }).collect();
    let ws = workspace::load(&roots, &workspace::read_from_disk);
    let analysis = check::check_all(&ws, &[], opts);
    (analysis, ws)
}

pub fn check_rendered(rel: &Path) -> String {
    let (analysis, ws) = check_file(rel, &golden_options());
    let mut out = human(&analysis.diags, &ws.sources);
    out.push_str(&render::summary(&analysis.diags));
    out.push('\n');
    out
}

pub fn check_source(text: &str) -> (check::Analysis, workspace::Workspace) {
    let text = text.to_string();
    let read = move |_: &Path| Ok(text.clone().into_bytes());
    let root = Root::discover(Path::new("input.flow")).expect("a workspace root");
    let ws = workspace::load(&[root], &read);
    let analysis = check::check_all(&ws, &[], &CheckOptions::default());
    (analysis, ws)
}

/// Validates a SARIF log against the SARIF 2.1.0 JSON schema shipped in `tests/`.
pub fn assert_valid_sarif(v: &serde_json::Value) {
    // The official schema's `language` patterns have a stray `]` that the
    // validator's meta-schema check rejects; flowc never emits `language`, so
    // the intended pattern stands in for it.
    let text = std::fs::read_to_string(root().join("tests/sarif-schema-2.1.0.json")).expect("schema file");
    let text = text.replace("^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$", "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("compile schema");
    let errors: Vec<String> = validator.iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "SARIF invalid:\n{}", errors.join("\n"));
}
pub mod gen;

/// A fresh directory under the system's temp dir for one test (named, and
/// unique to this process), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("flowc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        TempDir(dir)
    }

    /// A path inside, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database file, `flowc.db`, in a fresh temporary folder that goes
/// with it: what the runtime tests run campaigns on.
pub struct Db {
    pub path: PathBuf,
    _dir: TempDir,
}

impl Db {
    pub fn new(name: &str) -> Db {
        let dir = TempDir::new(&format!("db-{name}"));
        Db { path: dir.0.join("flowc.db"), _dir: dir }
    }

    /// The simulated provider's log beside the database.
    pub fn log(&self) -> PathBuf {
        flowc::runtime::provider::log_path(&self.path)
    }
}

/// Runs the built `flowc` from the repository root, without colour.
pub fn flowc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run flowc")
}

/// The exit code (-1 when a signal ended the process).
pub fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh PostgreSQL database for one test, `flowc_t_<pid>_<n>_<name>` on
/// the server `FLOWC_TEST_POSTGRES` names, dropped with it.
pub struct PgDb {
    /// The database's own URL, for `PgStore::connect` and `--db`.
    pub url: String,
    admin: String,
    name: String,
}

/// The PostgreSQL server the tests may use (`FLOWC_TEST_POSTGRES`, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`): a fresh database on it
/// for this test, or `None` with a message when none is given. Under `CI`
/// a missing server fails the test instead: CI runs every backend.
pub fn postgres(name: &str) -> Option<PgDb> {
    postgres_server().map(|url| PgDb::create(&url, name))
}

/// The server `FLOWC_TEST_POSTGRES` names, or `None` with a message (a
/// failure under `CI`).
pub fn postgres_server() -> Option<String> {
    match std::env::var("FLOWC_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but FLOWC_TEST_POSTGRES is not: CI runs the PostgreSQL tests too"
            );
            eprintln!("skipped: set FLOWC_TEST_POSTGRES=postgres://… to run on PostgreSQL");
            None
        }
    }
}

/// `url` with its database replaced by `db` (URL form only:
/// `postgres://user@host:port/db?params`).
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let query_at = rest.find('?').unwrap_or(rest.len());
    let host_end = rest[..query_at].find('/').unwrap_or(query_at);
    format!("{}{}/{db}{}", &url[..scheme_end], &rest[..host_end], &rest[query_at..])
}

impl PgDb {
    pub fn create(admin: &str, name: &str) -> PgDb {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tail: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(30)
            .collect();
        let db = format!("flowc_t_{}_{n}_{tail}", std::process::id());
        let mut client = postgres::Client::connect(admin, postgres::NoTls).expect("connect to FLOWC_TEST_POSTGRES");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).expect("drop old test database");
        client.batch_execute(&format!("CREATE DATABASE {db}")).expect("create test database");
        PgDb { url: with_database(admin, &db), admin: admin.to_string(), name: db }
    }

    /// A new connection to the test database, as a worker opens one.
    pub fn connect(&self) -> flowc::runtime::postgres::PgStore {
        flowc::runtime::postgres::PgStore::connect(&self.url).expect("connect to the test database")
    }

    /// A raw client on the test database, for tests that reach under the store.
    pub fn raw(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("raw connection")
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Where a runtime test runs: an SQLite file, or a PostgreSQL database
/// (with a folder for the simulated provider's log).
pub enum Backend {
    Sqlite(Db),
    Postgres(PgDb, TempDir),
}

/// The backends a test runs on: SQLite always, PostgreSQL when
/// `FLOWC_TEST_POSTGRES` names a server (see `postgres`).
pub fn backends(name: &str) -> Vec<Backend> {
    backend_makers().iter().map(|make| make(name)).collect()
}

/// Makes a fresh backend of one kind, named after the test.
pub type BackendMaker = Box<dyn Fn(&str) -> Backend>;

/// Makers of fresh backends, one per backend to run on, for a test that
/// needs several fresh stores of each.
pub fn backend_makers() -> Vec<BackendMaker> {
    let mut out: Vec<BackendMaker> = vec![Box::new(|name: &str| Backend::Sqlite(Db::new(name)))];
    if let Some(url) = postgres_server() {
        out.push(Box::new(move |name: &str| {
            Backend::Postgres(PgDb::create(&url, name), TempDir::new(&format!("pg-{name}")))
        }));
    }
    out
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(..) => "postgres",
        }
    }

    /// A new store on this backend (a writer of the SQLite file, a new connection to PostgreSQL).
    pub fn open(&self) -> Box<dyn flowc::runtime::store::Store + Send> {
        match self {
            Backend::Sqlite(db) => Box::new(flowc::runtime::sqlite::SqliteStore::open(&db.path).expect("open")),
            Backend::Postgres(pg, _) => Box::new(pg.connect()),
        }
    }

    /// The path the simulated provider keeps its log beside.
    pub fn provider_base(&self) -> PathBuf {
        match self {
            Backend::Sqlite(db) => db.path.clone(),
            Backend::Postgres(_, dir) => dir.0.join("flowc.db"),
        }
    }
}

/// `flowc serve --db DB --listen 127.0.0.1:0 EXTRA` with `token` as its API
/// token, once it said where it listens: the child, its base URL
/// (`http://127.0.0.1:PORT`) and the rest of its stderr, which the caller
/// must keep draining so the server never blocks on a full pipe.
pub fn spawn_serve(
    db: &str,
    extra: &[&str],
    token: &str,
) -> (std::process::Child, String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // On PostgreSQL the provider's log defaults to `flowc.provider.log` in
    // the current folder, the repository's root here: each server gets a
    // log of its own in the temporary folder instead.
    static LOGS: AtomicUsize = AtomicUsize::new(0);
    let own_log = (db.starts_with("postgres") && !extra.contains(&"--provider-log")).then(|| {
        let n = LOGS.fetch_add(1, Ordering::SeqCst);
        std::env::temp_dir().join(format!("flowc-serve-{}-{n}.provider.log", std::process::id()))
    });
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"));
    command.args(["serve", "--db", db, "--listen", "127.0.0.1:0"]).args(extra);
    if let Some(log) = &own_log {
        let _ = std::fs::remove_file(log);
        command.arg("--provider-log").arg(log);
    }
    let mut child = command
        .env("FLOWC_API_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let base = loop {
        let line = lines.next().expect("server said something").expect("line");
        if let Some(addr) = line.strip_prefix("flowc serve: listening on ") {
            break addr.to_string();
        }
    };
    (child, base, lines)
}

/// Waits until `f` holds, at most 20 s (a failure past that).
pub fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Reads one HTTP request (head and Content-Length body) off a socket.
pub fn read_request(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    while let Ok(k) = s.read(&mut buf[got..]) {
        if k == 0 {
            break;
        }
        got += k;
        let text = String::from_utf8_lossy(&buf[..got]);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if got >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf[..got]).into_owned()
}

/// A local HTTP endpoint that takes `pause` to answer each request, answers
/// every one with `status`, and records the idempotency key of each request
/// it received. Each connection has its own thread, so several workers'
/// clients never wait on one another.
pub fn recording_webhook(
    status: &'static str,
    pause: std::time::Duration,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = keys.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let text = read_request(&mut s);
                std::thread::sleep(pause);
                if let Some(k) = text.lines().find_map(|l| {
                    l.to_ascii_lowercase().starts_with("idempotency-key:").then(|| l[16..].trim().to_string())
                }) {
                    seen.lock().expect("keys").push(k);
                }
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                );
            });
        }
    });
    (format!("http://{addr}/hook"), keys)
}
