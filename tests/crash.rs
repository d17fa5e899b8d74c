//! The crash test: `flowc run` on 20,000 contacts, SIGKILLed at random
//! moments ten times and restarted; the result must equal an uninterrupted
//! run, with no lost contact and no duplicate delivery.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const FLOW: &str = r#"
template hello { channel email message marketing status published }
template promo { channel sms message promotional status published }
template rich { channel rcs message promotional status published }
contact { plan: enum(free, pro) }
campaign crash {
  trigger manual
  hello_step: send email.marketing hello
  wait 1d
  if opened(hello_step) or plan == pro {
    ab_test t {
      variant a 60% { send rcs.promotional rich fallback sms.promotional promo }
      variant b 40% { wait 2h send sms.promotional promo }
    }
  }
  tag add "done"
}
"#;

fn run_args(dir: &Path, db: &str) -> Vec<String> {
    [
        "run",
        "c.flow",
        "--db",
        db,
        "--contacts",
        "c.jsonl",
        "--start",
        "2026-11-27T09:00:00Z",
        "--seed",
        "3",
        "--report",
        "json",
        "--batch",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(format!("--balance={}", 1000)))
    .collect::<Vec<_>>()
    .into_iter()
    .map(|s| if s == "c.flow" { dir.join("c.flow").to_string_lossy().into_owned() } else { s })
    .collect()
}

fn flowc(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
    c.current_dir(dir).stdin(Stdio::null()).stderr(Stdio::null());
    c
}

/// A small deterministic generator for the kill moments.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// What the books say after a run: the ledger's sum, the prices of the
/// sends marked sent, and how many were sent.
struct Books {
    ledger: i64,
    spent: i64,
    delivered: i64,
}

fn sqlite_books(path: &Path) -> Books {
    let conn = rusqlite::Connection::open(path).expect("db");
    let ledger: i64 = conn.query_row("SELECT SUM(amount_micros) FROM ledger", [], |r| r.get(0)).expect("ledger");
    let (delivered, spent): (i64, i64) = conn
        .query_row("SELECT COUNT(*), COALESCE(SUM(price_micros), 0) FROM outbox WHERE status = 'sent'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("spent");
    Books { ledger, spent, delivered }
}

fn postgres_books(url: &str) -> Books {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let ledger: i64 = c.query_one("SELECT SUM(amount_micros)::BIGINT FROM ledger", &[]).expect("ledger").get(0);
    let row = c
        .query_one("SELECT COUNT(*), COALESCE(SUM(price_micros), 0)::BIGINT FROM outbox WHERE status = 'sent'", &[])
        .expect("spent");
    Books { ledger, spent: row.get(1), delivered: row.get(0) }
}

fn crash_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flowc-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("c.flow"), FLOW).expect("flow");
    let mut contacts = String::new();
    for i in 0..20_000 {
        let consent = if i % 7 == 0 { r#"["sms"]"# } else { r#"["email","sms"]"# };
        let caps = if i % 2 == 1 { r#"["rcs"]"# } else { "[]" };
        let plan = if i % 3 == 0 { "pro" } else { "free" };
        contacts.push_str(&format!(
            "{{\"id\":\"c{i:05}\",\"email\":\"c{i:05}@example.com\",\"phone\":\"+336{i:08}\",\"created_at\":\"2026-11-20T10:00:00Z\",\"consent\":{consent},\"capabilities\":{caps},\"plan\":\"{plan}\"}}\n"
        ));
    }
    std::fs::write(dir.join("c.jsonl"), contacts).expect("contacts");
    dir
}

/// `flowc run` on `db` (with `extra` arguments) SIGKILLed at random moments
/// ten times, then run to the end: the report must equal an uninterrupted
/// run on SQLite, every contact terminal, nothing delivered twice, the
/// ledger debited exactly the delivered prices.
fn sigkill_ten_times(dir: &Path, db: &str, extra: &[&str], books: impl Fn() -> Books) {
    let straight = flowc(dir).args(run_args(dir, "straight.db")).output().expect("run");
    assert!(straight.status.success());
    let expected: serde_json::Value = serde_json::from_slice(&straight.stdout).expect("report");

    // FLOWC_CRASH_SEED varies the kill moments for stress runs.
    let mut seed =
        std::env::var("FLOWC_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut killed = 0;
    for _ in 0..10 {
        let mut child = flowc(dir).args(run_args(dir, db)).args(extra).stdout(Stdio::null()).spawn().expect("spawn");
        let ms = 40 + next(&mut seed) % 160;
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed >= 5, "most runs were killed mid-way ({killed})");
    let last = flowc(dir).args(run_args(dir, db)).args(extra).output().expect("final run");
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
    let got: serde_json::Value = serde_json::from_slice(&last.stdout).expect("report");

    // Every contact finished in exactly one terminal state.
    let ex = &got["executions"];
    let terminal = ex["completed"].as_u64().unwrap_or(0)
        + ex["failed"].as_u64().unwrap_or(0)
        + ex["skipped"].as_u64().unwrap_or(0);
    assert_eq!(terminal, 20_000, "{ex}");
    assert_eq!(ex["pending"], 0);
    assert_eq!(ex["processing"], 0);
    // The provider delivered each (contact, step) once and never saw a duplicate.
    assert_eq!(got["provider"]["duplicates"], 0, "{}", got["provider"]);
    // The ledger equals the opening balance minus the prices of delivered sends.
    let b = books();
    assert_eq!(b.ledger, 1_000_000_000 - b.spent);
    assert_eq!(got["provider"]["deliveries"].as_i64(), Some(b.delivered));
    // And the whole report equals the uninterrupted run's.
    for key in ["state", "executions", "steps", "ab_tests", "cost", "balance", "provider", "version"] {
        assert_eq!(got[key], expected[key], "{key} differs after {killed} kills");
    }
}

#[test]
fn sigkill_ten_times_then_finish_equals_an_uninterrupted_run() {
    let dir = crash_dir("sqlite");
    sigkill_ten_times(&dir, "crashed.db", &[], || sqlite_books(&dir.join("crashed.db")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on PostgreSQL: a killed run's claims lapse after `--lease 1`
/// and the next run takes them over; the simulated provider's log beside
/// the working folder is the one every run appends to.
#[test]
fn sigkill_ten_times_on_postgres_equals_an_uninterrupted_sqlite_run() {
    let Some(pg) = common::postgres("crash") else { return };
    let dir = crash_dir("pg");
    sigkill_ten_times(&dir, &pg.url, &["--lease", "1"], || postgres_books(&pg.url));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two `flowc run` on one new database, started together, twenty times:
/// one runs, the other is refused before it touches anything ("locked by
/// another flowc process", non-zero exit). Whatever the interleaving, the
/// provider never receives a message twice and the ledger is debited
/// exactly the prices of the delivered messages.
#[test]
fn two_runs_on_one_database_never_deliver_or_bill_twice() {
    let dir = std::env::temp_dir().join(format!("flowc-conc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("c.flow"), FLOW).expect("flow");
    let contacts: String = (0..200)
        .map(|i| format!("{{\"id\":\"c{i:03}\",\"created_at\":\"2026-11-20T10:00:00Z\",\"consent\":[\"email\",\"sms\"],\"capabilities\":[\"rcs\"],\"plan\":\"pro\"}}\n"))
        .collect();
    std::fs::write(dir.join("c.jsonl"), contacts).expect("contacts");
    let mut refused = 0;
    for trial in 0..20 {
        let db = format!("conc-{trial}.db");
        let spawn = || {
            flowc(&dir).args(run_args(&dir, &db)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().expect("wait"), b.wait_with_output().expect("wait")];
        let failed: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
        for o in &failed {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("locked by another flowc process"),
                "trial {trial}: the loser must be refused as locked: {err}"
            );
        }
        assert!(failed.len() < 2, "trial {trial}: one of the two runs finishes");
        refused += failed.len();

        // The provider's own log: each key delivered once, nothing received twice.
        let log = std::fs::read_to_string(dir.join(format!("{db}.provider.log"))).expect("provider log");
        let mut delivered = std::collections::HashSet::new();
        for line in log.lines() {
            let entry: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("trial {trial}: not a log record ({e}): {line}"));
            assert_eq!(entry["outcome"], "accepted", "trial {trial}: the provider received a message again: {line}");
            let key = entry["idempotency_key"].as_str().map(str::to_string);
            assert!(delivered.insert(key), "trial {trial}: delivered twice: {line}");
        }
        let conn = rusqlite::Connection::open(dir.join(&db)).expect("db");
        let debits: i64 = conn
            .query_row("SELECT -COALESCE(SUM(amount_micros), 0) FROM ledger WHERE amount_micros < 0", [], |r| r.get(0))
            .expect("debits");
        let (sent, prices): (i64, i64) = conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(price_micros), 0) FROM outbox WHERE status = 'sent'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("sent");
        assert_eq!(debits, prices, "trial {trial}: the ledger is debited the delivered prices once");
        assert_eq!(sent as usize, delivered.len(), "trial {trial}");
        let credits: i64 = conn
            .query_row("SELECT COUNT(*) FROM ledger WHERE reason = 'initial balance'", [], |r| r.get(0))
            .expect("credits");
        assert_eq!(credits, 1, "trial {trial}: one opening balance");
    }
    // Started together, the two overlap nearly always; a run that started
    // after the other finished resumes the finished campaign instead.
    assert!(refused >= 10, "only {refused} of 20 trials had a refused second run");
    let _ = std::fs::remove_dir_all(&dir);
}
