//! HTTP end-to-end tests against the real `flowc serve` on loopback.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("flowc-serve-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        Dir(d)
    }
    fn path(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn flowc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).current_dir(common::root()).output().expect("flowc")
}

struct Server {
    child: Child,
    base: String,
    /// Every line the server wrote to stderr after it said where it listens.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(db: &str, extra: &[&str]) -> Server {
        let (child, base, lines) = common::spawn_serve(db, extra, TOKEN);
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Server { child, base, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, JSON body) of a request; `token` None sends no Authorization.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let r = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = r.status();
    let text = r.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A POST over a raw socket: the server may answer 413 and close while the
/// client is still sending, which an HTTP client library reports as an
/// error; the answer is read regardless.
fn raw_post(base: &str, path: &str, body: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const FLOWS: &str = r#"
template hello { channel email message transactional status published }
contact { plan: enum(free, pro) }
"#;

fn setup(dir: &Dir, campaigns: &[(&str, &str)]) -> String {
    setup_with(dir, campaigns, "100")
}

/// `setup` with an opening balance of `top_up` EUR.
fn setup_with(dir: &Dir, campaigns: &[(&str, &str)], top_up: &str) -> String {
    let db = dir.path("s.db");
    setup_on(dir, &db, campaigns, top_up);
    db
}

/// Runs a service test on each backend: an SQLite file, then a fresh
/// PostgreSQL database when `FLOWC_TEST_POSTGRES` names a server (see
/// `common::postgres`). `test` gets a working folder and the `--db` value.
fn on_each_backend(name: &str, test: impl Fn(&Dir, &str)) {
    let dir = Dir::new(name);
    test(&dir, &dir.path("s.db"));
    if let Some(pg) = common::postgres(name) {
        let dir = Dir::new(&format!("{name}-pg"));
        test(&dir, &pg.url);
    }
}

fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// One integer a query returns, on either backend (the SQL both speak).
fn query_i64(db: &str, sql: &str) -> i64 {
    if is_postgres(db) {
        let mut c = postgres::Client::connect(db, postgres::NoTls).expect("connect");
        c.query_one(sql, &[]).expect(sql).get(0)
    } else {
        let conn = rusqlite::Connection::open(db).expect("db");
        conn.query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// Waits until the running service enrolled every trigger it answered: on
/// SQLite a trigger is queued (`trigger_inbox`) and becomes an execution,
/// with its `campaign.triggered` event, at the campaign's next batch (the
/// runner looks every 50 ms); PostgreSQL enrolls it in the trigger's own
/// transaction. The bound only keeps a broken service from hanging the test.
fn until_triggers_enrolled(db: &str) {
    if is_postgres(db) {
        return;
    }
    let start = std::time::Instant::now();
    while query_i64(db, "SELECT COUNT(*) FROM trigger_inbox") > 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the runner never enrolled the queued triggers");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Contacts, a balance of `top_up` EUR and the campaigns, in database `db`.
fn setup_on(dir: &Dir, db: &str, campaigns: &[(&str, &str)], top_up: &str) {
    let contacts = (0..50)
        .map(|i| {
            format!(
                "{{\"id\":\"c{i}\",\"email\":\"c{i}@example.com\",\"plan\":\"{}\",\"consent\":[\"email\"]}}",
                if i % 2 == 0 { "pro" } else { "free" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.0.join("contacts.jsonl"), contacts).expect("contacts");
    let schema = dir.path("schema.flow");
    std::fs::write(&schema, FLOWS).expect("schema");
    assert!(flowc(&["contacts", "import", &dir.path("contacts.jsonl"), "--schema", &schema, "--db", db])
        .status
        .success());
    assert!(flowc(&["balance", "top-up", top_up, "--db", db]).status.success());
    for (name, body) in campaigns {
        let file = dir.path(&format!("{name}.flow"));
        std::fs::write(&file, format!("{FLOWS}{body}")).expect("flow");
        let o = flowc(&["campaign", "launch", &file, "--db", db, "--accept-cost"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn wait_for(f: impl FnMut() -> bool) {
    common::wait_for(f)
}

#[test]
fn every_endpoint_auth_validation_and_shutdown() {
    on_each_backend("api", every_endpoint_on);
}

fn every_endpoint_on(dir: &Dir, db: &str) {
    setup_on(
        dir,
        db,
        &[
            ("by_api", "campaign by_api {\n  trigger api\n  audience plan == pro\n  s: send email.transactional hello\n}\n"),
            ("by_hand", "campaign by_hand {\n  trigger manual\n  send email.transactional hello\n}\n"),
            ("by_event", "campaign by_event {\n  trigger event signed_up where source == \"ads\"\n  send email.transactional hello\n}\nevent signed_up { source: string }\n"),
        ],
        "100",
    );
    let mut server = Server::start(db, &[]);
    let b = server.base.clone();
    let t = Some(TOKEN);

    // The OpenAPI document is public; everything else needs the token.
    let (s, doc) = call("GET", &format!("{b}/v1/openapi.json"), None, None);
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/campaigns/{id}/trigger"]["post"].is_object());
    // Every field an answer carries is described.
    let answer = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["properties"].clone()
    };
    assert!(answer("/v1/events", "post", "202")["stored"].is_object());
    assert!(answer("/v1/contacts", "post", "200")["upserted"].is_object());
    assert!(answer("/v1/campaigns/{id}/resume", "post", "200")["was"].is_object());
    let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"].to_string();
    for code in ["method-not-allowed", "uri-too-long", "unknown-event", "invalid-event", "timeout"] {
        assert!(codes.contains(code), "{code} missing from {codes}");
    }
    for (m, path) in [
        ("GET", "/v1/campaigns"),
        ("GET", "/v1/campaigns/by_api"),
        ("POST", "/v1/campaigns/by_api/trigger"),
        ("POST", "/v1/campaigns/by_api/pause"),
        ("POST", "/v1/contacts"),
        ("POST", "/v1/events"),
    ] {
        let (s, e) = call(m, &format!("{b}{path}"), None, Some("{}"));
        assert_eq!(s, 401, "{m} {path}");
        assert_eq!(e["error"]["code"], "unauthorized");
        let (s, _) = call(m, &format!("{b}{path}"), Some("wrong-token-wrong-token"), Some("{}"));
        assert_eq!(s, 401, "{m} {path} with a wrong token");
    }

    let (s, list) = call("GET", &format!("{b}/v1/campaigns"), t, None);
    assert_eq!(s, 200);
    assert_eq!(list["campaigns"].as_array().map(Vec::len), Some(3));

    // Trigger: enroll, re-entry, audience, unknown contacts, wrong kind.
    let trigger = format!("{b}/v1/campaigns/by_api/trigger");
    let (s, r) = call("POST", &trigger, t, Some(r#"{"contacts": ["c0", "c1", "c2"], "data": {"order": 7}}"#));
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["enrolled"], 2);
    assert_eq!(r["not_in_audience"], 1);
    let (_, r) = call("POST", &trigger, t, Some(r#"{"contacts": ["c0"]}"#));
    assert_eq!(r["already_enrolled"], 1, "a contact is never enrolled twice");
    let (s, e) = call("POST", &trigger, t, Some(r#"{"contacts": ["nobody"]}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("unknown-contacts")));
    let (s, e) = call("POST", &format!("{b}/v1/campaigns/by_hand/trigger"), t, Some(r#"{"contacts": ["c0"]}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("wrong-trigger")));
    let (s, e) = call("POST", &format!("{b}/v1/campaigns/nope/trigger"), t, Some(r#"{"contacts": ["c0"]}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown-campaign")));

    // Malformed, invalid and oversized bodies.
    for (body, code) in [
        ("{not json", "invalid-json"),
        (r#"{"contacts": "c0"}"#, "invalid-body"),
        (r#"{"contacts": ["c0"], "extra": 1}"#, "invalid-body"),
        (r#"{"contacts": []}"#, "invalid-body"),
        ("[]", "invalid-body"),
    ] {
        let (s, e) = call("POST", &trigger, t, Some(body));
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some(code)), "{body}");
    }
    let huge = format!(r#"{{"contacts": ["c0"], "data": {{"x": "{}"}}}}"#, "a".repeat(400 * 1024));
    let answer = raw_post(&b, "/v1/campaigns/by_api/trigger", &huge);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too-large"), "{answer}");

    // The interpreter runs in the same process: the enrolled contacts complete.
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/by_api"), t, None).1["executions"]["completed"] == 2);
    let (_, st) = call("GET", &format!("{b}/v1/campaigns/by_api"), t, None);
    assert_eq!(st["state"], "RUNNING", "an API campaign stays open for more triggers");
    assert!(st["balance"]["amount"].as_f64().is_some_and(|x| x < 100.0));

    // Pause and resume, and transitions that are not allowed.
    let (s, _) = call("POST", &format!("{b}/v1/campaigns/by_api/pause"), t, None);
    assert_eq!(s, 200);
    let (s, e) = call("POST", &format!("{b}/v1/campaigns/by_api/pause"), t, None);
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("invalid-transition")));
    let (s, r) = call("POST", &format!("{b}/v1/campaigns/by_api/resume"), t, None);
    assert_eq!((s, r["was"].as_str()), (200, Some("PAUSED")));

    // Contacts upsert with validation.
    let (s, r) = call(
        "POST",
        &format!("{b}/v1/contacts"),
        t,
        Some(r#"[{"id": "n1", "email": "n1@example.com", "plan": "pro", "consent": ["email"]}]"#),
    );
    assert_eq!((s, r["upserted"].as_u64()), (200, Some(1)));
    let (s, e) = call("POST", &format!("{b}/v1/contacts"), t, Some(r#"{"id": "n2", "plan": "platinum"}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-contact")));
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("plan")));

    // An event that matches the rule enrolls; one that does not, does not.
    let events = format!("{b}/v1/events");
    let (s, r) =
        call("POST", &events, t, Some(r#"{"contact": "n1", "name": "signed_up", "props": {"source": "ads"}}"#));
    assert_eq!(s, 202);
    assert_eq!(r["enrolled_in"], serde_json::json!(["by_event"]));
    let (_, r) = call("POST", &events, t, Some(r#"{"contact": "c3", "name": "signed_up", "props": {"source": "tv"}}"#));
    assert_eq!(r["enrolled_in"], serde_json::json!([]));
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/by_event"), t, None).1["executions"]["completed"] == 1);

    // SIGTERM: stop accepting, finish the batch in flight, exit cleanly.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn refuses_to_start_without_a_token_or_with_a_bad_address() {
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["serve", "--db", "/nonexistent/x.db"])
        .env_remove("FLOWC_API_TOKEN")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("FLOWC_API_TOKEN"));
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["serve", "--listen", "not-an-address"])
        .env("FLOWC_API_TOKEN", TOKEN)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn scheduled_trigger_fires_at_local_time_across_dst_on_a_virtual_clock() {
    on_each_backend("dst", |dir, db| {
        // 02:30 does not exist in Paris on 2026-03-29: it fires at 03:30 CEST (01:30 UTC).
        let spring = "campaign spring {\n  trigger scheduled at 2026-03-29 02:30 \"Europe/Paris\"\n  send email.transactional hello\n}\n";
        setup_on(dir, db, &[("spring", spring)], "100");
        let server = Server::start(db, &["--clock", "virtual", "--start", "2026-03-28T12:00:00Z"]);
        let b = server.base.clone();
        wait_for(|| call("GET", &format!("{b}/v1/campaigns/spring"), Some(TOKEN), None).1["state"] == "COMPLETED");
        drop(server);
        let at = query_i64(
            db,
            "SELECT CAST(at AS BIGINT) FROM campaign_transitions WHERE name = 'spring' AND to_state = 'RUNNING'",
        );
        let utc = chrono::DateTime::from_timestamp(at * 60, 0).expect("time");
        assert_eq!(utc.to_rfc3339(), "2026-03-29T01:30:00+00:00");
    });
}

/// A local HTTP endpoint that answers 500 to the first `failures` requests,
/// then (after a hang of `hang` requests that time out) 200, and records keys.
fn webhook_server(failures: usize, hangs: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = keys.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let text = common::read_request(&mut s);
            if n < hangs {
                std::thread::sleep(Duration::from_millis(1500));
                continue;
            }
            let ok = n >= hangs + failures;
            if ok {
                if let Some(k) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Idempotency-Key: ").or_else(|| l.strip_prefix("idempotency-key: ")))
                {
                    seen.lock().expect("keys").push(k.trim().to_string());
                }
            }
            let status = if ok { "200 OK" } else { "500 Internal Server Error" };
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (format!("http://{addr}/hook"), keys)
}

#[test]
fn webhook_provider_survives_failures_and_timeouts() {
    let dir = Dir::new("hook");
    let db = setup(&dir, &[("hooked", "campaign hooked {\n  trigger api\n  send email.transactional hello\n}\n")]);
    let (url, keys) = webhook_server(2, 1);
    // A virtual clock: the engine's retries (a minute apart) come at once.
    let server = Server::start(
        &db,
        &["--webhook", &url, "--webhook-timeout-ms", "500", "--clock", "virtual", "--start", "2026-11-27T09:00:00Z"],
    );
    let b = server.base.clone();
    let (s, _) =
        call("POST", &format!("{b}/v1/campaigns/hooked/trigger"), Some(TOKEN), Some(r#"{"contacts": ["c0", "c1"]}"#));
    assert_eq!(s, 202);
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/hooked"), Some(TOKEN), None).1["executions"]["completed"] == 2);
    wait_for(|| keys.lock().map(|k| k.len() >= 2).unwrap_or(false));
    let got = keys.lock().expect("keys").clone();
    assert!(got.iter().all(|k| k.starts_with("hooked/")), "{got:?}");
    // The relay marks a row sent after the webhook answered: wait for its commit.
    wait_for(|| query_i64(&db, "SELECT COUNT(*) FROM outbox WHERE status = 'sent'") == 2);
}

/// A provider that rejects every message: each is tried at most the
/// engine's 3 attempts in all (the attempts live in the outbox row, not in
/// a pass's memory), then its execution fails; nothing is retried forever.
#[test]
fn a_permanently_failing_webhook_gets_each_message_at_most_max_attempts_times() {
    let dir = Dir::new("hook500");
    let db = setup(&dir, &[("doomed", "campaign doomed {\n  trigger api\n  send email.transactional hello\n}\n")]);
    let (url, keys) = common::recording_webhook("500 Internal Server Error", Duration::ZERO);
    let server = Server::start(
        &db,
        &["--webhook", &url, "--webhook-timeout-ms", "500", "--clock", "virtual", "--start", "2026-11-27T09:00:00Z"],
    );
    let b = server.base.clone();
    let (s, _) =
        call("POST", &format!("{b}/v1/campaigns/doomed/trigger"), Some(TOKEN), Some(r#"{"contacts": ["c0", "c1"]}"#));
    assert_eq!(s, 202);
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/doomed"), Some(TOKEN), None).1["executions"]["failed"] == 2);
    // Time for a runaway retry loop to show itself.
    std::thread::sleep(Duration::from_millis(1500));
    drop(server);
    let got = keys.lock().expect("keys").clone();
    for contact in ["c0", "c1"] {
        let n = got.iter().filter(|k| k.contains(&format!("/{contact}/"))).count();
        assert_eq!(n, 3, "{contact}: {n} requests (3 attempts expected): {got:?}");
    }
    let conn = rusqlite::Connection::open(&db).expect("db");
    let (failed, attempts): (i64, i64) = conn
        .query_row("SELECT COUNT(*), SUM(attempts) FROM outbox WHERE status = 'failed'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("outbox");
    assert_eq!((failed, attempts), (2, 6));
    let billed: i64 = conn
        .query_row("SELECT COALESCE(SUM(amount_micros), 0) FROM ledger WHERE amount_micros < 0", [], |r| r.get(0))
        .expect("ledger");
    assert_eq!(billed, 0, "nothing delivered, nothing billed");
}

/// `flowc serve` applies the account's auto-reload like `flowc run` does: a
/// balance too small for the campaign is topped up instead of pausing it.
#[test]
fn serve_applies_auto_reload() {
    on_each_backend("reload", |dir, db| {
        setup_on(dir, db, &[("otp", "campaign otp {\n  trigger api\n  send email.transactional hello\n}\n")], "0.001");
        let o = flowc(&["balance", "auto-reload", "--threshold", "0.01", "--amount", "1", "--db", db]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let server = Server::start(db, &["--clock", "virtual", "--start", "2026-11-27T09:00:00Z"]);
        let b = server.base.clone();
        let all: Vec<String> = (0..50).map(|i| format!("\"c{i}\"")).collect();
        let (s, _) = call(
            "POST",
            &format!("{b}/v1/campaigns/otp/trigger"),
            Some(TOKEN),
            Some(&format!("{{\"contacts\": [{}]}}", all.join(","))),
        );
        assert_eq!(s, 202);
        wait_for(|| {
            call("GET", &format!("{b}/v1/campaigns/otp"), Some(TOKEN), None).1["executions"]["completed"] == 50
        });
        let (_, status) = call("GET", &format!("{b}/v1/campaigns/otp"), Some(TOKEN), None);
        assert_eq!(status["state"], "RUNNING", "{status}");
        drop(server);
        let reloads = query_i64(db, "SELECT COUNT(*) FROM ledger WHERE reason = 'auto-reload'");
        assert!(reloads >= 1, "auto-reload topped up");
        let paused = query_i64(db, "SELECT COUNT(*) FROM campaign_transitions WHERE to_state = 'PAUSED_BALANCE'");
        assert_eq!(paused, 0);
    });
}

/// (status, JSON body) of a request written by hand on a socket, for
/// requests an HTTP client library would refuse or rewrite.
fn raw(base: &str, request: &str) -> (u16, serde_json::Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = s.write_all(request.replace("{addr}", addr).as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// A local endpoint that answers every POST with a 302 to another path of
/// its own, which would answer 200; counts POSTs and every other request.
fn redirecting_webhook(
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (posts, others) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
    let (p, o) = (posts.clone(), others.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let request = common::read_request(&mut s);
            let answer = if request.starts_with("POST /hook ") {
                p.fetch_add(1, Ordering::SeqCst);
                format!("HTTP/1.1 302 Found\r\nLocation: http://{addr}/landed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            } else {
                o.fetch_add(1, Ordering::SeqCst);
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (format!("http://{addr}/hook"), posts, others)
}

#[test]
fn webhook_redirects_are_failures_not_deliveries() {
    use std::sync::atomic::Ordering;
    let dir = Dir::new("redirect");
    let db = setup(&dir, &[("hooked", "campaign hooked {\n  trigger api\n  send email.transactional hello\n}\n")]);
    let (url, posts, others) = redirecting_webhook();
    let server = Server::start(
        &db,
        &["--webhook", &url, "--webhook-timeout-ms", "500", "--clock", "virtual", "--start", "2026-11-27T09:00:00Z"],
    );
    let b = server.base.clone();
    let (s, _) =
        call("POST", &format!("{b}/v1/campaigns/hooked/trigger"), Some(TOKEN), Some(r#"{"contacts": ["c0"]}"#));
    assert_eq!(s, 202);
    // Each attempt is one POST answered 302; after the third the message and
    // its execution fail. A followed redirect would have been a GET.
    wait_for(|| {
        call("GET", &format!("{b}/v1/campaigns/hooked"), Some(TOKEN), None).1["executions"]["failed"] == 1
            || others.load(Ordering::SeqCst) > 0
    });
    assert_eq!(others.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert_eq!(posts.load(Ordering::SeqCst), 3, "one POST per attempt");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count");
    assert_eq!(count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'"), 0, "a redirect is not a delivery");
}

#[test]
fn contacts_upsert_merges_the_fields_given() {
    let dir = Dir::new("merge");
    let db = setup(&dir, &[]);
    let server = Server::start(&db, &["--clock", "virtual", "--start", "2026-03-28T12:00:00Z"]);
    let url = format!("{}/v1/contacts", server.base);
    let t = Some(TOKEN);
    let (s, r) = call(
        "POST",
        &url,
        t,
        Some(
            r#"{"id": "m1", "email": "a@example.com", "timezone": "Europe/Paris", "tags": ["vip"], "consent": ["email"]}"#,
        ),
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = call("POST", &url, t, Some(r#"{"id": "m1", "email": "b@example.com"}"#));
    assert_eq!(s, 200, "{r}");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let row = |id: &str| -> (serde_json::Value, String, String) {
        conn.query_row("SELECT json(attrs), tags, consent FROM contacts WHERE id = ?1", [id], |r| {
            Ok((serde_json::from_str(&r.get::<_, String>(0)?).unwrap_or_default(), r.get(1)?, r.get(2)?))
        })
        .expect("contact")
    };
    let (attrs, tags, consent) = row("m1");
    assert_eq!(attrs["email"], "b@example.com");
    assert_eq!(attrs["timezone"], "Europe/Paris", "absent fields stay as they were");
    assert_eq!(attrs["created_at"], "2026-03-28T12:00:00Z", "a new contact is created at the service's now");
    assert_eq!((tags.as_str(), consent.as_str()), (r#"["vip"]"#, r#"["email"]"#));
    // `null` clears an optional field; a required one cannot be cleared.
    let (s, _) = call("POST", &url, t, Some(r#"{"id": "m1", "email": null, "tags": null}"#));
    assert_eq!(s, 200);
    let (attrs, tags, _) = row("m1");
    assert!(attrs.get("email").is_none(), "{attrs}");
    assert_eq!(tags, "[]");
    assert_eq!(attrs["timezone"], "Europe/Paris");
    let (s, e) = call("POST", &url, t, Some(r#"{"id": "m1", "timezone": null}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-contact")));
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("timezone")), "{e}");
}

#[test]
fn contacts_are_validated_against_the_declared_schema_before_any_launch() {
    let dir = Dir::new("schema");
    // `contacts import --schema` declared `plan`; nothing is launched yet.
    let db = setup(&dir, &[]);
    let server = Server::start(&db, &[]);
    let url = format!("{}/v1/contacts", server.base);
    let (s, r) = call("POST", &url, Some(TOKEN), Some(r#"{"id": "p1", "plan": "pro"}"#));
    assert_eq!(s, 200, "{r}");
    let (s, e) = call("POST", &url, Some(TOKEN), Some(r#"{"id": "p2", "plan": "platinum"}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-contact")));
    let (s, e) = call("POST", &url, Some(TOKEN), Some(r#"{"id": "p3", "score": 3}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-contact")), "`score` is not declared yet");
    drop(server);
    // A launch declares its workspace's fields too.
    let file = dir.path("scored.flow");
    std::fs::write(&file, format!("{FLOWS}contact {{ score: number? }}\ncampaign scored {{\n  trigger api\n  send email.transactional hello\n}}\n")).expect("flow");
    let o = flowc(&["campaign", "launch", &file, "--db", &db]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let server = Server::start(&db, &[]);
    let url = format!("{}/v1/contacts", server.base);
    let (s, r) = call("POST", &url, Some(TOKEN), Some(r#"{"id": "p3", "score": 3, "plan": "free"}"#));
    assert_eq!(s, 200, "{r}");
}

#[test]
fn events_are_validated_against_the_declared_events() {
    let dir = Dir::new("events");
    let db = setup(&dir, &[("by_event", "campaign by_event {\n  trigger event signed_up where source == \"ads\"\n  send email.transactional hello\n}\nevent signed_up { source: string }\n")]);
    let server = Server::start(&db, &[]);
    let url = format!("{}/v1/events", server.base);
    let t = Some(TOKEN);
    let (s, e) = call("POST", &url, t, Some(r#"{"contact": "c0", "name": "signed_upp", "props": {"source": "ads"}}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("unknown-event")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("`signed_up`")), "did you mean: {e}");
    let (s, e) = call("POST", &url, t, Some(r#"{"contact": "c0", "name": "signed_up", "props": {"source": 5}}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-event")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("source")), "{e}");
    let (s, e) = call("POST", &url, t, Some(r#"{"contact": "c0", "name": "signed_up", "props": {"sorce": "ads"}}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-event")), "{e}");
    // Declared and system events are accepted.
    let (s, r) = call("POST", &url, t, Some(r#"{"contact": "c0", "name": "signed_up", "props": {"source": "ads"}}"#));
    assert_eq!((s, r["stored"].as_bool()), (202, Some(true)), "{r}");
    assert_eq!(r["woken"], 0, "no execution waits on it: {r}");
    let (s, r) = call(
        "POST",
        &url,
        t,
        Some(r#"{"contact": "c0", "name": "message.opened", "props": {"via": "email", "step": "x"}}"#),
    );
    assert_eq!(s, 202, "{r}");
    let (s, r) = call("POST", &url, t, Some(r#"{"contact": "c0", "name": "contact.updated"}"#));
    assert_eq!(s, 202, "{r}");
}

#[test]
fn a_trigger_for_an_enrolled_contact_records_nothing() {
    let dir = Dir::new("once");
    let db = setup(&dir, &[("by_api", "campaign by_api {\n  trigger api\n  send email.transactional hello\n}\n")]);
    let server = Server::start(&db, &[]);
    let trigger = format!("{}/v1/campaigns/by_api/trigger", server.base);
    let (s, r) = call("POST", &trigger, Some(TOKEN), Some(r#"{"contacts": ["c0"], "data": {"order": 1}}"#));
    assert_eq!((s, r["enrolled"].as_u64()), (202, Some(1)));
    let (s, r) = call("POST", &trigger, Some(TOKEN), Some(r#"{"contacts": ["c0", "c1"], "data": {"order": 2}}"#));
    assert_eq!((s, r["enrolled"].as_u64(), r["already_enrolled"].as_u64()), (202, Some(1), Some(1)));
    until_triggers_enrolled(&db);
    let conn = rusqlite::Connection::open(&db).expect("db");
    let events = |c: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM contact_events WHERE contact_id = ?1 AND name = 'campaign.triggered'",
            [c],
            |r| r.get(0),
        )
        .expect("count")
    };
    assert_eq!((events("c0"), events("c1")), (1, 1), "re-entry changes nothing");
}

/// A trigger's `data` is its `campaign.triggered` event: where the schema
/// declares that event, data that does not fit it is refused as an
/// ingested event would be, and nothing is enrolled.
#[test]
fn trigger_data_must_fit_a_declared_campaign_triggered_event() {
    let dir = Dir::new("trigger-data");
    let db = setup(
        &dir,
        &[(
            "typed",
            "event campaign.triggered { kind: string }\ncampaign typed {\n  trigger api\n  reentry always\n  send email.transactional hello\n}\n",
        )],
    );
    let server = Server::start(&db, &[]);
    let url = format!("{}/v1/campaigns/typed/trigger", server.base);
    for (data, named) in [(r#"{"kind": 5}"#, "kind"), (r#"{"colour": "red"}"#, "colour")] {
        let (s, r) = call("POST", &url, Some(TOKEN), Some(&format!(r#"{{"contacts": ["c0"], "data": {data}}}"#)));
        assert_eq!((s, r["error"]["code"].as_str()), (422, Some("invalid-event")), "{data}: {r}");
        assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains(named) && m.contains("`data`")), "{r}");
    }
    let (s, r) = call("POST", &url, Some(TOKEN), Some(r#"{"contacts": ["c0"], "data": {"kind": "vip"}}"#));
    assert_eq!((s, r["enrolled"].as_u64()), (202, Some(1)), "{r}");
    until_triggers_enrolled(&db);
    drop(server);
    let events =
        query_i64(&db, "SELECT COUNT(*) FROM contact_events WHERE contact_id = 'c0' AND name = 'campaign.triggered'");
    assert_eq!(events, 1, "the refused triggers recorded nothing");
}

/// Issue 19: the trigger's `already_enrolled` answer follows the
/// campaign's re-entry rule: under `always` every trigger is a new
/// execution (with its own `campaign.triggered` event); under `after 1d`
/// a second trigger on the same clock day is refused, and records nothing.
#[test]
fn a_trigger_follows_the_reentry_rule() {
    on_each_backend("reentry", a_trigger_follows_the_reentry_rule_on);
}

fn a_trigger_follows_the_reentry_rule_on(dir: &Dir, db: &str) {
    setup_on(
        dir,
        db,
        &[
            ("again", "campaign again {\n  trigger api\n  reentry always\n  send email.transactional hello\n}\n"),
            ("daily", "campaign daily {\n  trigger api\n  reentry after 1d\n  send email.transactional hello\n}\n"),
        ],
        "100",
    );
    let server = Server::start(db, &[]);
    let url = |c: &str| format!("{}/v1/campaigns/{c}/trigger", server.base);
    for round in 0..3 {
        // The same data every time, in the same minute: each enrollment
        // still records its own event (flowc's records have no key).
        let body = r#"{"contacts": ["c0", "c1"], "data": {"round": 1}}"#;
        let (s, r) = call("POST", &url("again"), Some(TOKEN), Some(body));
        assert_eq!(
            (s, r["enrolled"].as_u64(), r["already_enrolled"].as_u64()),
            (202, Some(2), Some(0)),
            "{round}: {r}"
        );
    }
    let (s, r) = call("POST", &url("daily"), Some(TOKEN), Some(r#"{"contacts": ["c0"]}"#));
    assert_eq!((s, r["enrolled"].as_u64()), (202, Some(1)), "{r}");
    let (s, r) = call("POST", &url("daily"), Some(TOKEN), Some(r#"{"contacts": ["c0", "c1"], "data": {"round": 9}}"#));
    assert_eq!((s, r["enrolled"].as_u64(), r["already_enrolled"].as_u64()), (202, Some(1), Some(1)), "{r}");
    until_triggers_enrolled(db);
    drop(server);
    let count = |sql: &str| query_i64(db, sql);
    assert_eq!(count("SELECT COUNT(*) FROM executions WHERE campaign = 'again' AND contact_id = 'c0'"), 3);
    assert_eq!(
        count("SELECT CAST(MAX(entry) AS BIGINT) FROM executions WHERE campaign = 'again' AND contact_id = 'c0'"),
        3
    );
    assert_eq!(count("SELECT COUNT(*) FROM executions WHERE campaign = 'daily'"), 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM contact_events WHERE contact_id = 'c0' AND name = 'campaign.triggered'"),
        4,
        "three for `again`, one for `daily`: a refused trigger records nothing"
    );
}

#[test]
fn every_error_is_the_json_error_body() {
    let dir = Dir::new("errors");
    let db = setup(&dir, &[]);
    let server = Server::start(&db, &[]);
    let b = server.base.clone();
    let code = |v: &serde_json::Value| v["error"]["code"].as_str().map(str::to_string);
    let (s, e) = call("PUT", &format!("{b}/v1/contacts"), Some(TOKEN), Some("{}"));
    assert_eq!((s, code(&e).is_some()), (405, true), "{e}");
    let (s, e) = call("DELETE", &format!("{b}/v1/openapi.json"), None, None);
    assert_eq!((s, code(&e).is_some()), (405, true), "{e}");
    let long = "a".repeat(20 * 1024);
    let (s, e) = raw(&b, &format!("GET /v1/campaigns/{long} HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"));
    assert_eq!((s, code(&e).is_some()), (414, true), "{e}");
    for bad in ["%FF%FE", "%zz", "%", "Caps"] {
        let (s, e) = raw(&b, &format!("GET /v1/campaigns/{bad} HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"));
        assert_eq!((s, code(&e)), (400, Some("invalid-path".to_string())), "{bad}: {e}");
    }
    let (s, e) = call("GET", &format!("{b}/nowhere"), Some(TOKEN), None);
    assert_eq!((s, code(&e).as_deref()), (404, Some("not-found")), "{e}");
    let huge = format!(r#"{{"id": "x", "email": "{}"}}"#, "a".repeat(400 * 1024));
    let answer = raw_post(&b, "/v1/contacts", &huge);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("too-large"), "{answer}");
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (s, _) = raw(&b, &format!("GET /v1/campaigns HTTP/1.1\r\nHost: {{addr}}\r\nauthorization: bearer {TOKEN}\r\nConnection: close\r\n\r\n"));
    assert_eq!(s, 200);
    // Another scheme is named as such, not as a missing header.
    let (s, e) = raw(
        &b,
        "GET /v1/campaigns HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic dXNlcjpwYXNz\r\nConnection: close\r\n\r\n",
    );
    let message = e["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!((s, message.contains("must be `Bearer <token>`")), (401, true), "{e}");
    let (s, e) = raw(&b, "GET /v1/campaigns HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let message = e["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!((s, message.starts_with("missing")), (401, true), "{e}");
}

#[test]
fn each_request_is_logged_without_the_token_or_the_body() {
    let dir = Dir::new("log");
    let db = setup(&dir, &[]);
    let mut server = Server::start(&db, &[]);
    let b = server.base.clone();
    call("GET", &format!("{b}/v1/campaigns"), Some(TOKEN), None);
    // Written while serving (in batches, a few milliseconds later), not only at the stop.
    wait_for(|| server.log().iter().any(|l| l.contains("GET /v1/campaigns 200")));
    call("POST", &format!("{b}/v1/contacts"), Some(TOKEN), Some(r#"{"id": "secret-contact-body"}"#));
    call("GET", &format!("{b}/v1/campaigns/nope?q=1"), Some("wrong-token-wrong-token"), None);
    assert!(server.terminate().success());
    let log = server.log().join("\n");
    assert!(!log.contains(TOKEN) && !log.contains("wrong-token"), "the token leaked: {log}");
    assert!(!log.contains("secret-contact-body"), "a body leaked: {log}");
    for line in ["GET /v1/campaigns 200", "POST /v1/contacts 200", "GET /v1/campaigns/nope 401"] {
        assert!(log.lines().any(|l| l.contains(line) && l.contains("ms")), "no `{line}` line with a latency in: {log}");
    }
}

#[test]
fn a_half_sent_request_does_not_hold_the_server_after_sigterm() {
    let dir = Dir::new("slow");
    let db = setup(&dir, &[]);
    let mut server = Server::start(&db, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    // One client stops in the middle of its headers, another after its
    // headers but before the body it announced.
    let mut half = std::net::TcpStream::connect(&addr).expect("connect");
    half.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Le").expect("write");
    let mut headers_only = std::net::TcpStream::connect(&addr).expect("connect");
    headers_only
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    // `terminate` fails the test if the server is still up 20 s after SIGTERM.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    drop((half, headers_only));
}

/// While the service holds the database, money comes in through the API: a
/// campaign paused for its balance is topped up and resumed without
/// stopping `flowc serve`; auto-reload is set the same way.
#[test]
fn the_balance_is_topped_up_through_the_api_while_serving() {
    on_each_backend("money", topped_up_while_serving_on);
}

fn topped_up_while_serving_on(dir: &Dir, db: &str) {
    setup_on(dir, db, &[("otp", "campaign otp {\n  trigger api\n  send email.transactional hello\n}\n")], "0.001");
    let server = Server::start(db, &["--clock", "virtual", "--start", "2026-11-27T09:00:00Z"]);
    let b = server.base.clone();
    let t = Some(TOKEN);
    let all: Vec<String> = (0..20).map(|i| format!("\"c{i}\"")).collect();
    let (s, _) = call(
        "POST",
        &format!("{b}/v1/campaigns/otp/trigger"),
        t,
        Some(&format!("{{\"contacts\": [{}]}}", all.join(","))),
    );
    assert_eq!(s, 202);
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/otp"), t, None).1["state"] == "PAUSED_BALANCE");
    // The CLI is locked out of an SQLite file while the service runs
    // (PostgreSQL is shared by any number of processes).
    if !is_postgres(db) {
        assert!(!flowc(&["balance", "top-up", "1", "--db", db]).status.success());
    }
    for bad in [r#"{"amount": 0}"#, r#"{"amount": -5}"#, r#"{"amount": "ten"}"#] {
        let (s, e) = call("POST", &format!("{b}/v1/balance/top-up"), t, Some(bad));
        assert_eq!(s, 422, "{bad}: {e}");
    }
    let (s, e) = call("POST", &format!("{b}/v1/balance/top-up"), t, Some(r#"{"amount": 1, "extra": 1}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid-body")));
    let (s, acct) = call("POST", &format!("{b}/v1/balance/top-up"), t, Some(r#"{"amount": 1}"#));
    assert_eq!(s, 200, "{acct}");
    assert!(acct["amount"].as_f64().is_some_and(|a| a > 1.0), "{acct}");
    assert_eq!(
        call("GET", &format!("{b}/v1/campaigns/otp"), t, None).1["state"],
        "PAUSED_BALANCE",
        "money alone does not resume"
    );
    let (s, _) = call("POST", &format!("{b}/v1/campaigns/otp/resume"), t, None);
    assert_eq!(s, 200);
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/otp"), t, None).1["executions"]["completed"] == 20);
    let (s, acct) = call("POST", &format!("{b}/v1/balance/auto-reload"), t, Some(r#"{"threshold": 0.5, "amount": 5}"#));
    assert_eq!(s, 200, "{acct}");
    assert_eq!(acct["auto_reload"]["amount"], 5.0);
    let (s, acct) = call("GET", &format!("{b}/v1/balance"), t, None);
    assert_eq!((s, acct["auto_reload"]["threshold"].as_f64()), (200, Some(0.5)));
    let (s, acct) = call("POST", &format!("{b}/v1/balance/auto-reload"), t, Some(r#"{"off": true}"#));
    assert_eq!((s, acct["auto_reload"].is_null()), (200, true));
    let (s, _) = call("GET", &format!("{b}/v1/balance"), None, None);
    assert_eq!(s, 401);
}
