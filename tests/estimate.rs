//! Segments in SQL and in memory agree; hostile strings stay literal;
//! estimates bracket what a run actually does.

mod common;

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::estimate::{self, Settings};
use flowc::runtime::eval::{self, Ctx};
use flowc::runtime::facts::{self, Facts};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{Audience, Store, StoreError};
use proptest::prelude::*;
use std::collections::BTreeSet;

const NOW: i64 = 29_400_000; // 2025-11-23T08:00Z in minutes

const SCHEMA: &str = r#"
template t { channel email message marketing status published }
contact {
  plan: enum(free, pro, enterprise)
  score: number
  country: string
  nick: string?
  birthday: date?
  vip: bool?
  interests: set<string>?
  cooldown: duration?
}
event order.completed { amount: number }
"#;

const HOSTILE: &[&str] =
    &["FR", "it's", "\"quoted\"", "'; DROP TABLE contacts; --", "a\u{0}b", "%", "_", "ünïcödé", "x\\y", ""];

fn hostile(i: usize) -> String {
    if i == 9 {
        return "long".repeat(1000);
    }
    HOSTILE[i % HOSTILE.len()].to_string()
}

fn lit(s: &str) -> String {
    flowc::syntax::print::string(s)
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..3, any::<bool>()).prop_map(|(p, eq)| format!(
            "plan {} {}",
            if eq { "==" } else { "!=" },
            ["free", "pro", "enterprise"][p]
        )),
        (0usize..3).prop_map(|p| format!("plan in [{}]", ["free", "pro", "free, enterprise"][p])),
        (0usize..6, -5i64..120).prop_map(|(o, n)| format!("score {} {n}", ["==", "!=", "<", "<=", ">", ">="][o])),
        (0usize..10, any::<bool>()).prop_map(|(h, eq)| format!(
            "country {} {}",
            if eq { "==" } else { "!=" },
            lit(&hostile(h))
        )),
        any::<bool>().prop_map(|eq| format!("nick {} none", if eq { "==" } else { "!=" })),
        (0usize..10).prop_map(|h| format!("tags has {}", lit(&hostile(h)))),
        (1960i32..2010).prop_map(|y| format!("birthday < {y}-06-15")),
        (1i64..20).prop_map(|d| format!("created_at > now - {d}d")),
        Just("consent(email)".to_string()),
        Just("capable(rcs)".to_string()),
        (1i64..40, 0i64..200).prop_map(|(d, a)| format!("(happened order.completed within {d}d where amount > {a})")),
        (1i64..20).prop_map(|d| format!("happened contact.created within {d}d")),
        any::<bool>().prop_map(|b| format!("vip == {b}")),
        (0i64..100).prop_map(|n| format!("score + 10 > {n}")),
        (0usize..3).prop_map(|i| format!("interests has {}", lit(INTERESTS[i]))),
        (0usize..6, 0usize..4).prop_map(|(o, d)| format!(
            "cooldown {} {}",
            ["==", "!=", "<", "<=", ">", ">="][o],
            ["0m", "1h", "2h", "90m"][d]
        )),
        any::<bool>().prop_map(|eq| format!("cooldown {} none", if eq { "==" } else { "!=" })),
        (0usize..3).prop_map(|k| format!("score in [{}]", ["50", "0, 99, 120", "7"][k])),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

#[derive(Debug, Clone)]
struct C {
    plan: usize,
    score: Option<i64>,
    country: usize,
    nick: bool,
    birthday: Option<i32>,
    vip: Option<bool>,
    tags: Vec<usize>,
    created_days_ago: i64,
    email: bool,
    rcs: bool,
    orders: Vec<(i64, i64)>,
    /// Indices into `INTERESTS`; none written when empty.
    interests: Vec<usize>,
    /// Minutes.
    cooldown: Option<i64>,
}

const INTERESTS: &[&str] = &["golf", "tennis", "chess"];

fn contact() -> impl Strategy<Value = C> {
    (
        (
            0usize..3,
            proptest::option::of(-10i64..130),
            0usize..10,
            any::<bool>(),
            proptest::option::of(1950i32..2015),
            proptest::option::of(any::<bool>()),
        ),
        (
            proptest::collection::vec(0usize..10, 0..3),
            0i64..30,
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec((0i64..60, 0i64..250), 0..3),
            proptest::collection::vec(0usize..3, 0..3),
            proptest::option::of(prop_oneof![Just(0i64), Just(60), Just(120), 0i64..400]),
        ),
    )
        .prop_map(
            |(
                (plan, score, country, nick, birthday, vip),
                (tags, created_days_ago, email, rcs, orders, interests, cooldown),
            )| C {
                plan,
                score,
                country,
                nick,
                birthday,
                vip,
                tags,
                created_days_ago,
                email,
                rcs,
                orders,
                interests,
                cooldown,
            },
        )
}

fn minutes_to_rfc3339(m: i64) -> String {
    chrono::DateTime::from_timestamp(m * 60, 0).expect("time").to_rfc3339()
}

fn jsonl(cs: &[C]) -> String {
    cs.iter()
        .enumerate()
        .map(|(i, c)| {
            let plan = ["free", "pro", "enterprise"][c.plan];
            let mut o = serde_json::json!({
                "id": format!("c{i}"),
                "email": format!("c{i}@example.com"),
                "plan": plan,
                "country": hostile(c.country),
                "created_at": minutes_to_rfc3339(NOW - c.created_days_ago * 1440 - 7),
                "tags": c.tags.iter().map(|t| hostile(*t)).collect::<Vec<_>>(),
                "consent": if c.email { vec!["email"] } else { vec![] },
                "capabilities": if c.rcs { vec!["rcs"] } else { vec![] },
                "events": c.orders.iter().map(|(ago, amount)| serde_json::json!({"name": "order.completed", "at": minutes_to_rfc3339(NOW - ago * 1440), "amount": amount})).collect::<Vec<_>>(),
            });
            if let Some(s) = c.score {
                o["score"] = s.into();
            }
            if c.nick {
                o["nick"] = "nick".into();
            }
            if let Some(y) = c.birthday {
                o["birthday"] = format!("{y}-03-01").into();
            }
            if let Some(v) = c.vip {
                o["vip"] = v.into();
            }
            if !c.interests.is_empty() {
                o["interests"] = c.interests.iter().map(|i| INTERESTS[*i]).collect::<Vec<_>>().into();
            }
            if let Some(m) = c.cooldown {
                o["cooldown"] = m.into();
            }
            o.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn setup(cond: &str, cs: &[C]) -> (Program, SqliteStore) {
    let src = format!(
        "{SCHEMA}segment s = {cond}\ncampaign c {{\n  trigger manual\n  audience s\n  send email.marketing t\n}}\n"
    );
    let (analysis, ws) = common::check_source(&src);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{src}");
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let p = compile::compile(model, c, ws.sources.get(c.file));
    let mut store = SqliteStore::open_in_memory().expect("store");
    let parsed = contacts::parse(&jsonl(cs), Format::JsonLines, &Schema::from_model(model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    (p, store)
}

fn in_memory(p: &Program, store: &dyn Store) -> BTreeSet<String> {
    let mut all = Vec::new();
    store.for_each_contact(&mut |c| all.push(c)).expect("contacts");
    let mut out = BTreeSet::new();
    for c in all {
        let mut events: Vec<_> = store.events_for(&[&c.id]).expect("events").into_iter().map(|e| e.event).collect();
        if let Some(t) = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(facts::parse_datetime) {
            events.push(facts::ContactEvent { name: "contact.created".into(), at: t, props: Default::default() });
        }
        let f = Facts {
            contact_id: c.id.clone(),
            fields: facts::fields_for(p, &c),
            tags: c.tags.clone(),
            consent: c.consent.clone(),
            capabilities: c.capabilities.clone(),
            addresses: facts::addresses_of(&c),
            sent: vec![],
            events,
        };
        let cx = Ctx { program: p, facts: &f, now: NOW };
        if p.audience.as_ref().is_none_or(|a| eval::eval(&cx, a)) {
            out.insert(c.id.0);
        }
    }
    out
}

/// The audience as the store selects it (`Store::audience`: SQLite compiles
/// the condition to SQL), which is what estimates read.
fn in_sql(p: &Program, store: &dyn Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let audience = Audience { program: p, filter: p.audience.as_ref(), at: NOW };
    store
        .audience(audience, &mut |c| {
            out.insert(c.id.0);
            Ok(())
        })
        .expect("sql");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sql_and_memory_select_the_same_contacts(cond in condition(), cs in proptest::collection::vec(contact(), 0..25)) {
        let (p, store) = setup(&cond, &cs);
        let mem = in_memory(&p, &store);
        let sql = in_sql(&p, &store);
        prop_assert_eq!(mem, sql, "segment: {}", cond);
    }
}

/// The same agreement on PostgreSQL, whose store compiles what it can of a
/// condition to its own SQL (`runtime/postgres/segment.rs`) and evaluates
/// the rest in Rust: one database, emptied between cases.
#[test]
fn postgres_selects_the_contacts_memory_selects() {
    let Some(db) = common::postgres("pg_audience_agrees") else { return };
    let store = std::cell::RefCell::new(db.connect());
    let raw = std::cell::RefCell::new(db.raw());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 150, ..ProptestConfig::default() });
    let cases = (condition(), proptest::collection::vec(contact(), 0..25));
    let (analysis, _) = common::check_source(SCHEMA);
    let schema = Schema::from_model(&analysis.models[0].1);
    let outcome = runner.run(&cases, |(cond, cs)| {
        // PostgreSQL's text holds no NUL, so no contact carries one here
        // (a condition may: the store leaves that one to Rust).
        prop_assume!(cs.iter().all(|c| c.country != 4 && !c.tags.contains(&4)));
        let (p, _) = setup(&cond, &cs);
        raw.borrow_mut().batch_execute("TRUNCATE contacts, contact_events").expect("empty");
        let parsed = contacts::parse(&jsonl(&cs), Format::JsonLines, &schema);
        let mut store = store.borrow_mut();
        store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
        let mem = in_memory(&p, &*store);
        let sql = in_sql(&p, &*store);
        prop_assert_eq!(mem, sql, "segment: {}", cond);
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

/// Boundaries a random search rarely lands on: equal numbers under each
/// ordering, non-ASCII and pattern characters compared as text, booleans,
/// absent values.
#[test]
fn postgres_compares_at_the_boundaries_as_memory_does() {
    let Some(db) = common::postgres("pg_audience_boundaries") else { return };
    let mut store = db.connect();
    let cs: Vec<C> = (0..12)
        .map(|i| C {
            plan: i % 3,
            score: [Some(49), Some(50), Some(51), None][i % 4],
            country: [0, 1, 5, 6, 7, 8][i % 6],
            nick: i % 2 == 0,
            birthday: None,
            vip: [Some(true), Some(false), None][i % 3],
            tags: vec![i % 3],
            created_days_ago: 1,
            email: i % 2 == 1,
            rcs: i % 5 == 0,
            orders: vec![],
            interests: vec![],
            cooldown: None,
        })
        .collect();
    let (analysis, _) = common::check_source(SCHEMA);
    let parsed = contacts::parse(&jsonl(&cs), Format::JsonLines, &Schema::from_model(&analysis.models[0].1));
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    let conditions = [
        "score < 50",
        "score <= 50",
        "score > 50",
        "score >= 50",
        "score == 50",
        "score != 50",
        "not (score < 50)",
        "country == \"ünïcödé\"",
        "country != \"%\"",
        "country == \"_\"",
        "vip == true",
        "vip != true",
        "vip == none",
        "not (vip == false)",
        "nick == none",
        "plan in [free, enterprise]",
        "tags has \"FR\"",
        "not (tags has \"it's\")",
        "consent(email) and not capable(rcs)",
        "id == \"c3\"",
        "id != \"c4\"",
    ];
    for cond in conditions {
        let (p, _) = setup(cond, &cs);
        assert_eq!(in_sql(&p, &store), in_memory(&p, &store), "segment: {cond}");
    }
}

#[test]
fn hostile_strings_match_literally_and_harm_nothing() {
    let cs: Vec<C> = (0..10)
        .map(|i| C {
            plan: 0,
            score: Some(1),
            country: i,
            nick: false,
            birthday: None,
            vip: None,
            tags: vec![i],
            created_days_ago: 1,
            email: true,
            rcs: false,
            orders: vec![],
            interests: vec![],
            cooldown: None,
        })
        .collect();
    for i in 0..10 {
        let cond = format!("country == {} and tags has {}", lit(&hostile(i)), lit(&hostile(i)));
        let (p, store) = setup(&cond, &cs);
        let got = in_sql(&p, &store);
        assert_eq!(got, BTreeSet::from([format!("c{i}")]), "{:?}", hostile(i));
        assert_eq!(store.contact_count().expect("count"), 10, "the table is intact");
    }
}

#[test]
fn estimates_bracket_an_actual_run() {
    use flowc::runtime::provider::{SimConfig, Simulated};
    use flowc::runtime::run::{self, ClockKind, RunOptions};
    let src = format!(
        "{SCHEMA}campaign c {{
  trigger manual
  audience score >= 20
  first: send email.marketing t
  wait 2d
  if opened(first) or plan == pro {{
    ab_test x {{
      variant a 60% {{ send email.marketing t }}
      variant b 40% {{ }}
    }}
  }}
}}"
    );
    let (analysis, ws) = common::check_source(&src);
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let p = compile::compile(model, c, ws.sources.get(c.file));
    let cs: Vec<C> = (0..3000)
        .map(|i| C {
            plan: i % 3,
            score: Some((i % 100) as i64),
            country: 0,
            nick: false,
            birthday: None,
            vip: None,
            tags: vec![],
            created_days_ago: 1,
            email: i % 4 != 0,
            rcs: false,
            orders: vec![],
            interests: vec![],
            cooldown: None,
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("flowc-est-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("e.db");
    let mut store = SqliteStore::open(&db).expect("store");
    let parsed = contacts::parse(&jsonl(&cs), Format::JsonLines, &Schema::from_model(model));
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    assert_eq!(e.audience, 2400, "score >= 20 selects 80%");
    let mut provider = Simulated::open(&db, SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(NOW),
        initial_balance_micros: 1_000_000_000,
        engine: Default::default(),
        stop: Default::default(),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run(&mut store, &mut provider, &p, &opts, &mut |_| {}).expect("run");
    for (est, act) in e.steps.iter().zip(&r.steps) {
        assert_eq!(est.id, act.id);
        let actual = act.entered as f64;
        assert!(
            est.reach.min <= actual && actual <= est.reach.max,
            "{}: {actual} outside [{}, {}]",
            est.id,
            est.reach.min,
            est.reach.max
        );
        let tolerance = (0.05 * est.reach.expected).max(25.0);
        assert!(
            (est.reach.expected - actual).abs() <= tolerance,
            "{}: expected {:.1}, actual {actual}",
            est.id,
            est.reach.expected
        );
    }
    assert!(e.cost.min <= r.cost.total + 1e-9 && r.cost.total <= e.cost.max + 1e-9, "{:?} vs {}", e.cost, r.cost.total);
    assert!((e.cost.expected - r.cost.total).abs() <= 0.05 * r.cost.total + 0.01);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn estimate_reads_tags_and_ids_like_the_runtime() {
    let src =
        format!("{SCHEMA}campaign c {{\n  trigger manual\n  if tags has \"FR\" {{ send email.marketing t }}\n}}\n");
    let (analysis, ws) = common::check_source(&src);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let p = compile::compile(model, c, ws.sources.get(c.file));
    let cs: Vec<C> = (0..10)
        .map(|i| C {
            plan: 0,
            score: Some(1),
            country: 0,
            nick: false,
            birthday: None,
            vip: None,
            tags: if i < 4 { vec![0] } else { vec![] },
            created_days_ago: 1,
            email: true,
            rcs: false,
            orders: vec![],
            interests: vec![],
            cooldown: None,
        })
        .collect();
    let mut store = SqliteStore::open_in_memory().expect("store");
    let parsed = contacts::parse(&jsonl(&cs), Format::JsonLines, &Schema::from_model(model));
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    assert_eq!(e.sends[0].sends.expected, 4.0);
}

fn compiled(src: &str) -> (Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(src);
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    (compile::compile(&model, c, ws.sources.get(c.file)), model)
}

/// A database file with these contacts, removed when dropped.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(name: &str, model: &flowc::check::model::Model, cs: &[C]) -> (TempDb, SqliteStore) {
        let dir = std::env::temp_dir().join(format!("flowc-est-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = TempDb(dir.join("e.db"));
        let mut store = SqliteStore::open(&db.0).expect("store");
        let parsed = contacts::parse(&jsonl(cs), Format::JsonLines, &Schema::from_model(model));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
        (db, store)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn run_virtual(db: &TempDb, store: &mut SqliteStore, p: &Program) -> flowc::runtime::report::Report {
    use flowc::runtime::provider::{SimConfig, Simulated};
    use flowc::runtime::run::{self, ClockKind, RunOptions};
    let mut provider = Simulated::open(&db.0, SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(NOW),
        initial_balance_micros: 1_000_000_000,
        engine: Default::default(),
        stop: Default::default(),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    run::run(store, &mut provider, p, &opts, &mut |_| {}).expect("run")
}

fn plain(i: usize) -> C {
    C {
        plan: i % 3,
        score: Some(50),
        country: 0,
        nick: false,
        birthday: None,
        vip: None,
        tags: vec![],
        created_days_ago: 1,
        email: true,
        rcs: false,
        orders: vec![],
        interests: vec![],
        cooldown: None,
    }
}

/// The estimator walks the engine's transitions: a wait moves its clock, so
/// `within` and `now` after the wait are read at the time the run reads them.
/// Without engagement conditions the estimate is exact.
#[test]
fn conditions_after_a_wait_are_estimated_at_the_time_the_run_sees() {
    let (p, model) = compiled(&format!(
        "{SCHEMA}campaign c {{
  trigger manual
  wait 2d
  if happened order.completed within 1d {{
    recent_buyer: send email.marketing t
  }}
  if created_at > now - 3d {{
    new_contact: send email.marketing t
  }}
}}"
    ));
    // Orders at launch and 3 days before; contacts created 0, 1, 2 and 5 days before launch.
    let cs: Vec<C> = (0..400)
        .map(|i| C {
            orders: if i % 2 == 0 { vec![(0, 60)] } else { vec![(3, 60)] },
            interests: vec![],
            cooldown: None,
            created_days_ago: [0, 1, 2, 5][i % 4],
            ..plain(i)
        })
        .collect();
    let (db, mut store) = TempDb::new("wait-clock", &model, &cs);
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    let r = run_virtual(&db, &mut store, &p);
    assert_eq!(e.steps.len(), r.steps.len());
    for (est, act) in e.steps.iter().zip(&r.steps) {
        assert_eq!(est.id, act.id);
        let actual = act.entered as f64;
        assert_eq!((est.reach.min, est.reach.expected, est.reach.max), (actual, actual, actual), "{}", est.id);
    }
    // Two days later, no order is within a day and only the newest contacts are within three days.
    let reach = |id: &str| e.steps.iter().find(|s| s.id == id).map_or(-1.0, |s| s.reach.expected);
    assert_eq!(reach("recent_buyer"), 0.0);
    assert_eq!(reach("new_contact"), 100.0);
    assert!((e.cost.expected - r.cost.total).abs() < 1e-9, "{:?} vs {}", e.cost, r.cost.total);
}

/// An event trigger's estimate counts the contacts with a recorded matching
/// event (name and `where`) in the look-back window, as a run enrolls them.
#[test]
fn event_trigger_estimates_count_matching_recorded_events() {
    let (p, model) = compiled(&format!(
        "{SCHEMA}campaign c {{
  trigger event order.completed where amount > 100 and plan != free
  send email.marketing t
}}"
    ));
    // A third without orders; the others ordered 1 to 20 days ago, half of them big orders.
    let cs: Vec<C> = (0..300)
        .map(|i| C {
            orders: if i % 3 == 0 { vec![] } else { vec![((i % 20) as i64 + 1, if i % 2 == 0 { 150 } else { 60 })] },
            interests: vec![],
            cooldown: None,
            ..plain(i)
        })
        .collect();
    let expected = cs.iter().filter(|c| c.plan != 0 && c.orders.iter().any(|(_, amount)| *amount > 100)).count() as u64;
    assert!(expected > 0 && expected < 200, "a real selection: {expected}");
    let (db, mut store) = TempDb::new("event-trigger", &model, &cs);
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    assert_eq!(e.audience, expected);
    assert_eq!(
        e.entry,
        estimate::Entry::Event {
            event: "order.completed".into(),
            window: "30d".into(),
            since: estimate::rfc3339(NOW - 30 * 1440)
        }
    );
    let r = run_virtual(&db, &mut store, &p);
    let enrolled: u64 = r.executions.values().sum();
    assert_eq!(e.audience, enrolled, "the estimate counts whom the run enrolls");
    assert_eq!(e.sends[0].sends.expected, r.steps[0].sent as f64);
    // A shorter window counts only the recent events.
    let week = estimate::estimate(&store, &p, NOW, &Settings { event_window: 7 * 1440, ..Settings::default() })
        .expect("estimate");
    let recent =
        cs.iter().filter(|c| c.plan != 0 && c.orders.iter().any(|(ago, amount)| *amount > 100 && *ago <= 7)).count()
            as u64;
    assert_eq!(week.audience, recent);
    assert!(recent < expected);
}

/// A corrupt stored contact or event fails the estimate (read through
/// `Store::audience_groups` and `Store::events_for`) with the store's error naming
/// the table, the row and the value: never a default, never a panic.
#[test]
fn an_estimate_over_a_corrupt_row_names_it() {
    let (p, model) = compiled(&format!(
        "{SCHEMA}campaign c {{
  trigger manual
  if happened order.completed within 1d {{
    send email.marketing t
  }}
}}"
    ));
    let cs: Vec<C> = (0..3).map(|i| C { orders: vec![(0, 60)], ..plain(i) }).collect();
    let estimate_error = |store: &SqliteStore| {
        let e = estimate::estimate(store, &p, NOW, &Settings::default()).expect_err("a corrupt row is an error");
        assert!(matches!(e, StoreError::CorruptRow { .. }), "{e:?}");
        e.to_string()
    };

    let (_db, mut store) = TempDb::new("corrupt-event", &model, &cs);
    store.connection().execute("UPDATE contact_events SET props = '{oops' WHERE contact_id = 'c2'", []).expect("raw");
    let text = estimate_error(&store);
    assert!(text.contains("contact_events") && text.contains("c2") && text.contains("{oops"), "{text}");

    let (_db, mut store) = TempDb::new("corrupt-contact", &model, &cs);
    // The consent as the estimate reads it: with the sets in the contact's
    // `profile` (schema 8), which every write keeps with them.
    let corrupt = "UPDATE contacts SET consent = '[oops', profile = flowc_profile(tags, '[oops', capabilities, addresses) WHERE id = 'c1'";
    store.connection().execute(corrupt, []).expect("raw");
    let text = estimate_error(&store);
    assert!(text.contains("contacts") && text.contains("c1") && text.contains("[oops"), "{text}");
}

/// Issue 18: a `wait until` and exits can only lower reach. `min` assumes
/// every arm that ends, and every exit, is taken; `max` assumes none is. A
/// state arm that holds when the contact arrives is taken at once, exactly;
/// an `exit when EXPR` that holds leaves before the first step.
#[test]
fn wait_until_and_exits_only_lower_reach() {
    let (p, model) = compiled(&format!(
        "{SCHEMA}campaign c {{
  trigger manual
  exit when plan == enterprise
  first: send email.marketing t
  cart: wait until {{
    when event order.completed {{
      bought: send email.marketing t
      end
    }}
    when plan == pro {{ pro: send email.marketing t }}
    timeout 3d {{ nudge: send email.marketing t }}
  }}
  after: send email.marketing t
}}"
    ));
    // Plans cycle free, pro, enterprise: 100 of each.
    let cs: Vec<C> = (0..300).map(plain).collect();
    let (_db, store) = TempDb::new("wait-until", &model, &cs);
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    let reach = |id: &str| e.steps.iter().find(|s| s.id == id).map(|s| (s.reach.min, s.reach.max)).expect(id);
    // Enterprise contacts exit before anything runs.
    assert_eq!(reach("first"), (200.0, 200.0));
    assert_eq!(reach("cart"), (200.0, 200.0));
    // Pro contacts meet their arm on arrival and take it for certain; a free
    // contact may become pro while it waits.
    assert_eq!(reach("pro"), (100.0, 200.0));
    // Free contacts may buy (and end) or time out: certain of neither.
    assert_eq!(reach("bought"), (0.0, 100.0));
    assert_eq!(reach("nudge"), (0.0, 100.0));
    assert_eq!(reach("after"), (100.0, 200.0));
    for s in &e.steps {
        assert!(s.reach.min <= s.reach.expected && s.reach.expected <= s.reach.max, "{s:?}");
    }

    // An event exit may fire once time has passed: after the wait nothing is certain.
    let (p, model) = compiled(&format!(
        "{SCHEMA}campaign c {{
  trigger manual
  exit when event order.completed
  first: send email.marketing t
  wait until event order.completed where amount > 10 timeout 1d
  after: send email.marketing t
}}"
    ));
    let (_db, store) = TempDb::new("exit-event", &model, &cs);
    let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
    let reach = |id: &str| e.steps.iter().find(|s| s.id == id).map(|s| (s.reach.min, s.reach.max)).expect(id);
    assert_eq!(reach("first"), (300.0, 300.0), "no time passes before the first wait");
    assert_eq!(reach("after"), (0.0, 300.0));
}

/// Issue 19: `quiet hours … then skip` may drop a consent-requiring send,
/// so it leaves `min` (max holds); a transactional send is exempt. Held
/// quiet hours and a rate limit move sends in time only: the estimate is
/// the one without them.
#[test]
fn quiet_hours_that_skip_lower_min_and_hold_or_rate_limit_change_nothing() {
    let body = "  first: send email.marketing t\n  receipt: send email.transactional r\n";
    let with = |settings: &str| {
        compiled(&format!(
            "{SCHEMA}template r {{ channel email message transactional status published }}\ncampaign c {{\n  trigger manual\n{settings}{body}}}"
        ))
    };
    let cs: Vec<C> = (0..50).map(plain).collect();
    let (plain_p, model) = with("");
    let (_db, store) = TempDb::new("quiet", &model, &cs);
    let base = estimate::estimate(&store, &plain_p, NOW, &Settings::default()).expect("estimate");
    let sends = |e: &estimate::Estimate, message: &str| {
        let s = e.sends.iter().find(|s| s.message == message).expect(message);
        (s.sends.min, s.sends.expected, s.sends.max)
    };
    assert_eq!(sends(&base, "marketing"), (50.0, 50.0, 50.0));

    let (skip, _) = with("  quiet hours 21:00 to 08:00 then skip\n");
    let e = estimate::estimate(&store, &skip, NOW, &Settings::default()).expect("estimate");
    assert_eq!(sends(&e, "marketing"), (0.0, 50.0, 50.0), "a skipped send may fall in the window");
    assert_eq!(sends(&e, "transactional"), (50.0, 50.0, 50.0), "transactional messages are exempt");
    assert_eq!(e.cost.max, base.cost.max);
    assert!(e.cost.min < base.cost.min);
    // Reaching the step is unchanged: the execution goes on after a skip.
    assert_eq!(e.steps, base.steps);

    for settings in ["  quiet hours 21:00 to 08:00\n", "  rate limit 1 per hour\n"] {
        let (p, _) = with(settings);
        let e = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("estimate");
        assert_eq!((&e.steps, &e.sends, &e.cost), (&base.steps, &base.sends, &base.cost), "{settings}");
    }
}

/// Issue 19: a frequency cap counts the sends the database recorded (of
/// every campaign) and this campaign's own earlier sends: a contact already
/// at its cap counts 0 in `min`; `max` holds; a cap on another channel, or a
/// transactional send, changes nothing.
#[test]
fn frequency_caps_lower_min_from_the_recorded_sends() {
    let cs: Vec<C> = (0..40).map(plain).collect();
    // Another campaign already sent one marketing email to the first half.
    let (earlier, model) = compiled(&format!(
        "{SCHEMA}campaign earlier {{\n  trigger manual\n  audience score == 50 and plan != enterprise\n  send email.marketing t\n}}"
    ));
    let (db, mut store) = TempDb::new("caps", &model, &cs);
    let report = run_virtual(&db, &mut store, &earlier);
    let already = report.steps[0].sent as f64;
    assert!(already > 0.0 && already < 40.0, "{already}");

    let campaign = |policy: &str| {
        compiled(&format!(
            "{SCHEMA}template r {{ channel email message transactional status published }}\n{policy}campaign c {{\n  trigger manual\n  one: send email.marketing t\n  wait 1d\n  two: send email.marketing t\n  receipt: send email.transactional r\n}}"
        ))
        .0
    };
    let step_sends = |e: &estimate::Estimate, p: &Program| {
        let at = |id: &str| p.nodes.iter().position(|n| n.id.0 == id).expect(id);
        let reach = |id: &str| e.steps[at(id)].reach;
        (reach("one"), reach("two"), reach("receipt"))
    };
    let sends = |e: &estimate::Estimate, message: &str| {
        let s = e.sends.iter().find(|s| s.message == message).expect(message);
        (s.sends.min, s.sends.max)
    };
    let uncapped = campaign("");
    let base = estimate::estimate(&store, &uncapped, NOW, &Settings::default()).expect("estimate");
    assert_eq!(sends(&base, "marketing"), (80.0, 80.0));

    // 2 per 7d: those already sent to can take one more; the second send
    // of this campaign then reaches their cap.
    let capped = campaign("policy {\n  frequency cap 2 per 7d\n}\n");
    let e = estimate::estimate(&store, &capped, NOW, &Settings::default()).expect("estimate");
    assert_eq!(sends(&e, "marketing"), (40.0 + (40.0 - already), 80.0));
    assert_eq!(sends(&e, "transactional"), (40.0, 40.0), "transactional messages are exempt");
    assert_eq!(
        step_sends(&e, &capped),
        step_sends(&base, &uncapped),
        "reach is unchanged: a capped send is skipped and the execution goes on"
    );

    // 1 per 7d: already at the cap before this campaign starts; everyone's second send is capped.
    let e = estimate::estimate(&store, &campaign("policy {\n  frequency cap 1 per 7d\n}\n"), NOW, &Settings::default())
        .expect("estimate");
    assert_eq!(sends(&e, "marketing"), (40.0 - already, 80.0));

    // A 1-day window: the recorded send (now) still counts for `one`, but no
    // longer for `two`, a day later; this campaign's `one` does not either.
    let e = estimate::estimate(&store, &campaign("policy {\n  frequency cap 1 per 1d\n}\n"), NOW, &Settings::default())
        .expect("estimate");
    assert_eq!(sends(&e, "marketing"), (40.0 - already + 40.0, 80.0));

    // A cap on sms leaves email alone.
    let e =
        estimate::estimate(&store, &campaign("policy {\n  frequency cap sms 1 per 7d\n}\n"), NOW, &Settings::default())
            .expect("estimate");
    assert_eq!(sends(&e, "marketing"), (80.0, 80.0));
}

/// One step of a generated campaign body; `i` keeps labels and A/B names unique.
fn body_step(kind: usize, cond: &str, i: usize) -> String {
    match kind {
        0 => format!("s{i}: send email.marketing t"),
        1 => "wait 1d".to_string(),
        2 => format!("if {cond} {{\n    tag add \"FR\"\n  }} else {{\n    e{i}: send email.marketing t\n  }}"),
        3 => format!(
            "ab_test x{i} {{\n    variant a 30% {{ a{i}: send email.marketing t }}\n    variant b 70% {{ }}\n  }}"
        ),
        4 => "set score = score + 10".to_string(),
        5 => format!("wait until {{\n    when {cond} {{ tag add \"won\" }}\n    timeout 2d {{ }}\n  }}"),
        6 => "tag remove \"FR\"".to_string(),
        7 => format!("if {cond} or plan == pro {{\n    set vip = score > 40\n  }}"),
        _ => format!("q{i}: send sms.promotional n fallback none"),
    }
}

/// A generated campaign: trigger, audience, delivery rules, exits and steps.
fn campaign_source(trigger: usize, audience: &str, rules: usize, exit: &str, steps: &[(usize, String)]) -> String {
    let trigger = ["manual", "event order.completed where amount > 20"][trigger % 2];
    let policy = if rules % 3 == 1 { "policy {\n  frequency cap 1 per 7d\n}\n" } else { "" };
    let quiet = if rules % 3 == 2 { "  quiet hours 21:00 to 08:00 then skip\n" } else { "" };
    let mut s = format!(
        "{SCHEMA}template n {{ channel sms message promotional status published }}\n{policy}campaign c {{\n  trigger {trigger}\n  audience {audience}\n{quiet}"
    );
    if !exit.is_empty() {
        s.push_str(&format!("  exit when {exit}\n"));
    }
    for (i, (kind, cond)) in steps.iter().enumerate() {
        s.push_str(&format!("  {}\n", body_step(*kind, cond, i)));
    }
    s.push_str("}\n");
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    /// Issue 23: walking alike contacts once (and counting the walk for
    /// each) gives the estimate of walking every contact on its own, to
    /// the last bit, for every kind of step, delivery rule, exit and
    /// trigger; few kinds of contact, many of each.
    #[test]
    fn shared_walks_equal_every_contact_walked_alone(
        trigger in 0usize..2,
        audience in condition(),
        rules in 0usize..3,
        exit in prop_oneof![Just(String::new()), condition()],
        steps in proptest::collection::vec((0usize..9, condition()), 1..6),
        kinds in proptest::collection::vec(contact(), 1..4),
        copies in proptest::collection::vec(1usize..12, 4),
    ) {
        let src = campaign_source(trigger, &audience, rules, &exit, &steps);
        let (analysis, ws) = common::check_source(&src);
        prop_assume!(!analysis.has_errors());
        let (_, model) = &analysis.models[0];
        let c = &model.campaigns[0];
        let p = compile::compile(model, c, ws.sources.get(c.file));
        let cs: Vec<C> = kinds.iter().zip(&copies).flat_map(|(k, n)| std::iter::repeat_n(k.clone(), *n)).collect();
        let mut store = SqliteStore::open_in_memory().expect("store");
        let parsed = contacts::parse(&jsonl(&cs), Format::JsonLines, &Schema::from_model(model));
        prop_assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
        let shared = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("shared");
        let each = Settings { walks: estimate::Walks::EachContact, ..Settings::default() };
        let alone = estimate::estimate(&store, &p, NOW, &each).expect("each");
        prop_assert_eq!(shared, alone, "{}", src);
    }
}

/// Issue 23: a database file is read in two halves at once (the ids below
/// a split point, and the others on a second connection); the estimate is
/// the one of reading it in one go, to the last bit, with the A/B variants,
/// tags, a field the walk reads, events and frequency caps; and the virtual
/// clock's newest creation is the one every contact read gives.
#[test]
fn a_file_read_in_two_halves_gives_the_estimate_of_one_read() {
    let (p, model) = compiled(&format!(
        "{SCHEMA}policy {{\n  frequency cap 3 per 7d\n}}\ncampaign c {{
  trigger manual
  audience score >= 10 or tags has \"FR\"
  hi: send email.marketing t
  if score > 60 and happened order.completed within 30d {{ tag add \"buyer\" }}
  ab_test x {{
    variant a 30% {{ send email.marketing t }}
    variant b 70% {{ if tags has \"buyer\" {{ send email.marketing t }} }}
  }}
}}"
    ));
    let cs: Vec<C> = (0..3000)
        .map(|i| C {
            score: Some((i % 7 * 15) as i64),
            tags: if i % 5 == 0 { vec![0] } else { vec![] },
            orders: if i % 11 == 0 { vec![(2, 80)] } else { vec![] },
            interests: vec![],
            cooldown: None,
            created_days_ago: (i % 13) as i64,
            ..plain(i)
        })
        .collect();
    let (_db, store) = TempDb::new("halves", &model, &cs);
    let shared = estimate::estimate(&store, &p, NOW, &Settings::default()).expect("halves");
    let each = Settings { walks: estimate::Walks::EachContact, ..Settings::default() };
    assert_eq!(shared, estimate::estimate(&store, &p, NOW, &each).expect("one read"));
    assert!(shared.audience > 1000, "{}", shared.audience);
    assert_eq!(
        store.newest_created_at().expect("halves"),
        flowc::runtime::store::newest_created_by_scan(&store).expect("every contact")
    );
}
