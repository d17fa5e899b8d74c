//! Runtime tests on a real SQLite file with the virtual clock.

mod common;

use common::{Backend, Db};

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::report::Report;
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::step::Account;
use flowc::runtime::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const START: i64 = 29_400_000; // 2025-11-23T08:00Z in minutes

fn program(src: &str) -> (Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(src);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    (compile::compile(&model, c, ws.sources.get(c.file)), model)
}

fn import(db: &Backend, model: &flowc::check::model::Model, jsonl: &str) {
    import_into(&mut *db.open(), model, jsonl);
}

fn import_into(store: &mut dyn Store, model: &flowc::check::model::Model, jsonl: &str) {
    let parsed = contacts::parse(jsonl, Format::JsonLines, &Schema::from_model(model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
}

struct Opts {
    seed: u64,
    fail_rate: f64,
    outages: Vec<(i64, i64)>,
    breaker_consecutive: u32,
    balance: i64,
    approved: Option<Vec<String>>,
    batch: usize,
    stop_after_batches: Option<usize>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seed: 7,
            fail_rate: 0.0,
            outages: vec![],
            breaker_consecutive: 10,
            balance: 1_000_000_000,
            approved: None,
            batch: 500,
            stop_after_batches: None,
        }
    }
}

fn run_on(db: &Backend, p: &Program, o: &Opts) -> Report {
    let mut store = db.open();
    let mut provider = Simulated::open(
        &db.provider_base(),
        SimConfig { seed: o.seed, fail_rate: o.fail_rate, outages: o.outages.clone(), ..SimConfig::default() },
    )
    .expect("provider");
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: o.balance,
        engine: EngineConfig {
            batch: o.batch,
            account: Account { approved_channels: o.approved.clone() },
            breaker_consecutive: o.breaker_consecutive,
            breaker_rate: if o.breaker_consecutive > 100 { 1.0 } else { 0.5 },
            ..EngineConfig::default()
        },
        stop: stop.clone(),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let mut batches = 0;
    let limit = o.stop_after_batches;
    let mut progress = |_p: run::Progress| {
        batches += 1;
        if limit.is_some_and(|l| batches >= l) {
            stop.store(true, Ordering::SeqCst);
        }
    };
    run::run(&mut *store, &mut provider, p, &opts, &mut progress).expect("run")
}

const DECLS: &str = r#"
template hello { channel email message marketing status published }
template promo { channel sms message promotional status published }
template rich { channel rcs message promotional status published }
template receipt { channel email message transactional status published }
contact { plan: enum(free, pro) score: number }
"#;

fn contact(i: usize, consent: &[&str], caps: &[&str], plan: &str) -> String {
    serde_json::json!({
        "id": format!("c{i:05}"), "email": format!("c{i:05}@example.com"), "phone": format!("+336{i:08}"), "timezone": "Europe/Paris", "locale": "fr",
        "created_at": "2025-11-20T10:00:00Z", "tags": ["onboarding"],
        "consent": consent, "capabilities": caps, "plan": plan, "score": i % 100,
    })
    .to_string()
}

fn contacts(n: usize) -> String {
    (0..n)
        .map(|i| {
            let consent: &[&str] = if i % 5 == 0 { &["sms"] } else { &["email", "sms", "rcs"] };
            let caps: &[&str] = if i % 2 == 0 { &["rcs"] } else { &[] };
            contact(i, consent, caps, if i % 3 == 0 { "pro" } else { "free" })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_step_kind_and_skip_reason() {
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  first: send email.marketing hello
  wait 1d
  if plan == pro {{
    tag add \"pro\"
    send rcs.promotional rich fallback none
  }} else {{
    send email.transactional receipt
  }}
  ab_test t {{
    variant a 50% {{ send sms.promotional promo }}
    variant b 50% {{ }}
  }}
  end
}}"
    );
    let (p, model) = program(&src);
    for db in common::backends("kinds") {
        every_step_kind_on(&db, &p, &model);
    }
}

fn every_step_kind_on(db: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(300));
    let r = run_on(db, p, &Opts { approved: Some(vec!["email".into(), "rcs".into()]), ..Default::default() });
    let step = |id: &str| r.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}")).clone();
    assert_eq!(step("first").entered, 300);
    assert_eq!(step("first").skipped.get("no-consent"), Some(&60), "every 5th contact has no email consent");
    assert_eq!(step("first").sent, 240);
    assert_eq!(step("c/2").entered, 240, "the wait");
    // pro contacts (every 3rd) among the 240; rcs needs capability (even ids).
    let rcs = step("c/3/then/2");
    assert!(rcs.skipped.get("not-capable").copied().unwrap_or(0) > 0, "{rcs:?}");
    assert!(rcs.sent > 0);
    // sms is not approved for this account.
    let sms = step("c/4/a/1");
    assert_eq!(sms.sent, 0);
    assert_eq!(sms.skipped.get("channel-not-approved").copied().unwrap_or(0), sms.entered);
    assert!(r.executions["skipped"] > 0 && r.executions["completed"] > 0);
    assert_eq!(r.executions["pending"] + r.executions["processing"], 0);
    assert_eq!(r.state, "COMPLETED_PARTIAL");
    assert_eq!(r.provider.duplicates, 0);
    assert_eq!(r.provider.deliveries, r.steps.iter().map(|s| s.sent).sum::<u64>());
    let ab: u64 = r.ab_tests["t"].entered().values().sum();
    assert_eq!(ab, step("c/4").entered);
    // Cost: email.marketing 0.001, rcs 0.03, email.transactional 0.0008.
    let expected = step("first").sent as f64 * 0.001 + rcs.sent as f64 * 0.03 + step("c/3/else/1").sent as f64 * 0.0008;
    assert!((r.cost.total - expected).abs() < 1e-9, "{} vs {expected}", r.cost.total);
    assert!((r.balance - (1000.0 - expected)).abs() < 1e-6);
}

#[test]
fn ab_proportions_hold_for_ten_thousand_contacts() {
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  ab_test split {{
    variant a 50% {{ send email.transactional receipt }}
    variant b 30% {{ send email.transactional receipt }}
    variant c 20% {{ }}
  }}
}}"
    );
    let (p, model) = program(&src);
    let db = Backend::Sqlite(Db::new("ab"));
    import(&db, &model, &contacts(10_000));
    let r = run_on(&db, &p, &Opts { batch: 2000, ..Default::default() });
    let split = &r.ab_tests["split"].entered();
    let total: u64 = split.values().sum();
    assert_eq!(total, 10_000);
    for (v, want) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
        let got = split[v] as f64 / total as f64;
        assert!((got - want).abs() < 0.02, "variant {v}: {got:.3} vs {want}");
    }
    // Deterministic per contact: a second database assigns the same way.
    let db2 = Backend::Sqlite(Db::new("ab2"));
    import(&db2, &model, &contacts(10_000));
    let r2 = run_on(&db2, &p, &Opts { batch: 777, ..Default::default() });
    assert_eq!(r2.ab_tests, r.ab_tests);
}

#[test]
fn engagement_branches_follow_what_the_provider_reported() {
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  hello_step: send email.marketing hello
  wait 3d
  if opened(hello_step) {{
    tag add \"opened\"
  }} else if delivered(hello_step) {{
    tag add \"delivered-only\"
  }} else {{
    tag add \"lost\"
  }}
}}"
    );
    let (p, model) = program(&src);
    for db in common::backends("engage") {
        engagement_on(&db, &p, &model);
    }
}

fn engagement_on(db: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(2000));
    let r = run_on(db, p, &Opts::default());
    let entered = |id: &str| r.steps.iter().find(|s| s.id == id).map_or(0, |s| s.entered);
    let sent = r.steps[0].sent as f64;
    let opened = entered("c/3/then/1") as f64;
    let delivered_only = entered("c/3/elif1/1") as f64;
    let lost = entered("c/3/else/1") as f64;
    assert_eq!(opened + delivered_only + lost, sent);
    // Simulated rates: 97% delivered, 45% of those opened.
    assert!((opened / sent - 0.97 * 0.45).abs() < 0.04, "opened {opened}/{sent}");
    assert!((lost / sent - 0.03).abs() < 0.02, "lost {lost}/{sent}");
    // Tags were written to the contacts.
    let store = db.open();
    let mut tagged = 0;
    store.for_each_contact(&mut |c| tagged += usize::from(c.tags.iter().any(|t| t == "opened"))).expect("contacts");
    assert_eq!(tagged as f64, opened);
}

#[test]
fn stopping_and_resuming_gives_the_same_report() {
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  a: send email.marketing hello
  wait 2d
  if opened(a) or plan == pro {{
    send sms.promotional promo
  }}
  ab_test t {{
    variant x 70% {{ wait 1d send email.transactional receipt }}
    variant y 30% {{ }}
  }}
}}"
    );
    let (p, model) = program(&src);
    for (straight, resumed) in common::backends("straight").into_iter().zip(common::backends("resumed")) {
        stop_and_resume_on(&straight, &resumed, &p, &model);
    }
}

fn stop_and_resume_on(straight: &Backend, resumed: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(straight, model, &contacts(3000));
    let full = run_on(straight, p, &Opts::default());
    assert!(full.state.starts_with("COMPLETED"));

    import(resumed, model, &contacts(3000));
    let mut rounds = 0;
    let last = loop {
        let r = run_on(resumed, p, &Opts { stop_after_batches: Some(2), ..Default::default() });
        rounds += 1;
        if r.state != "RUNNING" {
            break r;
        }
        assert!(rounds < 100, "never finished");
    };
    assert!(rounds > 2, "the run really was interrupted ({rounds} rounds)");
    assert_eq!(last.executions, full.executions);
    assert_eq!(last.steps, full.steps);
    assert_eq!(last.ab_tests, full.ab_tests);
    assert_eq!(last.cost, full.cost);
    assert_eq!(last.provider, full.provider);
    assert_eq!(last.state, full.state);
}

fn two_sms() -> (Program, flowc::check::model::Model) {
    program(&format!("{DECLS}campaign c {{\n  trigger manual\n  one: send sms.promotional promo\n  two: send sms.promotional promo\n}}"))
}

#[test]
fn provider_failures_are_retried_then_fail_executions() {
    let (p, model) = two_sms();
    for (retry, permanent) in common::backends("retry").into_iter().zip(common::backends("permanent")) {
        failures_on(&retry, &permanent, &p, &model);
    }
}

fn failures_on(db: &Backend, permanent: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(500));
    let r = run_on(db, p, &Opts { fail_rate: 0.1, ..Default::default() });
    // Three attempts: 0.1% of messages fail for good.
    assert!(r.executions["failed"] <= 5, "{:?}", r.executions);
    assert!(r.provider.deliveries >= 995);
    assert_eq!(r.provider.duplicates, 0);

    import(permanent, model, &contacts(500));
    let r = run_on(permanent, p, &Opts { fail_rate: 0.4, breaker_consecutive: 1_000_000, ..Default::default() });
    let failed: u64 = r.steps.iter().map(|s| s.failed).sum();
    assert!(failed > 20, "0.4^3 of 1000 messages fail for good: {failed}");
    assert_eq!(r.executions["failed"] + r.executions["completed"], 500);
    assert_eq!(r.state, "COMPLETED_PARTIAL");
    assert_eq!(r.provider.deliveries + failed, 1000);
}

#[test]
fn an_outage_trips_the_breaker_and_a_resume_finishes_the_campaign() {
    let (p, model) = two_sms();
    for db in common::backends("outage") {
        outage_on(&db, &p, &model);
    }
}

fn outage_on(db: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(500));
    let r = run_on(db, p, &Opts { outages: vec![(START - 10, START + 100_000)], ..Default::default() });
    assert_eq!(r.state, "PAUSED_ERROR");
    assert_eq!(r.provider.deliveries, 0);
    // While paused nothing runs.
    let again = run_on(db, p, &Opts::default());
    assert_eq!(again.state, "PAUSED_ERROR");
    // Resume (as `flowc campaign resume` does): probe first, then full speed.
    {
        let mut store = db.open();
        flowc::runtime::lifecycle::resume(&mut *store, "c", START).expect("resume");
    }
    let r = run_on(db, p, &Opts::default());
    assert_eq!(r.state, "COMPLETED");
    assert_eq!(r.provider.deliveries, 1000);
    assert_eq!(r.provider.duplicates, 0);
    assert_eq!(r.executions["completed"], 500);
}

#[test]
fn balance_pauses_and_top_up_then_resume_finishes() {
    let (p, model) = two_sms();
    for db in common::backends("balance") {
        balance_on(&db, &p, &model);
    }
}

fn balance_on(db: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(500));
    // 0.045 EUR per SMS: 1 EUR pays 22 sends, then the campaign pauses.
    let r = run_on(db, p, &Opts { balance: 1_000_000, ..Default::default() });
    assert_eq!(r.state, "PAUSED_BALANCE");
    let sent: u64 = r.steps.iter().map(|s| s.sent).sum();
    assert_eq!(sent, 22);
    assert!(r.balance >= 0.0 && r.balance < 0.045);
    {
        let mut store = db.open();
        store.ledger_add(100_000_000, "top-up", START).expect("top up");
        // Topping up does not resume by itself.
        assert_eq!(flowc::runtime::lifecycle::state(&*store, "c").expect("state").as_str(), "PAUSED_BALANCE");
        flowc::runtime::lifecycle::resume(&mut *store, "c", START).expect("resume");
    }
    let r = run_on(db, p, &Opts::default());
    assert_eq!(r.state, "COMPLETED");
    assert_eq!(r.provider.deliveries, 1000);
    assert!((r.cost.total - 45.0).abs() < 1e-6, "{}", r.cost.total);
    assert!((r.balance - (1.0 + 100.0 - 45.0)).abs() < 1e-6, "{}", r.balance);
}

#[test]
fn every_invalid_state_transition_is_refused() {
    use flowc::runtime::lifecycle::{transition, State};
    let allowed = [
        ("DRAFT", "SCHEDULED"),
        ("SCHEDULED", "RUNNING"),
        ("RUNNING", "PAUSED"),
        ("PAUSED", "RUNNING"),
        ("RUNNING", "PAUSED_ERROR"),
        ("RUNNING", "PAUSED_BALANCE"),
        ("PAUSED_ERROR", "RUNNING"),
        ("PAUSED_BALANCE", "RUNNING"),
        ("RUNNING", "COMPLETED"),
        ("RUNNING", "COMPLETED_PARTIAL"),
    ];
    let mut store = SqliteStore::open_in_memory().expect("store");
    for from in State::ALL {
        for to in State::ALL {
            store
                .put_campaign(
                    &flowc::runtime::store::CampaignVersion { name: "x", version: "v", program: b"", state: from },
                    0,
                )
                .expect("put");
            // put_campaign keeps an existing state: force it for this case.
            store.connection().execute("UPDATE campaigns SET state = ?1", [from.as_str()]).expect("force");
            let ok = allowed.contains(&(from.as_str(), to.as_str()));
            assert_eq!(from.can_go_to(to), ok, "{from:?} → {to:?}");
            let r = transition(&mut store, "x", to, "test", 0);
            assert_eq!(r.is_ok(), ok, "{from:?} → {to:?}: {r:?}");
        }
    }
    let log = store.transitions("x", 100).expect("audit");
    assert_eq!(log.len(), allowed.len(), "only the allowed transitions were recorded");
}

#[test]
fn scheduled_trigger_waits_for_its_local_time_across_dst() {
    // 2026-03-29 02:30 does not exist in Paris (clocks jump 02:00 → 03:00).
    assert_eq!(
        run::scheduled_instant("2026-03-29T02:30", "Europe/Paris"),
        run::scheduled_instant("2026-03-29T03:30", "Europe/Paris")
    );
    // 2026-10-25 02:30 happens twice; the first (summer time, UTC+2) wins.
    let t = run::scheduled_instant("2026-10-25T02:30", "Europe/Paris").expect("instant");
    let utc = chrono::DateTime::from_timestamp(t * 60, 0).expect("time");
    assert_eq!(utc.format("%H:%M").to_string(), "00:30");
    let winter = run::scheduled_instant("2026-12-01T09:00", "Europe/Paris").expect("instant");
    assert_eq!(chrono::DateTime::from_timestamp(winter * 60, 0).expect("t").format("%H:%M").to_string(), "08:00");
}

#[test]
fn corrupt_and_foreign_databases_are_refused() {
    let db = Db::new("corrupt");
    std::fs::write(&db.path, b"this is not a database, just text that is long enough to fill a header....")
        .expect("write");
    let err = SqliteStore::open(&db.path).err().expect("refused").to_string();
    assert!(err.contains("corrupt") || err.contains("not a flowc database"), "{err}");
    let other = Db::new("foreign");
    {
        let c = rusqlite::Connection::open(&other.path).expect("sqlite");
        c.execute_batch("CREATE TABLE invoices (id INTEGER)").expect("create");
    }
    let err = SqliteStore::open(&other.path).err().expect("refused").to_string();
    assert!(err.contains("something else"), "{err}");
}

#[test]
fn a_new_version_takes_over_waiting_executions_by_step_id() {
    let v1 = format!("{DECLS}campaign c {{\n  trigger manual\n  a: send email.transactional receipt\n  pause_here: wait 3d\n  b: send email.transactional receipt\n}}");
    let (p1, model) = program(&v1);
    for db in common::backends("migrate") {
        migrate_on(&db, &v1, &p1, &model);
    }
}

fn migrate_on(db: &Backend, v1: &str, p1: &Program, model: &flowc::check::model::Model) {
    use flowc::runtime::lifecycle::{launch, Launched, RemovedSteps};
    import(db, model, &contacts(200));
    // Stop after one batch: everyone waits out `pause_here`, parked at `b`.
    let r = run_on(db, p1, &Opts { stop_after_batches: Some(1), batch: 1000, ..Default::default() });
    assert_eq!(r.state, "RUNNING");
    // v2 keeps the labelled wait and changes the last send: executions move.
    let v2 = v1.replace("b: send email.transactional receipt", "b: send email.marketing hello");
    let (p2, _) = program(&v2);
    let mut store = db.open();
    let moved = launch(&mut *store, &p2, RemovedSteps::Refuse, START).expect("migrate");
    assert!(matches!(moved, Launched::Migrated { moved: 200, skipped: 0, .. }), "{moved:?}");
    // v3 removes `b`, where they wait: refused, unless forced.
    let v3 = format!("{DECLS}campaign c {{\n  trigger manual\n  a: send email.transactional receipt\n  pause_here: wait 3d\n  c2: send email.marketing hello\n}}");
    let (p3, _) = program(&v3);
    let err = launch(&mut *store, &p3, RemovedSteps::Refuse, START).expect_err("unmappable");
    assert!(err.to_string().contains("(b)"), "{err}");
    let forced = launch(&mut *store, &p3, RemovedSteps::Skip, START).expect("forced");
    assert!(matches!(forced, Launched::Migrated { moved: 0, skipped: 200, .. }), "{forced:?}");
    drop(store);
    let r = run_on(db, &p3, &Opts::default());
    assert_eq!(r.executions["skipped"], 200);
    assert_eq!(r.state, "COMPLETED_PARTIAL");
}

#[test]
fn auto_reload_tops_up_without_pausing_and_never_resumes() {
    let (p, model) = two_sms();
    for db in common::backends("reload") {
        reload_on(&db, &p, &model);
    }
}

fn reload_on(db: &Backend, p: &Program, model: &flowc::check::model::Model) {
    import(db, model, &contacts(500));
    {
        let mut store = db.open();
        // Below 0.50 EUR, add 5 EUR.
        store
            .set_auto_reload(Some(flowc::runtime::store::AutoReload {
                threshold_micros: 500_000,
                amount_micros: 5_000_000,
            }))
            .expect("setting");
    }
    let r = run_on(db, p, &Opts { balance: 1_000_000, ..Default::default() });
    assert_eq!(r.state, "COMPLETED", "auto-reload kept it paying");
    assert_eq!(r.provider.deliveries, 1000);
    assert!(r.balance >= 0.0);
    let store = db.open();
    assert!(store
        .transitions("c", 10)
        .expect("log")
        .iter()
        .all(|t| t.to != flowc::runtime::store::CampaignState::PausedBalance));
}

/// Enrollment inside the store (the audience as SQL) selects exactly the
/// contacts, steps and wake-up times that contact-by-contact enrollment
/// through the evaluator selects.
#[test]
fn store_side_enrollment_equals_contact_by_contact() {
    let audiences = [
        "",
        "audience score >= 50",
        "audience plan == pro and tags has \"onboarding\"",
        "audience not (score < 10) or plan == free",
        "audience created_at > now - 7d and score != 3",
        "audience happened contact.created within 30d",
        "audience score > 1000",
    ];
    let triggers = ["trigger manual", "trigger api", "trigger scheduled at 2025-11-25 09:00 \"Europe/Paris\""];
    let mut jsonl = contacts(300);
    // Absent values: a contact without plan or score.
    jsonl.push('\n');
    jsonl.push_str(
        &serde_json::json!({"id": "z-bare", "timezone": "UTC", "created_at": "2025-01-01T00:00:00Z"}).to_string(),
    );
    for trigger in triggers {
        for audience in audiences {
            let src = format!("{DECLS}\ncampaign c {{\n  {trigger}\n  {audience}\n  send email.marketing hello\n}}\n");
            let (p, model) = program(&src);
            let mut selected = Vec::new();
            for (name, store_side) in [("sql", true), ("each", false)] {
                let db = Db::new(&format!("enroll-{name}"));
                let mut store = SqliteStore::open(&db.path).expect("store");
                import_into(&mut store, &model, &jsonl);
                let n = if store_side {
                    run::enroll(&mut store, &p, START)
                } else {
                    run::enroll_each(&mut store, &p, START)
                }
                .expect("enroll");
                let conn = store.connection();
                let mut stmt = conn
                    .prepare("SELECT contact_id, step, state, wake_at FROM executions ORDER BY contact_id")
                    .expect("query");
                let rows: Vec<(String, String, String, i64)> = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .expect("rows")
                    .collect::<Result<_, _>>()
                    .expect("rows");
                assert_eq!(n as usize, rows.len());
                selected.push(rows);
            }
            assert_eq!(selected[0], selected[1], "{trigger} / {audience}");
            if trigger == "trigger api" {
                assert!(
                    selected[0].is_empty(),
                    "an API campaign's triggers name its contacts; its audience alone enrolls nobody"
                );
            } else if audience.contains("score >= 50") {
                assert!(!selected[0].is_empty() && selected[0].len() < 301, "a real selection: {}", selected[0].len());
            }
        }
    }
}

/// Branches that read the contact's events, directly and through a segment,
/// before and after a wait, see exactly the contacts whose events match.
#[test]
fn event_branches_read_the_contacts_events() {
    let src = format!(
        "{DECLS}event order.completed {{ amount: number }}
segment big_spender = happened order.completed within 30d where amount > 100
campaign c {{
  trigger manual
  if happened order.completed within 30d {{
    tag add \"buyer-now\"
  }}
  send email.marketing hello
  wait 1d
  if big_spender {{
    tag add \"big\"
  }} else if happened order.completed within 30d where amount > 10 {{
    tag add \"small\"
  }}
}}"
    );
    let (p, model) = program(&src);
    for db in common::backends("events") {
        let jsonl: Vec<String> = (0..300)
            .map(|i| {
                let mut v: serde_json::Value = serde_json::from_str(&contact(i, &["email"], &[], "free")).expect("json");
                // Every third contact bought: a third of those big, the rest small; every fifth bought long ago.
                if i % 3 == 0 {
                    let amount = if i % 9 == 0 { 500 } else { 50 };
                    v["events"] =
                        serde_json::json!([{"name": "order.completed", "at": "2025-11-20T12:00:00Z", "amount": amount}]);
                } else if i % 5 == 0 {
                    v["events"] =
                        serde_json::json!([{"name": "order.completed", "at": "2025-01-01T12:00:00Z", "amount": 900}]);
                }
                v.to_string()
            })
            .collect();
        import(&db, &model, &jsonl.join("\n"));
        let r = run_on(&db, &p, &Opts::default());
        assert_eq!(r.state, "COMPLETED");
        let store = db.open();
        let mut tags: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        store
            .for_each_contact(&mut |c| {
                tags.insert(c.id.0.clone(), c.tags.clone());
            })
            .expect("contacts");
        for i in 0..300usize {
            let t = &tags[&format!("c{i:05}")];
            let has = |x: &str| t.iter().any(|y| y == x);
            assert_eq!(has("buyer-now"), i % 3 == 0, "c{i}: {t:?}");
            assert_eq!(has("big"), i % 9 == 0, "c{i}: {t:?}");
            assert_eq!(has("small"), i % 3 == 0 && i % 9 != 0, "c{i}: {t:?}");
        }
    }
}

/// A send needs its channel's address (email for email; phone for sms, rcs
/// and whatsapp; a push registration for push): without it the execution is
/// skipped `no-address`, nothing is billed and the provider never sees the
/// message. A fallback is tried as for `not-capable`, with its own address
/// checked. The estimate counts the same sends.
#[test]
fn a_send_without_the_channels_address_is_skipped_unbilled_and_unsent() {
    let src = format!(
        "{DECLS}template text {{ channel sms message transactional status published }}
template ping {{ channel push message transactional status published }}
template card {{ channel rcs message transactional status published }}
campaign c {{
  trigger manual
  if score == 0 {{
    mail: send email.transactional receipt
  }} else if score == 2 {{
    note: send push.transactional ping
  }} else if score == 3 {{
    rich: send rcs.transactional card fallback sms.transactional text
  }} else {{
    sms: send sms.transactional text
  }}
}}"
    );
    let (p, model) = program(&src);
    for db in common::backends("no-address") {
        let c = |v: serde_json::Value| v.to_string();
        let jsonl = [
            // email: one without an address, one with an empty one, one with.
            c(serde_json::json!({"id": "mail-none", "score": 0, "phone": "+33600000001"})),
            c(serde_json::json!({"id": "mail-empty", "score": 0, "email": ""})),
            c(serde_json::json!({"id": "mail-ok", "score": 0, "email": "a@example.com"})),
            // sms: a contact created with only an id, and one with a phone.
            c(serde_json::json!({"id": "sms-bare"})),
            c(serde_json::json!({"id": "sms-ok", "score": 1, "phone": "+33600000002"})),
            // push: the address is the device's push registration.
            c(serde_json::json!({"id": "push-none", "score": 2, "email": "b@example.com", "phone": "+33600000003"})),
            c(serde_json::json!({"id": "push-ok", "score": 2, "capabilities": ["push"]})),
            // rcs: capable but no phone (the sms fallback has none either);
            // a phone without rcs goes out as sms; a phone with rcs as rcs.
            c(serde_json::json!({"id": "rcs-nophone", "score": 3, "capabilities": ["rcs"]})),
            c(serde_json::json!({"id": "rcs-fallback", "score": 3, "phone": "+33600000004"})),
            c(serde_json::json!({"id": "rcs-ok", "score": 3, "phone": "+33600000005", "capabilities": ["rcs"]})),
        ]
        .join("\n");
        import(&db, &model, &jsonl);
        let estimate = {
            let store = db.open();
            flowc::runtime::estimate::estimate(&*store, &p, START, &Default::default()).expect("estimate")
        };
        let r = run_on(&db, &p, &Opts::default());
        let step = |id: &str| r.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}")).clone();
        let no_address = |id: &str| step(id).skipped.get("no-address").copied().unwrap_or(0);
        assert_eq!((step("mail").sent, no_address("mail")), (1, 2), "{:?}", step("mail"));
        assert_eq!((step("sms").sent, no_address("sms")), (1, 1), "{:?}", step("sms"));
        assert_eq!((step("note").sent, no_address("note")), (1, 1), "{:?}", step("note"));
        assert_eq!((step("rich").sent, no_address("rich")), (2, 1), "{:?}", step("rich"));
        assert_eq!(r.executions["skipped"], 5);
        assert_eq!(r.state, "COMPLETED_PARTIAL");
        // Billed: one email, one push, two sms (one of them the rcs fallback) and one rcs.
        let prices =
            [("email.transactional", 1), ("push.transactional", 1), ("sms.transactional", 2), ("rcs.transactional", 1)];
        let expected: f64 = prices
            .iter()
            .map(|(pair, n)| {
                let (channel, message) = pair.split_once('.').expect("pair");
                let target = p.nodes.iter().find_map(|node| match &node.op {
                    flowc::compile::program::Op::Send { target, fallback, .. } => [Some(target), fallback.as_ref()]
                        .into_iter()
                        .flatten()
                        .find(|t| t.channel == channel && t.message == message)
                        .cloned(),
                    _ => None,
                });
                target.expect("a send on that pair").price_micros as f64 / 1e6 * f64::from(*n)
            })
            .sum();
        assert!((r.cost.total - expected).abs() < 1e-9, "{} vs {expected}", r.cost.total);
        assert!((r.balance - (1000.0 - expected)).abs() < 1e-6, "{}", r.balance);
        // The provider never saw a message for a contact without the address.
        assert_eq!(r.provider.deliveries, 5);
        let mut log = db.provider_base().into_os_string();
        log.push(".provider.log");
        let log = std::fs::read_to_string(&log).expect("provider log");
        let reached: std::collections::BTreeSet<String> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
            .filter_map(|e| e["contact"].as_str().map(str::to_string))
            .collect();
        for id in ["mail-none", "mail-empty", "sms-bare", "push-none", "rcs-nophone"] {
            assert!(!reached.contains(id), "{id} reached the provider:\n{log}");
        }
        for id in ["mail-ok", "sms-ok", "push-ok", "rcs-fallback", "rcs-ok"] {
            assert!(reached.contains(id), "{id} missing from the provider log:\n{log}");
        }
        // The estimate applies the same rule: the same sends, the same cost.
        let sends: Vec<(String, f64)> =
            estimate.sends.iter().map(|s| (format!("{}.{}", s.channel, s.message), s.sends.expected)).collect();
        let mut want: Vec<(String, f64)> = prices.iter().map(|(pair, n)| (pair.to_string(), f64::from(*n))).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sends, want);
        assert!(
            (estimate.cost.expected - expected).abs() < 1e-9 && (estimate.cost.max - expected).abs() < 1e-9,
            "{:?}",
            estimate.cost
        );
    }
}

/// After a resume from PAUSED_ERROR each new run probes with one message;
/// a probe is a new attempt with a fresh roll (the attempt count is the
/// outbox's, durable across processes), so a flaky provider lets the
/// campaign finish after a few resumes instead of failing the same probe forever.
#[test]
fn resumes_after_a_flaky_provider_trips_the_breaker_finish_the_campaign() {
    let (p, model) = two_sms();
    for db in common::backends("flaky") {
        import(&db, &model, &contacts(200));
        let flaky = Opts { fail_rate: 0.5, ..Default::default() };
        let mut r = run_on(&db, &p, &flaky);
        let mut resumes = 0;
        while r.state == "PAUSED_ERROR" {
            assert!(resumes < 60, "still PAUSED_ERROR after {resumes} resumes: {:?}", r.executions);
            let mut store = db.open();
            flowc::runtime::lifecycle::resume(&mut *store, "c", START).expect("resume");
            drop(store);
            r = run_on(&db, &p, &flaky);
            resumes += 1;
        }
        assert!(resumes > 0, "a 50% failure rate trips the breaker");
        assert!(r.state.starts_with("COMPLETED"), "{}", r.state);
        assert_eq!(r.executions["processing"] + r.executions["pending"], 0);
        assert_eq!(r.provider.duplicates, 0);
    }
}
