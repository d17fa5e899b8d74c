//! Group commit in `flowc serve` (issue 21): API triggers that arrive
//! together are written in one transaction, each answered only after that
//! transaction committed; a failed commit fails every trigger of its group,
//! and a trigger whose own write fails is left out while the rest commit.
//! The service runs in process on a store that fails on demand.

mod common;

use common::TempDir;
use flowc::compile;
use flowc::compile::program::Program;
use flowc::runtime::facts::ContactRecord;
use flowc::runtime::lifecycle::{self, State};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::*;
use flowc::service::{self, runner, store_thread::StoreThread, AppState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const FLOW: &str = "template hello { channel email message transactional status published }\ncampaign by_api {\n  trigger api\n  send email.transactional hello\n}\n";
const TOKEN: &str = "group-commit-token-0123456789";
/// The contact whose trigger's write fails.
const POISON: &str = "poison";

/// What the test turns on and off while the service runs.
#[derive(Default)]
struct Faults {
    fail_commits: AtomicBool,
    /// Transactions begun.
    transactions: AtomicUsize,
}

/// The service's store: SQLite, with the faults above.
struct Faulty {
    inner: SqliteStore,
    faults: Arc<Faults>,
}

impl Store for Faulty {
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
        self.inner.set_state(name, from, to, why, now)
    }
    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<Transition>, StoreError> {
        self.inner.transitions(name, limit)
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_meta(key, value)
    }
    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.inner.delete_meta(key)
    }
    fn balance(&self) -> Result<i64, StoreError> {
        self.inner.balance()
    }
    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError> {
        self.inner.ledger_add(amount_micros, reason, now)
    }
    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[EventOf]) -> Result<(), StoreError> {
        // A write that fails for one contact only: its trigger alone fails.
        if events.iter().any(|e| e.contact.as_str() == POISON) {
            self.inner.upsert_contacts(contacts, events)?;
            return Err(StoreError::Other(format!("injected: cannot write for `{POISON}`")));
        }
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
        self.inner.ensure_initial_balance(micros, now)
    }
    fn events_for(&self, contacts: &[&ContactId]) -> Result<Vec<EventOf>, StoreError> {
        self.inner.events_for(contacts)
    }
    fn sent_for(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<SentOf>, StoreError> {
        self.inner.sent_for(campaign, contacts)
    }
    fn enroll(&mut self, campaign: &str, version: &str, entries: &[Enrollment], now: i64) -> Result<u64, StoreError> {
        self.inner.enroll(campaign, version, entries, now)
    }
    fn enroll_audience(
        &mut self,
        program: &Program,
        step: &StepId,
        wake: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
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
        self.faults.transactions.fetch_add(1, Ordering::SeqCst);
        self.inner.begin()
    }
    fn finish(&mut self, end: TxEnd) -> Result<(), StoreError> {
        if end == TxEnd::Commit {
            if self.faults.fail_commits.load(Ordering::SeqCst) {
                // As a real failed COMMIT: the transaction is left open.
                return Err(StoreError::Other("injected: the commit failed".into()));
            }
            // An answer sent before its commit would be seen here: the
            // commit is slow, and the client reads the database meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.inner.finish(end)
    }
    fn auto_reload(&self) -> Result<Option<AutoReload>, StoreError> {
        self.inner.auto_reload()
    }
    fn set_auto_reload(&mut self, setting: Option<AutoReload>) -> Result<(), StoreError> {
        self.inner.set_auto_reload(setting)
    }
    fn probe_pending(&self, campaign: &str) -> Result<bool, StoreError> {
        self.inner.probe_pending(campaign)
    }
    fn set_probe(&mut self, campaign: &str, pending: Probe) -> Result<(), StoreError> {
        self.inner.set_probe(campaign, pending)
    }
    fn breaker(&self, campaign: &str) -> Result<BreakerState, StoreError> {
        self.inner.breaker(campaign)
    }
    fn rate_next_free(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        self.inner.rate_next_free(campaign)
    }
    fn set_breaker(&mut self, campaign: &str, state: &BreakerState) -> Result<(), StoreError> {
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
        self.inner.claim(campaign, now, limit, fields, lease)
    }
    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        self.inner.next_wake(campaign)
    }
    fn commit(&mut self, campaign: &str, round: &Round, worker: &Lease, now: i64) -> Result<(), StoreError> {
        self.inner.commit(campaign, round, worker, now)
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
        self.inner.migrate_executions(migration, now)
    }
    fn requeue_processing(&mut self, campaign: &str, lease: &Lease) -> Result<u64, StoreError> {
        self.inner.requeue_processing(campaign, lease)
    }
    fn advance_clock(&mut self, from: i64, to: i64) -> Result<bool, StoreError> {
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
        self.inner.wake(campaign, contact, steps, at)
    }
    fn exit(&mut self, campaign: &str, contact: &ContactId, reason: &str, at: i64) -> Result<u64, StoreError> {
        self.inner.exit(campaign, contact, reason, at)
    }
}

fn program() -> Program {
    let (analysis, ws) = common::check_source(FLOW);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    compile::compile(model, c, ws.sources.get(c.file))
}

/// A database with `n` contacts (`c0` …, and `poison`) and the API campaign launched.
fn database(dir: &TempDir, n: usize) -> std::path::PathBuf {
    let db = dir.0.join("g.db");
    let mut store = SqliteStore::open(&db).expect("store");
    let contacts: Vec<ContactRecord> = (0..n)
        .map(|i| format!("c{i}"))
        .chain([POISON.to_string()])
        .map(|id| {
            let mut attrs = serde_json::Map::new();
            attrs.insert("email".into(), serde_json::Value::String(format!("{id}@example.com")));
            ContactRecord { id: ContactId(id), attrs, consent: vec!["email".into()], ..Default::default() }
        })
        .collect();
    store.upsert_contacts(&contacts, &[]).expect("contacts");
    store.ledger_add(1_000_000_000, "test", 0).expect("balance");
    lifecycle::launch(&mut store, &program(), lifecycle::RemovedSteps::Refuse, 0).expect("launch");
    db
}

/// The service on a loopback port, its store wrapped in `Faulty`.
struct Service {
    base: String,
    state: Arc<AppState>,
    faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
}

impl Service {
    fn start(db: &Path) -> Service {
        let faults = Arc::new(Faults::default());
        let store = Faulty { inner: SqliteStore::open(db).expect("store"), faults: faults.clone() };
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(AppState {
            store: StoreThread::start(Box::new(store)).expect("store thread"),
            token: TOKEN.into(),
            clock: runner::SharedClock::real(),
            stop: stop.clone(),
        });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let until = stop.clone();
        rt.spawn(service::serve(listener, service::router(state.clone()), async move {
            while !until.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }));
        Service { base, state, faults, stop, rt }
    }

    /// Triggers each of `ids` in its own request, all at once; the status
    /// and body of each, and whether its contact was enrolled in the
    /// database when the answer came.
    fn trigger_all(&self, db: &Path, ids: &[String]) -> Vec<(u16, serde_json::Value, bool)> {
        let threads: Vec<_> = ids
            .iter()
            .map(|id| {
                let (url, id, db) = (format!("{}/v1/campaigns/by_api/trigger", self.base), id.clone(), db.to_path_buf());
                std::thread::spawn(move || {
                    let r = ureq::post(&url)
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .send_string(&format!("{{\"contacts\": [\"{id}\"]}}"));
                    let (status, body) = match r {
                        Ok(res) => (res.status(), res.into_string().expect("body")),
                        Err(ureq::Error::Status(s, res)) => (s, res.into_string().expect("body")),
                        Err(e) => panic!("{e}"),
                    };
                    (status, serde_json::from_str(&body).expect("json"), enrolled(&db, &id))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("client")).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether `id` has an execution of `by_api`, read through a connection of
/// its own: only what is committed.
fn enrolled(db: &Path, id: &str) -> bool {
    let store = SqliteStore::open_as(db, flowc::runtime::sqlite::OpenMode::ReadOnly).expect("reader");
    !store.enrolled("by_api", &[&ContactId(id.into())]).expect("enrolled").is_empty()
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("c{i}")).collect()
}

/// Triggers `ids` while the store thread is busy with a job that waits
/// until all of them are queued behind it, so they form one group.
fn queued(service: &Service, db: &Path, ids: &[String]) -> Vec<(u16, serde_json::Value, bool)> {
    let (state, n) = (service.state.clone(), ids.len());
    let (held, holding) = std::sync::mpsc::channel();
    let blocker = service.rt.spawn(async move {
        let waiting = state.clone();
        state
            .store
            .run(move |_| {
                let _ = held.send(());
                // Not a timing assumption: it waits for the queue to fill
                // (the bound only keeps a broken service from hanging the test).
                let start = std::time::Instant::now();
                while waiting.store.queued() < n && start.elapsed() < std::time::Duration::from_secs(60) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
            .await
    });
    holding.recv().expect("the store thread took the blocker");
    let answers = service.trigger_all(db, ids);
    assert!(service.rt.block_on(blocker).expect("blocker").is_ok());
    answers
}

#[test]
fn concurrent_triggers_share_a_transaction_and_are_answered_after_it_committed() {
    let dir = TempDir::new("group-commit");
    let db = database(&dir, 40);
    let service = Service::start(&db);
    let asked = ids(0..40);
    let before = service.faults.transactions.load(Ordering::SeqCst);
    let answers = queued(&service, &db, &asked);
    for (status, body, seen) in &answers {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["enrolled"], 1, "{body}");
        assert!(seen, "a 202 came before its enrollment was committed");
    }
    let transactions = service.faults.transactions.load(Ordering::SeqCst) - before;
    assert_eq!(transactions, 1, "{transactions} transactions for {} triggers", asked.len());
    drop(service);
    let store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 40);
}

#[test]
fn a_failed_commit_fails_every_trigger_of_its_group_and_enrolls_nobody() {
    let dir = TempDir::new("group-commit-fails");
    let db = database(&dir, 30);
    let service = Service::start(&db);
    service.faults.fail_commits.store(true, Ordering::SeqCst);
    let asked = ids(0..30);
    for (status, body, seen) in queued(&service, &db, &asked) {
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("the commit failed")), "{body}");
        assert!(!seen);
    }
    // The transaction of the failed commit was ended: the service goes on.
    service.faults.fail_commits.store(false, Ordering::SeqCst);
    for (status, body, seen) in queued(&service, &db, &asked) {
        assert_eq!((status, seen), (202, true), "{body}");
        assert_eq!(body["enrolled"], 1, "{body}");
    }
    drop(service);
    let store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 30);
    let triggered = store.events_for(&asked.iter().map(|i| ContactId(i.clone())).collect::<Vec<_>>().iter().collect::<Vec<_>>());
    assert_eq!(triggered.expect("events").len(), 30, "one `campaign.triggered` each, none from the failed commits");
}

#[test]
fn a_trigger_whose_write_fails_is_left_out_and_its_group_commits() {
    let dir = TempDir::new("group-commit-one-fails");
    let db = database(&dir, 20);
    let service = Service::start(&db);
    let mut asked = ids(0..20);
    asked.insert(7, POISON.to_string());
    let answers = queued(&service, &db, &asked);
    // The group, rolled back when the poisoned trigger failed; then the
    // others again, committed.
    assert_eq!(service.faults.transactions.load(Ordering::SeqCst), 2);
    for (id, (status, body, seen)) in asked.iter().zip(&answers) {
        if id == POISON {
            assert_eq!((*status, *seen), (500, false), "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("cannot write")), "{body}");
        } else {
            assert_eq!((*status, *seen), (202, true), "{id}: {body}");
        }
    }
    drop(service);
    let store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 20);
    assert!(store.events_for(&[&ContactId(POISON.into())]).expect("events").is_empty());
}
