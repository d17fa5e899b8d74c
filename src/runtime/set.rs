//! `set FIELD = EXPR`: what the step does to the facts, and the change it
//! leaves for the store.
//!
//! Stepping writes the value into the execution's facts (later steps read
//! it); the engine then hands the store one `FieldDelta` per contact, which
//! the commit applies to the attribute alone (`json_set`), so a change made
//! meanwhile to another field (an import, another campaign) is kept — as
//! tags are kept by `TagDelta`.

use super::eval::{self, Ctx};
use super::facts::{Facts, FieldValue};
use super::store::{ContactId, FieldDelta};
use crate::compile::program::{FieldSlot, Program, SetValue};
use serde_json::Value as J;

/// Runs a `set` step on `facts`: evaluates `value` at `now` and writes it
/// into the field's slot. A slot the program does not have changes nothing.
pub fn apply(p: &Program, facts: &mut Facts, slot: FieldSlot, value: &SetValue, now: i64) {
    let i = slot.0 as usize;
    let Some(def) = p.fields.get(i) else { return };
    let v = eval::set_value(&Ctx { program: p, facts, now }, value, &def.ty);
    if let Some(f) = facts.fields.get_mut(i) {
        *f = v;
    }
}

/// The change a batch leaves for one contact: the final value of each slot
/// its `set` steps wrote (a slot written twice is written once).
pub fn delta(p: &Program, contact: &ContactId, facts: &Facts, slots: &[FieldSlot]) -> Option<FieldDelta> {
    let mut values: Vec<(String, J)> = Vec::new();
    for s in slots {
        let (Some(def), Some(v)) = (p.fields.get(s.0 as usize), facts.fields.get(s.0 as usize)) else { continue };
        if values.iter().any(|(n, _)| *n == def.name) {
            continue;
        }
        values.push((def.name.clone(), to_json(v)));
    }
    (!values.is_empty()).then(|| FieldDelta { contact: contact.clone(), values })
}

/// A field value as the contacts table stores it (the form an import
/// writes: datetimes RFC 3339 UTC, dates `YYYY-MM-DD`, durations in
/// minutes); absent is `null`, which reads back as absent.
pub fn to_json(v: &FieldValue) -> J {
    match v {
        FieldValue::Absent => J::Null,
        FieldValue::Bool(b) => J::Bool(*b),
        // Whole numbers are stored as integers, as an import of `120` is.
        FieldValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => J::from(*n as i64),
        FieldValue::Number(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        FieldValue::Str(s) => J::String(s.clone()),
        FieldValue::Datetime(m) => chrono::DateTime::from_timestamp(m.saturating_mul(60), 0)
            .map_or(J::Null, |t| J::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())),
        FieldValue::Date(d) => chrono::NaiveDate::default()
            .checked_add_signed(chrono::TimeDelta::try_days(*d).unwrap_or_default())
            .map_or(J::Null, |t| J::String(t.format("%Y-%m-%d").to_string())),
        FieldValue::Duration(m) => J::from(*m),
        FieldValue::Set(s) => J::Array(s.iter().cloned().map(J::String).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::facts::{parse_date, parse_datetime};

    #[test]
    fn stored_values_read_back_as_the_same_field_values() {
        assert_eq!(to_json(&FieldValue::Number(120.0)), J::from(120));
        assert_eq!(to_json(&FieldValue::Number(1.5)), serde_json::json!(1.5));
        let t = parse_datetime("2026-11-20T10:07:00Z").expect("datetime");
        assert_eq!(to_json(&FieldValue::Datetime(t)), J::String("2026-11-20T10:07:00Z".into()));
        let d = parse_date("2026-02-28").expect("date");
        assert_eq!(to_json(&FieldValue::Date(d)), J::String("2026-02-28".into()));
        assert_eq!(to_json(&FieldValue::Absent), J::Null);
    }
}
