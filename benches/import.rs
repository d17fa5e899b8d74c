//! Import benchmark (issue 21): the real `flowc contacts import` binary on
//! generated contacts in the shapes of docs/contacts.md, JSON Lines and
//! CSV, then `flowc run --contacts` of a one-send campaign over the same
//! file. Each reports its wall time and peak RSS (the child's own, from
//! `wait4`), beside the raw ceiling measured in the same run: rusqlite
//! inserting the same rows, already serialised in memory, with one prepared
//! statement in one transaction into a store's fresh database (the close
//! and its checkpoint included, as the command pays them too).
//!
//! `cargo bench --bench import` (FLOWC_BENCH_CONTACTS to change the size,
//! default 1,000,000).

use flowc::runtime::facts::ContactRecord;
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::store::{ContactId, EncodedContact};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const ZONES: &[&str] = &["Europe/Paris", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"];
const PLANS: &[&str] = &["free", "pro", "enterprise"];

const DECLS: &str = "template hello { channel email message marketing status published }\ncontact {\n  plan: enum(free, pro, enterprise)\n  lifetime_value: number\n}\n";
const CAMPAIGN: &str = "import \"decls.flow\"\ncampaign one {\n  trigger manual\n  send email.marketing hello\n}\n";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("FLOWC_BENCH_CONTACTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("flowc-import-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("decls.flow"), DECLS).expect("decls");
    std::fs::write(dir.join("one.flow"), CAMPAIGN).expect("campaign");
    let (jsonl, csv) = (dir.join("c.jsonl"), dir.join("c.csv"));
    write_contacts(&jsonl, &csv, n);
    let mb = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    eprintln!("{n} contacts: {:.0} MB of JSON Lines, {:.0} MB of CSV", mb(&jsonl), mb(&csv));

    // The commands run before the ceiling holds its rows in memory: a child
    // started from this process counts this process's peak as its own
    // (Linux keeps the larger of the two across `exec`).
    let decls = dir.join("decls.flow");
    let mut imports = Vec::new();
    for (what, file) in [("contacts import, JSON Lines", &jsonl), ("contacts import, CSV", &csv)] {
        let db = dir.join("import.db");
        remove_db(&db);
        let (wall, rss) = flowc(&["contacts", "import", &s(file), "--db", &s(&db), "--schema", &s(&decls)], "imported");
        imports.push((what, wall, rss));
    }
    let db = dir.join("run.db");
    remove_db(&db);
    let (wall, rss) = flowc(
        &["run", &s(&dir.join("one.flow")), "--contacts", &s(&jsonl), "--db", &s(&db), "--balance", "1000000000"],
        "imported",
    );
    eprintln!("run --contacts (import, then one send each): {:.2} s; peak RSS {} MB", secs(wall), rss / 1024);
    let ceiling = raw_ceiling(&dir.join("raw.db"), n);
    eprintln!(
        "raw ceiling (prepared INSERT, one transaction): {:.2} s = {:.0} contacts/s",
        secs(ceiling),
        rate(n, ceiling)
    );
    for (what, wall, rss) in imports {
        eprintln!(
            "{what}: {:.2} s = {:.0} contacts/s, {:.2} × the raw ceiling's time; peak RSS {} MB",
            secs(wall),
            rate(n, wall),
            secs(wall) / secs(ceiling),
            rss / 1024
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn remove_db(db: &Path) {
    for ext in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
}

/// One contact's fields, as the generator writes them.
struct Contact {
    id: String,
    email: String,
    phone: String,
    zone: &'static str,
    tags: Vec<&'static str>,
    consent: Vec<&'static str>,
    capabilities: Vec<&'static str>,
    plan: &'static str,
    value: f64,
}

fn contact(i: usize) -> Contact {
    Contact {
        id: format!("c{i:07}"),
        email: format!("u{i}@example.com"),
        phone: format!("+336{i:08}"),
        zone: ZONES[i % ZONES.len()],
        tags: if i.is_multiple_of(3) { vec!["onboarding"] } else { vec![] },
        consent: if i.is_multiple_of(2) { vec!["email"] } else { vec!["email", "sms"] },
        capabilities: if i.is_multiple_of(5) { vec!["rcs"] } else { vec![] },
        plan: PLANS[i % PLANS.len()],
        value: (i * 7919 % 40_000) as f64 / 100.0,
    }
}

fn write_contacts(jsonl: &Path, csv: &Path, n: usize) {
    let mut j = std::io::BufWriter::new(std::fs::File::create(jsonl).expect("jsonl"));
    let mut c = std::io::BufWriter::new(std::fs::File::create(csv).expect("csv"));
    writeln!(c, "id,email,phone,timezone,created_at,tags,consent,capabilities,plan,lifetime_value").expect("write");
    let list = |v: &[&str]| v.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", ");
    for i in 0..n {
        let k = contact(i);
        writeln!(
            j,
            "{{\"id\": \"{}\", \"email\": \"{}\", \"phone\": \"{}\", \"timezone\": \"{}\", \"created_at\": \"2026-11-01T10:00:00Z\", \"tags\": [{}], \"consent\": [{}], \"capabilities\": [{}], \"plan\": \"{}\", \"lifetime_value\": {}}}",
            k.id, k.email, k.phone, k.zone, list(&k.tags), list(&k.consent), list(&k.capabilities), k.plan, k.value
        )
        .expect("write");
        writeln!(
            c,
            "{},{},{},{},2026-11-01T10:00:00Z,{},{},{},{},{}",
            k.id,
            k.email,
            k.phone,
            k.zone,
            k.tags.join(";"),
            k.consent.join(";"),
            k.capabilities.join(";"),
            k.plan,
            k.value
        )
        .expect("write");
    }
}

/// The same rows as the import stores them (schema 8: the attributes as
/// binary JSON, the sets as JSON arrays, the typed columns beside them),
/// inserted with one prepared statement in one transaction. Every value is
/// encoded before the clock starts: the ceiling is SQLite's own work.
fn raw_ceiling(db: &Path, n: usize) -> Duration {
    remove_db(db);
    let rows: Vec<EncodedContact> = (0..n)
        .map(|i| {
            let k = contact(i);
            let attrs = serde_json::json!({
                "created_at": "2026-11-01T10:00:00Z", "email": k.email, "lifetime_value": k.value,
                "locale": "en", "phone": k.phone, "plan": k.plan, "timezone": k.zone,
            });
            let strings = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
            let serde_json::Value::Object(attrs) = attrs else { unreachable!("an object") };
            EncodedContact::of(&ContactRecord {
                id: ContactId(k.id),
                attrs,
                tags: strings(&k.tags),
                consent: strings(&k.consent),
                capabilities: strings(&k.capabilities),
            })
        })
        .collect();
    let mut store = SqliteStore::open(db).expect("store");
    let started = Instant::now();
    {
        let tx = store.connection().transaction().expect("begin");
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO contacts (id, attrs, tags, consent, capabilities, created_minute, addresses, profile) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .expect("prepare");
            for r in &rows {
                insert
                    .execute(rusqlite::params![
                        r.id,
                        r.attrs,
                        r.tags,
                        r.consent,
                        r.capabilities,
                        r.created_minute,
                        r.addresses,
                        r.profile
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    drop(store);
    started.elapsed()
}

/// Runs the built `flowc` with `args`; its wall time and peak RSS (KiB).
/// Its standard error must contain `expect`.
// The child is reaped by `wait4` below, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn flowc(args: &[&str], expect: &str) -> (Duration, i64) {
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn flowc");
    let pid = child.id() as libc::pid_t;
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr {
        std::io::Read::read_to_string(&mut pipe, &mut err).expect("stderr");
    }
    // The child's own rusage (getrusage(RUSAGE_CHILDREN) would be the
    // largest of every child so far).
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 && err.contains(expect), "{args:?}:\n{err}");
    (wall, usage.ru_maxrss)
}
