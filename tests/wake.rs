//! Event-driven wake-ups (issue 18): which executions an event, a tag or an
//! attribute change concerns, and that waking them costs exactly those rows.

mod common;

use flowc::check::model::StepId;
use flowc::compile::program::{
    Cond, Const, EngagementRepr, EventMatch, Exit, FieldDef, FieldSlot, FieldType, Op, Operand, Program, WaitArm,
    WaitOn,
};
use flowc::compile::{self, codec};
use flowc::runtime::facts::{ContactEvent, ContactRecord};
use flowc::runtime::ingest::{self, FaultKind, Incoming};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{CampaignState, ContactId, Enrollment, Steps, Store, TagDelta};
use flowc::runtime::wake::{self, Concern, Interests};
use std::collections::BTreeSet;

const START: i64 = 29_400_000;
const LATER: i64 = START + 10_000;

const SRC: &str = r#"
template hello { channel email message marketing status published }
event order.completed { amount: number }
event page.viewed
contact { plan: enum(free, pro) score: number }
campaign w {
  trigger manual
  hold: wait 3d
  other: wait 1d
  last: send email.marketing hello
}
"#;

fn compiled() -> Program {
    let (analysis, ws) = common::check_source(SRC);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    compile::compile(&model, c, ws.sources.get(c.file))
}

fn slot(p: &mut Program, name: &str, ty: FieldType) -> Operand {
    p.fields.push(FieldDef { name: name.into(), ty, optional: true });
    Operand::Field { slot: FieldSlot(p.fields.len() as u16 - 1) }
}

fn event(name: &str) -> EventMatch {
    EventMatch { event: name.into(), props: vec![], filter: vec![] }
}

/// `w` with `hold` turned into `wait until { when event order.completed {}
/// when tags has "vip" {} timeout 3d {} }`, as the compiler of `wait until`
/// will emit it; `exits` as given.
fn waiting_program(exits: Vec<Exit>) -> Program {
    let mut p = compiled();
    let i = p.nodes.iter().position(|n| n.id.0 == "hold").expect("hold");
    let Op::Wait { next, .. } = p.nodes[i].op.clone() else { panic!("hold is a wait") };
    let tags = slot(&mut p, "tags", FieldType::SetString);
    let arms = vec![
        WaitArm { on: WaitOn::Event { event: event("order.completed") }, target: next },
        WaitArm {
            on: WaitOn::State {
                cond: Cond::Has { set: tags, elem: Operand::Const { value: Const::Str("vip".into()) } },
            },
            target: next,
        },
    ];
    p.nodes[i].op = Op::WaitUntil { arms, timeout_minutes: 3 * 1440, timeout: next };
    p.exits = exits;
    p.version = codec::content_hash(&p);
    p
}

fn steps(ids: &[&str]) -> Concern {
    Concern(ids.iter().map(|s| StepId::from(*s)).collect::<BTreeSet<_>>())
}

#[test]
fn interests_name_the_waiting_steps_and_exits_concern_every_wait_until() {
    let mut p = waiting_program(vec![]);
    let plan = slot(&mut p, "plan", FieldType::Enum(vec!["free".into(), "pro".into()]));
    let consent = Cond::Consent { channel: "sms".into() };
    let exit_cond = Cond::And {
        all: vec![
            Cond::Cmp {
                op: flowc::compile::program::CmpOpRepr::Eq,
                lhs: plan,
                rhs: Operand::Const { value: Const::Enum("pro".into()) },
            },
            consent,
        ],
    };
    p.exits = vec![Exit::Event { event: event("page.viewed") }, Exit::State { cond: exit_cond }];
    // A second wait until at `other`, on engagement and a `happened` inside a state arm.
    let i = p.nodes.iter().position(|n| n.id.0 == "other").expect("other");
    let Op::Wait { next, .. } = p.nodes[i].op.clone() else { panic!("other is a wait") };
    let happened =
        Cond::Happened { event: "order.completed".into(), within_minutes: Some(60), props: vec![], filter: vec![] };
    let opened = Cond::Engaged { kind: EngagementRepr::Opened, step: StepId("last".into()) };
    p.nodes[i].op = Op::WaitUntil {
        arms: vec![WaitArm { on: WaitOn::State { cond: Cond::Or { any: vec![happened, opened] } }, target: next }],
        timeout_minutes: 60,
        timeout: next,
    };
    p.version = codec::content_hash(&p);
    codec::validate(&p).expect("a valid program");

    let i = Interests::of(&p);
    assert_eq!(i.event("order.completed"), Some(&steps(&["hold", "other"])));
    assert_eq!(i.event("message.opened"), Some(&steps(&["other"])));
    assert_eq!(i.event("page.viewed"), Some(&steps(&["hold", "other"])), "an exit event concerns every wait until");
    assert_eq!(i.event("cart.abandoned"), None, "an unrelated event concerns nobody");
    assert_eq!(i.fields(["tags"]), Some(steps(&["hold"])));
    assert_eq!(i.fields(["plan"]), Some(steps(&["hold", "other"])));
    assert_eq!(i.fields(["consent"]), Some(steps(&["hold", "other"])));
    assert_eq!(i.fields(["score"]), None, "nothing reads `score`");
    assert_eq!(i.fields(["score", "tags"]), Some(steps(&["hold"])));
}

/// A store on every backend (SQLite in memory, PostgreSQL when given), each
/// with `p` launched and RUNNING; the PostgreSQL database lives as long as
/// its store is used.
fn stores_with(p: &Program, name: &str) -> Vec<(Box<dyn Store>, Option<common::PgDb>)> {
    codec::validate(p).expect("a valid program");
    let mut out: Vec<(Box<dyn Store>, Option<common::PgDb>)> =
        vec![(Box::new(SqliteStore::open_in_memory().expect("store")), None)];
    if let Some(pg) = common::postgres(name) {
        out.push((Box::new(pg.connect()), Some(pg)));
    }
    for (s, _) in &mut out {
        s.put_campaign(
            &flowc::runtime::store::CampaignVersion {
                name: &p.campaign,
                version: &p.version.0,
                program: &codec::to_binary(p),
                state: CampaignState::Running,
            },
            START,
        )
        .expect("campaign");
    }
    out
}

fn id(i: usize) -> String {
    format!("c{i:05}")
}

fn incoming(contact: &str, name: &str, at: i64) -> Incoming {
    Incoming { contact: contact.into(), event: ContactEvent { name: name.into(), at, props: Default::default() } }
}

/// 20,000 waiting executions, half at the `wait until`; events for 400
/// distinct contacts: the rows touched are exactly the executions waiting
/// at the step whose arm reads the event, each once.
#[test]
fn an_event_wakes_exactly_the_executions_it_concerns() {
    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-1") {
        let n = 20_000;
        let entries: Vec<Enrollment> = (0..n)
            .map(|i| {
                Enrollment::new(
                    id(i).as_str().into(),
                    flowc::check::model::StepId::from(if i % 2 == 0 { "hold" } else { "other" }),
                    LATER,
                )
            })
            .collect();
        assert_eq!(store.enroll("w", &p.version.0, &entries, START).expect("enroll"), n as u64);

        // Unrelated events for everyone touch nothing.
        let unrelated: Vec<Incoming> = (0..n).step_by(50).map(|i| incoming(&id(i), "page.viewed", START + 5)).collect();
        assert_eq!(ingest::store_and_wake(&mut *store, &unrelated).expect("ingest").woken, 0);

        // 400 distinct contacts, each twice (the second event finds it already due).
        let mut events: Vec<Incoming> =
            (0..400).map(|k| incoming(&id(k * 37 % n), "order.completed", START + 10)).collect();
        events.extend((0..400).map(|k| incoming(&id(k * 37 % n), "order.completed", START + 20)));
        let concerned: BTreeSet<usize> = (0..400).map(|k| k * 37 % n).filter(|i| i % 2 == 0).collect();
        let before = wake::touched();
        let woken = ingest::store_and_wake(&mut *store, &events).expect("ingest").woken;
        assert_eq!(woken, concerned.len() as u64);
        assert!(wake::touched() - before >= woken, "the process-wide counter sums every wake-up");
        assert_eq!(store.next_wake("w").expect("next"), Some(START + 10));

        // Waking again at a later time changes nothing: they are already due earlier.
        assert_eq!(ingest::store_and_wake(&mut *store, &events[..400]).expect("again").woken, 0);
    }
}

/// An exit event wakes the contact's execution at any `wait until`, and
/// not one parked after a plain `wait` (or not started yet): stepping it
/// early would skip the rest of its wait. (An execution that had started
/// by the event is completed instead: see the test after; these all start
/// after it.)
#[test]
fn an_exit_event_wakes_every_wait_until_but_not_a_plain_wait() {
    let p = waiting_program(vec![Exit::Event { event: event("page.viewed") }]);
    for (mut store, _db) in stores_with(&p, "wake-2") {
        let entries = vec![
            Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER),
            Enrollment::new("b".into(), flowc::check::model::StepId::from("other"), LATER),
            Enrollment::new("c".into(), flowc::check::model::StepId::from("last"), LATER),
        ];
        store.enroll("w", &p.version.0, &entries, START).expect("enroll");
        let evs = vec![
            incoming("a", "page.viewed", START + 1),
            incoming("b", "page.viewed", START + 1),
            incoming("c", "page.viewed", START + 1),
            incoming("z", "page.viewed", START + 1),
        ];
        assert_eq!(ingest::store_and_wake(&mut *store, &evs).expect("ingest").woken, 1);
        assert_eq!(store.next_wake("w").expect("next"), Some(START + 1));
    }
}

#[test]
fn a_campaign_that_is_not_running_or_paused_is_not_woken() {
    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-3") {
        store
            .enroll(
                "w",
                &p.version.0,
                &[Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER)],
                START,
            )
            .expect("enroll");
        store.set_state("w", CampaignState::Running, CampaignState::Completed, "test", START).expect("state");
        assert_eq!(
            ingest::store_and_wake(&mut *store, &[incoming("a", "order.completed", START + 1)]).expect("ingest").woken,
            0
        );
        store.set_state("w", CampaignState::Completed, CampaignState::Paused, "test", START).expect("state");
        assert_eq!(
            ingest::store_and_wake(&mut *store, &[incoming("a", "order.completed", START + 1)]).expect("ingest").woken,
            1
        );
    }
}

#[test]
fn a_tag_change_of_another_campaign_wakes_the_arm_that_reads_tags() {
    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-4") {
        store
            .enroll(
                "w",
                &p.version.0,
                &[
                    Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER),
                    Enrollment::new("b".into(), flowc::check::model::StepId::from("other"), LATER),
                ],
                START,
            )
            .expect("enroll");
        let deltas = vec![
            TagDelta { contact: "a".into(), add: vec!["vip".into()], remove: vec![] },
            TagDelta { contact: "b".into(), add: vec!["vip".into()], remove: vec![] },
        ];
        assert_eq!(
            wake::tags_changed(&mut *store, "w", &deltas, START + 3).expect("own"),
            0,
            "a campaign's own tag steps do not wake it"
        );
        assert_eq!(wake::tags_changed(&mut *store, "tagger", &deltas, START + 3).expect("other"), 1);
        assert_eq!(store.next_wake("w").expect("next"), Some(START + 3));
    }
}

#[test]
fn the_store_wakes_one_row_by_its_key_and_only_earlier() {
    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-5") {
        store
            .enroll(
                "w",
                &p.version.0,
                &[Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER)],
                START,
            )
            .expect("enroll");
        let (a, nobody) = (ContactId::from("a"), ContactId::from("nobody"));
        let (other, hold) = (StepId::from("other"), StepId::from("hold"));
        assert_eq!(store.wake("w", &a, Steps::Only(&[&other]), START).expect("wake"), 0);
        assert_eq!(store.wake("w", &a, Steps::Only(&[]), START).expect("wake"), 0);
        assert_eq!(store.wake("w", &a, Steps::Only(&[&other, &hold]), START + 5).expect("wake"), 1);
        assert_eq!(store.wake("w", &a, Steps::Any, START + 9).expect("later"), 0);
        assert_eq!(store.wake("w", &a, Steps::Any, START + 1).expect("earlier"), 1);
        assert_eq!(store.wake("w", &nobody, Steps::Any, START).expect("nobody"), 0);
    }
}

#[test]
fn a_contact_change_wakes_what_reads_the_changed_fields() {
    use flowc::runtime::facts::ContactRecord;
    let rec = |tags: &[&str], plan: &str| ContactRecord {
        id: "a".into(),
        attrs: serde_json::json!({"plan": plan}).as_object().cloned().unwrap_or_default(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        consent: vec![],
        capabilities: vec![],
    };
    assert_eq!(wake::changed_fields(Some(&rec(&["x", "y"], "pro")), &rec(&["y", "x"], "pro")), Vec::<String>::new());
    assert_eq!(wake::changed_fields(Some(&rec(&["x"], "pro")), &rec(&["x", "vip"], "free")), vec!["tags", "plan"]);

    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-6") {
        store
            .enroll(
                "w",
                &p.version.0,
                &[Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER)],
                START,
            )
            .expect("enroll");
        let only_plan = vec![(Some(rec(&[], "free")), rec(&[], "pro"))];
        assert_eq!(
            wake::contacts_changed(&mut *store, &only_plan, &[], START).expect("plan"),
            0,
            "nothing waits on `plan`"
        );
        let tagged = vec![(Some(rec(&[], "pro")), rec(&["vip"], "pro"))];
        assert_eq!(wake::contacts_changed(&mut *store, &tagged, &[], START).expect("tags"), 1);
    }
}

#[test]
fn one_check_for_every_way_an_event_comes_in() {
    let (analysis, _) = common::check_source(SRC);
    let schema = flowc::runtime::contacts::Schema::from_model(&analysis.models[0].1);
    let ok = ingest::check(&serde_json::json!({"contact": "a", "name": "order.completed", "at": "2026-11-27T09:00:00Z", "props": {"amount": 3}}), &schema, 5)
        .expect("valid");
    assert_eq!(ok.contact.as_str(), "a");
    let at_now = ingest::check(&serde_json::json!({"contact": "a", "name": "page.viewed"}), &schema, 5).expect("valid");
    assert_eq!(at_now.event.at, 5);
    let fault = |v: serde_json::Value| ingest::check(&v, &schema, 5).expect_err("invalid");
    let f = fault(serde_json::json!({"contact": "a", "name": "order.complete"}));
    assert_eq!((f.kind, f.field), (FaultKind::UnknownEvent, Some("name")));
    assert!(f.message.contains("order.completed"), "did you mean: {}", f.message);
    let f = fault(serde_json::json!({"contact": "a", "name": "order.completed", "props": {"amount": "x"}}));
    assert_eq!((f.kind, f.field), (FaultKind::InvalidEvent, Some("props")));
    let f = fault(serde_json::json!({"contact": "a", "name": "order.completed", "at": "soon"}));
    assert_eq!((f.kind, f.field), (FaultKind::Malformed, Some("at")));
    assert_eq!(fault(serde_json::json!({"name": "page.viewed"})).field, Some("contact"));
    assert_eq!(fault(serde_json::json!({"contact": "a", "name": "page.viewed", "extra": 1})).field, None);
}

/// The replay of `flowc run --events`: only the events whose time has come
/// go in, each once, and a replay started again (after a crash) goes on
/// from the position stored with them.
#[test]
fn a_replay_ingests_due_events_once_and_resumes_where_it_got() {
    use flowc::runtime::ingest::Replay;
    let p = waiting_program(vec![]);
    for (mut store, _db) in stores_with(&p, "wake-7") {
        let entries: Vec<Enrollment> = ["a", "b", "c"]
            .iter()
            .map(|c| Enrollment::new((*c).into(), flowc::check::model::StepId::from("hold"), LATER))
            .collect();
        store.enroll("w", &p.version.0, &entries, START).expect("enroll");
        let timeline = vec![
            incoming("c", "order.completed", START + 30),
            incoming("a", "order.completed", START + 10),
            incoming("b", "order.completed", START + 20),
        ];
        let mut replay = Replay::resume(&*store, "w", timeline.clone()).expect("replay");
        assert_eq!(replay.next_at(), Some(START + 10), "in time order");
        assert_eq!(replay.ingest_due(&mut *store, "w", START + 5).expect("none due").woken, 0);
        assert_eq!(replay.ingest_due(&mut *store, "w", START + 20).expect("two due").woken, 2);
        assert_eq!(
            store.events_for(&[&"a".into(), &"b".into(), &"c".into()]).expect("events").len(),
            2,
            "c's event is still to come"
        );
        assert_eq!(replay.next_at(), Some(START + 30));

        // A new process reads the same file: a and b are not stored or woken again.
        let mut again = Replay::resume(&*store, "w", timeline).expect("resume");
        assert_eq!(again.next_at(), Some(START + 30));
        assert_eq!(again.ingest_due(&mut *store, "w", START + 100).expect("the rest").woken, 1);
        assert_eq!(again.next_at(), None);
        assert_eq!(store.events_for(&[&"a".into(), &"b".into(), &"c".into()]).expect("events").len(), 3);
    }
}

/// `flowc contacts import` replaces contacts: their executions waiting on a
/// field wake in the import's transaction, at the database's clock.
#[test]
fn a_contacts_import_wakes_the_executions_of_its_contacts() {
    let dir = common::TempDir::new("wake-import");
    let db = dir.path("w.db");
    let p = waiting_program(vec![]);
    {
        let mut store = SqliteStore::open(std::path::Path::new(&db)).expect("store");
        store
            .put_campaign(
                &flowc::runtime::store::CampaignVersion {
                    name: "w",
                    version: &p.version.0,
                    program: &codec::to_binary(&p),
                    state: CampaignState::Running,
                },
                START,
            )
            .expect("campaign");
        let entries = vec![
            Enrollment::new("a".into(), flowc::check::model::StepId::from("hold"), LATER),
            Enrollment::new("b".into(), flowc::check::model::StepId::from("other"), LATER),
        ];
        store.enroll("w", &p.version.0, &entries, START).expect("enroll");
        store.set_meta("clock", &(START + 7).to_string()).expect("clock");
    }
    let file = dir.path("c.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"a\", \"tags\": [\"vip\"]}\n{\"id\": \"b\", \"tags\": [\"vip\"]}\n{\"id\": \"z\"}\n",
    )
    .expect("contacts");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["contacts", "import", &file, "--db", &db])
        .output()
        .expect("run flowc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut store = SqliteStore::open(std::path::Path::new(&db)).expect("store");
    assert_eq!(store.next_wake("w").expect("next"), Some(START + 7), "a, waiting on tags, is due now");
    let due: Vec<String> = store
        .claim(
            "w",
            START + 7,
            10,
            &[],
            &flowc::runtime::store::Lease::new(flowc::runtime::store::WorkerId("test".into())),
        )
        .expect("due")
        .into_iter()
        .map(|d| d.contact.id.0)
        .collect();
    assert_eq!(due, vec!["a".to_string()], "b waits at a step that reads no field");
}

/// The interests of a campaign as the compiler of `wait until`, goals and
/// exits emits it: what each wait's arms read, and what the exits read.
#[test]
fn interests_of_a_compiled_wait_until() {
    let src = r#"
template reminder_t { channel email message marketing status published }
template pro_tips { channel email message marketing status published }
event order.completed { amount: number }
event cart.abandoned { cart_value: number }
event page.viewed
contact { plan: enum(free, pro) score: number }
campaign cart {
  trigger manual
  exit when event page.viewed
  exit when tags has "unsubscribed"
  reminder: send email.marketing reminder_t
  hold: wait until {
    when event order.completed where amount > 50 { end }
    when clicked(reminder) { }
    when plan == pro { send email.marketing pro_tips }
    timeout 3d { }
  }
  again: wait until event cart.abandoned timeout 1d
}
"#;
    let (analysis, ws) = common::check_source(src);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    let p = compile::compile(&model, c, ws.sources.get(c.file));
    let i = Interests::of(&p);
    assert_eq!(i.event("order.completed"), Some(&steps(&["hold"])));
    assert_eq!(i.event("message.clicked"), Some(&steps(&["hold"])));
    assert_eq!(i.event("cart.abandoned"), Some(&steps(&["again"])));
    assert_eq!(i.event("page.viewed"), Some(&steps(&["again", "hold"])));
    assert_eq!(i.event("contact.created"), None);
    assert_eq!(i.fields(["plan"]), Some(steps(&["hold"])));
    assert_eq!(i.fields(["tags"]), Some(steps(&["again", "hold"])));
    assert_eq!(i.fields(["score"]), None);
}

/// An exit event completes the contact's pending execution wherever it
/// waits (a plain `wait` too), at the event's time, with the first
/// matching criterion's reason; an execution that started after the event,
/// or whose send is in flight (`processing`), is not touched.
#[test]
fn an_exit_event_completes_pending_executions_but_never_a_send_in_flight() {
    use flowc::runtime::store::{ExecState, Round, WorkerId};
    let p = waiting_program(vec![
        Exit::State { cond: Cond::Const { value: false } },
        Exit::Event { event: event("page.viewed") },
        Exit::Event { event: event("page.viewed") },
    ]);
    for (mut store, _db) in stores_with(&p, "wake-8") {
        let at = |contact: &str, step: &str, wake_at: i64| Enrollment::new(contact.into(), StepId::from(step), wake_at);
        let entries = vec![
            at("plain", "other", START),
            at("until", "hold", START),
            at("busy", "other", START),
            at("new", "last", LATER),
        ];
        store.enroll("w", &p.version.0, &entries, START).expect("enroll");
        let records: Vec<ContactRecord> = ["plain", "until", "busy", "new"]
            .iter()
            .map(|c| ContactRecord { id: ContactId::from(*c), ..Default::default() })
            .collect();
        store.upsert_contacts(&records, &[]).expect("contacts");
        let round = Round { parked: vec![("busy".into(), flowc::runtime::store::Entry::FIRST)], ..Round::default() };
        store.commit("w", &round, &flowc::runtime::store::Lease::new(WorkerId::this_process()), START).expect("claim");
        let evs: Vec<Incoming> = ["plain", "until", "busy", "new", "nobody"]
            .iter()
            .map(|c| incoming(c, "page.viewed", START + 60))
            .collect();
        ingest::store_and_wake(&mut *store, &evs).expect("ingest");
        assert_eq!(store.exit_counts("w").expect("exits"), [("exit:2".to_string(), 2)].into_iter().collect());
        let counts = store.counts("w").expect("counts");
        assert_eq!(counts.get(&ExecState::Completed), Some(&2));
        assert_eq!(counts.get(&ExecState::Processing), Some(&1), "a send in flight is never interrupted");
        assert_eq!(counts.get(&ExecState::Pending), Some(&1), "started after the event");
        assert_eq!(store.next_wake("w").expect("next"), Some(LATER), "the exited ones no longer wake");
    }
}
