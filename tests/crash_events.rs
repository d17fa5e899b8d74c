//! The crash test of `flowc run --events` (issue 18): a run replaying an
//! event timeline is SIGKILLed at random moments and restarted; the result
//! must equal an uninterrupted run, with every event stored exactly once
//! and the replay's position at the end of the file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const FLOW: &str = r#"
template hello { channel email message marketing status published }
event order.completed { amount: number }
contact { plan: enum(free, pro) }
campaign replay {
  trigger manual
  hello_step: send email.marketing hello
  wait 1d
  if happened order.completed within 1d {
    first_day: tag add "bought-1"
  }
  wait 1d
  if happened order.completed within 1d {
    second_day: tag add "bought-2"
  }
}
"#;

const CONTACTS: usize = 4000;
const EVENTS: usize = 6000;

fn run_args(dir: &Path, db: &str) -> Vec<String> {
    let flow = dir.join("c.flow").to_string_lossy().into_owned();
    let args =
        ["run", &flow, "--db", db, "--contacts", "c.jsonl", "--events", "e.jsonl", "--start", "2026-11-27T09:00:00Z"];
    args.iter()
        .map(|s| s.to_string())
        .chain(["--seed", "3", "--report", "json", "--batch", "200"].map(String::from))
        .collect()
}

fn flowc(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
    c.current_dir(dir).stdin(Stdio::null()).stderr(Stdio::null());
    c
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn sigkill_mid_replay_then_finish_equals_an_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("flowc-crash-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("c.flow"), FLOW).expect("flow");
    let contacts: String = (0..CONTACTS)
        .map(|i| format!("{{\"id\":\"c{i:05}\",\"email\":\"c{i:05}@example.com\",\"created_at\":\"2026-11-20T10:00:00Z\",\"consent\":[\"email\"],\"plan\":\"free\"}}\n"))
        .collect();
    std::fs::write(dir.join("c.jsonl"), contacts).expect("contacts");
    // Events from a day before the start to three days after, at many distinct minutes.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T09:00:00Z").expect("start");
    let events: String = (0..EVENTS)
        .map(|k| {
            let contact = next(&mut seed) % CONTACTS as u64;
            let minute = (next(&mut seed) % (4 * 1440)) as i64 - 1440;
            let at = (start + chrono::TimeDelta::minutes(minute)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!("{{\"contact\":\"c{contact:05}\",\"name\":\"order.completed\",\"at\":\"{at}\",\"props\":{{\"amount\":{k}}}}}\n")
        })
        .collect();
    std::fs::write(dir.join("e.jsonl"), events).expect("events");

    let straight = flowc(&dir).args(run_args(&dir, "straight.db")).output().expect("run");
    assert!(straight.status.success());
    let expected: serde_json::Value = serde_json::from_slice(&straight.stdout).expect("report");
    assert!(
        expected["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == "second_day" && s["entered"].as_u64() > Some(0))),
        "{expected}"
    );

    let mut killed = 0;
    for _ in 0..8 {
        let mut child = flowc(&dir).args(run_args(&dir, "crashed.db")).stdout(Stdio::null()).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(60 + next(&mut seed) % 240));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed >= 4, "most runs were killed mid-way ({killed})");
    let last = flowc(&dir).args(run_args(&dir, "crashed.db")).output().expect("final run");
    assert!(last.status.success());
    let got: serde_json::Value = serde_json::from_slice(&last.stdout).expect("report");
    for key in ["state", "executions", "steps", "ab_tests", "cost", "balance", "provider", "version"] {
        assert_eq!(got[key], expected[key], "{key} differs after {killed} kills");
    }
    // Every event is stored once, and the replay got to the end of the file.
    for db in ["straight.db", "crashed.db"] {
        let conn = rusqlite::Connection::open(dir.join(db)).expect("db");
        let stored: i64 = conn
            .query_row("SELECT COUNT(*) FROM contact_events WHERE name = 'order.completed'", [], |r| r.get(0))
            .expect("events");
        assert_eq!(stored as usize, EVENTS, "{db}");
        let position: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'replay/replay'", [], |r| r.get(0)).expect("position");
        assert_eq!(position, EVENTS.to_string(), "{db}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
