//! A contacts file read as chunks of rows, streaming (JSON Lines or CSV),
//! and each chunk's rows validated. Reading is sequential; validating a
//! chunk needs nothing but the chunk and the schema, so an import validates
//! chunks on several threads. `Sift` then takes the rows back in file
//! order: it finds repeated ids and counts rows and errors.

use super::{contact_id, csv_cell, record, Format, RowError, Schema};
use crate::check::model::Type;
use crate::runtime::facts::{ContactEvent, ContactRecord};
use crate::runtime::store::ContactId;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::ops::Range;
use std::sync::Arc;

/// The longest row read: a line of JSON Lines, a record of CSV. A longer
/// JSON Lines row is an error of its own and skipped without being held; a
/// longer CSV record makes the file unreadable (its end cannot be found
/// without holding it).
pub const MAX_ROW: usize = 1 << 20;

/// A chunk ends after this many rows or bytes: enough that handing it to
/// another thread costs nothing next to validating it, little enough that
/// the chunks in flight hold a few MiB.
const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 1 << 20;

/// Rows as read, before validation.
pub struct Chunk {
    /// The JSON Lines rows' text, one after the other.
    text: Vec<u8>,
    rows: Vec<Raw>,
    /// A CSV file's header row.
    columns: Option<Arc<Vec<String>>>,
}

enum Raw {
    /// A JSON Lines row: its line and its bytes in `Chunk::text`.
    Line { line: usize, span: Range<usize> },
    /// A CSV record and the line it starts on.
    Record { line: usize, record: csv::StringRecord },
    /// A row that could not be read as a row at all (too long, broken quoting).
    Unreadable(RowError),
}

/// A row validated against the schema.
pub enum Row<C = ContactRecord> {
    Valid {
        line: usize,
        contact: C,
        events: Vec<ContactEvent>,
    },
    /// With the id it gives, when it gives one: a later row with the same
    /// id is a repeat even when this one is invalid.
    Invalid {
        line: usize,
        id: Option<ContactId>,
        errors: Vec<RowError>,
    },
}

/// A file that cannot be read on (an I/O error, a CSV record over
/// `MAX_ROW`), and the line it stopped at.
#[derive(Debug)]
pub struct Unreadable {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A contacts file being read.
pub struct Rows<R: Read> {
    kind: Kind<R>,
}

enum Kind<R: Read> {
    JsonLines { input: R, line: usize },
    Csv { reader: csv::Reader<Capped<R>>, columns: Arc<Vec<String>> },
}

impl<R: BufRead> Rows<R> {
    /// Starts reading `input`; for CSV, reads the header row. The `Err` is
    /// the errors of a header that cannot be read or names a column twice:
    /// the file's own, so no row can be imported.
    pub fn open(input: R, format: Format) -> Result<Rows<R>, Vec<RowError>> {
        match format {
            Format::JsonLines => Ok(Rows { kind: Kind::JsonLines { input, line: 0 } }),
            Format::Csv => {
                // Whitespace around every cell (and header) is dropped, whatever the
                // column's type: ` 5` and ` pro` are read alike (docs/runtime.md).
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .trim(csv::Trim::All)
                    .from_reader(Capped { inner: input, read: 0 });
                let headers: Vec<String> = match reader.headers() {
                    Ok(h) => h.iter().map(str::to_string).collect(),
                    Err(e) => {
                        return Err(vec![RowError {
                            line: 1,
                            field: None,
                            message: format!("cannot read the header row: {e}"),
                        }])
                    }
                };
                let mut first: HashMap<&str, usize> = HashMap::new();
                let mut errors = Vec::new();
                for (i, h) in headers.iter().enumerate() {
                    if let Some(earlier) = first.insert(h, i + 1) {
                        errors.push(RowError {
                            line: 1,
                            field: None,
                            message: format!("column `{h}` appears twice (columns {earlier} and {})", i + 1),
                        });
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(Rows { kind: Kind::Csv { reader, columns: Arc::new(headers) } })
            }
        }
    }

    /// The next rows, `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, Unreadable> {
        let chunk = match &mut self.kind {
            Kind::JsonLines { input, line } => json_chunk(input, line)?,
            Kind::Csv { reader, columns } => csv_chunk(reader, columns)?,
        };
        Ok((!chunk.rows.is_empty()).then_some(chunk))
    }
}

fn io_error(line: usize, e: std::io::Error) -> Unreadable {
    Unreadable { line, message: format!("cannot read the file: {e}") }
}

fn json_chunk(input: &mut impl BufRead, line: &mut usize) -> Result<Chunk, Unreadable> {
    let mut chunk = Chunk { text: Vec::with_capacity(CHUNK_BYTES + 4096), rows: Vec::new(), columns: None };
    let text = &mut chunk.text;
    while chunk.rows.len() < CHUNK_ROWS && text.len() < CHUNK_BYTES {
        let start = text.len();
        let n = input.by_ref().take(MAX_ROW as u64 + 1).read_until(b'\n', text).map_err(|e| io_error(*line + 1, e))?;
        if n == 0 {
            break;
        }
        *line += 1;
        if n > MAX_ROW && text.last() != Some(&b'\n') {
            text.truncate(start);
            skip_line(input).map_err(|e| io_error(*line, e))?;
            chunk.rows.push(Raw::Unreadable(RowError {
                line: *line,
                field: None,
                message: format!("the row is longer than {MAX_ROW} bytes"),
            }));
            continue;
        }
        let mut end = text.len();
        for ending in [b'\n', b'\r'] {
            if end > start && text[end - 1] == ending {
                end -= 1;
            }
        }
        if is_blank(&text[start..end]) {
            text.truncate(start);
            continue;
        }
        chunk.rows.push(Raw::Line { line: *line, span: start..end });
    }
    Ok(chunk)
}

/// Reads past the rest of an over-long line without holding it.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// A line of whitespace only (blank lines are skipped, not rows).
fn is_blank(bytes: &[u8]) -> bool {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        // A row starts with `{` (or is wrong anyway): no need to decode it here.
        Some(b) if b.is_ascii() => false,
        Some(_) => std::str::from_utf8(bytes).is_ok_and(|t| t.trim().is_empty()),
    }
}

fn csv_chunk<R: Read>(reader: &mut csv::Reader<Capped<R>>, columns: &Arc<Vec<String>>) -> Result<Chunk, Unreadable> {
    let mut chunk = Chunk { text: Vec::new(), rows: Vec::new(), columns: Some(columns.clone()) };
    let mut bytes = 0;
    while chunk.rows.len() < CHUNK_ROWS && bytes < CHUNK_BYTES {
        reader.get_mut().read = 0;
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                bytes += record.as_slice().len();
                chunk.rows.push(Raw::Record { line, record });
            }
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    let line = reader.position().line() as usize;
                    return Err(match io.get_ref().and_then(|inner| inner.downcast_ref::<TooLong>()) {
                        Some(_) => Unreadable { line, message: format!("a row is longer than {MAX_ROW} bytes") },
                        None => Unreadable { line, message: format!("cannot read the file: {io}") },
                    });
                }
                let line = e.position().map_or(0, |p| p.line() as usize);
                chunk.rows.push(Raw::Unreadable(RowError { line, field: None, message: e.to_string() }));
            }
        }
    }
    Ok(chunk)
}

/// The CSV reader's input, refusing to read on once one record has taken
/// more than `MAX_ROW` bytes (give or take the reader's own buffer): a
/// record's end cannot be found without reading it whole.
struct Capped<R> {
    inner: R,
    /// Bytes read since the last record ended.
    read: usize,
}

#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a row is longer than {MAX_ROW} bytes")
    }
}

impl std::error::Error for TooLong {}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read > MAX_ROW {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, TooLong));
        }
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

/// Validates a chunk's rows against `schema`, in file order.
pub fn validate(chunk: Chunk, schema: &Schema) -> Vec<Row> {
    let Chunk { text, rows, columns } = chunk;
    rows.into_iter()
        .map(|raw| match raw {
            Raw::Line { line, span } => json_row(line, &text[span], schema),
            Raw::Record { line, record } => {
                csv_row(line, &record, columns.as_deref().map_or(&[], Vec::as_slice), schema)
            }
            Raw::Unreadable(e) => Row::Invalid { line: e.line, id: None, errors: vec![e] },
        })
        .collect()
}

fn invalid(line: usize, message: String) -> Row {
    Row::Invalid { line, id: None, errors: vec![RowError { line, field: None, message }] }
}

fn json_row(line: usize, bytes: &[u8], schema: &Schema) -> Row {
    let Ok(text) = std::str::from_utf8(bytes) else { return invalid(line, "the row is not UTF-8".into()) };
    let obj = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return invalid(line, "expected a JSON object".into()),
        Err(e) => return invalid(line, format!("invalid JSON: {e}")),
    };
    let id = contact_id(&obj);
    match record(line, obj, schema, super::as_given) {
        Ok((contact, events)) => Row::Valid { line, contact, events },
        Err(errors) => Row::Invalid { line, id, errors },
    }
}

fn csv_row(line: usize, rec: &csv::StringRecord, columns: &[String], schema: &Schema) -> Row {
    let mut obj = Map::new();
    for (h, cell) in columns.iter().zip(rec.iter()) {
        if cell.is_empty() {
            continue;
        }
        let set = |c: &str| {
            Value::Array(
                c.split(';').map(str::trim).filter(|x| !x.is_empty()).map(|x| Value::String(x.to_string())).collect(),
            )
        };
        let v = match h.as_str() {
            "tags" | "consent" | "capabilities" => set(cell),
            _ => match schema.fields.get(h).map(|f| &f.ty) {
                Some(Type::SetString) => set(cell),
                _ => Value::String(cell.to_string()),
            },
        };
        obj.insert(h.clone(), v);
    }
    let id = contact_id(&obj);
    match record(line, obj, schema, csv_cell) {
        Ok((contact, events)) => Row::Valid { line, contact, events },
        Err(errors) => Row::Invalid { line, id, errors },
    }
}

/// A contact as a row carries it: as validated, or encoded for the store.
pub trait Identified {
    fn id(&self) -> &ContactId;
}

impl Identified for ContactRecord {
    fn id(&self) -> &ContactId {
        &self.id
    }
}

impl Identified for crate::runtime::store::EncodedContact {
    fn id(&self) -> &ContactId {
        &self.id
    }
}

impl<C> Row<C> {
    /// The row with its contact in another form (`f`), errors as they are.
    pub fn map<D>(self, f: impl FnOnce(C) -> D) -> Row<D> {
        match self {
            Row::Valid { line, contact, events } => Row::Valid { line, contact: f(contact), events },
            Row::Invalid { line, id, errors } => Row::Invalid { line, id, errors },
        }
    }
}

/// A row after `Sift`: a contact to store, or why not.
pub enum Sifted<C = ContactRecord> {
    Valid(C, Vec<ContactEvent>),
    /// Every error of the row, a repeated id first.
    Invalid(Vec<RowError>),
}

/// Takes validated rows in file order: a contact id given on an earlier
/// row makes the row invalid (a file gives each contact once, so which of
/// two rows is meant is never guessed); counts rows, invalid rows and errors.
#[derive(Default)]
pub struct Sift {
    seen: SeenIds,
    /// Rows read (blank lines are not rows).
    pub rows: usize,
    /// Rows with at least one error.
    pub invalid_rows: usize,
    pub errors: usize,
}

impl Sift {
    pub fn sift<C: Identified>(&mut self, row: Row<C>) -> Sifted<C> {
        self.rows += 1;
        let (line, id) = match &row {
            Row::Valid { line, contact, .. } => (*line, Some(contact.id())),
            Row::Invalid { line, id, .. } => (*line, id.as_ref()),
        };
        let again = id.and_then(|id| self.seen.again(id, line));
        let errors = match (row, again) {
            (Row::Valid { contact, events, .. }, None) => return Sifted::Valid(contact, events),
            (Row::Valid { .. }, Some(e)) => vec![e],
            (Row::Invalid { errors, .. }, again) => again.into_iter().chain(errors).collect(),
        };
        self.invalid_rows += 1;
        self.errors += errors.len();
        Sifted::Invalid(errors)
    }
}

/// The first line each contact id was seen on. The ids are kept end to end
/// in one string and the table holds indices, so a million ids take tens
/// of MB, not a String and a map entry each. The table keeps each id's
/// hash beside its index, so growing it rehashes without reading the ids.
#[derive(Default)]
struct SeenIds {
    text: String,
    /// Each id's start in `text` (it ends where the next starts) and its line.
    ids: Vec<(usize, usize)>,
    table: hashbrown::HashTable<(u64, usize)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl SeenIds {
    fn id(&self, i: usize) -> &str {
        let end = self.ids.get(i + 1).map_or(self.text.len(), |n| n.0);
        &self.text[self.ids[i].0..end]
    }

    /// The error of a repeat of an id seen before; `None` (and the id
    /// noted) the first time.
    fn again(&mut self, id: &ContactId, line: usize) -> Option<RowError> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id.as_str());
        if let Some(&(_, i)) = self.table.find(hash, |&(h, i)| h == hash && self.id(i) == id.as_str()) {
            return Some(RowError {
                line,
                field: Some("id".into()),
                message: format!(
                    "contact `{id}` is also on line {}; each contact appears once in a file",
                    self.ids[i].1
                ),
            });
        }
        let i = self.ids.len();
        self.ids.push((self.text.len(), line));
        self.text.push_str(id.as_str());
        self.table.insert_unique(hash, (hash, i), |&(h, _)| h);
        None
    }
}
