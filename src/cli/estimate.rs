//! `flowc estimate`: audience size and projected cost before launch.

use super::build::build;
use super::{Fatal, Outcome};
use flowc::runtime::estimate::{self, cache, Rates, Settings};
use flowc::runtime::sqlite::SqliteStore;
use flowc::runtime::step::Account;
use flowc::runtime::store::Store;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct EstimateArgs {
    /// The campaign's .flow file.
    file: PathBuf,
    /// Which campaign, when the file has several.
    #[arg(long)]
    campaign: Option<String>,
    #[command(flatten)]
    db: super::DbArg,
    /// Estimate over these contacts (JSON Lines or CSV) instead of the database's.
    #[arg(long)]
    contacts: Option<PathBuf>,
    /// How to print the estimate: for people, or JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// The time the estimate is made at; the same clock as `flowc run` and
    /// `flowc campaign start`, so what is estimated is what gets enrolled.
    #[command(flatten)]
    clock: super::run::ClockArgs,
    /// For an event trigger: how far back recorded events count, e.g. `30d`, `1w`, `1d 12h`.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    window: String,
    /// Expected engagement rates, each of the previous stage.
    #[arg(long, default_value_t = 0.97)]
    delivered_rate: f64,
    /// Expected share of delivered messages that are opened.
    #[arg(long, default_value_t = 0.45)]
    open_rate: f64,
    /// Expected share of opened messages that are clicked.
    #[arg(long, default_value_t = 0.25)]
    click_rate: f64,
    /// Channels approved for the account, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    approve: Option<Vec<String>>,
    /// The platform's template registry export (JSON array).
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Draft templates do not block the estimate.
    #[arg(long)]
    allow_draft: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn run(a: EstimateArgs) -> Result<Outcome, Fatal> {
    for (name, r) in
        [("--delivered-rate", a.delivered_rate), ("--open-rate", a.open_rate), ("--click-rate", a.click_rate)]
    {
        if !(0.0..=1.0).contains(&r) {
            return Err(Fatal(format!("{name} must be between 0 and 1, not {r}")));
        }
    }
    let window = parse_duration(&a.window)
        .filter(|m| *m > 0)
        .ok_or_else(|| Fatal(format!("--window: `{}` is not a duration like 30d, 1w or 1d 12h", a.window)))?;
    let built = match build(
        &a.file,
        a.campaign.as_deref(),
        a.templates.as_deref(),
        super::build::Drafts::from_flag(a.allow_draft),
    )? {
        Ok(b) => b,
        Err(o) => return Ok(o),
    };
    let (store, db): (Box<dyn flowc::runtime::store::Store + Send>, Option<std::path::PathBuf>) = match &a.contacts {
        Some(file) => {
            let mut s = SqliteStore::open_in_memory().map_err(|e| Fatal(e.to_string()))?;
            let model = built.inputs.analysis.models.first().map(|(_, m)| m.clone()).unwrap_or_default();
            load_contacts(&mut s, file, &model)?;
            (Box::new(s), None)
        }
        None => {
            let db = a.db.resolve(Some(&a.file))?;
            // The cache of estimates lives beside a database file.
            let beside = match &db {
                super::db::Database::File(path) => Some(path.clone()),
                super::db::Database::Postgres(_) => None,
            };
            (db.open(flowc::runtime::sqlite::OpenMode::ReadOnly)?, beside)
        }
    };
    let clock = a.clock.source(store.as_ref())?;
    let settings = Settings {
        rates: Rates { delivered: a.delivered_rate, opened: a.open_rate, clicked: a.click_rate },
        account: Account { approved_channels: a.approve.clone() },
        event_window: window,
        consent_messages: built.inputs.analysis.models.first().map(|(_, m)| m.consent_messages()).unwrap_or_default(),
        walks: estimate::Walks::Shared,
    };
    let cache = db.as_deref().map(cache::path_for);
    let e = cache::estimate_kept(store.as_ref(), cache.as_deref(), &built.program, clock, &settings)
        .map_err(|e| Fatal(format!("estimate: {e}")))?;
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&e).map_err(|e| Fatal(e.to_string()))?),
        Format::Human => out!("{}", estimate::human(&e)),
    }
    Ok(Outcome::Ok)
}

fn load_contacts(store: &mut dyn Store, file: &Path, model: &flowc::check::model::Model) -> Result<(), Fatal> {
    use flowc::runtime::contacts::{self, Format as F, Schema};
    let format =
        F::from_path(file).ok_or_else(|| Fatal(format!("`{}`: contacts are .jsonl or .csv files", file.display())))?;
    let bytes = flowc::files::read_regular(file, flowc::files::NO_LIMIT)
        .map_err(|e| Fatal(format!("cannot read `{}`: {e}", file.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Fatal(format!("`{}` is not UTF-8 (byte {})", file.display(), e.utf8_error().valid_up_to())))?;
    let parsed = contacts::parse(&text, format, &Schema::from_model(model));
    if let Some(e) = parsed.errors.first() {
        return Err(Fatal(format!(
            "{}: {e} ({})",
            file.display(),
            super::run::invalid_summary(parsed.invalid_rows(), parsed.rows, parsed.errors.len())
        )));
    }
    store.upsert_contacts(&parsed.contacts, &parsed.events).map_err(|e| Fatal(e.to_string()))
}

/// `2d`, `90m`, `1d 12h`: the language's duration syntax, in minutes.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut any = false;
    for part in s.split_whitespace() {
        let (n, unit) = part.split_at(part.len().saturating_sub(1));
        let size = match unit {
            "m" => 1,
            "h" => 60,
            "d" => 24 * 60,
            "w" => 7 * 24 * 60,
            _ => return None,
        };
        total = total.checked_add(n.parse::<i64>().ok()?.checked_mul(size)?)?;
        any = true;
    }
    any.then_some(total)
}
