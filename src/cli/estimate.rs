//! `flowc estimate`: audience size and projected cost before launch.

use super::build::build;
use super::{Fatal, Outcome};
use flowc::runtime::estimate::{self, cache, Entry, Estimate, Rates, Settings};
use flowc::runtime::run;
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
        consent_messages: consent_messages(&built.inputs.analysis),
        walks: estimate::Walks::Shared,
    };
    // Read before the contacts: data written meanwhile makes the next
    // estimate miss this one, never find it stale.
    let fail = |e: flowc::runtime::store::StoreError| Fatal(format!("estimate: {e}"));
    let kept = match (db, store.data_version().map_err(fail)?) {
        (Some(db), Some(data)) => Some((cache::path_for(&db), cache::key(&built.program, clock, &settings, data))),
        _ => None,
    };
    let e = match kept.as_ref().and_then(|(path, key)| cache::load(path, key)) {
        Some(e) => e,
        None => {
            // The clock after the newest contact is a function of the data
            // (kept with the estimate); the wall clock, for a database whose
            // contacts have no creation, is not.
            let (now, keep) = match clock {
                run::ClockSource::At(now) => (now, Keep::Yes),
                run::ClockSource::AfterNewestContact => match store.newest_created_at().map_err(fail)? {
                    Some(newest) => (run::after_newest(Some(newest)), Keep::Yes),
                    None => (run::after_newest(None), Keep::No),
                },
            };
            let e = estimate::estimate(store.as_ref(), &built.program, now, &settings).map_err(fail)?;
            if let (Some((path, key)), Keep::Yes) = (&kept, keep) {
                // A cache that cannot be written (a read-only folder) only
                // costs the next estimate its time.
                let _ = cache::save(path, key, &e);
            }
            e
        }
    };
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&e).map_err(|e| Fatal(e.to_string()))?),
        Format::Human => out!("{}", human(&e)),
    }
    Ok(Outcome::Ok)
}

/// Whether an estimate may be kept for the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

/// The consent-requiring (channel, message type) pairs the workspace declares.
fn consent_messages(analysis: &flowc::check::Analysis) -> std::collections::BTreeSet<(String, String)> {
    let Some((_, model)) = analysis.models.first() else { return Default::default() };
    model
        .channels
        .values()
        .flat_map(|c| {
            c.messages.iter().filter(|(_, m)| m.requires_consent).map(|(name, _)| (c.name.clone(), name.clone()))
        })
        .collect()
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

pub fn human(e: &Estimate) -> String {
    let mut out = format!("campaign {}: audience {} contact(s), as of {}\n", e.campaign, e.audience, e.as_of);
    match &e.entry {
        Entry::Audience => {}
        Entry::Scheduled { at } => out.push_str(&format!("entering when the trigger fires, at {at}\n")),
        Entry::Event { event, window, since } => out.push_str(&format!(
            "entering: contacts with a recorded `{event}` matching the trigger, in the {window} before (since {since}); --window changes it\n"
        )),
    }
    out.push('\n');
    let w = e.steps.iter().map(|s| s.id.chars().count()).max().unwrap_or(4).max(4);
    // As wide as the longest kind (`wait_until`), so the numbers line up.
    let kw = e.steps.iter().map(|s| s.kind.chars().count()).max().unwrap_or(4).max(4);
    out.push_str(&format!("{:<w$}  {:<kw$}  {:>10}  {:>12}  {:>10}\n", "step", "kind", "min", "expected", "max"));
    for s in &e.steps {
        out.push_str(&format!(
            "{:<w$}  {:<kw$}  {:>10.0}  {:>12.1}  {:>10.0}\n",
            s.id, s.kind, s.reach.min, s.reach.expected, s.reach.max
        ));
    }
    out.push('\n');
    for s in &e.sends {
        out.push_str(&format!(
            "{}.{}: {:.0} – {:.1} – {:.0} sends, {:.4} – {:.4} – {:.4} EUR\n",
            s.channel, s.message, s.sends.min, s.sends.expected, s.sends.max, s.cost.min, s.cost.expected, s.cost.max
        ));
    }
    out.push_str(&format!(
        "\ncost: min {:.4}, expected {:.4}, max {:.4} {}\n",
        e.cost.min, e.cost.expected, e.cost.max, e.cost.currency
    ));
    out
}
