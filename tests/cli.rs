//! End-to-end tests of the built `flowc` binary: exit codes and output shapes.

mod common;

use common::{code, flowc, stderr, stdout, TempDir};

use std::path::Path;
use std::process::{Command, Output};

#[test]
fn check_examples_passes() {
    let o = flowc(&["check", "examples/"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("0 errors"));
}

#[test]
fn check_error_exits_1_with_rendered_snippet() {
    let o = flowc(&["check", "tests/data/check/unknown-template.flow"]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(out.contains("unknown template `helo`"), "{out}");
    assert!(out.contains("did you mean `hello`?"), "{out}");
    assert!(!out.contains('\u{1b}'), "NO_COLOR must disable colour");
}

#[test]
fn json_format_matches_contract() {
    let o = flowc(&["check", "--format", "json", "tests/data/check/unknown-template.flow"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["format_version"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(d["file"], "tests/data/check/unknown-template.flow");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "unknown-template");
    assert_eq!(d["help"], "did you mean `hello`?");
    assert_eq!(d["span"]["start"]["line"], 8);
    assert_eq!(d["span"]["start"]["column"], 24);
    assert_eq!(d["span"]["end"]["column"], 28);
}

#[test]
fn github_format_is_annotation_lines() {
    let o = flowc(&["check", "--format", "github", "tests/data/check/missing-fallback.flow"]);
    assert_eq!(code(&o), 0, "a warning alone passes");
    let out = stdout(&o);
    assert!(out.starts_with("::warning file=tests/data/check/missing-fallback.flow,line=8,col=8,"), "{out}");
    assert!(out.contains("title=missing-fallback::"), "{out}");
}

#[test]
fn deny_warnings_turns_warnings_into_exit_1() {
    let o = flowc(&["check", "--deny-warnings", "tests/data/check/missing-fallback.flow"]);
    assert_eq!(code(&o), 1);
}

#[test]
fn allow_draft_downgrades_unpublished_templates() {
    let file = "tests/data/check/template-not-published.flow";
    assert_eq!(code(&flowc(&["check", file])), 1);
    let o = flowc(&["check", "--allow-draft", "--format", "json", file]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["diagnostics"][0]["severity"], "warning");
}

#[test]
fn sarif_output_is_valid_sarif() {
    let o = flowc(&["check", "--format", "sarif", "tests/data/check/many_errors.flow"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    common::assert_valid_sarif(&v);
}

#[test]
fn could_not_run_exits_2() {
    let missing = flowc(&["check", "no/such/file.flow"]);
    assert_eq!(code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    assert_eq!(code(&flowc(&["check", "--format", "xml", "examples/"])), 2);
    assert_eq!(code(&flowc(&["frobnicate"])), 2);
    assert_eq!(code(&flowc(&["explain", "no-such-code"])), 2);
}

#[test]
fn template_registry_is_used_and_validated() {
    let dir = std::env::temp_dir().join(format!("flowc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let flow = dir.join("c.flow");
    std::fs::write(&flow, "campaign c {\n  trigger manual\n  send email.marketing from_registry\n}\n").expect("write");
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        r#"[{"name":"from_registry","channel":"email","message_type":"marketing","status":"published","version":2}]"#,
    )
    .expect("write");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"name":"from_registry","channel":"email","message_type":"marketing","status":"live"}]"#)
        .expect("write");
    let p = |x: &Path| x.to_string_lossy().into_owned();
    assert_eq!(code(&flowc(&["check", &p(&flow)])), 1);
    assert_eq!(code(&flowc(&["check", "--templates", &p(&good), &p(&flow)])), 0);
    let o = flowc(&["check", "--templates", &p(&bad), &p(&flow)]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("$[0] (`from_registry`): field `status`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_prints_wrong_and_right() {
    let o = flowc(&["explain", "channel-mismatch"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert!(out.contains("Wrong:") && out.contains("Right:"), "{out}");
}

#[test]
fn invalid_utf8_is_reported_not_fatal() {
    let dir = std::env::temp_dir().join(format!("flowc-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("bad.flow");
    std::fs::write(&f, b"segment a = \xff\xfe\n").expect("write");
    let o = flowc(&["check", "--format", "json", &f.to_string_lossy()]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("not valid UTF-8"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sarif_validator_rejects_broken_logs() {
    let broken = serde_json::json!({"version": "2.1.0", "runs": [{"results": []}]});
    let outcome = std::panic::catch_unwind(|| common::assert_valid_sarif(&broken));
    assert!(outcome.is_err(), "a run without `tool` must be rejected");
}

#[test]
fn compile_dis_graph_diff_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("flowc-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bin = dir.join("welcome.flowc");
    let o = flowc(&["compile", "examples/welcome.flow", "--emit", "binary", "-o", &bin.to_string_lossy()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let listing = flowc(&["dis", &bin.to_string_lossy()]);
    assert_eq!(code(&listing), 0);
    assert!(stdout(&listing).contains("SEND email.marketing welcome_email"));
    // A corrupt program file is a clean "could not run".
    let mut bytes = std::fs::read(&bin).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&bin, &bytes).expect("write");
    let bad = flowc(&["dis", &bin.to_string_lossy()]);
    assert_eq!(code(&bad), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checksum"));
    let json = flowc(&["compile", "examples/welcome.flow"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("program json");
    assert_eq!(v["campaign"], "welcome");
    let svg = flowc(&["graph", "examples/welcome.flow"]);
    assert!(stdout(&svg).contains("<svg"));
    let dot = flowc(&["graph", "examples/welcome.flow", "--format", "dot"]);
    assert!(stdout(&dot).starts_with("digraph"));
    let same = flowc(&["diff", "examples/welcome.flow", "examples/welcome.flow"]);
    assert_eq!(code(&same), 0);
    assert!(stdout(&same).contains("= hello"));
    // A file with errors does not compile.
    assert_eq!(code(&flowc(&["compile", "tests/data/check/unknown-template.flow"])), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn locked_and_corrupt_databases_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("flowc-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let db = dir.join("locked.db");
    let p = db.to_string_lossy().into_owned();
    assert_eq!(code(&flowc(&["campaign", "list", "--db", &p])), 2, "a reading command creates nothing");
    assert!(!db.exists());
    assert_eq!(code(&flowc(&["balance", "top-up", "1", "--db", &p])), 0, "a writing one creates the database");
    assert_eq!(code(&flowc(&["campaign", "list", "--db", &p])), 0);
    let holder = rusqlite::Connection::open(&db).expect("open");
    holder
        .execute_batch(
            "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS sim_hold (x INTEGER);",
        )
        .expect("lock");
    let o = flowc(&["balance", "top-up", "5", "--db", &p]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked"), "{}", String::from_utf8_lossy(&o.stderr));
    drop(holder);
    let bad = dir.join("corrupt.db");
    std::fs::write(&bad, vec![0x42u8; 8192]).expect("write");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &bad.to_string_lossy()]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("corrupt"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_report_json_has_the_contract_shape() {
    let dir = std::env::temp_dir().join(format!("flowc-runjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let db = dir.join("r.db");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db.to_string_lossy(), "--report", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["campaign"], "welcome");
    assert!(v["state"].as_str().is_some_and(|s| s.starts_with("COMPLETED")));
    for k in ["pending", "processing", "completed", "failed", "skipped"] {
        assert!(v["executions"][k].is_u64(), "{k}");
    }
    let hello = &v["steps"][0];
    assert_eq!(hello["id"], "hello");
    assert_eq!(hello["kind"], "send");
    assert!(hello["entered"].as_u64() >= hello["sent"].as_u64());
    assert!(v["ab_tests"]["offer"]["holdout"].is_u64());
    assert_eq!(v["cost"]["currency"], "EUR");
    assert_eq!(v["provider"]["duplicates"], 0);
    // Running again reports the finished campaign without doing anything twice.
    let again = flowc(&["run", "examples/welcome.flow", "--db", &db.to_string_lossy(), "--report", "json"]);
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(w["provider"], v["provider"]);
    assert_eq!(w["steps"], v["steps"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fmt_export_import_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("flowc-fmtcli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let ugly = dir.join("u.flow");
    std::fs::write(&ugly, "campaign c{trigger manual\nsend   email.marketing t}\n").expect("write");
    let check = flowc(&["fmt", "--check", &ugly.to_string_lossy()]);
    assert_eq!(code(&check), 1);
    assert!(stdout(&check).contains("+  send email.marketing t"), "{}", stdout(&check));
    assert_eq!(code(&flowc(&["fmt", &ugly.to_string_lossy()])), 0);
    assert_eq!(code(&flowc(&["fmt", "--check", &ugly.to_string_lossy()])), 0);
    assert_eq!(code(&flowc(&["fmt", "--check", "examples/"])), 0, "examples are formatted");
    let broken = dir.join("b.flow");
    std::fs::write(&broken, "campaign {").expect("write");
    assert_eq!(code(&flowc(&["fmt", &broken.to_string_lossy()])), 2);
    assert_eq!(
        std::fs::read_to_string(&broken).expect("read"),
        "campaign {",
        "a file that does not parse is left alone"
    );

    let json = dir.join("w.json");
    assert_eq!(code(&flowc(&["export", "examples/welcome.flow", "-o", &json.to_string_lossy()])), 0);
    let back = flowc(&["import", &json.to_string_lossy()]);
    assert_eq!(code(&back), 0);
    assert!(stdout(&back).contains("hello: send email.marketing welcome_email"));
    std::fs::write(&json, r#"{"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"}, "timeline": [{"id": "w", "type": "WAIT", "config": {"duration": 5}}]}"#).expect("write");
    let bad = flowc(&["import", &json.to_string_lossy()]);
    assert_eq!(code(&bad), 1);
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("$.timeline[0].config.duration: expected a string, found a number"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: `fmt --check` exits 1 for "needs formatting" and 2 for a file
/// that cannot be formatted (a syntax error), also when both occur and on
/// standard input.
#[test]
fn fmt_check_tells_unformatted_from_unparsable() {
    let dir = TempDir::new("fmtcheck");
    std::fs::write(dir.0.join("ugly.flow"), "campaign c{trigger manual}\n").expect("write");
    std::fs::write(dir.0.join("broken.flow"), "campaign c { trigger }\n").expect("write");
    let ugly = dir.path("ugly.flow");
    let broken = dir.path("broken.flow");
    assert_eq!(code(&flowc(&["fmt", "--check", &ugly])), 1);
    let o = flowc(&["fmt", "--check", &broken]);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("syntax") && err.contains("could not be formatted"), "{err}");
    assert_eq!(code(&flowc(&["fmt", "--check", &ugly, &broken])), 2);
    assert_eq!(code(&flowc(&["fmt", &broken])), 2);
    let stdin = |text: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["fmt", "--check", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run flowc");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write stdin");
        code(&child.wait_with_output().expect("wait"))
    };
    assert_eq!(stdin("campaign c{trigger manual}\n"), 1);
    assert_eq!(stdin("campaign c { trigger }\n"), 2);
    assert_eq!(stdin("campaign c {\n  trigger manual\n}\n"), 0);
}

#[test]
fn estimate_json_and_launch_refusing_an_unaffordable_campaign() {
    let o = flowc(&["estimate", "examples/welcome.flow", "--contacts", "examples/contacts.jsonl", "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["campaign"], "welcome");
    assert!(v["audience"].as_u64().is_some_and(|n| n > 0));
    let step = &v["steps"][0];
    assert_eq!(step["id"], "hello");
    for k in ["min", "expected", "max"] {
        assert!(step["reach"][k].is_number());
        assert!(v["cost"][k].is_number());
    }
    assert_eq!(v["cost"]["currency"], "EUR");

    let dir = std::env::temp_dir().join(format!("flowc-launch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let db = dir.join("l.db");
    let db = db.to_string_lossy();
    assert_eq!(
        code(&flowc(&[
            "contacts",
            "import",
            "examples/contacts.jsonl",
            "--schema",
            "examples/shared.flow",
            "--db",
            &db
        ])),
        0
    );
    // An empty balance cannot pay for the expected sends.
    let refused = flowc(&["campaign", "launch", "examples/welcome.flow", "--db", &db]);
    assert_eq!(code(&refused), 2);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exceeds the balance"));
    assert_eq!(code(&flowc(&["campaign", "launch", "examples/welcome.flow", "--db", &db, "--accept-cost"])), 0);
    let status = flowc(&["campaign", "status", "welcome", "--db", &db, "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(s["state"], "SCHEDULED");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_manual_campaign_starts_with_campaign_start_and_runs_once() {
    let dir = std::env::temp_dir().join(format!("flowc-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let db = dir.join("m.db");
    let db = db.to_string_lossy();
    assert_eq!(
        code(&flowc(&[
            "contacts",
            "import",
            "examples/contacts.jsonl",
            "--schema",
            "examples/shared.flow",
            "--db",
            &db
        ])),
        0
    );
    assert_eq!(code(&flowc(&["balance", "top-up", "100", "--db", &db])), 0);
    assert_eq!(code(&flowc(&["campaign", "launch", "examples/spring_test.flow", "--db", &db])), 0);
    // Starting an API campaign by hand is refused; the manual one starts.
    let start = flowc(&["campaign", "start", "spring_test", "--db", &db]);
    assert_eq!(code(&start), 0, "{}", String::from_utf8_lossy(&start.stderr));
    let enrolled: u64 = stdout(&start)
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(enrolled > 0);
    assert_eq!(code(&flowc(&["campaign", "start", "spring_test", "--db", &db])), 2, "already running");
    let run = flowc(&["run", "examples/spring_test.flow", "--db", &db, "--report", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let total: u64 = v["executions"].as_object().expect("map").values().filter_map(|n| n.as_u64()).sum();
    assert_eq!(total, enrolled, "running it enrolls nobody twice");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `flowc estimate`, `flowc campaign launch`, `flowc campaign start` and
/// `flowc run` read the time by one rule: the estimate states its as-of time,
/// and a time-dependent audience estimated is the audience enrolled.
#[test]
fn estimate_states_its_clock_and_start_enrolls_what_was_estimated() {
    let dir = std::env::temp_dir().join(format!("flowc-asof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let flow = dir.join("recent.flow");
    std::fs::write(
        &flow,
        "template t { channel email message marketing status published }\ncampaign recent {\n  trigger manual\n  audience created_at > now - 2d\n  send email.marketing t\n}\n",
    )
    .expect("write");
    // Ten contacts a day from 2025-01-01 to 2025-01-10: the newest were created on the 10th at midnight.
    let contacts: Vec<String> = (0..100)
        .map(|i| {
            serde_json::json!({"id": format!("c{i:03}"), "email": format!("c{i}@example.com"), "consent": ["email"], "created_at": format!("2025-01-{:02}T00:00:00Z", i / 10 + 1)}).to_string()
        })
        .collect();
    let jsonl = dir.join("contacts.jsonl");
    std::fs::write(&jsonl, contacts.join("\n")).expect("write");
    let db = dir.join("t.db");
    let (flow, jsonl, db) =
        (flow.to_string_lossy().into_owned(), jsonl.to_string_lossy().into_owned(), db.to_string_lossy().into_owned());
    assert_eq!(code(&flowc(&["contacts", "import", &jsonl, "--schema", &flow, "--db", &db])), 0);

    let o = flowc(&["estimate", &flow, "--db", &db, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // The virtual clock: just after the newest contact, as `flowc run` starts.
    assert_eq!(v["as_of"], "2025-01-10T01:00:00Z");
    assert_eq!(v["entry"]["kind"], "audience");
    let estimated = v["audience"].as_u64().expect("audience");
    assert_eq!(estimated, 20, "created on the 9th and 10th");
    let human = flowc(&["estimate", &flow, "--db", &db]);
    assert!(stdout(&human).contains("audience 20 contact(s), as of 2025-01-10T01:00:00Z"), "{}", stdout(&human));
    // The same clock can be chosen explicitly.
    let at = flowc(&["estimate", &flow, "--db", &db, "--format", "json", "--start", "2025-01-11T12:00:00Z"]);
    let at: serde_json::Value = serde_json::from_slice(&at.stdout).expect("json");
    assert_eq!(
        (at["as_of"].as_str(), at["audience"].as_u64()),
        (Some("2025-01-11T12:00:00Z"), Some(10)),
        "created on the 10th"
    );

    let launch = flowc(&["campaign", "launch", &flow, "--db", &db, "--accept-cost"]);
    assert_eq!(code(&launch), 0, "{}", String::from_utf8_lossy(&launch.stderr));
    assert!(stdout(&launch).contains("as of 2025-01-10T01:00:00Z"), "{}", stdout(&launch));
    let start = flowc(&["campaign", "start", "recent", "--db", &db]);
    assert_eq!(code(&start), 0, "{}", String::from_utf8_lossy(&start.stderr));
    assert!(stdout(&start).contains(&format!(": {estimated} contact(s) enrolled")), "{}", stdout(&start));
    let run = flowc(&["run", &flow, "--db", &db, "--report", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    let total: u64 = r["executions"].as_object().expect("map").values().filter_map(|n| n.as_u64()).sum();
    assert_eq!(total, estimated, "the run enrolls what was estimated, and nobody twice");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An event trigger's estimate counts contacts with a recorded event that
/// matches the trigger's `where` in the look-back window, and says so.
#[test]
fn event_trigger_estimate_states_its_window() {
    let dir = std::env::temp_dir().join(format!("flowc-window-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let flow = dir.join("big.flow");
    std::fs::write(
        &flow,
        "template t { channel email message transactional status published }\nevent order.completed { amount: number }\ncampaign big {\n  trigger event order.completed where amount > 100\n  send email.transactional t\n}\n",
    )
    .expect("write");
    // Orders 1 to 20 days before the newest contact; every other one is big.
    let contacts: Vec<String> = (0..20)
        .map(|i| {
            let at = format!("2025-01-{:02}T00:00:00Z", 21 - i);
            serde_json::json!({"id": format!("c{i:02}"), "email": "x@example.com", "created_at": "2025-01-21T00:00:00Z",
                "events": [{"name": "order.completed", "at": at, "amount": if i % 2 == 0 { 500 } else { 50 }}]})
            .to_string()
        })
        .collect();
    let jsonl = dir.join("contacts.jsonl");
    std::fs::write(&jsonl, contacts.join("\n")).expect("write");
    let (flow, jsonl) = (flow.to_string_lossy().into_owned(), jsonl.to_string_lossy().into_owned());
    let o = flowc(&["estimate", &flow, "--contacts", &jsonl, "--format", "json", "--window", "1w"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["entry"]["kind"], "event");
    assert_eq!(v["entry"]["event"], "order.completed");
    assert_eq!(v["entry"]["window"], "7d");
    assert_eq!(v["entry"]["since"], "2025-01-14T01:00:00Z");
    // Big orders on the 21st, 19th, 17th and 15th.
    assert_eq!(v["audience"], 4);
    let human = flowc(&["estimate", &flow, "--contacts", &jsonl]);
    assert!(
        stdout(&human).contains("recorded `order.completed` matching the trigger, in the 30d before"),
        "{}",
        stdout(&human)
    );
    assert!(stdout(&human).contains("audience 10 contact(s)"), "{}", stdout(&human));
    assert_eq!(code(&flowc(&["estimate", &flow, "--contacts", &jsonl, "--window", "soon"])), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn sql_i64(db: &str, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("db");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

#[test]
fn the_opening_balance_is_only_for_a_database_without_money() {
    let dir = TempDir::new("opening");
    let db = dir.path("b.db");
    assert_eq!(code(&flowc(&["balance", "top-up", "10", "--db", &db])), 0);
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db, "--report", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        sql_i64(&db, "SELECT COUNT(*) FROM ledger WHERE reason = 'initial balance'"),
        0,
        "the top-up is this database's money"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["balance"].as_f64().is_some_and(|b| b < 10.0), "{}", v["balance"]);
    // A new database gets it, once.
    let fresh = dir.path("f.db");
    assert_eq!(code(&flowc(&["run", "examples/welcome.flow", "--db", &fresh, "--report", "json"])), 0);
    assert_eq!(code(&flowc(&["run", "examples/welcome.flow", "--db", &fresh, "--report", "json"])), 0);
    assert_eq!(sql_i64(&fresh, "SELECT COUNT(*) FROM ledger WHERE reason = 'initial balance'"), 1);
}

#[test]
fn a_database_missing_a_table_is_refused_before_anything_is_sent() {
    let dir = TempDir::new("missing-table");
    let db = dir.path("m.db");
    assert_eq!(
        code(&flowc(&[
            "contacts",
            "import",
            "examples/contacts.jsonl",
            "--schema",
            "examples/shared.flow",
            "--db",
            &db
        ])),
        0
    );
    {
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute_batch("DROP TABLE campaign_transitions; PRAGMA wal_checkpoint(TRUNCATE);").expect("break");
    }
    let before = std::fs::read(&db).expect("read");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt") && stderr(&o).contains("table `campaign_transitions`"), "{}", stderr(&o));
    assert!(!std::path::Path::new(&dir.path("m.db.provider.log")).exists(), "nothing reached the provider");
    assert_eq!(std::fs::read(&db).expect("read"), before, "the file is left as it was");
    // Reading commands refuse it the same way.
    let status = flowc(&["campaign", "list", "--db", &db]);
    assert_eq!(code(&status), 2);
    assert!(stderr(&status).contains("campaign_transitions"), "{}", stderr(&status));
}

#[test]
fn a_paused_run_exits_3_and_says_what_to_do_next() {
    let dir = TempDir::new("paused");
    let db = dir.path("p.db");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db, "--balance", "0", "--report", "json"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "PAUSED_BALANCE");
    let err = stderr(&o);
    assert!(err.contains("flowc balance top-up") && err.contains(&format!("--db {db}")), "{err}");
    assert!(err.contains(&format!("flowc campaign resume welcome --db {db}")), "{err}");
    // Following the advice finishes the campaign.
    assert_eq!(code(&flowc(&["balance", "top-up", "100", "--db", &db])), 0);
    assert_eq!(code(&flowc(&["campaign", "resume", "welcome", "--db", &db])), 0);
    let done = flowc(&["run", "examples/welcome.flow", "--db", &db, "--report", "json"]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    // The audit log reads in order: the resume is stamped on the run's
    // (virtual) clock, like launch and start, not on the wall clock.
    let times: Vec<i64> = {
        let conn = rusqlite::Connection::open(&db).expect("db");
        let mut stmt = conn.prepare("SELECT at FROM campaign_transitions ORDER BY id").expect("sql");
        let rows = stmt.query_map([], |r| r.get(0)).expect("rows");
        rows.map(|r| r.expect("row")).collect()
    };
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "audit times out of order: {times:?}");

    let broken = dir.path("e.db");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &broken, "--fail-rate", "1", "--report", "json"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "PAUSED_ERROR");
    assert!(stderr(&o).contains(&format!("flowc campaign resume welcome --db {broken}")), "{}", stderr(&o));
}

#[test]
fn an_api_campaign_enrols_only_the_contacts_of_its_triggers() {
    let dir = TempDir::new("api-run");
    let total = |o: &Output| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["executions"].as_object().expect("map").values().filter_map(|n| n.as_u64()).sum()
    };
    let none = flowc(&["run", "examples/password_reset.flow", "--db", &dir.path("n.db"), "--report", "json"]);
    assert_eq!(code(&none), 0, "{}", stderr(&none));
    assert_eq!(total(&none), 0, "no OTP to everyone");
    assert!(stderr(&none).contains("--triggers"), "{}", stderr(&none));

    let triggers = dir.path("t.jsonl");
    std::fs::write(&triggers, "{\"contacts\": [\"c-0001\", \"c-0002\"], \"data\": {\"reason\": \"forgot\"}}\n\n{\"contacts\": [\"c-0003\", \"c-0001\"], \"at\": \"2026-11-25T10:00:00Z\"}\n").expect("write");
    let db = dir.path("t.db");
    let some =
        flowc(&["run", "examples/password_reset.flow", "--db", &db, "--triggers", &triggers, "--report", "json"]);
    assert_eq!(code(&some), 0, "{}", stderr(&some));
    assert_eq!(total(&some), 3);
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM contact_events WHERE name = 'campaign.triggered'"), 3);

    let bad = dir.path("bad.jsonl");
    std::fs::write(&bad, "{\"contacts\": [\"c-0001\"]}\n{\"contacts\": [\"nobody\"]}\nnot json\n{\"contacts\": [\"c-0002\"], \"at\": \"tomorrow\"}\n").expect("write");
    let o = flowc(&["run", "examples/password_reset.flow", "--db", &dir.path("b.db"), "--triggers", &bad]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(err.contains("line 3") && err.contains("line 4: `at`"), "{err}");
    let unknown = dir.path("unknown.jsonl");
    std::fs::write(&unknown, "{\"contacts\": [\"c-0001\"]}\n{\"contacts\": [\"nobody\"]}\n").expect("write");
    let o = flowc(&["run", "examples/password_reset.flow", "--db", &dir.path("u.db"), "--triggers", &unknown]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("line 2: no such contact `nobody`"), "{}", stderr(&o));
    let o = flowc(&["run", "examples/welcome.flow", "--db", &dir.path("w.db"), "--triggers", &triggers]);
    assert_eq!(code(&o), 2, "--triggers is for API campaigns");
}

/// Issue 19: `flowc run --triggers` follows the campaign's re-entry rule,
/// in file order: a contact triggered three times enters once (`once`),
/// three times (`always`), or when its previous entry is a day old.
#[test]
fn triggers_follow_the_reentry_rule() {
    let dir = TempDir::new("api-reentry");
    let shared = std::fs::read_to_string("examples/shared.flow").expect("shared");
    std::fs::write(dir.path("shared.flow"), shared).expect("write");
    std::fs::copy("examples/contacts.jsonl", dir.path("contacts.jsonl")).expect("contacts");
    let base = std::fs::read_to_string("examples/password_reset.flow").expect("example");
    let triggers = dir.path("t.jsonl");
    std::fs::write(
        &triggers,
        [
            // Named twice in one trigger: enters once, as through the API.
            r#"{"contacts": ["c-0001", "c-0001"], "data": {"n": 1}, "at": "2030-11-25T10:00:00Z"}"#,
            r#"{"contacts": ["c-0001"], "data": {"n": 2}, "at": "2030-11-25T20:00:00Z"}"#,
            r#"{"contacts": ["c-0001"], "data": {"n": 3}, "at": "2030-11-26T11:00:00Z"}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    for (rule, want) in [("once", 1), ("always", 3), ("after 1d", 2)] {
        let flow = dir.path(&format!("reset_{}.flow", rule.replace(' ', "_")));
        std::fs::write(&flow, base.replace("  trigger api\n", &format!("  trigger api\n  reentry {rule}\n")))
            .expect("write");
        let db = dir.path(&format!("{}.db", rule.replace(' ', "_")));
        let o = flowc(&["run", &flow, "--db", &db, "--triggers", &triggers, "--report", "json"]);
        assert_eq!(code(&o), 0, "{rule}: {}", stderr(&o));
        assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM executions"), want, "{rule}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{want} contact(s) enrolled, {} already enrolled", 4 - want)),
            "{rule}: {}",
            stderr(&o)
        );
        let sent = sql_i64(&db, "SELECT COUNT(DISTINCT key) FROM outbox WHERE step = 'link'");
        assert_eq!(sent, want, "{rule}: one link per execution, none taken for a duplicate");
    }
}

/// Issue 19: `flowc run` shows the sends a frequency cap skipped, by step
/// and reason, and the execution goes on past them.
#[test]
fn run_shows_frequency_cap_skips() {
    let dir = TempDir::new("caps-run");
    let shared = std::fs::read_to_string("examples/shared.flow").expect("shared");
    std::fs::write(dir.path("shared.flow"), shared).expect("write");
    std::fs::copy("examples/contacts.jsonl", dir.path("contacts.jsonl")).expect("contacts");
    let flow = dir.path("capped.flow");
    std::fs::write(
        &flow,
        r#"import "shared.flow"
template news { channel email message marketing status published }
template receipt { channel email message transactional status published }
policy { frequency cap email 1 per 7d }
campaign capped {
  trigger manual
  first: send email.marketing news
  second: send email.marketing news
  receipt_step: send email.transactional receipt
}
"#,
    )
    .expect("write");
    let db = dir.path("c.db");
    let o = flowc(&["run", &flow, "--db", &db]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let first = sql_i64(&db, "SELECT COUNT(*) FROM outbox WHERE step = 'first' AND status = 'sent'");
    assert!(first > 0, "{out}");
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM outbox WHERE step = 'second'"), 0, "{out}");
    assert!(out.contains(&format!("skipped frequency-cap: {first}")), "{out}");
    assert_eq!(
        sql_i64(&db, "SELECT COUNT(*) FROM outbox WHERE step = 'receipt_step'"),
        sql_i64(&db, "SELECT COUNT(*) FROM executions WHERE state = 'completed'"),
        "transactional sends are exempt and every capped execution went on: {out}"
    );
}

#[test]
fn importing_the_same_events_twice_stores_them_once() {
    let dir = TempDir::new("events-twice");
    let db = dir.path("e.db");
    let import =
        || flowc(&["contacts", "import", "examples/contacts.jsonl", "--schema", "examples/shared.flow", "--db", &db]);
    assert_eq!(code(&import()), 0);
    let once = sql_i64(&db, "SELECT COUNT(*) FROM contact_events");
    assert!(once > 0);
    assert_eq!(code(&import()), 0);
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM contact_events"), once);
}

/// SIGTERM (what a service manager or `kill` sends) stops `flowc run` as
/// cleanly as Ctrl-C: after the current batch, with the report, exit 0, and
/// the same command resumes.
#[test]
fn sigterm_stops_a_run_cleanly() {
    let dir = TempDir::new("sigterm");
    let db = dir.path("t.db");
    // On the real clock the welcome series waits two days: the run is still going when the signal comes.
    let child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", "examples/welcome.flow", "--db", &db, "--clock", "real", "--report", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Signalled once the run is under way (the campaign is RUNNING).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = || -> bool {
        let Ok(conn) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
            return false;
        };
        conn.query_row("SELECT COUNT(*) FROM campaign_transitions WHERE to_state = 'RUNNING'", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|n| n > 0)
    };
    while !running() {
        assert!(std::time::Instant::now() < deadline, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let o = child.wait_with_output().expect("wait");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("stopped; run the same command again to resume"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a report");
    assert_eq!(v["state"], "RUNNING");
}

/// Without `--schema`, `contacts import` reads contacts against the schema
/// the database keeps (what launches and earlier imports declared).
#[test]
fn contacts_import_uses_the_kept_schema() {
    let dir = TempDir::new("kept-schema");
    let db = dir.path("k.db");
    let flow = dir.path("c.flow");
    std::fs::write(&flow, "template hi { channel email message transactional status published }\ncontact { plan: enum(free, pro) }\ncampaign c {\n  trigger manual\n  send email.transactional hi\n}\n").expect("flow");
    let launch = flowc(&["campaign", "launch", &flow, "--db", &db, "--accept-cost"]);
    assert_eq!(code(&launch), 0, "{}", stderr(&launch));
    let jsonl = dir.path("c.jsonl");
    std::fs::write(&jsonl, "{\"id\": \"a\", \"email\": \"a@example.com\", \"plan\": \"pro\"}\n").expect("contacts");
    let o = flowc(&["contacts", "import", &jsonl, "--db", &db]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::write(&jsonl, "{\"id\": \"b\", \"plan\": \"gold\"}\n").expect("contacts");
    let o = flowc(&["contacts", "import", &jsonl, "--db", &db]);
    assert_eq!(code(&o), 1, "a value outside the kept enum is still refused");
    assert!(stderr(&o).contains("plan"), "{}", stderr(&o));
}

/// Runs flowc with its standard output already closed by the reader (as
/// `flowc … | head -0` does), so the first write meets a broken pipe.
fn flowc_into_closed_pipe(args: &[&str], cwd: &Path) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run flowc")
}

#[test]
fn every_command_stops_quietly_when_stdout_closes() {
    let tmp = TempDir::new("closed-pipe");
    let db = tmp.path("c.db");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let commands: &[&[&str]] = &[
        &["check", "examples", "--format", "json"],
        &["check", "examples"],
        &["dis", "examples/welcome.flow"],
        &["graph", "examples/welcome.flow"],
        &["explain", "unknown-template"],
        &["estimate", "examples/welcome.flow", "--db", &db],
        &["campaign", "list", "--db", &db],
        &["campaign", "status", "welcome", "--db", &db],
        &["balance", "show", "--db", &db],
        &["export", "examples/welcome.flow"],
        &["compile", "examples/welcome.flow", "--emit", "json"],
        &["--help"],
    ];
    for args in commands {
        let o = flowc_into_closed_pipe(args, &common::root());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(
            !err.contains("error") && !err.to_lowercase().contains("broken pipe"),
            "{args:?} must stop quietly, said: {err}"
        );
        assert_eq!(code(&o), 141, "{args:?}: a closed pipe is exit 141, like a tool killed by SIGPIPE");
    }
}

#[test]
fn read_only_commands_never_create_a_database() {
    let tmp = TempDir::new("read-only-missing");
    let db = tmp.path("typo.db");
    let commands: &[&[&str]] = &[
        &["balance", "show", "--db", &db],
        &["campaign", "list", "--db", &db],
        &["campaign", "status", "welcome", "--db", &db],
        &["estimate", "examples/welcome.flow", "--db", &db],
    ];
    for args in commands {
        let o = flowc(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stdout(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("typo.db"), "{args:?} must name the path: {err}");
        let left: Vec<_> = std::fs::read_dir(&tmp.0).expect("dir").collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

#[test]
fn read_only_commands_print_json_and_say_steps_as_the_language_does() {
    let tmp = TempDir::new("formats");
    let db = tmp.path("c.db");
    let o = flowc(&["run", "examples/spring_test.flow", "--db", &db, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("run --format json");
    assert_eq!(report["campaign"], "spring_test");

    let o = flowc(&["campaign", "list", "--db", &db]);
    let text = stdout(&o);
    assert!(
        text.lines().next().is_some_and(|h| h.starts_with("campaign") && h.contains("state") && h.contains("version")),
        "{text}"
    );
    assert!(text.contains("spring_test"), "{text}");
    let o = flowc(&["campaign", "list", "--db", &db, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("list json");
    assert_eq!(v[0]["campaign"], "spring_test");
    assert_eq!(v[0]["state"], "COMPLETED_PARTIAL");

    let o = flowc(&["balance", "show", "--db", &db, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("balance json");
    assert!(v["balance"].as_f64().is_some_and(|b| b > 0.0 && b < 1000.0), "{v}");
    assert_eq!(v["currency"], "EUR");

    let o = flowc(&["campaign", "status", "spring_test", "--db", &db, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(v["state"], "COMPLETED_PARTIAL");

    // The estimate names step kinds with the language's words, as the run report does.
    let o = flowc(&["estimate", "examples/spring_test.flow", "--db", &db]);
    let text = stdout(&o);
    for word in ["ab_test", "send", "wait", "if", "tag", "end"] {
        assert!(text.lines().any(|l| l.split_whitespace().nth(1) == Some(word)), "no `{word}` step in:\n{text}");
    }
    for mnemonic in ["SPLIT", "BRANCH", "SEND"] {
        assert!(!text.contains(mnemonic), "`{mnemonic}` in:\n{text}");
    }

    // A `wait_until` row is as wide as the others: the columns line up.
    let o = flowc(&["estimate", "examples/abandoned_cart.flow", "--db", &db]);
    let text = stdout(&o);
    let table: Vec<&str> =
        text.lines().skip_while(|l| !l.starts_with("step ")).take_while(|l| !l.trim().is_empty()).collect();
    assert!(table.iter().any(|l| l.contains("wait_until")), "{text}");
    assert!(table.iter().all(|l| l.chars().count() == table[0].chars().count()), "ragged table:\n{text}");
}

#[test]
fn json_and_sarif_carry_the_secondary_spans() {
    let o = flowc(&["check", "--format", "json", "tests/data/check/step-not-dominating.flow"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let d = v["diagnostics"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["code"] == "step-not-dominating"))
        .expect("the warning");
    assert_eq!(d["label"], "not sent on every path here");
    let related = d["related"].as_array().expect("related spans");
    assert_eq!(related.len(), 1, "{d}");
    assert_eq!(related[0]["label"], "the send");
    assert!(related[0]["span"]["start"]["line"].as_u64().is_some_and(|l| l > 0), "{d}");

    let o = flowc(&["check", "--format", "sarif", "tests/data/check/step-not-dominating.flow"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sarif");
    common::assert_valid_sarif(&v);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("example.invalid"), "no placeholder URI");
    let r = &v["runs"][0]["results"][0];
    assert_eq!(r["relatedLocations"][0]["message"]["text"], "the send");
}

#[test]
fn a_schedule_in_the_past_warns_in_check_and_is_refused_by_launch() {
    let tmp = TempDir::new("schedule-in-past");
    let file = tmp.path("old.flow");
    std::fs::write(&file, "template hello { channel email message marketing status published }\ncampaign old {\n  trigger scheduled at 2020-01-06 09:00 \"Europe/Paris\"\n  send email.marketing hello\n}\n").expect("write");
    let o = flowc(&["check", &file]);
    assert_eq!(code(&o), 0, "a warning: {}", stdout(&o));
    assert!(stdout(&o).contains("schedule-in-past"), "{}", stdout(&o));
    let o = flowc(&["check", "--deny-warnings", &file]);
    assert_eq!(code(&o), 1);

    let db = tmp.path("c.db");
    let o = flowc(&["campaign", "launch", &file, "--db", &db, "--clock", "real"]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("scheduled for 2020-01-06T09:00 Europe/Paris, which is before now"), "{err}");
}

fn flowc_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run flowc")
}

#[test]
fn flowc_toml_holds_the_settings_and_flags_override_it() {
    let tmp = TempDir::new("flowc-toml");
    let ws = &tmp.0;
    std::fs::create_dir_all(ws.join("campaigns")).expect("dir");
    std::fs::write(
        ws.join("registry.json"),
        r#"[{"name": "hello", "channel": "email", "message_type": "marketing", "status": "draft"}]"#,
    )
    .expect("registry");
    std::fs::write(
        ws.join("campaigns/c.flow"),
        "campaign c {\n  trigger manual\n  hi: send email.marketing hello\n  if opened(hi) { end }\n}\n",
    )
    .expect("flow");
    let toml = |extra: &str| {
        std::fs::write(
            ws.join("flowc.toml"),
            format!("database = \"data/c.db\"\ntemplates = \"registry.json\"\nallow-draft = true\n{extra}"),
        )
        .expect("toml")
    };
    std::fs::create_dir_all(ws.join("data")).expect("dir");

    // The registry and allow-draft come from the file: the draft template is only a warning.
    toml("");
    let o = flowc_in(&ws.join("campaigns"), &["check", "c.flow"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("template-not-published") && stdout(&o).contains("engagement-too-early"),
        "{}",
        stdout(&o)
    );

    // [lints] silences one warning and denies another; deny-warnings fails on the rest.
    toml("deny-warnings = true\n[lints]\nengagement-too-early = \"allow\"\n");
    let o = flowc_in(ws, &["check", "campaigns/c.flow"]);
    assert!(!stdout(&o).contains("engagement-too-early"), "{}", stdout(&o));
    assert_eq!(code(&o), 1, "deny-warnings: the draft warning fails the check: {}", stdout(&o));
    toml("[lints]\nengagement-too-early = \"deny\"\n");
    let o = flowc_in(ws, &["check", "campaigns/c.flow"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("1 error"), "{}", stdout(&o));

    // `database` is relative to flowc.toml, from any folder below it.
    toml("");
    let o = flowc_in(&ws.join("campaigns"), &["run", "c.flow"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ws.join("data/c.db").exists(), "the database is where flowc.toml says");
    assert!(!ws.join("campaigns/flowc.db").exists());
    let o = flowc_in(&ws.join("campaigns"), &["campaign", "list"]);
    assert!(stdout(&o).contains("COMPLETED"), "{}", stdout(&o));
    // A flag overrides the file.
    let o = flowc_in(&ws.join("campaigns"), &["campaign", "list", "--db", "elsewhere.db"]);
    assert_eq!(code(&o), 2, "a read-only command on a missing database");

    // An unknown key is an error naming it.
    toml("databse = \"x\"\n");
    let o = flowc_in(ws, &["check", "campaigns/c.flow"]);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("flowc.toml") && err.contains("unknown key `databse`"), "{err}");
}

/// Issue 18: `flowc compile` prints the wait until, the goal and the exits
/// in the program JSON.
#[test]
fn compile_json_shows_wait_until_goal_and_exits() {
    let o = flowc(&["compile", "tests/data/compile/wait_until.flow"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("program json");
    assert_eq!(v["goal"]["event"]["event"], "order.completed");
    assert_eq!(v["goal"]["within_minutes"], 7 * 24 * 60);
    assert_eq!(v["exits"].as_array().map(Vec::len), Some(2));
    assert!(v["exits"][1]["state"]["cond"]["has"].is_object(), "{}", v["exits"]);
    assert_eq!(v["on_ineligible"], "continue");
    let wait = v["nodes"].as_array().expect("nodes").iter().find(|n| n["id"] == "cart").expect("the wait");
    let w = &wait["op"]["wait_until"];
    assert_eq!(w["timeout_minutes"], 3 * 24 * 60);
    assert_eq!(w["arms"][0]["on"]["event"]["event"]["event"], "order.completed");
    assert!(w["arms"][1]["on"]["state"]["cond"]["engaged"].is_object(), "{w}");
    let timeout = w["timeout"].as_u64().expect("timeout index") as usize;
    assert_eq!(v["nodes"][timeout]["id"], "cart/timeout");
}

/// The A/B example with its week of orders (issue 18): `flowc run --events`
/// shows one variant converting clearly better, and buyers still in the
/// 3-day wait leave when they buy, so they never get the last call.
#[test]
fn the_spring_sale_example_shows_a_winner() {
    let dir = TempDir::new("spring-sale");
    let db = dir.path("s.db");
    let args = ["run", "examples/spring_sale_ab.flow", "--db", &db, "--events", "examples/spring_sale_ab.events.jsonl"];
    let o = flowc(&[&args[..], &["--format", "json"]].concat());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "COMPLETED", "{v}");
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or_else(|| panic!("a count: {x}"));
    let ab = &v["ab_tests"]["subject"];
    let rate = |k: &str| n(&ab[k]["converted"]) as f64 / n(&ab[k]["entered"]) as f64;
    assert!(rate("personal") > 2.0 * rate("plain"), "{ab}");
    assert!(ab["personal"]["confidence"].as_f64().is_some_and(|c| c >= 0.99), "{ab}");
    assert!(ab["urgent"]["confidence"].as_f64().is_some_and(|c| c < 0.95), "only one clear winner: {ab}");
    let converted: u64 = ["plain", "urgent", "personal"].iter().map(|k| n(&ab[*k]["converted"])).sum();
    assert_eq!(n(&v["goal"]["converted"]), converted, "{v}");
    let exited = n(&v["exits"]["exit:1"]);
    assert!(exited > 0, "{v}");
    let last_call = v["steps"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "last_call")).expect("last_call");
    assert_eq!(n(&last_call["entered"]) + exited, n(&v["executions"]["completed"]), "{v}");
    // The same report for people: the A/B table with the winner's line.
    let human = flowc(&args);
    assert_eq!(code(&human), 0, "{}", stderr(&human));
    let text = stdout(&human);
    assert!(text.contains("variant     entered  converted      rate    uplift  confidence"), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("personal") && l.ends_with("99.9%")), "{text}");
}

/// Issue 23: `flowc estimate` keeps its estimate beside the database
/// (`<db>.estimates`) and answers a repeat from it while nothing it read
/// changed; every kind of change — a contact import, a run's tag and `set`
/// changes, an event, a new version of the program — makes the next
/// estimate the one made afresh (the oracle: the same command after the
/// cache file is removed).
#[test]
fn estimate_cache_answers_repeats_until_contacts_events_runs_or_the_program_change() {
    let tmp = TempDir::new("estimate-cache");
    let probe = |threshold: u32| {
        format!(
            "template t {{ channel email message marketing status published }}\ncontact {{ score: number }}\nevent order.completed {{ amount: number }}\ncampaign probe {{\n  trigger manual\n  if tags has \"vip\" {{ v: send email.marketing t }}\n  if score > {threshold} {{ s: send email.marketing t }}\n  if happened order.completed within 30d {{ o: send email.marketing t }}\n}}\n"
        )
    };
    std::fs::write(tmp.0.join("c.flow"), probe(50)).expect("write");
    std::fs::write(
        tmp.0.join("tagger.flow"),
        "import \"c.flow\"\ncampaign tagger {\n  trigger manual\n  audience score < 20\n  tag add \"vip\"\n  set score = score + 100\n}\n",
    )
    .expect("write");
    let contact = |i: u32, score: u32| {
        serde_json::json!({"id": format!("c{i}"), "email": format!("c{i}@example.com"), "consent": ["email"],
            "created_at": "2025-01-10T00:00:00Z", "score": score})
        .to_string()
    };
    let lines = |cs: &[(u32, u32)]| cs.iter().map(|(i, s)| contact(*i, *s)).collect::<Vec<_>>().join("\n");
    std::fs::write(tmp.0.join("a.jsonl"), lines(&(0..10).map(|i| (i, i * 10)).collect::<Vec<_>>())).expect("write");
    std::fs::write(tmp.0.join("b.jsonl"), lines(&[(3, 90), (10, 95)])).expect("write");
    std::fs::write(
        tmp.0.join("events.jsonl"),
        r#"{"contact": "c1", "name": "order.completed", "at": "2025-01-09T00:00:00Z", "props": {"amount": 5}}"#,
    )
    .expect("write");
    let (flow, db) = (tmp.path("c.flow"), tmp.path("t.db"));
    let cache = tmp.0.join("t.db.estimates");
    let estimate = || {
        let o = flowc(&["estimate", &flow, "--campaign", "probe", "--db", &db, "--format", "json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        stdout(&o)
    };
    // The estimate made afresh: the cache file removed first.
    let fresh = || {
        let _ = std::fs::remove_file(&cache);
        estimate()
    };
    let ok = |o: Output| assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    ok(flowc(&["contacts", "import", &tmp.path("a.jsonl"), "--schema", &flow, "--db", &db]));

    let first = estimate();
    assert!(cache.is_file(), "the estimate is kept beside the database");
    // A write behind flowc's back (no new data version) is not seen: the
    // repeat is answered from the cache.
    let raw = rusqlite::Connection::open(&db).expect("db");
    let shift = |by: i64| {
        let sql = "UPDATE contacts SET attrs = jsonb_set(attrs, '$.score', json_extract(attrs, '$.score') + ?1)";
        raw.execute(sql, [by]).expect("raw write");
    };
    shift(1000);
    assert_eq!(estimate(), first, "a repeat is answered from the cache");
    let behind = fresh();
    assert_ne!(behind, first, "the raw write changes the estimate made afresh");
    shift(-1000);
    drop(raw);
    let mut last = fresh();
    assert_eq!(last, first);

    type Change<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let mut changes: Vec<Change> = vec![
        (
            "a contact import",
            Box::new(|| ok(flowc(&["contacts", "import", &tmp.path("b.jsonl"), "--schema", &flow, "--db", &db]))),
        ),
        ("a run's tag and set changes", Box::new(|| ok(flowc(&["run", &tmp.path("tagger.flow"), "--db", &db])))),
        ("an event", Box::new(|| ok(flowc(&["events", "import", &tmp.path("events.jsonl"), "--db", &db])))),
        ("a new program version", Box::new(|| std::fs::write(tmp.0.join("c.flow"), probe(10)).expect("write"))),
    ];
    for (what, change) in changes.drain(..) {
        assert_eq!(estimate(), last, "before {what}: the cached estimate");
        change();
        let after = estimate();
        assert_ne!(after, last, "{what} changes the estimate");
        assert_eq!(after, fresh(), "after {what}: the estimate made afresh");
        last = after;
    }

    // With no contact created, the virtual clock is the wall clock: such an
    // estimate is not kept (the next one is as of its own time).
    std::fs::write(tmp.0.join("none.jsonl"), "").expect("write");
    let empty = tmp.path("empty.db");
    ok(flowc(&["contacts", "import", &tmp.path("none.jsonl"), "--db", &empty]));
    ok(flowc(&["estimate", &flow, "--campaign", "probe", "--db", &empty]));
    assert!(!tmp.0.join("empty.db.estimates").exists(), "an estimate as of the wall clock is not kept");
}

/// A contacts file refused before any row is read (not contacts by its
/// name, or not there) leaves no database behind; a `--db` URL of a kind
/// flowc does not speak is refused, not taken for a file name.
#[test]
fn refused_inputs_leave_no_database_behind() {
    let dir = TempDir::new("refused-inputs");
    let db = dir.path("flowc.db");
    for file in ["/dev/null", &dir.path("missing.jsonl")] {
        let o = flowc(&["contacts", "import", file, "--db", &db]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(!Path::new(&db).exists(), "`{file}` refused, yet a database was made");
        assert!(!Path::new(&format!("{db}.lock")).exists());
    }
    // A file refused for its rows: the database the import made is gone again.
    std::fs::write(dir.path("bad.jsonl"), "{\"id\": \"a\"}\n{\"email\": \"no-id@example.com\"}\n").expect("bad");
    let o = flowc(&["contacts", "import", &dir.path("bad.jsonl"), "--db", &db]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing imported"), "{}", stderr(&o));
    for leftover in [db.clone(), format!("{db}.lock"), format!("{db}-wal"), format!("{db}-shm")] {
        assert!(!Path::new(&leftover).exists(), "`{leftover}` left behind by a refused import");
    }
    // A database that was there stays, with what it held.
    std::fs::write(dir.path("c.jsonl"), "{\"id\": \"a\"}\n").expect("contacts");
    assert_eq!(code(&flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", &db])), 0);
    let o = flowc(&["contacts", "import", &dir.path("bad.jsonl"), "--db", &db]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM contacts"), 1);
    let url = "mysql://u:hunter2@127.0.0.1/x";
    let o = flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", url]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("not `mysql://`"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert!(!Path::new("mysql:").exists());
    // An empty `--db` is refused: SQLite would take it for a temporary
    // database, and the import would be lost at exit.
    let o = flowc(&["contacts", "import", &dir.path("c.jsonl"), "--db", ""]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("the database is empty"), "{}", stderr(&o));
}
