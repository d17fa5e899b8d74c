//! Wake-up benchmark (issue 18): 1,000,000 executions parked at a `wait
//! until`, then 10,000 events for 10,000 distinct contacts stored and their
//! executions woken in one transaction, as `flowc events import` does; and
//! as many unrelated events, which must touch nothing. Reports the time and
//! the rows touched (exactly one per concerned event: the cost is the
//! executions an event concerns, never a scan).
//!
//! `cargo bench --bench wake` (FLOWC_BENCH_WAITING and FLOWC_BENCH_EVENTS
//! change the sizes).

use flowc::check::{self, CheckOptions};
use flowc::compile::program::{EventMatch, Op, WaitArm, WaitOn};
use flowc::compile::{self, codec};
use flowc::runtime::facts::ContactEvent;
use flowc::runtime::ingest::{self, Incoming};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{self, CampaignState, Enrollment, Store};
use flowc::runtime::wake;
use flowc::workspace::{self, Root};
use std::path::Path;
use std::time::Instant;

const FLOW: &str = r#"
template hello { channel email message marketing status published }
event order.completed { amount: number }
event page.viewed
campaign bench {
  trigger manual
  hold: wait 3d
  send email.marketing hello
}
"#;

const START: i64 = 29_400_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and a million executions have no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("wake benchmark: run it with `cargo bench --bench wake`");
        return;
    }
    let waiting = env("FLOWC_BENCH_WAITING", 1_000_000);
    let events = env("FLOWC_BENCH_EVENTS", 10_000).min(waiting);
    let dir = std::env::temp_dir().join(format!("flowc-bench-wake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");

    let read = |_: &Path| Ok(FLOW.as_bytes().to_vec());
    let ws = workspace::load(&[Root::discover(Path::new("bench.flow")).expect("root")], &read);
    let analysis = check::check_all(&ws, &[], &CheckOptions::default());
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let mut program = compile::compile(model, c, ws.sources.get(c.file));
    // `hold` as the compiler of `wait until` emits it: one event arm and a timeout.
    let i = program.nodes.iter().position(|n| n.id.0 == "hold").expect("hold");
    let Op::Wait { next, .. } = program.nodes[i].op.clone() else { panic!("hold is a wait") };
    let arm = EventMatch { event: "order.completed".into(), props: vec![], filter: vec![] };
    program.nodes[i].op = Op::WaitUntil {
        arms: vec![WaitArm { on: WaitOn::Event { event: arm }, target: next }],
        timeout_minutes: 4320,
        timeout: next,
    };
    program.version = codec::content_hash(&program);
    codec::validate(&program).expect("valid");

    let mut store = SqliteStore::open(&dir.join("wake.db")).expect("store");
    store
        .put_campaign(
            &flowc::runtime::store::CampaignVersion {
                name: "bench",
                version: &program.version.0,
                program: &codec::to_binary(&program),
                state: CampaignState::Running,
            },
            START,
        )
        .expect("campaign");
    let t = Instant::now();
    let id = |i: usize| format!("c{i:07}");
    for from in (0..waiting).step_by(50_000) {
        let entries: Vec<Enrollment> = (from..(from + 50_000).min(waiting))
            .map(|i| Enrollment::new(id(i).as_str().into(), flowc::check::model::StepId::from("hold"), START + 4320))
            .collect();
        store::atomically(&mut store, |s: &mut dyn Store| s.enroll("bench", &program.version.0, &entries, START))
            .expect("enroll");
    }
    eprintln!("{waiting} executions waiting, enrolled in {:.1?}", t.elapsed());

    // Distinct contacts spread over the whole key range.
    let stride = waiting / events;
    let event = |i: usize, name: &str| Incoming {
        contact: flowc::runtime::store::ContactId(id(i * stride)),
        event: ContactEvent { name: name.into(), at: START + 10 + (i % 60) as i64, props: Default::default() },
    };
    let unrelated: Vec<Incoming> = (0..events).map(|i| event(i, "page.viewed")).collect();
    let t = Instant::now();
    let touched =
        store::atomically(&mut store, |s: &mut dyn Store| ingest::store_and_wake(s, &unrelated)).expect("ingest").woken;
    let unrelated_time = t.elapsed();
    assert_eq!(touched, 0, "an unrelated event wakes nobody");
    eprintln!("{events} unrelated events stored in {unrelated_time:.2?}: {touched} rows touched");

    let concerned: Vec<Incoming> = (0..events).map(|i| event(i, "order.completed")).collect();
    let before = wake::touched();
    let t = Instant::now();
    let touched =
        store::atomically(&mut store, |s: &mut dyn Store| ingest::store_and_wake(s, &concerned)).expect("ingest").woken;
    let time = t.elapsed();
    assert_eq!(touched, events as u64, "one row per concerned event");
    assert_eq!(wake::touched() - before, touched);
    eprintln!(
        "{events} events for {events} distinct contacts among {waiting} waiting: stored and woken in {time:.2?} ({:.1} µs/event), {touched} rows touched",
        time.as_secs_f64() * 1e6 / events as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
