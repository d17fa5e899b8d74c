//! Importing contacts from JSON Lines or CSV (docs/contacts.md), validated
//! against the contact schema: every bad row is reported with its line and
//! field. Also the schema the database keeps (contact fields, channels,
//! events) and the checks the API makes against it.

use super::facts::{parse_date, parse_datetime, ContactEvent, ContactRecord};
use super::store::{ContactId, EventOf, Store, StoreError};
use crate::check::model::{Field, Model, Origin, Type};
use crate::compile::program::FieldType;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub mod import;
pub mod rows;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file.
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: field `{field}`: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// The contact schema: built-in and declared fields, the known channels,
/// and the declared events with their properties.
#[derive(Debug, Clone)]
pub struct Schema {
    pub fields: BTreeMap<String, Field>,
    pub channels: Vec<String>,
    pub events: BTreeMap<String, BTreeMap<String, Field>>,
}

impl Schema {
    pub fn from_model(m: &Model) -> Schema {
        Schema {
            fields: m.contact.clone(),
            channels: m.channels.keys().cloned().collect(),
            events: m.events.iter().map(|(name, e)| (name.clone(), e.fields.clone())).collect(),
        }
    }

    /// `self` with `newer`'s declarations added; where both declare a name,
    /// `newer` wins.
    fn merged(mut self, newer: &Schema) -> Schema {
        self.fields.extend(newer.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        for ch in &newer.channels {
            if !self.channels.contains(ch) {
                self.channels.push(ch.clone());
            }
        }
        self.events.extend(newer.events.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }
}

/// The `meta` key under which the database keeps its declared schema.
pub const SCHEMA_META_KEY: &str = "contact_schema";

// The persisted form of `Schema`: the store's own types, not the checker's,
// because a persisted format is a compatibility promise.
#[derive(serde::Serialize, serde::Deserialize)]
struct SchemaDoc {
    format: u32,
    fields: Vec<FieldDoc>,
    channels: Vec<String>,
    events: Vec<EventDoc>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FieldDoc {
    name: String,
    #[serde(rename = "type")]
    ty: FieldType,
    optional: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EventDoc {
    name: String,
    props: Vec<FieldDoc>,
}

const SCHEMA_FORMAT: u32 = 1;

fn field_doc(f: &Field) -> Option<FieldDoc> {
    Some(FieldDoc { name: f.name.clone(), ty: FieldType::declared(&f.ty)?, optional: f.optional })
}

fn field_of(d: FieldDoc) -> (String, Field) {
    (d.name.clone(), Field { name: d.name, ty: d.ty.checked(), optional: d.optional, origin: Origin::Registry })
}

/// Keeps `schema` in the database, added to what earlier imports and
/// launches declared there (several workspaces may share one database; a
/// field declared again takes its newest type).
pub fn store_schema(store: &mut dyn Store, schema: &Schema) -> Result<(), StoreError> {
    // A kept schema this flowc cannot read is replaced rather than kept forever.
    let merged = match stored_schema(store) {
        Ok(Some(old)) => old.merged(schema),
        Ok(None) | Err(StoreError::Corrupt(_)) => schema.clone(),
        Err(e) => return Err(e),
    };
    let doc = SchemaDoc {
        format: SCHEMA_FORMAT,
        fields: merged.fields.values().filter_map(field_doc).collect(),
        channels: merged.channels.clone(),
        events: merged
            .events
            .iter()
            .map(|(name, props)| EventDoc { name: name.clone(), props: props.values().filter_map(field_doc).collect() })
            .collect(),
    };
    let text = serde_json::to_string(&doc).map_err(|e| StoreError::Other(e.to_string()))?;
    store.set_meta(SCHEMA_META_KEY, &text)
}

/// The schema the database keeps; `None` when no import or launch stored one.
pub fn stored_schema(store: &dyn Store) -> Result<Option<Schema>, StoreError> {
    let Some(text) = store.meta(SCHEMA_META_KEY)? else { return Ok(None) };
    let doc: SchemaDoc =
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("meta `{SCHEMA_META_KEY}`: {e}")))?;
    if doc.format != SCHEMA_FORMAT {
        return Err(StoreError::Corrupt(format!(
            "meta `{SCHEMA_META_KEY}` has format {}, this flowc reads {SCHEMA_FORMAT}",
            doc.format
        )));
    }
    Ok(Some(Schema {
        fields: doc.fields.into_iter().map(field_of).collect(),
        channels: doc.channels,
        events: doc.events.into_iter().map(|e| (e.name, e.props.into_iter().map(field_of).collect())).collect(),
    }))
}

/// Why an event does not fit the declared events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    UnknownName(String),
    BadProp(String),
}

/// Refuses the event flowc records itself with each enrollment by a
/// trigger (`store::TRIGGERED`): given from outside, by the API or in a
/// contacts file, it would be taken for flowc's own record, which has no
/// idempotency key.
fn not_recorded_by_flowc(name: &str) -> Result<(), String> {
    if name == crate::runtime::store::TRIGGERED {
        return Err(format!(
            "`{name}` is recorded by flowc when a campaign is triggered (`POST /v1/campaigns/{{id}}/trigger`) and cannot be ingested or imported"
        ));
    }
    Ok(())
}

/// Checks an ingested event's name and properties against the declared
/// events. A `null` or absent property is an absent value, as in contacts.
pub fn check_event(schema: &Schema, name: &str, props: &Map<String, Value>) -> Result<(), EventError> {
    // Built in, but only flowc records it: "not declared" would send the
    // user looking for a declaration that cannot help.
    not_recorded_by_flowc(name).map_err(EventError::UnknownName)?;
    let Some(declared) = schema.events.get(name) else {
        let help = crate::suggest::help(name, schema.events.keys().map(String::as_str))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        return Err(EventError::UnknownName(format!("no event `{name}` is declared{help}")));
    };
    check_props(name, declared, props).map_err(EventError::BadProp)
}

/// Checks a trigger's `data`, the properties of the `campaign.triggered`
/// event it records (besides `campaign`, which flowc adds), against that
/// event's declaration, as an ingested event's are. Undeclared, the event
/// takes any data: no condition can read a property of it.
/// Returns why it does not fit.
pub fn check_trigger_data(schema: &Schema, data: &Map<String, Value>) -> Result<(), String> {
    let name = crate::runtime::store::TRIGGERED;
    match schema.events.get(name) {
        None => Ok(()),
        Some(declared) => check_props(name, declared, data),
    }
}

/// Each property is declared and of its declared type; `null` is absent.
fn check_props(name: &str, declared: &BTreeMap<String, Field>, props: &Map<String, Value>) -> Result<(), String> {
    for (key, v) in props {
        let Some(field) = declared.get(key) else {
            let help = crate::suggest::help(key, declared.keys().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(format!("`{key}` is not a property of event `{name}`{help}"));
        };
        if v.is_null() {
            continue;
        }
        typed(field, v.clone()).map_err(|m| format!("property `{key}` of event `{name}`: {m}"))?;
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub contacts: Vec<ContactRecord>,
    pub events: Vec<EventOf>,
    /// Every error, in file order; one row may have several.
    pub errors: Vec<RowError>,
    pub rows: usize,
    /// The errors are the file's own (a CSV header that cannot be read or
    /// names a column twice): no row can be imported, even skipping.
    pub file_error: bool,
}

impl Parsed {
    /// Rows with at least one error.
    pub fn invalid_rows(&self) -> usize {
        let mut lines: Vec<usize> = self.errors.iter().map(|e| e.line).collect();
        lines.dedup();
        lines.len()
    }
}

/// The contact id a row gives, when it gives a usable one.
fn contact_id(obj: &Map<String, Value>) -> Option<ContactId> {
    match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(ContactId(s.clone())),
        Some(Value::Number(n)) => Some(ContactId(n.to_string())),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn from_path(p: &std::path::Path) -> Option<Format> {
        match p.extension()?.to_str()? {
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// Reads a whole contacts text held in memory (tests, `flowc estimate
/// --contacts`): every contact and every error. An import streams the
/// file instead (`import`).
pub fn parse(text: &str, format: Format, schema: &Schema) -> Parsed {
    let mut out = Parsed::default();
    let mut rows = match rows::Rows::open(text.as_bytes(), format) {
        Ok(r) => r,
        Err(errors) => {
            out.errors = errors;
            out.file_error = true;
            return out;
        }
    };
    let mut sift = rows::Sift::default();
    loop {
        let chunk = match rows.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                out.errors.push(RowError { line: e.line, field: None, message: e.message });
                out.file_error = true;
                break;
            }
        };
        for row in rows::validate(chunk, schema) {
            match sift.sift(row) {
                rows::Sifted::Valid(c, evs) => {
                    out.events.extend(evs.into_iter().map(|event| EventOf { contact: c.id.clone(), event }));
                    out.contacts.push(c);
                }
                rows::Sifted::Invalid(errors) => out.errors.extend(errors),
            }
        }
    }
    out.rows = sift.rows;
    out
}

const SPECIAL: &[&str] = &["id", "tags", "consent", "capabilities", "events"];

/// One contact of an API upsert, validated: the fields it gives. What it
/// does not give stays as stored; `null` clears an optional field.
#[derive(Debug, Clone)]
pub struct ContactPatch {
    pub id: ContactId,
    set: Map<String, Value>,
    clear: Vec<String>,
    tags: Option<Vec<String>>,
    consent: Option<Vec<String>>,
    capabilities: Option<Vec<String>>,
    pub events: Vec<ContactEvent>,
}

/// Validates one contact object of an upsert (`line` names it in errors).
pub fn patch(line: usize, obj: &Map<String, Value>, schema: &Schema) -> Result<ContactPatch, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut cleared_sets = Vec::new();
    let mut clear = Vec::new();
    for key in obj.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k) {
        match key.as_str() {
            "id" | "events" => {}
            "tags" | "consent" | "capabilities" => cleared_sets.push(key.as_str()),
            _ => match schema.fields.get(key) {
                Some(f) if f.optional => clear.push(key.clone()),
                Some(_) => errors.push(RowError {
                    line,
                    field: Some(key.clone()),
                    message: "is required: `null` cannot clear it".into(),
                }),
                // `record` reports the unknown name with a suggestion.
                None => {}
            },
        }
    }
    // The sets' `null` is handled here; `record` validates everything else.
    let given: Map<String, Value> = obj
        .iter()
        .filter(|(k, v)| !(v.is_null() && cleared_sets.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (c, events) = match record(line, given, schema, as_given) {
        Ok(r) => r,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let set_or_clear = |key: &str, value: &[String]| -> Option<Vec<String>> {
        match obj.get(key) {
            None => None,
            Some(Value::Null) => Some(Vec::new()),
            Some(_) => Some(value.to_vec()),
        }
    };
    let set = obj
        .iter()
        .filter(|(k, v)| !v.is_null() && schema.fields.contains_key(*k) && !SPECIAL.contains(&k.as_str()))
        .filter_map(|(k, _)| c.attrs.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    Ok(ContactPatch {
        id: c.id.clone(),
        set,
        clear,
        tags: set_or_clear("tags", &c.tags),
        consent: set_or_clear("consent", &c.consent),
        capabilities: set_or_clear("capabilities", &c.capabilities),
        events,
    })
}

impl ContactPatch {
    /// The contact after this patch: `existing` with the given fields
    /// changed, or a new contact with the built-in defaults, created at
    /// `now` (minutes) unless the patch says otherwise.
    pub fn apply(self, existing: Option<ContactRecord>, now: i64) -> ContactRecord {
        let mut c = existing.unwrap_or_else(|| {
            let mut attrs = Map::new();
            attrs.insert("timezone".into(), Value::String("UTC".into()));
            attrs.insert("locale".into(), Value::String("en".into()));
            if let Some(t) = chrono::DateTime::from_timestamp(now.saturating_mul(60), 0) {
                attrs.insert("created_at".into(), Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
            }
            ContactRecord { id: self.id.clone(), attrs, ..ContactRecord::default() }
        });
        for key in &self.clear {
            c.attrs.remove(key);
        }
        c.attrs.extend(self.set);
        if let Some(t) = self.tags {
            c.tags = t;
        }
        if let Some(t) = self.consent {
            c.consent = t;
        }
        if let Some(t) = self.capabilities {
            c.capabilities = t;
        }
        c
    }
}

/// CSV cells are text: convert to the declared type first.
fn csv_cell(f: &Field, v: Value) -> Result<Value, String> {
    let Value::String(s) = &v else { return Ok(v) };
    match f.ty {
        Type::Number => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number, found `{s}`")),
        Type::Bool => match s.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, found `{s}`")),
        },
        Type::Duration => s
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("expected minutes, found `{s}`")),
        _ => Ok(v),
    }
}

fn strings(line: usize, field: &str, v: Value) -> Result<Vec<String>, RowError> {
    let err = || RowError { line, field: Some(field.into()), message: "expected an array of strings".into() };
    let Value::Array(a) = v else { return Err(err()) };
    a.into_iter()
        .map(|x| match x {
            Value::String(s) => Ok(s),
            _ => Err(err()),
        })
        .collect()
}

/// Turns a row's cell into its field's value before the type check (CSV
/// cells are text); the identity for JSON.
type Convert = fn(&Field, Value) -> Result<Value, String>;

fn as_given(_: &Field, v: Value) -> Result<Value, String> {
    Ok(v)
}

/// Validates one row. Takes the row's object by value: its keys and values
/// move into the contact, so a row is never copied (an import reads
/// millions).
fn record(
    line: usize,
    obj: Map<String, Value>,
    schema: &Schema,
    convert: Convert,
) -> Result<(ContactRecord, Vec<ContactEvent>), Vec<RowError>> {
    let mut errors = Vec::new();
    let mut c = ContactRecord::default();
    let mut events = Vec::new();
    match contact_id(&obj) {
        Some(id) => c.id = id,
        None => errors.push(RowError {
            line,
            field: Some("id".into()),
            message: "every contact needs a non-empty `id`".into(),
        }),
    }
    for (key, v) in obj {
        match key.as_str() {
            "id" => {}
            "tags" => match strings(line, &key, v) {
                Ok(t) => c.tags = t,
                Err(e) => errors.push(e),
            },
            "consent" | "capabilities" => match strings(line, &key, v) {
                Ok(list) => {
                    for ch in &list {
                        if !schema.channels.contains(ch) {
                            let help = crate::suggest::help(ch, schema.channels.iter().map(String::as_str))
                                .map(|h| format!("; {h}"))
                                .unwrap_or_default();
                            errors.push(RowError {
                                line,
                                field: Some(key.clone()),
                                message: format!("unknown channel `{ch}`{help}"),
                            });
                        }
                    }
                    if key == "consent" {
                        c.consent = list;
                    } else {
                        c.capabilities = list;
                    }
                }
                Err(e) => errors.push(e),
            },
            "events" => match event_list(line, v) {
                Ok(e) => events = e,
                Err(e) => errors.push(e),
            },
            _ => {
                let Some(field) = schema.fields.get(&key) else {
                    let names = schema.fields.keys().map(String::as_str).chain(SPECIAL.iter().copied());
                    let help = crate::suggest::help(&key, names).map(|h| format!("; {h}")).unwrap_or_default();
                    errors.push(RowError { line, field: Some(key), message: format!("not a contact field{help}") });
                    continue;
                };
                if v.is_null() {
                    continue;
                }
                match convert(field, v).and_then(|v| typed(field, v)) {
                    Ok(v) => {
                        c.attrs.insert(key, v);
                    }
                    Err(m) => errors.push(RowError { line, field: Some(key), message: m }),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Built-ins with sensible defaults are filled in rather than refused.
    for (name, default) in [("timezone", "UTC"), ("locale", "en"), ("created_at", "1970-01-01T00:00:00Z")] {
        let required = schema.fields.get(name).is_some_and(|f| !f.optional);
        if required && !c.attrs.contains_key(name) {
            c.attrs.insert(name.to_string(), Value::String(default.into()));
        }
    }
    Ok((c, events))
}

/// Checks a value against its declared type and normalises it for storage.
fn typed(f: &Field, v: Value) -> Result<Value, String> {
    let found = |v: &Value| match v {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    };
    match (&f.ty, &v) {
        (Type::String, Value::String(_)) | (Type::Number, Value::Number(_)) | (Type::Bool, Value::Bool(_)) => Ok(v),
        (Type::Duration, Value::Number(n)) if n.is_i64() => Ok(v),
        (Type::DateTime, Value::String(s)) => match parse_datetime(s) {
            Some(_) => Ok(v),
            None => Err(format!("expected a datetime like 2026-11-20T10:00:00Z, found `{s}`")),
        },
        (Type::Date, Value::String(s)) => match parse_date(s) {
            Some(_) => Ok(v),
            None => Err(format!("expected a date like 2026-11-20, found `{s}`")),
        },
        (Type::Timezone, Value::String(s)) => match s.parse::<chrono_tz::Tz>() {
            Ok(_) => Ok(v),
            Err(_) => Err(format!("unknown time zone `{s}`")),
        },
        (Type::Enum(values), Value::String(s)) => {
            if values.iter().any(|x| x == s) {
                Ok(v)
            } else {
                Err(format!("`{s}` is not one of {}", values.join(", ")))
            }
        }
        (Type::SetString, Value::Array(a)) if a.iter().all(Value::is_string) => Ok(v),
        // A property whose type was never kept (an event named by a trigger
        // launched before the schema was kept) accepts any value.
        (Type::Unknown, _) => Ok(v),
        (ty, other) => Err(format!("expected {}, found {}", ty.describe(), found(other))),
    }
}

fn event_list(line: usize, v: Value) -> Result<Vec<ContactEvent>, RowError> {
    let err = |m: String| RowError { line, field: Some("events".into()), message: m };
    let Value::Array(items) = v else { return Err(err("expected an array of events".into())) };
    items
        .into_iter()
        .map(|e| {
            let Value::Object(mut props) = e else { return Err(err("each event is an object".into())) };
            let name = match props.remove("name") {
                Some(Value::String(n)) => n,
                _ => return Err(err("an event needs a `name`".into())),
            };
            not_recorded_by_flowc(&name).map_err(err)?;
            let at = props
                .remove("at")
                .as_ref()
                .and_then(Value::as_str)
                .and_then(parse_datetime)
                .ok_or_else(|| err(format!("event `{name}` needs an `at` datetime")))?;
            Ok(ContactEvent { name, at, props })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sqlite::SqliteStore;

    fn schema_of(extra: &[(&str, Type, bool)]) -> Schema {
        let mut s = Schema::from_model(crate::check::stdlib_model());
        for (name, ty, optional) in extra {
            s.fields.insert(
                name.to_string(),
                Field { name: name.to_string(), ty: ty.clone(), optional: *optional, origin: Origin::Registry },
            );
        }
        s
    }

    #[test]
    fn the_kept_schema_round_trips_and_accumulates() {
        let mut store = SqliteStore::open_in_memory().expect("store");
        assert!(stored_schema(&store).expect("read").is_none());
        store_schema(
            &mut store,
            &schema_of(&[("plan", Type::Enum(vec!["free".to_string(), "pro".to_string()].into()), false)]),
        )
        .expect("write");
        store_schema(&mut store, &schema_of(&[("score", Type::Number, true)])).expect("write");
        let kept = stored_schema(&store).expect("read").expect("kept");
        assert_eq!(kept.fields["plan"].ty, Type::Enum(vec!["free".to_string(), "pro".to_string()].into()));
        assert!(kept.fields["score"].optional);
        assert!(kept.events.contains_key("message.opened") && kept.channels.contains(&"email".to_string()));
        assert!(
            check_event(&kept, "message.opened", &serde_json::from_str(r#"{"via": "email"}"#).expect("json")).is_ok()
        );
        assert!(
            matches!(check_event(&kept, "message.opend", &Map::new()), Err(EventError::UnknownName(m)) if m.contains("message.opened"))
        );
        assert!(
            matches!(check_event(&kept, "campaign.triggered", &Map::new()), Err(EventError::UnknownName(m)) if m.contains("cannot be ingested"))
        );
    }

    #[test]
    fn csv_cells_are_trimmed_and_each_contact_appears_once() {
        let s = schema_of(&[
            ("score", Type::Number, false),
            ("plan", Type::Enum(vec!["free".to_string(), "pro".to_string()].into()), false),
            ("nick", Type::String, true),
        ]);
        let p = parse("id , score,plan,nick\n a , 5 , pro ,  Al \n", Format::Csv, &s);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let c = &p.contacts[0];
        assert_eq!(
            (c.id.as_str(), &c.attrs["score"], &c.attrs["plan"], &c.attrs["nick"]),
            ("a", &serde_json::json!(5.0), &serde_json::json!("pro"), &serde_json::json!("Al"))
        );
        // JSON Lines too: a second line for a contact is refused, naming the first.
        let p = parse(
            "{\"id\": \"a\", \"score\": 1, \"plan\": \"pro\"}\n{\"id\": \"a\", \"score\": 2, \"plan\": \"pro\"}\n",
            Format::JsonLines,
            &s,
        );
        assert_eq!(
            p.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["line 2: field `id`: contact `a` is also on line 1; each contact appears once in a file"]
        );
        assert_eq!((p.contacts.len(), p.invalid_rows(), p.rows), (1, 1, 2));
    }

    #[test]
    fn a_contact_row_cannot_carry_the_event_flowc_records() {
        let s = schema_of(&[]);
        let p = parse(
            "{\"id\": \"a\", \"events\": [{\"name\": \"campaign.triggered\", \"at\": \"2026-11-01T10:00:00Z\"}]}\n",
            Format::JsonLines,
            &s,
        );
        assert_eq!(
            p.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["line 1: field `events`: `campaign.triggered` is recorded by flowc when a campaign is triggered (`POST /v1/campaigns/{id}/trigger`) and cannot be ingested or imported"]
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let s = schema_of(&[("score", Type::Number, true)]);
        let obj = |t: &str| -> Map<String, Value> { serde_json::from_str(t).expect("json") };
        let first = patch(1, &obj(r#"{"id": "a", "score": 3, "tags": ["x"]}"#), &s).expect("valid").apply(None, 60);
        assert_eq!(first.attrs["created_at"], "1970-01-01T01:00:00Z");
        let second = patch(1, &obj(r#"{"id": "a", "email": "e@x", "score": null}"#), &s)
            .expect("valid")
            .apply(Some(first.clone()), 120);
        assert_eq!(
            (second.attrs.get("score"), &second.tags, &second.attrs["created_at"]),
            (None, &first.tags, &first.attrs["created_at"])
        );
        assert!(patch(1, &obj(r#"{"id": "a", "locale": null}"#), &s).is_err());
    }
}
