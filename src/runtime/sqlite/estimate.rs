//! The estimate's query: an audience's contacts with the fields a program
//! reads, pulled out by SQLite (`json_extract`) so no contact's whole JSON
//! is parsed. Part of the SQLite store (`Store::audience`); also the sends
//! recorded for contacts, which the estimate counts against frequency caps
//! (`Store::sends_since`).

use super::segment;
use super::{classify, parse_list};
use crate::compile::program::FieldDef;
use crate::runtime::facts;
use crate::runtime::store::{Audience, ContactId, DueContact, RecordedSend, StoreError};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params_from_iter, Connection, Row};

/// Streams the contacts matching `audience.filter` at `audience.at` (all of
/// them without a filter), the filter compiled by `segment::condition`.
pub(super) fn members(
    conn: &Connection,
    audience: Audience<'_>,
    f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let p = audience.program;
    let (clause, mut params) = match audience.filter {
        Some(c) => {
            let s = segment::condition(p, c, audience.at);
            (s.text, s.params)
        }
        None => ("1".to_string(), Vec::new()),
    };
    let mut cols = String::new();
    let mut extracts = Vec::new();
    for field in &p.fields {
        cols.push_str(", json_extract(attrs, ?)");
        extracts.push(Value::Text(format!("$.{}", field.name)));
    }
    cols.push_str(", json_extract(attrs, '$.created_at'), ");
    cols.push_str(&segment::address_columns("attrs"));
    // The select list's parameters come before the WHERE clause's.
    extracts.append(&mut params);
    let q = format!("SELECT id, tags, consent, capabilities{cols} FROM contacts WHERE {clause}");
    let mut stmt = conn.prepare(&q).map_err(classify)?;
    let mut rows = stmt.query(params_from_iter(extracts.iter())).map_err(classify)?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(classify)? {
        n += 1;
        f(member(r, &p.fields).map_err(classify)?)?;
    }
    Ok(n)
}

/// One row of `members`' select list: id, tags, consent, capabilities, the
/// fields, `created_at`, then the two address columns.
fn member(r: &Row<'_>, fields: &[FieldDef]) -> rusqlite::Result<DueContact> {
    let id: String = r.get(0)?;
    let list = |s: &str| parse_list(s, "contacts", &id);
    let tags = list(&r.get::<_, String>(1)?)?;
    let mut values = Vec::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        values.push(segment::field_from_sql(field, &id, &tags, r.get_ref(4 + i)?));
    }
    let created_at = match r.get_ref(4 + fields.len())? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(facts::parse_datetime),
        _ => None,
    };
    let addresses = segment::addresses_from_row(r, 5 + fields.len())?;
    let (consent, capabilities) = (list(&r.get::<_, String>(2)?)?, list(&r.get::<_, String>(3)?)?);
    Ok(DueContact { id: ContactId(id), fields: values, tags, consent, capabilities, created_at, addresses })
}

/// The sent messages of `contacts` at or after `since`, over every campaign.
pub(super) fn sends_since(
    conn: &Connection,
    contacts: &[&str],
    since: i64,
) -> Result<Vec<(String, RecordedSend)>, StoreError> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT contact_id, channel, message, sent_at FROM outbox
         WHERE status = 'sent' AND sent_at >= ? AND contact_id IN ({})",
        vec!["?"; contacts.len()].join(",")
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let args = std::iter::once(Value::Integer(since)).chain(contacts.iter().map(|c| Value::Text(c.to_string())));
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((r.get(0)?, RecordedSend { channel: r.get(1)?, message: r.get(2)?, sent_at: r.get(3)? }))
        })
        .map_err(classify)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(classify)
}
