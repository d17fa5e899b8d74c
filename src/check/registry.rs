//! The platform's template registry export (`--templates FILE.json`): an
//! array of `{name, channel, message_type, status, version}` objects. Each
//! template is listed once, on a channel and message type the checked files
//! know; every error names the entry (`$[2] (`promo`)`).

use super::model::{Channel, TemplateStatus};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct RegistryTemplate {
    pub name: String,
    pub channel: String,
    pub message_type: String,
    pub status: TemplateStatus,
    pub version: u32,
}

/// Parses and validates the registry; the error names the entry and field.
pub fn parse(text: &str) -> Result<Vec<RegistryTemplate>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Array(entries) = value else {
        return Err("expected a JSON array of templates at the top level".into());
    };
    let parsed: Vec<RegistryTemplate> =
        entries.iter().enumerate().map(|(i, e)| entry(i, e)).collect::<Result<_, _>>()?;
    // The same name twice is refused whatever the two say: which one the
    // platform meant cannot be told from the export.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(parsed.len());
    for (i, t) in parsed.iter().enumerate() {
        if let Some(j) = first.insert(&t.name, i) {
            return Err(format!(
                "{}: template `{}` is already listed at $[{j}]; each template appears once",
                label(i, &t.name),
                t.name
            ));
        }
    }
    Ok(parsed)
}

/// Checks each entry's channel and message type against the channels the
/// checked files declare (the stdlib's and their own).
pub fn check_channels(entries: &[RegistryTemplate], channels: &BTreeMap<String, Channel>) -> Result<(), String> {
    for (i, t) in entries.iter().enumerate() {
        let Some(ch) = channels.get(&t.channel) else {
            let help = crate::suggest::help(&t.channel, channels.keys().map(String::as_str))
                .unwrap_or_else(|| format!("channels are {}", super::join(channels.keys())));
            return Err(format!("{}: unknown channel `{}`; {help}", label(i, &t.name), t.channel));
        };
        if !ch.messages.contains_key(&t.message_type) {
            let help = crate::suggest::help(&t.message_type, ch.messages.keys().map(String::as_str))
                .unwrap_or_else(|| format!("it has {}", super::join(ch.messages.keys())));
            return Err(format!(
                "{}: channel `{}` has no message type `{}`; {help}",
                label(i, &t.name),
                t.channel,
                t.message_type
            ));
        }
    }
    Ok(())
}

fn label(i: usize, name: &str) -> String {
    format!("$[{i}] (`{name}`)")
}

fn entry(i: usize, e: &Value) -> Result<RegistryTemplate, String> {
    let Value::Object(obj) = e else {
        return Err(format!("$[{i}]: expected an object"));
    };
    let label = obj.get("name").and_then(Value::as_str).map_or_else(|| format!("$[{i}]"), |n| label(i, n));
    let text = |field: &str| -> Result<String, String> {
        match obj.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("{label}: field `{field}` is empty")),
            Some(other) => Err(format!("{label}: field `{field}` must be a string, found {other}")),
            None => Err(format!("{label}: missing field `{field}`")),
        }
    };
    let name = text("name")?;
    let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(format!("{label}: field `name`: `{name}` is not a valid template name ([a-z_][a-z0-9_]*)"));
    }
    let channel = text("channel")?;
    let message_type = text("message_type")?;
    let status_text = text("status")?;
    let status = TemplateStatus::parse(&status_text.to_ascii_lowercase()).ok_or_else(|| {
        format!("{label}: field `status`: expected draft, published or rejected, found `{status_text}`")
    })?;
    let version = match obj.get("version") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{label}: field `version` must be a positive integer, found {v}"))?,
    };
    Ok(RegistryTemplate { name, channel, message_type, status, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_entry_and_field() {
        let err = parse(r#"[{"name":"a","channel":"email","message_type":"marketing","status":"live","version":1}]"#)
            .unwrap_err();
        assert_eq!(err, "$[0] (`a`): field `status`: expected draft, published or rejected, found `live`");
        let err = parse(r#"[{"name":"a","channel":"email","status":"draft"}]"#).unwrap_err();
        assert_eq!(err, "$[0] (`a`): missing field `message_type`");
        assert!(parse("{").unwrap_err().starts_with("not valid JSON"));
        let ok =
            parse(r#"[{"name":"a","channel":"email","message_type":"marketing","status":"PUBLISHED","version":3}]"#)
                .unwrap();
        assert_eq!(ok[0].status, TemplateStatus::Published);
        assert_eq!(ok[0].version, 3);
    }

    #[test]
    fn a_name_listed_twice_is_refused() {
        let e = |channel: &str| {
            format!(r#"{{"name":"a","channel":"{channel}","message_type":"marketing","status":"published"}}"#)
        };
        let err = parse(&format!("[{},{}]", e("email"), e("sms"))).unwrap_err();
        assert_eq!(err, "$[1] (`a`): template `a` is already listed at $[0]; each template appears once");
    }
}
