//! Typed reads of builder JSON values: each checks the value where it stands
//! and an error names its JSON path (`$.timeline[3].config.weight`) and the
//! reason.

use crate::source::Span;
use crate::syntax::ast::*;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ImportError {
    pub path: String,
    pub reason: String,
}

pub type R<T> = Result<T, ImportError>;

pub fn err<T>(path: &str, reason: impl Into<String>) -> R<T> {
    Err(ImportError { path: path.to_string(), reason: reason.into() })
}

/// The path of `key` inside the object at `path`: `$.a.b`, or `$.a["odd key"]`.
pub fn key_path(path: &str, key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

pub fn name_of(text: &str) -> Name {
    Name { text: text.to_string(), span: Span::default() }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn obj<'v>(v: &'v Value, path: &str) -> R<&'v Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => err(path, format!("expected an object, found {}", kind(other))),
    }
}

/// An object with only the keys in `allowed`: a misspelt key is an error,
/// never silently ignored.
pub fn closed<'v>(v: &'v Value, path: &str, allowed: &[&str]) -> R<&'v Map<String, Value>> {
    let m = obj(v, path)?;
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        let expected =
            if allowed.is_empty() { "no keys here".to_string() } else { format!("expected {}", allowed.join(", ")) };
        return err(&key_path(path, k), format!("unknown key `{}` ({expected})", k.escape_debug()));
    }
    Ok(m)
}

pub fn field<'v>(m: &'v Map<String, Value>, key: &str, path: &str) -> R<&'v Value> {
    m.get(key).ok_or_else(|| ImportError { path: path.to_string(), reason: format!("missing `{key}`") })
}

/// A key that may be absent or `null`.
pub fn optional<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub fn string<'v>(v: &'v Value, path: &str) -> R<&'v str> {
    v.as_str().map_or_else(|| err(path, format!("expected a string, found {}", kind(v))), Ok)
}

pub fn array<'v>(v: &'v Value, path: &str) -> R<&'v Vec<Value>> {
    v.as_array().map_or_else(|| err(path, format!("expected an array, found {}", kind(v))), Ok)
}

/// Names follow the language: `[a-z_][a-z0-9_]*`, not a keyword.
pub fn ident(v: &Value, path: &str) -> R<Name> {
    let s = string(v, path)?;
    if !is_ident(s) {
        return err(path, format!("`{s}` is not a valid name ([a-z_][a-z0-9_]*, not a keyword)"));
    }
    Ok(name_of(s))
}

pub fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !KEYWORDS.contains(&s)
}

const KEYWORDS: &[&str] = &[
    "campaign", "segment", "template", "contact", "event", "channel", "import", "trigger", "audience", "send", "wait",
    "if", "else", "ab_test", "variant", "tag", "add", "remove", "end", "as", "fallback", "none", "and", "or", "not",
    "in", "has", "within", "where", "true", "false", "now",
];

pub fn event_name(v: &Value, path: &str) -> R<Name> {
    let s = string(v, path)?;
    let ok = !s.is_empty()
        && s.split('.').all(|p| {
            p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        return err(path, format!("`{s}` is not an event name like `order.completed`"));
    }
    Ok(name_of(s))
}

pub fn duration(v: &Value, path: &str) -> R<DurationLit> {
    let s = string(v, path)?;
    let mut parts = Vec::new();
    for p in s.split_whitespace() {
        let (n, unit) = p.split_at(p.len().saturating_sub(1));
        let unit = match unit {
            "m" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            "w" => DurationUnit::Week,
            _ => return err(path, format!("`{s}` is not a duration like `2d` or `1d 12h`")),
        };
        let Ok(n) = n.parse::<u64>() else {
            return err(path, format!("`{s}` is not a duration like `2d` or `1d 12h`"));
        };
        parts.push((n, unit));
    }
    if parts.is_empty() {
        return err(path, "empty duration");
    }
    Ok(DurationLit { parts, span: Span::default() })
}

/// A date alone, or a date with its time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateForm {
    Date,
    DateTime,
}

pub fn date(v: &Value, path: &str, form: DateForm) -> R<DateLit> {
    let s = string(v, path)?;
    // `.flow` writes years with four digits; chrono would read `20260-01-01`.
    if !s.get(..5).is_some_and(|y| y[..4].bytes().all(|b| b.is_ascii_digit()) && y.ends_with('-')) {
        let like =
            if form == DateForm::Date { "a date like `2026-12-01`" } else { "a datetime like `2026-12-01 09:00`" };
        return err(path, format!("`{s}` is not {like}"));
    }
    if form == DateForm::DateTime {
        let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"));
        return match t {
            Ok(t) => Ok(DateLit { date: t.date(), time: Some(t.time()), span: Span::default() }),
            Err(_) => err(path, format!("`{s}` is not a datetime like `2026-12-01 09:00`")),
        };
    }
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(DateLit { date: d, time: None, span: Span::default() }),
        Err(_) => err(path, format!("`{s}` is not a date like `2026-12-01`")),
    }
}
