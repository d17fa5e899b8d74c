//! `flowc events import` and `flowc run --events` end to end (issue 18):
//! event files are checked line by line like `POST /v1/events`, stored once,
//! and replayed on the run's virtual clock at their `at` times.

mod common;

use common::{code, flowc, stderr, TempDir};
use flowc::runtime::sqlite::{OpenMode, SqliteStore};
use flowc::runtime::store::Store;
use std::process::Output;

const FLOW: &str = r#"
template hi { channel email message transactional status published }
event order.completed { amount: number }
contact { plan: enum(free, pro) }
campaign c {
  trigger manual
  wait 1d
  if happened order.completed within 1d {
    buy: tag add "buyer"
  }
}
"#;

const CONTACTS: &str = "{\"id\": \"a\", \"email\": \"a@example.com\", \"plan\": \"pro\"}\n{\"id\": \"b\", \"email\": \"b@example.com\", \"plan\": \"free\"}\n{\"id\": \"c\", \"email\": \"c@example.com\", \"plan\": \"free\"}\n";

/// A database whose schema declares `order.completed`, with contacts a, b, c.
fn setup(dir: &TempDir) -> (String, String) {
    let db = dir.path("e.db");
    let flow = dir.path("c.flow");
    std::fs::write(&flow, FLOW).expect("flow");
    let contacts = dir.path("c.jsonl");
    std::fs::write(&contacts, CONTACTS).expect("contacts");
    let o = flowc(&["contacts", "import", &contacts, "--schema", &flow, "--db", &db]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (db, flow)
}

fn stored_events(db: &str) -> usize {
    let store = SqliteStore::open_as(std::path::Path::new(db), OpenMode::ReadOnly).expect("db");
    store.events_for(&[&"a".into(), &"b".into(), &"c".into()]).expect("events").len()
}

#[test]
fn import_stores_each_event_once() {
    let dir = TempDir::new("events-import");
    let (db, _) = setup(&dir);
    let file = dir.path("ev.jsonl");
    std::fs::write(
        &file,
        "{\"contact\": \"a\", \"name\": \"order.completed\", \"at\": \"2026-11-27T10:00:00Z\", \"props\": {\"amount\": 12}}\n\n{\"contact\": \"b\", \"name\": \"order.completed\", \"at\": \"2026-11-27T11:00:00Z\"}\n",
    )
    .expect("events");
    let o = flowc(&["events", "import", &file, "--db", &db]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("imported 2 event(s)"), "{}", stderr(&o));
    assert_eq!(stored_events(&db), 2);
    let again = flowc(&["events", "import", &file, "--db", &db]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(stored_events(&db), 2, "importing a file twice stores nothing new");
}

#[test]
fn an_invalid_line_imports_nothing_and_names_its_line_and_field() {
    let dir = TempDir::new("events-invalid");
    let (db, _) = setup(&dir);
    let file = dir.path("ev.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"contact": "a", "name": "order.completed", "at": "2026-11-27T10:00:00Z"}"#,
            r#"{"contact": "a", "name": "order.complete"}"#,
            r#"{"contact": "b", "name": "order.completed", "props": {"amount": "lots"}}"#,
            r#"{"contact": "nobody", "name": "order.completed"}"#,
            r#"{"contact": "c", "name": "order.completed", "at": "yesterday"}"#,
            r#"not json"#,
        ]
        .join("\n"),
    )
    .expect("events");
    let o = flowc(&["events", "import", &file, "--db", &db]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    for needle in [
        "line 2: field `name`: no event `order.complete` is declared",
        "did you mean `order.completed`",
        "line 3: field `props`: property `amount`",
        "line 4: field `contact`: no such contact: nobody",
        "line 5: field `at`",
        "line 6: invalid JSON",
        "5 of 6 line(s)",
        "nothing imported",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert_eq!(stored_events(&db), 0);

    let o = flowc(&["events", "import", &file, "--db", &db, "--skip-invalid"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stored_events(&db), 1, "the valid line only");
}

#[test]
fn errors_are_capped_and_long_lines_refused_without_a_panic() {
    let dir = TempDir::new("events-many");
    let (db, _) = setup(&dir);
    let file = dir.path("ev.jsonl");
    let mut text: String = (0..120).map(|_| "{\"contact\": \"a\", \"name\": \"nope\"}\n").collect();
    text.push_str(&format!("{{\"contact\": \"a\", \"name\": \"{}\"}}\n", "x".repeat(300 * 1024)));
    std::fs::write(&file, text).expect("events");
    let o = flowc(&["events", "import", &file, "--db", &db]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert_eq!(err.matches("is declared").count(), 50, "the first 50 errors only:\n{err}");
    assert!(err.contains("… and 71 more errors"), "{err}");
    assert!(err.contains("121 of 121 line(s)"), "{err}");
}

fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

/// The run starts at 09:00; `wait 1d` then asks who completed an order in
/// the last day. a's order (12:00) counts; c's (the day before the start)
/// is stored at the start but is too old; b's comes two days later, after
/// the check: replayed at its time, it cannot count (imported up front, it would).
#[test]
fn run_replays_events_at_their_times() {
    let dir = TempDir::new("events-run");
    let (db, flow) = setup(&dir);
    let file = dir.path("ev.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"contact": "b", "name": "order.completed", "at": "2026-11-29T09:30:00Z"}"#,
            r#"{"contact": "a", "name": "order.completed", "at": "2026-11-27T12:00:00Z"}"#,
            r#"{"contact": "c", "name": "order.completed", "at": "2026-11-26T09:00:00Z"}"#,
        ]
        .join("\n"),
    )
    .expect("events");
    let args = ["run", &flow, "--db", &db, "--events", &file, "--start", "2026-11-27T09:00:00Z", "--report", "json"];
    let o = flowc(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    let buy = r["steps"].as_array().and_then(|s| s.iter().find(|s| s["id"] == "buy")).cloned().unwrap_or_default();
    assert_eq!(buy["entered"], 1, "{r}");
    assert_eq!(r["state"], "COMPLETED", "{r}");
    assert_eq!(stored_events(&db), 3, "every event is in, the last one after the check");
    // The clock went on to the last event's time before the campaign could
    // finish: events still to come may wake or exit its executions.
    let store = SqliteStore::open_as(std::path::Path::new(&db), OpenMode::ReadOnly).expect("db");
    let clock: i64 = store.meta("clock").expect("meta").and_then(|v| v.parse().ok()).expect("a saved clock");
    let last = flowc::runtime::facts::parse_datetime("2026-11-29T09:30:00Z").expect("time");
    assert_eq!(clock, last);
}

#[test]
fn run_refuses_an_invalid_events_file_before_it_starts() {
    let dir = TempDir::new("events-run-invalid");
    let (db, flow) = setup(&dir);
    let file = dir.path("ev.jsonl");
    std::fs::write(&file, "{\"contact\": \"a\", \"name\": \"order.completed\", \"at\": 5}\n").expect("events");
    let o = flowc(&["run", &flow, "--db", &db, "--events", &file, "--start", "2026-11-27T09:00:00Z"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1: field `at`"), "{}", stderr(&o));
    let store = SqliteStore::open_as(std::path::Path::new(&db), OpenMode::ReadOnly).expect("db");
    assert_eq!(store.counts("c").expect("counts").values().sum::<u64>(), 0, "nothing ran");
}

/// Replayed events start event-triggered campaigns at their times, as
/// `POST /v1/events` does: the rule and the audience decide.
#[test]
fn run_enrolls_on_replayed_trigger_events() {
    let dir = TempDir::new("events-trigger");
    let (db, _) = setup(&dir);
    let flow = dir.path("t.flow");
    std::fs::write(
        &flow,
        "template hi { channel email message transactional status published }\nevent order.completed { amount: number }\ncontact { plan: enum(free, pro) }\ncampaign t {\n  trigger event order.completed where amount > 10\n  thanks: send email.transactional hi\n}\n",
    )
    .expect("flow");
    let file = dir.path("ev.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"contact": "a", "name": "order.completed", "at": "2026-11-27T12:00:00Z", "props": {"amount": 50}}"#,
            r#"{"contact": "b", "name": "order.completed", "at": "2026-11-28T12:00:00Z", "props": {"amount": 5}}"#,
            r#"{"contact": "c", "name": "order.completed", "at": "2026-11-29T12:00:00Z", "props": {"amount": 30}}"#,
        ]
        .join("\n"),
    )
    .expect("events");
    let o =
        flowc(&["run", &flow, "--db", &db, "--events", &file, "--start", "2026-11-27T09:00:00Z", "--report", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = report(&o);
    let thanks =
        r["steps"].as_array().and_then(|s| s.iter().find(|s| s["id"] == "thanks")).cloned().unwrap_or_default();
    assert_eq!(thanks["entered"], 2, "a and c, not b (amount 5): {r}");
}
