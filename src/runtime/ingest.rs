//! Getting events in: one body of `POST /v1/events` (`{"contact", "name",
//! "at", "props"}`) checked by one function, whichever way it came (the API,
//! `flowc events import`, `flowc run --events`), then stored and the
//! executions waiting on it woken (`wake`).

use super::contacts::{self, EventError, Schema};
use super::eval::{self, Ctx, Props};
use super::facts::{self, ContactEvent};
use super::store::{CampaignState, ContactId, Enrollment, Store, StoreError};
use super::wake::{Fact, Waiting};
use crate::compile::codec;
use crate::compile::program::{Program, Trigger};
use serde_json::{Map, Value};

/// Why an event body is refused, and which field is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFault {
    pub kind: FaultKind,
    /// The body's field at fault (`name`, `props`, …), when one is.
    pub field: Option<&'static str>,
    pub message: String,
}

/// The kinds the API maps to its status codes and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Not the body's shape (400).
    Malformed,
    /// No such declared event (422 `unknown-event`).
    UnknownEvent,
    /// A property does not fit the declaration (422 `invalid-event`).
    InvalidEvent,
}

impl std::fmt::Display for EventFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventFault { field: Some(field), message, .. } => write!(f, "field `{field}`: {message}"),
            EventFault { field: None, message, .. } => f.write_str(message),
        }
    }
}

fn malformed(field: Option<&'static str>, message: impl Into<String>) -> EventFault {
    EventFault { kind: FaultKind::Malformed, field, message: message.into() }
}

/// One event, checked: whose it is and what it is.
pub type Incoming = super::store::EventOf;

/// The longest event name accepted.
pub const MAX_NAME: usize = 200;

/// Checks one event body against the declared events; an absent `at` is
/// `now`. Whether the contact exists is the caller's to ask its store.
pub fn check(body: &Value, schema: &Schema, now: i64) -> Result<Incoming, EventFault> {
    let Value::Object(m) = body else {
        return Err(malformed(
            None,
            "expected a JSON object like {\"contact\": \"c-1\", \"name\": \"order.completed\"}",
        ));
    };
    let allowed = ["contact", "name", "at", "props"];
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(malformed(None, format!("unknown field `{k}` (allowed: {})", allowed.join(", "))));
    }
    let contact = m
        .get("contact")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(Some("contact"), "`contact` must be a contact id"))?;
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_NAME)
        .ok_or_else(|| malformed(Some("name"), "`name` must be an event name"))?;
    let props = match m.get("props") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(malformed(Some("props"), "`props` must be an object")),
    };
    let at = match m.get("at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => facts::parse_datetime(s)
            .ok_or_else(|| malformed(Some("at"), "`at` must be a datetime like 2026-11-27T09:00:00Z"))?,
        Some(_) => return Err(malformed(Some("at"), "`at` must be a datetime string")),
    };
    contacts::check_event(schema, name, &props).map_err(|e| match e {
        EventError::UnknownName(message) => EventFault { kind: FaultKind::UnknownEvent, field: Some("name"), message },
        EventError::BadProp(message) => EventFault { kind: FaultKind::InvalidEvent, field: Some("props"), message },
    })?;
    Ok(Incoming { contact: ContactId(contact.to_string()), event: ContactEvent { name: name.to_string(), at, props } })
}

/// What storing a batch of events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Waiting executions made due.
    pub woken: u64,
    /// Executions completed by an `exit when event` (`leave`).
    pub exited: u64,
    /// Contacts enrolled in event-triggered campaigns.
    pub enrolled: u64,
}

/// The event-triggered campaigns that enroll on an ingested event: RUNNING
/// or SCHEDULED ones, decoded once for a whole batch.
pub struct Triggered(Vec<Program>);

impl Triggered {
    pub fn load(store: &dyn Store) -> Result<Triggered, StoreError> {
        let mut out = Vec::new();
        for row in store.campaigns()? {
            if !matches!(row.state, CampaignState::Running | CampaignState::Scheduled) {
                continue;
            }
            // A program this flowc cannot decode fails where it runs, not here.
            let Ok(p) = codec::from_binary(&row.program) else { continue };
            if matches!(p.trigger, Trigger::Event { .. }) {
                out.push(p);
            }
        }
        Ok(Triggered(out))
    }

    /// Enrolls `e`'s contact in each campaign whose trigger rule and
    /// audience it meets and whose re-entry rule lets it in (`once`: if it
    /// never entered); returns their names. The event must be stored.
    pub fn enroll(&self, store: &mut dyn Store, e: &Incoming, now: i64) -> Result<Vec<String>, StoreError> {
        let mut enrolled_in = Vec::new();
        let mut contact = None;
        for p in &self.0 {
            let Trigger::Event { event: want, props: names, filter } = &p.trigger else { continue };
            if *want != e.event.name {
                continue;
            }
            if contact.is_none() {
                let Some(c) = store.contact(&e.contact)? else { return Ok(enrolled_in) };
                contact = Some(c);
            }
            let Some(c) = &contact else { continue };
            let events = store.events_for(&[&c.id])?.into_iter().map(|e| e.event).collect();
            let f = facts::of_record(p, c, events);
            let cx = Ctx { program: p, facts: &f, now };
            let rule = filter
                .as_ref()
                .is_none_or(|flt| eval::eval_with(&cx, flt, Props::Event { names, values: &e.event.props }));
            let audience = p.audience.as_ref().is_none_or(|a| eval::eval(&cx, a));
            let Some(entry) = p.nodes.first() else { continue };
            if rule
                && audience
                && super::reentry::enroll(
                    store,
                    p,
                    &[Enrollment::new(e.contact.clone(), entry.id.clone(), e.event.at.max(now))],
                    now,
                )? > 0
            {
                enrolled_in.push(p.campaign.clone());
            }
        }
        Ok(enrolled_in)
    }
}

/// Stores `events` (an event already stored is not stored again), enrolls
/// their contacts in the event-triggered campaigns they start, and wakes
/// the executions waiting on them, each at its event's time. Callers wrap
/// it in a transaction with what else they write (`store::atomically`).
pub fn ingest(store: &mut dyn Store, events: &[Incoming], now: i64) -> Result<Ingested, StoreError> {
    if events.is_empty() {
        return Ok(Ingested::default());
    }
    let mut done = store_and_wake(store, events)?;
    let triggered = Triggered::load(store)?;
    for e in events {
        done.enrolled += triggered.enroll(store, e, now)?.len() as u64;
    }
    Ok(done)
}

/// Stores `events`, completes the executions their exit criteria end
/// (`leave`) and wakes the executions waiting on them, each at its event's
/// time. Returns what it did (nothing `enrolled`: that is `ingest`'s).
pub fn store_and_wake(store: &mut dyn Store, events: &[Incoming]) -> Result<Ingested, StoreError> {
    if events.is_empty() {
        return Ok(Ingested::default());
    }
    store.upsert_contacts(&[], events)?;
    // The campaigns and their interests are read once for all the events.
    let waiting = Waiting::load(store)?;
    let mut done = Ingested::default();
    for e in events {
        // Exits first: an execution that leaves has nothing left to wake.
        done.exited += super::leave::on_event(store, &waiting, e)?;
        done.woken += waiting.wake(store, &[(&e.contact, Fact::Event { name: &e.event.name })], None, e.event.at)?;
    }
    Ok(done)
}

/// The longest line an events file may have: the API's body limit.
pub const MAX_LINE: usize = 256 * 1024;

/// An events file, read and checked: the valid events in file order with
/// their lines, and every error with its line and field.
#[derive(Debug, Default)]
pub struct EventFile {
    pub events: Vec<(usize, Incoming)>,
    pub errors: Vec<super::contacts::RowError>,
    /// Non-blank lines read.
    pub lines: usize,
}

impl EventFile {
    /// Reads JSON Lines of event bodies, streaming, each line at most
    /// `MAX_LINE` bytes; `known` says whether a contact exists (asked once
    /// per contact). A read error of the file itself is the `Err`.
    pub fn read(
        mut input: impl std::io::BufRead,
        schema: &Schema,
        now: i64,
        known: &mut dyn FnMut(&ContactId) -> Result<bool, StoreError>,
    ) -> Result<EventFile, FileError> {
        use super::contacts::RowError;
        use std::io::BufRead;
        let mut out = EventFile::default();
        let mut seen: std::collections::HashMap<ContactId, bool> = std::collections::HashMap::new();
        let mut buf = Vec::new();
        for line in 1.. {
            buf.clear();
            let n = std::io::Read::take(&mut input, MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| FileError::Io(e.to_string()))?;
            if n == 0 {
                break;
            }
            let err =
                |field: Option<&str>, message: String| RowError { line, field: field.map(str::to_string), message };
            if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                out.errors.push(err(None, format!("the line is longer than {MAX_LINE} bytes")));
                out.lines += 1;
                // Skip the rest of the long line without holding it.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    let k = std::io::Read::take(&mut input, MAX_LINE as u64)
                        .read_until(b'\n', &mut rest)
                        .map_err(|e| FileError::Io(e.to_string()))?;
                    if k == 0 || rest.last() == Some(&b'\n') {
                        break;
                    }
                }
                continue;
            }
            let Ok(text) = std::str::from_utf8(&buf) else {
                out.errors.push(err(None, "the line is not UTF-8".into()));
                out.lines += 1;
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            out.lines += 1;
            let body: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    out.errors.push(err(None, format!("invalid JSON: {e}")));
                    continue;
                }
            };
            match check(&body, schema, now) {
                Err(f) => out.errors.push(err(f.field, f.message)),
                Ok(ev) => {
                    let exists = match seen.get(&ev.contact) {
                        Some(k) => *k,
                        None => {
                            let k = known(&ev.contact).map_err(FileError::Store)?;
                            seen.insert(ev.contact.clone(), k);
                            k
                        }
                    };
                    if exists {
                        out.events.push((line, ev));
                    } else {
                        out.errors.push(err(Some("contact"), format!("no such contact: {}", ev.contact)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Lines with at least one error.
    pub fn invalid_lines(&self) -> usize {
        let mut lines: Vec<usize> = self.errors.iter().map(|e| e.line).collect();
        lines.dedup();
        lines.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error(transparent)]
    Store(StoreError),
}

/// The `meta` key that remembers how many events of a replay are stored.
fn replay_key(campaign: &str) -> String {
    format!("replay/{campaign}")
}

/// A timeline of events replayed on the run's clock (`flowc run --events`):
/// each is stored and wakes what it concerns when the clock reaches its
/// time. How far it got is kept in the database in the same transaction as
/// the events, so a run killed and started again goes on from there: no
/// event is lost or stored (or woken for) twice.
#[derive(Debug, Clone)]
pub struct Replay {
    /// In time order (file order among events of one instant).
    events: Vec<Incoming>,
    next: usize,
}

impl Replay {
    /// The replay of `events` for `campaign`, resumed where the database says it got.
    pub fn resume(store: &dyn Store, campaign: &str, mut events: Vec<Incoming>) -> Result<Replay, StoreError> {
        events.sort_by_key(|e| e.event.at);
        let done = store.meta(&replay_key(campaign))?.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        Ok(Replay { next: done.min(events.len()), events })
    }

    /// An empty replay (no --events).
    pub fn none() -> Replay {
        Replay { events: Vec::new(), next: 0 }
    }

    /// When the next event comes; `None` when all are in.
    pub fn next_at(&self) -> Option<i64> {
        self.events.get(self.next).map(|e| e.event.at)
    }

    /// Stores every event due by `now`, enrolls and wakes what they
    /// concern, in one transaction with the replay's position.
    pub fn ingest_due(&mut self, store: &mut dyn Store, campaign: &str, now: i64) -> Result<Ingested, StoreError> {
        let end = self.next + self.events[self.next..].partition_point(|e| e.event.at <= now);
        if end == self.next {
            return Ok(Ingested::default());
        }
        let batch = &self.events[self.next..end];
        let done = super::store::atomically(store, |s| {
            let done = ingest(s, batch, now)?;
            s.set_meta(&replay_key(campaign), &end.to_string())?;
            Ok::<Ingested, StoreError>(done)
        })?;
        self.next = end;
        Ok(done)
    }
}
