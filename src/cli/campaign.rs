//! `flowc campaign …` and `flowc balance …`: operating campaigns in a database.

use super::build::build;
use super::run::ClockArgs;
use super::{Fatal, Outcome};
use flowc::compile::codec;
use flowc::runtime::lifecycle::{self, Launched};
use flowc::runtime::sqlite::OpenMode;
use flowc::runtime::store::ExecState;
use flowc::runtime::{clock, report};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CampaignCmd {
    /// Check, compile and launch a campaign (or a new version of one) into the database.
    Launch {
        /// The campaign's .flow file.
        file: PathBuf,
        /// Which campaign, when the file has several.
        #[arg(long)]
        campaign: Option<String>,
        #[command(flatten)]
        db: super::DbArg,
        /// The platform's template registry export (JSON array).
        #[arg(long, value_name = "FILE")]
        templates: Option<PathBuf>,
        /// Migrate even when executions wait at steps the new version removes (they are skipped).
        #[arg(long)]
        force: bool,
        /// Launch even when the expected cost exceeds the balance.
        #[arg(long)]
        accept_cost: bool,
        /// The time of the cost estimate and the launch (as for `flowc estimate`).
        #[command(flatten)]
        clock: ClockArgs,
    },
    /// Start a launched campaign with a manual trigger: enroll its audience now.
    Start {
        /// The campaign's id.
        name: String,
        #[command(flatten)]
        db: super::DbArg,
        /// When "now" is: the same clock as `flowc estimate` and `flowc run`.
        #[command(flatten)]
        clock: ClockArgs,
    },
    /// Pause a running campaign.
    Pause {
        /// The campaign's id.
        name: String,
        #[command(flatten)]
        db: super::DbArg,
        /// The audit log's time, by the same rule as launch and start.
        #[command(flatten)]
        clock: ClockArgs,
    },
    /// Resume a paused campaign (after an outage, with a probe send first).
    Resume {
        /// The campaign's id.
        name: String,
        #[command(flatten)]
        db: super::DbArg,
        /// The audit log's time, by the same rule as launch and start.
        #[command(flatten)]
        clock: ClockArgs,
    },
    /// State, executions per state, balance and the last transitions.
    Status {
        /// The campaign's id.
        name: String,
        #[command(flatten)]
        db: super::DbArg,
        /// How to print the status: for people, or JSON.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The old spelling of `--format json`.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// The run report of a campaign (as `flowc run --report` prints it),
    /// for any campaign of any database, whoever ran it: the steps,
    /// sends, A/B split, outcomes and cost so far.
    Report {
        /// The campaign's id.
        name: String,
        #[command(flatten)]
        db: super::DbArg,
        /// The simulated provider's delivery log, for what it saw (default:
        /// beside a SQLite file, else flowc.provider.log).
        #[arg(long, value_name = "PATH")]
        provider_log: Option<std::path::PathBuf>,
        /// How to print the report: for people, or JSON.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Every campaign in the database.
    List {
        #[command(flatten)]
        db: super::DbArg,
        /// How to print the list: a table for people, or JSON.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(clap::Subcommand)]
pub enum BalanceCmd {
    /// Add money to the prepaid balance (EUR). It never resumes a campaign.
    TopUp {
        /// The amount in EUR, e.g. 50 or 12.5.
        amount: f64,
        #[command(flatten)]
        db: super::DbArg,
    },
    /// Show the balance.
    Show {
        #[command(flatten)]
        db: super::DbArg,
        /// How to print the balance: for people, or JSON.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Top up AMOUNT whenever the balance falls below THRESHOLD (EUR); `--off` disables.
    AutoReload {
        /// Top up when the balance falls below this many EUR.
        #[arg(long)]
        threshold: Option<f64>,
        /// How many EUR each top-up adds.
        #[arg(long)]
        amount: Option<f64>,
        /// Turn auto-reload off.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        db: super::DbArg,
    },
}

/// How a read-only command prints what it read.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
}

fn micros(eur: f64, what: &str) -> Result<i64, Fatal> {
    flowc::runtime::store::micros_of_eur(eur)
        .ok_or_else(|| Fatal(format!("{what} must be an amount between 0 and 1,000,000,000 EUR, not {eur}")))
}

fn now() -> i64 {
    clock::real_now()
}

pub fn campaign_cmd(cmd: CampaignCmd) -> Result<Outcome, Fatal> {
    let fail = |e: lifecycle::LifecycleError| Fatal(e.to_string());
    match cmd {
        CampaignCmd::Launch { file, campaign, db, templates, force, accept_cost, clock } => {
            let db = db.resolve(Some(&file))?;
            // Launch is refused while the program has check errors or uses unpublished templates.
            let built = match build(&file, campaign.as_deref(), templates.as_deref(), super::build::Drafts::Block)? {
                Ok(b) => b,
                Err(o) => return Ok(o),
            };
            let mut store = db.open(OpenMode::ReadWrite)?;
            let at = clock.now(store.as_ref())?;
            if let flowc::compile::program::Trigger::Scheduled { at: when, zone } = &built.program.trigger {
                if flowc::runtime::run::scheduled_instant(when, zone).is_some_and(|t| t < at) {
                    return Err(Fatal(format!(
                        "`{}` is scheduled for {when} {zone}, which is before now ({}); pick a future time, or use `trigger manual` and `flowc campaign start`",
                        built.program.campaign,
                        flowc::runtime::estimate::rfc3339(at)
                    )));
                }
            }
            let e = flowc::runtime::estimate::estimate(store.as_ref(), &built.program, at, &Default::default())
                .map_err(|e| Fatal(format!("estimate: {e}")))?;
            out!("{}", flowc::runtime::estimate::human(&e));
            let balance = store.balance().map_err(|e| Fatal(e.to_string()))? as f64 / 1e6;
            if e.cost.expected > balance && !accept_cost {
                return Err(Fatal(format!(
                    "the expected cost {:.4} EUR exceeds the balance {balance:.4} EUR; top up, or pass --accept-cost",
                    e.cost.expected
                )));
            }
            let launched = lifecycle::launch(
                store.as_mut(),
                &built.program,
                if force { lifecycle::RemovedSteps::Skip } else { lifecycle::RemovedSteps::Refuse },
                at,
            )
            .map_err(fail)?;
            // The console shows the cost so far against this estimate.
            flowc::runtime::estimate::launched::keep(store.as_mut(), &built.program.version.0, &e)
                .map_err(|e| Fatal(e.to_string()))?;
            if let Some((_, model)) = built.inputs.analysis.models.first() {
                super::run::keep_schema(store.as_mut(), &flowc::runtime::contacts::Schema::from_model(model))?;
            }
            match launched {
                Launched::New => {
                    outln!("launched `{}` version {} (SCHEDULED)", built.program.campaign, built.program.version)
                }
                Launched::Migrated { moved, skipped, removed_steps } => {
                    outln!(
                        "launched `{}` version {}: {moved} execution(s) moved, {skipped} skipped",
                        built.program.campaign,
                        built.program.version
                    );
                    if !removed_steps.is_empty() {
                        outln!("removed steps: {}", removed_steps.join(", "));
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        CampaignCmd::Start { name, db, clock } => {
            let db = db.resolve(None)?;
            let mut store = db.open(OpenMode::ReadWrite)?;
            let row = store
                .campaign(&name)
                .map_err(|e| Fatal(e.to_string()))?
                .ok_or_else(|| Fatal(format!("no campaign `{name}` in `{}`", db)))?;
            let program = codec::from_binary(&row.program).map_err(|e| Fatal(e.to_string()))?;
            if !matches!(program.trigger, flowc::compile::program::Trigger::Manual) {
                return Err(Fatal(format!("`{name}` is not a manual campaign; its trigger starts it")));
            }
            let at = clock.now(store.as_ref())?;
            let n =
                flowc::runtime::run::start_enrolling(store.as_mut(), &program, "started by flowc campaign start", at)
                    .map_err(|e| Fatal(e.to_string()))?;
            outln!("`{name}` is RUNNING: {n} contact(s) enrolled");
            Ok(Outcome::Ok)
        }
        CampaignCmd::Pause { name, db, clock } => {
            let db = db.resolve(None)?;
            let mut store = db.open(OpenMode::ReadWrite)?;
            let at = clock.now(store.as_ref())?;
            lifecycle::pause(store.as_mut(), &name, at).map_err(fail_in(&db))?;
            outln!("`{name}` is PAUSED");
            Ok(Outcome::Ok)
        }
        CampaignCmd::Resume { name, db, clock } => {
            let db = db.resolve(None)?;
            let mut store = db.open(OpenMode::ReadWrite)?;
            let at = clock.now(store.as_ref())?;
            let from = lifecycle::resume(store.as_mut(), &name, at).map_err(fail_in(&db))?;
            outln!("`{name}` is RUNNING again (was {})", from.as_str());
            Ok(Outcome::Ok)
        }
        CampaignCmd::Status { name, db, format, json } => {
            let db = db.resolve(None)?;
            let store = db.open(OpenMode::ReadOnly)?;
            let row = store
                .campaign(&name)
                .map_err(|e| Fatal(e.to_string()))?
                .ok_or_else(|| Fatal(format!("no campaign `{name}` in `{}`", db)))?;
            let program = codec::from_binary(&row.program).map_err(|e| Fatal(e.to_string()))?;
            let r = report::build(store.as_ref(), &program, row.state.as_str(), Default::default(), now())
                .map_err(|e| Fatal(e.to_string()))?;
            let transitions = store.transitions(&name, 10).map_err(|e| Fatal(e.to_string()))?;
            if json || format == Format::Json {
                let t: Vec<_> = transitions
                    .iter()
                    .map(|t| serde_json::json!({"at": fmt_time(t.at), "from": t.from, "to": t.to, "why": t.reason}))
                    .collect();
                let v = serde_json::json!({"campaign": name, "state": row.state, "version": row.version, "executions": r.executions, "balance": r.balance, "transitions": t});
                outln!("{}", serde_json::to_string_pretty(&v).map_err(|e| Fatal(e.to_string()))?);
            } else {
                outln!("campaign {name} (version {}): {}", row.version, row.state);
                let states: Vec<String> = ExecState::ALL
                    .iter()
                    .map(|s| format!("{} {}", s.as_str(), r.executions.get(s.as_str()).copied().unwrap_or(0)))
                    .collect();
                outln!("executions: {}", states.join(", "));
                outln!("balance: {:.4} EUR", r.balance);
                outln!("last transitions:");
                for t in transitions {
                    outln!("  {}  {} → {}  ({})", fmt_time(t.at), t.from, t.to, t.reason);
                }
            }
            Ok(Outcome::Ok)
        }
        CampaignCmd::Report { name, db, provider_log, format } => {
            let db = db.resolve(None)?;
            let store = db.open(OpenMode::ReadOnly)?;
            let row = store
                .campaign(&name)
                .map_err(|e| Fatal(e.to_string()))?
                .ok_or_else(|| Fatal(format!("no campaign `{name}` in `{db}`")))?;
            let program = codec::from_binary(&row.program).map_err(|e| Fatal(e.to_string()))?;
            let log = db.provider_log(provider_log.as_deref());
            use flowc::runtime::provider::{Observed, Provider, Simulated};
            let observed = if log.exists() {
                Simulated::open_log(&log, Default::default()).map_err(|e| Fatal(e.to_string()))?.observed()
            } else if provider_log.is_some() {
                return Err(Fatal(format!("no provider log at `{}`", log.display())));
            } else {
                Observed::default()
            };
            // The database's simulated clock when it has one (as the run
            // that ended there reported), else the wall clock.
            let at = flowc::runtime::run::clock_now(
                store.as_ref(),
                match store.meta("clock").map_err(|e| Fatal(e.to_string()))? {
                    Some(_) => flowc::runtime::run::ClockKind::Virtual,
                    None => flowc::runtime::run::ClockKind::Real,
                },
                None,
            )
            .map_err(|e| Fatal(e.to_string()))?;
            let r = report::build(store.as_ref(), &program, row.state.as_str(), observed, at)
                .map_err(|e| Fatal(e.to_string()))?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r).map_err(|e| Fatal(e.to_string()))?),
                Format::Human => out!("{}", report::human(&r)),
            }
            Ok(Outcome::Ok)
        }
        CampaignCmd::List { db, format } => {
            let db = db.resolve(None)?;
            let store = db.open(OpenMode::ReadOnly)?;
            let campaigns = store.campaigns().map_err(|e| Fatal(e.to_string()))?;
            match format {
                Format::Json => {
                    let v: Vec<_> = campaigns
                        .iter()
                        .map(|c| serde_json::json!({"campaign": c.name, "state": c.state, "version": c.version}))
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&v).map_err(|e| Fatal(e.to_string()))?);
                }
                Format::Human if campaigns.is_empty() => {
                    outln!("no campaigns in `{}`; `flowc campaign launch FILE` adds one", db)
                }
                Format::Human => {
                    let w = campaigns.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).max("campaign".len());
                    outln!("{:<w$}  {:<18}  version", "campaign", "state");
                    for c in &campaigns {
                        outln!("{:<w$}  {:<18}  {}", c.name, c.state, c.version);
                    }
                }
            }
            Ok(Outcome::Ok)
        }
    }
}

fn fmt_time(minutes: i64) -> String {
    chrono::DateTime::from_timestamp(minutes * 60, 0)
        .map_or_else(|| minutes.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

pub fn balance_cmd(cmd: BalanceCmd) -> Result<Outcome, Fatal> {
    let db_err = |e: flowc::runtime::store::StoreError| Fatal(e.to_string());
    match cmd {
        BalanceCmd::TopUp { amount, db } => {
            let db = db.resolve(None)?;
            let m = micros(amount, "the top-up")?;
            if m == 0 {
                return Err(Fatal("a top-up must be more than 0 EUR".into()));
            }
            let mut store = db.open(OpenMode::ReadWrite)?;
            store.ledger_add(m, "top-up", now()).map_err(db_err)?;
            outln!(
                "balance: {:.4} EUR (paused campaigns stay paused; resume them explicitly)",
                store.balance().map_err(db_err)? as f64 / 1e6
            );
            Ok(Outcome::Ok)
        }
        BalanceCmd::Show { db, format } => {
            let db = db.resolve(None)?;
            let store = db.open(OpenMode::ReadOnly)?;
            let balance = store.balance().map_err(db_err)? as f64 / 1e6;
            let reload = store.auto_reload().map_err(db_err)?;
            match format {
                Format::Json => {
                    let reload = reload.map(|r| serde_json::json!({"threshold": r.threshold_micros as f64 / 1e6, "amount": r.amount_micros as f64 / 1e6}));
                    outln!("{}", serde_json::json!({"balance": balance, "currency": "EUR", "auto_reload": reload}));
                }
                Format::Human => {
                    outln!("{balance:.4} EUR");
                    if let Some(r) = reload {
                        outln!(
                            "auto-reload: top up {:.2} EUR when the balance falls below {:.2} EUR",
                            r.amount_micros as f64 / 1e6,
                            r.threshold_micros as f64 / 1e6
                        );
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        BalanceCmd::AutoReload { threshold, amount, off, db } => {
            let db = db.resolve(None)?;
            let mut store = db.open(OpenMode::ReadWrite)?;
            if off {
                store.set_auto_reload(None).map_err(db_err)?;
                outln!("auto-reload off");
                return Ok(Outcome::Ok);
            }
            let (Some(t), Some(a)) = (threshold, amount) else {
                return Err(Fatal("give --threshold and --amount (or --off)".into()));
            };
            let (t, a) = (micros(t, "--threshold")?, micros(a, "--amount")?);
            store
                .set_auto_reload(Some(flowc::runtime::store::AutoReload { threshold_micros: t, amount_micros: a }))
                .map_err(db_err)?;
            outln!(
                "auto-reload: top up {:.2} EUR when the balance falls below {:.2} EUR",
                a as f64 / 1e6,
                t as f64 / 1e6
            );
            Ok(Outcome::Ok)
        }
    }
}

/// A lifecycle error, naming the database asked when the campaign is not
/// there (as `start`, `status` and `report` do).
fn fail_in(db: &super::db::Database) -> impl Fn(lifecycle::LifecycleError) -> Fatal + '_ {
    move |e| match e {
        lifecycle::LifecycleError::NotFound(name) => Fatal(format!("no campaign `{name}` in `{db}` (launch it first)")),
        e => Fatal(e.to_string()),
    }
}
