//! Many workers on PostgreSQL (issue #20): the `flowc` command as an
//! operator runs it, on contacts imported by `flowc contacts import`, with
//! 1, 2 and 4 `flowc worker` processes on a virtual clock, beside the raw
//! PostgreSQL ceiling measured in the same run: batched single-row PK
//! updates of a table with one row per contact, as many updates as the run
//! made transitions.
//!
//! `FLOWC_BENCH_POSTGRES=postgres://… cargo bench --bench workers`
//! (FLOWC_BENCH_CONTACTS to change the size, default 1,000,000;
//! FLOWC_BENCH_WORKERS for the worker counts, default "1,2,4").

use std::process::{Command, Stdio};
use std::time::Instant;

const FLOW: &str = r#"
template welcome { channel email message marketing status published }
template nudge { channel sms message promotional status published }
template offer { channel email message marketing status published }
contact { plan: enum(free, pro) score: number }
campaign bench {
  trigger manual
  audience score >= 0
  hello: send email.marketing welcome
  wait 2d
  if opened(hello) or score > 50 {
    ab_test offer_test {
      variant a 50% { send email.marketing offer }
      variant b 50% { send sms.promotional nudge fallback none }
    }
  }
}
"#;

fn flowc(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).output().expect("flowc");
    assert!(o.status.success(), "flowc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn url_of(base: &str, db: &str) -> String {
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap_or(0) + 2 => format!("{}/{db}", &base[..i]),
        _ => format!("{base}/{db}"),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(base) = std::env::var("FLOWC_BENCH_POSTGRES") else {
        eprintln!("skipped: set FLOWC_BENCH_POSTGRES=postgres://… to measure workers on PostgreSQL");
        return;
    };
    let n: usize = std::env::var("FLOWC_BENCH_CONTACTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let counts: Vec<usize> = std::env::var("FLOWC_BENCH_WORKERS")
        .ok()
        .map(|s| s.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4]);
    let dir = std::env::temp_dir().join(format!("flowc-workers-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let flow = dir.join("bench.flow");
    std::fs::write(&flow, FLOW).expect("flow");
    let contacts = dir.join("contacts.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&contacts).expect("contacts"));
        for i in 0..n {
            let plan = if i % 3 == 0 { "pro" } else { "free" };
            writeln!(
                f,
                "{{\"id\":\"c{i:07}\",\"email\":\"c{i:07}@example.com\",\"phone\":\"+3360{i:07}\",\"created_at\":\"2026-11-20T10:00:00Z\",\"consent\":[\"email\",\"sms\"],\"plan\":\"{plan}\",\"score\":{}}}",
                (i * 37) % 100
            )
            .expect("write");
        }
    }
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("connect");
    let template = format!("flowc_bench_base_{}", std::process::id());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {template}")).expect("drop");
    admin.batch_execute(&format!("CREATE DATABASE {template}")).expect("create");
    let template_url = url_of(&base, &template);
    let t = Instant::now();
    flowc(&[
        "contacts",
        "import",
        &contacts.to_string_lossy(),
        "--db",
        &template_url,
        "--schema",
        &flow.to_string_lossy(),
    ]);
    eprintln!("import: {n} contacts in {:.2} s (flowc contacts import)", t.elapsed().as_secs_f64());
    flowc(&["balance", "top-up", "1000000", "--db", &template_url]);
    flowc(&["campaign", "launch", &flow.to_string_lossy(), "--db", &template_url, "--accept-cost"]);

    let mut transitions_seen = 0u64;
    for workers in counts {
        let name = format!("flowc_bench_w{workers}_{}", std::process::id());
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop");
        admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).expect("copy");
        let url = url_of(&base, &name);
        let log = dir.join(format!("provider-{workers}.log"));
        let t = Instant::now();
        flowc(&["campaign", "start", "bench", "--db", &url]);
        let enrolled = t.elapsed().as_secs_f64();
        let children: Vec<_> = (0..workers)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_flowc"))
                    .args(["worker", "--db", &url, "--clock", "virtual", "--until-idle", "--batch", "2000"])
                    .args(["--provider-log", &log.to_string_lossy()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("worker")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success());
        }
        let wall = t.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_str(&flowc(&[
            "campaign",
            "report",
            "bench",
            "--db",
            &url,
            "--provider-log",
            &log.to_string_lossy(),
            "--format",
            "json",
        ]))
        .expect("report");
        let transitions: u64 =
            report["steps"].as_array().expect("steps").iter().map(|s| s["entered"].as_u64().unwrap_or(0)).sum();
        assert_eq!(report["provider"]["duplicates"], 0);
        transitions_seen = transitions_seen.max(transitions);
        eprintln!(
            "{workers} worker(s): {transitions} transitions in {wall:.2} s (enrolment {enrolled:.2} s) = {:.0}/s; state {}",
            transitions as f64 / wall,
            report["state"]
        );
        admin.batch_execute(&format!("DROP DATABASE {name}")).expect("drop");
    }

    // The raw ceiling: as many single-row primary-key updates as the run
    // made transitions, 2,000 to a transaction, on a table of n rows.
    let ceiling = format!("flowc_bench_raw_{}", std::process::id());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {ceiling}")).expect("drop");
    admin.batch_execute(&format!("CREATE DATABASE {ceiling}")).expect("create");
    let mut raw = postgres::Client::connect(&url_of(&base, &ceiling), postgres::NoTls).expect("connect");
    raw.batch_execute(&format!(
        "CREATE TABLE t (id TEXT PRIMARY KEY, step TEXT NOT NULL, wake_at BIGINT NOT NULL);
         INSERT INTO t SELECT 'c' || lpad(g::text, 7, '0'), 's0', 0 FROM generate_series(0, {}) g;",
        n - 1
    ))
    .expect("raw table");
    let update = raw.prepare("UPDATE t SET step = $2, wake_at = wake_at + 1 WHERE id = $1").expect("prepare");
    let total = transitions_seen.max(1) as usize;
    let t = Instant::now();
    let mut done = 0usize;
    while done < total {
        let mut tx = raw.transaction().expect("tx");
        for i in done..(done + 2000).min(total) {
            tx.execute(&update, &[&format!("c{:07}", i % n), &"s1"]).expect("update");
        }
        tx.commit().expect("commit");
        done = (done + 2000).min(total);
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!("raw ceiling: {total} single-row UPDATEs in {secs:.2} s = {:.0}/s", total as f64 / secs);
    drop(raw);
    admin.batch_execute(&format!("DROP DATABASE {ceiling}")).expect("drop");
    admin.batch_execute(&format!("DROP DATABASE {template}")).expect("drop");
    let _ = std::fs::remove_dir_all(&dir);
}
