//! Load benchmark of `flowc serve` (bounded, loopback only): 20,000 trigger
//! requests over 50 concurrent keep-alive connections. Reports requests/s and
//! p50/p99 latency, and checks every contact was enrolled exactly once.
//!
//! `cargo bench --bench serve`

use flowc::check::{self, CheckOptions};
use flowc::compile;
use flowc::runtime::facts::ContactRecord;
use flowc::runtime::lifecycle;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::Store;
use flowc::service::{self, runner, AppState};
use flowc::workspace::{self, Root};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FLOW: &str = "template hello { channel email message transactional status published }\ncampaign by_api {\n  trigger api\n  send email.transactional hello\n}\n";
const TOKEN: &str = "bench-token-0123456789";
const REQUESTS: usize = 20_000;
const CONNECTIONS: usize = 50;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
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
        let contacts: Vec<ContactRecord> = (0..REQUESTS)
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
        store: Mutex::new(Box::new(SqliteStore::open(&db).expect("store"))),
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
    rt.spawn(async move {
        let app = service::router(state);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !server_stop.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
    });

    let url = format!("http://{addr}/v1/campaigns/by_api/trigger");
    let started = Instant::now();
    let per = REQUESTS / CONNECTIONS;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent =
                    ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).max_idle_connections_per_host(1).build();
                let mut lat = Vec::with_capacity(per);
                for k in 0..per {
                    let body = format!("{{\"contacts\": [\"c{}\"]}}", w * per + k);
                    let t = Instant::now();
                    let r = agent
                        .post(&url)
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .set("Content-Type", "application/json")
                        .send_string(&body);
                    assert!(matches!(&r, Ok(res) if res.status() == 202), "{r:?}");
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
    eprintln!("enrolled exactly once: {total} executions for {REQUESTS} contacts");
    assert_eq!(total, REQUESTS as u64);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
