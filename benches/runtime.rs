//! Runtime benchmark (issue: 1,000,000 contacts through 2 sends, 1 wait, 1
//! `if`, 1 `ab_test` on the virtual clock, durable SQLite in WAL with
//! synchronous=NORMAL): step transitions per second, peak memory, and the raw
//! ceiling of batched single-row UPDATEs of execution rows for comparison.
//!
//! Then the same campaign with quiet hours on every send (issue 19: the
//! check must cost under 10 %), on contacts with time zones, with a window
//! no contact is ever in, so the work is the same apart from the check.
//!
//! `cargo bench --bench runtime` (FLOWC_BENCH_CONTACTS to change the size).

use flowc::check::{self, CheckOptions};
use flowc::compile;
use flowc::compile::program::Program;
use flowc::runtime::engine::{record_sent, Debits, Engine, EngineConfig, Stepped};
use flowc::runtime::facts::ContactRecord;
use flowc::runtime::lifecycle::{self, State};
use flowc::runtime::provider::{Delivery, Message, Provider};
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::step::Account;
use flowc::runtime::store::{ContactId, Engagement, Lease, LedgerEntry, SendOutcome, Store, WorkerId};
use flowc::workspace::{self, Root};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
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

/// Whether the benchmark's contacts carry a `timezone`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zones {
    Absent,
    /// Spread over zones whose local time is never 12:00 at 08:00 UTC (the
    /// campaign's send times), so `quiet hours 12:00 to 12:01` holds nobody.
    Varied,
}

const ZONES: &[&str] = &["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata", "UTC"];

/// The benchmark's contacts, imported in chunks.
fn import_contacts(store: &mut SqliteStore, n: usize, zones: Zones) {
    let chunk = 50_000;
    for start in (0..n).step_by(chunk) {
        let contacts: Vec<ContactRecord> = (start..(start + chunk).min(n))
            .map(|i| {
                let mut attrs = serde_json::Map::new();
                attrs.insert("plan".into(), (if i % 3 == 0 { "pro" } else { "free" }).into());
                attrs.insert("score".into(), ((i * 37) % 100).into());
                attrs.insert("created_at".into(), "2026-11-20T10:00:00Z".into());
                // Every contact has both addresses: a send without one is skipped, and this measures sends
                // (the same work as before addresses were checked).
                attrs.insert("email".into(), format!("c{i:07}@example.com").into());
                attrs.insert("phone".into(), format!("+3360{i:07}").into());
                if zones == Zones::Varied {
                    attrs.insert("timezone".into(), ZONES[i % ZONES.len()].into());
                }
                ContactRecord {
                    id: ContactId(format!("c{i:07}")),
                    attrs,
                    tags: vec![],
                    consent: vec!["email".into(), "sms".into()],
                    capabilities: vec![],
                }
            })
            .collect();
        store.upsert_contacts(&contacts, &[]).expect("contacts");
    }
}

/// What exactly-once costs is measured against this: the same campaign with
/// the provider called before the batch commits and only outcomes recorded
/// (at most once: a crash can lose or repeat a message). The engine's load
/// and step phases are shared; the relay is this one. Returns the step
/// transitions made.
fn run_at_most_once(store: &mut SqliteStore, provider: &mut Simulated, program: &Program, opts: &RunOptions) -> u64 {
    let name = program.campaign.clone();
    let mut now = opts.start.expect("a virtual start");
    store.ensure_initial_balance(opts.initial_balance_micros, now).expect("balance");
    lifecycle::launch(store, program, lifecycle::RemovedSteps::Refuse, now).expect("launch");
    lifecycle::transition(store, &name, State::Running, "bench", now).expect("start");
    run::enroll(store, program, now).expect("enroll");
    let worker = Lease::new(WorkerId::this_process());
    let mut transitions = 0;
    loop {
        let stepped = {
            let mut engine =
                Engine::new(store, provider, program.clone(), opts.engine.clone(), worker.clone()).expect("engine");
            engine.retry_due(now).expect("retries");
            engine.step_batch(now).expect("step")
        };
        if stepped.outcome.executions == 0 {
            // Idle: jump the virtual clock to the next wake-up, or stop when none is left.
            let Some(t) = store.next_wake(&name).expect("wake") else { break };
            now = t;
            continue;
        }
        transitions += stepped.outcome.transitions;
        let Stepped { mut round, sends, .. } = stepped;
        let msgs: Vec<Message> = sends.iter().map(|o| o.to_message(&name, now * 60_000, 1)).collect();
        let results = provider.send_batch(&msgs);
        let mut debits = Debits::default();
        for (o, r) in sends.iter().zip(results) {
            match r {
                Delivery::Accepted { delivered_at, opened_at, clicked_at } => {
                    record_sent(&mut round, &mut debits, o, Engagement { delivered_at, opened_at, clicked_at }, now)
                }
                Delivery::Failed { reason } => {
                    round.outbox_done.push(o.outcome(now, SendOutcome::Failed { error: reason }));
                    round.steps.entry(o.step.clone()).or_default().failed += 1;
                }
            }
        }
        if debits.sends > 0 {
            round.ledger.push(LedgerEntry { amount_micros: -debits.micros, reason: format!("{name}: sends") });
        }
        round.outbox_new = sends;
        store.commit(&name, &round, &worker, now).expect("commit");
    }
    transitions
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and a million contacts have no place in the test suite.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("runtime benchmark: run it with `cargo bench --bench runtime`");
        return;
    }
    let n: usize = std::env::var("FLOWC_BENCH_CONTACTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("flowc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    let db = dir.join("bench.db");

    let read = |_: &Path| Ok(FLOW.as_bytes().to_vec());
    let ws = workspace::load(&[Root::discover(Path::new("bench.flow")).expect("root")], &read);
    let analysis = check::check_all(&ws, &[], &CheckOptions::default());
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let program = compile::compile(model, c, ws.sources.get(c.file));

    let t = Instant::now();
    let mut store = SqliteStore::open(&db).expect("store");
    import_contacts(&mut store, n, Zones::Absent);
    eprintln!("imported {n} contacts in {:.1?}", t.elapsed());

    // Issue target: `flowc estimate` over 1,000,000 contacts in under 2 s.
    let t = Instant::now();
    let est = flowc::runtime::estimate::estimate(&store, &program, 29_400_000, &Default::default()).expect("estimate");
    eprintln!(
        "estimate: audience {} in {:.2} s; expected cost {:.2} EUR",
        est.audience,
        t.elapsed().as_secs_f64(),
        est.cost.expected
    );

    let mut provider = Simulated::open(&db, SimConfig::default()).expect("provider");
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(29_400_000),
        initial_balance_micros: 1_000_000_000_000,
        engine: EngineConfig { batch: 10000, account: Account { approved_channels: None }, ..EngineConfig::default() },
        stop: Arc::new(AtomicBool::new(false)),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let mut transitions = 0;
    let t = Instant::now();
    let report =
        run::run(&mut store, &mut provider, &program, &opts, &mut |p| transitions = p.transitions).expect("run");
    let secs = t.elapsed().as_secs_f64();
    let ours = transitions as f64 / secs;
    eprintln!(
        "run: {} executions, {transitions} step transitions in {secs:.2} s = {ours:.0} transitions/s; state {}; {} sends",
        n,
        report.state,
        report.steps.iter().map(|s| s.sent).sum::<u64>()
    );

    let peak = peak_rss_mb();
    // The raw ceiling: the same number of single-row UPDATEs of execution
    // rows, batched per transaction, no interpreter.
    let conn = store.connection();
    let t = Instant::now();
    let mut done = 0u64;
    let ids: Vec<String> = (0..n).map(|i| format!("c{i:07}")).collect();
    while done < transitions {
        let tx = conn.transaction().expect("tx");
        {
            let mut stmt = tx.prepare_cached("UPDATE executions SET step = ?1, wake_at = ?2, updated_at = ?2 WHERE campaign = 'bench' AND contact_id = ?3").expect("stmt");
            for k in 0..5000u64 {
                let i = ((done + k) as usize) % n;
                stmt.execute(rusqlite::params!["raw", (done + k) as i64, ids[i]]).expect("update");
            }
        }
        tx.commit().expect("commit");
        done += 5000;
    }
    let raw = done as f64 / t.elapsed().as_secs_f64();
    eprintln!("raw ceiling: {done} single-row UPDATEs in {:.2} s = {raw:.0}/s", t.elapsed().as_secs_f64());
    eprintln!("ours/raw = {:.2}; peak memory during the run {peak:.0} MB", ours / raw);

    // What exactly-once costs: the same run with the provider called before
    // the commit and no outbox protocol (at most once), on a fresh database.
    let db2 = dir.join("at-most-once.db");
    let mut store2 = SqliteStore::open(&db2).expect("store");
    import_contacts(&mut store2, n, Zones::Absent);
    let mut provider2 = Simulated::open(&db2, SimConfig::default()).expect("provider");
    let t = Instant::now();
    let transitions2 = run_at_most_once(&mut store2, &mut provider2, &program, &opts);
    let amo = transitions2 as f64 / t.elapsed().as_secs_f64();
    let steps2 = store2.step_counts("bench").expect("counts");
    assert_eq!(
        steps2,
        store.step_counts("bench").expect("counts"),
        "at most once must do the same work as exactly once"
    );
    eprintln!(
        "at most once: {transitions2} transitions = {amo:.0}/s ({} sends); exactly-once costs {:.0}% of throughput",
        steps2.values().map(|s| s.sent).sum::<u64>(),
        (1.0 - ours / amo) * 100.0
    );

    // Quiet hours on every send: the same campaign, every send checked in
    // its contact's zone, nobody held.
    let quiet = {
        let mut p = program.clone();
        p.delivery.quiet_hours = Some(flowc::compile::program::QuietHours {
            start_minute: 12 * 60,
            end_minute: 12 * 60 + 1,
            then: flowc::compile::program::QuietThen::Hold,
        });
        p.version = flowc::compile::codec::content_hash(&p);
        p
    };
    let db3 = dir.join("quiet.db");
    let mut store3 = SqliteStore::open(&db3).expect("store");
    import_contacts(&mut store3, n, Zones::Varied);
    let mut provider3 = Simulated::open(&db3, SimConfig::default()).expect("provider");
    let mut transitions3 = 0;
    let t = Instant::now();
    let report3 =
        run::run(&mut store3, &mut provider3, &quiet, &opts, &mut |p| transitions3 = p.transitions).expect("run");
    let q = transitions3 as f64 / t.elapsed().as_secs_f64();
    let held: u64 = report3.steps.iter().flat_map(|s| s.held.values()).sum();
    assert_eq!(held, 0, "the window holds nobody: the runs do the same work");
    eprintln!(
        "quiet hours on every send: {transitions3} transitions = {q:.0}/s; costs {:.1}% of throughput (bar: under 10%)",
        (1.0 - q / ours) * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
