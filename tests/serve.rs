//! HTTP end-to-end tests against the real `flowc serve` on loopback.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
}

impl Server {
    fn start(db: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("FLOWC_API_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().expect("server said something").expect("line");
            if let Some(addr) = line.strip_prefix("flowc serve: listening on ") {
                break addr.to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
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
    let db = dir.path("s.db");
    let contacts = (0..50).map(|i| format!("{{\"id\":\"c{i}\",\"email\":\"c{i}@example.com\",\"plan\":\"{}\",\"consent\":[\"email\"]}}", if i % 2 == 0 { "pro" } else { "free" })).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.0.join("contacts.jsonl"), contacts).expect("contacts");
    let schema = dir.path("schema.flow");
    std::fs::write(&schema, FLOWS).expect("schema");
    assert!(flowc(&["contacts", "import", &dir.path("contacts.jsonl"), "--schema", &schema, "--db", &db]).status.success());
    assert!(flowc(&["balance", "top-up", "100", "--db", &db]).status.success());
    for (name, body) in campaigns {
        let file = dir.path(&format!("{name}.flow"));
        std::fs::write(&file, format!("{FLOWS}{body}")).expect("flow");
        let o = flowc(&["campaign", "launch", &file, "--db", &db]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    db
}

fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_endpoint_auth_validation_and_shutdown() {
    let dir = Dir::new("api");
    let db = setup(
        &dir,
        &[
            ("by_api", "campaign by_api {\n  trigger api\n  audience plan == pro\n  s: send email.transactional hello\n}\n"),
            ("by_hand", "campaign by_hand {\n  trigger manual\n  send email.transactional hello\n}\n"),
            ("by_event", "campaign by_event {\n  trigger event signed_up where source == \"ads\"\n  send email.transactional hello\n}\nevent signed_up { source: string }\n"),
        ],
    );
    let server = Server::start(&db, &[]);
    let b = server.base.clone();
    let t = Some(TOKEN);

    // The OpenAPI document is public; everything else needs the token.
    let (s, doc) = call("GET", &format!("{b}/v1/openapi.json"), None, None);
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/campaigns/{id}/trigger"]["post"].is_object());
    for (m, path) in [("GET", "/v1/campaigns"), ("GET", "/v1/campaigns/by_api"), ("POST", "/v1/campaigns/by_api/trigger"), ("POST", "/v1/campaigns/by_api/pause"), ("POST", "/v1/contacts"), ("POST", "/v1/events")] {
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
    for (body, code) in [("{not json", "invalid-json"), (r#"{"contacts": "c0"}"#, "invalid-body"), (r#"{"contacts": ["c0"], "extra": 1}"#, "invalid-body"), (r#"{"contacts": []}"#, "invalid-body"), ("[]", "invalid-body")] {
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
    let (s, r) = call("POST", &format!("{b}/v1/contacts"), t, Some(r#"[{"id": "n1", "email": "n1@example.com", "plan": "pro", "consent": ["email"]}]"#));
    assert_eq!((s, r["upserted"].as_u64()), (200, Some(1)));
    let (s, e) = call("POST", &format!("{b}/v1/contacts"), t, Some(r#"{"id": "n2", "plan": "platinum"}"#));
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid-contact")));
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("plan")));

    // An event that matches the rule enrolls; one that does not, does not.
    let events = format!("{b}/v1/events");
    let (s, r) = call("POST", &events, t, Some(r#"{"contact": "n1", "name": "signed_up", "props": {"source": "ads"}}"#));
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
    let o = Command::new(env!("CARGO_BIN_EXE_flowc")).args(["serve", "--db", "/nonexistent/x.db"]).env_remove("FLOWC_API_TOKEN").output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("FLOWC_API_TOKEN"));
    let o = Command::new(env!("CARGO_BIN_EXE_flowc")).args(["serve", "--listen", "not-an-address"]).env("FLOWC_API_TOKEN", TOKEN).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn scheduled_trigger_fires_at_local_time_across_dst_on_a_virtual_clock() {
    let dir = Dir::new("dst");
    // 02:30 does not exist in Paris on 2026-03-29: it fires at 03:30 CEST (01:30 UTC).
    let db = setup(&dir, &[("spring", "campaign spring {\n  trigger scheduled at 2026-03-29 02:30 \"Europe/Paris\"\n  send email.transactional hello\n}\n")]);
    let server = Server::start(&db, &["--clock", "virtual", "--start", "2026-03-28T12:00:00Z"]);
    let b = server.base.clone();
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/spring"), Some(TOKEN), None).1["state"] == "COMPLETED");
    drop(server);
    let conn = rusqlite::Connection::open(&db).expect("db");
    let at: i64 = conn.query_row("SELECT at FROM campaign_transitions WHERE name = 'spring' AND to_state = 'RUNNING'", [], |r| r.get(0)).expect("started");
    let utc = chrono::DateTime::from_timestamp(at * 60, 0).expect("time");
    assert_eq!(utc.to_rfc3339(), "2026-03-29T01:30:00+00:00");
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
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            while let Ok(k) = s.read(&mut buf[got..]) {
                if k == 0 {
                    break;
                }
                got += k;
                let text = String::from_utf8_lossy(&buf[..got]);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").and_then(|v| v.trim().parse::<usize>().ok())).unwrap_or(0);
                    if got >= end + 4 + len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf[..got]).to_string();
            if n < hangs {
                std::thread::sleep(Duration::from_millis(1500));
                continue;
            }
            let ok = n >= hangs + failures;
            if ok {
                if let Some(k) = text.lines().find_map(|l| l.strip_prefix("Idempotency-Key: ").or_else(|| l.strip_prefix("idempotency-key: "))) {
                    seen.lock().expect("keys").push(k.trim().to_string());
                }
            }
            let status = if ok { "200 OK" } else { "500 Internal Server Error" };
            let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (format!("http://{addr}/hook"), keys)
}

#[test]
fn webhook_provider_survives_failures_and_timeouts() {
    let dir = Dir::new("hook");
    let db = setup(&dir, &[("hooked", "campaign hooked {\n  trigger api\n  send email.transactional hello\n}\n")]);
    let (url, keys) = webhook_server(2, 1);
    let server = Server::start(&db, &["--webhook", &url, "--webhook-timeout-ms", "500"]);
    let b = server.base.clone();
    let (s, _) = call("POST", &format!("{b}/v1/campaigns/hooked/trigger"), Some(TOKEN), Some(r#"{"contacts": ["c0", "c1"]}"#));
    assert_eq!(s, 202);
    wait_for(|| call("GET", &format!("{b}/v1/campaigns/hooked"), Some(TOKEN), None).1["executions"]["completed"] == 2);
    wait_for(|| keys.lock().map(|k| k.len() >= 2).unwrap_or(false));
    let got = keys.lock().expect("keys").clone();
    assert!(got.iter().all(|k| k.starts_with("hooked/")), "{got:?}");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let sent: i64 = conn.query_row("SELECT COUNT(*) FROM outbox WHERE status = 'sent'", [], |r| r.get(0)).expect("sent");
    assert_eq!(sent, 2);
    let _ = Path::new(&db);
}
