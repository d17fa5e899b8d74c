//! The store's contract, written against the `Store` trait so that every
//! backend runs the same suite (`conformance`), plus what only a wrapper
//! around a real store can show: lifecycle operations under injected write
//! failures, and a batch that races a concurrent contact update.

mod common;

use common::TempDir;

use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::{Engine, EngineConfig};
use flowc::runtime::facts::{ContactEvent, ContactRecord, SentMessage};
use flowc::runtime::lifecycle::{self, State};
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

const DECLS: &str = r#"
template hello { channel email message marketing status published }
template promo { channel sms message promotional status published }
contact { plan: enum(free, pro) }
"#;

fn program(body: &str) -> (Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(&format!("{DECLS}{body}"));
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    (compile::compile(&model, c, ws.sources.get(c.file)), model)
}

fn contacts_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("c{i:03}"), "email": format!("c{i}@example.com"), "phone": format!("+3360000{i:04}"),
                "created_at": "2025-11-20T10:00:00Z", "tags": ["onboarding"], "consent": ["email", "sms"],
                "plan": if i % 2 == 0 { "pro" } else { "free" },
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn import(store: &mut dyn Store, model: &flowc::check::model::Model, n: usize) {
    let parsed = contacts::parse(&contacts_jsonl(n), Format::JsonLines, &Schema::from_model(model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
}

fn worker(name: &str) -> Lease {
    Lease::new(WorkerId(name.to_string()))
}

fn outbox_row(campaign: &str, contact: &str, step: &str) -> OutboxNew {
    OutboxNew {
        key: outbox_key(campaign, "v1", &contact.into(), &step.into()),
        contact: contact.into(),
        entry: Entry::FIRST,
        version: "v1".into(),
        step: step.into(),
        channel: "sms".into(),
        message: "promotional".into(),
        template: "promo".into(),
        price_micros: 45_000,
        created_at: 100,
    }
}

fn exec(contact: &str, step: &str, state: ExecState, wake_at: Option<i64>) -> ExecUpdate {
    ExecUpdate {
        contact: contact.into(),
        entry: Entry::FIRST,
        step: step.into(),
        version: "v1".into(),
        state,
        wake_at,
        reason: None,
        wait_since: None,
    }
}

// ---------------------------------------------------------------------------
// The conformance suite: every backend must pass it.

/// Runs every conformance check on fresh stores made by `make`.
fn conformance(make: &dyn Fn(&str) -> Box<dyn Store>) {
    campaigns_and_guarded_state_changes(make("campaigns").as_mut());
    ledger_settings_and_meta(make("ledger").as_mut());
    contacts_and_events(make("contacts").as_mut());
    enrollment_is_at_most_once_and_due_is_ordered(make("enroll").as_mut());
    a_round_commits_sends_outcomes_and_counts(make("round").as_mut());
    retries_park_executions_and_settling_releases_them(make("retry").as_mut());
    abandoned_claims_are_given_back(make("claims").as_mut());
    tag_deltas_keep_concurrent_changes(make("tags").as_mut());
    a_transaction_commits_all_or_nothing(make("atomic").as_mut());
    the_clock_moves_only_from_what_it_reads(make("clock").as_mut());
    newest_created_at_follows_the_contacts(make("newest").as_mut());
    data_version_follows_what_estimates_read(make("version").as_mut());
    api_triggers_are_enrolled_once_each_with_their_event(make("triggered").as_mut());
    a_new_version_sees_the_triggers_it_was_given(make("relaunch").as_mut());
}

/// A trigger answered 202 is an execution of the version it was admitted
/// under, queued or not: a new version that removes the step it waits at
/// is refused, and `--force` skips it like any other.
fn a_new_version_sees_the_triggers_it_was_given(s: &mut dyn Store) {
    use flowc::runtime::lifecycle::{LifecycleError, RemovedSteps};
    let (v1, _) = program("campaign relaunched {\n  trigger api\n  first: wait 1d\n}");
    lifecycle::launch(s, &v1, RemovedSteps::Refuse, 0).expect("launch");
    s.upsert_contacts(&[record("q", &[])], &[]).expect("contacts");
    let event = EventOf {
        contact: "q".into(),
        event: ContactEvent { name: TRIGGERED.into(), at: 10, props: serde_json::Map::new() },
    };
    let entry = Enrollment::new("q".into(), v1.nodes[0].id.clone(), 10);
    assert_eq!(s.enroll_triggered(&v1, &[entry], &[event], 10).expect("trigger"), 1);
    let (v2, _) = program("campaign relaunched {\n  trigger api\n  other: wait 2d\n}");
    match lifecycle::launch(s, &v2, RemovedSteps::Refuse, 20) {
        Err(LifecycleError::Refused(why)) => assert!(why.contains("1 execution(s) wait"), "{why}"),
        other => panic!("a version removing the step a trigger waits at was not refused: {other:?}"),
    }
    assert_eq!(s.counts("relaunched").expect("counts")[&ExecState::Pending], 1, "the refusal changed nothing");
    lifecycle::launch(s, &v2, RemovedSteps::Skip, 30).expect("forced");
    let counts = s.counts("relaunched").expect("counts");
    assert_eq!((counts[&ExecState::Pending], counts[&ExecState::Skipped]), (0, 1));
}

/// `enroll_triggered` may queue (SQLite) or enroll at once (PostgreSQL):
/// either way every reader agrees with the count it answered from the
/// moment it returns, and once drained the executions and events are
/// there, once each, in the version and step they were admitted at.
fn api_triggers_are_enrolled_once_each_with_their_event(s: &mut dyn Store) {
    let (mut p, _) = program("campaign api_in {\n  trigger api\n  reentry always\n  wait 1d\n}");
    s.upsert_contacts(&[record("a", &[]), record("b", &[])], &[]).expect("contacts");
    let first = p.nodes[0].id.clone();
    let trig = |c: &str, kind: &str, at: i64| {
        let mut props = serde_json::Map::new();
        props.insert("kind".into(), kind.into());
        props.insert("campaign".into(), "api_in".into());
        (
            Enrollment::new(c.into(), first.clone(), at),
            EventOf { contact: c.into(), event: ContactEvent { name: TRIGGERED.into(), at, props } },
        )
    };
    let (eb, vb) = trig("b", "plain", 100);
    assert_eq!(s.enroll_triggered(&p, &[eb], &[vb], 100).expect("trigger"), 1);
    let (ea, va) = trig("a", "vip", 130);
    assert_eq!(s.enroll_triggered(&p, &[ea], &[va], 130).expect("trigger"), 1);
    // Seen as enrolled before any drain: re-entry, reports, the runner's clock.
    let latest = s.latest_starts("api_in", &[&"a".into(), &"zz".into()]).expect("latest");
    assert_eq!(latest.get(&ContactId::from("a")), Some(&Some(130)));
    assert!(!latest.contains_key(&ContactId::from("zz")));
    assert!(s.enrolled("api_in", &[&"b".into()]).expect("enrolled").contains(&ContactId::from("b")));
    assert_eq!(s.counts("api_in").expect("counts")[&ExecState::Pending], 2);
    assert_eq!(s.next_wake("api_in").expect("wake"), Some(100));
    // The same contact again (reentry always), then a later version.
    let (ea2, va2) = trig("a", "again", 160);
    p.version = flowc::compile::program::Version("v-later".into());
    assert_eq!(s.enroll_triggered(&p, &[ea2], &[va2], 160).expect("again"), 1);
    let one = s.drain_triggered("api_in", 1, 170).expect("drain one");
    if one == 1 {
        // The oldest first, whatever the contact's id.
        let first: Vec<String> =
            s.starts("api_in", None, 10).expect("starts").into_iter().map(|st| st.contact.0).collect();
        assert_eq!(first, ["b"]);
    }
    let drained = one + s.drain_triggered("api_in", 100, 170).expect("drain");
    assert!(drained == 0 || drained == 3, "a queueing store drains all three, another none: {drained}");
    assert_eq!(s.drain_triggered("api_in", 100, 170).expect("drained"), 0, "nothing is drained twice");
    assert_eq!(s.counts("api_in").expect("counts")[&ExecState::Pending], 3);
    let starts = s.starts("api_in", None, 10).expect("starts");
    let mut seen: Vec<(String, u32, Option<i64>)> =
        starts.iter().map(|st| (st.contact.0.clone(), st.entry.0, st.started_at)).collect();
    seen.sort();
    assert_eq!(seen, [("a".into(), 1, Some(130)), ("a".into(), 2, Some(160)), ("b".into(), 1, Some(100))]);
    let events = s.events_for(&[&"a".into(), &"b".into()]).expect("events");
    let mut kinds: Vec<(String, i64, String)> = events
        .iter()
        .map(|e| (e.contact.0.clone(), e.event.at, e.event.props["kind"].as_str().unwrap_or("").to_string()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [("a".into(), 130, "vip".into()), ("a".into(), 160, "again".into()), ("b".into(), 100, "plain".into())]
    );
    let due = s.claim("api_in", 200, 10, &[], &worker("w")).expect("due");
    let versions: BTreeMap<(String, u32), String> =
        due.iter().map(|d| ((d.contact.id.0.clone(), d.entry.0), d.version.clone())).collect();
    assert_eq!(versions[&("a".to_string(), 2)], "v-later", "each at the version it was admitted under");
    assert_eq!(versions.len(), 3);
}

fn campaigns_and_guarded_state_changes(s: &mut dyn Store) {
    assert!(s.campaign("c").expect("read").is_none());
    s.put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p1", state: State::Draft }, 1).expect("put");
    s.set_state("c", State::Draft, State::Scheduled, "launched", 2).expect("state");
    // Guarded by the expected state: a stale writer cannot move it.
    let stale = s.set_state("c", State::Draft, State::Running, "stale", 3);
    assert!(matches!(stale, Err(StoreError::StateChanged { .. })), "{stale:?}");
    s.put_campaign(&CampaignVersion { name: "c", version: "v2", program: b"p2", state: State::Scheduled }, 4)
        .expect("new version");
    let row = s.campaign("c").expect("read").expect("row");
    assert_eq!((row.version.as_str(), row.state, row.program.as_slice()), ("v2", State::Scheduled, b"p2".as_slice()));
    assert_eq!(s.program_version("c", "v1").expect("v1").as_deref(), Some(b"p1".as_slice()));
    let log = s.transitions("c", 10).expect("log");
    assert_eq!(
        log,
        vec![Transition { at: 2, from: State::Draft, to: State::Scheduled, reason: "launched".to_string() }]
    );
    assert_eq!(s.campaigns().expect("all").len(), 1);
}

fn ledger_settings_and_meta(s: &mut dyn Store) {
    assert_eq!(s.balance().expect("balance"), 0);
    s.ensure_initial_balance(1_000, 1).expect("initial");
    s.ensure_initial_balance(1_000, 2).expect("initial once");
    s.ledger_add(-300, "send", 3).expect("debit");
    assert_eq!(s.balance().expect("balance"), 700);
    assert_eq!(s.auto_reload().expect("reload"), None);
    let r = AutoReload { threshold_micros: 5, amount_micros: 50 };
    s.set_auto_reload(Some(r)).expect("set");
    assert_eq!(s.auto_reload().expect("reload"), Some(r));
    s.set_auto_reload(None).expect("off");
    assert_eq!(s.auto_reload().expect("reload"), None);
    s.put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p", state: State::Running }, 1)
        .expect("put");
    assert!(!s.probe_pending("c").expect("probe"));
    s.set_probe("c", Probe::Owed).expect("probe");
    assert!(s.probe_pending("c").expect("probe"));
    let b = BreakerState { consecutive_failures: 4, recent: [true, false, false].into_iter().collect() };
    s.set_breaker("c", &b).expect("breaker");
    assert_eq!(s.breaker("c").expect("breaker"), b);
    assert_eq!(s.breaker("other").expect("breaker"), BreakerState::default());
    s.set_meta("k", "v").expect("meta");
    assert_eq!(s.meta("k").expect("meta").as_deref(), Some("v"));
    s.delete_meta("k").expect("delete");
    assert_eq!(s.meta("k").expect("meta"), None);
}

fn record(id: &str, tags: &[&str]) -> ContactRecord {
    ContactRecord {
        id: id.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        consent: vec!["sms".into()],
        ..Default::default()
    }
}

fn contacts_and_events(s: &mut dyn Store) {
    let ev = ContactEvent { name: "order.completed".into(), at: 10, props: Default::default() };
    s.upsert_contacts(
        &[record("b", &[]), record("a", &["x"]), record("c", &[])],
        &[EventOf { contact: "a".into(), event: ev.clone() }],
    )
    .expect("upsert");
    assert_eq!(s.contact_count().expect("count"), 3);
    let page: Vec<String> = s.contacts_page(Some(&"a".into()), 10).expect("page").into_iter().map(|c| c.id.0).collect();
    assert_eq!(page, ["b", "c"]);
    assert_eq!(s.contact(&"a".into()).expect("read").map(|c| c.tags), Some(vec!["x".to_string()]));
    assert!(s.contact_exists(&"c".into()).expect("exists"));
    // Neither a missing id nor one that only differs in case, nor a prefix.
    for missing in ["d", "A", "", "c "] {
        assert!(!s.contact_exists(&missing.into()).expect("exists"), "`{missing}` is not stored");
    }
    assert_eq!(
        s.events_for(&[&"a".into(), &"b".into()]).expect("events"),
        vec![EventOf { contact: "a".into(), event: ev.clone() }]
    );
    // The same event from outside, stored again (a file imported twice), is kept once.
    s.upsert_contacts(&[], &[EventOf { contact: "a".into(), event: ev.clone() }]).expect("again");
    assert_eq!(s.events_for(&[&"a".into()]).expect("events").len(), 1);
    // The event flowc records for each enrollment by a trigger is kept every
    // time, even identical: two triggers of one contact in the same minute
    // (under `reentry always`) are two enrollments, each with its event.
    let mut props = serde_json::Map::new();
    props.insert("campaign".into(), "k".into());
    let triggered =
        EventOf { contact: "b".into(), event: ContactEvent { name: "campaign.triggered".into(), at: 60_000, props } };
    s.upsert_contacts(&[], std::slice::from_ref(&triggered)).expect("first trigger");
    s.upsert_contacts(&[], std::slice::from_ref(&triggered)).expect("second trigger");
    assert_eq!(s.events_for(&[&"b".into()]).expect("events"), vec![triggered.clone(), triggered]);
}

fn enrollment_is_at_most_once_and_due_is_ordered(s: &mut dyn Store) {
    s.upsert_contacts(&[record("a", &[]), record("b", &[]), record("c", &[])], &[]).expect("upsert");
    let entries = [
        Enrollment::new("a".into(), "one".into(), 30),
        Enrollment::new("b".into(), "one".into(), 10),
        Enrollment::new("c".into(), "one".into(), 99),
    ];
    assert_eq!(s.enroll("k", "v1", &entries, 0).expect("enroll"), 3);
    assert_eq!(s.enroll("k", "v1", &entries, 0).expect("again"), 0, "a contact is enrolled at most once");
    let known = s.enrolled("k", &[&"a".into(), &"zz".into()]).expect("enrolled");
    assert_eq!(known.into_iter().collect::<Vec<_>>(), [ContactId::from("a")]);
    let due: Vec<String> =
        s.claim("k", 50, 10, &[], &worker("w")).expect("due").into_iter().map(|d| d.contact.id.0).collect();
    assert_eq!(due, ["b", "a"], "due by 50, earliest first");
    assert_eq!(s.claim("k", 50, 1, &[], &worker("w")).expect("due").len(), 1);
    // Committing ends the lease's claims: what the round did not move is due again as it was.
    s.commit("k", &Round::default(), &worker("w"), 50).expect("release");
    assert_eq!(s.next_wake("k").expect("wake"), Some(10));
    assert_eq!(s.counts("k").expect("counts")[&ExecState::Pending], 3);
}

fn a_round_commits_sends_outcomes_and_counts(s: &mut dyn Store) {
    s.upsert_contacts(&[record("a", &[]), record("b", &[])], &[]).expect("upsert");
    s.enroll("k", "v1", &[Enrollment::new("a".into(), "s".into(), 0), Enrollment::new("b".into(), "s".into(), 0)], 0)
        .expect("enroll");
    // A shared store debits only what the balance covers.
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    assert_eq!(s.claim("k", 0, 10, &[], &worker("w1")).expect("claim").len(), 2);
    let mut steps = BTreeMap::new();
    steps.insert(StepId::from("s"), StepCounts { entered: 2, ..Default::default() });
    let mut skipped = BTreeMap::new();
    skipped.insert("no-consent".to_string(), 1);
    steps.insert(StepId::from("t"), StepCounts { skipped, ..Default::default() });
    let round = Round {
        executions: vec![exec("a", "w", ExecState::Pending, Some(500)), exec("b", "t", ExecState::Skipped, None)],
        outbox_new: vec![outbox_row("k", "a", "s")],
        steps: steps.clone(),
        ab: [(("ab".to_string(), "x".to_string()), 1)].into_iter().collect(),
        ..Default::default()
    };
    s.commit("k", &round, &worker("w1"), 100).expect("commit");
    assert_eq!(
        s.outbox_pending("k", &worker("w1")).expect("pending").len(),
        1,
        "in flight until its outcome is recorded"
    );
    // Counts are added, never overwritten: the same round twice counts twice.
    let again = Round { steps, ..Default::default() };
    s.commit("k", &again, &worker("w1"), 100).expect("commit");
    let counts = s.step_counts("k").expect("steps");
    assert_eq!(counts["s"].entered, 4);
    assert_eq!(counts["t"].skipped["no-consent"], 2);
    assert_eq!(s.ab_counts("k").expect("ab")[&("ab".to_string(), "x".to_string())], 1);
    let o = outbox_row("k", "a", "s");
    let done = Round {
        outbox_done: vec![
            o.outcome(101, SendOutcome::Sent(Engagement { delivered_at: Some(102), ..Default::default() }))
        ],
        ledger: vec![LedgerEntry { amount_micros: -45_000, reason: "sends".into() }],
        ..Default::default()
    };
    s.commit("k", &done, &worker("w1"), 101).expect("outcome");
    assert!(s.outbox_pending("k", &worker("w1")).expect("pending").is_empty());
    assert_eq!(
        s.sent_for("k", &[&"a".into()]).expect("sent"),
        vec![SentOf {
            contact: "a".into(),
            entry: Entry::FIRST,
            message: SentMessage {
                step: "s".into(),
                channel: "sms".into(),
                sent_at: 101,
                delivered_at: Some(102),
                opened_at: None,
                clicked_at: None
            }
        }]
    );
    assert_eq!(s.balance().expect("balance"), 55_000);
    assert_eq!(s.next_wake("k").expect("wake"), Some(500));
}

fn retries_park_executions_and_settling_releases_them(s: &mut dyn Store) {
    s.upsert_contacts(&[record("a", &[])], &[]).expect("upsert");
    // A shared store reserves a send's price when its outbox row commits.
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    s.enroll("k", "v1", &[Enrollment::new("a".into(), "s".into(), 0)], 0).expect("enroll");
    assert_eq!(s.claim("k", 0, 10, &[], &worker("w1")).expect("claim").len(), 1);
    let sent = Round {
        executions: vec![exec("a", "next", ExecState::Pending, Some(900))],
        outbox_new: vec![outbox_row("k", "a", "s")],
        ..Default::default()
    };
    s.commit("k", &sent, &worker("w1"), 100).expect("commit");
    let retry = Round {
        outbox_retry: vec![OutboxRetry {
            contact: "a".into(),
            entry: Entry::FIRST,
            step: "s".into(),
            version: "v1".into(),
            attempts: 1,
            next_attempt_at: 101,
            error: "500".into(),
        }],
        parked: vec![("a".into(), Entry::FIRST)],
        ..Default::default()
    };
    s.commit("k", &retry, &worker("w1"), 100).expect("park");
    assert_eq!(s.counts("k").expect("counts")[&ExecState::Processing], 1, "parked while its send waits");
    assert!(
        s.claim("k", 10_000, 10, &[], &worker("w")).expect("due").is_empty(),
        "a parked execution does not step on"
    );
    assert!(
        s.outbox_pending("k", &Lease::new(WorkerId("test".into()))).expect("pending").is_empty(),
        "a scheduled retry is not 'in flight'"
    );
    assert_eq!(s.next_wake("k").expect("wake"), Some(101), "the retry is the next thing due");
    assert!(s.outbox_due("k", 100, 10, &worker("w1")).expect("due").is_empty());
    let due = s.outbox_due("k", 101, 10, &worker("w1")).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1, 1, "attempts made so far");
    let o = outbox_row("k", "a", "s");
    let ok = Round {
        outbox_done: vec![o.outcome(101, SendOutcome::Sent(Engagement::default()))],
        settled: vec![("a".into(), Entry::FIRST)],
        ..Default::default()
    };
    s.commit("k", &ok, &worker("w1"), 101).expect("settle");
    let counts = s.counts("k").expect("counts");
    assert_eq!(
        (counts[&ExecState::Processing], counts[&ExecState::Pending]),
        (0, 1),
        "back to the state it was parked with"
    );
    assert_eq!(s.next_wake("k").expect("wake"), Some(900), "and its wake-up");
}

fn abandoned_claims_are_given_back(s: &mut dyn Store) {
    s.upsert_contacts(&[record("a", &[]), record("b", &[])], &[]).expect("upsert");
    s.enroll("k", "v1", &[Enrollment::new("a".into(), "s".into(), 0), Enrollment::new("b".into(), "s".into(), 0)], 0)
        .expect("enroll");
    assert_eq!(s.claim("k", 100, 10, &[], &worker("dead")).expect("claim").len(), 2);
    let done = Round {
        executions: vec![exec("a", "s", ExecState::Completed, None), exec("b", "w", ExecState::Pending, Some(700))],
        ..Default::default()
    };
    s.commit("k", &done, &worker("dead"), 100).expect("commit");
    s.commit(
        "k",
        &Round { parked: vec![("a".into(), Entry::FIRST), ("b".into(), Entry::FIRST)], ..Default::default() },
        &worker("dead"),
        100,
    )
    .expect("park");
    // This worker's own claims are not abandoned.
    assert_eq!(s.requeue_processing("k", &worker("dead")).expect("requeue"), 0);
    assert_eq!(s.requeue_processing("k", &worker("alive")).expect("requeue"), 2);
    let counts = s.counts("k").expect("counts");
    assert_eq!((counts[&ExecState::Completed], counts[&ExecState::Pending], counts[&ExecState::Processing]), (1, 1, 0));
}

fn tag_deltas_keep_concurrent_changes(s: &mut dyn Store) {
    s.upsert_contacts(&[record("a", &["old", "gone"])], &[]).expect("upsert");
    // Meanwhile another writer adds a tag the batch never saw.
    s.upsert_contacts(&[record("a", &["old", "gone", "vip"])], &[]).expect("concurrent upsert");
    let delta = TagDelta::between(&"a".into(), &["old".into(), "gone".into()], &["old".into(), "engaged".into()])
        .expect("a change");
    s.commit("k", &Round { tags: vec![delta], ..Default::default() }, &worker("w"), 1).expect("commit");
    assert_eq!(
        s.contact(&"a".into()).expect("read").map(|c| c.tags),
        Some(vec!["old".to_string(), "vip".to_string(), "engaged".to_string()])
    );
}

fn a_transaction_commits_all_or_nothing(s: &mut dyn Store) {
    let failed: Result<(), StoreError> = atomically(s, |s| {
        s.put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p", state: State::Draft }, 1)?;
        s.set_state("c", State::Draft, State::Scheduled, "launched", 1)?;
        Err(StoreError::Other("stopped halfway".into()))
    });
    assert!(failed.is_err());
    assert!(s.campaign("c").expect("read").is_none(), "nothing of a failed transaction remains");
    assert!(s.transitions("c", 10).expect("log").is_empty());
    atomically(s, |s| {
        s.put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p", state: State::Draft }, 1)?;
        s.set_state("c", State::Draft, State::Scheduled, "launched", 1)
    })
    .expect("commit");
    assert_eq!(s.campaign("c").expect("read").map(|r| r.state), Some(State::Scheduled));
}

fn the_clock_moves_only_from_what_it_reads(s: &mut dyn Store) {
    assert!(s.advance_clock(0, 10).expect("clock"), "unset: it moves");
    assert_eq!(s.meta("clock").expect("meta").as_deref(), Some("10"));
    assert!(!s.advance_clock(0, 20).expect("clock"), "another worker moved it first");
    assert_eq!(s.meta("clock").expect("meta").as_deref(), Some("10"));
    assert!(s.advance_clock(10, 20).expect("clock"));
    assert_eq!(s.meta("clock").expect("meta").as_deref(), Some("20"));
}

fn created(id: &str, at: &str) -> ContactRecord {
    let mut c = record(id, &[]);
    c.attrs.insert("created_at".into(), at.into());
    c
}

/// Issue 23: where a virtual clock starts — the newest `created_at`, by
/// time, not by spelling — however the contacts were written since.
fn newest_created_at_follows_the_contacts(s: &mut dyn Store) {
    assert_eq!(s.newest_created_at().expect("empty"), None);
    s.upsert_contacts(&[created("a", "2026-11-20T10:00:00+02:00"), created("b", "2026-11-20 09:30")], &[])
        .expect("upsert");
    // 08:00 UTC and 09:30 UTC: the second is newer, whatever the text says.
    let minutes = |t: &str| flowc::runtime::facts::parse_datetime(t).expect("datetime");
    assert_eq!(s.newest_created_at().expect("newest"), Some(minutes("2026-11-20T09:30:00Z")));
    // An upsert that moves the newest contact back in time lowers it.
    s.upsert_contacts(&[created("b", "2026-01-01T00:00:00Z"), created("c", "not a date")], &[]).expect("upsert");
    assert_eq!(s.newest_created_at().expect("newest"), Some(minutes("2026-11-20T08:00:00Z")));
}

/// Issue 23: a store that keeps a `DataVersion` changes it with every write
/// of contacts, events or sends (what an estimate reads), so a cached
/// estimate is never served over changed data.
fn data_version_follows_what_estimates_read(s: &mut dyn Store) {
    let Some(mut last) = s.data_version().expect("version") else { return };
    let mut changed = |s: &mut dyn Store, what: &str| {
        let now = s.data_version().expect("version").expect("kept");
        assert_ne!(now, last, "{what} must change the data version");
        last = now;
    };
    s.upsert_contacts(&[record("a", &["x"]), record("b", &[])], &[]).expect("upsert");
    changed(s, "contacts");
    let ev = ContactEvent { name: "order.completed".into(), at: 10, props: Default::default() };
    s.upsert_contacts(&[], &[EventOf { contact: "a".into(), event: ev }]).expect("event");
    changed(s, "an event");
    let delta = TagDelta::between(&"a".into(), &["x".into()], &["y".into()]).expect("a change");
    s.commit("k", &Round { tags: vec![delta], ..Default::default() }, &worker("w"), 1).expect("tags");
    changed(s, "a tag change");
    let set = FieldDelta { contact: "b".into(), values: vec![("plan".to_string(), "pro".into())] };
    s.commit("k", &Round { fields: vec![set], ..Default::default() }, &worker("w"), 1).expect("fields");
    changed(s, "a field change");
    s.enroll("k", "v1", &[Enrollment::new("a".into(), "s".into(), 0)], 0).expect("enroll");
    s.commit("k", &Round { outbox_new: vec![outbox_row("k", "a", "s")], ..Default::default() }, &worker("w"), 2)
        .expect("send");
    let done = Round {
        outbox_done: vec![outbox_row("k", "a", "s").outcome(3, SendOutcome::Sent(Engagement::default()))],
        ..Default::default()
    };
    s.commit("k", &done, &worker("w"), 3).expect("outcome");
    changed(s, "a send recorded");
}

#[test]
fn sqlite_store_conforms() {
    let tmp = TempDir::new("store-conformance");
    let make = |name: &str| -> Box<dyn Store> {
        Box::new(SqliteStore::open(&tmp.0.join(format!("{name}.db"))).expect("open"))
    };
    conformance(&make);
}

#[test]
fn postgres_store_conforms() {
    let Some(server) = common::postgres_server() else { return };
    // A fresh database per case; they are dropped when the suite is done.
    let dbs = RefCell::new(Vec::new());
    let make = |name: &str| -> Box<dyn Store> {
        let db = common::PgDb::create(&server, name);
        let store = db.connect();
        dbs.borrow_mut().push(db);
        Box::new(store)
    };
    conformance(&make);
}

// ---------------------------------------------------------------------------
// A store that fails its Nth write, or runs something just after a batch
// has read its executions.

struct Wrapped {
    inner: Box<dyn Store>,
    /// Fail the write with this number (1-based); `None` never fails.
    fail_at: Option<usize>,
    writes: Cell<usize>,
    /// Runs once, right after the next `due` (another writer, meanwhile).
    after_due: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Wrapped {
    fn new(inner: Box<dyn Store>) -> Wrapped {
        Wrapped { inner, fail_at: None, writes: Cell::new(0), after_due: RefCell::new(None) }
    }
    fn write(&self) -> Result<(), StoreError> {
        let n = self.writes.get() + 1;
        self.writes.set(n);
        if self.fail_at == Some(n) {
            return Err(StoreError::Other(format!("injected failure of write {n}")));
        }
        Ok(())
    }
}

impl Store for Wrapped {
    fn sends_since(&self, contacts: &[&ContactId], since: i64) -> Result<Vec<RecordedSend>, StoreError> {
        self.inner.sends_since(contacts, since)
    }
    fn admit_capped(
        &mut self,
        caps: &[flowc::compile::program::FrequencyCap],
        sends: &[CapSend<'_>],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.admit_capped(caps, sends, now)
    }
    fn put_campaign(&mut self, campaign: &CampaignVersion<'_>, now: i64) -> Result<(), StoreError> {
        self.write()?;
        self.inner.put_campaign(campaign, now)
    }
    fn campaign(&self, name: &str) -> Result<Option<CampaignRow>, StoreError> {
        self.inner.campaign(name)
    }
    fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        self.inner.campaigns()
    }
    fn program_version(&self, campaign: &str, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.program_version(campaign, version)
    }
    fn set_state(&mut self, name: &str, from: State, to: State, why: &str, now: i64) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_state(name, from, to, why, now)
    }
    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<Transition>, StoreError> {
        self.inner.transitions(name, limit)
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_meta(key, value)
    }
    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.write()?;
        self.inner.delete_meta(key)
    }
    fn balance(&self) -> Result<i64, StoreError> {
        self.inner.balance()
    }
    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError> {
        self.write()?;
        self.inner.ledger_add(amount_micros, reason, now)
    }
    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[EventOf]) -> Result<(), StoreError> {
        self.write()?;
        self.inner.upsert_contacts(contacts, events)
    }
    fn contact_count(&self) -> Result<u64, StoreError> {
        self.inner.contact_count()
    }
    fn for_each_contact(&self, f: &mut dyn FnMut(ContactRecord)) -> Result<(), StoreError> {
        self.inner.for_each_contact(f)
    }
    fn contact(&self, id: &ContactId) -> Result<Option<ContactRecord>, StoreError> {
        self.inner.contact(id)
    }
    fn contacts_page(&self, after: Option<&ContactId>, limit: usize) -> Result<Vec<ContactRecord>, StoreError> {
        self.inner.contacts_page(after, limit)
    }
    fn ensure_initial_balance(&mut self, micros: i64, now: i64) -> Result<(), StoreError> {
        self.write()?;
        self.inner.ensure_initial_balance(micros, now)
    }
    fn events_for(&self, contacts: &[&ContactId]) -> Result<Vec<EventOf>, StoreError> {
        self.inner.events_for(contacts)
    }
    fn sent_for(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<SentOf>, StoreError> {
        self.inner.sent_for(campaign, contacts)
    }
    fn enroll(&mut self, campaign: &str, version: &str, entries: &[Enrollment], now: i64) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.enroll(campaign, version, entries, now)
    }
    fn enroll_triggered(
        &mut self,
        program: &Program,
        entries: &[Enrollment],
        events: &[EventOf],
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.enroll_triggered(program, entries, events, now)
    }
    fn drain_triggered(&mut self, campaign: &str, limit: usize, now: i64) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.drain_triggered(campaign, limit, now)
    }
    fn enroll_audience(
        &mut self,
        program: &Program,
        step: &StepId,
        wake: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.write()?;
        self.inner.enroll_audience(program, step, wake, now)
    }
    fn audience(
        &self,
        audience: flowc::runtime::store::Audience<'_>,
        f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.inner.audience(audience, f)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.inner.begin()
    }
    fn finish(&mut self, end: TxEnd) -> Result<(), StoreError> {
        if end == TxEnd::Commit {
            self.write()?;
        }
        self.inner.finish(end)
    }
    fn auto_reload(&self) -> Result<Option<AutoReload>, StoreError> {
        self.inner.auto_reload()
    }
    fn set_auto_reload(&mut self, setting: Option<AutoReload>) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_auto_reload(setting)
    }
    fn probe_pending(&self, campaign: &str) -> Result<bool, StoreError> {
        self.inner.probe_pending(campaign)
    }
    fn set_probe(&mut self, campaign: &str, pending: Probe) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_probe(campaign, pending)
    }
    fn breaker(&self, campaign: &str) -> Result<BreakerState, StoreError> {
        self.inner.breaker(campaign)
    }
    fn rate_next_free(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        self.inner.rate_next_free(campaign)
    }
    fn set_breaker(&mut self, campaign: &str, state: &BreakerState) -> Result<(), StoreError> {
        self.write()?;
        self.inner.set_breaker(campaign, state)
    }
    fn claim(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        fields: &[flowc::compile::program::FieldDef],
        lease: &Lease,
    ) -> Result<Vec<Due>, StoreError> {
        let due = self.inner.claim(campaign, now, limit, fields, lease);
        if let Some(f) = self.after_due.borrow_mut().take() {
            f();
        }
        due
    }
    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        self.inner.next_wake(campaign)
    }
    fn sends_in_flight(&self, campaign: &str) -> Result<u64, StoreError> {
        self.inner.sends_in_flight(campaign)
    }
    fn renew_sends(
        &mut self,
        campaign: &str,
        rows: &[&OutboxNew],
        lease: &Lease,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.inner.renew_sends(campaign, rows, lease)
    }
    fn release_claim(&mut self) -> Result<(), StoreError> {
        self.inner.release_claim()
    }
    fn commit(&mut self, campaign: &str, round: &Round, lease: &Lease, now: i64) -> Result<(), StoreError> {
        self.write()?;
        self.inner.commit(campaign, round, lease, now)
    }
    fn counts(&self, campaign: &str) -> Result<BTreeMap<ExecState, u64>, StoreError> {
        self.inner.counts(campaign)
    }
    fn step_counts(&self, campaign: &str) -> Result<BTreeMap<StepId, StepCounts>, StoreError> {
        self.inner.step_counts(campaign)
    }
    fn ab_counts(&self, campaign: &str) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        self.inner.ab_counts(campaign)
    }
    fn engagement_counts(&self, campaign: &str, by: i64) -> Result<BTreeMap<String, EngagementCounts>, StoreError> {
        self.inner.engagement_counts(campaign, by)
    }
    fn exit_counts(&self, campaign: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        self.inner.exit_counts(campaign)
    }
    fn starts(
        &self,
        campaign: &str,
        after: Option<(&ContactId, Entry)>,
        limit: usize,
    ) -> Result<Vec<Start>, StoreError> {
        self.inner.starts(campaign, after, limit)
    }
    fn reenter(
        &mut self,
        campaign: &str,
        version: &str,
        entries: &[Enrollment],
        rule: flowc::compile::program::Reentry,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.inner.reenter(campaign, version, entries, rule, now)
    }
    fn latest_starts(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashMap<ContactId, Option<i64>>, StoreError> {
        self.inner.latest_starts(campaign, contacts)
    }
    fn ab_assignments(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<AbAssignment>, StoreError> {
        self.inner.ab_assignments(campaign, contacts)
    }
    fn outbox_pending(&mut self, campaign: &str, lease: &Lease) -> Result<Vec<OutboxNew>, StoreError> {
        self.inner.outbox_pending(campaign, lease)
    }
    fn outbox_due(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(OutboxNew, u32)>, StoreError> {
        self.inner.outbox_due(campaign, now, limit, lease)
    }
    fn waiting_at(&self, campaign: &str, version: &str, steps: &[StepId]) -> Result<u64, StoreError> {
        self.inner.waiting_at(campaign, version, steps)
    }
    fn migrate_executions(&mut self, migration: &Migration<'_>, now: i64) -> Result<(u64, u64), StoreError> {
        self.write()?;
        self.inner.migrate_executions(migration, now)
    }
    fn requeue_processing(&mut self, campaign: &str, lease: &Lease) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.requeue_processing(campaign, lease)
    }
    fn advance_clock(&mut self, from: i64, to: i64) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.advance_clock(from, to)
    }
    fn enrolled(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashSet<ContactId>, StoreError> {
        self.inner.enrolled(campaign, contacts)
    }
    fn wake(
        &mut self,
        campaign: &str,
        contact: &ContactId,
        steps: flowc::runtime::store::Steps<'_>,
        at: i64,
    ) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.wake(campaign, contact, steps, at)
    }
    fn exit(&mut self, campaign: &str, contact: &ContactId, reason: &str, at: i64) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.exit(campaign, contact, reason, at)
    }
}

/// The campaign as the store has it: (version, state, transitions logged,
/// executions per version).
fn snapshot(s: &dyn Store, name: &str) -> (Option<(String, State)>, usize, BTreeMap<ExecState, u64>) {
    let row = s.campaign(name).expect("read").map(|r| (r.version, r.state));
    (row, s.transitions(name, 100).expect("log").len(), s.counts(name).expect("counts"))
}

/// Launching, migrating to a new version and resuming are each one
/// transaction: whichever write fails, the store holds the old state or the
/// new one, and trying again succeeds.
#[test]
fn lifecycle_operations_leave_the_old_or_the_new_state_whichever_write_fails() {
    let (v1, model) = program("campaign c {\n  trigger manual\n  one: send sms.promotional promo\n  wait 1d\n  two: send sms.promotional promo\n}\n");
    let (v2, _) = program("campaign c {\n  trigger manual\n  one: send sms.promotional promo\n  wait 1d\n  tag add \"x\"\n  two: send sms.promotional promo\n}\n");
    assert_ne!(v1.version, v2.version);
    for make in common::backend_makers() {
        lifecycle_faults(&*make, &v1, &v2, &model);
    }
}

fn lifecycle_faults(
    make: &dyn Fn(&str) -> common::Backend,
    v1: &Program,
    v2: &Program,
    model: &flowc::check::model::Model,
) {
    let mut faults_seen = 0;
    for n in 1.. {
        let backend = make(&format!("store-faults-{n}"));
        let mut store = Wrapped::new(backend.open());
        import(&mut store, model, 4);

        // A new campaign.
        let before = snapshot(&store, "c");
        store.writes.set(0);
        store.fail_at = Some(n);
        let launched = lifecycle::launch(&mut store, v1, lifecycle::RemovedSteps::Refuse, 1);
        let failed_launch = launched.is_err();
        let after = snapshot(&store, "c");
        store.fail_at = None;
        if failed_launch {
            assert_eq!(after, before, "write {n} failed: the launch left nothing behind");
            lifecycle::launch(&mut store, v1, lifecycle::RemovedSteps::Refuse, 1).expect("a retry launches");
        }
        assert_eq!(lifecycle::state(&store, "c").expect("state"), State::Scheduled);

        // Started (enrolled, then RUNNING).
        store.writes.set(0);
        store.fail_at = Some(n);
        let started = flowc::runtime::run::start_enrolling(&mut store, v1, "test", 1);
        store.fail_at = None;
        if started.is_err() {
            assert_eq!(
                lifecycle::state(&store, "c").expect("state"),
                State::Scheduled,
                "write {n} failed: not started"
            );
            flowc::runtime::run::start_enrolling(&mut store, v1, "test", 1).expect("a retry starts");
        }
        assert_eq!(lifecycle::state(&store, "c").expect("state"), State::Running);
        assert_eq!(store.counts("c").expect("counts")[&ExecState::Pending], 4, "the whole audience, once");
        // First sends made: everyone waits at the wait.
        let mut provider = Simulated::open(&backend.provider_base(), SimConfig::default()).expect("provider");
        Engine::new(&mut store, &mut provider, v1.clone(), EngineConfig::default(), worker("w"))
            .expect("engine")
            .run_batch(1)
            .expect("batch");

        // A new version, migrated by step id.
        let before = snapshot(&store, "c");
        store.writes.set(0);
        store.fail_at = Some(n);
        let migrated = lifecycle::launch(&mut store, v2, lifecycle::RemovedSteps::Refuse, 2);
        let after = snapshot(&store, "c");
        store.fail_at = None;
        if migrated.is_err() {
            assert_eq!(after, before, "write {n} failed: the migration left the old version");
            lifecycle::launch(&mut store, v2, lifecycle::RemovedSteps::Refuse, 2).expect("a retry migrates");
        }
        let (row, _, _) = snapshot(&store, "c");
        assert_eq!(row.map(|r| r.0), Some(v2.version.0.clone()));

        // Paused by the breaker, then resumed.
        lifecycle::transition(&mut store, "c", State::PausedError, "test", 3).expect("pause");
        store
            .set_breaker("c", &BreakerState { consecutive_failures: 10, recent: Default::default() })
            .expect("breaker");
        store.writes.set(0);
        store.fail_at = Some(n);
        let resumed = lifecycle::resume(&mut store, "c", 4);
        store.fail_at = None;
        if resumed.is_err() {
            assert_eq!(lifecycle::state(&store, "c").expect("state"), State::PausedError);
            assert!(!store.probe_pending("c").expect("probe"), "no probe without the resume");
            lifecycle::resume(&mut store, "c", 4).expect("a retry resumes");
        }
        assert_eq!(lifecycle::state(&store, "c").expect("state"), State::Running);
        assert!(store.probe_pending("c").expect("probe"));
        assert_eq!(store.breaker("c").expect("breaker"), BreakerState::default(), "a resume starts the breaker afresh");

        let any_failed = failed_launch || started.is_err() || migrated.is_err() || resumed.is_err();
        if !any_failed {
            // N is past the last write of every operation: all were covered.
            break;
        }
        faults_seen += 1;
    }
    assert!(faults_seen >= 3, "every operation was interrupted at least once ({faults_seen})");
}

/// A batch applies what it did to a contact's tags as a change: an API
/// upsert that lands between the batch's read and its commit is kept.
#[test]
fn a_concurrent_upsert_during_a_batch_keeps_both_changes() {
    let (p, model) = program("campaign c {\n  trigger manual\n  tag add \"engaged\"\n  tag remove \"onboarding\"\n}\n");
    for backend in common::backends("store-race") {
        concurrent_upsert(&backend, &p, &model);
    }
}

fn concurrent_upsert(backend: &common::Backend, p: &Program, model: &flowc::check::model::Model) {
    let mut store = Wrapped::new(backend.open());
    import(&mut store, model, 3);
    lifecycle::launch(&mut store, p, lifecycle::RemovedSteps::Refuse, 1).expect("launch");
    lifecycle::transition(&mut store, "c", State::Running, "test", 1).expect("start");
    flowc::runtime::run::enroll(&mut store, p, 1).expect("enroll");
    // Another process (the API) tags c001 right after the batch read it.
    let mut other = backend.open();
    *store.after_due.borrow_mut() = Some(Box::new(move || {
        let mut c = other.contact(&"c001".into()).expect("read").expect("contact");
        c.tags.push("vip".into());
        other.upsert_contacts(&[c], &[]).expect("concurrent upsert");
    }));
    let mut provider = Simulated::open(&backend.provider_base(), SimConfig::default()).expect("provider");
    let out = Engine::new(&mut store, &mut provider, p.clone(), EngineConfig::default(), worker("w"))
        .expect("engine")
        .run_batch(1)
        .expect("batch");
    assert_eq!(out.executions, 3);
    let tags = store.contact(&"c001".into()).expect("read").expect("contact").tags;
    assert_eq!(tags, vec!["vip".to_string(), "engaged".to_string()], "the batch's change and the API's both survive");
    let untouched = store.contact(&"c000".into()).expect("read").expect("contact").tags;
    assert_eq!(untouched, vec!["engaged".to_string()]);
}

// ---------------------------------------------------------------------------
// A corrupt stored value is an error that names its row, never a default.

/// The error of `read`, which must name the table, the row and the value.
fn assert_names_row<T: std::fmt::Debug>(read: Result<T, StoreError>, table: &str, key: &str, value: &str) {
    let e = read.expect_err("a corrupt value must be an error");
    let text = e.to_string();
    assert!(
        text.contains(table) && text.contains(key) && text.contains(value),
        "`{text}` should name table {table}, row {key}, value {value}"
    );
}

#[test]
fn a_corrupt_stored_value_is_an_error_naming_its_row() {
    let tmp = TempDir::new("store-corrupt");
    let mut s = SqliteStore::open(&tmp.0.join("corrupt.db")).expect("open");
    s.put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p1", state: State::Draft }, 1).expect("put");
    s.upsert_contacts(&[record("a", &[]), record("b", &[])], &[]).expect("upsert");
    s.enroll(
        "c",
        "v1",
        &[Enrollment::new("a".into(), "one".into(), 10), Enrollment::new("b".into(), "one".into(), 10)],
        0,
    )
    .expect("enroll");
    let raw = |s: &mut SqliteStore, sql: &str| s.connection().execute(sql, []).expect("raw write");

    raw(&mut s, "UPDATE campaigns SET state = 'BOGUS' WHERE name = 'c'");
    assert_names_row(s.campaign("c"), "campaigns", "c", "BOGUS");
    assert_names_row(s.campaigns(), "campaigns", "c", "BOGUS");
    assert_names_row(
        lifecycle::state(&s, "c").map_err(|e| StoreError::Other(e.to_string())),
        "campaigns",
        "c",
        "BOGUS",
    );

    raw(&mut s, "UPDATE executions SET state = 'limbo' WHERE contact_id = 'a'");
    assert_names_row(s.counts("c"), "executions", "a", "limbo");

    raw(&mut s, "UPDATE contacts SET tags = '[not json' WHERE id = 'b'");
    assert_names_row(s.contact(&"b".into()), "contacts", "b", "[not json");
    assert_names_row(s.claim("c", 50, 10, &[], &worker("w")), "contacts", "b", "[not json");
    assert_names_row(s.contacts_page(None, 10), "contacts", "b", "[not json");

    // The breaker's recent outcomes are a string of 0s and 1s; anything else
    // is not "a failure".
    s.set_breaker("c", &BreakerState { consecutive_failures: 1, recent: [true, false].into() }).expect("breaker");
    raw(&mut s, "UPDATE breakers SET recent = '1x0' WHERE campaign = 'c'");
    assert_names_row(s.breaker("c"), "breakers", "c", "1x0");

    // An audit row whose state this flowc does not know.
    raw(&mut s, "UPDATE campaigns SET state = 'DRAFT' WHERE name = 'c'");
    s.set_state("c", State::Draft, State::Scheduled, "launched", 2).expect("state");
    raw(&mut s, "UPDATE campaign_transitions SET to_state = 'LIMBO' WHERE name = 'c'");
    assert_names_row(s.transitions("c", 10), "campaign_transitions", "c", "LIMBO");
}

// ---------------------------------------------------------------------------
// Many workers on one PostgreSQL database: what a shared store adds to the
// contract (claims that never overlap, fenced commits, the balance).

/// `n` contacts enrolled in campaign `k` (launched), all due at 0.
fn shared_campaign(s: &mut dyn Store, n: usize) -> Vec<ContactId> {
    let ids: Vec<ContactId> = (0..n).map(|i| ContactId(format!("c{i:05}"))).collect();
    let records: Vec<ContactRecord> = ids.iter().map(|id| record(id.as_str(), &[])).collect();
    s.upsert_contacts(&records, &[]).expect("contacts");
    s.put_campaign(&CampaignVersion { name: "k", version: "v1", program: b"p", state: State::Running }, 0)
        .expect("campaign");
    let entries: Vec<Enrollment> = ids.iter().map(|id| Enrollment::new(id.clone(), "s".into(), 0)).collect();
    assert_eq!(s.enroll("k", "v1", &entries, 0).expect("enroll"), n as u64);
    ids
}

fn short_lease(name: &str, ttl_ms: i64) -> Lease {
    Lease { worker: WorkerId(name.into()), ttl_ms }
}

#[test]
fn postgres_two_workers_never_claim_the_same_execution() {
    let Some(db) = common::postgres("claims") else { return };
    let ids = shared_campaign(&mut db.connect(), 3000);
    let barrier = std::sync::Barrier::new(2);
    let claimed: Vec<Vec<ContactId>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let (db, barrier) = (&db, &barrier);
                scope.spawn(move || {
                    let mut s = db.connect();
                    let lease = worker(name);
                    let mut mine = Vec::new();
                    barrier.wait();
                    loop {
                        let due = s.claim("k", 10, 50, &[], &lease).expect("claim");
                        if due.is_empty() {
                            return mine;
                        }
                        let round = Round {
                            executions: due
                                .iter()
                                .map(|d| exec(d.contact.id.as_str(), "s", ExecState::Completed, None))
                                .collect(),
                            ..Default::default()
                        };
                        s.commit("k", &round, &lease, 10).expect("commit");
                        mine.extend(due.into_iter().map(|d| d.contact.id));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let (a, b) = (&claimed[0], &claimed[1]);
    assert!(!a.is_empty() && !b.is_empty(), "both workers took work ({} and {})", a.len(), b.len());
    let first: std::collections::HashSet<&ContactId> = a.iter().collect();
    assert!(b.iter().all(|id| !first.contains(id)), "an execution was claimed by both workers");
    let mut all: Vec<ContactId> = a.iter().chain(b).cloned().collect();
    all.sort();
    assert_eq!(all, ids, "every execution claimed exactly once");
    assert_eq!(db.connect().counts("k").expect("counts")[&ExecState::Completed], 3000);
}

#[test]
fn postgres_a_commit_under_a_lapsed_lease_writes_nothing() {
    let Some(db) = common::postgres("lapsed") else { return };
    let mut s = db.connect();
    shared_campaign(&mut s, 3);
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    let slow = short_lease("slow", 50);
    let due = s.claim("k", 10, 10, &[], &slow).expect("claim");
    assert_eq!(due.len(), 3);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let round = Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "w", ExecState::Pending, Some(99))).collect(),
        outbox_new: vec![outbox_row("k", "c00000", "s")],
        steps: [(StepId::from("s"), StepCounts { entered: 3, ..Default::default() })].into_iter().collect(),
        ledger: vec![LedgerEntry { amount_micros: 1_000, reason: "refund".into() }],
        ..Default::default()
    };
    let err = s.commit("k", &round, &slow, 10).expect_err("the lease lapsed");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert!(s.step_counts("k").expect("steps").is_empty(), "no statistics written");
    assert!(s.outbox_pending("k", &worker("other")).expect("outbox").is_empty(), "no send written");
    assert_eq!(s.balance().expect("balance"), 100_000, "no ledger written, nothing reserved");
    // Another worker takes the lapsed work over, and the late commit stays refused.
    let mut other = db.connect();
    assert_eq!(other.claim("k", 10, 10, &[], &worker("fast")).expect("take over").len(), 3);
    let err = s.commit("k", &round, &slow, 10).expect_err("taken over");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    let round = Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "s", ExecState::Completed, None)).collect(),
        ..Default::default()
    };
    other.commit("k", &round, &worker("fast"), 10).expect("the new holder commits");
    assert_eq!(s.counts("k").expect("counts")[&ExecState::Completed], 3);
}

#[test]
fn postgres_a_round_the_balance_cannot_pay_is_refused_whole() {
    let Some(db) = common::postgres("balance") else { return };
    let mut s = db.connect();
    shared_campaign(&mut s, 2);
    // Two sends of 45,000 cost 90,000: the balance pays for one.
    s.ledger_add(50_000, "top-up", 0).expect("fund");
    let w = worker("w");
    let due = s.claim("k", 10, 10, &[], &w).expect("claim");
    let round = |sends: &[&str]| Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "s", ExecState::Completed, None)).collect(),
        outbox_new: sends.iter().map(|c| outbox_row("k", c, "s")).collect(),
        steps: [(StepId::from("s"), StepCounts { entered: 2, ..Default::default() })].into_iter().collect(),
        ..Default::default()
    };
    let err = s.commit("k", &round(&["c00000", "c00001"]), &w, 10).expect_err("not covered");
    assert!(matches!(err, StoreError::InsufficientBalance), "{err}");
    assert_eq!(s.balance().expect("balance"), 50_000, "the balance untouched");
    assert!(s.step_counts("k").expect("steps").is_empty(), "nothing of the round written");
    assert!(s.outbox_pending("k", &worker("other")).expect("outbox").is_empty(), "no send written");
    assert_eq!(s.counts("k").expect("counts")[&ExecState::Completed], 0);
    // The claim still holds: the batch is stepped again on the balance there is.
    assert_eq!(s.claim("k", 10, 10, &[], &w).expect("claim again").len(), 2);
    s.commit("k", &round(&["c00000"]), &w, 10).expect("covered");
    assert_eq!(s.balance().expect("balance"), 5_000, "the price is reserved as the send commits");
    assert_eq!(s.counts("k").expect("counts")[&ExecState::Completed], 2);
    // A send that fails for good gives its price back; one accepted keeps it spent.
    let o = outbox_row("k", "c00000", "s");
    let failed = Round {
        outbox_done: vec![o.outcome(11, SendOutcome::Failed { error: "rejected".into() })],
        ..Default::default()
    };
    s.commit("k", &failed, &w, 11).expect("outcome");
    assert_eq!(s.balance().expect("balance"), 50_000);
}

#[test]
fn postgres_the_balance_never_goes_negative_with_racing_workers() {
    let Some(db) = common::postgres("balance-race") else { return };
    const PRICE: i64 = 45_000;
    const PAID: usize = 37;
    db.connect().ledger_add(PRICE * PAID as i64, "top-up", 0).expect("fund");
    let paid: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let db = &db;
                scope.spawn(move || {
                    let mut s = db.connect();
                    let lease = worker(&format!("w{i}"));
                    let mut paid = 0;
                    for n in 0..20 {
                        let round = Round {
                            outbox_new: vec![outbox_row("k", &format!("w{i}-{n}"), "s")],
                            ..Default::default()
                        };
                        match s.commit("k", &round, &lease, 1) {
                            Ok(()) => paid += 1,
                            Err(StoreError::InsufficientBalance) => {}
                            Err(e) => panic!("{e}"),
                        }
                        assert!(s.balance().expect("balance") >= 0, "the balance went below zero");
                    }
                    paid
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    assert_eq!(paid, PAID, "exactly the sends the balance pays for");
    let mut raw = db.raw();
    let rows: i64 = raw.query_one("SELECT COUNT(*) FROM outbox", &[]).expect("count").get(0);
    assert_eq!((db.connect().balance().expect("balance"), rows), (0, PAID as i64), "one send per paid price");
}

#[test]
fn postgres_the_clock_waits_for_due_and_held_work() {
    let Some(db) = common::postgres("clock") else { return };
    let mut s = db.connect();
    shared_campaign(&mut s, 2);
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    assert!(!s.advance_clock(10, 20).expect("clock"), "executions due at 10");
    let w = worker("w");
    let due = s.claim("k", 10, 10, &[], &w).expect("claim");
    assert!(!s.advance_clock(10, 20).expect("clock"), "a worker holds a live claim");
    let round = Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "w", ExecState::Pending, Some(500))).collect(),
        outbox_new: vec![outbox_row("k", "c00000", "s")],
        ..Default::default()
    };
    s.commit("k", &round, &w, 10).expect("commit");
    assert!(!s.advance_clock(10, 20).expect("clock"), "a send is being relayed under a live lease");
    let o = outbox_row("k", "c00000", "s");
    let done =
        Round { outbox_done: vec![o.outcome(10, SendOutcome::Sent(Engagement::default()))], ..Default::default() };
    s.commit("k", &done, &w, 10).expect("outcome");
    assert!(s.advance_clock(10, 20).expect("clock"), "nothing due at 10 and nothing held");
    assert!(!s.advance_clock(10, 30).expect("clock"), "moved already");
    assert_eq!(s.meta("clock").expect("meta").as_deref(), Some("20"));
}

#[test]
fn postgres_a_send_leased_to_a_live_worker_is_not_relayed_twice() {
    let Some(db) = common::postgres("outbox-lease") else { return };
    let mut s = db.connect();
    shared_campaign(&mut s, 1);
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    let w1 = short_lease("w1", 200);
    let due = s.claim("k", 10, 10, &[], &w1).expect("claim");
    let round = Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "next", ExecState::Pending, Some(99))).collect(),
        outbox_new: vec![outbox_row("k", "c00000", "s")],
        ..Default::default()
    };
    s.commit("k", &round, &w1, 10).expect("commit");
    let mut other = db.connect();
    assert!(other.outbox_pending("k", &worker("w2")).expect("pending").is_empty(), "w1 relays it");
    let o = outbox_row("k", "c00000", "s");
    std::thread::sleep(std::time::Duration::from_millis(400));
    // w1 is gone: its lease lapsed, w2 takes the send over; w1's late outcome is refused.
    assert_eq!(other.outbox_pending("k", &worker("w2")).expect("pending"), vec![o.clone()]);
    let late =
        Round { outbox_done: vec![o.outcome(11, SendOutcome::Sent(Engagement::default()))], ..Default::default() };
    let err = s.commit("k", &late, &w1, 11).expect_err("w2 holds it");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    other.commit("k", &late, &worker("w2"), 11).expect("the holder records it");
    assert_eq!(other.sent_for("k", &[&"c00000".into()]).expect("sent").len(), 1);
}

#[test]
fn postgres_a_newer_schema_is_refused_and_a_bad_url_is_an_error() {
    let Some(db) = common::postgres("schema") else { return };
    drop(db.connect());
    let mut raw = db.raw();
    raw.batch_execute("UPDATE flowc_schema SET version = version + 1").expect("bump");
    let err = flowc::runtime::postgres::PgStore::connect(&db.url).err().expect("refused");
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    let err = flowc::runtime::postgres::PgStore::connect("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .err()
        .expect("nothing listens there");
    assert!(err.to_string().contains("cannot connect to PostgreSQL at nobody@127.0.0.1:1/none"), "{err}");
    let err = flowc::runtime::postgres::PgStore::connect("postgres://x@h/db?sslmode=bogus").err().expect("bad URL");
    assert!(err.to_string().contains("not a PostgreSQL URL"), "{err}");
    // A database holding something else's tables is not taken over.
    let other = common::postgres("foreign").expect("server");
    other.raw().batch_execute("CREATE TABLE invoices (id INT)").expect("foreign table");
    let err = flowc::runtime::postgres::PgStore::connect(&other.url).err().expect("refused");
    assert!(matches!(err, StoreError::Corrupt(_)) && err.to_string().contains("something else"), "{err}");
}

#[test]
fn postgres_one_of_two_racing_state_changes_wins() {
    let Some(db) = common::postgres("state-race") else { return };
    db.connect()
        .put_campaign(&CampaignVersion { name: "c", version: "v1", program: b"p", state: State::Running }, 0)
        .expect("campaign");
    let barrier = std::sync::Barrier::new(4);
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [State::Paused, State::PausedError, State::PausedBalance, State::Completed]
            .into_iter()
            .map(|to| {
                let (db, barrier) = (&db, &barrier);
                scope.spawn(move || {
                    let mut s = db.connect();
                    barrier.wait();
                    s.set_state("c", State::Running, to, "race", 1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::StateChanged { .. })));
    assert_eq!(db.connect().transitions("c", 10).expect("log").len(), 1, "one change recorded");
}

#[test]
fn postgres_a_schema_of_its_own_through_search_path() {
    let Some(db) = common::postgres("search-path") else { return };
    let mut raw = db.raw();
    raw.batch_execute("CREATE TABLE invoices (id INT); CREATE SCHEMA flowc_a; CREATE SCHEMA flowc_b;")
        .expect("schemas");
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let a = format!("{}{sep}options=-csearch_path%3Dflowc_a", db.url);
    let b = format!("{}{sep}options=-csearch_path%3Dflowc_b", db.url);
    let mut first = flowc::runtime::postgres::PgStore::connect(&a).expect("schema a");
    let mut second = flowc::runtime::postgres::PgStore::connect(&b).expect("schema b");
    first.set_meta("who", "a").expect("meta");
    second.set_meta("who", "b").expect("meta");
    assert_eq!(first.meta("who").expect("meta").as_deref(), Some("a"), "two flowc databases in one");
    let tables: i64 = raw
        .query_one("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'flowc_a' AND tablename = 'executions'", &[])
        .expect("count")
        .get(0);
    assert_eq!(tables, 1);
}

/// Enrolling a campaign without an audience, or with one the store can
/// say in SQL, is done in the store and enrolls what contact-by-contact
/// enrollment enrolls; an audience that reads a time is left to the
/// engine's evaluator.
#[test]
fn postgres_enrolls_a_whole_audience_in_the_store() {
    let Some(server) = common::postgres_server() else { return };
    let (everyone, model) = program("campaign c {\n  trigger manual\n  one: send sms.promotional promo\n}\n");
    let (some, _) =
        program("campaign c {\n  trigger manual\n  audience plan == pro\n  one: send sms.promotional promo\n}\n");
    let starts = |s: &dyn Store| s.starts("c", None, 1000).expect("starts");
    let (inside, each) = (common::PgDb::create(&server, "enroll-in"), common::PgDb::create(&server, "enroll-each"));
    let (mut a, mut b) = (inside.connect(), each.connect());
    import(&mut a, &model, 25);
    import(&mut b, &model, 25);
    let entry = StepId::from("one");
    assert_eq!(a.enroll_audience(&everyone, &entry, 7, 5).expect("enroll"), Some(25));
    assert_eq!(a.enroll_audience(&everyone, &entry, 7, 5).expect("again"), Some(0), "at most once");
    assert_eq!(flowc::runtime::run::enroll_each(&mut b, &everyone, 7).expect("each"), 25);
    assert_eq!(starts(&a), starts(&b));
    assert_eq!(a.claim("c", 7, 100, &[], &worker("w")).expect("due").len(), 25, "due at the wake-up");
    let (some_inside, some_each) =
        (common::PgDb::create(&server, "enroll-some-in"), common::PgDb::create(&server, "enroll-some-each"));
    let (mut c, mut d) = (some_inside.connect(), some_each.connect());
    import(&mut c, &model, 25);
    import(&mut d, &model, 25);
    let filtered = c.enroll_audience(&some, &entry, 7, 5).expect("filtered");
    let evaluated = flowc::runtime::run::enroll_each(&mut d, &some, 7).expect("each");
    assert_eq!(filtered, Some(evaluated), "the filter in SQL selects what the evaluator selects");
    assert!(evaluated > 0 && evaluated < 25, "the filter selects some: {evaluated}");
    assert_eq!(starts(&c), starts(&d));
    let (timed, _) = program(
        "campaign c {\n  trigger manual\n  audience created_at > now - 7d\n  one: send sms.promotional promo\n}\n",
    );
    assert_eq!(c.enroll_audience(&timed, &entry, 7, 5).expect("timed"), None, "the engine evaluates times");
}

/// Time does not move past a send whose worker died with it in flight (its
/// lease lapsed, its outcome unknown): the executions that read it would
/// step without it. It moves once the send is taken over and settled. Work
/// of a campaign that is not RUNNING (paused by the breaker, say) does not
/// hold the clock: it waits for the resume.
#[test]
fn postgres_the_clock_waits_for_orphaned_sends_but_not_for_paused_campaigns() {
    let Some(db) = common::postgres("clock-orphan") else { return };
    let mut s = db.connect();
    shared_campaign(&mut s, 1);
    s.ledger_add(100_000, "top-up", 0).expect("fund");
    let dead = short_lease("dead", 50);
    let due = s.claim("k", 10, 10, &[], &dead).expect("claim");
    let round = Round {
        executions: due.iter().map(|d| exec(d.contact.id.as_str(), "next", ExecState::Pending, Some(500))).collect(),
        outbox_new: vec![outbox_row("k", "c00000", "s")],
        ..Default::default()
    };
    s.commit("k", &round, &dead, 10).expect("commit");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!s.advance_clock(10, 20).expect("clock"), "a send in flight whose worker is gone");
    let mut other = db.connect();
    let taken = other.outbox_pending("k", &worker("alive")).expect("take over");
    assert_eq!(taken.len(), 1);
    let done = Round {
        outbox_done: vec![taken[0].outcome(10, SendOutcome::Sent(Engagement::default()))],
        ..Default::default()
    };
    other.commit("k", &done, &worker("alive"), 10).expect("settled");
    assert!(s.advance_clock(10, 20).expect("clock"), "settled: time moves");
    // A paused campaign's due work waits for its resume, not the clock.
    s.enroll("k", "v1", &[Enrollment::new("c00001".into(), "s".into(), 0)], 20).expect("enroll");
    assert!(!s.advance_clock(20, 30).expect("clock"), "due in a RUNNING campaign");
    s.set_state("k", State::Running, State::PausedError, "breaker", 20).expect("pause");
    assert!(s.advance_clock(20, 30).expect("clock"), "due only in a paused campaign");
}
