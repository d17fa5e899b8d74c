//! `flowc worker`: runs the due work of every RUNNING campaign of a
//! database until stopped — the interpreter of `flowc serve` without the
//! API. On PostgreSQL any number of workers, on any number of machines,
//! share the work by claiming it; on a SQLite file one worker runs at a
//! time (the file's writer lock).

use super::db::Database;
use super::{Fatal, Outcome};
use flowc::runtime::engine::EngineConfig;
use flowc::runtime::provider::{Provider, SimConfig, Simulated};
use flowc::runtime::sqlite::OpenMode;
use flowc::runtime::store::{Lease, WorkerId};
use flowc::service::runner::{self, RunnerConfig, SharedClock, Until};
use flowc::service::webhook;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The flags of the interpreter, shared by `flowc worker` and `flowc serve`.
#[derive(clap::Args)]
pub struct WorkerFlags {
    /// Run only this campaign (repeatable; default: every campaign).
    #[arg(long = "campaign", value_name = "NAME")]
    campaigns: Vec<String>,
    /// Interpreter threads in this process, each with its own connection
    /// and claims (PostgreSQL only; a SQLite file has one writer).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seed of the simulated provider.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of sends the simulated provider rejects (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// The simulated provider's delivery log; workers sharing a database
    /// name the same file (default: beside a SQLite file, else
    /// flowc.provider.log).
    #[arg(long, value_name = "PATH")]
    provider_log: Option<PathBuf>,
    /// Deliver through a webhook at this URL instead of the simulated provider.
    #[arg(long)]
    webhook: Option<String>,
    /// How long one webhook request may take, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    webhook_timeout_ms: u64,
    /// Executions stepped per transaction [default: 2000 for `flowc
    /// worker`, 1000 for `flowc serve`].
    #[arg(long)]
    batch: Option<usize>,
    /// How long a claim lives, in seconds: work a killed worker held is
    /// taken over by another this long after it was claimed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    lease: u64,
}

impl WorkerFlags {
    fn check(&self, db: &Database) -> Result<(), Fatal> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(Fatal(format!("--fail-rate must be between 0 and 1, not {}", self.fail_rate)));
        }
        if self.batch == Some(0) {
            return Err(Fatal("--batch must be at least 1".into()));
        }
        if !(1..=3600).contains(&self.lease) {
            return Err(Fatal(format!("--lease must be 1 to 3600 seconds, not {}", self.lease)));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(Fatal(format!("--concurrency must be 1 to 64, not {}", self.concurrency)));
        }
        if self.concurrency > 1 && matches!(db, Database::File(_)) {
            return Err(Fatal(format!(
                "--concurrency {}: `{db}` is a SQLite file, which has one writer; use PostgreSQL (--db postgres://…) for several workers",
                self.concurrency
            )));
        }
        Ok(())
    }

    fn provider(&self, db: &Database) -> Result<Box<dyn Provider + Send>, Fatal> {
        Ok(match &self.webhook {
            Some(url) => Box::new(webhook::Webhook::new(webhook::WebhookConfig {
                url: url.clone(),
                timeout: std::time::Duration::from_millis(self.webhook_timeout_ms),
            })),
            None => Box::new(
                Simulated::open_log(
                    &db.provider_log(self.provider_log.as_deref()),
                    SimConfig { seed: self.seed, fail_rate: self.fail_rate, ..SimConfig::default() },
                )
                .map_err(|e| Fatal(e.to_string()))?,
            ),
        })
    }

    fn config(&self, until: Until, host: Host) -> RunnerConfig {
        let batch = self.batch.unwrap_or(match host {
            Host::Worker => 2000,
            // A batch's transactions hold SQLite's write lock, which the
            // API triggers' group commits wait for: smaller batches keep
            // the triggers' p99 latency down (13 ms against 20 ms at 2000
            // in the serve bench, at the same requests/s).
            Host::Service => 1000,
        });
        RunnerConfig {
            engine: EngineConfig { batch, ..EngineConfig::default() },
            campaigns: self.campaigns.clone(),
            until,
        }
    }
}

/// Which command runs the interpreter threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// `flowc worker`: nothing else writes in this process.
    Worker,
    /// `flowc serve`: the API's handlers write beside them.
    Service,
}

/// Starts `flags.concurrency` interpreter threads on `db`, each with its
/// own store, provider and claims; they stop when `stop` is set (or, with
/// `Until::Idle`, when nothing is left to run).
pub fn start(
    db: &Database,
    flags: &WorkerFlags,
    clock: &SharedClock,
    until: Until,
    host: Host,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, Fatal> {
    flags.check(db)?;
    let process = WorkerId::this_process();
    let mut threads = Vec::new();
    for i in 0..flags.concurrency {
        let store = db.open(OpenMode::ReadWrite)?;
        let provider = flags.provider(db)?;
        let lease = Lease { worker: WorkerId(format!("{}-{i}", process.0)), ttl_ms: flags.lease as i64 * 1000 };
        let (clock, stop, config) = (clock.clone(), stop.clone(), flags.config(until, host));
        let t = std::thread::Builder::new()
            .name(format!("flowc-worker-{i}"))
            .spawn(move || runner::run(store, provider, clock, config, lease, stop))
            .map_err(|e| Fatal(format!("cannot start a worker thread: {e}")))?;
        threads.push(t);
    }
    Ok(threads)
}

/// Each `--campaign` names a campaign of `db`. One not launched yet is
/// refused when the run stops once idle (it could never run), and only
/// reported to a worker that waits: it runs once launched. Checked before
/// anything else touches the database (a virtual clock is saved there).
pub fn named_campaigns_exist(db: &Database, flags: &WorkerFlags, until: Until) -> Result<(), Fatal> {
    if flags.campaigns.is_empty() {
        return Ok(());
    }
    let store = db.open(OpenMode::ReadWrite)?;
    for name in &flags.campaigns {
        if store.campaign(name).map_err(|e| Fatal(e.to_string()))?.is_some() {
            continue;
        }
        match until {
            Until::Idle => return Err(Fatal(format!("no campaign `{name}` in `{db}` (launch it first)"))),
            Until::Stopped => errln!("flowc: no campaign `{name}` in `{db}` yet; it runs once launched"),
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    db: super::DbArg,
    #[command(flatten)]
    flags: WorkerFlags,
    /// `real`: the wall clock; `virtual`: the database's simulated clock,
    /// which jumps to the next due time once no worker has work in hand.
    #[arg(long, value_enum, default_value_t = ClockArg::Real)]
    clock: ClockArg,
    /// Where a virtual clock starts when the database has none yet.
    #[arg(long)]
    start: Option<String>,
    /// Stop once no campaign is RUNNING and nothing is scheduled (a batch
    /// job), instead of waiting for more work.
    #[arg(long)]
    until_idle: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ClockArg {
    Real,
    Virtual,
}

/// The clock of a worker or a server on `db`: a virtual clock on a
/// database several processes share is kept in the database.
pub fn clock(db: &Database, kind: ClockArg, start: Option<&str>, alone: Kept) -> Result<SharedClock, Fatal> {
    let start = match start {
        Some(s) => Some(
            flowc::runtime::facts::parse_datetime(s)
                .ok_or_else(|| Fatal(format!("--start: `{s}` is not a datetime like 2026-11-27T09:00:00Z")))?,
        ),
        None => None,
    };
    Ok(match (kind, db, alone) {
        (ClockArg::Real, _, _) => SharedClock::real(),
        (ClockArg::Virtual, Database::File(_), Kept::InProcess) => {
            SharedClock::virtual_at(start.unwrap_or_else(flowc::runtime::clock::real_now))
        }
        (ClockArg::Virtual, _, _) => {
            let mut store = db.open(OpenMode::ReadWrite)?;
            let at = flowc::runtime::run::virtual_now(store.as_ref(), start).map_err(|e| Fatal(e.to_string()))?;
            SharedClock::virtual_in_database(store.as_mut(), at).map_err(|e| Fatal(e.to_string()))?
        }
    })
}

pub use flowc::service::runner::Kept;

pub fn run(a: WorkerArgs) -> Result<Outcome, Fatal> {
    let db = a.db.resolve(None)?;
    a.flags.check(&db)?;
    let until = if a.until_idle { Until::Idle } else { Until::Stopped };
    named_campaigns_exist(&db, &a.flags, until)?;
    let clock = clock(&db, a.clock, a.start.as_deref(), Kept::InDatabase)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // SIGTERM or Ctrl-C: every thread finishes its batch, then stops.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let threads = start(&db, &a.flags, &clock, until, Host::Worker, &stop)?;
    errln!("flowc worker: running `{db}` with {} thread(s)", threads.len());
    for t in threads {
        let _ = t.join();
    }
    errln!("flowc worker: stopped");
    Ok(Outcome::Ok)
}
