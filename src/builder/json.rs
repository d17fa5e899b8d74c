//! Builder JSON text to a `serde_json::Value`, strictly: a key given twice in
//! one object is an error naming its JSON path. serde_json alone keeps the
//! last one, so `"id": "welcome", "id": "evil"` would import as `campaign evil`.

use super::value::{key_path, ImportError};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;

pub fn parse(text: &str) -> Result<Value, ImportError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let read =
        Strict { path: "$".to_string(), duplicate: &duplicate }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    read.map_err(|e| match duplicate.into_inner() {
        Some(mut found) => {
            found.reason = format!("{} (line {}, column {})", found.reason, e.line(), e.column());
            found
        }
        None => ImportError { path: "$".into(), reason: format!("invalid JSON: {e}") },
    })
}

/// Reads one value at `path`; a duplicate key is recorded in `duplicate`
/// (with its path) and stops the read. serde_json's own recursion limit
/// still bounds the depth.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<ImportError>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(Strict { path: format!("{}[{}]", self.path, out.len()), duplicate: self.duplicate })?
        {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = key_path(&self.path, &key);
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(ImportError {
                    reason: format!("duplicate key `{}`: each key may appear once", key.escape_debug()),
                    path,
                });
                return Err(de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(Strict { path, duplicate: self.duplicate })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}
