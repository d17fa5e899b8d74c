//! Estimate benchmark (issue 23): the `flowc estimate FILE --db DB` command
//! a user runs, timed from outside (process start to exit), on a database
//! written by `flowc contacts import` from generated contacts in the docs'
//! shapes (built-ins, `plan`, `lifetime_value`, consent, capabilities), for
//! three campaigns: one send; an audience and one send; an audience, send,
//! wait, `if`, tag or send, a 2-way `ab_test` and a send.
//!
//! For each campaign: **cold**, the first estimate on a freshly imported
//! database (a copy of the one import, so each campaign gets a fresh one);
//! **warm**, the same command again with the estimate cache removed (the
//! OS cache warm); **cached**, the same command again with nothing changed.
//! Bars: cold and warm under 1 s, cached under 200 ms (at 1,000,000
//! contacts). Beside them, the floor: SQLite alone scanning the audience's
//! rows in this process, no walk. Every answer must be the same text.
//!
//! `cargo bench --bench estimate` (FLOWC_BENCH_CONTACTS to change the size:
//! 100,000 by default; the documented run is 1,000,000).

use flowc::runtime::sqlite::{OpenMode, SqliteStore};
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DECLS: &str = r#"template hello { channel email message marketing status published }
template nudge { channel sms message promotional status published }
template offer_a { channel email message marketing status published }
template offer_b { channel email message marketing status published }
contact {
  plan: enum(free, pro, enterprise)
  lifetime_value: number
}
"#;

const CAMPAIGNS: &[(&str, &str)] = &[
    ("one", "import \"decls.flow\"\ncampaign one {\n  trigger manual\n  send email.marketing hello\n}\n"),
    (
        "aud",
        "import \"decls.flow\"\ncampaign aud {\n  trigger manual\n  audience lifetime_value >= 100\n  send email.marketing hello\n}\n",
    ),
    (
        "full",
        r#"import "decls.flow"
campaign full {
  trigger manual
  audience lifetime_value >= 100
  quiet hours 21:00 to 08:00
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
"#,
    ),
];

const ZONES: &[&str] = &["Europe/Paris", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"];

/// `n` contacts as JSON Lines, as docs/contacts.md shows them: an email and
/// a phone, a time zone, a creation time within the last year, a third
/// tagged `onboarding`, email consent for all and sms for two thirds, RCS
/// for one in five, a plan and a lifetime value from 0 to 500.
fn contacts(n: usize) -> String {
    let mut out = String::with_capacity(n * 260);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let value = (seed >> 33) % 50_000;
        let created = 29_600_000 - (seed >> 20) % (365 * 1440) as u64;
        let created = chrono::DateTime::from_timestamp(created as i64 * 60, 0).expect("time").to_rfc3339();
        let _ = writeln!(
            out,
            r#"{{"id": "c{i:07}", "email": "u{i}@example.com", "phone": "+336{i:08}", "timezone": "{}", "created_at": "{created}", "tags": {}, "consent": {}, "capabilities": {}, "plan": "{}", "lifetime_value": {}.{:02}}}"#,
            ZONES[i % ZONES.len()],
            if i % 3 == 0 { r#"["onboarding"]"# } else { "[]" },
            if i % 3 == 1 { r#"["email"]"# } else { r#"["email", "sms"]"# },
            if i % 5 == 0 { r#"["rcs"]"# } else { "[]" },
            ["free", "pro", "enterprise"][i % 3],
            value / 100,
            value % 100
        );
    }
    out
}

/// One run of the built `flowc`: its wall time, peak RSS (KiB) and output.
struct Ran {
    wall: Duration,
    rss_kib: i64,
    stdout: String,
}

// The child is reaped by `wait4`, which gives its own peak RSS (std's
// `wait` does not).
#[allow(clippy::zombie_processes)]
fn flowc(args: &[&str], cwd: &Path) -> Ran {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn flowc");
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, once; `status` and `usage` outlive the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "flowc {args:?} failed");
    Ran { wall, rss_kib: usage.ru_maxrss, stdout }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// SQLite alone reading what the estimate of `aud` reads, in this
/// process: the audience's rows and their `profile`, no grouping, no walk.
fn floor(db: &Path) -> Duration {
    let mut store = SqliteStore::open_as(db, OpenMode::ReadOnly).expect("open");
    let conn = store.connection();
    let t = Instant::now();
    let mut stmt = conn
        .prepare("SELECT id, profile FROM contacts WHERE json_extract(attrs, '$.lifetime_value') >= 100")
        .expect("prepare");
    let mut rows = stmt.query([]).expect("query");
    let mut bytes = 0usize;
    while let Some(r) = rows.next().expect("row") {
        bytes += r.get_ref(1).expect("column").as_bytes().map_or(0, <[u8]>::len);
    }
    assert!(bytes > 0);
    t.elapsed()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("FLOWC_BENCH_CONTACTS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("flowc-estimate-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("decls.flow"), DECLS).expect("write");
    for (name, src) in CAMPAIGNS {
        std::fs::write(dir.join(format!("{name}.flow")), src).expect("write");
    }
    std::fs::write(dir.join("contacts.jsonl"), contacts(n)).expect("write");
    let import = flowc(&["contacts", "import", "contacts.jsonl", "--schema", "decls.flow", "--db", "base.db"], &dir);
    println!(
        "estimate: {n} contacts imported by `flowc contacts import` in {:.2} s (peak RSS {} MiB)",
        import.wall.as_secs_f64(),
        import.rss_kib / 1024
    );
    let floor = floor(&dir.join("base.db"));
    println!("estimate: floor, SQLite alone scanning `aud`'s rows in-process: {:.0} ms", ms(floor));
    println!("| campaign | cold | warm (median of 3) | cached (median of 3) | peak RSS | audience |");
    println!("|---|---|---|---|---|---|");
    let mut worst = (Duration::ZERO, Duration::ZERO);
    for (name, _) in CAMPAIGNS {
        let db = format!("{name}.db");
        std::fs::copy(dir.join("base.db"), dir.join(&db)).expect("copy");
        let flow = format!("{name}.flow");
        let args = ["estimate", flow.as_str(), "--db", db.as_str()];
        let cache = dir.join(format!("{db}.estimates"));
        let cold = flowc(&args, &dir);
        let cached: Vec<Ran> = (0..3).map(|_| flowc(&args, &dir)).collect();
        let warm: Vec<Ran> = (0..3)
            .map(|_| {
                std::fs::remove_file(&cache).expect("the estimate was cached");
                flowc(&args, &dir)
            })
            .collect();
        for r in cached.iter().chain(&warm) {
            assert_eq!(r.stdout, cold.stdout, "every answer is the same");
        }
        let rss = warm.iter().chain(&cached).map(|r| r.rss_kib).chain([cold.rss_kib]).max().unwrap_or(0);
        let audience = cold.stdout.lines().next().unwrap_or("").split("audience ").nth(1).unwrap_or("?");
        let audience = audience.split(' ').next().unwrap_or("?");
        let warm_median = median(warm.iter().map(|r| r.wall).collect());
        let cached_median = median(cached.iter().map(|r| r.wall).collect());
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {} MiB | {audience} |",
            ms(cold.wall),
            ms(warm_median),
            ms(cached_median),
            rss / 1024
        );
        worst = (worst.0.max(cold.wall).max(warm_median), worst.1.max(cached_median));
        let _ = std::fs::remove_file(dir.join(&db));
        let _ = std::fs::remove_file(&cache);
    }
    println!(
        "estimate: slowest cold/warm {:.0} ms (bar at 1M: under 1000 ms), slowest cached {:.0} ms (bar: under 200 ms)",
        ms(worst.0),
        ms(worst.1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
