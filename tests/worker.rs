//! `flowc worker` and `flowc campaign report`, run as a user runs them:
//! the built binary on a database filled by flowc's own commands.

mod common;

use common::{code, flowc, stderr, stdout, TempDir};

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

pub fn contacts(n: usize) -> String {
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
    let o = flowc(&[
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
    ]);
    serde_json::from_str(&ok(&o)).expect("report")
}

/// Imports, tops up, launches and starts the campaign in `db` (a path or a
/// URL), as an operator does before starting workers.
pub fn prepare(dir: &TempDir, db: &str) {
    ok(&flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", db, "--schema", &dir.path("c.flow")]));
    ok(&flowc(&["balance", "top-up", "1000", "--db", db]));
    ok(&flowc(&["campaign", "launch", &dir.path("c.flow"), "--db", db]));
    ok(&flowc(&["campaign", "start", "spread", "--db", db]));
}

fn setup(name: &str, n: usize) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.path("c.flow"), FLOW).expect("flow");
    std::fs::write(dir.path("c.jsonl"), contacts(n)).expect("contacts");
    dir
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
    let o = flowc(&["campaign", "report", "spread", "--db", &db, "--provider-log", &dir.path("missing.log")]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no provider log"), "{}", stderr(&o));
    // A server that is not there: a clear error, never a hang or a panic.
    let o = flowc(&["campaign", "list", "--db", "postgres://flowc@127.0.0.1:1/none"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("postgres://flowc@127.0.0.1:1/none"), "{}", stderr(&o));
}

#[test]
fn a_password_in_the_database_url_is_never_printed() {
    let o = flowc(&["campaign", "list", "--db", "postgres://flowc:hunter2@127.0.0.1:1/none"]);
    assert_eq!(code(&o), 2);
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("postgres://flowc:***@127.0.0.1:1/none"), "{}", stderr(&o));
}
