//! Load benchmark of `flowc serve` (bounded, loopback only): trigger
//! requests over 50 concurrent keep-alive connections, each naming a contact
//! no request named before, with the runner stepping the enrollments
//! meanwhile. Reports requests/s and p50/p99 latency, and checks every
//! contact was enrolled exactly once.
//!
//! The client is a plain keep-alive HTTP/1.1 writer and reader on a
//! `TcpStream` per connection, so its own cost on the shared cores is small.
//!
//! `cargo bench --bench serve` (FLOWC_BENCH_REQUESTS to change the number
//! of requests, default 100,000).

use flowc::check::{self, CheckOptions};
use flowc::compile;
use flowc::runtime::facts::ContactRecord;
use flowc::runtime::lifecycle;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::Store;
use flowc::service::{self, runner, store_thread::StoreThread, AppState};
use flowc::workspace::{self, Root};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOW: &str = "template hello { channel email message transactional status published }\ncampaign by_api {\n  trigger api\n  send email.transactional hello\n}\n";
const TOKEN: &str = "bench-token-0123456789";
const CONNECTIONS: usize = 50;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let requests: usize = std::env::var("FLOWC_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
        / CONNECTIONS
        * CONNECTIONS;
    let dir = std::env::temp_dir().join(format!("flowc-serve-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("s.db");
    let read = |_: &Path| Ok(FLOW.as_bytes().to_vec());
    let ws = workspace::load(&[Root::discover(Path::new("api.flow")).expect("root")], &read);
    let analysis = check::check_all(&ws, &[], &CheckOptions::default());
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let program = compile::compile(model, c, ws.sources.get(c.file));
    {
        let mut store = SqliteStore::open(&db).expect("store");
        let contacts: Vec<ContactRecord> = (0..requests)
            .map(|i| {
                let mut attrs = serde_json::Map::new();
                // An address, so the campaign's sends are made, not skipped `no-address`.
                attrs.insert("email".into(), serde_json::Value::String(format!("c{i}@example.com")));
                ContactRecord {
                    id: flowc::runtime::store::ContactId(format!("c{i}")),
                    attrs,
                    consent: vec!["email".into()],
                    ..Default::default()
                }
            })
            .collect();
        store.upsert_contacts(&contacts, &[]).expect("contacts");
        store.ledger_add(1_000_000_000, "bench", 0).expect("balance");
        lifecycle::launch(&mut store, &program, lifecycle::RemovedSteps::Refuse, 0).expect("launch");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clock = runner::SharedClock::real();
    let state = Arc::new(AppState {
        store: StoreThread::start(Box::new(SqliteStore::open(&db).expect("store"))).expect("store thread"),
        token: TOKEN.into(),
        clock: clock.clone(),
        stop: stop.clone(),
    });
    let runner_store = SqliteStore::open(&db).expect("store");
    let provider = Box::new(Simulated::open(&db, SimConfig::default()).expect("provider"));
    let runner_stop = stop.clone();
    let runner_thread = std::thread::spawn(move || {
        runner::run(
            Box::new(runner_store),
            provider,
            clock,
            runner::RunnerConfig::default(),
            flowc::runtime::store::Lease::new(flowc::runtime::store::WorkerId::this_process()),
            runner_stop,
        )
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_stop = stop.clone();
    rt.spawn(service::serve(listener, service::router(state), async move {
        while !server_stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));

    let started = Instant::now();
    let per = requests / CONNECTIONS;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut conn = std::net::TcpStream::connect(addr).expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                let mut lat = Vec::with_capacity(per);
                let mut buf = Vec::with_capacity(4096);
                for k in 0..per {
                    let body = format!("{{\"contacts\": [\"c{}\"]}}", w * per + k);
                    let request = format!(
                        "POST /v1/campaigns/by_api/trigger HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let t = Instant::now();
                    conn.write_all(request.as_bytes()).expect("send");
                    let status = read_response(&mut conn, &mut buf);
                    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&buf));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    eprintln!("serve: {} trigger requests over {CONNECTIONS} connections in {secs:.2} s = {:.0} requests/s; p50 {:.2?}, p99 {:.2?}", all.len(), all.len() as f64 / secs, p(0.50), p(0.99));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = runner_thread.join();
    let store = SqliteStore::open(&db).expect("store");
    let total: u64 = store.counts("by_api").expect("counts").values().sum();
    eprintln!("enrolled exactly once: {total} executions for {requests} contacts");
    assert_eq!(total, requests as u64);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one response (headers, then `Content-Length` bytes of body) into
/// `buf`; returns its status.
fn read_response(conn: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            }
        }
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}
