//! Issue 19 item 3: re-entry. An event fired three times per contact enrolls
//! once under `reentry once`, three times under `always` (even while the
//! earlier executions still run), and under `after 1d` exactly when the
//! previous execution started at least a day before — each execution with
//! its own sends and idempotency keys (never taken for duplicates).

mod common;

use common::Backend;

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::facts::ContactEvent;
use flowc::runtime::ingest::Incoming;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::store::Store;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const START: i64 = 29_400_000;
const HOUR: i64 = 60;
const DAY: i64 = 1440;

fn source(rule: &str) -> String {
    format!(
        r#"
template m {{ channel email message marketing status published }}
event order.completed {{ amount: number }}
campaign thanks {{
  trigger event order.completed
  reentry {rule}
  hello: send email.marketing m
  wait 2d
  if opened(hello) {{ again: send email.marketing m }}
  bye: send email.marketing m
}}
"#
    )
}

fn compiled(rule: &str) -> (Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(&source(rule));
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    (compile::compile(&model, c, ws.sources.get(c.file)), model)
}

const N: usize = 30;

/// The three purchase times of contact `i`: gaps of 6 h to 30 h, then 20 h to 28 h.
fn times(i: usize) -> [i64; 3] {
    let t0 = START + HOUR + i as i64 * 10;
    let t1 = t0 + 6 * HOUR + (i as i64 % 5) * 6 * HOUR;
    let t2 = t1 + 20 * HOUR + (i as i64 % 3) * 4 * HOUR;
    [t0, t1, t2]
}

/// Executions `after 1d` gives, computed here: an event enrolls when the
/// contact's previous execution started at least a day before it.
fn expected_after_a_day() -> usize {
    (0..N)
        .map(|i| {
            let mut last: Option<i64> = None;
            let mut n = 0;
            for t in times(i) {
                if last.is_none_or(|l| t - l >= DAY) {
                    last = Some(t);
                    n += 1;
                }
            }
            n
        })
        .sum()
}

fn run_rule(rule: &str, db: &Backend) -> Value {
    let (p, model) = compiled(rule);
    let mut store = db.open();
    let lines: Vec<String> = (0..N)
        .map(|i| {
            serde_json::json!({"id": format!("c{i:02}"), "email": format!("c{i}@example.com"), "consent": ["email"]})
                .to_string()
        })
        .collect();
    let parsed = contacts::parse(&lines.join("\n"), Format::JsonLines, &Schema::from_model(&model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    let mut events = Vec::new();
    for i in 0..N {
        for (k, at) in times(i).into_iter().enumerate() {
            let mut props = serde_json::Map::new();
            props.insert("amount".into(), serde_json::json!(10 + k));
            events.push(Incoming {
                contact: format!("c{i:02}").as_str().into(),
                event: ContactEvent { name: "order.completed".into(), at, props },
            });
        }
    }
    let mut provider = Simulated::open(&db.provider_base(), SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig { batch: 13, ..EngineConfig::default() },
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run_with_events(&mut *store, &mut provider, &p, &opts, events, &mut |_| {}).expect("run");
    serde_json::to_value(&r).expect("json")
}

/// One count read under the store: `sqlite`'s query on the file, `pg`'s on
/// the PostgreSQL database (where the idempotency key is derived, not stored).
fn count(db: &Backend, sqlite: &str, pg: &str) -> i64 {
    match db {
        Backend::Sqlite(file) => {
            rusqlite::Connection::open(&file.path).expect("open").query_row(sqlite, [], |r| r.get(0)).expect("count")
        }
        Backend::Postgres(pgdb, _) => pgdb.raw().query_one(pg, &[]).expect("count").get(0),
    }
}

fn step<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["steps"].as_array().and_then(|s| s.iter().find(|x| x["id"] == id)).unwrap_or_else(|| panic!("no step {id}: {r}"))
}

fn check(rule: &str, executions: usize) {
    for db in common::backends(&rule.replace(' ', "-")) {
        check_on(rule, executions, &db);
    }
}

fn check_on(rule: &str, executions: usize, db: &Backend) {
    let r = run_rule(rule, db);
    assert_eq!(r["executions"]["completed"], executions as u64, "{rule}: {r}");
    assert_eq!(step(&r, "hello")["sent"], executions as u64, "{rule}: {r}");
    assert_eq!(step(&r, "bye")["sent"], executions as u64, "{rule}: {r}");
    assert_eq!(r["provider"]["duplicates"], 0, "{rule}: no re-entry is taken for a duplicate: {r}");
    let rows = count(
        db,
        "SELECT COUNT(*) FROM executions WHERE campaign = 'thanks'",
        "SELECT COUNT(*) FROM executions WHERE campaign = 'thanks'",
    );
    assert_eq!(rows as usize, executions, "{rule}");
    let keys = count(
        db,
        "SELECT COUNT(DISTINCT key) FROM outbox WHERE campaign = 'thanks' AND step = 'hello'",
        "SELECT COUNT(*) FROM (SELECT DISTINCT contact_id, entry FROM outbox WHERE campaign = 'thanks' AND step = 'hello') k",
    );
    assert_eq!(keys as usize, executions, "{rule}: one idempotency key per execution");
    // `opened(hello)` reads this execution's own `hello` only: `again` is
    // sent at most once per execution, and exactly to those whose own
    // hello the provider reports opened.
    let again_sql = "SELECT COUNT(*) FROM outbox WHERE campaign = 'thanks' AND step = 'again'";
    let again = count(db, again_sql, again_sql);
    let opened_sql =
        "SELECT COUNT(*) FROM outbox h WHERE h.campaign = 'thanks' AND h.step = 'hello' AND h.opened_at IS NOT NULL
               AND h.opened_at <= h.created_at + 2880";
    let opened = count(db, opened_sql, opened_sql);
    assert_eq!(again, opened, "{rule}");
}

#[test]
fn once_enrolls_a_contact_once() {
    check("once", N);
}

#[test]
fn always_enrolls_on_every_event_even_while_one_runs() {
    check("always", 3 * N);
}

#[test]
fn after_a_day_enrolls_when_the_previous_start_is_a_day_old() {
    let want = expected_after_a_day();
    assert!(want > N && want < 3 * N, "the times make `after 1d` differ from both: {want}");
    check("after 1d", want);
}

/// Wake-ups and exits by event concern every pending execution of the
/// contact (under re-entry, more than one), through the same key range.
#[test]
fn wake_and_exit_touch_each_pending_execution_of_the_contact() {
    for db in common::backends("wake-exit") {
        wake_and_exit_on(&mut *db.open());
    }
}

fn wake_and_exit_on(store: &mut dyn Store) {
    use flowc::compile::program::Reentry;
    use flowc::runtime::store::{ContactId, Enrollment, StepId, Steps};
    let c = ContactId("c1".into());
    let at = |t| Enrollment::new(c.clone(), StepId("w".into()), t);
    let n = store.reenter("k", "v", &[at(START), at(START + 10), at(START + 20)], Reentry::Always, START).expect("in");
    assert_eq!(n, 3);
    let w = StepId("w".into());
    assert_eq!(store.wake("k", &c, Steps::Only(&[&w]), START - 5).expect("wake"), 3);
    assert_eq!(store.exit("k", &c, "exit:1", START + 30).expect("exit"), 3);
    let other = ContactId("c2".into());
    assert_eq!(store.exit("k", &other, "exit:1", START + 30).expect("exit"), 0);
}
