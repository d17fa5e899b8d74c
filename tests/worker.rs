//! `flowc worker` and `flowc campaign report`, run as a user runs them:
//! the built binary on a database filled by flowc's own commands — on a
//! SQLite file, and many processes on one PostgreSQL database.

mod common;

use common::{code, flowc, stderr, stdout, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A campaign with every kind of step the runtime persists across: sends
/// (engagement read later), a wait, a branch on an open, an A/B split, a tag.
const FLOW: &str = r#"
template hello { channel email message marketing status published }
template nudge { channel sms message promotional status published }
template offer_a { channel email message marketing status published }
template offer_b { channel email message marketing status published }
contact { plan: enum(free, pro) }
campaign spread {
  trigger manual
  audience plan == pro or tags has "vip"
  hi: send email.marketing hello
  wait 1d
  if opened(hi) {
    tag add "engaged"
  } else {
    send sms.promotional nudge
  }
  ab_test offer {
    variant a 50% { send email.marketing offer_a }
    variant b 50% { send email.marketing offer_b }
  }
}
"#;

fn contacts(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let consent = if i % 7 == 0 { r#"["sms"]"# } else { r#"["email","sms"]"# };
        let plan = if i % 3 == 0 { "free" } else { "pro" };
        let tags = if i % 5 == 0 { r#"["vip"]"# } else { "[]" };
        let phone = if i % 11 == 0 { String::new() } else { format!(",\"phone\":\"+336{i:08}\"") };
        out.push_str(&format!(
            "{{\"id\":\"c{i:06}\",\"email\":\"c{i:06}@example.com\"{phone},\"created_at\":\"2026-11-20T10:00:00Z\",\"consent\":{consent},\"tags\":{tags},\"plan\":\"{plan}\"}}\n"
        ));
    }
    out
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(code(o), 0, "{}", stderr(o));
    stdout(o)
}

/// The report of the same campaign, contacts and seed run by `flowc run`
/// on its own SQLite file: what every other way of running it must equal.
fn reference(dir: &TempDir) -> serde_json::Value {
    reference_paid(dir, "1000")
}

/// `reference` with an opening balance of `balance` EUR.
fn reference_paid(dir: &TempDir, balance: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&reference_run(dir, balance))).expect("report")
}

/// `flowc run` of the reference, whatever its exit (3: the balance paused it).
fn reference_run(dir: &TempDir, balance: &str) -> std::process::Output {
    let balance = format!("--balance={balance}");
    flowc(&[
        "run",
        &dir.path("c.flow"),
        "--db",
        &dir.path("reference.db"),
        "--contacts",
        &dir.path("c.jsonl"),
        "--seed",
        "7",
        "--report",
        "json",
        &balance,
    ])
}

/// Imports, tops up, launches and starts the campaign in `db` (a path or a
/// URL), as an operator does before starting workers.
fn prepare(dir: &TempDir, db: &str) {
    ok(&flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", db, "--schema", &dir.path("c.flow")]));
    ok(&flowc(&["balance", "top-up", "1000", "--db", db]));
    ok(&flowc(&["campaign", "launch", &dir.path("c.flow"), "--db", db]));
    ok(&flowc(&["campaign", "start", "spread", "--db", db]));
}

fn setup(name: &str, n: usize) -> TempDir {
    setup_with(name, FLOW, n)
}

#[test]
fn a_worker_run_to_idle_reports_what_flowc_run_reports() {
    let dir = setup("worker-sqlite", 600);
    let expected = reference(&dir);
    let db = dir.path("w.db");
    prepare(&dir, &db);
    ok(&flowc(&["worker", "--db", &db, "--clock", "virtual", "--until-idle", "--seed", "7"]));
    let got: serde_json::Value =
        serde_json::from_str(&ok(&flowc(&["campaign", "report", "spread", "--db", &db, "--format", "json"])))
            .expect("report");
    assert_eq!(got, expected);
    assert_eq!(expected["state"], "COMPLETED_PARTIAL", "the campaign ran to its end");
}

#[test]
fn campaign_report_prints_the_report_of_flowc_run() {
    let dir = setup("report-sqlite", 200);
    let expected = reference(&dir);
    let got: serde_json::Value = serde_json::from_str(&ok(&flowc(&[
        "campaign",
        "report",
        "spread",
        "--db",
        &dir.path("reference.db"),
        "--format",
        "json",
    ])))
    .expect("report");
    assert_eq!(got, expected);
    let human = ok(&flowc(&["campaign", "report", "spread", "--db", &dir.path("reference.db")]));
    assert!(human.contains("offer"), "{human}");
}

#[test]
fn worker_and_report_refuse_what_they_cannot_do() {
    let dir = setup("worker-refusals", 10);
    let db = dir.path("r.db");
    prepare(&dir, &db);
    let o = flowc(&["worker", "--db", &db, "--concurrency", "2", "--until-idle"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("SQLite file, which has one writer"), "{}", stderr(&o));
    let o = flowc(&["worker", "--db", &db, "--lease", "0"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--lease must be 1 to 3600 seconds"), "{}", stderr(&o));
    let o = flowc(&["campaign", "report", "nope", "--db", &db]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no campaign `nope`"), "{}", stderr(&o));
    // A worker told to run a campaign the database does not hold says so,
    // instead of idling (or, with --until-idle, exiting 0 having done nothing).
    let o = flowc(&["worker", "--db", &db, "--campaign", "nope", "--until-idle"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("no campaign `nope`"), "{}", stderr(&o));
    // Pause and resume name the database asked, as the other commands do.
    for verb in ["pause", "resume"] {
        let o = flowc(&["campaign", verb, "nope", "--db", &db]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("no campaign `nope` in `{db}`")), "{}", stderr(&o));
    }
    let o = flowc(&["campaign", "report", "spread", "--db", &db, "--provider-log", &dir.path("missing.log")]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no provider log"), "{}", stderr(&o));
    // A server that is not there: a clear error, never a hang or a panic.
    let o = flowc(&["campaign", "list", "--db", "postgres://flowc@127.0.0.1:1/none"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("postgres://flowc@127.0.0.1:1/none"), "{}", stderr(&o));
    // With the cause, not only the client's "error connecting to server".
    assert!(stderr(&o).contains("Connection refused"), "{}", stderr(&o));
}

#[test]
fn a_password_in_the_database_url_is_never_printed() {
    let o = flowc(&["campaign", "list", "--db", "postgres://flowc:hunter2@127.0.0.1:1/none"]);
    assert_eq!(code(&o), 2);
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("postgres://flowc:***@127.0.0.1:1/none"), "{}", stderr(&o));
}

// Many processes on one PostgreSQL database: `flowc worker`s killed with
// SIGKILL and restarted, a balance that runs out under four workers, three
// `flowc serve` replicas and one scheduled campaign. Each compares what the
// database and the shared provider log say with what one process on SQLite
// does. They need a server: FLOWC_TEST_POSTGRES (skipped with a message
// without it, a failure under CI).

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("json")
}

fn setup_with(name: &str, flow: &str, n: usize) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.path("c.flow"), flow).expect("flow");
    std::fs::write(dir.path("c.jsonl"), contacts(n)).expect("contacts");
    dir
}

fn prepare_paid(dir: &TempDir, db: &str, balance: &str) {
    ok(&flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", db, "--schema", &dir.path("c.flow")]));
    ok(&flowc(&["balance", "top-up", balance, "--db", db]));
    ok(&flowc(&["campaign", "launch", &dir.path("c.flow"), "--db", db, "--accept-cost"]));
}

fn worker(db: &str, log: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["worker", "--db", db, "--clock", "virtual", "--until-idle", "--seed", "7", "--provider-log", log])
        .args(["--lease", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Waits for `child` to exit by itself, at most `limit`.
fn finish(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("a worker did not finish in {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn outcomes(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut n = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(log).expect("provider log").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("log line");
        *n.entry(v["outcome"].as_str().expect("outcome").to_string()).or_default() += 1;
    }
    n
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn four_workers_two_killed_and_restarted_equal_one_sqlite_run() {
    let Some(pg) = common::postgres("workers_kill") else { return };
    let db = pg.url.clone();
    let n: usize = std::env::var("FLOWC_WORKERS_CONTACTS").ok().and_then(|s| s.parse().ok()).unwrap_or(6_000);
    let dir = setup_with("workers-kill", FLOW, n);
    // Enough money for every send at any size (FLOWC_WORKERS_CONTACTS=200000 is the issue's bar).
    let balance = n.max(1000).to_string();
    let reference = reference_paid(&dir, &balance);
    prepare_paid(&dir, &db, &balance);
    ok(&flowc(&["campaign", "start", "spread", "--db", &db]));
    let log = dir.path("provider.log");
    let mut workers: Vec<Child> = (0..4).map(|_| worker(&db, &log, &["--batch", "200"])).collect();
    let mut seed = std::env::var("FLOWC_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x2545_f491_4f6c_dd1d);
    let mut killed = 0;
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300 + next(&mut seed) % 700));
        for i in [round % 4, (round + 2) % 4] {
            if workers[i].try_wait().expect("wait").is_none() {
                workers[i].kill().expect("SIGKILL");
                let _ = workers[i].wait();
                killed += 1;
            }
            workers[i] = worker(&db, &log, &["--batch", "200"]);
        }
    }
    for w in workers {
        assert!(finish(w, Duration::from_secs(600)).success());
    }
    assert!(killed >= 2, "workers were killed mid-run ({killed})");
    let got = json(&flowc(&["campaign", "report", "spread", "--db", &db, "--provider-log", &log, "--format", "json"]));
    assert_eq!(got["executions"]["pending"], 0);
    assert_eq!(got["executions"]["processing"], 0);
    assert_eq!(outcomes(&log).get("duplicate"), None, "the provider never saw a key twice");
    assert_eq!(got, reference);
}

const ONE_SEND: &str = r#"
template hello { channel email message marketing status published }
contact { plan: enum(free, pro) }
campaign pay {
  trigger manual
  hi: send email.marketing hello
}
"#;

#[test]
fn a_balance_for_k_sends_pays_exactly_k_sends_under_four_workers() {
    let Some(pg) = common::postgres("workers_balance") else { return };
    let db = pg.url.clone();
    let dir = setup_with("workers-balance", ONE_SEND, 3_000);
    // An email costs 0.001 EUR: the balance pays for exactly 1,234 of them.
    prepare_paid(&dir, &db, "1.234");
    ok(&flowc(&["campaign", "start", "pay", "--db", &db]));
    let log = dir.path("provider.log");
    let workers: Vec<Child> = (0..4).map(|_| worker(&db, &log, &["--batch", "50"])).collect();
    for w in workers {
        assert!(finish(w, Duration::from_secs(300)).success());
    }
    let report = json(&flowc(&["campaign", "report", "pay", "--db", &db, "--provider-log", &log, "--format", "json"]));
    assert_eq!(report["state"], "PAUSED_BALANCE");
    assert_eq!(report["steps"][0]["sent"], 1234, "{report}");
    assert_eq!(outcomes(&log).get("accepted"), Some(&1234));
    let balance = json(&flowc(&["balance", "show", "--db", &db, "--format", "json"]));
    assert_eq!(balance["balance"], 0.0, "{balance}");
    // The run never waited, so its virtual clock never moved: the report is
    // still as of the run's time, as `flowc run`'s is, not the wall clock's.
    let o = reference_run(&dir, "1.234");
    // `flowc run` exits 3 when the balance paused the campaign.
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let reference: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("report");
    assert_eq!(reference["state"], "PAUSED_BALANCE");
    assert_eq!(report["clock"], reference["clock"], "{report}");
}

#[test]
fn commands_that_only_read_create_nothing_on_postgres() {
    let Some(pg) = common::postgres("read_only") else { return };
    // Each is refused on an empty database, so none of them created flowc's
    // tables there (the next would then have found them).
    let dir = setup("read-only", 3);
    let flow = dir.path("c.flow");
    for args in [
        &["balance", "show"][..],
        &["campaign", "list"][..],
        &["campaign", "status", "x"][..],
        &["campaign", "report", "x"][..],
        &["estimate", &flow][..],
    ] {
        let o = flowc(&[args, &["--db", &pg.url][..]].concat());
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no database here yet"), "{args:?}: {}", stderr(&o));
    }
    // A database that is not there: the server's own words.
    let gone = match pg.url.split_once('?') {
        Some((base, query)) => format!("{base}_not_there?{query}"),
        None => format!("{}_not_there", pg.url),
    };
    let o = flowc(&["campaign", "list", "--db", &gone]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // A command that writes creates it; then they read it.
    ok(&flowc(&["balance", "top-up", "5", "--db", &pg.url]));
    let balance = json(&flowc(&["balance", "show", "--db", &pg.url, "--format", "json"]));
    assert_eq!(balance["balance"], 5.0, "{balance}");
}

const SCHEDULED: &str = r#"
template hello { channel email message marketing status published }
contact { plan: enum(free, pro) }
campaign dawn {
  trigger scheduled at 2026-12-01 08:00 "Europe/Paris"
  hi: send email.marketing hello
}
"#;

#[test]
fn three_serve_replicas_enroll_a_scheduled_audience_once() {
    let Some(pg) = common::postgres("replicas") else { return };
    let db = pg.url.clone();
    let dir = setup_with("replicas", SCHEDULED, 2_000);
    prepare_paid(&dir, &db, "1000");
    let log = dir.path("provider.log");
    let token = dir.path("token");
    std::fs::write(&token, "a-token-of-sixteen-chars").expect("token");
    let replicas: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_flowc"))
                .args(["serve", "--db", &db, "--listen", "127.0.0.1:0", "--token-file", &token, "--clock", "virtual"])
                .args(["--provider-log", &log, "--lease", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn serve")
        })
        .collect();
    let start = Instant::now();
    let state = loop {
        let s = json(&flowc(&["campaign", "status", "dawn", "--db", &db, "--format", "json"]));
        if s["state"] == "COMPLETED_PARTIAL" || start.elapsed() > Duration::from_secs(180) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for mut r in replicas {
        let _ = r.kill();
        let _ = r.wait();
    }
    // Every seventh contact has no email consent: skipped, not sent.
    assert_eq!(state["state"], "COMPLETED_PARTIAL", "{state}");
    assert_eq!(state["executions"]["completed"], 1_714, "each contact enrolled once: {state}");
    assert_eq!(state["executions"]["skipped"], 286, "{state}");
    let started: Vec<_> =
        state["transitions"].as_array().expect("transitions").iter().filter(|t| t["to"] == "RUNNING").collect();
    assert_eq!(started.len(), 1, "started once: {state}");
    assert_eq!(outcomes(&log).get("accepted"), Some(&1_714));
    assert_eq!(outcomes(&log).get("duplicate"), None);
}

const TWO_SENDS: &str = r#"
template hello { channel email message marketing status published }
template later { channel email message marketing status published }
contact { plan: enum(free, pro) }
campaign slow {
  trigger manual
  hi: send email.marketing hello
  wait 1d
  send email.marketing later
}
"#;

/// `flowc worker` on a virtual clock delivering through the webhook at
/// `url`, under a lease of 1 s.
fn hooked_worker(db: &str, url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["worker", "--db", db, "--clock", "virtual", "--webhook", url, "--lease", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// A worker whose relay takes longer than its lease (a slow provider) keeps
/// its sends: it renews their lease as it goes, so a second worker, whose
/// recovery takes over sends whose lease lapsed, never sends them again.
#[test]
fn a_relay_slower_than_its_lease_is_not_sent_again_by_another_worker() {
    let Some(pg) = common::postgres("slow_relay") else { return };
    let db = pg.url.clone();
    let dir = setup_with("slow-relay", TWO_SENDS, 60);
    prepare_paid(&dir, &db, "100");
    ok(&flowc(&["campaign", "start", "slow", "--db", &db]));
    // Contacts whose consent allows email (every seventh gives sms only).
    let reachable = (0..60).filter(|i| i % 7 != 0).count();
    // 100 ms a message: the first worker's batch of 40 takes 3.4 s to
    // relay, under a lease of 1 s; the wait keeps the campaign running,
    // so the second worker's recovery looks for lapsed sends all along.
    let (url, keys) = common::recording_webhook("200 OK", Duration::from_millis(100));
    let slow = |extra: &[&str]| hooked_worker(&db, &url, extra);
    let first = slow(&["--batch", "40"]);
    let started = Instant::now();
    while keys.lock().expect("keys").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the first worker never sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = slow(&["--batch", "20"]);
    let distinct = || keys.lock().expect("keys").iter().collect::<std::collections::HashSet<_>>().len();
    while distinct() < 2 * reachable {
        assert!(started.elapsed() < Duration::from_secs(90), "not every message was sent: {:?}", keys.lock());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Time for a late duplicate to arrive.
    std::thread::sleep(Duration::from_millis(2_500));
    for mut w in [first, second] {
        let _ = w.kill();
        let _ = w.wait();
    }
    let mut sent = keys.lock().expect("keys").clone();
    let total = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!((sent.len(), total), (2 * reachable, 2 * reachable), "every message sent once");
}

/// A campaign is finished only once its sends are: a worker killed while
/// relaying the last sends of a one-send campaign (its executions already
/// completed) leaves them in flight, and the worker still running neither
/// declares the campaign complete nor stops until it has taken them over
/// and sent them.
#[test]
fn a_campaign_is_not_complete_while_a_dead_workers_sends_are_in_flight() {
    let Some(pg) = common::postgres("in_flight") else { return };
    let db = pg.url.clone();
    let dir = setup_with("in-flight", ONE_SEND, 60);
    prepare_paid(&dir, &db, "100");
    ok(&flowc(&["campaign", "start", "pay", "--db", &db]));
    let reachable = (0..60).filter(|i| i % 7 != 0).count();
    let (url, keys) = common::recording_webhook("200 OK", Duration::from_millis(50));
    let spawn = |extra: &[&str]| hooked_worker(&db, &url, extra);
    let mut first = spawn(&["--batch", "60"]);
    let started = Instant::now();
    while keys.lock().expect("keys").len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first worker never sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = spawn(&["--until-idle"]);
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(finish(second, Duration::from_secs(60)).success());
    let status = json(&flowc(&["campaign", "status", "pay", "--db", &db, "--format", "json"]));
    assert_eq!(status["state"], "COMPLETED_PARTIAL", "{status}");
    // The webhook cannot be asked what it got: the sends the dead worker
    // made but did not record are made again (the receiver deduplicates
    // by key); every reachable contact got its message.
    let distinct: std::collections::HashSet<String> = keys.lock().expect("keys").iter().cloned().collect();
    assert_eq!(distinct.len(), reachable, "every message sent");
}
