//! Issue 18, the interpreter side: `wait until`, exits, goals, A/B
//! outcomes and `on ineligible continue`, run end to end on a SQLite file
//! with the virtual clock. Programs are built from compiled `.flow` pieces
//! with the v0.2 instructions put in by hand, so these tests do not depend
//! on the front end's syntax for them.

mod common;

use common::Db;

use flowc::check::model::StepId;
use flowc::compile::{self, program::*};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::facts::ContactEvent;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::step;
use flowc::runtime::store::{EventOf, Store};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const START: i64 = 29_400_000; // 2025-11-23T08:00Z in minutes
const DAY: i64 = 1440;

const SRC: &str = r#"
template hello { channel email message marketing status published }
template promo { channel sms message promotional status published }
contact { plan: enum(free, pro) }
campaign c {
  trigger manual
  mail: send email.marketing hello
  nudge: send sms.promotional promo
  if tags has "unsubscribed" { }
  if plan == pro { }
}
"#;

/// The compiled pieces the hand-built programs reuse.
struct Parts {
    base: Program,
    model: flowc::check::model::Model,
    email: SendTarget,
    sms: SendTarget,
    unsubscribed: Cond,
    pro: Cond,
}

fn parts() -> Parts {
    let (analysis, ws) = common::check_source(SRC);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    let base = compile::compile(&model, c, ws.sources.get(c.file));
    let target = |i: usize| match &base.nodes[i].op {
        Op::Send { target, .. } => target.clone(),
        other => panic!("not a send: {other:?}"),
    };
    let branches: Vec<Cond> = base
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Branch { cond, .. } => Some(cond.clone()),
            _ => None,
        })
        .collect();
    Parts {
        email: target(0),
        sms: target(1),
        unsubscribed: branches[0].clone(),
        pro: branches[1].clone(),
        base: base.clone(),
        model,
    }
}

fn node(id: &str, op: Op) -> Node {
    Node { id: StepId(id.into()), line: 1, span: (0, 0), op }
}

fn send(t: &SendTarget, next: u32) -> Op {
    Op::Send { target: t.clone(), fallback: None, next: NodeIdx(next) }
}

fn tag(t: &str, next: u32) -> Op {
    Op::Tag { add: true, tag: t.into(), next: NodeIdx(next) }
}

fn jump(to: u32) -> Op {
    Op::Jump { target: NodeIdx(to) }
}

/// `order.completed where amount > 50` (or any amount).
fn order(min_amount: Option<f64>) -> EventMatch {
    EventMatch {
        event: "order.completed".into(),
        props: vec!["amount".into()],
        filter: min_amount
            .map(|m| Cond::Cmp {
                op: CmpOpRepr::Gt,
                lhs: Operand::Prop { index: 0 },
                rhs: Operand::Const { value: Const::Number(m) },
            })
            .into_iter()
            .collect(),
    }
}

fn clicked(step: &str) -> Cond {
    Cond::Engaged { kind: EngagementRepr::Clicked, step: StepId(step.into()) }
}

/// ab_test offer (a 50%: mail_a, b 50%: mail_b), then
/// `w: wait until { when event order.completed where amount > 50 { tag "bought" }
///   when clicked(mail_a) or clicked(mail_b) { tag "clicked" } timeout 2d { tag "timeout" } }`,
/// then `nudge: send sms`; goal order.completed within 7d; exits:
/// `exit when event order.refunded`, `exit when tags has "unsubscribed"`.
fn journey(parts: &Parts) -> Program {
    let mut p = parts.base.clone();
    p.nodes = vec![
        node(
            "offer",
            Op::Split {
                name: "offer".into(),
                variants: vec![
                    Variant { name: "a".into(), weight_bp: 5000, target: NodeIdx(1) },
                    Variant { name: "b".into(), weight_bp: 5000, target: NodeIdx(3) },
                ],
            },
        ),
        node("offer/a", jump(2)),
        node("mail_a", send(&parts.email, 5)),
        node("offer/b", jump(4)),
        node("mail_b", send(&parts.email, 5)),
        node(
            "w",
            Op::WaitUntil {
                arms: vec![
                    WaitArm { on: WaitOn::Event { event: order(Some(50.0)) }, target: NodeIdx(6) },
                    WaitArm {
                        on: WaitOn::State { cond: Cond::Or { any: vec![clicked("mail_a"), clicked("mail_b")] } },
                        target: NodeIdx(8),
                    },
                ],
                timeout_minutes: 2 * DAY,
                timeout: NodeIdx(10),
            },
        ),
        node("w/when1", jump(7)),
        node("w/when1/1", tag("bought", 12)),
        node("w/when2", jump(9)),
        node("w/when2/1", tag("clicked", 12)),
        node("w/timeout", jump(11)),
        node("w/timeout/1", tag("timeout", 12)),
        node("nudge", send(&parts.sms, 13)),
        node("c/end", Op::End),
    ];
    p.goal = Some(Goal { event: order(None), within_minutes: 7 * DAY });
    p.exits = vec![
        Exit::Event { event: EventMatch { event: "order.refunded".into(), props: vec![], filter: vec![] } },
        Exit::State { cond: parts.unsubscribed.clone() },
    ];
    p
}

fn contact_line(i: usize, tags: &[&str], consent: &[&str], plan: &str) -> String {
    serde_json::json!({
        "id": format!("c{i:04}"), "email": format!("c{i:04}@example.com"), "phone": format!("+336{i:08}"),
        "timezone": "Europe/Paris", "locale": "fr", "created_at": "2025-11-20T10:00:00Z",
        "tags": tags, "consent": consent, "capabilities": [], "plan": plan,
    })
    .to_string()
}

fn import(db: &Db, parts: &Parts, lines: &[String], events: &[EventOf]) {
    let mut store = SqliteStore::open(&db.path).expect("store");
    let parsed = contacts::parse(&lines.join("\n"), Format::JsonLines, &Schema::from_model(&parts.model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    store.upsert_contacts(&[], events).expect("events");
}

fn event(contact: &str, name: &str, at: i64, amount: Option<f64>) -> EventOf {
    let mut props = serde_json::Map::new();
    if let Some(a) = amount {
        props.insert("amount".into(), serde_json::json!(a));
    }
    EventOf { contact: contact.into(), event: ContactEvent { name: name.into(), at, props } }
}

fn run_on(db: &Db, p: &Program) -> Value {
    let mut store = SqliteStore::open(&db.path).expect("store");
    let mut provider = Simulated::open(&db.path, SimConfig { seed: 11, ..SimConfig::default() }).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig { batch: 97, ..EngineConfig::default() },
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run(&mut store, &mut provider, p, &opts, &mut |_| {}).expect("run");
    serde_json::to_value(&r).expect("json")
}

fn query<T: rusqlite::types::FromSql>(db: &Db, sql: &str) -> Vec<(String, T)> {
    let c = rusqlite::Connection::open(&db.path).expect("open");
    let mut s = c.prepare(sql).expect("prepare");
    let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn step<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["steps"].as_array().and_then(|s| s.iter().find(|x| x["id"] == id)).unwrap_or_else(|| panic!("no step {id}: {r}"))
}

/// The issue's first Bar: for a generated population and event timeline,
/// who takes each arm, who exits (and by which criterion), who converts and
/// in which variant, and which send gets each conversion — all computed
/// here from the inputs (the timeline, the provider's engagement times and
/// the documented A/B assignment) and compared with the report.
#[test]
fn exact_counts_for_a_generated_population_and_timeline() {
    let parts = parts();
    let p = journey(&parts);
    let n = 600usize;
    let mut lines = Vec::new();
    let mut events = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: i64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as i64
    };
    for i in 0..n {
        let id = format!("c{i:04}");
        let tags: &[&str] = if i % 17 == 0 { &["unsubscribed"] } else { &[] };
        let consent: &[&str] = if i % 3 == 0 { &["email"] } else { &["email", "sms"] };
        lines.push(contact_line(i, tags, consent, "free"));
        match i % 6 {
            0 => events.push(event(&id, "order.completed", START - 60, Some(80.0))),
            1 | 2 => events.push(event(&id, "order.completed", START + next(3 * DAY), Some(80.0))),
            3 => events.push(event(&id, "order.completed", START + next(3 * DAY), Some(20.0))),
            4 => {
                events.push(event(&id, "order.completed", START + next(DAY), Some(10.0)));
                events.push(event(&id, "order.completed", START + DAY + next(DAY), Some(99.0)));
            }
            _ => {}
        }
        if i % 7 == 0 {
            events.push(event(&id, "order.refunded", START - 30 + next(3 * DAY), None));
        }
    }
    let db = Db::new("exact");
    import(&db, &parts, &lines, &events);
    let r = run_on(&db, &p);

    // The provider's engagement, as it reported it (an input to this model).
    let clicks: HashMap<String, i64> =
        query::<Option<i64>>(&db, "SELECT contact_id, clicked_at FROM outbox WHERE step IN ('mail_a', 'mail_b')")
            .into_iter()
            .filter_map(|(c, t)| t.map(|t| (c, t)))
            .collect();
    let clock = START + 2 * DAY; // the last timeout
    let mut by_contact: HashMap<String, Vec<&ContactEvent>> = HashMap::new();
    for EventOf { contact: c, event: e } in &events {
        by_contact.entry(c.0.clone()).or_default().push(e);
    }
    let mut arms: BTreeMap<&str, u64> = BTreeMap::new();
    let mut exits: BTreeMap<String, u64> = BTreeMap::new();
    let mut entered: BTreeMap<&str, u64> = BTreeMap::new();
    let mut converted: BTreeMap<&str, u64> = BTreeMap::new();
    let mut conversions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total_converted = 0u64;
    let mut skipped = 0u64;
    for i in 0..n {
        let id = format!("c{i:04}");
        let evs = by_contact.get(&id).cloned().unwrap_or_default();
        let first = |name: &str, ok: &dyn Fn(&ContactEvent) -> bool, from: i64, to: i64| {
            evs.iter().filter(|e| e.name == name && ok(e) && e.at >= from && e.at <= to).map(|e| e.at).min()
        };
        let goal_at = first("order.completed", &|_| true, START, (START + 7 * DAY).min(clock));
        if i % 17 == 0 {
            // `exit when tags has "unsubscribed"` holds before the first step.
            *exits.entry("exit:2".into()).or_default() += 1;
            if goal_at.is_some() {
                total_converted += 1;
            }
            continue;
        }
        let variant = match step::pick_variant(
            "c",
            &id,
            "offer",
            &[
                Variant { name: "a".into(), weight_bp: 5000, target: NodeIdx(1) },
                Variant { name: "b".into(), weight_bp: 5000, target: NodeIdx(3) },
            ],
        ) {
            0 => "a",
            _ => "b",
        };
        let mail = if variant == "a" { "mail_a" } else { "mail_b" };
        *entered.entry(variant).or_default() += 1;
        let bought =
            first("order.completed", &|e| e.props.get("amount").and_then(Value::as_f64) > Some(50.0), START, i64::MAX);
        let click = clicks.get(&id).copied();
        let deadline = START + 2 * DAY;
        let (arm, decided) = [("w/when1", bought), ("w/when2", click), ("w/timeout", Some(deadline))]
            .into_iter()
            .filter_map(|(a, t)| t.filter(|t| *t <= deadline).map(|t| (a, t)))
            .min_by_key(|(_, t)| *t)
            .expect("the timeout always holds");
        let refund = first("order.refunded", &|_| true, START, decided);
        let mut sends = vec![(START, mail)];
        if refund.is_some() {
            *exits.entry("exit:1".into()).or_default() += 1;
        } else {
            *arms.entry(arm).or_default() += 1;
            if i % 3 != 0 {
                sends.push((decided, "nudge"));
            } else {
                skipped += 1; // no sms consent: the nudge skips the execution
            }
        }
        if let Some(t) = goal_at {
            total_converted += 1;
            *converted.entry(variant).or_default() += 1;
            if let Some((_, s)) = sends.iter().filter(|(at, _)| *at <= t).max_by_key(|(at, _)| *at) {
                *conversions.entry(s).or_default() += 1;
            }
        }
    }
    assert!(arms.len() == 3 && exits.len() == 2, "the population covers every path: {arms:?} {exits:?}");
    for (arm, count) in &arms {
        assert_eq!(step(&r, arm)["entered"], *count, "arm {arm}");
    }
    assert_eq!(r["exits"], serde_json::to_value(&exits).expect("json"), "{}", r["exits"]);
    assert_eq!(r["executions"]["skipped"], skipped);
    assert_eq!(r["executions"]["completed"], n as u64 - skipped, "the others complete (exits too)");
    assert_eq!(r["goal"]["event"], "order.completed");
    assert_eq!(r["goal"]["converted"], total_converted);
    assert!((r["goal"]["rate"].as_f64().expect("rate") - total_converted as f64 / n as f64).abs() < 1e-9);
    for s in ["mail_a", "mail_b", "nudge"] {
        assert_eq!(step(&r, s)["conversions"], conversions.get(s).copied().unwrap_or(0), "conversions of {s}");
    }
    for v in ["a", "b"] {
        let got = &r["ab_tests"]["offer"][v];
        assert_eq!(got["entered"], entered[v], "entered {v}: {got}");
        assert_eq!(got["converted"], converted.get(v).copied().unwrap_or(0), "converted {v}: {got}");
    }
    assert_eq!(r["ab_tests"]["offer"]["a"]["uplift"], Value::Null, "the first variant is the baseline");
    // Every send reports its engagement counted from the provider's times.
    let opened: u64 = query::<Option<i64>>(&db, "SELECT step, opened_at FROM outbox WHERE step = 'mail_a'")
        .iter()
        .filter(|(_, t)| t.is_some_and(|t| t <= clock))
        .count() as u64;
    assert_eq!(step(&r, "mail_a")["opened"], opened);
    let assigned = query::<String>(&db, "SELECT contact_id, variant FROM ab_assignments WHERE campaign = 'c'");
    assert_eq!(assigned.len() as u64, entered.values().sum::<u64>(), "one assignment per execution through the split");
}

/// A wait until with nothing to wait for but its deadline: an execution
/// parked at it keeps its `wait_since` across a restart, and an event that
/// arrives (stored) while the process is down counts once it steps again.
#[test]
fn a_parked_wait_until_survives_a_restart_with_its_wait_since() {
    let parts = parts();
    let mut p = parts.base.clone();
    p.nodes = vec![
        node(
            "w",
            Op::WaitUntil {
                arms: vec![WaitArm { on: WaitOn::Event { event: order(None) }, target: NodeIdx(1) }],
                timeout_minutes: DAY,
                timeout: NodeIdx(3),
            },
        ),
        node("w/when1", jump(2)),
        node("w/when1/1", tag("bought", 5)),
        node("w/timeout", jump(4)),
        node("w/timeout/1", tag("timeout", 5)),
        node("c/end", Op::End),
    ];
    let db = Db::new("restart");
    let lines: Vec<String> = (0..4).map(|i| contact_line(i, &[], &["email"], "free")).collect();
    import(&db, &parts, &lines, &[]);
    // Stop the run after its first batch: everyone is parked at `w`.
    {
        let mut store = SqliteStore::open(&db.path).expect("store");
        let mut provider = Simulated::open(&db.path, SimConfig::default()).expect("provider");
        let stop = Arc::new(AtomicBool::new(false));
        let opts = RunOptions {
            clock: ClockKind::Virtual,
            start: Some(START),
            initial_balance_micros: 1_000_000_000,
            engine: EngineConfig::default(),
            stop: stop.clone(),
            lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
        };
        let s = stop.clone();
        run::run(&mut store, &mut provider, &p, &opts, &mut |_| s.store(true, std::sync::atomic::Ordering::SeqCst))
            .expect("first run");
    }
    let parked = query::<Option<i64>>(
        &db,
        "SELECT contact_id, wait_since FROM executions WHERE step = 'w' AND state = 'pending'",
    );
    assert_eq!(parked.len(), 4, "{parked:?}");
    assert!(parked.iter().all(|(_, s)| *s == Some(START)), "{parked:?}");
    // While down: c0000 orders within the wait, c0001 before it started.
    {
        let mut store = SqliteStore::open(&db.path).expect("store");
        store
            .upsert_contacts(
                &[],
                &[
                    event("c0000", "order.completed", START + 100, Some(5.0)),
                    event("c0001", "order.completed", START - 1, Some(5.0)),
                ],
            )
            .expect("events");
    }
    let r = run_on(&db, &p);
    assert_eq!(step(&r, "w/when1")["entered"], 1, "{r}");
    assert_eq!(step(&r, "w/timeout")["entered"], 3);
    assert_eq!(step(&r, "w")["entered"], 4, "stepping a parked wait again does not count it entered again");
    let tags = query::<String>(&db, "SELECT id, tags FROM contacts ORDER BY id");
    assert_eq!(tags[0].1, r#"["bought"]"#);
    assert_eq!(tags[1].1, r#"["timeout"]"#);
}

/// `when plan == pro` holds on arrival: the contact passes at once, at the
/// time it entered, and an arm's state condition needs no event.
#[test]
fn a_state_arm_that_already_holds_passes_at_once() {
    let parts = parts();
    let mut p = parts.base.clone();
    p.nodes = vec![
        node(
            "w",
            Op::WaitUntil {
                arms: vec![WaitArm { on: WaitOn::State { cond: parts.pro.clone() }, target: NodeIdx(1) }],
                timeout_minutes: 3 * DAY,
                timeout: NodeIdx(2),
            },
        ),
        node("w/when1", jump(3)),
        node("w/timeout", jump(3)),
        node("after", send(&parts.email, 4)),
        node("c/end", Op::End),
    ];
    let db = Db::new("state");
    let lines: Vec<String> =
        (0..10).map(|i| contact_line(i, &[], &["email"], if i % 2 == 0 { "pro" } else { "free" })).collect();
    import(&db, &parts, &lines, &[]);
    let r = run_on(&db, &p);
    assert_eq!(step(&r, "w/when1")["entered"], 5);
    assert_eq!(step(&r, "w/timeout")["entered"], 5);
    let sent = query::<i64>(&db, "SELECT contact_id, sent_at FROM outbox WHERE step = 'after' ORDER BY contact_id");
    for (c, at) in sent {
        let i: usize = c[1..].parse().expect("id");
        assert_eq!(at, if i.is_multiple_of(2) { START } else { START + 3 * DAY }, "{c}");
    }
}

/// `on ineligible continue`: the skip is recorded on the step and the
/// execution goes on; the default keeps the seed's `skipped`.
#[test]
fn on_ineligible_continue_records_the_skip_and_goes_on() {
    let parts = parts();
    let mut p = parts.base.clone();
    p.nodes = vec![node("sms", send(&parts.sms, 1)), node("mail", send(&parts.email, 2)), node("c/end", Op::End)];
    p.on_ineligible = OnIneligible::Continue;
    let lines: Vec<String> =
        (0..10).map(|i| contact_line(i, &[], if i < 4 { &["email"] } else { &["email", "sms"] }, "free")).collect();
    let db = Db::new("continue");
    import(&db, &parts, &lines, &[]);
    let r = run_on(&db, &p);
    assert_eq!(step(&r, "sms")["skipped"]["no-consent"], 4, "{r}");
    assert_eq!(step(&r, "sms")["sent"], 6);
    assert_eq!(step(&r, "mail")["sent"], 10, "the skipped contacts went on");
    assert_eq!(r["executions"]["completed"], 10);
    assert_eq!(r["executions"]["skipped"], 0);

    p.on_ineligible = OnIneligible::Skip;
    p.campaign = "d".into();
    let r = run_on(&db, &p);
    assert_eq!(step(&r, "mail")["sent"], 6, "skip: the ineligible contacts stop");
    assert_eq!(r["executions"]["skipped"], 4);
}

const FLOW: &str = r#"
template hello { channel email message marketing status published }
template promo { channel sms message promotional status published }
contact { plan: enum(free, pro) }
event order.completed { amount: number }
event order.refunded { amount: number }
campaign shop {
  trigger manual
  goal event order.completed within 7d
  exit when event order.refunded
  on ineligible continue
  ab_test offer {
    variant a 50% { first: send email.marketing hello }
    variant b 50% { second: send sms.promotional promo }
  }
  w: wait until {
    when event order.completed where amount > 50 { tag add "bought" }
    when plan == pro { }
    timeout 1d { }
  }
  after: send email.marketing hello
}
"#;

/// The same semantics from a `.flow` file through the real front end, and
/// the report as `flowc run` prints it for people: the A/B table with its
/// statistics, the goal line and the exits.
#[test]
fn a_flow_file_with_wait_until_goal_exit_and_continue_runs_and_reports() {
    let (analysis, ws) = common::check_source(FLOW);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    let p = compile::compile(&model, c, ws.sources.get(c.file));
    assert!(p.nodes.iter().any(|n| matches!(n.op, Op::WaitUntil { .. })), "{:?}", p.nodes);
    let parts = Parts { model, ..parts() };
    let db = Db::new("flow");
    // 40 contacts; only the even ones may get sms (variant b skips the others and goes on).
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let consent: &[&str] = if i % 2 == 0 { &["email", "sms"] } else { &["email"] };
            contact_line(i, &[], consent, if i % 5 == 0 { "pro" } else { "free" })
        })
        .collect();
    let mut events = Vec::new();
    for i in 0..40usize {
        let id = format!("c{i:04}");
        if i % 4 == 1 {
            events.push(event(&id, "order.completed", START + 30 + i as i64, Some(80.0)));
        }
        if i % 10 == 3 {
            events.push(event(&id, "order.refunded", START + 10, Some(1.0)));
        }
    }
    import(&db, &parts, &lines, &events);
    let mut store = SqliteStore::open(&db.path).expect("store");
    let mut provider = Simulated::open(&db.path, SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig::default(),
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run(&mut store, &mut provider, &p, &opts, &mut |_| {}).expect("run");
    let v = serde_json::to_value(&r).expect("json");
    // Refunds at START+10 exit 4 contacts (3, 13, 23, 33) while they wait.
    assert_eq!(v["exits"]["exit:1"], 4, "{v}");
    // Contacts 1, 5, 9, … (i % 4 == 1) order > 50 within the wait; of them
    // 13 and 33 exited first, and the pro ones (5, 25) passed `when plan == pro` on arrival.
    let bought = (0..40).filter(|i| i % 4 == 1 && i % 10 != 3 && i % 5 != 0).count() as u64;
    assert_eq!(bought, 6);
    let w = v["steps"].as_array().expect("steps");
    let arm = |id: &str| w.iter().find(|s| s["id"] == id).map(|s| s["entered"].clone()).expect(id);
    assert_eq!(arm("w/when1"), bought);
    assert_eq!(v["goal"]["converted"], (0..40).filter(|i| i % 4 == 1).count() as u64, "exited contacts convert too");
    assert_eq!(v["executions"]["skipped"], 0, "on ineligible continue");
    let human = flowc::runtime::report::human(&r);
    assert!(human.contains("goal order.completed within 7d: converted 10 of 40 (25.0%)"), "{human}");
    assert!(human.contains("exits:\n  exit:1         4  exit when event order.refunded"), "{human}");
    assert!(human.contains("variant    entered  converted      rate    uplift  confidence"), "{human}");
    let a = &v["ab_tests"]["offer"]["a"];
    let n = |x: &Value| x.as_u64().expect("count");
    let line_a = format!("  a        {:>9}  {:>9}", n(&a["entered"]), n(&a["converted"]));
    assert!(human.contains(&line_a), "{human}\n{line_a}");
    assert!(human.contains("delivered "), "{human}");
}

const PLAIN_WAIT: &str = r#"
template hello { channel email message marketing status published }
contact { plan: enum(free, pro) }
event order.refunded { amount: number }
campaign leave {
  trigger manual
  exit when event order.refunded where amount > 10
  hi: send email.marketing hello
  pause: wait 3d
  after: send email.marketing hello
}
"#;

/// §9.2: `exit when event` makes an execution leave as soon as the event
/// arrives, also one in a plain `wait` (parked at the step after it): it
/// is completed `exit:1` at the event's time, and the steps after the wait
/// are never entered. A refund the `where` filter rejects exits nobody.
#[test]
fn an_exit_event_ends_a_plain_wait_when_it_arrives() {
    let (analysis, ws) = common::check_source(PLAIN_WAIT);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    let p = compile::compile(&model, c, ws.sources.get(c.file));
    let parts = Parts { model, ..parts() };
    let db = Db::new("plain-wait-exit");
    let lines: Vec<String> = (0..3).map(|i| contact_line(i, &[], &["email"], "free")).collect();
    import(&db, &parts, &lines, &[]);
    let refund = |contact: &str, amount: f64| event(contact, "order.refunded", START + 60, Some(amount));
    // c0000 refunds 50 an hour in (exits); c0001 refunds 5 (the filter says no); c0002 nothing.
    let events = vec![refund("c0000", 50.0), refund("c0001", 5.0)];
    let mut store = SqliteStore::open(&db.path).expect("store");
    let mut provider = Simulated::open(&db.path, SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig::default(),
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run_with_events(&mut store, &mut provider, &p, &opts, events, &mut |_| {}).expect("run");
    let v = serde_json::to_value(&r).expect("json");
    assert_eq!(v["exits"], serde_json::json!({"exit:1": 1}), "{v}");
    assert_eq!(v["executions"]["completed"], 3, "{v}");
    assert_eq!(step(&v, "hi")["entered"], 3, "{v}");
    assert_eq!(step(&v, "after")["entered"], 2, "the exited contact never reaches `after`: {v}");
    let rows: Vec<(String, String)> = query(
        &db,
        "SELECT contact_id, state || ' ' || COALESCE(reason, '-') || ' ' || updated_at || ' ' || COALESCE(wake_at, '-') FROM executions ORDER BY contact_id",
    );
    let end = START + 3 * DAY;
    assert_eq!(
        rows,
        vec![
            ("c0000".to_string(), format!("completed exit:1 {} -", START + 60)),
            ("c0001".to_string(), format!("completed - {end} -")),
            ("c0002".to_string(), format!("completed - {end} -")),
        ],
        "the exit happens when the refund arrives, not when the wait ends"
    );
    let sent: Vec<(String, i64)> =
        query(&db, "SELECT contact_id, COUNT(*) FROM outbox GROUP BY contact_id ORDER BY contact_id");
    assert_eq!(sent, vec![("c0000".into(), 1), ("c0001".into(), 2), ("c0002".into(), 2)]);
}
