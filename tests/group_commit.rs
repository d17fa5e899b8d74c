//! Group commit in `flowc serve` (issue 21): API triggers that arrive
//! together are written in one transaction, each answered only after that
//! transaction committed; a failed commit fails every trigger of its group,
//! and a trigger whose own write fails is left out while the rest commit.
//! The service runs in process; faults are SQLite TEMP triggers on its
//! store's own connection.

mod common;

use common::TempDir;
use flowc::compile;
use flowc::compile::program::Program;
use flowc::runtime::facts::ContactRecord;
use flowc::runtime::lifecycle;
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{ContactId, Store};
use flowc::service::{self, runner, store_thread::StoreThread, AppState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const FLOW: &str = "template hello { channel email message transactional status published }\ncampaign by_api {\n  trigger api\n  send email.transactional hello\n}\n";
const TOKEN: &str = "group-commit-token-0123456789";
/// The contact whose trigger's write fails.
const POISON: &str = "poison";

/// The `meta` key that, set to `1`, makes every commit that enrolled
/// contact `c0` fail.
const FAIL_WITH_C0: &str = "test.fail_commits_with_c0";

/// Faults injected into the service's own SQLite connection, as TEMP
/// objects (the database file is untouched, and no `Store` wrapper is
/// needed, so the test does not follow the trait's shape): a trigger for
/// `poison` cannot be written, and while `FAIL_WITH_C0` is set a transaction
/// that enrolled `c0` breaks a deferred foreign key, which SQLite checks at
/// COMMIT: the commit fails and leaves the transaction open, as a real
/// failed commit does. The service's SQLite store enrolls an API trigger
/// by queueing it (`trigger_inbox`, drained by the campaign's next batch),
/// so the faults are on that table.
fn inject_faults(store: &mut SqliteStore) {
    let sql = format!(
        "CREATE TEMP TABLE fault_parent (id INTEGER PRIMARY KEY);
         CREATE TEMP TABLE fault_child (parent INTEGER REFERENCES fault_parent(id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TEMP TRIGGER poison_write BEFORE INSERT ON main.trigger_inbox
           WHEN NEW.contact_id = '{POISON}'
           BEGIN SELECT RAISE(ABORT, 'injected: cannot write for `{POISON}`'); END;
         CREATE TEMP TRIGGER failing_commit AFTER INSERT ON main.trigger_inbox
           WHEN NEW.contact_id = 'c0' AND EXISTS (SELECT 1 FROM main.meta WHERE key = '{FAIL_WITH_C0}' AND value = '1')
           BEGIN INSERT INTO fault_child VALUES (42); END;"
    );
    store.connection().execute_batch(&sql).expect("faults");
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

/// The service on a loopback port, on a store with the injected faults.
struct Service {
    base: String,
    state: Arc<AppState>,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Runtime,
}

impl Service {
    fn start(db: &Path) -> Service {
        let mut store = SqliteStore::open(db).expect("store");
        inject_faults(&mut store);
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
        Service { base, state, stop, rt }
    }

    /// Sets `FAIL_WITH_C0` through the service's own store.
    fn fail_commits_with_c0(&self, on: &str) {
        let state = self.state.clone();
        let on = on.to_string();
        let set = self.rt.block_on(async move { state.store.run(move |s| s.set_meta(FAIL_WITH_C0, &on)).await });
        set.expect("store thread").expect("meta");
    }

    /// Triggers each of `ids` in its own request, all at once; the status
    /// and body of each, and whether its contact was enrolled in the
    /// database when the answer came.
    fn trigger_all(&self, db: &Path, ids: &[String]) -> Vec<(u16, serde_json::Value, bool)> {
        let threads: Vec<_> = ids
            .iter()
            .map(|id| {
                let (url, id, db) =
                    (format!("{}/v1/campaigns/by_api/trigger", self.base), id.clone(), db.to_path_buf());
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
    for (status, body, seen) in queued(&service, &db, &asked) {
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["enrolled"], 1, "{body}");
        assert!(seen, "a 202 came before its enrollment was committed");
    }
    drop(service);
    let store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 40);
}

#[test]
fn a_failed_commit_fails_every_trigger_of_its_group_and_enrolls_nobody() {
    let dir = TempDir::new("group-commit-fails");
    let db = database(&dir, 30);
    let service = Service::start(&db);
    // Only `c0`'s enrollment breaks the commit: that all thirty fail shows
    // they shared its transaction.
    service.fail_commits_with_c0("1");
    let asked = ids(0..30);
    for (status, body, seen) in queued(&service, &db, &asked) {
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("FOREIGN KEY")), "{body}");
        assert!(!seen);
    }
    // The transaction of the failed commit was ended: the service goes on.
    service.fail_commits_with_c0("0");
    for (status, body, seen) in queued(&service, &db, &asked) {
        assert_eq!((status, seen), (202, true), "{body}");
        assert_eq!(body["enrolled"], 1, "{body}");
    }
    drop(service);
    let mut store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 30);
    // What the campaign's next batch does first.
    assert_eq!(store.drain_triggered("by_api", usize::MAX, 0).expect("drain"), 30);
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 30);
    let named: Vec<ContactId> = asked.iter().map(|i| ContactId(i.clone())).collect();
    let triggered = store.events_for(&named.iter().collect::<Vec<_>>()).expect("events");
    assert_eq!(triggered.len(), 30, "one `campaign.triggered` each, none from the failed commits");
}

#[test]
fn a_trigger_whose_write_fails_is_left_out_and_its_group_commits() {
    let dir = TempDir::new("group-commit-one-fails");
    let db = database(&dir, 20);
    let service = Service::start(&db);
    let mut asked = ids(0..20);
    asked.insert(7, POISON.to_string());
    let answers = queued(&service, &db, &asked);
    for (id, (status, body, seen)) in asked.iter().zip(&answers) {
        if id == POISON {
            assert_eq!((*status, *seen), (500, false), "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("cannot write")), "{body}");
        } else {
            assert_eq!((*status, *seen), (202, true), "{id}: {body}");
        }
    }
    drop(service);
    let mut store = SqliteStore::open(&db).expect("store");
    assert_eq!(store.counts("by_api").expect("counts").values().sum::<u64>(), 20);
    assert_eq!(store.drain_triggered("by_api", usize::MAX, 0).expect("drain"), 20);
    assert!(store.events_for(&[&ContactId(POISON.into())]).expect("events").is_empty());
}
