//! What the interpreter knows about one contact while it steps: plain data,
//! loaded by the engine from the store, read by the pure evaluator.

use super::store::ContactId;
use crate::compile::program::{FieldType, Program};
use std::collections::HashMap;

/// A contact field's value, owned; conditions borrow it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Absent,
    Bool(bool),
    Number(f64),
    Str(String),
    /// Minutes since the Unix epoch.
    Datetime(i64),
    /// Days since the Unix epoch.
    Date(i64),
    /// Minutes.
    Duration(i64),
    Set(Vec<String>),
}

/// One message this execution sent, with its engagement so far (minutes).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub step: String,
    pub channel: String,
    pub sent_at: i64,
    pub delivered_at: Option<i64>,
    pub opened_at: Option<i64>,
    pub clicked_at: Option<i64>,
}

/// A contact event (system, custom or engagement), time in minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEvent {
    pub name: String,
    pub at: i64,
    pub props: serde_json::Map<String, serde_json::Value>,
}

/// Everything a condition may read about one contact.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub contact_id: ContactId,
    /// By the program's field slots.
    pub fields: Vec<FieldValue>,
    pub tags: Vec<String>,
    pub consent: Vec<String>,
    pub capabilities: Vec<String>,
    /// Which delivery addresses the contact has; a send needs its channel's.
    pub addresses: Addresses,
    pub sent: Vec<SentMessage>,
    pub events: Vec<ContactEvent>,
}

/// Whether a contact has an email address and a phone number. Only their
/// presence: deciding eligibility never needs the address itself, so the
/// store can answer it without handing over whole contact records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addresses {
    pub email: bool,
    pub phone: bool,
}

/// The addresses of a stored contact. An empty string is no address, as an
/// empty CSV cell is an absent value (`sqlite::segment::address_columns` says the same in SQL).
pub fn addresses_of(c: &ContactRecord) -> Addresses {
    let present = |k: &str| c.attrs.get(k).is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    Addresses { email: present("email"), phone: present("phone") }
}

/// What conditions may read about a stored contact, for a program: its
/// fields, sets and addresses, its `events`, and its creation as the
/// `contact.created` event. Used wherever a whole record meets the
/// evaluator (enrollment, API triggers and event rules).
pub fn of_record(p: &Program, c: &ContactRecord, mut events: Vec<ContactEvent>) -> Facts {
    if let Some(created) = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(parse_datetime) {
        events.push(ContactEvent { name: "contact.created".into(), at: created, props: Default::default() });
    }
    Facts {
        contact_id: c.id.clone(),
        fields: fields_for(p, c),
        tags: c.tags.clone(),
        consent: c.consent.clone(),
        capabilities: c.capabilities.clone(),
        addresses: addresses_of(c),
        sent: Vec::new(),
        events,
    }
}

/// A contact as stored: built-in and declared attributes as JSON.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContactRecord {
    pub id: ContactId,
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    pub consent: Vec<String>,
    pub capabilities: Vec<String>,
}

/// Reads the program's fields out of a stored contact.
pub fn fields_for(p: &Program, c: &ContactRecord) -> Vec<FieldValue> {
    p.fields
        .iter()
        .map(|f| {
            if f.name == "tags" {
                return FieldValue::Set(c.tags.clone());
            }
            if f.name == "id" {
                return FieldValue::Str(c.id.0.clone());
            }
            c.attrs.get(&f.name).map_or(FieldValue::Absent, |v| json_to_field(&f.ty, v))
        })
        .collect()
}

/// Converts a stored JSON value to a field value of the declared type; a
/// value that does not fit reads as absent (import validated it already).
pub fn json_to_field(ty: &FieldType, v: &serde_json::Value) -> FieldValue {
    use serde_json::Value as J;
    match (ty, v) {
        (_, J::Null) => FieldValue::Absent,
        (FieldType::Bool, J::Bool(b)) => FieldValue::Bool(*b),
        (FieldType::Number, J::Number(n)) => n.as_f64().map_or(FieldValue::Absent, FieldValue::Number),
        (FieldType::String | FieldType::Timezone | FieldType::Enum(_), J::String(s)) => FieldValue::Str(s.clone()),
        (FieldType::Datetime, J::String(s)) => parse_datetime(s).map_or(FieldValue::Absent, FieldValue::Datetime),
        (FieldType::Date, J::String(s)) => parse_date(s).map_or(FieldValue::Absent, FieldValue::Date),
        (FieldType::Duration, J::Number(n)) => n.as_i64().map_or(FieldValue::Absent, FieldValue::Duration),
        (FieldType::SetString, J::Array(a)) => {
            FieldValue::Set(a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        }
        _ => FieldValue::Absent,
    }
}

/// RFC 3339 (`2026-11-20T10:00:00Z`) or `2026-11-20 10:00` (UTC) → minutes.
pub fn parse_datetime(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp().div_euclid(60));
    }
    for f in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc().timestamp().div_euclid(60));
        }
    }
    None
}

pub fn parse_date(s: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.signed_duration_since(chrono::NaiveDate::default()).num_days())
}

/// Index of the program's fields by name, for building facts quickly.
pub fn slot_names(p: &Program) -> HashMap<&str, usize> {
    p.fields.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect()
}
