//! `flowc run` and `flowc contacts import`.

use super::build::build;
use super::{Fatal, Outcome};
use flowc::check::model::Model;
use flowc::runtime::contacts::{self, Format, Schema};
use flowc::runtime::provider::{SimConfig, Simulated};
use flowc::runtime::run::{self, ClockKind, RunOptions};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::step::Account;
use flowc::runtime::store::Store;
use flowc::runtime::{engine::EngineConfig, report};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const DEFAULT_DB: &str = "flowc.db";

#[derive(clap::Args)]
pub struct RunArgs {
    /// The campaign's .flow file.
    file: PathBuf,
    #[arg(long)]
    campaign: Option<String>,
    /// The SQLite database (created if missing).
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Contacts to import first (JSON Lines or CSV). Without it, an empty
    /// database takes `contacts.jsonl` from beside the .flow file.
    #[arg(long)]
    contacts: Option<PathBuf>,
    /// Import the valid rows and report the others.
    #[arg(long)]
    skip_invalid: bool,
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
    #[arg(long, value_enum, default_value_t = ReportArg::Human)]
    report: ReportArg,
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    #[arg(long)]
    allow_draft: bool,
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
            Some(s) => Ok(Some(flowc::runtime::facts::parse_datetime(s).ok_or_else(|| Fatal(format!("--start: `{s}` is not a datetime like 2026-11-27T09:00:00Z")))?)),
            None => Ok(None),
        }
    }

    /// The time now for `store` on this clock.
    pub fn now(&self, store: &dyn Store) -> Result<flowc::runtime::clock::Minutes, Fatal> {
        run::clock_now(store, self.kind(), self.start()?).map_err(|e| Fatal(e.to_string()))
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
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// A .flow file whose `contact { … }` declares the attributes (default: built-ins only).
        #[arg(long)]
        schema: Option<PathBuf>,
        #[arg(long)]
        skip_invalid: bool,
    },
}

pub fn open_store(db: &Path) -> Result<SqliteStore, Fatal> {
    SqliteStore::open(db).map_err(|e| Fatal(format!("`{}`: {e}", db.display())))
}

/// Parses a contacts file and stores it; row errors are printed. Returns
/// `false` when nothing was imported because of errors.
fn import(store: &mut SqliteStore, file: &Path, schema: &Schema, skip_invalid: bool) -> Result<bool, Fatal> {
    let format = Format::from_path(file).ok_or_else(|| Fatal(format!("`{}`: contacts are .jsonl or .csv files", file.display())))?;
    let bytes = std::fs::read(file).map_err(|e| Fatal(format!("cannot read `{}`: {e}", file.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| Fatal(format!("`{}` is not UTF-8 (byte {})", file.display(), e.utf8_error().valid_up_to())))?;
    let parsed = contacts::parse(&text, format, schema);
    for e in parsed.errors.iter().take(50) {
        eprintln!("{}: {e}", file.display());
    }
    if parsed.errors.len() > 50 {
        eprintln!("{}: … and {} more errors", file.display(), parsed.errors.len() - 50);
    }
    if !parsed.errors.is_empty() && !skip_invalid {
        eprintln!("error: {} invalid row(s) in `{}`; nothing imported (use --skip-invalid to import the rest)", parsed.errors.len(), file.display());
        return Ok(false);
    }
    store.upsert_contacts(&parsed.contacts, &parsed.events).map_err(|e| Fatal(format!("`{}`: {e}", file.display())))?;
    eprintln!("imported {} contact(s) from `{}`{}", parsed.contacts.len(), file.display(), if parsed.errors.is_empty() { String::new() } else { format!(", skipped {} invalid", parsed.errors.len()) });
    Ok(true)
}

/// Keeps the declared contact fields and events in the database, where
/// `flowc serve` validates API input against them.
pub fn keep_schema(store: &mut SqliteStore, schema: &Schema) -> Result<(), Fatal> {
    contacts::store_schema(store, schema).map_err(|e| Fatal(format!("cannot keep the declared schema in the database: {e}")))
}

fn stdlib_model() -> Model {
    let read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let mut ws = flowc::workspace::load(&[], &read);
    // Only the stdlib: a unit made of its files.
    ws.units.push(flowc::workspace::Unit { root: ws.stdlib[0], files: ws.stdlib.clone() });
    flowc::check::check(&ws, &ws.units[0], &[], &Default::default()).0
}

pub fn contacts_cmd(cmd: ContactsCmd) -> Result<Outcome, Fatal> {
    match cmd {
        ContactsCmd::Import { file, db, schema, skip_invalid } => {
            let declared = schema.is_some();
            let model = match schema {
                Some(flow) => {
                    let inputs = super::check::load(&[flow.clone()], None, &Default::default())?;
                    let Some((_, m)) = inputs.analysis.models.into_iter().next() else {
                        return Err(Fatal(format!("`{}` has no contact schema", flow.display())));
                    };
                    m
                }
                None => stdlib_model(),
            };
            let mut store = open_store(&db)?;
            if declared {
                // The API validates contacts and events against what the database keeps.
                keep_schema(&mut store, &Schema::from_model(&model))?;
            }
            Ok(if import(&mut store, &file, &Schema::from_model(&model), skip_invalid)? { Outcome::Ok } else { Outcome::Findings })
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
    let start = a.clock.start()?;
    let built = match build(&a.file, a.campaign.as_deref(), a.templates.as_deref(), a.allow_draft)? {
        Ok(b) => b,
        Err(o) => return Ok(o),
    };
    let model = built.inputs.analysis.models.first().map(|(_, m)| m.clone()).unwrap_or_default();
    let mut store = open_store(&a.db)?;
    let schema = Schema::from_model(&model);
    // `run` launches the campaign: its workspace's declarations join the database's.
    keep_schema(&mut store, &schema)?;
    let resuming = store.campaign(&built.program.campaign).map_err(|e| Fatal(e.to_string()))?.is_some();
    match &a.contacts {
        // Re-importing on a resumed run would undo what the campaign did to
        // the contacts (tags), so contacts load only on the first run.
        Some(file) if resuming => eprintln!("note: `{}` is already in the database; resuming without importing `{}`", built.program.campaign, file.display()),
        Some(file) => {
            if !import(&mut store, file, &schema, a.skip_invalid)? {
                return Ok(Outcome::Findings);
            }
        }
        None if store.contact_count().map_err(|e| Fatal(e.to_string()))? == 0 => {
            let sample = a.file.parent().unwrap_or(Path::new("")).join("contacts.jsonl");
            if sample.exists() {
                if !import(&mut store, &sample, &schema, a.skip_invalid)? {
                    return Ok(Outcome::Findings);
                }
            } else {
                eprintln!("warning: the database has no contacts; pass --contacts FILE");
            }
        }
        None => {}
    }
    let sim = SimConfig { seed: a.seed, fail_rate: a.fail_rate, ..SimConfig::default() };
    let mut provider = Simulated::open(&a.db, sim).map_err(|e| Fatal(e.to_string()))?;
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
        engine: EngineConfig { batch: a.batch, account: Account { approved_channels: a.approve.clone() }, ..EngineConfig::default() },
        stop: stop.clone(),
    };
    let bar = progress_bar();
    let mut on_progress = |p: run::Progress| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.finished);
            let when = chrono::DateTime::from_timestamp(p.now * 60, 0).map_or_else(String::new, |d| d.format("%Y-%m-%d %H:%M").to_string());
            b.set_message(format!("clock {when}, {} steps", p.transitions));
        }
    };
    let result = run::run(&mut store, &mut provider, &built.program, &opts, &mut on_progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let r = result.map_err(|e| Fatal(e.to_string()))?;
    match a.report {
        ReportArg::Human => print!("{}", report::human(&r)),
        ReportArg::Json => println!("{}", serde_json::to_string_pretty(&r).map_err(|e| Fatal(e.to_string()))?),
    }
    if stop.load(Ordering::SeqCst) {
        eprintln!("stopped; run the same command again to resume");
    }
    Ok(Outcome::Ok)
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
