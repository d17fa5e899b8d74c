//! Reach and cost where campaigns are written: the audience size and the
//! expected cost above each campaign (a code lens), a segment's size on
//! hover, the per-step estimate on demand, from the database the workspace
//! names (`database` in `flowc.toml`, or the client's `database` setting).
//!
//! Estimates are made on a thread of their own, never on the main loop: a
//! lens request answers with what is known now and asks for it again; when
//! an answer changes, the client is asked to refresh its lenses. So a
//! slow database never delays diagnostics, and a database that cannot be
//! read shows nothing (no lens, no error). What the thread computes goes
//! through `estimate::cache::estimate_kept`, the path of `flowc estimate`:
//! the same numbers, and an estimate the command made is found here too.

use crate::check::model::{self, Model};
use crate::compile::program::Program;
use crate::runtime::estimate::{self, cache, Estimate, Rates, Settings};
use crate::runtime::report::grouped;
use crate::runtime::run::{self, ClockKind};
use crate::runtime::step::Account;
use crate::runtime::store::DataVersion;
use crate::runtime::store::Store;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

/// How far back an event trigger's recorded events count: `flowc
/// estimate`'s default window, 30 days.
const EVENT_WINDOW_MINUTES: i64 = 30 * 24 * 60;

/// How many estimates are kept in memory (the versions of the campaigns
/// being written); past it they are forgotten and made again if asked.
const KNOWN_AT_MOST: usize = 256;

/// One estimate asked for: a program (by its cache key, which covers the
/// program and the settings) over one database file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ask {
    db: PathBuf,
    program: cache::Key,
}

struct Job {
    ask: Ask,
    program: Program,
    settings: Settings,
}

/// What the estimating thread found for an `Ask`.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    Estimated(Box<Estimate>),
    /// The database could not be opened or read: nothing is shown.
    Unreadable,
}

impl Known {
    /// What the editor shows of it.
    fn shown(&self) -> Option<&Estimate> {
        match self {
            Known::Estimated(e) => Some(e),
            Known::Unreadable => None,
        }
    }
}

/// Opens a database read-only for estimates; the command that starts the
/// server chooses the store (the editor never creates or locks one).
pub type Opener = Arc<dyn Fn(&Path) -> Option<Box<dyn Store>> + Send + Sync>;

/// Estimates known so far and the thread that makes them.
pub struct Reach {
    known: Arc<Mutex<HashMap<Ask, Known>>>,
    queued: Arc<Mutex<HashSet<Ask>>>,
    /// The version of each campaign (per database) last asked for: a job
    /// for an older version, still queued while the author types, is
    /// skipped instead of estimated.
    latest: Arc<Mutex<HashMap<(PathBuf, String), cache::Key>>>,
    jobs: Option<Sender<Job>>,
    changed: Arc<dyn Fn() + Send + Sync>,
    open: Opener,
}

impl Reach {
    /// `changed` is called (on the estimating thread) when an answer
    /// changed: the session asks the client to refresh its lenses.
    pub fn new(open: Opener, changed: impl Fn() + Send + Sync + 'static) -> Reach {
        Reach {
            known: Arc::default(),
            queued: Arc::default(),
            latest: Arc::default(),
            jobs: None,
            changed: Arc::new(changed),
            open,
        }
    }

    /// The estimate of `program` over `db` as known now (`None` while it is
    /// being made, or when the database cannot be read), and asks for it
    /// again off the main loop: the data may have changed since.
    pub fn ask(&mut self, db: &Path, program: &Program, model: &Model) -> Option<Estimate> {
        let settings = settings(model);
        let ask = Ask {
            db: db.to_path_buf(),
            program: cache::key(program, run::ClockSource::AfterNewestContact, &settings, DataVersion(0)),
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert((db.to_path_buf(), program.campaign.clone()), ask.program.clone());
        }
        let fresh = self.queued.lock().map(|mut q| q.insert(ask.clone())).unwrap_or(false);
        if fresh {
            let job = Job { ask: ask.clone(), program: program.clone(), settings };
            if let Some(jobs) = self.sender() {
                // A stopped thread only means no more estimates.
                let _ = jobs.send(job);
            }
        }
        self.known.lock().ok()?.get(&ask).and_then(Known::shown).cloned()
    }

    /// The sender to the estimating thread, started on first use.
    fn sender(&mut self) -> Option<&Sender<Job>> {
        if self.jobs.is_none() {
            let (tx, rx) = channel::<Job>();
            let known = self.known.clone();
            let queued = self.queued.clone();
            let changed = self.changed.clone();
            let open = self.open.clone();
            let latest = self.latest.clone();
            let started = std::thread::Builder::new().name("flowc-lsp-estimates".into()).spawn(move || {
                for job in rx {
                    if let Ok(mut q) = queued.lock() {
                        q.remove(&job.ask);
                    }
                    let current = latest.lock().ok().and_then(|l| {
                        l.get(&(job.ask.db.clone(), job.program.campaign.clone())).map(|k| *k == job.ask.program)
                    });
                    if current == Some(false) {
                        continue;
                    }
                    // An estimate that panics is a bug; the editor keeps working without it.
                    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(open.as_ref(), &job)))
                        .unwrap_or(Known::Unreadable);
                    // Only a change the editor shows asks it to refresh: a
                    // database that stays unreadable stays silent.
                    let shown = found.shown().cloned();
                    let before = known.lock().map(|mut k| {
                        // Versions typed and left behind are not kept for ever.
                        if k.len() >= KNOWN_AT_MOST {
                            k.clear();
                        }
                        k.insert(job.ask.clone(), found)
                    });
                    if before.is_ok_and(|b| b.as_ref().and_then(Known::shown) != shown.as_ref()) {
                        changed();
                    }
                }
            });
            self.jobs = started.ok().map(|_| tx);
        }
        self.jobs.as_ref()
    }
}

/// The estimate's settings for the editor: `flowc estimate`'s defaults.
fn settings(model: &Model) -> Settings {
    Settings {
        rates: Rates::default(),
        account: Account { approved_channels: None },
        event_window: EVENT_WINDOW_MINUTES,
        consent_messages: model.consent_messages(),
        walks: estimate::Walks::Shared,
    }
}

fn make(open: &(dyn Fn(&Path) -> Option<Box<dyn Store>> + Send + Sync), job: &Job) -> Known {
    let Some(store) = open(&job.ask.db) else { return Known::Unreadable };
    let Ok(clock) = run::clock_source(store.as_ref(), ClockKind::Virtual, None) else { return Known::Unreadable };
    let kept = cache::path_for(&job.ask.db);
    match cache::estimate_kept(store.as_ref(), Some(&kept), &job.program, clock, &job.settings) {
        Ok(e) => Known::Estimated(Box::new(e)),
        Err(_) => Known::Unreadable,
    }
}

/// `≈ 23,410 contacts · €105.30`: the lens above a campaign.
pub fn lens_title(e: &Estimate) -> String {
    let money = match e.cost.currency.as_str() {
        "EUR" => format!("€{}", grouped_cents(e.cost.expected)),
        other => format!("{} {other}", grouped_cents(e.cost.expected)),
    };
    format!("≈ {} · {money}", members(e.audience))
}

/// `23,410 contacts`, `1 contact`.
pub fn members(n: u64) -> String {
    format!("{} {}", grouped(n), if n == 1 { "contact" } else { "contacts" })
}

/// An amount with thousands grouped and two decimals: `1,234.50`.
fn grouped_cents(amount: f64) -> String {
    // Rounded as `flowc estimate` prints amounts (`{:.2}`), then grouped.
    let text = format!("{:.2}", amount.max(0.0));
    let (units, cents) = text.split_once('.').unwrap_or((&text, "00"));
    match units.parse::<u64>() {
        Ok(u) => format!("{}.{cents}", grouped(u)),
        Err(_) => text.clone(),
    }
}

/// The campaign a segment's size is estimated with: one that enrolls the
/// segment's members and does nothing, so its audience is the segment.
pub fn segment_campaign(
    segment: &model::Segment,
    file: crate::source::FileId,
    span: crate::source::Span,
) -> model::Campaign {
    model::Campaign {
        name: format!("segment {}", segment.name),
        display_name: None,
        trigger: model::Trigger::Manual,
        audience: Some(segment.expr.clone()),
        goal: None,
        exits: Vec::new(),
        on_ineligible: model::OnIneligible::default(),
        delivery: model::Delivery::default(),
        steps: Vec::new(),
        file,
        span,
        name_span: span,
    }
}

/// The per-step estimate as a document the editor opens.
pub fn document(e: &Estimate, db: &Path) -> String {
    format!(
        "Estimate of `{}` over {} (as `flowc estimate` computes it)\n\n{}",
        e.campaign,
        db.display(),
        estimate::human(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_with_two_decimals() {
        assert_eq!(grouped_cents(0.0), "0.00");
        assert_eq!(grouped_cents(105.3), "105.30");
        assert_eq!(grouped_cents(1234.5), "1,234.50");
    }
}
