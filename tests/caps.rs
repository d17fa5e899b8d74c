//! Issue 19 item 2: workspace-wide frequency caps. Consent-requiring sends
//! delivered to a contact in the rolling window count across every campaign
//! of the database; a send over a cap is skipped `frequency-cap` and the
//! execution goes on; transactional messages are exempt; a channel's cap
//! counts only that channel.

mod common;

use common::Db;

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::Store;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const START: i64 = 29_400_000;
const DAY: i64 = 1440;

const SRC: &str = r#"
template m { channel email message marketing status published }
template t { channel email message transactional status published }
template p { channel sms message promotional status published }
contact { tier: enum(gold, basic) }
policy {
  frequency cap 3 per 7d
  frequency cap sms 1 per 1d
}
campaign alpha {
  trigger manual
  a1: send email.marketing m
  wait 1d
  a2: send sms.promotional p
  if tier == gold { a3: send email.marketing m }
  a4: send sms.promotional p
  wait 2d
  a5: send email.transactional t
  a6: send email.marketing m
}
campaign beta {
  trigger manual
  b1: send email.marketing m
  wait 5d
  b2: send sms.promotional p
  b3: send email.marketing m
}
"#;

fn compiled() -> (Vec<Program>, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(SRC);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let ps = model.campaigns.iter().map(|c| compile::compile(&model, c, ws.sources.get(c.file))).collect();
    (ps, model)
}

fn run_on(db: &common::Backend, p: &Program) -> Value {
    let mut store = db.open();
    let mut provider = Simulated::open(&db.provider_base(), SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(START),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig { batch: 7, ..EngineConfig::default() },
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let r = run::run(&mut *store, &mut provider, p, &opts, &mut |_| {}).expect("run");
    serde_json::to_value(&r).expect("json")
}

/// One send as the campaigns make it: when, on which channel, and whether
/// its message type requires consent (only those are capped and counted).
#[derive(Clone, Copy)]
struct Planned {
    step: &'static str,
    at: i64,
    channel: &'static str,
    consent: bool,
}

/// The caps, computed here: in time order (program order within an
/// instant), a consent-requiring send is admitted when fewer than 3
/// admitted sends fall in the 7 days before it (a send at `s` counts at
/// `t` when `t - s < window`) and, for sms, fewer than 1 in the day before.
fn capped_steps(plan: &[Planned]) -> Vec<&'static str> {
    let mut admitted: Vec<Planned> = Vec::new();
    let mut capped = Vec::new();
    for s in plan {
        if !s.consent {
            continue;
        }
        let within = |w: i64, ch: Option<&str>| {
            admitted.iter().filter(|a| s.at - a.at < w && ch.is_none_or(|c| c == a.channel)).count()
        };
        let over = within(7 * DAY, None) >= 3 || (s.channel == "sms" && within(DAY, Some("sms")) >= 1);
        if over {
            capped.push(s.step);
        } else {
            admitted.push(*s);
        }
    }
    capped
}

fn skips(r: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in r["steps"].as_array().expect("steps") {
        if let Some(n) = s["skipped"]["frequency-cap"].as_u64() {
            out.insert(s["id"].as_str().expect("id").to_string(), n);
        }
    }
    out
}

#[test]
fn two_campaigns_over_the_same_contacts_cap_exactly_the_computed_sends() {
    let (ps, model) = compiled();
    let alpha = ps.iter().find(|p| p.campaign == "alpha").expect("alpha");
    let beta = ps.iter().find(|p| p.campaign == "beta").expect("beta");
    assert_eq!(alpha.delivery.frequency_caps.len(), 2, "the policy reaches the program");
    for db in common::backends("two") {
        two_campaigns_on(&db, alpha, beta, &model);
    }
}

fn two_campaigns_on(db: &common::Backend, alpha: &Program, beta: &Program, model: &flowc::check::model::Model) {
    let n: u64 = 40;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("c{i:02}"), "email": format!("c{i}@example.com"), "phone": format!("+3361{i:07}"),
                "consent": ["email", "sms"], "tier": if i % 3 == 0 { "gold" } else { "basic" }})
            .to_string()
        })
        .collect();
    {
        let mut store = db.open();
        let parsed = contacts::parse(&lines.join("\n"), Format::JsonLines, &Schema::from_model(model));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
    }
    let ra = run_on(db, alpha);
    let rb = run_on(db, beta);
    // Beta starts where alpha's virtual clock stopped.
    let beta_start =
        chrono::DateTime::parse_from_rfc3339(ra["clock"].as_str().expect("clock")).expect("rfc3339").timestamp() / 60;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_capped = 0u64;
    for i in 0..n {
        let t0 = START;
        let mut plan = vec![
            Planned { step: "a1", at: t0, channel: "email", consent: true },
            Planned { step: "a2", at: t0 + DAY, channel: "sms", consent: true },
        ];
        if i % 3 == 0 {
            plan.push(Planned { step: "a3", at: t0 + DAY, channel: "email", consent: true });
        }
        plan.extend([
            Planned { step: "a4", at: t0 + DAY, channel: "sms", consent: true },
            Planned { step: "a5", at: t0 + 3 * DAY, channel: "email", consent: false },
            Planned { step: "a6", at: t0 + 3 * DAY, channel: "email", consent: true },
            Planned { step: "b1", at: beta_start, channel: "email", consent: true },
            Planned { step: "b2", at: beta_start + 5 * DAY, channel: "sms", consent: true },
            Planned { step: "b3", at: beta_start + 5 * DAY, channel: "email", consent: true },
        ]);
        for s in capped_steps(&plan) {
            *expected.entry(s.to_string()).or_default() += 1;
            total_capped += 1;
        }
    }
    let mut got = skips(&ra);
    got.extend(skips(&rb));
    assert_eq!(got, expected, "alpha: {ra}\nbeta: {rb}");
    assert!(total_capped > 0 && expected.len() >= 3, "the scenario caps something: {expected:?}");
    // The execution goes on past a capped send: everyone completes.
    for r in [&ra, &rb] {
        assert_eq!(r["executions"]["completed"], n, "{r}");
    }
    // Capped sends are never billed nor handed to the provider.
    let sent: u64 = [&ra, &rb]
        .iter()
        .flat_map(|r| r["steps"].as_array().expect("steps").iter())
        .map(|s| s["sent"].as_u64().unwrap_or(0))
        .sum();
    let planned_sends = n * 8 + n.div_ceil(3);
    assert_eq!(sent, planned_sends - total_capped);
}

/// Two writers (two store connections on one database, in two threads)
/// race for the same contacts' slots: the count is taken in each commit's
/// write transaction, so exactly `count` sends per contact and window get
/// through, however the commits interleave.
#[test]
fn concurrent_writers_never_exceed_a_cap() {
    for db in common::backends("race") {
        drop(db.open());
        writers_race_on(&db);
    }
}

fn writers_race_on(db: &common::Backend) {
    use flowc::compile::program::FrequencyCap;
    use flowc::runtime::store::{atomically, CapSend, ContactId};
    let caps = vec![FrequencyCap { channel: None, count: 3, window_minutes: 7 * DAY }];
    let contacts: Vec<ContactId> = (0..20).map(|i| ContactId(format!("c{i:02}"))).collect();
    let admitted = std::thread::scope(|scope| {
        let workers: Vec<_> = ["one", "two"]
            .into_iter()
            .map(|who| {
                let (caps, contacts) = (&caps, &contacts);
                let mut store = db.open();
                scope.spawn(move || {
                    let mut got = 0usize;
                    for round in 0..10 {
                        for c in contacts {
                            let key = format!("{who}/{c}/{round}");
                            let send = CapSend { contact: c, channel: "email", key: &key };
                            let fits = atomically(&mut *store, |s| s.admit_capped(caps, &[send], START + round))
                                .expect("admit");
                            got += fits.iter().filter(|f| **f).count();
                        }
                    }
                    got
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("thread")).sum::<usize>()
    });
    assert_eq!(admitted, 3 * contacts.len(), "{}", db.name());
}

/// A send that fails for good gives its slot back (a cap counts messages
/// delivered); one that was delivered keeps it.
#[test]
fn a_send_that_fails_for_good_gives_its_slot_back() {
    for db in common::backends("give-back") {
        give_back_on(&mut *db.open());
    }
}

fn give_back_on(store: &mut dyn Store) {
    use flowc::compile::program::FrequencyCap;
    use flowc::runtime::store::{
        atomically, outbox_key, CapSend, ContactId, Entry, OutboxNew, Round, SendOutcome, WorkerId,
    };
    let caps = vec![FrequencyCap { channel: None, count: 1, window_minutes: 7 * DAY }];
    let c = ContactId("c1".into());
    let row = |step: &str| OutboxNew {
        key: outbox_key("k", "v1", &c, &step.into()),
        contact: c.clone(),
        entry: Entry::FIRST,
        version: "v1".into(),
        step: step.into(),
        channel: "email".into(),
        message: "marketing".into(),
        template: "m".into(),
        price_micros: 1000,
        created_at: START,
    };
    let admit = |store: &mut dyn Store, o: &OutboxNew, at: i64| -> bool {
        let send = CapSend { contact: &o.contact, channel: &o.channel, key: &o.key };
        atomically(store, |s| s.admit_capped(&caps, &[send], at)).expect("admit")[0]
    };
    let w = flowc::runtime::store::Lease::new(WorkerId("t".into()));
    // A shared store reserves each send's price as its row commits.
    store.ledger_add(1_000_000, "top-up", START).expect("fund");
    let first = row("s1");
    assert!(admit(store, &first, START));
    store.commit("k", &Round { outbox_new: vec![first.clone()], ..Round::default() }, &w, START).expect("row");
    assert!(!admit(store, &row("s2"), START + 1), "the slot is taken while the send is pending");
    let failed = Round {
        outbox_done: vec![first.outcome(START + 2, SendOutcome::Failed { error: "bounced".into() })],
        ..Round::default()
    };
    store.commit("k", &failed, &w, START + 2).expect("failed");
    let second = row("s2");
    assert!(admit(store, &second, START + 3), "a failed send gave its slot back");
    store.commit("k", &Round { outbox_new: vec![second.clone()], ..Round::default() }, &w, START + 3).expect("row");
    let sent = Round {
        outbox_done: vec![second.outcome(START + 4, SendOutcome::Sent(Default::default()))],
        ..Round::default()
    };
    store.commit("k", &sent, &w, START + 4).expect("sent");
    assert!(!admit(store, &row("s3"), START + 5), "a delivered send keeps its slot");
    assert!(admit(store, &row("s4"), START + 3 + 7 * DAY), "until the window has passed");
}

/// The store keeps a contact's capped sends only while a cap can still count
/// them: no window is longer than 365 days, so older rows go as the
/// contact's next send is admitted, and the table does not grow forever.
#[test]
fn capped_sends_older_than_any_window_are_dropped() {
    use flowc::compile::program::FrequencyCap;
    use flowc::runtime::store::{atomically, CapSend, ContactId};
    let db = Db::new("prune");
    let mut store = SqliteStore::open(&db.path).expect("store");
    let caps = vec![FrequencyCap { channel: None, count: 1, window_minutes: DAY }];
    let (a, b) = (ContactId("a".into()), ContactId("b".into()));
    let admit = |store: &mut SqliteStore, contact: &ContactId, key: &str, at: i64| {
        let send = CapSend { contact, channel: "email", key };
        atomically(store, |s| s.admit_capped(&caps, &[send], at)).expect("admit")
    };
    assert_eq!(admit(&mut store, &a, "a1", START), vec![true]);
    assert_eq!(admit(&mut store, &b, "b1", START), vec![true]);
    assert_eq!(admit(&mut store, &a, "a2", START + 365 * DAY - 1), vec![true]);
    assert_eq!(admit(&mut store, &a, "a3", START + 366 * DAY), vec![true]);
    drop(store);
    let conn = rusqlite::Connection::open(&db.path).expect("open");
    let keys = |c: &str| -> Vec<String> {
        let mut q = conn.prepare("SELECT key FROM capped_sends WHERE contact_id = ?1 ORDER BY at").expect("q");
        q.query_map([c], |r| r.get(0)).expect("rows").collect::<Result<_, _>>().expect("keys")
    };
    assert_eq!(keys("a"), ["a2", "a3"], "a1 is older than any window; a2 is not");
    assert_eq!(keys("b"), ["b1"], "another contact's rows wait for its own next send");
}
