//! The store's compiler of conditions (segments, audiences) to parameterised
//! SQL over the contacts table, with exactly the in-memory evaluator's
//! semantics (`eval`): every value is a bound parameter, never spliced into
//! the text. Part of the SQLite store: nothing outside it sees this SQL.
//!
//! Values are compared as the evaluator compares them: datetimes and dates as
//! minutes since the epoch, absent values as NULL with `IS` / `IS NOT` for
//! `==` / `!=`, and every condition made two-valued with `COALESCE(…, 0)`
//! so `not` of an absent comparison is true, as in memory.

use crate::compile::program::{CmpOpRepr, Cond, Const, FieldDef, FieldType, Operand, Program};
use crate::runtime::facts::{self, FieldValue};
use rusqlite::types::Value as P;

/// A WHERE clause over `contacts` and its parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<P>,
}

/// Where `Operand::Prop` reads from inside a `happened` subquery.
#[derive(Clone, Copy)]
enum Props<'a> {
    None,
    /// `e.props` of the event row, with the property names by index.
    Event(&'a [String]),
    /// The synthetic `contact.created` event has no properties.
    Empty,
}

/// A contact field as SQLite's `json_extract(attrs, '$.name')` returns it,
/// converted as `facts::json_to_field` converts the parsed JSON. `id` and
/// `tags` live in their own columns and are passed in.
pub fn field_from_sql(field: &FieldDef, id: &str, tags: &[String], v: rusqlite::types::ValueRef<'_>) -> FieldValue {
    use rusqlite::types::ValueRef;
    use FieldValue as FV;
    let text = |t: &[u8]| std::str::from_utf8(t).ok().map(str::to_string);
    match (&field.ty, v) {
        _ if field.name == "id" => FV::Str(id.to_string()),
        _ if field.name == "tags" => FV::Set(tags.to_vec()),
        (_, ValueRef::Null) => FV::Absent,
        (FieldType::Bool, ValueRef::Integer(b)) => FV::Bool(b != 0),
        (FieldType::Number, ValueRef::Integer(x)) => FV::Number(x as f64),
        (FieldType::Number, ValueRef::Real(x)) => FV::Number(x),
        (FieldType::Duration, ValueRef::Integer(x)) => FV::Duration(x),
        (FieldType::String | FieldType::Timezone | FieldType::Enum(_), ValueRef::Text(t)) => {
            text(t).map_or(FV::Absent, FV::Str)
        }
        (FieldType::Datetime, ValueRef::Text(t)) => {
            std::str::from_utf8(t).ok().and_then(facts::parse_datetime).map_or(FV::Absent, FV::Datetime)
        }
        (FieldType::Date, ValueRef::Text(t)) => {
            std::str::from_utf8(t).ok().and_then(facts::parse_date).map_or(FV::Absent, FV::Date)
        }
        // `json_extract` gives an array as its JSON text; read it the way
        // the in-memory path reads the stored value (`json_to_field`), so a
        // value that is not an array of strings means the same in both.
        (FieldType::SetString, ValueRef::Text(t)) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .map_or(FV::Absent, |v| facts::json_to_field(&field.ty, &v)),
        _ => FV::Absent,
    }
}

/// Two 0/1 columns: whether the contact has an email address and a phone
/// number in `attrs` (a column reference such as `c.attrs`), by
/// `facts::addresses_of`'s rule: absent, null and empty are no address.
pub fn address_columns(attrs: &str) -> String {
    format!(
        "COALESCE(json_extract({attrs}, '$.email'), '') <> '', COALESCE(json_extract({attrs}, '$.phone'), '') <> ''"
    )
}

/// Reads the two columns of `address_columns` at `first` and `first + 1`.
pub fn addresses_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<facts::Addresses> {
    Ok(facts::Addresses { email: r.get::<_, i64>(first)? != 0, phone: r.get::<_, i64>(first + 1)? != 0 })
}

pub fn condition(p: &Program, c: &Cond, now: i64) -> Sql {
    let mut s = Sql { text: String::new(), params: Vec::new() };
    cond(p, c, now, Props::None, &mut s);
    s
}

fn push(s: &mut Sql, v: P) {
    s.params.push(v);
    s.text.push('?');
}

fn cond(p: &Program, c: &Cond, now: i64, props: Props, s: &mut Sql) {
    s.text.push_str("COALESCE((");
    match c {
        Cond::Const { value } => s.text.push_str(if *value { "1" } else { "0" }),
        Cond::And { all } | Cond::Or { any: all } => {
            let joiner = if matches!(c, Cond::And { .. }) { " AND " } else { " OR " };
            if all.is_empty() {
                s.text.push_str(if matches!(c, Cond::And { .. }) { "1" } else { "0" });
            }
            for (i, x) in all.iter().enumerate() {
                if i > 0 {
                    s.text.push_str(joiner);
                }
                cond(p, x, now, props, s);
            }
        }
        Cond::Not { cond: x } => {
            s.text.push_str("NOT ");
            cond(p, x, now, props, s);
        }
        Cond::Cmp { op, lhs, rhs } => {
            operand(p, lhs, now, props, s);
            s.text.push_str(match op {
                CmpOpRepr::Eq => " IS ",
                CmpOpRepr::Ne => " IS NOT ",
                CmpOpRepr::Lt => " < ",
                CmpOpRepr::Le => " <= ",
                CmpOpRepr::Gt => " > ",
                CmpOpRepr::Ge => " >= ",
            });
            operand(p, rhs, now, props, s);
        }
        Cond::In { lhs, list } => {
            if list.is_empty() {
                s.text.push('0');
            } else {
                operand(p, lhs, now, props, s);
                s.text.push_str(" IN (");
                for (i, k) in list.iter().enumerate() {
                    if i > 0 {
                        s.text.push_str(", ");
                    }
                    push(s, constant(k));
                }
                s.text.push(')');
            }
        }
        Cond::Has { set, elem } => {
            s.text.push_str("EXISTS (SELECT 1 FROM json_each(");
            set_source(p, set, s);
            s.text.push_str(") WHERE value = ");
            operand(p, elem, now, props, s);
            s.text.push(')');
        }
        Cond::Consent { channel } | Cond::Capable { channel } => {
            let col = if matches!(c, Cond::Consent { .. }) { "contacts.consent" } else { "contacts.capabilities" };
            s.text.push_str(&format!("EXISTS (SELECT 1 FROM json_each({col}) WHERE value = "));
            push(s, P::Text(channel.clone()));
            s.text.push(')');
        }
        // Engagement belongs to an execution; outside one it is false, as in memory.
        Cond::Engaged { .. } => s.text.push('0'),
        Cond::Happened { event, within_minutes, props: names, filter } => {
            let since = within_minutes.map(|w| now.saturating_sub(w));
            s.text.push_str("EXISTS (SELECT 1 FROM contact_events e WHERE e.contact_id = contacts.id AND e.name = ");
            push(s, P::Text(event.clone()));
            s.text.push_str(" AND e.at <= ");
            push(s, P::Integer(now));
            if let Some(since) = since {
                s.text.push_str(" AND e.at >= ");
                push(s, P::Integer(since));
            }
            for f in filter {
                s.text.push_str(" AND ");
                cond(p, f, now, Props::Event(names), s);
            }
            s.text.push(')');
            if event == "contact.created" {
                // The contact's creation is an event too (as the engine sees it).
                s.text.push_str(" OR (");
                let created = "(unixepoch(json_extract(contacts.attrs, '$.created_at')) / 60)";
                s.text.push_str(&format!("{created} <= "));
                push(s, P::Integer(now));
                if let Some(since) = since {
                    s.text.push_str(&format!(" AND {created} >= "));
                    push(s, P::Integer(since));
                }
                for f in filter {
                    s.text.push_str(" AND ");
                    cond(p, f, now, Props::Empty, s);
                }
                s.text.push(')');
            }
        }
        Cond::InSegment { segment } => match p.segments.get(segment.0 as usize) {
            Some(seg) => cond(p, &seg.cond, now, Props::None, s),
            None => s.text.push('0'),
        },
    }
    s.text.push_str("), 0)");
}

/// The JSON array a `has` looks into.
fn set_source(p: &Program, o: &Operand, s: &mut Sql) {
    match o {
        Operand::Field { slot } => match p.fields.get(slot.0 as usize) {
            Some(f) if f.name == "tags" => s.text.push_str("contacts.tags"),
            Some(f) => {
                s.text.push_str("contacts.attrs, ");
                push(s, P::Text(format!("$.{}", f.name)));
            }
            None => s.text.push_str("'[]'"),
        },
        _ => s.text.push_str("'[]'"),
    }
}

fn operand(p: &Program, o: &Operand, now: i64, props: Props, s: &mut Sql) {
    match o {
        Operand::Field { slot } => {
            let Some(f) = p.fields.get(slot.0 as usize) else {
                s.text.push_str("NULL");
                return;
            };
            if f.name == "id" {
                s.text.push_str("contacts.id");
                return;
            }
            let (open, close) = match f.ty {
                FieldType::Datetime | FieldType::Date => ("(unixepoch(json_extract(contacts.attrs, ", ")) / 60)"),
                _ => ("json_extract(contacts.attrs, ", ")"),
            };
            s.text.push_str(open);
            push(s, P::Text(format!("$.{}", f.name)));
            s.text.push_str(close);
        }
        Operand::Prop { index } => match props {
            Props::Event(names) => match names.get(*index as usize) {
                Some(n) => {
                    s.text.push_str("json_extract(e.props, ");
                    push(s, P::Text(format!("$.{n}")));
                    s.text.push(')');
                }
                None => s.text.push_str("NULL"),
            },
            Props::None | Props::Empty => s.text.push_str("NULL"),
        },
        Operand::Const { value } => match value {
            Const::None => s.text.push_str("NULL"),
            other => push(s, constant(other)),
        },
        Operand::Now { offset_minutes } => push(s, P::Integer(now.saturating_add(*offset_minutes))),
        Operand::Offset { base, offset_minutes } => {
            s.text.push('(');
            operand(p, base, now, props, s);
            s.text.push_str(" + ");
            push(s, P::Integer(*offset_minutes));
            s.text.push(')');
        }
        Operand::Sum { terms } => {
            s.text.push('(');
            for (i, (plus, t)) in terms.iter().enumerate() {
                if i > 0 {
                    s.text.push_str(if *plus { " + " } else { " - " });
                } else if !plus {
                    s.text.push_str("- ");
                }
                operand(p, t, now, props, s);
            }
            s.text.push(')');
        }
    }
}

fn constant(c: &Const) -> P {
    match c {
        Const::Bool(b) => P::Integer(i64::from(*b)),
        Const::Number(n) => P::Real(*n),
        Const::Str(t) | Const::Enum(t) => P::Text(t.clone()),
        Const::Datetime(m) => P::Integer(*m),
        Const::Date(d) => P::Integer(d.saturating_mul(1440)),
        Const::Duration(m) => P::Real(*m as f64),
        Const::None => P::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::facts::{addresses_of, ContactRecord};

    /// A `set<string>` field read from SQL is what the parsed record gives,
    /// for arrays, mixed arrays, and values that are not arrays at all.
    #[test]
    fn set_fields_read_from_sql_agree_with_the_parsed_record() {
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        let field = FieldDef { name: "interests".into(), ty: FieldType::SetString, optional: true };
        let cases = [
            r#"{"interests": ["a", "b"]}"#,
            r#"{"interests": ["a", 3, null]}"#,
            r#"{"interests": "a"}"#,
            r#"{"interests": 7}"#,
            r#"{"interests": {"a": 1}}"#,
            r#"{"interests": []}"#,
            r#"{}"#,
        ];
        for attrs in cases {
            let in_sql = conn
                .query_row("SELECT json_extract(?1, '$.interests')", [attrs], |r| {
                    Ok(field_from_sql(&field, "c", &[], r.get_ref(0)?))
                })
                .expect("query");
            let record: serde_json::Value = serde_json::from_str(attrs).expect("json");
            let parsed = record.get("interests").map_or(FieldValue::Absent, |v| facts::json_to_field(&field.ty, v));
            assert_eq!(in_sql, parsed, "{attrs}");
        }
    }

    /// SQLite and the parsed record agree on which contacts have an address,
    /// for absent, null, empty and present values.
    #[test]
    fn address_columns_agree_with_the_parsed_record() {
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        let cases = [
            r#"{}"#,
            r#"{"email": null, "phone": ""}"#,
            r#"{"email": "a@example.com"}"#,
            r#"{"phone": "+33600000000", "email": ""}"#,
            r#"{"email": "x", "phone": "y"}"#,
        ];
        for attrs in cases {
            let q = format!("SELECT {} FROM (SELECT ?1 AS attrs)", address_columns("attrs"));
            let in_sql = conn.query_row(&q, [attrs], |r| addresses_from_row(r, 0)).expect("query");
            let record = ContactRecord { attrs: serde_json::from_str(attrs).expect("json"), ..Default::default() };
            assert_eq!(in_sql, addresses_of(&record), "{attrs}");
        }
    }
}
