//! Issue 19's delivery rules at run time, on SQLite files and the virtual
//! clock: the provider's log as JSON Lines, quiet hours in each contact's
//! own zone, and the rate limit — checked from outside, on the provider's log.

mod common;

use common::Db;

use flowc::compile::codec;
use flowc::compile::{self, program::Program};
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::report::Report;
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// 2026-03-01T00:00Z in minutes: the runs below cross the DST changes of
/// March and April (America, Europe, Australia, Chatham).
const START: i64 = 29_538_720;

fn program(src: &str) -> (Program, flowc::check::model::Model) {
    let (analysis, ws) = common::check_source(src);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, model) = analysis.models[0].clone();
    let c = &model.campaigns[0];
    (compile::compile(&model, c, ws.sources.get(c.file)), model)
}

/// The program with its delivery rules set in Rust (what the front end will
/// compile `quiet hours …` and `rate limit …` to), under its new version.
fn with_delivery(mut p: Program, set: impl FnOnce(&mut flowc::compile::program::Delivery)) -> Program {
    set(&mut p.delivery);
    p.version = codec::content_hash(&p);
    p
}

fn import(db: &Db, model: &flowc::check::model::Model, jsonl: &str) {
    let mut store = SqliteStore::open(&db.path).expect("store");
    let parsed = contacts::parse(jsonl, Format::JsonLines, &Schema::from_model(model));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    store.upsert_contacts(&parsed.contacts, &parsed.events).expect("import");
}

fn run_from(db: &Db, p: &Program, start: i64, stop_after_batches: Option<usize>) -> Report {
    run_with(db, p, start, stop_after_batches, SimConfig::default())
}

fn run_with(db: &Db, p: &Program, start: i64, stop_after_batches: Option<usize>, sim: SimConfig) -> Report {
    let mut store = SqliteStore::open(&db.path).expect("store");
    let mut provider = Simulated::open(&db.path, sim).expect("provider");
    let stop = Arc::new(AtomicBool::new(false));
    let opts = RunOptions {
        clock: ClockKind::Virtual,
        start: Some(start),
        initial_balance_micros: 1_000_000_000,
        engine: EngineConfig { batch: 200, ..EngineConfig::default() },
        stop: stop.clone(),
        lease_ttl_ms: flowc::runtime::store::Lease::DEFAULT_TTL_MS,
    };
    let mut batches = 0;
    let mut progress = |_p: run::Progress| {
        batches += 1;
        if stop_after_batches.is_some_and(|l| batches >= l) {
            stop.store(true, Ordering::SeqCst);
        }
    };
    run::run(&mut store, &mut provider, p, &opts, &mut progress).expect("run")
}

const DECLS: &str = r#"
template promo { channel sms message promotional status published }
template code { channel sms message transactional status published }
template hello { channel email message marketing status published }
"#;

fn contact(id: &str, zone: Option<&str>) -> String {
    let mut c = serde_json::json!({
        "id": id, "email": format!("{id}@example.com"), "phone": "+33600000000", "locale": "fr",
        "created_at": "2026-02-01T10:00:00Z", "consent": ["sms", "email"],
    });
    if let Some(z) = zone {
        c["timezone"] = serde_json::Value::String(z.into());
    }
    c.to_string()
}

/// One line of the provider's log, as docs/runtime.md describes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLine {
    at: String,
    campaign: String,
    contact: String,
    step: String,
    channel: String,
    message_type: String,
    idempotency_key: String,
    outcome: String,
}

impl LogLine {
    /// `at` in milliseconds since the epoch.
    fn at_ms(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .unwrap_or_else(|e| panic!("`at` {} is not RFC 3339: {e}", self.at))
            .timestamp_millis()
    }
}

fn read_log(db: &Db) -> Vec<LogLine> {
    let text = std::fs::read_to_string(db.log()).expect("provider log");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))).collect()
}

#[test]
fn the_provider_log_is_one_json_object_per_message() {
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  first: send sms.promotional promo
  wait 1h
  send email.marketing hello
}}"
    );
    let (p, model) = program(&src);
    let db = Db::new("log");
    let lines: Vec<String> = (0..5).map(|i| contact(&format!("c{i}"), None)).collect();
    import(&db, &model, &lines.join("\n"));
    let r = run_from(&db, &p, START, None);
    assert_eq!(r.provider.deliveries, 10);
    let log = read_log(&db);
    assert_eq!(log.len(), 10);
    for l in &log {
        assert_eq!(l.campaign, "c");
        assert_eq!(l.outcome, "accepted");
        assert_eq!(l.idempotency_key, format!("c/{}/{}/{}", p.version, l.contact, l.step));
        assert!(l.at.ends_with('Z'), "UTC: {}", l.at);
        match l.step.as_str() {
            "first" => {
                assert_eq!((l.channel.as_str(), l.message_type.as_str()), ("sms", "promotional"));
                assert_eq!(l.at_ms(), START * 60_000);
            }
            _ => {
                assert_eq!((l.channel.as_str(), l.message_type.as_str()), ("email", "marketing"));
                assert_eq!(l.at_ms(), (START + 60) * 60_000);
            }
        }
    }
}

#[test]
fn a_torn_last_log_line_does_not_stop_a_restart() {
    let src = format!("{DECLS}campaign c {{\n  trigger manual\n  send sms.promotional promo\n  wait 1h\n  send email.marketing hello\n}}");
    let (p, model) = program(&src);
    let db = Db::new("torn");
    let lines: Vec<String> = (0..4).map(|i| contact(&format!("c{i}"), None)).collect();
    import(&db, &model, &lines.join("\n"));
    // Stop after the first sends, then tear the log's last line as a crash mid-write would.
    run_from(&db, &p, START, Some(1));
    let text = std::fs::read_to_string(db.log()).expect("log");
    assert_eq!(text.lines().count(), 4);
    std::fs::write(db.log(), format!("{text}{{\"at\":\"2026-03-01T00:0")).expect("tear");
    let r = run_from(&db, &p, START, None);
    assert_eq!(r.state, "COMPLETED");
    assert_eq!(r.provider.duplicates, 0);
    let log = read_log(&db);
    assert_eq!(log.len(), 8, "the torn line is gone, the rest appended on fresh lines");
    let keys: std::collections::HashSet<_> = log.iter().map(|l| l.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 8);
}

#[test]
fn a_damaged_log_line_is_refused_with_its_line_number() {
    let db = Db::new("damaged");
    std::fs::write(
        db.log(),
        "{\"at\":\"2026-03-01T00:00:00.000Z\",\"campaign\":\"c\",\"contact\":\"x\",\"step\":\"s\",\"channel\":\"sms\",\"message_type\":\"promotional\",\"idempotency_key\":\"c/v/x/s\",\"outcome\":\"accepted\"}\nnot json at all\n",
    )
    .expect("log");
    let err = Simulated::open(&db.path, SimConfig::default()).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("provider.log") && msg.contains("line 2"), "{msg}");
}

/// The zones of the quiet-hours bar: both hemispheres, half- and
/// quarter-hour offsets, DST changes in March and April 2026 (New York
/// 8 Mar, London/Paris 29 Mar, Sydney/Lord Howe/Chatham/Santiago 5 Apr),
/// zones without DST.
const ZONES: &[&str] = &[
    "America/New_York",
    "America/Los_Angeles",
    "America/Chicago",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/St_Johns",
    "Europe/London",
    "Europe/Paris",
    "Europe/Moscow",
    "Africa/Lagos",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Asia/Dubai",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "Pacific/Honolulu",
    "Pacific/Kiritimati",
    "UTC",
];

/// Each contact's expected send instants (minutes), computed by a separate
/// implementation with Python's `zoneinfo`: for every start, zone and
/// window, the two consent-requiring sends held out of the window and the
/// transactional one an hour after the second, never held. `None` when
/// python3 is not there.
fn expected_by_python(windows: &[(u16, u16)], starts: &[i64]) -> Option<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
req = json.load(sys.stdin)
UTC = timezone.utc
def exists(naive, z):
    aware = naive.replace(tzinfo=z, fold=0)
    return aware.astimezone(UTC).astimezone(z).replace(tzinfo=None) == naive
def instant(naive, z):
    # first wall minute at or after `naive` that exists; fold=0 is the earlier of two
    while not exists(naive, z):
        naive += timedelta(minutes=1)
    return int(naive.replace(tzinfo=z, fold=0).timestamp()) // 60
def hold(t, z, start, end):
    local = datetime.fromtimestamp(t * 60, z)
    m = local.hour * 60 + local.minute
    inside = (start <= m < end) if start < end else (m >= start or m < end)
    if not inside:
        return t
    day = local.date() + (timedelta(days=1) if start > end and m >= start else timedelta())
    naive = datetime(day.year, day.month, day.day, end // 60, end % 60)
    until = instant(naive, z)
    return until if until > t else t
out = {}
for (start, end) in req["windows"]:
    for s in req["starts"]:
        for zone in req["zones"]:
            z = ZoneInfo(zone)
            t1 = hold(s, z, start, end)
            t2 = hold(t1 + 9 * 60, z, start, end)
            out[f"{start}-{end}/{s}/{zone}"] = [t1, t2, t2 + 60]
print(json.dumps(out))
"#;
    use std::io::Write;
    let mut child = match std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "python3 is required under CI: {e}");
            eprintln!("skipped: python3 is not available ({e})");
            return None;
        }
    };
    let req = serde_json::json!({ "windows": windows, "starts": starts, "zones": ZONES });
    child.stdin.take().expect("stdin").write_all(req.to_string().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "python3 failed");
    Some(serde_json::from_slice(&out.stdout).expect("python's answer"))
}

#[test]
fn quiet_hours_hold_each_send_until_the_window_ends_in_the_contacts_own_zone() {
    // 21:00–08:00 (across midnight, ends in daylight), 22:00–02:30 (its end
    // falls in the spring-forward gap and in the autumn overlap).
    let windows: &[(u16, u16)] = &[(21 * 60, 8 * 60), (22 * 60, 2 * 60 + 30)];
    let d = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("start").timestamp() / 60;
    let starts = [
        d("2026-03-01T12:00:00Z"),
        d("2026-03-07T20:00:00Z"),
        d("2026-03-08T04:17:00Z"),
        d("2026-03-28T22:30:00Z"),
        d("2026-04-04T11:45:00Z"),
        d("2026-04-04T14:10:00Z"),
    ];
    let Some(expected) = expected_by_python(windows, &starts) else { return };
    let src = format!(
        "{DECLS}campaign c {{
  trigger manual
  first: send sms.promotional promo
  wait 9h
  second: send email.marketing hello
  wait 1h
  third: send sms.transactional code
}}"
    );
    let (p, model) = program(&src);
    let mut compared = 0;
    for &(start_minute, end_minute) in windows {
        let p = with_delivery(p.clone(), |d| {
            d.quiet_hours = Some(flowc::compile::program::QuietHours {
                start_minute,
                end_minute,
                then: flowc::compile::program::QuietThen::Hold,
            })
        });
        for &start in &starts {
            let db = Db::new(&format!("quiet-{start_minute}-{start}"));
            let lines: Vec<String> = ZONES.iter().map(|z| contact(z, Some(z))).collect();
            import(&db, &model, &lines.join("\n"));
            let r = run_from(&db, &p, start, None);
            assert_eq!(r.state, "COMPLETED");
            for l in read_log(&db) {
                let want = &expected[format!("{start_minute}-{end_minute}/{start}/{}", l.contact)];
                let i = ["first", "second", "third"].iter().position(|s| *s == l.step).expect("a send step");
                assert_eq!(
                    l.at_ms() / 60_000,
                    want[i].as_i64().expect("minute"),
                    "{} at {} (window {start_minute}-{end_minute}, start {start}): {}",
                    l.step,
                    l.contact,
                    l.at
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, windows.len() * starts.len() * ZONES.len() * 3);
}

#[test]
fn quiet_hours_then_skip_skips_the_send_and_goes_on() {
    let src = format!("{DECLS}campaign c {{\n  trigger manual\n  first: send sms.promotional promo\n  code: send sms.transactional code\n}}");
    let (p, model) = program(&src);
    let p = with_delivery(p, |d| {
        d.quiet_hours = Some(flowc::compile::program::QuietHours {
            start_minute: 21 * 60,
            end_minute: 8 * 60,
            then: flowc::compile::program::QuietThen::Skip,
        })
    });
    let db = Db::new("skip");
    // 23:00Z: night in London and UTC, morning in Tokyo (08:00), no zone is UTC.
    let lines = [
        contact("Europe/London", Some("Europe/London")),
        contact("Asia/Tokyo", Some("Asia/Tokyo")),
        contact("none", None),
    ];
    import(&db, &model, &lines.join("\n"));
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-10T23:00:00Z").expect("t").timestamp() / 60;
    let r = run_from(&db, &p, start, None);
    assert_eq!(r.state, "COMPLETED");
    let first = r.steps.iter().find(|s| s.id == "first").expect("first");
    assert_eq!(first.skipped.get("quiet-hours"), Some(&2), "{first:?}");
    assert_eq!(first.sent, 1);
    let sent: Vec<(String, String)> = read_log(&db).into_iter().map(|l| (l.contact, l.step)).collect();
    assert!(sent.contains(&("Asia/Tokyo".into(), "first".into())));
    assert_eq!(sent.iter().filter(|(_, s)| s == "code").count(), 3, "the execution goes on: {sent:?}");
}

/// The most messages any half-open window `[t, t + per_ms)` of the log holds.
fn busiest_window(log: &[LogLine], per_ms: i64) -> usize {
    let mut at: Vec<i64> = log.iter().map(LogLine::at_ms).collect();
    at.sort_unstable();
    let mut most = 0;
    let mut j = 0;
    for i in 0..at.len() {
        while j < at.len() && at[j] < at[i] + per_ms {
            j += 1;
        }
        most = most.max(j - i);
    }
    most
}

fn rate_limited(count: u32, per: flowc::compile::program::RatePer) -> (Program, flowc::check::model::Model) {
    let src = format!(
        "{DECLS}campaign c {{\n  trigger manual\n  first: send sms.promotional promo\n  wait 1h\n  second: send sms.transactional code\n}}"
    );
    let (p, model) = program(&src);
    (with_delivery(p, |d| d.rate_limit = Some(flowc::compile::program::RateLimit { count, per })), model)
}

#[test]
fn the_rate_limit_holds_in_every_sliding_window_of_the_provider_log() {
    use flowc::compile::program::RatePer;
    for (count, per, contacts) in [(7, RatePer::Second, 900), (30, RatePer::Minute, 200), (20, RatePer::Hour, 60)] {
        let (p, model) = rate_limited(count, per);
        let db = Db::new(&format!("rate-{}", per.word()));
        let lines: Vec<String> = (0..contacts).map(|i| contact(&format!("c{i:04}"), None)).collect();
        import(&db, &model, &lines.join("\n"));
        let r = run_from(&db, &p, START, None);
        assert_eq!(r.state, "COMPLETED", "per {}", per.word());
        let log = read_log(&db);
        assert_eq!(log.len(), 2 * contacts, "every contact got both sends (per {})", per.word());
        assert!(log.iter().all(|l| l.outcome == "accepted"));
        let busiest = busiest_window(&log, per.seconds() * 1000);
        assert!(busiest <= count as usize, "{busiest} sends in one {} (limit {count})", per.word());
        assert_eq!(busiest, count as usize, "the limit is used, not undershot");
        let held: u64 = r.steps.iter().filter_map(|s| s.held.get("rate-limit")).sum();
        assert!(held > 0, "some sends were held by the rate limit");
    }
}

#[test]
fn the_rate_limit_holds_across_a_restart() {
    use flowc::compile::program::RatePer;
    // 7 per second is 420 slots a minute; the batch is 200, so the first
    // pass leaves the minute half used and the restart resumes in it.
    let (p, model) = rate_limited(7, RatePer::Second);
    let db = Db::new("rate-restart");
    let lines: Vec<String> = (0..600).map(|i| contact(&format!("c{i:04}"), None)).collect();
    import(&db, &model, &lines.join("\n"));
    let first = run_from(&db, &p, START, Some(1));
    assert_eq!(first.state, "RUNNING");
    assert!(!read_log(&db).is_empty());
    let r = run_from(&db, &p, START, None);
    assert_eq!(r.state, "COMPLETED");
    let log = read_log(&db);
    assert_eq!(log.len(), 1200);
    let busiest = busiest_window(&log, 1000);
    assert!(busiest <= 7, "{busiest} sends in one second");
}

#[test]
fn retried_sends_take_rate_limit_slots_too() {
    use flowc::compile::program::RatePer;
    let (p, model) = rate_limited(5, RatePer::Second);
    let db = Db::new("rate-retry");
    let lines: Vec<String> = (0..400).map(|i| contact(&format!("c{i:04}"), None)).collect();
    import(&db, &model, &lines.join("\n"));
    let sim = SimConfig { fail_rate: 0.2, ..SimConfig::default() };
    let r = run_with(&db, &p, START, None, sim);
    let log = read_log(&db);
    assert!(log.iter().any(|l| l.outcome == "rejected"), "some attempts failed and were tried again");
    let busiest = busiest_window(&log, 1000);
    assert!(busiest <= 5, "{busiest} messages reached the provider in one second");
    let accepted = log.iter().filter(|l| l.outcome == "accepted").count() as u64;
    assert_eq!(accepted, r.provider.deliveries);
}
