//! A contacts file streamed into the store in one transaction (`flowc
//! contacts import`, `flowc run --contacts`). Chunks of rows are read in
//! file order, validated and prepared in the store's form on several
//! threads, then taken back in file order to be sifted (repeated ids) and
//! written a chunk at a time: the file is never held whole, only the chunks in
//! flight. A refused file (an invalid row, unless `InvalidRows::Skip`)
//! rolls the transaction back, so nothing of it stays.

use super::rows::{self, Identified, Row, Rows, Sift, Sifted, Unreadable};
use super::{store_schema, Format, RowError, Schema};
use crate::runtime::facts::ContactRecord;
use crate::runtime::store::{atomically, ContactForm, ContactId, EncodedContact, EventOf, Store, StoreError};
use crate::runtime::wake::{Fact, Waiting};
use std::io::BufRead;
use std::sync::{mpsc, Mutex};

/// What an import does with a file that has invalid rows (`--skip-invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRows {
    /// Nothing is imported.
    Refuse,
    /// The valid rows are imported and the others reported.
    Skip,
}

impl InvalidRows {
    pub fn from_flag(skip_invalid: bool) -> InvalidRows {
        if skip_invalid {
            InvalidRows::Skip
        } else {
            InvalidRows::Refuse
        }
    }
}

/// Whether the import keeps its schema in the database too (`contacts
/// import --schema`): in its own transaction, so a refused file leaves the
/// database exactly as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Keep,
    /// The database has it already, or it is the database's own.
    Kept,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub invalid: InvalidRows,
    pub declared: Declared,
    /// When the executions that a replaced contact concerns wake (minutes):
    /// a changed field may meet a `wait until` arm or an exit of a running
    /// campaign, and those wake in the import's transaction.
    pub wake_at: i64,
}

/// How many errors a report holds; the rest are only counted, so a file of
/// a million bad rows does not hold a million messages.
pub const SHOWN_ERRORS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The valid rows are stored (every row, or with `Skip` the valid ones).
    Imported,
    /// Nothing is stored: some rows are invalid.
    Refused,
    /// Nothing is stored: the file itself cannot be read as contacts (a CSV
    /// header that cannot be read or names a column twice); `shown` says why.
    NotContacts,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// Rows read (blank lines are not rows).
    pub rows: usize,
    /// Contacts stored.
    pub imported: usize,
    /// Rows with at least one error.
    pub invalid_rows: usize,
    /// Errors in all.
    pub errors: usize,
    /// The first `SHOWN_ERRORS` errors, in file order.
    pub shown: Vec<RowError>,
}

impl Report {
    fn new(outcome: Outcome) -> Report {
        Report { outcome, rows: 0, imported: 0, invalid_rows: 0, errors: 0, shown: Vec::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Unreadable(Unreadable),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the transaction ends early: it is rolled back in each case.
enum Stop {
    Failed(ImportError),
    Refused(Report),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(ImportError::Store(e))
    }
}

/// Imports the contacts of `input` into `store`: validated against
/// `schema`, written in one transaction, each contact with its events.
/// Invalid rows are reported; without `InvalidRows::Skip` nothing is
/// stored then. The `Err` is a file that cannot be read on or a store that
/// failed: nothing is stored either.
pub fn import<R: BufRead + Send>(
    store: &mut dyn Store,
    input: R,
    format: Format,
    schema: &Schema,
    options: Options,
) -> Result<Report, ImportError> {
    // The validating threads prepare each contact in the form the store
    // writes: the writer, which must run in file order, only binds.
    match store.contact_form() {
        ContactForm::Records => import_as::<ContactRecord, R>(store, input, format, schema, options),
        ContactForm::Encoded => import_as::<EncodedContact, R>(store, input, format, schema, options),
    }
}

/// A contact in a form a store writes.
trait Prepared: Identified + Send + 'static {
    fn of(c: ContactRecord) -> Self;
    fn write(store: &mut dyn Store, contacts: &[Self], events: &[EventOf]) -> Result<(), StoreError>
    where
        Self: Sized;
}

impl Prepared for ContactRecord {
    fn of(c: ContactRecord) -> Self {
        c
    }
    fn write(store: &mut dyn Store, contacts: &[Self], events: &[EventOf]) -> Result<(), StoreError> {
        store.upsert_contacts(contacts, events)
    }
}

impl Prepared for EncodedContact {
    fn of(c: ContactRecord) -> Self {
        EncodedContact::of(&c)
    }
    fn write(store: &mut dyn Store, contacts: &[Self], events: &[EventOf]) -> Result<(), StoreError> {
        store.upsert_encoded(contacts, events)
    }
}

fn import_as<C: Prepared, R: BufRead + Send>(
    store: &mut dyn Store,
    input: R,
    format: Format,
    schema: &Schema,
    options: Options,
) -> Result<Report, ImportError> {
    let rows = match Rows::open(input, format) {
        Ok(r) => r,
        Err(errors) => {
            let mut report = Report::new(Outcome::NotContacts);
            report.errors = errors.len();
            report.shown = errors.into_iter().take(SHOWN_ERRORS).collect();
            return Ok(report);
        }
    };
    // Written chunks are dropped on a thread of their own: freeing a
    // million contacts is work the writer, the import's bottleneck, need
    // not wait for.
    let (spent, to_free) = mpsc::sync_channel::<Spent<C>>(AHEAD);
    let freeing = std::thread::spawn(move || to_free.into_iter().for_each(drop));
    let ended = atomically(store, |s: &mut dyn Store| {
        if options.declared == Declared::Keep {
            store_schema(s, schema)?;
        }
        let waiting = Waiting::load(s)?;
        let mut writer =
            Writer { store: s, waiting, options, sift: Sift::default(), report: Report::new(Outcome::Imported), spent };
        in_file_order(rows, schema, &mut |chunk| writer.take(chunk))?;
        let mut report = writer.report;
        report.rows = writer.sift.rows;
        report.invalid_rows = writer.sift.invalid_rows;
        report.errors = writer.sift.errors;
        if report.invalid_rows > 0 && options.invalid == InvalidRows::Refuse {
            report.outcome = Outcome::Refused;
            report.imported = 0;
            return Err(Stop::Refused(report));
        }
        Ok(report)
    });
    // The writer (and its end of the channel) is gone: the thread ends.
    let _ = freeing.join();
    match ended {
        Ok(report) | Err(Stop::Refused(report)) => Ok(report),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// The import's side of the transaction: rows in file order, sifted,
/// errors kept (the first ones), contacts written a chunk at a time.
struct Writer<'s, C> {
    store: &'s mut dyn Store,
    waiting: Waiting,
    options: Options,
    sift: Sift,
    report: Report,
    spent: mpsc::SyncSender<Spent<C>>,
}

/// A written chunk, to be dropped elsewhere.
type Spent<C> = (Vec<C>, Vec<EventOf>);

impl<C: Prepared> Writer<'_, C> {
    fn take(&mut self, chunk: Vec<Row<C>>) -> Result<(), Stop> {
        let mut contacts: Vec<C> = Vec::with_capacity(chunk.len());
        let mut events = Vec::new();
        for row in chunk {
            match self.sift.sift(row) {
                Sifted::Valid(c, evs) => {
                    events.extend(evs.into_iter().map(|event| EventOf { contact: c.id().clone(), event }));
                    contacts.push(c);
                }
                Sifted::Invalid(errors) => {
                    let room = SHOWN_ERRORS.saturating_sub(self.report.shown.len());
                    self.report.shown.extend(errors.into_iter().take(room));
                }
            }
        }
        // A refused file is rolled back at the end: once a row is invalid,
        // the rest are only validated and counted, never written.
        let refusing = self.options.invalid == InvalidRows::Refuse && self.sift.invalid_rows > 0;
        if refusing || contacts.is_empty() {
            return Ok(());
        }
        C::write(self.store, &contacts, &events)?;
        let mut facts: Vec<(&ContactId, Fact<'_>)> = contacts.iter().map(|c| (c.id(), Fact::Record)).collect();
        facts.extend(events.iter().map(|e| (&e.contact, Fact::Event { name: &e.event.name })));
        self.waiting.wake(self.store, &facts, None, self.options.wake_at)?;
        self.report.imported += contacts.len();
        drop(facts);
        // Should the freeing thread be gone, the chunk drops here instead.
        let _ = self.spent.send((contacts, events));
        Ok(())
    }
}

/// Chunks waiting to be taken, per validating thread: enough to keep the
/// writer busy while the threads run ahead, few enough to hold little.
const AHEAD: usize = 2;

/// Reads `rows` chunk by chunk, validates the chunks on several threads and
/// hands them to `take` one at a time in file order. Stops at the first
/// error of reading or of `take`.
fn in_file_order<C: Prepared, R: BufRead + Send>(
    rows: Rows<R>,
    schema: &Schema,
    take: &mut dyn FnMut(Vec<Row<C>>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    // Each chunk gets a ticket, queued in file order while the reader is
    // held: the writer waits on the tickets in turn, whichever thread
    // validates which chunk.
    type Ticket<C> = mpsc::Receiver<Result<Vec<Row<C>>, Unreadable>>;
    let source = Mutex::new(Source { rows, ended: false });
    let (tickets, in_order) = mpsc::sync_channel::<Ticket<C>>(threads * AHEAD);
    std::thread::scope(|scope| {
        // Owned here, so returning early drops it: threads waiting to queue
        // a ticket then stop instead of waiting forever.
        let in_order = in_order;
        for _ in 0..threads {
            let tickets = tickets.clone();
            let source = &source;
            scope.spawn(move || loop {
                let (chunk, done) = {
                    let Ok(mut src) = source.lock() else { return };
                    if src.ended {
                        return;
                    }
                    let next = src.rows.next_chunk();
                    let (done, ticket) = mpsc::sync_channel(1);
                    match next {
                        Ok(Some(chunk)) => {
                            // The writer has stopped when its end is gone.
                            if tickets.send(ticket).is_err() {
                                return;
                            }
                            (chunk, done)
                        }
                        Ok(None) => {
                            src.ended = true;
                            return;
                        }
                        Err(e) => {
                            src.ended = true;
                            if tickets.send(ticket).is_ok() {
                                let _ = done.send(Err(e));
                            }
                            return;
                        }
                    }
                };
                // Prepared here, on as many threads as there are cores (a
                // record encoded is dropped here too): the writer only binds.
                let prepared = rows::validate(chunk, schema).into_iter().map(|r| r.map(C::of));
                let _ = done.send(Ok(prepared.collect()));
            });
        }
        drop(tickets);
        for ticket in in_order.iter() {
            // A ticket whose sender is gone belongs to a thread that
            // panicked: the scope reports the panic when it ends.
            let Ok(chunk) = ticket.recv() else { break };
            take(chunk.map_err(|e| Stop::Failed(ImportError::Unreadable(e)))?)?;
        }
        Ok(())
    })
}

struct Source<R: BufRead> {
    rows: Rows<R>,
    /// The file is read to its end, or cannot be read on.
    ended: bool,
}
