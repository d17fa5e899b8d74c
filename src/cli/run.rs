//! `flowc run` and `flowc contacts import`.

use super::build::build;
use super::{Fatal, Outcome};
use flowc::compile::program::{Program, Trigger};
use flowc::runtime::clock::Minutes;
use flowc::runtime::contacts::{self, import, Format, Schema};
use flowc::runtime::eval::{self, Ctx};
use flowc::runtime::facts::{self, ContactEvent};
use flowc::runtime::lifecycle::State;
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::reentry;
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::OpenMode;
use flowc::runtime::step::Account;
use flowc::runtime::store::{ContactId, Enrollment, EventOf, Store};
use flowc::runtime::{engine::EngineConfig, report};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const DEFAULT_DB: &str = "flowc.db";

#[derive(clap::Args)]
pub struct RunArgs {
    /// The campaign's .flow file.
    file: PathBuf,
    /// Which campaign, when the file has several.
    #[arg(long)]
    campaign: Option<String>,
    #[command(flatten)]
    db: super::DbArg,
    /// Contacts to import first (JSON Lines or CSV). Without it, an empty
    /// database takes `contacts.jsonl` from beside the .flow file.
    #[arg(long)]
    contacts: Option<PathBuf>,
    /// Import the valid rows and report the others.
    #[arg(long)]
    skip_invalid: bool,
    /// For a campaign with `trigger api`: the triggers to replay, in JSON
    /// Lines, one body of `POST /v1/campaigns/{id}/trigger` a line
    /// (`{"contacts": [...], "data": {...}}`) with an optional RFC 3339 `at`
    /// on the virtual clock. Without it an API campaign enrolls nobody.
    #[arg(long, value_name = "FILE")]
    triggers: Option<PathBuf>,
    /// Contact events to replay on the run's clock, in JSON Lines (one
    /// `POST /v1/events` body a line): each is stored when the clock reaches
    /// its `at` (earlier ones at the start) and wakes the executions waiting
    /// on it. Checked whole before the run starts.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    #[command(flatten)]
    clock: ClockArgs,
    /// Seed of the simulated provider.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of sends the simulated provider rejects (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Opening prepaid balance of a new database, in EUR.
    #[arg(long, default_value_t = 1000.0)]
    balance: f64,
    /// Channels approved for the account (default: all).
    #[arg(long, value_delimiter = ',')]
    approve: Option<Vec<String>>,
    /// How to print the run report: for people, or JSON.
    #[arg(long, alias = "report", value_enum, default_value_t = ReportArg::Human)]
    format: ReportArg,
    /// Executions stepped per transaction.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// The platform's template registry export (JSON array).
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Draft templates do not block the run.
    #[arg(long)]
    allow_draft: bool,
    /// How long a claim lives, in seconds. On PostgreSQL, work a killed run
    /// held is taken over this long after it was claimed (by `flowc worker`
    /// or by this command run again).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    lease: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClockArg {
    Virtual,
    Real,
}

/// The clock of every command that reads the time against the contacts
/// (run, estimate, campaign launch's cost check, campaign start): one rule,
/// `runtime::run::clock_now`, so an estimate counts what a start enrolls.
#[derive(clap::Args)]
pub struct ClockArgs {
    /// `virtual`: the time saved in the database by the last run, else
    /// --start, else just after the newest contact's created_at; `real`: the
    /// wall clock.
    #[arg(long, value_enum, default_value_t = ClockArg::Virtual)]
    clock: ClockArg,
    /// Where the virtual clock stands when the database has not saved one
    /// (a new database), e.g. 2026-11-27T09:00:00Z.
    #[arg(long)]
    start: Option<String>,
}

impl ClockArgs {
    fn kind(&self) -> ClockKind {
        match self.clock {
            ClockArg::Virtual => ClockKind::Virtual,
            ClockArg::Real => ClockKind::Real,
        }
    }

    fn start(&self) -> Result<Option<flowc::runtime::clock::Minutes>, Fatal> {
        match &self.start {
            Some(s) => Ok(Some(
                flowc::runtime::facts::parse_datetime(s)
                    .ok_or_else(|| Fatal(format!("--start: `{s}` is not a datetime like 2026-11-27T09:00:00Z")))?,
            )),
            None => Ok(None),
        }
    }

    /// The time now for `store` on this clock.
    pub fn now(&self, store: &dyn Store) -> Result<flowc::runtime::clock::Minutes, Fatal> {
        run::clock_now(store, self.kind(), self.start()?).map_err(|e| Fatal(e.to_string()))
    }

    /// Where this clock stands for `store`, found without reading the
    /// contacts (`run::clock_source`).
    pub fn source(&self, store: &dyn Store) -> Result<run::ClockSource, Fatal> {
        run::clock_source(store, self.kind(), self.start()?).map_err(|e| Fatal(e.to_string()))
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportArg {
    Human,
    Json,
}

#[derive(clap::Subcommand)]
pub enum ContactsCmd {
    /// Import contacts from JSON Lines or CSV into the database, in one transaction.
    Import {
        /// The contacts: JSON Lines (`.jsonl`) or CSV (`.csv`).
        file: PathBuf,
        #[command(flatten)]
        db: super::DbArg,
        /// A .flow file whose `contact { … }` declares the attributes (default: built-ins only).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Import the valid rows and report the others (default: nothing is imported if a row is invalid).
        #[arg(long)]
        skip_invalid: bool,
    },
}

pub use flowc::runtime::contacts::import::InvalidRows;

/// Streams a contacts file into the store; row errors are printed (the
/// first `SHOWN_ERRORS`, then how many more). Returns `false` when nothing
/// was imported because of errors.
fn import(
    store: &mut dyn Store,
    file: &Path,
    schema: &Schema,
    invalid_rows: InvalidRows,
    declared: import::Declared,
) -> Result<bool, Fatal> {
    import_opened(store, ContactsFile::open(file)?, schema, invalid_rows, declared)
}

/// A contacts file opened for import: a `.jsonl` or `.csv` file that can be
/// read. Opened before the database, so a file refused here leaves no
/// database behind.
struct ContactsFile<'p> {
    path: &'p Path,
    format: Format,
    file: std::fs::File,
}

impl ContactsFile<'_> {
    fn open(path: &Path) -> Result<ContactsFile<'_>, Fatal> {
        let format = Format::from_path(path)
            .ok_or_else(|| Fatal(format!("`{}`: contacts are .jsonl or .csv files", path.display())))?;
        let (file, _) =
            flowc::files::open_regular(path).map_err(|e| Fatal(format!("cannot read `{}`: {e}", path.display())))?;
        Ok(ContactsFile { path, format, file })
    }
}

fn import_opened(
    store: &mut dyn Store,
    opened: ContactsFile<'_>,
    schema: &Schema,
    invalid_rows: InvalidRows,
    declared: import::Declared,
) -> Result<bool, Fatal> {
    let ContactsFile { path: file, format, file: f } = opened;
    // A replaced contact may meet a `wait until` arm or an exit of a running
    // campaign now: those executions wake in the import's transaction.
    let wake_at =
        store.meta("clock").ok().flatten().and_then(|v| v.parse().ok()).unwrap_or_else(flowc::runtime::clock::real_now);
    let options = import::Options { invalid: invalid_rows, declared, wake_at };
    let input = std::io::BufReader::with_capacity(256 * 1024, f);
    let report = import::import(store, input, format, schema, options)
        .map_err(|e| Fatal(format!("`{}`: {e}; nothing imported", file.display())))?;
    crate::give_back_memory();
    // Errors come in file order, so each row's errors are listed together.
    for e in &report.shown {
        errln!("{}: {e}", file.display());
    }
    if report.errors > report.shown.len() {
        errln!("{}: … and {} more errors", file.display(), report.errors - report.shown.len());
    }
    match report.outcome {
        import::Outcome::NotContacts => {
            errln!("error: `{}` cannot be read as contacts; nothing imported", file.display());
            Ok(false)
        }
        import::Outcome::Refused => {
            errln!(
                "error: {} in `{}`; nothing imported (use --skip-invalid to import the rest)",
                invalid_summary(report.invalid_rows, report.rows, report.errors),
                file.display()
            );
            Ok(false)
        }
        import::Outcome::Imported => {
            let invalid = report.invalid_rows;
            let skipped = if invalid == 0 {
                String::new()
            } else {
                format!(", skipped {invalid} invalid row{}", plural(invalid))
            };
            errln!("imported {} contact(s) from `{}`{skipped}", report.imported, file.display());
            Ok(true)
        }
    }
}

/// `2 of 3 rows are invalid (5 errors)`.
pub fn invalid_summary(invalid: usize, rows: usize, errors: usize) -> String {
    let verb = if invalid == 1 { "is" } else { "are" };
    format!("{invalid} of {rows} row{} {verb} invalid ({errors} error{})", plural(rows), plural(errors))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Keeps the declared contact fields and events in the database, where
/// `flowc serve` validates API input against them.
pub fn keep_schema(store: &mut dyn Store, schema: &Schema) -> Result<(), Fatal> {
    contacts::store_schema(store, schema)
        .map_err(|e| Fatal(format!("cannot keep the declared schema in the database: {e}")))
}

pub fn contacts_cmd(cmd: ContactsCmd) -> Result<Outcome, Fatal> {
    match cmd {
        ContactsCmd::Import { file, db, schema, skip_invalid } => {
            let db = db.resolve(schema.as_deref())?;
            let declared = match schema {
                Some(flow) => {
                    let inputs = super::check::load(std::slice::from_ref(&flow), None, &Default::default())?;
                    let Some((_, m)) = inputs.analysis.models.into_iter().next() else {
                        return Err(Fatal(format!("`{}` has no contact schema", flow.display())));
                    };
                    Some(Schema::from_model(&m))
                }
                None => None,
            };
            let opened = ContactsFile::open(&file)?;
            // A database this import creates is removed again when the file
            // is refused: a refused import leaves things as they were.
            let created = match &db {
                super::db::Database::File(path) if !path.exists() => Some(path.clone()),
                _ => None,
            };
            let mut store = db.open(OpenMode::ReadWrite)?;
            let (schema, kept) = match declared {
                // The API validates contacts and events against what the
                // database keeps; it is kept with the rows, so a refused
                // file leaves the database as it was.
                Some(s) => (s, import::Declared::Keep),
                // Without --schema: what launches and earlier imports declared, else the built-ins.
                None => (
                    contacts::stored_schema(store.as_ref())
                        .map_err(|e| Fatal(e.to_string()))?
                        .unwrap_or_else(|| Schema::from_model(flowc::check::stdlib_model())),
                    import::Declared::Kept,
                ),
            };
            let imported = import_opened(store.as_mut(), opened, &schema, InvalidRows::from_flag(skip_invalid), kept);
            if let (Some(path), false) = (created, matches!(imported, Ok(true))) {
                drop(store);
                flowc::runtime::sqlite::remove_created(&path);
            }
            Ok(if imported? { Outcome::Ok } else { Outcome::Findings })
        }
    }
}

pub fn run_cmd(a: RunArgs) -> Result<Outcome, Fatal> {
    if !(0.0..=1.0).contains(&a.fail_rate) {
        return Err(Fatal(format!("--fail-rate must be between 0 and 1, not {}", a.fail_rate)));
    }
    if !a.balance.is_finite() || a.balance < 0.0 {
        return Err(Fatal(format!("--balance must be a non-negative amount, not {}", a.balance)));
    }
    if a.batch == 0 {
        return Err(Fatal("--batch must be at least 1".into()));
    }
    if !(1..=3600).contains(&a.lease) {
        return Err(Fatal(format!("--lease must be 1 to 3600 seconds, not {}", a.lease)));
    }
    let start = a.clock.start()?;
    let db = a.db.resolve(Some(&a.file))?;
    let built = match build(
        &a.file,
        a.campaign.as_deref(),
        a.templates.as_deref(),
        super::build::Drafts::from_flag(a.allow_draft),
    )? {
        Ok(b) => b,
        Err(o) => return Ok(o),
    };
    let model = built.inputs.analysis.models.first().map(|(_, m)| m.clone()).unwrap_or_default();
    let name = built.program.campaign.clone();
    // The whole file is read and checked before the database is opened.
    let triggers = match (&a.triggers, &built.program.trigger) {
        (Some(file), Trigger::Api) => Some((file.as_path(), read_triggers(file)?)),
        (Some(_), _) => {
            return Err(Fatal(format!(
                "--triggers is for campaigns with `trigger api`; `{name}` starts by its own trigger"
            )))
        }
        (None, _) => None,
    };
    let mut store = db.open(OpenMode::ReadWrite)?;
    let schema = Schema::from_model(&model);
    // `run` launches the campaign: its workspace's declarations join the database's.
    keep_schema(store.as_mut(), &schema)?;
    let resuming = store.campaign(&name).map_err(|e| Fatal(e.to_string()))?.is_some();
    match &a.contacts {
        // Re-importing on a resumed run would undo what the campaign did to
        // the contacts (tags), so contacts load only on the first run.
        Some(file) if resuming => errln!(
            "note: `{}` is already in the database; resuming without importing `{}`",
            built.program.campaign,
            file.display()
        ),
        Some(file) => {
            let imported =
                import(store.as_mut(), file, &schema, InvalidRows::from_flag(a.skip_invalid), import::Declared::Kept)?;
            if !imported {
                return Ok(Outcome::Findings);
            }
        }
        None if store.contact_count().map_err(|e| Fatal(e.to_string()))? == 0 => {
            let sample = a.file.parent().unwrap_or(Path::new("")).join("contacts.jsonl");
            let invalid = InvalidRows::from_flag(a.skip_invalid);
            if sample.exists() && !import(store.as_mut(), &sample, &schema, invalid, import::Declared::Kept)? {
                return Ok(Outcome::Findings);
            }
            if !sample.exists() {
                errln!("warning: the database has no contacts; pass --contacts FILE");
            }
        }
        None => {}
    }
    if matches!(built.program.trigger, Trigger::Api) {
        match triggers {
            // Like contacts, triggers are input of the first run only.
            Some((file, _)) if resuming => errln!("note: `{name}` is already in the database; resuming without reading `{}`", file.display()),
            Some((file, lines)) => {
                let now = a.clock.now(store.as_ref())?;
                enroll_triggers(store.as_mut(), &built.program, file, &lines, now)?;
            }
            None if resuming => {}
            None => errln!(
                "note: `{name}` is triggered by the API: `flowc run` enrolls only the contacts of --triggers FILE (JSON Lines of trigger bodies); without it nobody is enrolled"
            ),
        }
    }
    // Every line is checked (against the declared events and the stored
    // contacts) before the run starts; a resumed run reads the same file
    // and goes on from where its replay got.
    let events = match &a.events {
        Some(file) => {
            let now = a.clock.now(store.as_ref())?;
            let schema = super::events::schema_of(store.as_ref())?;
            match super::events::read(store.as_ref(), file, &schema, now, InvalidRows::from_flag(a.skip_invalid))? {
                Some(events) => events,
                None => return Ok(Outcome::Findings),
            }
        }
        None => Vec::new(),
    };
    let sim = SimConfig { seed: a.seed, fail_rate: a.fail_rate, ..SimConfig::default() };
    let mut provider = Simulated::open_log(&db.provider_log(None), sim).map_err(|e| Fatal(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while stopping falls through to the default (exit).
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let opts = RunOptions {
        clock: a.clock.kind(),
        start,
        initial_balance_micros: (a.balance * 1_000_000.0).round() as i64,
        engine: EngineConfig {
            batch: a.batch,
            account: Account { approved_channels: a.approve.clone() },
            ..EngineConfig::default()
        },
        stop: stop.clone(),
        lease_ttl_ms: a.lease as i64 * 1000,
    };
    let bar = progress_bar();
    let mut on_progress = |p: run::Progress| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.finished);
            let when = chrono::DateTime::from_timestamp(p.now * 60, 0)
                .map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M").to_string());
            b.set_message(format!("clock {when}, {} steps", p.transitions));
        }
    };
    let result = run::run_with_events(store.as_mut(), &mut provider, &built.program, &opts, events, &mut on_progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let r = result.map_err(|e| Fatal(e.to_string()))?;
    match a.format {
        ReportArg::Human => out!("{}", report::human(&r)),
        ReportArg::Json => outln!("{}", serde_json::to_string_pretty(&r).map_err(|e| Fatal(e.to_string()))?),
    }
    if stop.load(Ordering::SeqCst) {
        errln!("stopped; run the same command again to resume");
    }
    match State::parse(&r.state) {
        Some(state) if state.is_paused() => {
            err!("{}", paused_hint(&a, &db, &r.campaign, state, r.balance));
            Ok(Outcome::Paused)
        }
        _ => Ok(Outcome::Ok),
    }
}

/// Why the campaign stopped and the commands that make it go on, with this
/// run's campaign, file and database.
fn paused_hint(a: &RunArgs, db: &super::db::Database, campaign: &str, state: State, balance: f64) -> String {
    let db = shell_word(&db.to_string());
    let mut rerun = format!("flowc run {}", shell_word(&a.file.to_string_lossy()));
    if let Some(c) = &a.campaign {
        rerun.push_str(&format!(" --campaign {}", shell_word(c)));
    }
    let (why, top_up) = match state {
        State::PausedBalance => (format!("the balance ({balance:.4} EUR) cannot pay the next send"), format!("  flowc balance top-up AMOUNT_EUR --db {db}\n")),
        State::PausedError => ("the provider kept failing and the circuit breaker tripped; the unsent messages wait, and the next run sends one probe first".to_string(), String::new()),
        _ => ("it was paused by hand".to_string(), String::new()),
    };
    format!(
        "`{campaign}` is {}: {why}. To go on:\n{top_up}  flowc campaign resume {} --db {db}\n  {rerun} --db {db}\n",
        state.as_str(),
        shell_word(campaign)
    )
}

/// A path or name as one shell word: as it is when it is plain, else quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The most contacts one trigger names, as in the API.
const MAX_TRIGGER_CONTACTS: usize = 10_000;
/// A triggers file larger than this is refused rather than read.
const MAX_TRIGGERS_BYTES: u64 = 256 * 1024 * 1024;

/// One line of a --triggers file: an API trigger body and when it came.
struct TriggerLine {
    line: usize,
    contacts: Vec<String>,
    data: Map<String, Value>,
    at: Option<Minutes>,
}

/// Reads and checks a whole --triggers file; every bad line is reported
/// with its number and nothing is enrolled.
fn read_triggers(file: &Path) -> Result<Vec<TriggerLine>, Fatal> {
    let bytes = flowc::files::read_regular(file, MAX_TRIGGERS_BYTES)
        .map_err(|e| Fatal(format!("cannot read `{}`: {e}", file.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Fatal(format!("`{}` is not UTF-8 (byte {})", file.display(), e.utf8_error().valid_up_to())))?;
    let (lines, errors) = parse_triggers(&text);
    if errors.is_empty() {
        return Ok(lines);
    }
    for e in errors.iter().take(50) {
        errln!("{}: {e}", file.display());
    }
    Err(Fatal(format!("{} invalid line(s) in `{}`; nothing was run", errors.len(), file.display())))
}

fn parse_triggers(text: &str) -> (Vec<TriggerLine>, Vec<String>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match trigger_line(i + 1, raw) {
            Ok(t) => lines.push(t),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    (lines, errors)
}

/// The same rules as `POST /v1/campaigns/{id}/trigger`, plus `at`.
fn trigger_line(line: usize, raw: &str) -> Result<TriggerLine, String> {
    let body: Value = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(m) = body else { return Err("expected a JSON object like {\"contacts\": [\"c-1\"]}".into()) };
    if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), "contacts" | "data" | "at")) {
        return Err(format!("unknown key `{k}` (a trigger has `contacts`, `data` and `at`)"));
    }
    let Some(Value::Array(ids)) = m.get("contacts") else {
        return Err("`contacts` must be an array of contact ids".into());
    };
    if ids.is_empty() || ids.len() > MAX_TRIGGER_CONTACTS {
        return Err(format!("`contacts` must hold 1 to {MAX_TRIGGER_CONTACTS} ids"));
    }
    let contacts = ids
        .iter()
        .map(|v| v.as_str().filter(|s| !s.is_empty() && s.len() <= 200).map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or("contact ids are non-empty strings of at most 200 bytes")?;
    let data = match m.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err("`data` must be an object".into()),
    };
    let at = match m.get("at") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = v
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .ok_or_else(|| format!("`at`: expected an RFC 3339 time like 2026-11-25T10:00:00Z, found {v}"))?;
            Some(t.timestamp().div_euclid(60))
        }
    };
    Ok(TriggerLine { line, contacts, data, at })
}

/// Enrolls the contacts the triggers name, as the API's trigger endpoint
/// would have when each came (at `at`, or at the clock's start): those in
/// the audience that the campaign's re-entry rule lets in (in file order;
/// `once`: once each), each with a `campaign.triggered` event holding
/// the trigger's data. Unknown contacts fail the whole file before anything
/// is written.
fn enroll_triggers(
    store: &mut dyn Store,
    p: &Program,
    file: &Path,
    lines: &[TriggerLine],
    now: Minutes,
) -> Result<(), Fatal> {
    let db = |e: flowc::runtime::store::StoreError| Fatal(e.to_string());
    let entry = p.nodes.first().map(|n| n.id.clone()).ok_or_else(|| Fatal(format!("`{}` has no steps", p.campaign)))?;
    let mut errors = Vec::new();
    // When each contact's latest execution started: the store's, then this
    // file's entries, so the campaign's re-entry rule sees them in order.
    let mut latest: std::collections::HashMap<ContactId, Option<i64>> = std::collections::HashMap::new();
    let rule = p.delivery.reentry;
    let (mut entries, mut events, mut outside, mut repeated) = (Vec::new(), Vec::new(), 0u64, 0u64);
    for t in lines {
        let when = t.at.unwrap_or(now).max(now);
        // The same contact named twice in one trigger enters once, as in
        // the API: the second is counted as already enrolled.
        let mut named = std::collections::HashSet::new();
        for id in t.contacts.iter().map(|raw| ContactId::from(raw.as_str())) {
            if !named.insert(id.clone()) {
                repeated += 1;
                continue;
            }
            let Some(c) = store.contact(&id).map_err(db)? else {
                errors.push(format!("line {}: no such contact `{id}`", t.line));
                continue;
            };
            if !latest.contains_key(&id) {
                latest.extend(store.latest_starts(&p.campaign, &[&id]).map_err(db)?);
            }
            if !reentry::admits(rule, latest.get(&id).copied(), when) {
                // Kept out by the re-entry rule (`once`: already in).
                repeated += 1;
                continue;
            }
            let f =
                facts::of_record(p, &c, store.events_for(&[&c.id]).map_err(db)?.into_iter().map(|e| e.event).collect());
            if p.audience.as_ref().is_some_and(|a| !eval::eval(&Ctx { program: p, facts: &f, now: when }, a)) {
                outside += 1;
                continue;
            }
            latest.insert(id.clone(), Some(when));
            let mut props = t.data.clone();
            props.insert("campaign".into(), Value::String(p.campaign.clone()));
            let event = ContactEvent { name: flowc::runtime::store::TRIGGERED.into(), at: when, props };
            events.push(EventOf { contact: id.clone(), event });
            entries.push(Enrollment { contact: id, step: entry.clone(), wake_at: when });
        }
    }
    if !errors.is_empty() {
        for e in errors.iter().take(50) {
            errln!("{}: {e}", file.display());
        }
        return Err(Fatal(format!("{} unknown contact(s) in `{}`; nothing was run", errors.len(), file.display())));
    }
    // The events and the enrollments in one transaction: recorded events
    // have no idempotency key, so a run that failed between the two must
    // leave neither (the next run, still a first run, records them anew).
    // The events first, so the first step can read them.
    let enrolled = flowc::runtime::store::atomically(store, |store| {
        store.upsert_contacts(&[], &events)?;
        reentry::enroll(store, p, &entries, now)
    })
    .map_err(db)?;
    errln!("triggers from `{}`: {enrolled} contact(s) enrolled, {repeated} already enrolled, {outside} not in the audience", file.display());
    Ok(())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} executions finished  {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}
