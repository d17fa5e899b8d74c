//! Issue 19 item 5: `set FIELD = EXPR` writes a contact attribute that later
//! steps read, persists it as a delta (a concurrent change of another field
//! is kept), and wakes the `wait until` arms of other campaigns that read it.

mod common;

use common::Db;

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{ContactId, Store};
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const START: i64 = 29_400_000;

const SRC: &str = r#"
template hello { channel email message marketing status published }
contact { lifetime_value: number city: string }
campaign spender {
  trigger manual
  first: set lifetime_value = lifetime_value + 10
  second: set lifetime_value = lifetime_value + 10
  if lifetime_value >= 120 { rich: send email.marketing hello }
}
campaign watcher {
  trigger manual
  w: wait until {
    when lifetime_value >= 120 { tag add "rich" }
    timeout 7d { tag add "slow" }
  }
}
"#;

fn programs() -> (Program, Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(SRC);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let compiled: Vec<Program> =
        model.campaigns.iter().map(|c| compile::compile(&model, c, ws.sources.get(c.file))).collect();
    let find = |n: &str| compiled.iter().find(|p| p.campaign == n).cloned().expect("campaign");
    (find("spender"), find("watcher"), model)
}

fn opts() -> RunOptions {
    RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig::default(),
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    }
}

fn run_on(store: &mut SqliteStore, db: &Db, p: &Program) -> Value {
    let mut provider = Simulated::open(&db.path, SimConfig::default()).expect("provider");
    let r = run::run(store, &mut provider, p, &opts(), &mut |_| {}).expect("run");
    serde_json::to_value(&r).expect("json")
}

fn step<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["steps"].as_array().and_then(|s| s.iter().find(|x| x["id"] == id)).unwrap_or_else(|| panic!("no step {id}: {r}"))
}

#[test]
fn set_is_seen_by_later_steps_persisted_and_wakes_other_campaigns() {
    let (spender, watcher, model) = programs();
    let db = Db::new("wake");
    let mut store = SqliteStore::open(&db.path).expect("store");
    // c0..c9 start at 100 (two sets reach 120), c10..c19 at 50 (they reach 70).
    let lines: Vec<String> = (0..20)
        .map(|i| {
            serde_json::json!({"id": format!("c{i:02}"), "email": format!("c{i}@example.com"),
                "lifetime_value": if i < 10 { 100 } else { 50 }, "city": "Lyon", "consent": ["email"]})
            .to_string()
        })
        .collect();
    let parsed = contacts::parse(&lines.join("\n"), Format::JsonLines, &Schema::from_model(&model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");

    // The watcher parks everyone at its `wait until` (nobody is at 120 yet);
    // stopped right after its first batch so its executions stay parked.
    let o = opts();
    let stop = o.stop.clone();
    let mut provider = Simulated::open(&db.path, SimConfig::default()).expect("provider");
    run::run(&mut store, &mut provider, &watcher, &o, &mut |_| stop.store(true, std::sync::atomic::Ordering::SeqCst))
        .expect("watcher parks");
    let parked: i64 = store
        .connection()
        .query_row(
            "SELECT COUNT(*) FROM executions WHERE campaign = 'watcher' AND step = 'w' AND state = 'pending' AND wake_at > ?1",
            [START],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(parked, 20, "the watcher's executions park at its wait until");

    // The spender sets twice: later steps see the new value (the `if`).
    let r = run_on(&mut store, &db, &spender);
    assert_eq!(step(&r, "rich")["sent"], 10, "{r}");

    // Persisted as a delta: the stored contacts carry 120 / 70.
    for i in 0..20 {
        let c = store.contact(&ContactId(format!("c{i:02}"))).expect("read").expect("contact");
        let want = if i < 10 { 120.0 } else { 70.0 };
        assert_eq!(c.attrs["lifetime_value"].as_f64(), Some(want), "c{i:02}: {:?}", c.attrs);
    }

    // Every watcher execution whose lifetime_value changed is woken at the
    // spender's instant (its arm reads the field) to look again: c0..c9 take
    // the arm there, c10..c19 (at 70) park again until the timeout.
    let woken: i64 = store
        .connection()
        .query_row("SELECT COUNT(*) FROM executions WHERE campaign = 'watcher' AND wake_at = ?1", [START], |r| r.get(0))
        .expect("count");
    assert_eq!(woken, 20, "the contacts whose lifetime_value changed are woken");
    let r = run_on(&mut store, &db, &watcher);
    assert_eq!(step(&r, "w/when1/1")["entered"], 10, "{r}");
    assert_eq!(step(&r, "w/timeout/1")["entered"], 10, "{r}");
}

#[test]
fn a_set_keeps_a_concurrent_change_of_another_field() {
    let (spender, _, model) = programs();
    for db in common::backends("delta") {
        set_keeps_a_concurrent_change_on(&db, &spender, &model);
    }
}

fn set_keeps_a_concurrent_change_on(db: &common::Backend, spender: &Program, model: &flowc::check::model::Model) {
    let mut store = db.open();
    let line = serde_json::json!({"id": "c1", "email": "c1@example.com", "lifetime_value": 100, "city": "Lyon"});
    let parsed = contacts::parse(&line.to_string(), Format::JsonLines, &Schema::from_model(model));
    store.upsert_contacts(&parsed.contacts, &[]).expect("import");
    // Step a batch (it loads the contact with city = Lyon), then an import
    // changes the city before the batch commits: both changes are kept.
    use flowc::runtime::lifecycle::{self, RemovedSteps, State};
    lifecycle::launch(&mut *store, spender, RemovedSteps::Refuse, START).expect("launch");
    lifecycle::transition(&mut *store, "spender", State::Running, "test", START).expect("running");
    assert_eq!(run::enroll(&mut *store, spender, START).expect("enroll"), 1);
    let mut provider = Simulated::open(&db.provider_base(), SimConfig::default()).expect("provider");
    let worker = flowc::runtime::store::Lease::new(flowc::runtime::store::WorkerId("t".into()));
    let stepped = {
        let mut engine = flowc::runtime::engine::Engine::new(
            &mut *store,
            &mut provider,
            spender.clone(),
            EngineConfig::default(),
            worker.clone(),
        )
        .expect("engine");
        engine.step_batch(START).expect("step")
    };
    let moved = serde_json::json!({"id": "c1", "email": "c1@example.com", "lifetime_value": 100, "city": "Paris"});
    let parsed = contacts::parse(&moved.to_string(), Format::JsonLines, &Schema::from_model(model));
    store.upsert_contacts(&parsed.contacts, &[]).expect("concurrent import");
    store.commit("spender", &stepped.round, &worker, START).expect("commit");
    let c = store.contact(&ContactId("c1".into())).expect("read").expect("contact");
    assert_eq!(c.attrs["city"], "Paris", "the concurrent change is kept: {:?}", c.attrs);
    assert_eq!(c.attrs["lifetime_value"].as_f64(), Some(120.0), "the set is applied: {:?}", c.attrs);
}
