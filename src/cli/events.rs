//! `flowc events import`, and the reading of an events file that
//! `flowc run --events` shares with it.

use super::run::InvalidRows;
use super::{Fatal, Outcome};
use flowc::runtime::contacts::{self, Schema};
use flowc::runtime::ingest::{self, EventFile, Incoming};
use flowc::runtime::sqlite::OpenMode;
use flowc::runtime::store::{self, Store};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum EventsCmd {
    /// Store contact events from JSON Lines (one `POST /v1/events` body a
    /// line), in one transaction, and wake the executions waiting on them.
    Import {
        /// The events: JSON Lines of `{"contact", "name", "at", "props"}`.
        file: PathBuf,
        #[command(flatten)]
        db: super::DbArg,
        /// Import the valid lines and report the others (default: nothing is imported if a line is invalid).
        #[arg(long)]
        skip_invalid: bool,
    },
}

/// The most errors printed; the rest are counted.
const SHOWN_ERRORS: usize = 50;

/// Reads and checks an events file against `schema` and the contacts of
/// `store`, printing its errors (the first 50, then how many more). An
/// absent `at` is `now`. `None` when it is refused: an invalid line without
/// `--skip-invalid`.
pub fn read(
    store: &dyn Store,
    file: &Path,
    schema: &Schema,
    now: i64,
    invalid: InvalidRows,
) -> Result<Option<Vec<Incoming>>, Fatal> {
    let (f, _) =
        flowc::files::open_regular(file).map_err(|e| Fatal(format!("cannot read `{}`: {e}", file.display())))?;
    let input = std::io::BufReader::new(f);
    let parsed = EventFile::read(input, schema, now, &mut |id| Ok(store.contact(id)?.is_some()))
        .map_err(|e| Fatal(format!("`{}`: {e}", file.display())))?;
    for e in parsed.errors.iter().take(SHOWN_ERRORS) {
        errln!("{}: {e}", file.display());
    }
    if parsed.errors.len() > SHOWN_ERRORS {
        errln!("{}: … and {} more errors", file.display(), parsed.errors.len() - SHOWN_ERRORS);
    }
    let bad = parsed.invalid_lines();
    if bad > 0 && invalid == InvalidRows::Refuse {
        errln!(
            "error: {bad} of {} line(s) in `{}` are invalid; nothing imported (use --skip-invalid to import the rest)",
            parsed.lines,
            file.display()
        );
        return Ok(None);
    }
    Ok(Some(parsed.events.into_iter().map(|(_, e)| e).collect()))
}

/// The schema events are checked against: what launches and contact
/// imports kept in the database, else the built-ins.
pub fn schema_of(store: &dyn Store) -> Result<Schema, Fatal> {
    Ok(contacts::stored_schema(store)
        .map_err(|e| Fatal(e.to_string()))?
        .unwrap_or_else(|| Schema::from_model(flowc::check::stdlib_model())))
}

pub fn events_cmd(cmd: EventsCmd) -> Result<Outcome, Fatal> {
    match cmd {
        EventsCmd::Import { file, db, skip_invalid } => {
            let db = db.resolve(None)?;
            let mut store = db.open(OpenMode::ReadWrite)?;
            let schema = schema_of(store.as_ref())?;
            let now = flowc::runtime::clock::real_now();
            let Some(events) = read(store.as_ref(), &file, &schema, now, InvalidRows::from_flag(skip_invalid))? else {
                return Ok(Outcome::Findings);
            };
            let done = store::atomically(store.as_mut(), |s: &mut dyn Store| ingest::ingest(s, &events, now))
                .map_err(|e| Fatal(format!("`{}`: {e}", file.display())))?;
            errln!(
                "imported {} event(s) from `{}`; {} waiting execution(s) woken, {} contact(s) enrolled by event triggers",
                events.len(),
                file.display(),
                done.woken,
                done.enrolled
            );
            Ok(Outcome::Ok)
        }
    }
}
