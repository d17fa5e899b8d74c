//! The platform's template registry export (`--templates FILE.json`): an
//! array of `{name, channel, message_type, status, version}` objects.

use super::model::TemplateStatus;
use serde_json::Value;

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
    entries.iter().enumerate().map(|(i, e)| entry(i, e)).collect()
}

fn entry(i: usize, e: &Value) -> Result<RegistryTemplate, String> {
    let Value::Object(obj) = e else {
        return Err(format!("$[{i}]: expected an object"));
    };
    let label = obj.get("name").and_then(Value::as_str).map_or_else(|| format!("$[{i}]"), |n| format!("$[{i}] (`{n}`)"));
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
    let status = TemplateStatus::parse(&status_text.to_ascii_lowercase())
        .ok_or_else(|| format!("{label}: field `status`: expected draft, published or rejected, found `{status_text}`"))?;
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
        let err = parse(r#"[{"name":"a","channel":"email","message_type":"marketing","status":"live","version":1}]"#).unwrap_err();
        assert_eq!(err, "$[0] (`a`): field `status`: expected draft, published or rejected, found `live`");
        let err = parse(r#"[{"name":"a","channel":"email","status":"draft"}]"#).unwrap_err();
        assert_eq!(err, "$[0] (`a`): missing field `message_type`");
        assert!(parse("{").unwrap_err().starts_with("not valid JSON"));
        let ok = parse(r#"[{"name":"a","channel":"email","message_type":"marketing","status":"PUBLISHED","version":3}]"#).unwrap();
        assert_eq!(ok[0].status, TemplateStatus::Published);
        assert_eq!(ok[0].version, 3);
    }
}
