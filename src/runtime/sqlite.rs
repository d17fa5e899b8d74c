//! The SQLite store: WAL, `synchronous=NORMAL`, versioned migrations.
//! All SQL of the runtime lives here, always with bound parameters.

use super::facts::{ContactEvent, ContactRecord, SentMessage};
use super::store::*;
use crate::compile::program::FieldDef;
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod checkpointer;
mod estimate;
mod halves;
pub mod segment;
pub(crate) mod typed;

/// Each entry migrates from schema `i` to `i + 1`; `user_version` records where a file is.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE contacts (
  id TEXT PRIMARY KEY,
  attrs TEXT NOT NULL,
  tags TEXT NOT NULL,
  consent TEXT NOT NULL,
  capabilities TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE contact_events (
  id INTEGER PRIMARY KEY,
  contact_id TEXT NOT NULL,
  name TEXT NOT NULL,
  at INTEGER NOT NULL,
  props TEXT NOT NULL
);
CREATE INDEX contact_events_by_contact ON contact_events (contact_id, name, at);
CREATE TABLE campaigns (
  name TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  program BLOB NOT NULL,
  state TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE campaign_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  program BLOB NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE campaign_transitions (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  at INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  why TEXT NOT NULL
);
CREATE TABLE executions (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  state TEXT NOT NULL,
  wake_at INTEGER,
  reason TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (campaign, contact_id)
) WITHOUT ROWID;
CREATE INDEX executions_due ON executions (campaign, state, wake_at);
CREATE TABLE outbox (
  key TEXT PRIMARY KEY,
  campaign TEXT NOT NULL,
  version TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  step TEXT NOT NULL,
  channel TEXT NOT NULL,
  message TEXT NOT NULL,
  template TEXT NOT NULL,
  price_micros INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  delivered_at INTEGER,
  opened_at INTEGER,
  clicked_at INTEGER,
  error TEXT
) WITHOUT ROWID;
CREATE INDEX outbox_by_contact ON outbox (campaign, contact_id);
CREATE INDEX outbox_pending ON outbox (campaign) WHERE status = 'pending';
CREATE TABLE ledger (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  amount_micros INTEGER NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE step_stats (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  entered INTEGER NOT NULL DEFAULT 0,
  sent INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  cost_micros INTEGER NOT NULL DEFAULT 0,
  skipped TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (campaign, step)
);
CREATE TABLE ab_stats (
  campaign TEXT NOT NULL,
  ab TEXT NOT NULL,
  variant TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (campaign, ab, variant)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
-- Schema 2: the outbox is keyed the way it is read (a contact's sends, by
-- campaign), so one b-tree serves inserts, outcomes and engagement look-ups;
-- the idempotency key is derived from that primary key, so it stays unique.
-- Pending rows are counted per campaign instead of indexed: recovery scans
-- only when the count says something is in flight.
CREATE TABLE outbox_v2 (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  step TEXT NOT NULL,
  version TEXT NOT NULL,
  channel TEXT NOT NULL,
  message TEXT NOT NULL,
  template TEXT NOT NULL,
  price_micros INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  delivered_at INTEGER,
  opened_at INTEGER,
  clicked_at INTEGER,
  error TEXT,
  key TEXT GENERATED ALWAYS AS (campaign || '/' || version || '/' || contact_id || '/' || step) VIRTUAL,
  PRIMARY KEY (campaign, contact_id, step, version)
) WITHOUT ROWID;
INSERT INTO outbox_v2 (campaign, contact_id, step, version, channel, message, template, price_micros, status, created_at, sent_at, delivered_at, opened_at, clicked_at, error)
  SELECT campaign, contact_id, step, version, channel, message, template, price_micros, status, created_at, sent_at, delivered_at, opened_at, clicked_at, error FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE TABLE outbox_inflight (campaign TEXT PRIMARY KEY, pending INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO outbox_inflight SELECT campaign, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY campaign;
"#,
    r#"
-- Schema 3: durable retries, claims, additive statistics, typed settings.
-- A failed attempt is recorded on its outbox row (attempts, next attempt);
-- only rows waiting for another attempt have `next_attempt_at`, so the
-- partial index stays as small as the retry queue.
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at INTEGER;
CREATE INDEX outbox_retry ON outbox (campaign, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- An execution whose sends are in flight is `processing`, claimed by a
-- worker, and takes `then_state` once they are accepted.
ALTER TABLE executions ADD COLUMN then_state TEXT;
ALTER TABLE executions ADD COLUMN claimed_by TEXT;
ALTER TABLE executions ADD COLUMN claimed_at INTEGER;
-- Skip counts were a JSON object rewritten by every batch; rows that are
-- only ever added to cannot lose a count to a concurrent writer.
CREATE TABLE step_skips (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  reason TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (campaign, step, reason)
) WITHOUT ROWID;
INSERT INTO step_skips (campaign, step, reason, count)
  SELECT s.campaign, s.step, j.key, j.value FROM step_stats s, json_each(s.skipped) j WHERE j.value > 0;
ALTER TABLE step_stats DROP COLUMN skipped;
CREATE TABLE breakers (
  campaign TEXT PRIMARY KEY,
  consecutive INTEGER NOT NULL,
  recent TEXT NOT NULL
);
CREATE TABLE account (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  reload_threshold_micros INTEGER,
  reload_amount_micros INTEGER
);
INSERT INTO account (id, reload_threshold_micros, reload_amount_micros)
  SELECT 1, CAST(substr(value, 1, instr(value, ',') - 1) AS INTEGER), CAST(substr(value, instr(value, ',') + 1) AS INTEGER)
  FROM meta WHERE key = 'auto_reload' AND instr(value, ',') > 0;
DELETE FROM meta WHERE key = 'auto_reload';
ALTER TABLE campaigns ADD COLUMN probe INTEGER NOT NULL DEFAULT 0;
UPDATE campaigns SET probe = 1 WHERE 'probe/' || name IN (SELECT key FROM meta);
DELETE FROM meta WHERE key LIKE 'probe/%';
"#,
    r#"
-- Schema 4: an event is stored once. Its idempotency key is its own `id`, or
-- a hash of contact, name, time and properties (`event_key`, registered on
-- the connection as `flowc_event_key`). Rows stored twice by earlier
-- versions (a file imported twice) share a key: the first one stays.
ALTER TABLE contact_events ADD COLUMN key TEXT;
UPDATE contact_events SET key = flowc_event_key(contact_id, name, at, props);
DELETE FROM contact_events WHERE id NOT IN (SELECT MIN(id) FROM contact_events GROUP BY key);
CREATE UNIQUE INDEX contact_events_by_key ON contact_events (key);
"#,
    r#"
-- Schema 5 (issue 18): journeys that react. An execution remembers when it
-- entered the campaign (exits by event and the goal's window count from
-- then; NULL for older rows: before everything) and, parked at a `wait
-- until`, when it entered that wait (its `when event` arms count events
-- from then). Each pass through an A/B split is recorded per contact, so
-- conversions are attributed per variant.
ALTER TABLE executions ADD COLUMN started_at INTEGER;
ALTER TABLE executions ADD COLUMN wait_since INTEGER;
CREATE TABLE ab_assignments (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  ab TEXT NOT NULL,
  variant TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (campaign, contact_id, ab)
) WITHOUT ROWID;
"#,
    r#"
-- Schema 6 (issue 19): delivery rules. A campaign's rate limiter keeps the
-- instant (ms since the epoch) its next message may go, written in the same
-- transaction as the outbox rows that took the slots before it. Sends held
-- by a rule (quiet hours, rate limit) are counted per step and reason.
CREATE TABLE rate_limits (
  campaign TEXT PRIMARY KEY,
  next_free_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE step_holds (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  reason TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (campaign, step, reason)
) WITHOUT ROWID;
"#,
    r#"
-- Schema 7 (issue 19): frequency caps and re-entry. Frequency caps count
-- the consent-requiring sends each contact was given, across campaigns, in
-- the store: one row per admitted send (its idempotency key), written in
-- the transaction of its outbox row, deleted when the send fails for good.
-- Keyed by contact and time, so a cap's count is one range of one contact.
CREATE TABLE capped_sends (
  contact_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  key TEXT NOT NULL,
  channel TEXT NOT NULL,
  PRIMARY KEY (contact_id, at, key)
) WITHOUT ROWID;
-- Re-entry: a contact may have several executions of a campaign, numbered
-- by `entry` (1, 2, …); the rows already here are entry 1. Its sends, A/B
-- assignments and outbox rows carry the entry too. The idempotency key of
-- entry 1 stays what it was (sends pending across the upgrade keep it);
-- a later entry's ends in `#<entry>`.
CREATE TABLE executions_v6 (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  state TEXT NOT NULL,
  wake_at INTEGER,
  reason TEXT,
  updated_at INTEGER NOT NULL,
  then_state TEXT,
  claimed_by TEXT,
  claimed_at INTEGER,
  started_at INTEGER,
  wait_since INTEGER,
  PRIMARY KEY (campaign, contact_id, entry)
) WITHOUT ROWID;
INSERT INTO executions_v6 (campaign, contact_id, entry, version, step, state, wake_at, reason, updated_at, then_state, claimed_by, claimed_at, started_at, wait_since)
  SELECT campaign, contact_id, 1, version, step, state, wake_at, reason, updated_at, then_state, claimed_by, claimed_at, started_at, wait_since FROM executions;
DROP TABLE executions;
ALTER TABLE executions_v6 RENAME TO executions;
CREATE INDEX executions_due ON executions (campaign, state, wake_at);
CREATE TABLE outbox_v6 (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  step TEXT NOT NULL,
  version TEXT NOT NULL,
  channel TEXT NOT NULL,
  message TEXT NOT NULL,
  template TEXT NOT NULL,
  price_micros INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  delivered_at INTEGER,
  opened_at INTEGER,
  clicked_at INTEGER,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  key TEXT GENERATED ALWAYS AS (campaign || '/' || version || '/' || contact_id || '/' || step || CASE WHEN entry = 1 THEN '' ELSE '#' || entry END) VIRTUAL,
  PRIMARY KEY (campaign, contact_id, entry, step, version)
) WITHOUT ROWID;
INSERT INTO outbox_v6 (campaign, contact_id, entry, step, version, channel, message, template, price_micros, status, created_at, sent_at, delivered_at, opened_at, clicked_at, error, attempts, next_attempt_at)
  SELECT campaign, contact_id, 1, step, version, channel, message, template, price_micros, status, created_at, sent_at, delivered_at, opened_at, clicked_at, error, attempts, next_attempt_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;
CREATE INDEX outbox_retry ON outbox (campaign, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE ab_assignments_v6 (
  campaign TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  ab TEXT NOT NULL,
  variant TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (campaign, contact_id, entry, ab)
) WITHOUT ROWID;
INSERT INTO ab_assignments_v6 (campaign, contact_id, entry, ab, variant, at)
  SELECT campaign, contact_id, 1, ab, variant, at FROM ab_assignments;
DROP TABLE ab_assignments;
ALTER TABLE ab_assignments_v6 RENAME TO ab_assignments;
"#,
    // Schema 8 (estimates at scale): a contact's attributes are kept as
    // SQLite's binary JSON, so `json_extract` reads a field without parsing
    // the text, and what every estimate and batch reads of each contact is
    // a typed column written with the attributes: `created_minute`
    // (`facts::parse_datetime` of `created_at`; the virtual clock starts
    // after the newest, a scan of one integer per row rather than an index
    // every import would pay for) and `addresses` (1: an email, 2: a phone, by
    // `facts::addresses_of`'s rule). `profile` is the tags, consent,
    // capabilities and addresses in one value (`typed::profile`, kept by
    // every write; not a generated column: SQLite's concatenation would
    // cost an import a second per million contacts): an estimate groups
    // contacts by it reading one column, not four. Text that is not JSON is kept as it is, so reading it still
    // names the row. `data_version` changes with every write of contacts,
    // contact events or sends: a cached estimate is valid while it has not
    // changed.
    r#"
CREATE TABLE contacts_v8 (
  id TEXT PRIMARY KEY,
  attrs BLOB NOT NULL,
  tags TEXT NOT NULL,
  consent TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  created_minute INTEGER,
  addresses INTEGER NOT NULL,
  profile TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO contacts_v8 (id, attrs, tags, consent, capabilities, created_minute, addresses, profile)
  SELECT id, attrs, tags, consent, capabilities, NULL, 0, flowc_profile(tags, consent, capabilities, 0)
  FROM contacts WHERE NOT json_valid(attrs);
INSERT INTO contacts_v8 (id, attrs, tags, consent, capabilities, created_minute, addresses, profile)
  SELECT id, attrs, tags, consent, capabilities, created_minute, addresses, flowc_profile(tags, consent, capabilities, addresses)
  FROM (SELECT id, jsonb(attrs) AS attrs, tags, consent, capabilities,
      flowc_minutes(json_extract(attrs, '$.created_at')) AS created_minute,
      (COALESCE(json_extract(attrs, '$.email'), '') <> '') + 2 * (COALESCE(json_extract(attrs, '$.phone'), '') <> '') AS addresses
    FROM contacts WHERE json_valid(attrs));
DROP TABLE contacts;
ALTER TABLE contacts_v8 RENAME TO contacts;
CREATE TABLE data_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  token INTEGER NOT NULL
);
INSERT INTO data_version (id, token) VALUES (1, random());
"#,
    // Schema 9 (API triggers at scale): an API trigger the service admitted
    // is queued here, in a small b-tree, and enrolled with its
    // `campaign.triggered` event by the campaign's next batch
    // (`drain_triggered`). Enrolled at once, each trigger wrote a page of
    // the executions' b-tree and one of the events' index at its contact's
    // place: with triggers for contacts scattered over the table, four
    // pages of the log per trigger; the runner's batch then writes
    // hundreds of queued triggers per commit, so a page takes many.
    // Keyed in the order it drains (oldest first), so a queue of any
    // length drains a batch at a time from its start; `seq` orders a
    // contact's triggers; `props` is the event's data (JSON). The index by
    // contact serves re-entry, `enrolled` and events.
    r#"
CREATE TABLE trigger_inbox (
  campaign TEXT NOT NULL,
  at INTEGER NOT NULL,
  contact_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  props TEXT NOT NULL,
  PRIMARY KEY (campaign, at, contact_id, seq)
) WITHOUT ROWID;
CREATE INDEX trigger_inbox_by_contact ON trigger_inbox (contact_id, campaign);
"#,
];

pub struct SqliteStore {
    // Declared before the lock so the connection closes (and checkpoints)
    // while the lock is still held.
    conn: Connection,
    _lock: Option<WriterLock>,
    /// The file's schema version: the latest for a writer (it migrates); a
    /// reader reads an older file as it is.
    schema: i64,
}

/// The first schema with the contacts' typed columns and `data_version`.
const TYPED_CONTACTS: i64 = 8;

/// How a command uses its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Creates and migrates the file if needed, and holds the writer's lock
    /// for the store's life: one writing process per database.
    ReadWrite,
    /// As `ReadWrite`, for a writer of many small transactions (the
    /// service's handlers): its page cache is smaller. After a b-tree split
    /// has renumbered a page, SQLite's commit walks the whole table of the
    /// cache (its size grows with the cache); at 64 MiB that walk was a
    /// fifth of the handlers' time.
    Handlers,
    /// An existing database, read beside a writer (WAL): no lock, never
    /// created, migrated or written.
    ReadOnly,
}

fn classify(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &e {
        if let Some(c) = inner.downcast_ref::<CorruptValue>() {
            return StoreError::CorruptRow { table: c.table, key: c.key.clone(), value: c.value.clone() };
        }
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked(e.to_string()),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

pub(crate) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A stored value that does not parse, with the row it sits in: carried
/// out of rusqlite's row closures and turned into `StoreError::CorruptRow`
/// by `classify`, so a bad value is reported, never read as a default.
#[derive(Debug)]
struct CorruptValue {
    table: &'static str,
    key: String,
    value: String,
}

impl std::fmt::Display for CorruptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt value in table `{}`, row `{}`: `{}`", self.table, self.key, self.value)
    }
}

impl std::error::Error for CorruptValue {}

fn corrupt(table: &'static str, key: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        Box::new(CorruptValue { table, key: key.to_string(), value: value.to_string() }),
    )
}

/// A JSON list of strings stored in `table`'s row `key`.
pub(super) fn parse_list(s: &str, table: &'static str, key: &str) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(s).map_err(|_| corrupt(table, key, s))
}

/// A JSON object stored in `table`'s row `key`.
pub(super) fn parse_map(
    s: &str,
    table: &'static str,
    key: &str,
) -> rusqlite::Result<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(s).map_err(|_| corrupt(table, key, s))
}

/// A campaigns row selected as `name, version, program, state`.
fn campaign_row(r: &rusqlite::Row) -> rusqlite::Result<CampaignRow> {
    let name: String = r.get(0)?;
    let state: String = r.get(3)?;
    let state = CampaignState::parse(&state).ok_or_else(|| corrupt("campaigns", &name, &state))?;
    Ok(CampaignRow { name, version: r.get(1)?, program: r.get(2)?, state })
}

/// The writer's lock of one database: an OS advisory lock (`flock`) on the
/// sidecar file `<db>.lock`. SQLite's own locks are per transaction, so two
/// processes could interleave whole runs (both enrolling, both sending); this
/// lock is per process and taken before the first statement. The kernel
/// drops it when the process ends, crash included. A sidecar rather than the
/// database itself, because on some systems whole-file locks and SQLite's
/// byte-range locks on one file interfere.
///
/// Stores of one process share the lock (`flowc serve` opens two on one
/// file), counted in `HELD`; the file closes, releasing the lock, when the
/// last of them drops.
struct WriterLock {
    key: PathBuf,
}

struct Held {
    key: PathBuf,
    /// Declared before the file: it stops (its connection closing, the
    /// last of the process on the file) before the lock is released.
    checkpointer: Option<checkpointer::Checkpointer>,
    _file: std::fs::File,
    users: usize,
}

static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn lock_path(db: &Path) -> PathBuf {
    beside(db, ".lock")
}

/// `db`'s name with `suffix` added: its lock, its log (`-wal`), its shared memory (`-shm`).
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Removes the files of a database that a command created and then
/// refused to fill (a contacts file refused whole): the file, its log, its
/// shared memory and its lock file. The store must be closed. Only for a
/// database the caller saw did not exist before it opened it.
pub fn remove_created(db: &Path) {
    for path in [beside(db, "-wal"), beside(db, "-shm"), db.to_path_buf(), lock_path(db)] {
        let _ = std::fs::remove_file(path);
    }
}

impl WriterLock {
    fn take(db: &Path) -> Result<WriterLock, StoreError> {
        let path = lock_path(db);
        let cannot =
            |e: std::io::Error| StoreError::Other(format!("cannot open the lock file `{}`: {e}", path.display()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(cannot)?;
        let key = std::fs::canonicalize(&path).map_err(cannot)?;
        // A poisoned registry is still a consistent list: every push and
        // count change is one statement.
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = held.iter_mut().find(|h| h.key == key) {
            h.users += 1;
            return Ok(WriterLock { key });
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(format!(
                    "`{}` is held; wait for that process to finish (or stop it), then try again",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Other(format!("cannot lock `{}`: {e}", path.display())))
            }
        }
        held.push(Held { key: key.clone(), checkpointer: None, _file: file, users: 1 });
        Ok(WriterLock { key })
    }
}

impl WriterLock {
    /// Starts the process's checkpointer of `db` (`checkpointer`), unless
    /// it runs: once a writer opened the database, never for a file that
    /// was refused.
    fn checkpoint_in_background(&self, db: &Path) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = held.iter_mut().find(|h| h.key == self.key) {
            if h.checkpointer.is_none() {
                h.checkpointer = checkpointer::Checkpointer::start(db.to_path_buf());
            }
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|h| h.key == self.key) {
            held[i].users -= 1;
            if held[i].users == 0 {
                // Closing the file under the registry's mutex: no other
                // store of this process can find the entry gone but the
                // lock still taken.
                held.swap_remove(i);
            }
        }
    }
}

/// The idempotency key of a contact event: its own `id` when it carries one
/// (scoped to the contact), else a hash of a canonical serialisation of all
/// it is (contact, name, minute, properties with sorted keys), so the same
/// event imported twice has the same key. 128-bit FNV-1a: not a defence
/// against crafted collisions, only against repeats.
pub fn event_key(contact: &str, name: &str, at: i64, props: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    let mut text = String::new();
    match props.get("id").filter(|v| v.is_string() || v.is_number()) {
        Some(id) => canonical_json(&Value::Array(vec!["id".into(), contact.into(), id.clone()]), &mut text),
        None => canonical_json(
            &Value::Array(vec!["event".into(), contact.into(), name.into(), at.into(), Value::Object(props.clone())]),
            &mut text,
        ),
    }
    format!("{:032x}", fnv1a_128(text.as_bytes()))
}

/// The idempotency key an event is stored with: `event_key` for events
/// from outside, none for those flowc records (`EventOrigin::Recorded`),
/// each of which is stored. Unique indexes, in SQLite and PostgreSQL, hold
/// any number of NULLs.
pub fn stored_event_key(of: &EventOf) -> Option<String> {
    match of.origin() {
        EventOrigin::Outside => Some(event_key(of.contact.as_str(), &of.event.name, of.event.at, &of.event.props)),
        EventOrigin::Recorded => None,
    }
}

/// JSON with object keys sorted at every level, whatever the map's order.
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes.iter().fold(OFFSET, |h, b| (h ^ *b as u128).wrapping_mul(PRIME))
}

/// `flowc_event_key(contact, name, at, props)`: `event_key` for SQL, so a
/// migration can key the events already stored exactly as new ones are.
fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "flowc_event_key",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |cx| {
            let contact: String = cx.get(0)?;
            let name: String = cx.get(1)?;
            let at: i64 = cx.get(2)?;
            let props: String = cx.get(3)?;
            Ok(event_key(&contact, &name, at, &parse_map(&props, "contact_events", &contact)?))
        },
    )
    .map_err(classify)?;
    // `facts::parse_datetime` for SQL: the typed `created_minute` of a
    // contact computed from its stored attributes (`typed::assignments`).
    conn.create_scalar_function(
        "flowc_minutes",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |cx| {
            Ok(match cx.get_raw(0) {
                rusqlite::types::ValueRef::Text(t) => {
                    std::str::from_utf8(t).ok().and_then(super::facts::parse_datetime)
                }
                _ => None,
            })
        },
    )
    .map_err(classify)?;
    // `typed::profile` for SQL: a contact's `profile` from its columns.
    conn.create_scalar_function(
        "flowc_profile",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |cx| {
            let text = |i: usize| -> rusqlite::Result<String> {
                Ok(match cx.get_raw(i) {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    _ => String::new(),
                })
            };
            Ok(typed::profile(&text(0)?, &text(1)?, &text(2)?, cx.get::<i64>(3)?))
        },
    )
    .map_err(classify)?;
    // A batch's change to a contact's tags, applied to the stored set inside
    // the UPDATE: one statement per contact, and a change committed by
    // another writer meanwhile is kept.
    conn.create_scalar_function(
        "flowc_apply_tags",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |cx| {
            let mut tags = parse_list(&cx.get::<String>(0)?, "contacts", "(tags being updated)")?;
            let delta = TagDelta {
                contact: ContactId(String::new()),
                add: parse_list(&cx.get::<String>(1)?, "tag_deltas", "add")?,
                remove: parse_list(&cx.get::<String>(2)?, "tag_deltas", "remove")?,
            };
            delta.apply(&mut tags);
            Ok(json_list(&tags))
        },
    )
    .map_err(classify)
}

/// Tables (with their columns and declared types) and indexes of a schema.
#[derive(Debug, Default, PartialEq)]
struct SchemaShape {
    columns: BTreeMap<String, BTreeSet<(String, String)>>,
    indexes: BTreeSet<String>,
}

fn shape_of(conn: &Connection) -> Result<SchemaShape, StoreError> {
    let mut shape = SchemaShape::default();
    // table_xinfo, not table_info: the outbox's generated `key` is a hidden column.
    let mut stmt = conn
        .prepare("SELECT m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_xinfo(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'")
        .map_err(classify)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(classify)?;
    for row in rows {
        let (table, column, ty) = row.map_err(classify)?;
        shape.columns.entry(table).or_default().insert((column, ty.to_ascii_uppercase()));
    }
    // Indexes SQLite makes for keys have no SQL; they come with their table.
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").map_err(classify)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(classify)?;
    for row in rows {
        shape.indexes.insert(row.map_err(classify)?);
    }
    Ok(shape)
}

/// What schema `version` is, built by running the migrations up to it on an
/// empty in-memory database: the migrations are the only description.
fn expected_shape(version: usize) -> Result<SchemaShape, StoreError> {
    let conn = Connection::open_in_memory().map_err(classify)?;
    register_functions(&conn)?;
    for sql in MIGRATIONS.iter().take(version) {
        conn.execute_batch(sql).map_err(classify)?;
    }
    shape_of(&conn)
}

/// Refuses a file that lacks a table, column or index of its schema
/// version, before anything reads or writes it: a run on a broken file
/// would send and bill, then fail to record the outcome.
fn validate(conn: &Connection, version: i64) -> Result<(), StoreError> {
    let want = expected_shape(version as usize)?;
    let have = shape_of(conn)?;
    let mut missing = Vec::new();
    for (table, columns) in &want.columns {
        let Some(found) = have.columns.get(table) else {
            missing.push(format!("table `{table}`"));
            continue;
        };
        for (column, ty) in columns {
            if !found.contains(&(column.clone(), ty.clone())) {
                missing.push(format!("column `{table}.{column}` ({ty})"));
            }
        }
    }
    missing.extend(want.indexes.difference(&have.indexes).map(|i| format!("index `{i}`")));
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!("schema {version} is missing {}", missing.join(", "))))
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates a database file, as its writer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_as(path, OpenMode::ReadWrite)
    }

    pub fn open_as(path: &Path, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        match mode {
            OpenMode::ReadWrite | OpenMode::Handlers => {
                // The lock comes before the first statement: a second
                // process learns it is second before it creates a table,
                // enrolls a contact or sends a message.
                let lock = WriterLock::take(path)?;
                let conn = Connection::open(path).map_err(classify)?;
                let store = Self::setup(conn, Some(lock), mode)?;
                if let Some(lock) = &store._lock {
                    lock.checkpoint_in_background(path);
                }
                Ok(store)
            }
            OpenMode::ReadOnly => {
                if !path.is_file() {
                    return Err(StoreError::Missing);
                }
                use rusqlite::OpenFlags;
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(classify)?;
                Self::setup(conn, None, mode)
            }
        }
    }

    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::setup(Connection::open_in_memory().map_err(classify)?, None, OpenMode::ReadWrite)
    }

    fn setup(conn: Connection, lock: Option<WriterLock>, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        conn.busy_handler(Some(wait_for_the_lock)).map_err(classify)?;
        // A batch cycle uses some twenty statements (some sized by the batch):
        // room for all of them, so none is parsed again every batch.
        conn.set_prepared_statement_cache_capacity(128);
        register_functions(&conn)?;
        // Reading the version proves the file is a database and changes
        // nothing: a file refused below is left as it was.
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(classify)?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew { found: current, known });
        }
        if current > 0 {
            validate(&conn, current)?;
        } else {
            let foreign: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sim_%'",
                    [],
                    |r| r.get(0),
                )
                .map_err(classify)?;
            if foreign > 0 {
                return Err(StoreError::Corrupt("the file is an SQLite database of something else".into()));
            }
        }
        if mode == OpenMode::ReadOnly {
            if current == 0 {
                return Err(StoreError::Corrupt("the file has no flowc tables yet".into()));
            }
            // A reader scans whole tables (an estimate reads every contact):
            // pages mapped from the OS cache instead of copied one read at a
            // time.
            conn.execute_batch("PRAGMA mmap_size=4294967296;").map_err(classify)?;
            // An older schema is read as it is; the next writer migrates it.
            return Ok(SqliteStore { conn, _lock: lock, schema: current });
        }
        // `journal_mode` answers with a row.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(classify)?;
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
        )
        .map_err(classify)?;
        if mode == OpenMode::Handlers {
            conn.execute_batch("PRAGMA cache_size=-8192;").map_err(classify)?;
        }
        // The process's checkpointer copies the log back; the writer only
        // past this mark (`checkpointer`).
        if lock.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", checkpointer::WRITER_CHECKPOINT_PAGES).map_err(classify)?;
        }
        let mut store = SqliteStore { conn, _lock: lock, schema: current };
        store.migrate(current)?;
        store.schema = known;
        Ok(store)
    }

    /// Runs the migrations after `current`, each in its own transaction.
    fn migrate(&mut self, current: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = Nested::begin(&self.conn)?;
            tx.execute_batch(sql).map_err(classify)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(classify)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The raw connection, for benchmarks that measure SQLite itself and
    /// tests that corrupt it; nothing in `src/` outside the store takes it
    /// (tidy: `sqlite_only_behind_the_store`).
    #[doc(hidden)]
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// A contacts row selected as `id, attrs, tags, consent, capabilities`,
/// the attributes as text (`typed::ATTRS_TEXT`).
fn contact_row(r: &rusqlite::Row) -> rusqlite::Result<ContactRecord> {
    let id: String = r.get(0)?;
    let attrs = match r.get_ref(1)? {
        rusqlite::types::ValueRef::Text(t) => parse_map(&String::from_utf8_lossy(t), "contacts", &id)?,
        _ => return Err(corrupt("contacts", &id, "(attributes that are not JSON)")),
    };
    Ok(ContactRecord {
        attrs,
        tags: parse_list(&r.get::<_, String>(2)?, "contacts", &id)?,
        consent: parse_list(&r.get::<_, String>(3)?, "contacts", &id)?,
        capabilities: parse_list(&r.get::<_, String>(4)?, "contacts", &id)?,
        id: ContactId(id),
    })
}

fn write_breaker(conn: &Connection, campaign: &str, b: &BreakerState) -> Result<(), StoreError> {
    let recent: String = b.recent.iter().map(|ok| if *ok { '1' } else { '0' }).collect();
    conn.prepare_cached(
        "INSERT INTO breakers (campaign, consecutive, recent) VALUES (?1, ?2, ?3)
         ON CONFLICT(campaign) DO UPDATE SET consecutive = excluded.consecutive, recent = excluded.recent",
    )
    .and_then(|mut s| s.execute(params![campaign, i64::from(b.consecutive_failures), recent]))
    .map(|_| ())
    .map_err(classify)
}

/// Ids are stored as their text.
macro_rules! text_id {
    ($($id:ident),*) => {$(
        impl rusqlite::ToSql for $id {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $id {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(v).map($id)
            }
        }
    )*};
}

text_id!(ContactId, StepId);

impl rusqlite::ToSql for Entry {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(i64::from(self.0)))
    }
}

impl rusqlite::types::FromSql for Entry {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let n = i64::column_result(v)?;
        u32::try_from(n).ok().filter(|n| *n >= 1).map(Entry).ok_or(rusqlite::types::FromSqlError::OutOfRange(n))
    }
}

/// An outbox row selected as `key, contact_id, version, step, channel, message,
/// template, price_micros, created_at, entry` (first, in that order).
fn outbox_row(r: &rusqlite::Row) -> rusqlite::Result<OutboxNew> {
    Ok(OutboxNew {
        key: r.get(0)?,
        contact: r.get(1)?,
        version: r.get(2)?,
        step: r.get(3)?,
        channel: r.get(4)?,
        message: r.get(5)?,
        template: r.get(6)?,
        price_micros: r.get(7)?,
        created_at: r.get(8)?,
        entry: r.get(9)?,
    })
}

/// A breakers row selected as `consecutive, recent`: the recent outcomes
/// are written as `1` (success) and `0` (failure), and nothing else reads
/// as either.
fn breaker_row(campaign: &str, r: &rusqlite::Row) -> rusqlite::Result<BreakerState> {
    let consecutive: i64 = r.get(0)?;
    let consecutive_failures =
        u32::try_from(consecutive).map_err(|_| corrupt("breakers", campaign, &consecutive.to_string()))?;
    let text: String = r.get(1)?;
    let recent = text
        .bytes()
        .map(|b| match b {
            b'1' => Ok(true),
            b'0' => Ok(false),
            _ => Err(corrupt("breakers", campaign, &text)),
        })
        .collect::<rusqlite::Result<_>>()?;
    Ok(BreakerState { consecutive_failures, recent })
}

/// A savepoint through statements prepared once: the store's writes each
/// run in one (their own transaction, or nested in a caller's), and
/// rusqlite's `Savepoint` parses `SAVEPOINT` and `RELEASE` anew each time,
/// a tenth of the service's time per API trigger. Rolled back when
/// dropped without `commit`.
struct Nested<'c> {
    conn: &'c Connection,
    open: bool,
    /// Whether it began outside any transaction (it is then one).
    outermost: bool,
}

impl<'c> Nested<'c> {
    fn begin(conn: &'c Connection) -> Result<Nested<'c>, StoreError> {
        let outermost = conn.is_autocommit();
        run_cached(conn, "SAVEPOINT flowc_write")?;
        Ok(Nested { conn, open: true, outermost })
    }

    /// A release that fails (the commit of an outermost one) rolls back.
    fn commit(mut self) -> Result<(), StoreError> {
        run_cached(self.conn, "RELEASE flowc_write")?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Nested<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = run_cached(self.conn, "ROLLBACK TO flowc_write");
            let _ = run_cached(self.conn, "RELEASE flowc_write");
            // A release that failed would leave the transaction open, and
            // the next write's "commit" would only release a savepoint.
            if self.outermost && !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
    }
}

fn run_params<P: rusqlite::Params>(conn: &Connection, sql: &str, p: P) -> Result<usize, StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute(p)).map_err(classify)
}

fn run_cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    run_params(conn, sql, []).map(|_| ())
}

/// While another connection holds the lock (`flowc serve`'s handlers and
/// runner, a reader beside a writer): look again every 200 µs for the
/// first 20 ms, then every 2 ms, for at most two seconds in all. SQLite's
/// own timeout sleeps 1, 2, 5, 10 ms and more between looks, so a lock
/// held for 3.1 ms kept a group of API triggers waiting 8 ms.
fn wait_for_the_lock(looked: i32) -> bool {
    use std::time::{Duration, Instant};
    thread_local! {
        static SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = Instant::now();
    // SQLite counts the looks of one wait from 0: a new wait starts the clock.
    let since = SINCE.with(|s| {
        let since = if looked == 0 { now } else { s.get().unwrap_or(now) };
        s.set(Some(since));
        since
    });
    let waited = now.duration_since(since);
    if waited >= Duration::from_secs(2) {
        return false;
    }
    std::thread::sleep(if waited < Duration::from_millis(20) {
        Duration::from_micros(200)
    } else {
        Duration::from_millis(2)
    });
    true
}

/// A new `data_version` token, in the transaction that changes what
/// estimates read. Random rather than counted: a database restored from a
/// copy and written again never comes back to a token it had.
fn new_data_version(conn: &Connection) -> Result<(), StoreError> {
    run_cached(conn, "UPDATE data_version SET token = random() WHERE id = 1")
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// `?1,?2,…,?n`: numbered, so one statement may name the list twice.
fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(",")
}

/// The schema that queues API triggers (`trigger_inbox`); an older file,
/// read as it is, has none queued.
const QUEUED_TRIGGERS: i64 = 9;

/// The longest window a frequency cap may have, in minutes (365 days).
const LONGEST_CAP_WINDOW: i64 = 365 * 24 * 60;

/// One row of a statement kept in the connection's statement cache: the
/// service asks the same few questions thousands of times a second, and
/// parsing them again took a fifth of its store thread.
fn cached_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

impl Store for SqliteStore {
    fn put_campaign(&mut self, campaign: &CampaignVersion<'_>, now: i64) -> Result<(), StoreError> {
        let CampaignVersion { name, version, program, state } = *campaign;
        let tx = Nested::begin(&self.conn)?;
        tx.execute(
            "INSERT INTO campaigns (name, version, program, state, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET version = excluded.version, program = excluded.program, updated_at = excluded.updated_at",
            params![name, version, program, state.as_str(), now],
        )
        .map_err(classify)?;
        tx.execute(
            "INSERT OR IGNORE INTO campaign_versions (name, version, program) VALUES (?1, ?2, ?3)",
            params![name, version, program],
        )
        .map_err(classify)?;
        tx.commit()
    }

    fn campaign(&self, name: &str) -> Result<Option<CampaignRow>, StoreError> {
        cached_row(
            &self.conn,
            "SELECT name, version, program, state FROM campaigns WHERE name = ?1",
            params![name],
            campaign_row,
        )
        .optional()
        .map_err(classify)
    }

    fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT name, version, program, state FROM campaigns ORDER BY name").map_err(classify)?;
        let rows = stmt.query_map([], campaign_row).map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn program_version(&self, campaign: &str, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        cached_row(
            &self.conn,
            "SELECT program FROM campaign_versions WHERE name = ?1 AND version = ?2",
            params![campaign, version],
            |r| r.get(0),
        )
        .optional()
        .map_err(classify)
    }

    fn set_state(
        &mut self,
        name: &str,
        from: CampaignState,
        to: CampaignState,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = Nested::begin(&self.conn)?;
        // Guarded by the expected current state, so two writers cannot both move it.
        let changed = tx
            .execute(
                "UPDATE campaigns SET state = ?1, updated_at = ?2 WHERE name = ?3 AND state = ?4",
                params![to.as_str(), now, name, from.as_str()],
            )
            .map_err(classify)?;
        if changed == 0 {
            return Err(StoreError::StateChanged { campaign: name.to_string(), expected: from.to_string() });
        }
        tx.execute(
            "INSERT INTO campaign_transitions (name, at, from_state, to_state, why) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, now, from.as_str(), to.as_str(), why],
        )
        .map_err(classify)?;
        tx.commit()
    }

    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<Transition>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, from_state, to_state, why FROM campaign_transitions WHERE name = ?1 ORDER BY id DESC LIMIT ?2")
            .map_err(classify)?;
        let state = |r: &rusqlite::Row, i: usize| -> rusqlite::Result<CampaignState> {
            let s: String = r.get(i)?;
            CampaignState::parse(&s).ok_or_else(|| corrupt("campaign_transitions", name, &s))
        };
        let rows = stmt
            .query_map(params![name, limit as i64], |r| {
                Ok(Transition { at: r.get(0)?, from: state(r, 1)?, to: state(r, 2)?, reason: r.get(3)? })
            })
            .map_err(classify)?;
        let mut v = rows.collect::<Result<Vec<_>, _>>().map_err(classify)?;
        v.reverse();
        Ok(v)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        cached_row(&self.conn, "SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(classify)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(classify)
    }

    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM meta WHERE key = ?1", params![key]).map(|_| ()).map_err(classify)
    }

    fn balance(&self) -> Result<i64, StoreError> {
        cached_row(&self.conn, "SELECT COALESCE(SUM(amount_micros), 0) FROM ledger", [], |r| r.get(0)).map_err(classify)
    }

    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO ledger (at, amount_micros, reason) VALUES (?1, ?2, ?3)",
                params![now, amount_micros, reason],
            )
            .map(|_| ())
            .map_err(classify)
    }

    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[EventOf]) -> Result<(), StoreError> {
        let encoded: Vec<EncodedContact> = contacts.iter().map(EncodedContact::of).collect();
        self.upsert_encoded(&encoded, events)
    }

    fn contact_form(&self) -> ContactForm {
        ContactForm::Encoded
    }

    fn upsert_encoded(&mut self, contacts: &[EncodedContact], events: &[EventOf]) -> Result<(), StoreError> {
        let tx = Nested::begin(&self.conn)?;
        {
            // `attrs` is bound as binary JSON already (`runtime::jsonb`).
            let mut c = tx
                .prepare_cached(
                    "INSERT INTO contacts (id, attrs, tags, consent, capabilities, created_minute, addresses, profile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(id) DO UPDATE SET attrs = excluded.attrs, tags = excluded.tags, consent = excluded.consent, capabilities = excluded.capabilities,
                       created_minute = excluded.created_minute, addresses = excluded.addresses, profile = excluded.profile",
                )
                .map_err(classify)?;
            for k in contacts {
                c.execute(params![
                    k.id,
                    k.attrs,
                    k.tags,
                    k.consent,
                    k.capabilities,
                    k.created_minute,
                    k.addresses,
                    k.profile
                ])
                .map_err(classify)?;
            }
            // An event already stored (same key) is not stored again, so
            // importing a file twice, or retrying an import, adds nothing.
            let mut e = tx
                .prepare_cached("INSERT INTO contact_events (contact_id, name, at, props, key) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(key) DO NOTHING")
                .map_err(classify)?;
            for of in events {
                let EventOf { contact, event: ev } = of;
                let props = serde_json::to_string(&ev.props).unwrap_or_else(|_| "{}".into());
                // A NULL key (an event flowc records) is never a conflict.
                e.execute(params![contact, ev.name, ev.at, props, stored_event_key(of)]).map_err(classify)?;
            }
            if !contacts.is_empty() || !events.is_empty() {
                new_data_version(&tx)?;
            }
        }
        tx.commit()
    }

    fn contact_count(&self) -> Result<u64, StoreError> {
        cached_row(&self.conn, "SELECT COUNT(*) FROM contacts", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(classify)
    }

    fn for_each_contact(&self, f: &mut dyn FnMut(ContactRecord)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, {}, tags, consent, capabilities FROM contacts ORDER BY id",
                typed::ATTRS_TEXT
            ))
            .map_err(classify)?;
        let mut rows = stmt.query([]).map_err(classify)?;
        while let Some(r) = rows.next().map_err(classify)? {
            f(contact_row(r).map_err(classify)?);
        }
        Ok(())
    }

    fn contact(&self, id: &ContactId) -> Result<Option<ContactRecord>, StoreError> {
        cached_row(
            &self.conn,
            &format!("SELECT id, {}, tags, consent, capabilities FROM contacts WHERE id = ?1", typed::ATTRS_TEXT),
            params![id],
            contact_row,
        )
        .optional()
        .map_err(classify)
    }

    fn contacts_page(&self, after: Option<&ContactId>, limit: usize) -> Result<Vec<ContactRecord>, StoreError> {
        let after = after.map_or("", ContactId::as_str);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, {}, tags, consent, capabilities FROM contacts WHERE id > ?1 ORDER BY id LIMIT ?2",
                typed::ATTRS_TEXT
            ))
            .map_err(classify)?;
        let rows = stmt.query_map(params![after, limit as i64], contact_row).map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn ensure_initial_balance(&mut self, micros: i64, now: i64) -> Result<(), StoreError> {
        let tx = Nested::begin(&self.conn)?;
        let done: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'balance_initialised'", [], |r| r.get(0))
            .optional()
            .map_err(classify)?;
        if done.is_none() {
            // The opening balance belongs to a database whose ledger is
            // still empty: one where money was already added (a top-up) has
            // a balance of its own and gets nothing on top.
            let ledger_used: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM ledger)", [], |r| r.get(0)).map_err(classify)?;
            if !ledger_used {
                tx.execute(
                    "INSERT INTO ledger (at, amount_micros, reason) VALUES (?1, ?2, 'initial balance')",
                    params![now, micros],
                )
                .map_err(classify)?;
            }
            tx.execute("INSERT INTO meta (key, value) VALUES ('balance_initialised', '1')", []).map_err(classify)?;
        }
        tx.commit()
    }

    fn events_for(&self, contacts: &[&ContactId]) -> Result<Vec<EventOf>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        // A queued trigger's `campaign.triggered` event is the contact's
        // from the trigger's answer on, as its enrollment is.
        let sql = if self.schema >= QUEUED_TRIGGERS {
            let list = numbered(contacts.len());
            format!(
                "SELECT contact_id, name, at, props FROM contact_events WHERE contact_id IN ({list})
                 UNION ALL SELECT contact_id, '{TRIGGERED}', at, props FROM trigger_inbox WHERE contact_id IN ({list})"
            )
        } else {
            format!(
                "SELECT contact_id, name, at, props FROM contact_events WHERE contact_id IN ({})",
                placeholders(contacts.len())
            )
        };
        let mut stmt = self.conn.prepare_cached(&sql).map_err(classify)?;
        let rows = stmt
            .query_map(params_from_iter(contacts.iter()), |r| {
                let contact: ContactId = r.get(0)?;
                let props = parse_map(&r.get::<_, String>(3)?, "contact_events", contact.as_str())?;
                Ok(EventOf { contact, event: ContactEvent { name: r.get(1)?, at: r.get(2)?, props } })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn sent_for(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<SentOf>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT contact_id, step, channel, sent_at, delivered_at, opened_at, clicked_at, entry FROM outbox
             WHERE campaign = ? AND status = 'sent' AND contact_id IN ({})",
            placeholders(contacts.len())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(classify)?;
        let args = std::iter::once(campaign).chain(contacts.iter().map(|c| c.as_str()));
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok(SentOf {
                    contact: r.get(0)?,
                    entry: r.get(7)?,
                    message: SentMessage {
                        step: r.get(1)?,
                        channel: r.get(2)?,
                        sent_at: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                        delivered_at: r.get(4)?,
                        opened_at: r.get(5)?,
                        clicked_at: r.get(6)?,
                    },
                })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn sends_since(&self, contacts: &[&ContactId], since: i64) -> Result<Vec<RecordedSend>, StoreError> {
        estimate::sends_since(&self.conn, contacts, since)
    }

    fn admit_capped(
        &mut self,
        caps: &[crate::compile::program::FrequencyCap],
        sends: &[CapSend<'_>],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let tx = Nested::begin(&self.conn)?;
        let mut out = Vec::with_capacity(sends.len());
        {
            let mut known =
                tx.prepare_cached("SELECT 1 FROM capped_sends WHERE contact_id = ?1 AND key = ?2").map_err(classify)?;
            // `?3` NULL: every channel counts.
            let mut count = tx
                .prepare_cached(
                    "SELECT COUNT(*) FROM capped_sends WHERE contact_id = ?1 AND at > ?2 AND (?3 IS NULL OR channel = ?3)",
                )
                .map_err(classify)?;
            let mut record = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO capped_sends (contact_id, at, key, channel) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(classify)?;
            // No cap's window is longer than a year (the checker's
            // `invalid-frequency-cap`, the loader's validation): older rows
            // can never count again, and go as the contact's sends come.
            let mut expire =
                tx.prepare_cached("DELETE FROM capped_sends WHERE contact_id = ?1 AND at <= ?2").map_err(classify)?;
            for s in sends {
                expire.execute(params![s.contact, now.saturating_sub(LONGEST_CAP_WINDOW)]).map_err(classify)?;
                if known.exists(params![s.contact, s.key]).map_err(classify)? {
                    out.push(true);
                    continue;
                }
                let mut fits = true;
                for cap in caps.iter().filter(|c| c.channel.as_deref().is_none_or(|ch| ch == s.channel)) {
                    let n: i64 = count
                        .query_row(params![s.contact, now.saturating_sub(cap.window_minutes), cap.channel], |r| {
                            r.get(0)
                        })
                        .map_err(classify)?;
                    if n >= i64::from(cap.count) {
                        fits = false;
                        break;
                    }
                }
                if fits {
                    record.execute(params![s.contact, now, s.key, s.channel]).map_err(classify)?;
                }
                out.push(fits);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn contact_exists(&self, id: &ContactId) -> Result<bool, StoreError> {
        cached_row(&self.conn, "SELECT 1 FROM contacts WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(classify)
    }

    fn enroll(&mut self, campaign: &str, version: &str, entries: &[Enrollment], now: i64) -> Result<u64, StoreError> {
        let tx = Nested::begin(&self.conn)?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO executions (campaign, contact_id, version, step, state, wake_at, started_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6)",
                )
                .map_err(classify)?;
            for e in entries {
                n += stmt.execute(params![campaign, e.contact, version, e.step, e.wake_at, now]).map_err(classify)?
                    as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn enroll_triggered(
        &mut self,
        program: &crate::compile::program::Program,
        entries: &[Enrollment],
        events: &[EventOf],
        _now: i64,
    ) -> Result<u64, StoreError> {
        // Queued (schema 9): the campaign's next batch enrolls them.
        let props: std::collections::HashMap<&ContactId, &serde_json::Map<String, serde_json::Value>> =
            events.iter().map(|e| (&e.contact, &e.event.props)).collect();
        let tx = Nested::begin(&self.conn)?;
        {
            let mut queue = tx
                .prepare_cached(
                    "INSERT INTO trigger_inbox (campaign, contact_id, seq, version, step, at, props)
                     SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5, ?6 FROM trigger_inbox WHERE contact_id = ?2 AND campaign = ?1",
                )
                .map_err(classify)?;
            for e in entries {
                let data = props
                    .get(&e.contact)
                    .and_then(|p| serde_json::to_string(p).ok())
                    .unwrap_or_else(|| "{}".to_string());
                queue
                    .execute(params![program.campaign, e.contact, program.version.0, e.step, e.wake_at, data])
                    .map_err(classify)?;
            }
        }
        tx.commit()?;
        Ok(entries.len() as u64)
    }

    fn drain_triggered(&mut self, campaign: &str, limit: usize, now: i64) -> Result<u64, StoreError> {
        if limit == 0 || self.schema < QUEUED_TRIGGERS {
            return Ok(0);
        }
        // Cheap when there is nothing: one look at the primary key.
        let any = cached_row(
            &self.conn,
            "SELECT 1 FROM trigger_inbox WHERE campaign = ?1 LIMIT 1",
            params![campaign],
            |_| Ok(()),
        )
        .optional()
        .map_err(classify)?;
        if any.is_none() {
            return Ok(0);
        }
        // The oldest `limit` triggers (under a stream of triggers faster
        // than the batches, no contact waits behind later ones): those up
        // to the limit-th in key order, or all of them. Read before the
        // transaction: a read transaction that then writes is refused at
        // once (not waited for) if another connection committed meanwhile.
        // A trigger queued between this read and the writes falls in the
        // range or not, the same for the three statements below.
        let last: Option<(i64, String, i64)> = cached_row(
            &self.conn,
            "SELECT at, contact_id, seq FROM trigger_inbox WHERE campaign = ?1 ORDER BY at, contact_id, seq LIMIT 1 OFFSET ?2",
            params![campaign, i64::try_from(limit - 1).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(classify)?;
        // Set by set, in three statements: a row at a time, the
        // statements' own cost was most of the drain's.
        let tx = Nested::begin(&self.conn)?;
        let (at, contact, seq) = match &last {
            Some((a, c, s)) => (Some(*a), Some(c.as_str()), Some(*s)),
            None => (None, None, None),
        };
        const TAKEN: &str = "campaign = ?1 AND (?2 IS NULL OR (at, contact_id, seq) <= (?2, ?3, ?4))";
        run_params(
            &tx,
            &format!(
                "INSERT INTO contact_events (contact_id, name, at, props, key)
                 SELECT contact_id, '{TRIGGERED}', at, props, NULL FROM trigger_inbox WHERE {TAKEN} ORDER BY at, contact_id, seq"
            ),
            params![campaign, at, contact, seq],
        )?;
        // Admitted under the campaign's re-entry rule when queued: each is
        // the contact's next entry (two of one contact in turn, by `seq`).
        run_params(
            &tx,
            &format!(
                "INSERT INTO executions (campaign, contact_id, entry, version, step, state, wake_at, started_at, updated_at)
                 SELECT ?1, i.contact_id,
                   COALESCE((SELECT MAX(e.entry) FROM executions e WHERE e.campaign = ?1 AND e.contact_id = i.contact_id), 0)
                     + ROW_NUMBER() OVER (PARTITION BY i.contact_id ORDER BY i.seq),
                   i.version, i.step, 'pending', i.at, i.at, ?5
                 FROM trigger_inbox i WHERE {TAKEN}"
            ),
            params![campaign, at, contact, seq, now],
        )?;
        let drained =
            run_params(&tx, &format!("DELETE FROM trigger_inbox WHERE {TAKEN}"), params![campaign, at, contact, seq])?;
        new_data_version(&tx)?;
        tx.commit()?;
        Ok(drained as u64)
    }

    fn enroll_audience(
        &mut self,
        program: &crate::compile::program::Program,
        step: &StepId,
        wake: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        // The audience compiles to parameterised SQL with the evaluator's
        // semantics (`segment`, property-tested against eval).
        let (clause, clause_params) = match &program.audience {
            Some(a) => {
                let s = segment::condition(program, a, wake);
                (s.text, s.params)
            }
            None => ("1".to_string(), Vec::new()),
        };
        let insert = format!(
            "INSERT OR IGNORE INTO executions (campaign, contact_id, version, step, state, wake_at, updated_at, started_at)
             SELECT ?, id, ?, ?, 'pending', ?, ?, ? FROM contacts WHERE id > ? AND id <= ? AND ({clause})"
        );
        // Chunks of contacts in id order, one transaction each, so the WAL stays small.
        const CHUNK: i64 = 50_000;
        let mut after = String::new();
        let mut enrolled = 0u64;
        loop {
            let last: Option<String> = self
                .conn
                .query_row(
                    "SELECT MAX(id) FROM (SELECT id FROM contacts WHERE id > ?1 ORDER BY id LIMIT ?2)",
                    params![after, CHUNK],
                    |r| r.get(0),
                )
                .map_err(classify)?;
            let Some(last) = last else { break };
            let tx = Nested::begin(&self.conn)?;
            {
                let mut stmt = tx.prepare_cached(&insert).map_err(classify)?;
                // The execution starts at its first wake-up.
                let head: [rusqlite::types::Value; 8] = [
                    program.campaign.clone().into(),
                    program.version.0.clone().into(),
                    step.to_string().into(),
                    wake.into(),
                    now.into(),
                    wake.into(),
                    after.clone().into(),
                    last.clone().into(),
                ];
                enrolled +=
                    stmt.execute(params_from_iter(head.iter().chain(clause_params.iter()))).map_err(classify)? as u64;
            }
            tx.commit()?;
            after = last;
        }
        Ok(Some(enrolled))
    }

    fn audience(
        &self,
        audience: Audience<'_>,
        f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        estimate::members(&self.conn, audience, f)
    }

    fn audience_groups(
        &self,
        audience: Audience<'_>,
        reads: &WalkReads,
        f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        if self.schema < TYPED_CONTACTS {
            // A file an older flowc wrote, read as it is: no typed columns yet.
            return super::alike::group(self, audience, reads, f);
        }
        estimate::groups(&self.conn, audience, reads, f)
    }

    fn newest_created_at(&self) -> Result<Option<i64>, StoreError> {
        if self.schema < TYPED_CONTACTS {
            return newest_created_by_scan(self);
        }
        // Every contact's creation is read: in two halves at once.
        let newest = |conn: &Connection, bound: &str, mid: Option<&str>| -> Result<Option<i64>, StoreError> {
            let sql = format!("SELECT MAX(created_minute) FROM contacts WHERE 1{bound}");
            conn.query_row(&sql, params_from_iter(mid), |r| r.get(0)).map_err(classify)
        };
        let Some(split) = halves::split(&self.conn)? else { return newest(&self.conn, "", None) };
        let mid = Some(split.mid.as_str());
        std::thread::scope(|s| {
            let second = s.spawn(|| newest(&halves::reader(&split)?, " AND id >= ?", mid));
            let first = newest(&self.conn, " AND id < ?", mid)?;
            let second = match second.join() {
                Ok(Ok(second)) => second,
                _ => newest(&self.conn, " AND id >= ?", mid)?,
            };
            Ok(first.max(second))
        })
    }

    fn data_version(&self) -> Result<Option<DataVersion>, StoreError> {
        if self.schema < TYPED_CONTACTS {
            return Ok(None);
        }
        cached_row(&self.conn, "SELECT token FROM data_version WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map(|t| t.map(DataVersion))
            .map_err(classify)
    }

    fn claim(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        fields: &[FieldDef],
        _lease: &Lease,
    ) -> Result<Vec<Due>, StoreError> {
        // This process holds the writer lock: nobody else claims, so a
        // claim is only a read (the round's commit moves the rows).
        // Only the asked-for attributes leave SQLite (json_extract), so no
        // contact's whole JSON is parsed on the hot path.
        let mut cols = String::new();
        for i in 0..fields.len() {
            cols.push_str(&format!(", json_extract(c.attrs, ?{})", 4 + i));
        }
        // The addresses come after the fields: only whether each is present
        // (a writer's file has the typed columns: it migrated on opening).
        let sql = format!(
            "SELECT e.contact_id, e.step, e.version, e.state, c.tags, c.consent, c.capabilities, c.created_minute, e.started_at, e.wait_since, e.entry{cols}, c.addresses
             FROM executions e JOIN contacts c ON c.id = e.contact_id
             WHERE e.campaign = ?1 AND e.state = 'pending' AND e.wake_at <= ?2
             ORDER BY e.wake_at LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(classify)?;
        let mut args: Vec<rusqlite::types::Value> =
            vec![campaign.to_string().into(), now.into(), (limit as i64).into()];
        args.extend(fields.iter().map(|f| rusqlite::types::Value::Text(format!("$.{}", f.name))));
        let rows = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                let id: String = r.get(0)?;
                let tags = parse_list(&r.get::<_, String>(4)?, "contacts", &id)?;
                let created_at: Option<i64> = r.get(7)?;
                let mut values = Vec::with_capacity(fields.len());
                for (i, f) in fields.iter().enumerate() {
                    values.push(segment::field_from_sql(f, &id, &tags, r.get_ref(11 + i)?));
                }
                let addresses = typed::addresses_from_flags(r.get(11 + fields.len())?);
                let state: String = r.get(3)?;
                let state = ExecState::parse(&state).ok_or_else(|| corrupt("executions", &id, &state))?;
                let consent = parse_list(&r.get::<_, String>(5)?, "contacts", &id)?;
                let capabilities = parse_list(&r.get::<_, String>(6)?, "contacts", &id)?;
                Ok(Due {
                    contact: DueContact {
                        id: ContactId(id),
                        fields: values,
                        tags,
                        consent,
                        capabilities,
                        created_at,
                        addresses,
                    },
                    step: r.get(1)?,
                    version: r.get(2)?,
                    state,
                    started_at: r.get(8)?,
                    wait_since: r.get(9)?,
                    entry: r.get(10)?,
                })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        let wake: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(wake_at) FROM executions WHERE campaign = ?1 AND state = 'pending'",
                params![campaign],
                |r| r.get(0),
            )
            .map_err(classify)?;
        let retry: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE campaign = ?1 AND next_attempt_at IS NOT NULL",
                params![campaign],
                |r| r.get(0),
            )
            .map_err(classify)?;
        let queued: Option<i64> = if self.schema >= QUEUED_TRIGGERS {
            cached_row(&self.conn, "SELECT MIN(at) FROM trigger_inbox WHERE campaign = ?1", params![campaign], |r| {
                r.get(0)
            })
            .map_err(classify)?
        } else {
            None
        };
        Ok([wake, retry, queued].into_iter().flatten().min())
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(classify)
    }

    fn finish(&mut self, end: TxEnd) -> Result<(), StoreError> {
        self.conn
            .execute_batch(match end {
                TxEnd::Commit => "COMMIT",
                TxEnd::Rollback => "ROLLBACK",
            })
            .map_err(classify)
    }

    fn auto_reload(&self) -> Result<Option<AutoReload>, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = self
            .conn
            .query_row("SELECT reload_threshold_micros, reload_amount_micros FROM account WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(classify)?;
        Ok(match row {
            Some((Some(threshold_micros), Some(amount_micros))) => Some(AutoReload { threshold_micros, amount_micros }),
            _ => None,
        })
    }

    fn set_auto_reload(&mut self, setting: Option<AutoReload>) -> Result<(), StoreError> {
        let (t, a) = setting.map_or((None, None), |s| (Some(s.threshold_micros), Some(s.amount_micros)));
        self.conn
            .execute(
                "INSERT INTO account (id, reload_threshold_micros, reload_amount_micros) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET reload_threshold_micros = excluded.reload_threshold_micros, reload_amount_micros = excluded.reload_amount_micros",
                params![t, a],
            )
            .map(|_| ())
            .map_err(classify)
    }

    fn probe_pending(&self, campaign: &str) -> Result<bool, StoreError> {
        let p: Option<i64> = self
            .conn
            .query_row("SELECT probe FROM campaigns WHERE name = ?1", params![campaign], |r| r.get(0))
            .optional()
            .map_err(classify)?;
        Ok(p.unwrap_or(0) != 0)
    }

    fn set_probe(&mut self, campaign: &str, probe: Probe) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE campaigns SET probe = ?2 WHERE name = ?1",
                params![campaign, i64::from(probe == Probe::Owed)],
            )
            .map(|_| ())
            .map_err(classify)
    }

    fn breaker(&self, campaign: &str) -> Result<BreakerState, StoreError> {
        cached_row(&self.conn, "SELECT consecutive, recent FROM breakers WHERE campaign = ?1", params![campaign], |r| {
            breaker_row(campaign, r)
        })
        .optional()
        .map_err(classify)
        .map(Option::unwrap_or_default)
    }

    fn rate_next_free(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        cached_row(&self.conn, "SELECT next_free_ms FROM rate_limits WHERE campaign = ?1", params![campaign], |r| {
            r.get(0)
        })
        .optional()
        .map_err(classify)
    }

    fn set_breaker(&mut self, campaign: &str, state: &BreakerState) -> Result<(), StoreError> {
        write_breaker(&self.conn, campaign, state)
    }

    fn outbox_due(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        _lease: &Lease,
    ) -> Result<Vec<(OutboxNew, u32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, contact_id, version, step, channel, message, template, price_micros, created_at, entry, attempts
                 FROM outbox WHERE campaign = ?1 AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?2 AND status = 'pending'
                 ORDER BY next_attempt_at LIMIT ?3",
            )
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign, now, limit as i64], |r| {
                let row = outbox_row(r)?;
                let attempts: i64 = r.get(10)?;
                let attempts =
                    u32::try_from(attempts).map_err(|_| corrupt("outbox", &row.key, &attempts.to_string()))?;
                Ok((row, attempts))
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn commit(&mut self, campaign: &str, round: &Round, lease: &Lease, now: i64) -> Result<(), StoreError> {
        let worker = &lease.worker;
        let tx = Nested::begin(&self.conn)?;
        {
            let mut new = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO outbox (campaign, version, contact_id, step, channel, message, template, price_micros, status, created_at, entry)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10)",
                )
                .map_err(classify)?;
            // An outcome already known for a new row (at-most-once mode) is
            // written with it: one insert instead of an insert and an update.
            type RowKey<'r> = (&'r str, Entry, &'r str, &'r str);
            let known: std::collections::HashMap<RowKey, &OutboxDone> = if round.outbox_new.is_empty() {
                Default::default()
            } else {
                round
                    .outbox_done
                    .iter()
                    .map(|d| ((d.contact.as_str(), d.entry, d.step.0.as_str(), d.version.as_str()), d))
                    .collect()
            };
            // Pending rows added minus pending rows settled: kept in outbox_inflight.
            let mut inflight: i64 = 0;
            let mut full = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO outbox (campaign, version, contact_id, step, channel, message, template, price_micros, status, created_at, sent_at, delivered_at, opened_at, clicked_at, error, entry)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(classify)?;
            for o in &round.outbox_new {
                match known.get(&(o.contact.as_str(), o.entry, o.step.0.as_str(), o.version.as_str())) {
                    Some(d) => {
                        let e = d.outcome.engagement();
                        full.execute(params![
                            campaign,
                            o.version,
                            o.contact,
                            o.step,
                            o.channel,
                            o.message,
                            o.template,
                            o.price_micros,
                            d.outcome.status(),
                            o.created_at,
                            d.at,
                            e.delivered_at,
                            e.opened_at,
                            e.clicked_at,
                            d.outcome.error(),
                            o.entry
                        ])
                        .map_err(classify)?;
                    }
                    None => {
                        inflight += new
                            .execute(params![
                                campaign,
                                o.version,
                                o.contact,
                                o.step,
                                o.channel,
                                o.message,
                                o.template,
                                o.price_micros,
                                o.created_at,
                                o.entry
                            ])
                            .map_err(classify)? as i64;
                    }
                }
            }
            let mut done = tx
                .prepare_cached(
                    "UPDATE outbox SET status = ?5, sent_at = ?6, delivered_at = ?7, opened_at = ?8, clicked_at = ?9, error = ?10,
                       attempts = attempts + 1, next_attempt_at = NULL
                     WHERE campaign = ?1 AND contact_id = ?2 AND step = ?3 AND version = ?4 AND entry = ?11 AND status = 'pending'",
                )
                .map_err(classify)?;
            // A send that failed for good was not delivered: its frequency
            // cap slot is given back (a no-op for sends no cap counted).
            let mut give_back =
                round.outbox_done.iter().filter(|d| matches!(d.outcome, SendOutcome::Failed { .. })).peekable();
            if give_back.peek().is_some() {
                let mut free = tx
                    .prepare_cached("DELETE FROM capped_sends WHERE contact_id = ?1 AND key = ?2")
                    .map_err(classify)?;
                for d in give_back {
                    free.execute(params![d.contact, execution_key(campaign, &d.version, &d.contact, d.entry, &d.step)])
                        .map_err(classify)?;
                }
            }
            for d in round
                .outbox_done
                .iter()
                .filter(|d| !known.contains_key(&(d.contact.as_str(), d.entry, d.step.0.as_str(), d.version.as_str())))
            {
                let e = d.outcome.engagement();
                inflight -= done
                    .execute(params![
                        campaign,
                        d.contact,
                        d.step,
                        d.version,
                        d.outcome.status(),
                        d.at,
                        e.delivered_at,
                        e.opened_at,
                        e.clicked_at,
                        d.outcome.error(),
                        d.entry
                    ])
                    .map_err(classify)? as i64;
            }
            if !round.outbox_retry.is_empty() {
                let mut retry = tx
                    .prepare_cached(
                        "UPDATE outbox SET attempts = ?5, next_attempt_at = ?6, error = ?7
                         WHERE campaign = ?1 AND contact_id = ?2 AND step = ?3 AND version = ?4 AND entry = ?8 AND status = 'pending'",
                    )
                    .map_err(classify)?;
                for r in &round.outbox_retry {
                    retry
                        .execute(params![
                            campaign,
                            r.contact,
                            r.step,
                            r.version,
                            i64::from(r.attempts),
                            r.next_attempt_at,
                            r.error,
                            r.entry
                        ])
                        .map_err(classify)?;
                }
            }
            if inflight != 0 {
                tx.execute(
                    "INSERT INTO outbox_inflight (campaign, pending) VALUES (?1, ?2) ON CONFLICT(campaign) DO UPDATE SET pending = pending + excluded.pending",
                    params![campaign, inflight],
                )
                .map_err(classify)?;
            }
            let mut ex = tx
                .prepare_cached(
                    "UPDATE executions SET step = ?3, version = ?4, state = ?5, wake_at = ?6, reason = ?7, updated_at = ?8,
                       wait_since = ?9, then_state = NULL, claimed_by = NULL, claimed_at = NULL
                     WHERE campaign = ?1 AND contact_id = ?2 AND entry = ?10",
                )
                .map_err(classify)?;
            for e in &round.executions {
                ex.execute(params![
                    campaign,
                    e.contact,
                    e.step,
                    e.version,
                    e.state.as_str(),
                    e.wake_at,
                    e.reason,
                    now,
                    e.wait_since,
                    e.entry
                ])
                .map_err(classify)?;
            }
            if !round.ab_assigned.is_empty() {
                let mut assign = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO ab_assignments (campaign, contact_id, ab, variant, at, entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(classify)?;
                for a in &round.ab_assigned {
                    assign.execute(params![campaign, a.contact, a.ab, a.variant, now, a.entry]).map_err(classify)?;
                }
            }
            if !round.parked.is_empty() {
                // Parked where it stands: `then_state` keeps its state, step and wake-up.
                let mut park = tx
                    .prepare_cached(
                        "UPDATE executions SET then_state = state, state = 'processing', claimed_by = ?3, claimed_at = ?4, updated_at = ?4
                         WHERE campaign = ?1 AND contact_id = ?2 AND entry = ?5 AND state NOT IN ('processing', 'failed')",
                    )
                    .map_err(classify)?;
                for (c, entry) in &round.parked {
                    park.execute(params![campaign, c, worker.0, now, entry]).map_err(classify)?;
                }
            }
            if !round.settled.is_empty() {
                // Released only when none of the execution's sends is still pending.
                let mut settle = tx
                    .prepare_cached(
                        "UPDATE executions SET state = COALESCE(then_state, 'pending'), then_state = NULL, claimed_by = NULL, claimed_at = NULL, updated_at = ?3
                         WHERE campaign = ?1 AND contact_id = ?2 AND entry = ?4 AND state = 'processing'
                           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign = ?1 AND o.contact_id = ?2 AND o.entry = ?4 AND o.status = 'pending')",
                    )
                    .map_err(classify)?;
                for (c, entry) in &round.settled {
                    settle.execute(params![campaign, c, now, entry]).map_err(classify)?;
                }
            }
            let mut led = tx
                .prepare_cached("INSERT INTO ledger (at, amount_micros, reason) VALUES (?1, ?2, ?3)")
                .map_err(classify)?;
            for LedgerEntry { amount_micros: amount, reason: why } in &round.ledger {
                led.execute(params![now, amount, why]).map_err(classify)?;
            }
            if !round.tags.is_empty() {
                // The delta meets the tags as they are now: a concurrent change is kept, not overwritten.
                let mut write = tx
                    .prepare_cached(
                        "UPDATE contacts SET tags = flowc_apply_tags(tags, ?2, ?3),
                           profile = flowc_profile(flowc_apply_tags(tags, ?2, ?3), consent, capabilities, addresses) WHERE id = ?1",
                    )
                    .map_err(classify)?;
                for d in &round.tags {
                    write.execute(params![d.contact, json_list(&d.add), json_list(&d.remove)]).map_err(classify)?;
                }
            }
            if !round.fields.is_empty() {
                // One attribute at a time, on the attributes as they are now:
                // a concurrent change of another field is kept.
                let mut write = tx
                    .prepare_cached("UPDATE contacts SET attrs = jsonb_set(attrs, ?2, json(?3)) WHERE id = ?1")
                    .map_err(classify)?;
                let mut retype = tx
                    .prepare_cached(&format!("UPDATE contacts SET {} WHERE id = ?1", typed::assignments("attrs")))
                    .map_err(classify)?;
                for d in &round.fields {
                    for (name, value) in &d.values {
                        let path = format!("$.\"{name}\"");
                        write.execute(params![d.contact, path, value.to_string()]).map_err(classify)?;
                        if typed::SOURCES.contains(&name.as_str()) {
                            retype.execute(params![d.contact]).map_err(classify)?;
                        }
                    }
                }
            }
            if !round.tags.is_empty() || !round.fields.is_empty() || !round.outbox_done.is_empty() {
                // What estimates read changed: contacts, or the sends recorded.
                new_data_version(&tx)?;
            }
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO step_stats (campaign, step, entered, sent, failed, cost_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(campaign, step) DO UPDATE SET entered = entered + excluded.entered, sent = sent + excluded.sent,
                       failed = failed + excluded.failed, cost_micros = cost_micros + excluded.cost_micros",
                )
                .map_err(classify)?;
            let mut skips = tx
                .prepare_cached(
                    "INSERT INTO step_skips (campaign, step, reason, count) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(campaign, step, reason) DO UPDATE SET count = count + excluded.count",
                )
                .map_err(classify)?;
            for (step, c) in &round.steps {
                st.execute(params![campaign, step, c.entered as i64, c.sent as i64, c.failed as i64, c.cost_micros])
                    .map_err(classify)?;
                for (reason, n) in &c.skipped {
                    skips.execute(params![campaign, step, reason, *n as i64]).map_err(classify)?;
                }
                if !c.held.is_empty() {
                    let mut holds = tx
                        .prepare_cached(
                            "INSERT INTO step_holds (campaign, step, reason, count) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT(campaign, step, reason) DO UPDATE SET count = count + excluded.count",
                        )
                        .map_err(classify)?;
                    for (reason, n) in &c.held {
                        holds.execute(params![campaign, step, reason, *n as i64]).map_err(classify)?;
                    }
                }
            }
            if let Some(b) = &round.breaker {
                write_breaker(&tx, campaign, b)?;
            }
            if let Some(next) = round.rate_next_free_ms {
                tx.prepare_cached(
                    "INSERT INTO rate_limits (campaign, next_free_ms) VALUES (?1, ?2)
                     ON CONFLICT(campaign) DO UPDATE SET next_free_ms = excluded.next_free_ms",
                )
                .map_err(classify)?
                .execute(params![campaign, next])
                .map_err(classify)?;
            }
            let mut ab = tx
                .prepare_cached("INSERT INTO ab_stats (campaign, ab, variant, count) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(campaign, ab, variant) DO UPDATE SET count = count + excluded.count")
                .map_err(classify)?;
            for ((name, variant), n) in &round.ab {
                ab.execute(params![campaign, name, variant, *n as i64]).map_err(classify)?;
            }
        }
        tx.commit()
    }

    fn counts(&self, campaign: &str) -> Result<BTreeMap<ExecState, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM executions WHERE campaign = ?1 GROUP BY state")
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(classify)?;
        let mut out: BTreeMap<ExecState, u64> = ExecState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let (s, n) = r.map_err(classify)?;
            let Some(state) = ExecState::parse(&s) else {
                // Counted per state, so name the first row holding it.
                let contact: String = self
                    .conn
                    .query_row(
                        "SELECT contact_id FROM executions WHERE campaign = ?1 AND state = ?2 LIMIT 1",
                        params![campaign, s],
                        |r| r.get(0),
                    )
                    .map_err(classify)?;
                return Err(StoreError::CorruptRow {
                    table: "executions",
                    key: format!("{campaign}/{contact}"),
                    value: s,
                });
            };
            out.insert(state, n as u64);
        }
        // Triggers queued are enrolled already, pending at their first step.
        if self.schema >= QUEUED_TRIGGERS {
            let queued: i64 = cached_row(
                &self.conn,
                "SELECT COUNT(*) FROM trigger_inbox WHERE campaign = ?1",
                params![campaign],
                |r| r.get(0),
            )
            .map_err(classify)?;
            *out.entry(ExecState::Pending).or_default() += queued as u64;
        }
        Ok(out)
    }

    fn step_counts(&self, campaign: &str) -> Result<BTreeMap<StepId, StepCounts>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT step, entered, sent, failed, cost_micros FROM step_stats WHERE campaign = ?1")
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign], |r| {
                Ok((
                    r.get::<_, StepId>(0)?,
                    StepCounts {
                        entered: r.get::<_, i64>(1)? as u64,
                        sent: r.get::<_, i64>(2)? as u64,
                        failed: r.get::<_, i64>(3)? as u64,
                        cost_micros: r.get(4)?,
                        skipped: BTreeMap::new(),
                        held: BTreeMap::new(),
                    },
                ))
            })
            .map_err(classify)?;
        let mut out = rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(classify)?;
        let mut skips = self
            .conn
            .prepare_cached("SELECT step, reason, count FROM step_skips WHERE campaign = ?1")
            .map_err(classify)?;
        let rows = skips
            .query_map(params![campaign], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(classify)?;
        for row in rows {
            let (step, reason, n) = row.map_err(classify)?;
            out.entry(StepId(step)).or_default().skipped.insert(reason, n as u64);
        }
        let mut holds = self
            .conn
            .prepare_cached("SELECT step, reason, count FROM step_holds WHERE campaign = ?1")
            .map_err(classify)?;
        let rows = holds
            .query_map(params![campaign], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(classify)?;
        for row in rows {
            let (step, reason, n) = row.map_err(classify)?;
            out.entry(StepId(step)).or_default().held.insert(reason, n as u64);
        }
        Ok(out)
    }

    fn ab_counts(&self, campaign: &str) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ab, variant, count FROM ab_stats WHERE campaign = ?1")
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign], |r| Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64)))
            .map_err(classify)?;
        rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(classify)
    }

    fn engagement_counts(&self, campaign: &str, by: i64) -> Result<BTreeMap<String, EngagementCounts>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step, SUM(delivered_at <= ?2), SUM(opened_at <= ?2), SUM(clicked_at <= ?2) FROM outbox
                 WHERE campaign = ?1 AND status = 'sent' GROUP BY step",
            )
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign, by], |r| {
                let n = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0) as u64);
                Ok((r.get::<_, String>(0)?, EngagementCounts { delivered: n(1)?, opened: n(2)?, clicked: n(3)? }))
            })
            .map_err(classify)?;
        rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(classify)
    }

    fn exit_counts(&self, campaign: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, COUNT(*) FROM executions WHERE campaign = ?1 AND state = 'completed' AND reason LIKE 'exit:%' GROUP BY reason",
            )
            .map_err(classify)?;
        let rows =
            stmt.query_map(params![campaign], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(classify)?;
        rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(classify)
    }

    fn starts(
        &self,
        campaign: &str,
        after: Option<(&ContactId, Entry)>,
        limit: usize,
    ) -> Result<Vec<Start>, StoreError> {
        let (after, entry) = after.map_or(("", Entry(0)), |(c, e)| (c.as_str(), e));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT contact_id, started_at, entry FROM executions WHERE campaign = ?1 AND (contact_id, entry) > (?2, ?3)
                 ORDER BY contact_id, entry LIMIT ?4",
            )
            .map_err(classify)?;
        let rows = stmt
            .query_map(params![campaign, after, entry, limit as i64], |r| {
                Ok(Start { contact: r.get(0)?, started_at: r.get(1)?, entry: r.get(2)? })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn ab_assignments(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<AbAssignment>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT contact_id, ab, variant, entry FROM ab_assignments WHERE campaign = ? AND contact_id IN ({})",
            placeholders(contacts.len())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(classify)?;
        let args = std::iter::once(campaign).chain(contacts.iter().map(|c| c.as_str()));
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok(AbAssignment { contact: r.get(0)?, ab: r.get(1)?, variant: r.get(2)?, entry: r.get(3)? })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn sends_in_flight(&self, campaign: &str) -> Result<u64, StoreError> {
        // Kept with every commit (outbox_inflight): no scan.
        let pending: Option<i64> =
            cached_row(&self.conn, "SELECT pending FROM outbox_inflight WHERE campaign = ?1", params![campaign], |r| {
                r.get(0)
            })
            .optional()
            .map_err(classify)?;
        Ok(pending.unwrap_or(0).max(0) as u64)
    }

    fn outbox_pending(&mut self, campaign: &str, _lease: &Lease) -> Result<Vec<OutboxNew>, StoreError> {
        // The count is kept with every commit: no pending rows, no scan.
        if self.sends_in_flight(campaign)? == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, contact_id, version, step, channel, message, template, price_micros, created_at, entry FROM outbox WHERE campaign = ?1 AND status = 'pending' AND next_attempt_at IS NULL")
            .map_err(classify)?;
        let rows = stmt.query_map(params![campaign], outbox_row).map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    fn waiting_at(&self, campaign: &str, version: &str, steps: &[StepId]) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM executions WHERE campaign = ?1 AND version = ?2 AND step = ?3 AND state IN ('pending', 'processing')")
            .map_err(classify)?;
        for s in steps {
            n += stmt.query_row(params![campaign, version, s], |r| r.get::<_, i64>(0)).map_err(classify)? as u64;
        }
        Ok(n)
    }

    fn migrate_executions(&mut self, migration: &Migration<'_>, now: i64) -> Result<(u64, u64), StoreError> {
        let Migration { campaign, from, to, kept } = *migration;
        let tx = Nested::begin(&self.conn)?;
        tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS kept_steps (step TEXT PRIMARY KEY); DELETE FROM kept_steps;")
            .map_err(classify)?;
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO kept_steps (step) VALUES (?1)").map_err(classify)?;
            for k in kept {
                ins.execute(params![k]).map_err(classify)?;
            }
        }
        let moved = tx
            .execute(
                "UPDATE executions SET version = ?3, updated_at = ?4 WHERE campaign = ?1 AND version = ?2 AND state IN ('pending', 'processing') AND step IN (SELECT step FROM kept_steps)",
                params![campaign, from, to, now],
            )
            .map_err(classify)? as u64;
        let skipped = tx
            .execute(
                "UPDATE executions SET state = 'skipped', reason = 'step-removed', updated_at = ?3 WHERE campaign = ?1 AND version = ?2 AND state IN ('pending', 'processing')",
                params![campaign, from, now],
            )
            .map_err(classify)? as u64;
        tx.commit()?;
        Ok((moved, skipped))
    }

    fn advance_clock(&mut self, from: i64, to: i64) -> Result<bool, StoreError> {
        // One writer: only the clock's own value can have moved.
        let changed = self
            .conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('clock', ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE meta.value = ?1",
                params![from.to_string(), to.to_string()],
            )
            .map_err(classify)?;
        Ok(changed == 1)
    }

    fn requeue_processing(&mut self, campaign: &str, lease: &Lease) -> Result<u64, StoreError> {
        let worker = &lease.worker;
        self.conn
            .execute(
                "UPDATE executions SET state = COALESCE(then_state, 'pending'), then_state = NULL, claimed_by = NULL, claimed_at = NULL
                 WHERE campaign = ?1 AND state = 'processing' AND claimed_by IS NOT ?2
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign = ?1 AND o.contact_id = executions.contact_id AND o.entry = executions.entry AND o.status = 'pending')",
                params![campaign, worker.0],
            )
            .map(|n| n as u64)
            .map_err(classify)
    }

    fn wake(&mut self, campaign: &str, contact: &ContactId, steps: Steps<'_>, at: i64) -> Result<u64, StoreError> {
        // By the primary key (campaign, contact_id): one row at most, never a scan.
        let n = match steps {
            Steps::Any => self
                .conn
                .prepare_cached(
                    "UPDATE executions SET wake_at = ?3 WHERE campaign = ?1 AND contact_id = ?2 AND state = 'pending' AND wake_at > ?3",
                )
                .and_then(|mut s| s.execute(params![campaign, contact, at])),
            Steps::Only([]) => return Ok(0),
            Steps::Only(list) => {
                let sql = format!(
                    "UPDATE executions SET wake_at = ?3 WHERE campaign = ?1 AND contact_id = ?2 AND state = 'pending' AND wake_at > ?3 AND step IN ({})",
                    (0..list.len()).map(|i| format!("?{}", i + 4)).collect::<Vec<_>>().join(", ")
                );
                let mut values: Vec<rusqlite::types::Value> =
                    vec![campaign.to_string().into(), contact.0.clone().into(), at.into()];
                values.extend(list.iter().map(|s| rusqlite::types::Value::from(s.0.clone())));
                self.conn.prepare_cached(&sql).and_then(|mut s| s.execute(params_from_iter(values)))
            }
        }
        .map_err(classify)?;
        Ok(n as u64)
    }

    fn exit(&mut self, campaign: &str, contact: &ContactId, reason: &str, at: i64) -> Result<u64, StoreError> {
        // By the primary key; the start rule is `exits::counts_from`'s.
        self.conn
            .prepare_cached(
                "UPDATE executions SET state = 'completed', reason = ?3, wake_at = NULL, wait_since = NULL, updated_at = ?4
                 WHERE campaign = ?1 AND contact_id = ?2 AND state = 'pending' AND (started_at IS NULL OR started_at <= ?4)",
            )
            .and_then(|mut s| s.execute(params![campaign, contact, reason, at]))
            .map(|n| n as u64)
            .map_err(classify)
    }

    fn reenter(
        &mut self,
        campaign: &str,
        version: &str,
        entries: &[Enrollment],
        rule: crate::compile::program::Reentry,
        now: i64,
    ) -> Result<u64, StoreError> {
        use crate::compile::program::Reentry;
        // `after D`: in only when no execution started less than D before the
        // entry (a NULL start is before flowc recorded starts: long ago).
        let gap = match rule {
            Reentry::Once => return self.enroll(campaign, version, entries, now),
            Reentry::Always => None,
            Reentry::After { minutes } => Some(minutes),
        };
        let tx = Nested::begin(&self.conn)?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO executions (campaign, contact_id, entry, version, step, state, wake_at, started_at, updated_at)
                     SELECT ?1, ?2, COALESCE(MAX(entry), 0) + 1, ?3, ?4, 'pending', ?5, ?5, ?6
                     FROM executions WHERE campaign = ?1 AND contact_id = ?2
                     HAVING ?7 IS NULL OR COALESCE(MAX(started_at), ?5 - ?7) <= ?5 - ?7",
                )
                .map_err(classify)?;
            for e in entries {
                n += stmt
                    .execute(params![campaign, e.contact, version, e.step, e.wake_at, now, gap])
                    .map_err(classify)? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn latest_starts(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashMap<ContactId, Option<i64>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(if self.schema >= QUEUED_TRIGGERS {
                "SELECT MAX(started) FROM (
                       SELECT started_at AS started FROM executions WHERE campaign = ?1 AND contact_id = ?2
                       UNION ALL SELECT at FROM trigger_inbox WHERE contact_id = ?2 AND campaign = ?1)
                     HAVING COUNT(*) > 0"
            } else {
                "SELECT MAX(started_at) FROM executions WHERE campaign = ?1 AND contact_id = ?2 HAVING COUNT(*) > 0"
            })
            .map_err(classify)?;
        let mut found = std::collections::HashMap::new();
        for c in contacts {
            if let Some(start) = stmt.query_row(params![campaign, c], |r| r.get(0)).optional().map_err(classify)? {
                found.insert((*c).clone(), start);
            }
        }
        Ok(found)
    }

    fn enrolled(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashSet<ContactId>, StoreError> {
        // Point lookups on the primary key: no limit on how many contacts are asked about.
        let mut stmt = self
            .conn
            .prepare_cached(if self.schema >= QUEUED_TRIGGERS {
                "SELECT 1 FROM executions WHERE campaign = ?1 AND contact_id = ?2
                 UNION ALL SELECT 1 FROM trigger_inbox WHERE contact_id = ?2 AND campaign = ?1"
            } else {
                "SELECT 1 FROM executions WHERE campaign = ?1 AND contact_id = ?2"
            })
            .map_err(classify)?;
        let mut found = std::collections::HashSet::new();
        for c in contacts {
            if stmt.exists(params![campaign, c]).map_err(classify)? {
                found.insert((*c).clone());
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON values of the shapes contacts' attributes take, and the
    /// awkward ones: escapes, control characters, non-ASCII, long strings
    /// (two- and four-byte size headers), large and negative numbers.
    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let text = prop_oneof!["[a-z]{0,12}", "\\PC{0,20}", "[\"\\\\\n\t\u{1}é😀 ]{0,8}", "x{250,300}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 40, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,10}|\\PC{1,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// What flowc writes as binary JSON, SQLite reads as the same
        /// value (`json()` renders it, `json_valid(…, 8)` accepts it
        /// strictly), and reading it back in Rust gives the value again;
        /// SQLite's own encoding of the value's text decodes to it too.
        #[test]
        fn binary_json_written_in_rust_is_what_sqlite_reads(v in json_value()) {
            let conn = Connection::open_in_memory().expect("db");
            let blob = crate::runtime::jsonb::encode(&v);
            let (valid, text): (bool, String) = conn
                .query_row("SELECT json_valid(?1, 8), json(?1)", params![blob], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("sqlite reads it");
            proptest::prop_assert!(valid);
            let read: serde_json::Value = serde_json::from_str(&text).expect("json");
            proptest::prop_assert_eq!(&read, &v);
            proptest::prop_assert_eq!(crate::runtime::jsonb::decode(&blob), Ok(v.clone()));
            let theirs: Vec<u8> = conn
                .query_row("SELECT jsonb(?1)", params![v.to_string()], |r| r.get(0))
                .expect("jsonb");
            proptest::prop_assert_eq!(crate::runtime::jsonb::decode(&theirs), Ok(v.clone()));
        }
    }

    /// A schema-1 database with one pending and one sent message migrates to
    /// schema 2 with the same idempotency keys, the pending one still found
    /// by recovery and the in-flight count right.
    /// A reader beside an older file (not yet migrated by a writer) reads
    /// it as it is: no queued triggers, no error for the missing queue.
    #[test]
    fn a_schema_8_file_is_read_without_a_trigger_queue() {
        let path = temp_db("schema-8-reader");
        {
            let conn = Connection::open(&path).expect("db");
            register_functions(&conn).expect("functions");
            for m in &MIGRATIONS[..8] {
                conn.execute_batch(m).expect("migration");
            }
            conn.pragma_update(None, "user_version", 8).expect("version");
            conn.execute(
                "INSERT INTO executions (campaign, contact_id, version, step, state, wake_at, started_at, updated_at)
                 VALUES ('c', 'c1', 'v', 's', 'pending', 5, 5, 5)",
                [],
            )
            .expect("execution");
        }
        let store = SqliteStore::open_as(&path, OpenMode::ReadOnly).expect("reader");
        let c1: ContactId = "c1".into();
        assert_eq!(store.counts("c").expect("counts")[&ExecState::Pending], 1);
        assert_eq!(store.next_wake("c").expect("wake"), Some(5));
        assert_eq!(store.latest_starts("c", &[&c1]).expect("starts").get(&c1), Some(&Some(5)));
        assert!(store.enrolled("c", &[&c1]).expect("enrolled").contains(&c1));
        assert!(store.events_for(&[&c1]).expect("events").is_empty());
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, 8, "a reader migrates nothing");
    }

    #[test]
    fn schema_1_outbox_migrates_with_keys_and_pending_count() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
        conn.pragma_update(None, "user_version", 1).expect("version");
        for (step, status) in [("s1", "sent"), ("s3", "pending")] {
            conn.execute(
                "INSERT INTO outbox (key, campaign, version, contact_id, step, channel, message, template, price_micros, status, created_at, sent_at)
                 VALUES (?1, 'welcome', 'v1', 'c/1', ?2, 'email', 'marketing', 't', 1000, ?3, 10, 11)",
                params![outbox_key("welcome", "v1", &"c/1".into(), &step.into()), step, status],
            )
            .expect("row");
        }
        let mut store = SqliteStore::setup(conn, None, OpenMode::ReadWrite).expect("migrate");
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let pending = store.outbox_pending("welcome", &Lease::new(WorkerId("test".into()))).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].key, outbox_key("welcome", "v1", &"c/1".into(), &"s3".into()));
        assert_eq!(pending[0].step.0, "s3");
        let sent = store.sent_for("welcome", &[&"c/1".into()]).expect("sent");
        assert_eq!(sent.iter().map(|s| s.message.step.as_str()).collect::<Vec<_>>(), vec!["s1"]);

        // Settling the pending row empties the in-flight count; recovery then scans nothing.
        let round = Round {
            outbox_done: vec![
                pending[0].outcome(20, SendOutcome::Sent(Engagement { delivered_at: Some(21), ..Default::default() }))
            ],
            ..Default::default()
        };
        store.commit("welcome", &round, &Lease::new(WorkerId("test".into())), 20).expect("commit");
        assert!(store.outbox_pending("welcome", &Lease::new(WorkerId("test".into()))).expect("pending").is_empty());
        let n: i64 = store
            .conn
            .query_row("SELECT pending FROM outbox_inflight WHERE campaign = 'welcome'", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0);
        // A second outcome for the same row changes nothing (the row is no longer pending).
        store.commit("welcome", &round, &Lease::new(WorkerId("test".into())), 30).expect("commit again");
        let n: i64 = store
            .conn
            .query_row("SELECT pending FROM outbox_inflight WHERE campaign = 'welcome'", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0);
        let sent = store.sent_for("welcome", &[&"c/1".into()]).expect("sent");
        assert_eq!(sent.len(), 2);
    }

    fn event_count(store: &SqliteStore) -> i64 {
        store.conn.query_row("SELECT COUNT(*) FROM contact_events", [], |r| r.get(0)).expect("count")
    }

    /// A schema-2 database where a file was imported twice holds every event
    /// twice; migrating keys them as new imports are keyed, keeps one of
    /// each, and importing the same events again adds nothing.
    #[test]
    fn schema_4_executions_migrate_without_a_start_or_a_wait() {
        let conn = Connection::open_in_memory().expect("db");
        register_functions(&conn).expect("functions");
        for m in &MIGRATIONS[..4] {
            conn.execute_batch(m).expect("schema");
        }
        conn.pragma_update(None, "user_version", 4).expect("version");
        conn.execute(
            "INSERT INTO contacts (id, attrs, tags, consent, capabilities) VALUES ('c1', '{}', '[]', '[]', '[]')",
            [],
        )
        .expect("contact");
        conn.execute(
            "INSERT INTO executions (campaign, contact_id, version, step, state, wake_at, updated_at) VALUES ('c', 'c1', 'v', 's', 'pending', 5, 1)",
            [],
        )
        .expect("execution");
        let mut store = SqliteStore::setup(conn, None, OpenMode::ReadWrite).expect("migrate");
        let due = store.claim("c", 10, 10, &[], &Lease::new(WorkerId("test".into()))).expect("due");
        assert_eq!((due[0].started_at, due[0].wait_since), (None, None), "older rows: before everything");
        // New enrolments start at their first wake-up.
        store.enroll("c", "v", &[Enrollment::new("c1".into(), "s".into(), 7)], 3).expect("enroll (ignored: enrolled)");
        store
            .conn
            .execute(
                "INSERT INTO contacts (id, attrs, tags, consent, capabilities, addresses, profile) VALUES ('c2', jsonb('{}'), '[]', '[]', '[]', 0, '')",
                [],
            )
            .expect("contact");
        store.enroll("c", "v", &[Enrollment::new("c2".into(), "s".into(), 7)], 3).expect("enroll");
        let starts = store.starts("c", None, 10).expect("starts");
        let start = |c: &str, started_at| Start { contact: c.into(), started_at, entry: Entry::FIRST };
        assert_eq!(starts, vec![start("c1", None), start("c2", Some(7))]);
    }

    /// Schema 7 numbers executions: rows already stored are entry 1, and a
    /// send pending across the upgrade keeps its idempotency key, so the
    /// provider still recognises it; a re-entry's key differs.
    #[test]
    fn schema_5_executions_become_entry_1_and_pending_sends_keep_their_key() {
        let conn = Connection::open_in_memory().expect("db");
        register_functions(&conn).expect("functions");
        for m in &MIGRATIONS[..5] {
            conn.execute_batch(m).expect("schema");
        }
        conn.pragma_update(None, "user_version", 5).expect("version");
        conn.execute_batch(
            "INSERT INTO contacts (id, attrs, tags, consent, capabilities) VALUES ('c1', '{}', '[]', '[]', '[]');
             INSERT INTO executions (campaign, contact_id, version, step, state, wake_at, updated_at, started_at, then_state, claimed_by)
               VALUES ('c', 'c1', 'v', 's', 'processing', 5, 1, 2, 'pending', 'gone');
             INSERT INTO outbox (campaign, contact_id, step, version, channel, message, template, price_micros, status, created_at)
               VALUES ('c', 'c1', 's', 'v', 'email', 'marketing', 't', 1000, 'pending', 3);
             INSERT INTO outbox_inflight VALUES ('c', 1);",
        )
        .expect("rows");
        let mut store = SqliteStore::setup(conn, None, OpenMode::ReadWrite).expect("migrate");
        let pending = store.outbox_pending("c", &Lease::new(WorkerId("test".into()))).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].entry, Entry::FIRST);
        assert_eq!(pending[0].key, outbox_key("c", "v", &"c1".into(), &"s".into()));
        let starts = store.starts("c", None, 10).expect("starts");
        assert_eq!(starts, vec![Start { contact: "c1".into(), started_at: Some(2), entry: Entry::FIRST }]);
        // A second entry (re-entry `always`) gets entry 2 and its own key.
        let n = store
            .reenter(
                "c",
                "v",
                &[Enrollment::new("c1".into(), "s".into(), 9)],
                crate::compile::program::Reentry::Always,
                9,
            )
            .expect("reenter");
        assert_eq!(n, 1);
        let starts = store.starts("c", Some((&"c1".into(), Entry::FIRST)), 10).expect("starts");
        assert_eq!(starts, vec![Start { contact: "c1".into(), started_at: Some(9), entry: Entry(2) }]);
        assert_eq!(
            execution_key("c", "v", &"c1".into(), Entry(2), &"s".into()),
            "c/v/c1/s#2",
            "a re-entry is never taken for the first entry's duplicate"
        );
        let key: String = store
            .conn
            .query_row("SELECT key FROM outbox WHERE contact_id = 'c1'", [], |r| r.get(0))
            .expect("generated key");
        assert_eq!(key, "c/v/c1/s");
    }

    #[test]
    fn schema_2_events_migrate_to_one_row_per_key() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
        conn.execute_batch(MIGRATIONS[1]).expect("schema 2");
        conn.pragma_update(None, "user_version", 2).expect("version");
        let rows = [
            ("c1", "order.completed", 100, r#"{"amount":60,"currency":"EUR"}"#),
            ("c1", "order.completed", 100, r#"{"amount":60,"currency":"EUR"}"#),
            ("c1", "order.completed", 200, r#"{"amount":60,"currency":"EUR"}"#),
            ("c2", "order.completed", 100, r#"{"amount":60,"currency":"EUR"}"#),
            ("c2", "page.viewed", 5, r#"{"id":"e-1","url":"/a"}"#),
            ("c2", "page.viewed", 5, r#"{"id":"e-1","url":"/a"}"#),
        ];
        for (c, n, at, props) in rows {
            conn.execute(
                "INSERT INTO contact_events (contact_id, name, at, props) VALUES (?1, ?2, ?3, ?4)",
                params![c, n, at, props],
            )
            .expect("event");
        }
        let mut store = SqliteStore::setup(conn, None, OpenMode::ReadWrite).expect("migrate");
        assert_eq!(event_count(&store), 4);
        let unkeyed: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM contact_events WHERE key IS NULL", [], |r| r.get(0))
            .expect("keys");
        assert_eq!(unkeyed, 0);
        let first: String = store
            .conn
            .query_row("SELECT key FROM contact_events WHERE contact_id = 'c1' AND at = 100", [], |r| r.get(0))
            .expect("key");
        assert_eq!(
            first,
            event_key(
                "c1",
                "order.completed",
                100,
                &parse_map(r#"{"currency":"EUR","amount":60}"#, "t", "k").expect("json")
            )
        );
        // The same events through the import path: nothing new.
        let again: Vec<EventOf> = rows
            .iter()
            .map(|(c, n, at, props)| EventOf {
                contact: (*c).into(),
                event: ContactEvent { name: n.to_string(), at: *at, props: parse_map(props, "t", "k").expect("json") },
            })
            .collect();
        store.upsert_contacts(&[], &again).expect("import");
        assert_eq!(event_count(&store), 4);
        // An event with its own id is that id, whatever else changed.
        let renamed = vec![EventOf {
            contact: "c2".into(),
            event: ContactEvent {
                name: "page.viewed".into(),
                at: 9,
                props: parse_map(r#"{"id":"e-1","url":"/b"}"#, "t", "k").expect("json"),
            },
        }];
        store.upsert_contacts(&[], &renamed).expect("import");
        assert_eq!(event_count(&store), 4);
    }

    #[test]
    fn event_keys_ignore_property_order_and_see_every_field() {
        let a = parse_map(r#"{"amount":60,"items":[{"sku":"x","n":1}]}"#, "t", "k").expect("json");
        let b = parse_map(r#"{"items":[{"n":1,"sku":"x"}],"amount":60}"#, "t", "k").expect("json");
        assert_eq!(event_key("c", "e", 1, &a), event_key("c", "e", 1, &b));
        assert_ne!(event_key("c", "e", 1, &a), event_key("c", "e", 2, &a));
        assert_ne!(event_key("c", "e", 1, &a), event_key("d", "e", 1, &a));
        assert_ne!(event_key("c", "e", 1, &a), event_key("c", "f", 1, &a));
        assert_ne!(
            event_key("c", "e", 1, &a),
            event_key("c", "e", 1, &parse_map(r#"{"amount":61}"#, "t", "k").expect("json"))
        );
    }

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowc-sqlite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("t.db")
    }

    /// A file missing a table of its schema is refused before anything is
    /// read or written, naming what is missing, and left as it was.
    #[test]
    fn a_missing_table_or_column_is_corrupt_and_the_file_untouched() {
        let db = temp_db("missing");
        drop(SqliteStore::open(&db).expect("create"));
        {
            let c = Connection::open(&db).expect("sqlite");
            c.execute_batch("DROP TABLE campaign_transitions; ALTER TABLE ledger DROP COLUMN reason;").expect("break");
        }
        let before = std::fs::read(&db).expect("read");
        let err = SqliteStore::open(&db).err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("table `campaign_transitions`") && msg.contains("column `ledger.reason`"), "{msg}");
        assert!(SqliteStore::open_as(&db, OpenMode::ReadOnly).is_err());
        assert_eq!(std::fs::read(&db).expect("read"), before);
        let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    }

    /// The writer's lock: held by someone else (another process, here
    /// another open file description), a writer is refused before touching
    /// the database; stores of this process share it; a reader needs none.
    #[test]
    fn the_writer_lock_refuses_a_second_writer_but_not_readers() {
        let db = temp_db("lock");
        let first = SqliteStore::open(&db).expect("first writer");
        let second = SqliteStore::open(&db).expect("this process shares the lock");
        drop(first);
        drop(second);
        let other = std::fs::OpenOptions::new().write(true).open(lock_path(&db)).expect("lock file");
        other.try_lock().expect("the lock is free once every store dropped");
        let err = SqliteStore::open(&db).err().expect("refused");
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
        assert!(err.to_string().contains("locked by another flowc process"), "{err}");
        let reader = SqliteStore::open_as(&db, OpenMode::ReadOnly).expect("reader");
        assert_eq!(reader.balance().expect("balance"), 0);
        drop(other);
        SqliteStore::open(&db).expect("free again");
        let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    }

    /// The process's checkpointer copies a commit's pages back into the
    /// database file without the writer doing it, and without anyone
    /// closing the database: below SQLite's own mark (a thousand pages;
    /// the writers' own is now higher), nothing else would.
    #[test]
    fn the_log_is_copied_back_without_the_writer() {
        let db = temp_db("checkpoint");
        let mut store = SqliteStore::open(&db).expect("db");
        let conn = store.connection();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO contacts (id, attrs, tags, consent, capabilities, created_minute, addresses, profile)
             SELECT 'c' || i, jsonb(json_object('note', printf('%.300c', 'x'))), '[]', '[]', '[]', NULL, 0, '' FROM n",
        )
        .expect("insert");
        let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
        let size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("size");
        assert!(pages > 200 && pages < 1000, "{pages} pages: enough to see, under SQLite's own mark");
        // Waits for an event, not a duration: the thread looks every few
        // milliseconds; the deadline only keeps a broken build from hanging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::metadata(&db).expect("file").len() < pages * size {
            assert!(std::time::Instant::now() < deadline, "the log was not copied back");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(store);
        let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
    }

    /// A duplicate insert of a send (same primary key) is ignored and not counted twice.
    #[test]
    fn duplicate_outbox_rows_are_ignored_and_counted_once() {
        let mut store = SqliteStore::open_in_memory().expect("db");
        let row = OutboxNew {
            key: outbox_key("c", "v", &"x".into(), &"s1".into()),
            contact: "x".into(),
            entry: Entry::FIRST,
            version: "v".into(),
            step: "s1".into(),
            channel: "email".into(),
            message: "marketing".into(),
            template: "t".into(),
            price_micros: 5,
            created_at: 1,
        };
        let round = Round { outbox_new: vec![row.clone(), row.clone()], ..Default::default() };
        store.commit("c", &round, &Lease::new(WorkerId("test".into())), 1).expect("commit");
        store.commit("c", &round, &Lease::new(WorkerId("test".into())), 2).expect("commit again");
        let pending = store.outbox_pending("c", &Lease::new(WorkerId("test".into()))).expect("pending");
        assert_eq!(pending, vec![row]);
        let key: String = store.conn.query_row("SELECT key FROM outbox", [], |r| r.get(0)).expect("key");
        assert_eq!(key, "c/v/x/s1");
    }

    /// Every contact's typed columns, and what they should be by the
    /// record read back (`typed::of_record`): the two sides of issue 23's
    /// typed columns, which must agree after every write.
    fn typed_columns_disagreeing(store: &SqliteStore) -> Vec<String> {
        type Row = (String, Option<i64>, i64, String, [String; 3]);
        let mut stmt = store
            .conn
            .prepare(
                "SELECT id, created_minute, addresses, profile, tags, consent, capabilities FROM contacts ORDER BY id",
            )
            .expect("typed");
        let rows: Vec<Row> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, [r.get(4)?, r.get(5)?, r.get(6)?])))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.into_iter()
            .flat_map(|(id, created, addresses, profile, [tags, consent, capabilities])| {
                let record = store.contact(&id.as_str().into()).expect("read").expect("there");
                let want = typed::of_record(&record);
                let want_profile = typed::profile(&tags, &consent, &capabilities, addresses);
                [
                    (want != (created, addresses))
                        .then(|| format!("{id}: stored {:?}, attributes say {want:?}", (created, addresses))),
                    (profile != want_profile)
                        .then(|| format!("{id}: profile {profile:?}, columns say {want_profile:?}")),
                ]
                .into_iter()
                .flatten()
            })
            .collect()
    }

    /// Issue 23: the typed columns agree with the attributes after the
    /// migration to schema 8 (from text, with every spelling of a date and
    /// an address), an upsert, a `set` step of an address or another field,
    /// and a tag change; text that is not JSON stays and still names its row.
    #[test]
    fn typed_columns_agree_with_the_attributes_after_every_write() {
        let conn = Connection::open_in_memory().expect("db");
        register_functions(&conn).expect("functions");
        for m in &MIGRATIONS[..7] {
            conn.execute_batch(m).expect("schema");
        }
        conn.pragma_update(None, "user_version", 7).expect("version");
        let attrs = [
            r#"{"created_at": "2026-11-20T10:00:00Z", "email": "a@example.com", "phone": "+33600000000"}"#,
            r#"{"created_at": "2026-11-20T10:00:00+02:00", "email": "", "phone": null}"#,
            r#"{"created_at": "2026-11-20 10:00", "phone": 33600000000}"#,
            r#"{"created_at": "2026-11-20T10:00:30", "email": false}"#,
            r#"{"created_at": "soon", "email": {"a": 1}}"#,
            r#"{"created_at": 1700000000, "phone": ""}"#,
            r#"{"created_at": "1969-07-20T20:17:40Z"}"#,
            r#"{}"#,
        ];
        for (i, a) in attrs.iter().enumerate() {
            conn.execute(
                "INSERT INTO contacts (id, attrs, tags, consent, capabilities) VALUES (?1, ?2, '[]', '[]', '[]')",
                params![format!("c{i}"), a],
            )
            .expect("row");
        }
        conn.execute(
            "INSERT INTO contacts (id, attrs, tags, consent, capabilities) VALUES ('bad', '{oops', '[]', '[]', '[]')",
            [],
        )
        .expect("bad row");
        let mut store = SqliteStore::setup(conn, None, OpenMode::ReadWrite).expect("migrate");
        assert!(matches!(store.contact(&"bad".into()), Err(StoreError::CorruptRow { .. })), "names the row");
        store.conn.execute("DELETE FROM contacts WHERE id = 'bad'", []).expect("drop it");
        assert_eq!(typed_columns_disagreeing(&store), Vec::<String>::new(), "after the migration");

        let mut record = store.contact(&"c1".into()).expect("read").expect("c1");
        record.attrs.insert("email".into(), "new@example.com".into());
        record.attrs.insert("created_at".into(), "2026-12-01T00:00:00Z".into());
        store.upsert_contacts(&[record], &[]).expect("upsert");
        assert_eq!(typed_columns_disagreeing(&store), Vec::<String>::new(), "after an upsert");

        let set = |name: &str, value: serde_json::Value| FieldDelta {
            contact: "c0".into(),
            values: vec![(name.to_string(), value)],
        };
        for delta in [
            set("email", "".into()),
            set("phone", serde_json::Value::Null),
            set("plan", "pro".into()),
            set("email", "back@example.com".into()),
        ] {
            let round = Round { fields: vec![delta.clone()], ..Default::default() };
            store.commit("k", &round, &Lease::new(WorkerId("w".into())), 1).expect("set");
            assert_eq!(typed_columns_disagreeing(&store), Vec::<String>::new(), "after {delta:?}");
        }
        let tags = TagDelta { contact: "c2".into(), add: vec!["x".into()], remove: vec![] };
        store
            .commit("k", &Round { tags: vec![tags], ..Default::default() }, &Lease::new(WorkerId("w".into())), 1)
            .expect("tag");
        assert_eq!(typed_columns_disagreeing(&store), Vec::<String>::new(), "after a tag change");
        let c0 = store.contact(&"c0".into()).expect("read").expect("c0");
        assert_eq!(c0.attrs.get("plan"), Some(&serde_json::Value::from("pro")), "a set step writes the attribute");
    }

    /// The fields a claimed execution carries (pulled out by json_extract)
    /// are the ones the evaluator would read from the parsed record, for
    /// every field type, absent and mistyped values included.
    #[test]
    fn due_fields_equal_the_parsed_record() {
        use crate::compile::program::FieldType as T;
        use crate::runtime::facts::FieldValue;
        let field = |name: &str, ty: T| FieldDef { name: name.into(), ty, optional: true };
        let fields = vec![
            field("id", T::String),
            field("tags", T::SetString),
            field("plan", T::Enum(vec!["free".into(), "pro".into()])),
            field("score", T::Number),
            field("ratio", T::Number),
            field("vip", T::Bool),
            field("birthday", T::Date),
            field("created_at", T::Datetime),
            field("cooldown", T::Duration),
            field("timezone", T::Timezone),
            field("langs", T::SetString),
            field("missing", T::String),
            field("wrong", T::Number),
            field("name", T::String),
        ];
        let attrs = serde_json::json!({
            "plan": "pro", "score": 42, "ratio": 0.25, "vip": true, "birthday": "1990-02-28",
            "created_at": "2026-11-20T10:00:00Z", "cooldown": 90, "timezone": "Europe/Paris",
            "langs": ["fr", "en"], "wrong": "not a number", "name": "Zoë \"quoted\""
        });
        let record = ContactRecord {
            id: "c-1".into(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            tags: vec!["a".into(), "b".into()],
            consent: vec!["email".into()],
            capabilities: vec!["rcs".into()],
        };
        let mut store = SqliteStore::open_in_memory().expect("db");
        store.upsert_contacts(std::slice::from_ref(&record), &[]).expect("contacts");
        store.enroll("camp", "v", &[Enrollment::new("c-1".into(), "s0".into(), 5)], 1).expect("enroll");
        let due = store.claim("camp", 10, 10, &fields, &Lease::new(WorkerId("test".into()))).expect("due");
        assert_eq!(due.len(), 1);
        let expected: Vec<FieldValue> = fields
            .iter()
            .map(|f| match f.name.as_str() {
                "id" => FieldValue::Str(record.id.0.clone()),
                "tags" => FieldValue::Set(record.tags.clone()),
                n => record.attrs.get(n).map_or(FieldValue::Absent, |v| super::super::facts::json_to_field(&f.ty, v)),
            })
            .collect();
        assert_eq!(due[0].contact.fields, expected);
        assert_eq!(due[0].contact.created_at, super::super::facts::parse_datetime("2026-11-20T10:00:00Z"));
        assert_eq!(
            (due[0].contact.consent.clone(), due[0].contact.capabilities.clone()),
            (record.consent.clone(), record.capabilities.clone())
        );
    }
}
