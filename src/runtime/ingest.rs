//! Getting events in: one body of `POST /v1/events` (`{"contact", "name",
//! "at", "props"}`) checked by one function, whichever way it came (the API,
//! `flowc events import`, `flowc run --events`), then stored and the
//! executions waiting on it woken (`wake`).

use super::contacts::{self, EventError, Schema};
use super::facts::{self, ContactEvent};
use super::store::{Store, StoreError};
use super::wake::{Fact, Waiting};
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
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub contact: String,
    pub event: ContactEvent,
}

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
    Ok(Incoming { contact: contact.to_string(), event: ContactEvent { name: name.to_string(), at, props } })
}

/// Stores `events` (an event already stored is not stored again) and wakes
/// the executions waiting on them, each at its event's time. Returns the
/// executions woken. Callers wrap it in a transaction with what else they
/// write (`store::atomically`).
pub fn store_and_wake(store: &mut dyn Store, events: &[Incoming]) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(String, ContactEvent)> = events.iter().map(|e| (e.contact.clone(), e.event.clone())).collect();
    store.upsert_contacts(&[], &rows)?;
    // The campaigns and their interests are read once for all the events.
    let waiting = Waiting::load(store)?;
    let mut woken = 0;
    for e in events {
        woken += waiting.wake(store, &[(e.contact.as_str(), Fact::Event { name: &e.event.name })], None, e.event.at)?;
    }
    Ok(woken)
}
