//! Importing contacts from JSON Lines or CSV (LANGUAGE.md §8), validated
//! against the contact schema: every bad row is reported with its line and
//! field.

use super::facts::{parse_date, parse_datetime, ContactEvent, ContactRecord};
use crate::check::model::{Field, Model, Type};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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

/// The contact schema: built-in and declared fields, and the known channels.
#[derive(Debug, Clone)]
pub struct Schema {
    pub fields: BTreeMap<String, Field>,
    pub channels: Vec<String>,
}

impl Schema {
    pub fn from_model(m: &Model) -> Schema {
        Schema { fields: m.contact.clone(), channels: m.channels.keys().cloned().collect() }
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub contacts: Vec<ContactRecord>,
    pub events: Vec<(String, ContactEvent)>,
    pub errors: Vec<RowError>,
    pub rows: usize,
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

pub fn parse(text: &str, format: Format, schema: &Schema) -> Parsed {
    match format {
        Format::JsonLines => parse_jsonl(text, schema),
        Format::Csv => parse_csv(text, schema),
    }
}

const SPECIAL: &[&str] = &["id", "tags", "consent", "capabilities", "events"];

fn parse_jsonl(text: &str, schema: &Schema) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        out.rows += 1;
        let obj = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                out.errors.push(RowError { line: line_no, field: None, message: "expected a JSON object".into() });
                continue;
            }
            Err(e) => {
                out.errors.push(RowError { line: line_no, field: None, message: format!("invalid JSON: {e}") });
                continue;
            }
        };
        match record(line_no, &obj, schema, |_, v| Ok(v.clone())) {
            Ok((c, evs)) => {
                out.events.extend(evs.into_iter().map(|e| (c.id.clone(), e)));
                out.contacts.push(c);
            }
            Err(e) => out.errors.extend(e),
        }
    }
    out
}

fn parse_csv(text: &str, schema: &Schema) -> Parsed {
    let mut out = Parsed::default();
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => {
            out.errors.push(RowError { line: 1, field: None, message: format!("cannot read the header row: {e}") });
            return out;
        }
    };
    for rec in reader.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                out.errors.push(RowError { line, field: None, message: e.to_string() });
                continue;
            }
        };
        out.rows += 1;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let mut obj = Map::new();
        for (h, cell) in headers.iter().zip(rec.iter()) {
            if cell.is_empty() {
                continue;
            }
            let set = |c: &str| Value::Array(c.split(';').map(|x| x.trim()).filter(|x| !x.is_empty()).map(|x| Value::String(x.to_string())).collect());
            let v = match h.as_str() {
                "tags" | "consent" | "capabilities" => set(cell),
                _ => match schema.fields.get(h).map(|f| &f.ty) {
                    Some(Type::SetString) => set(cell),
                    _ => Value::String(cell.to_string()),
                },
            };
            obj.insert(h.clone(), v);
        }
        match record(line, &obj, schema, csv_cell) {
            Ok((c, _)) => out.contacts.push(c),
            Err(e) => out.errors.extend(e),
        }
    }
    out
}

/// CSV cells are text: convert to the declared type first.
fn csv_cell(f: &Field, v: &Value) -> Result<Value, String> {
    let Value::String(s) = v else { return Ok(v.clone()) };
    match f.ty {
        Type::Number => s.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).ok_or_else(|| format!("expected a number, found `{s}`")),
        Type::Bool => match s.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, found `{s}`")),
        },
        Type::Duration => s.trim().parse::<i64>().map(|n| Value::Number(n.into())).map_err(|_| format!("expected minutes, found `{s}`")),
        _ => Ok(v.clone()),
    }
}

fn strings(line: usize, field: &str, v: &Value) -> Result<Vec<String>, RowError> {
    let err = || RowError { line, field: Some(field.into()), message: "expected an array of strings".into() };
    let Value::Array(a) = v else { return Err(err()) };
    a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(err)).collect()
}

type Convert = fn(&Field, &Value) -> Result<Value, String>;

fn record(line: usize, obj: &Map<String, Value>, schema: &Schema, convert: Convert) -> Result<(ContactRecord, Vec<ContactEvent>), Vec<RowError>> {
    let mut errors = Vec::new();
    let mut c = ContactRecord::default();
    let mut events = Vec::new();
    match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => c.id = s.clone(),
        Some(Value::Number(n)) => c.id = n.to_string(),
        _ => errors.push(RowError { line, field: Some("id".into()), message: "every contact needs a non-empty `id`".into() }),
    }
    for (key, v) in obj {
        match key.as_str() {
            "id" => {}
            "tags" => match strings(line, key, v) {
                Ok(t) => c.tags = t,
                Err(e) => errors.push(e),
            },
            "consent" | "capabilities" => match strings(line, key, v) {
                Ok(list) => {
                    for ch in &list {
                        if !schema.channels.contains(ch) {
                            let help = crate::check::suggest::help(ch, schema.channels.iter().map(String::as_str)).map(|h| format!("; {h}")).unwrap_or_default();
                            errors.push(RowError { line, field: Some(key.clone()), message: format!("unknown channel `{ch}`{help}") });
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
                let Some(field) = schema.fields.get(key) else {
                    let names = schema.fields.keys().map(String::as_str).chain(SPECIAL.iter().copied());
                    let help = crate::check::suggest::help(key, names).map(|h| format!("; {h}")).unwrap_or_default();
                    errors.push(RowError { line, field: Some(key.clone()), message: format!("not a contact field{help}") });
                    continue;
                };
                if v.is_null() {
                    continue;
                }
                match convert(field, v).and_then(|v| typed(field, v)) {
                    Ok(v) => {
                        c.attrs.insert(key.clone(), v);
                    }
                    Err(m) => errors.push(RowError { line, field: Some(key.clone()), message: m }),
                }
            }
        }
    }
    for (name, f) in &schema.fields {
        if !f.optional && !SPECIAL.contains(&name.as_str()) && !c.attrs.contains_key(name) && matches!(name.as_str(), "timezone" | "locale" | "created_at") {
            // Built-ins with sensible defaults are filled in rather than refused.
            let default = match name.as_str() {
                "timezone" => Value::String("UTC".into()),
                "locale" => Value::String("en".into()),
                _ => Value::String("1970-01-01T00:00:00Z".into()),
            };
            c.attrs.insert(name.clone(), default);
        }
    }
    if errors.is_empty() {
        Ok((c, events))
    } else {
        Err(errors)
    }
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
        (Type::DateTime, Value::String(s)) => parse_datetime(s).map(|_| v.clone()).ok_or_else(|| format!("expected a datetime like 2026-11-20T10:00:00Z, found `{s}`")),
        (Type::Date, Value::String(s)) => parse_date(s).map(|_| v.clone()).ok_or_else(|| format!("expected a date like 2026-11-20, found `{s}`")),
        (Type::Timezone, Value::String(s)) => s.parse::<chrono_tz::Tz>().map(|_| v.clone()).map_err(|_| format!("unknown time zone `{s}`")),
        (Type::Enum(values), Value::String(s)) => {
            if values.iter().any(|x| x == s) {
                Ok(v)
            } else {
                Err(format!("`{s}` is not one of {}", values.join(", ")))
            }
        }
        (Type::SetString, Value::Array(a)) if a.iter().all(Value::is_string) => Ok(v),
        (ty, other) => Err(format!("expected {}, found {}", ty.describe(), found(other))),
    }
}

fn event_list(line: usize, v: &Value) -> Result<Vec<ContactEvent>, RowError> {
    let err = |m: String| RowError { line, field: Some("events".into()), message: m };
    let Value::Array(items) = v else { return Err(err("expected an array of events".into())) };
    items
        .iter()
        .map(|e| {
            let Value::Object(o) = e else { return Err(err("each event is an object".into())) };
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| err("an event needs a `name`".into()))?;
            let at = o.get("at").and_then(Value::as_str).and_then(parse_datetime).ok_or_else(|| err(format!("event `{name}` needs an `at` datetime")))?;
            let props: Map<String, Value> = o.iter().filter(|(k, _)| k.as_str() != "name" && k.as_str() != "at").map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(ContactEvent { name: name.to_string(), at, props })
        })
        .collect()
}
