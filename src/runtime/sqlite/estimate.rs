//! The estimate's query: an audience's contacts with the fields a program
//! reads, pulled out by SQLite (`json_extract`) so no contact's whole JSON
//! is parsed. Part of the SQLite store (`Store::audience`, and grouped,
//! `Store::audience_groups`); also the sends recorded for contacts, which
//! the estimate counts against frequency caps (`Store::sends_since`).

use super::segment;
use super::typed;
use super::{classify, parse_list};
use crate::compile::program::FieldDef;
use crate::runtime::alike::MAX_GROUPS;
use crate::runtime::facts::{self, FieldValue};
use crate::runtime::store::{
    Audience, ContactId, DueContact, EventReads, GroupId, IdReads, Member, RecordedSend, StoreError, WalkReads,
};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params_from_iter, Connection, Row};
use std::collections::HashMap;

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

/// `members`, grouped by what the walks read (`reads`), on the columns of
/// schema 8: each row brings its `profile` (sets and addresses), its
/// creation and the fields the walks read, as stored, and is grouped by
/// those bytes (and its id, when the walks read `id`); only the first row of
/// a group is decoded. Rows alike in their
/// stored bytes hold alike values, so a group is never too wide (two
/// spellings of one value make two groups, which is only slower).
pub(super) fn groups(
    conn: &Connection,
    audience: Audience<'_>,
    reads: &WalkReads,
    f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let p = audience.program;
    let (clause, mut params) = match audience.filter {
        Some(c) => {
            let s = segment::condition(p, c, audience.at);
            (s.text, s.params)
        }
        None => ("1".to_string(), Vec::new()),
    };
    // The read slots' fields, in `reads` order, after the three fixed columns.
    let read: Vec<(usize, &FieldDef)> =
        reads.slots.iter().filter_map(|s| p.fields.get(s.0 as usize).map(|f| (s.0 as usize, f))).collect();
    let mut cols = String::new();
    let mut extracts = Vec::new();
    for (_, field) in &read {
        // `id` and `tags` have columns of their own (`field_from_sql`).
        if field.name == "id" || field.name == "tags" {
            cols.push_str(", NULL");
        } else {
            cols.push_str(", json_extract(attrs, ?)");
            extracts.push(Value::Text(format!("$.{}", field.name)));
        }
    }
    extracts.append(&mut params);
    // The creation is the `contact.created` event: of no use to walks that
    // read no events, so not even read.
    let created = if reads.events == EventReads::Read { "created_minute" } else { "NULL" };
    let q = format!("SELECT id, profile, {created}{cols} FROM contacts WHERE {clause}");
    let by_id = read.iter().any(|(_, f)| f.name == "id");
    let mut stmt = conn.prepare(&q).map_err(classify)?;
    let mut rows = stmt.query(params_from_iter(extracts.iter())).map_err(classify)?;
    let mut groups: HashMap<Box<[u8]>, GroupId> = HashMap::new();
    let mut key = Vec::new();
    let mut n = 0;
    while let Some(r) = rows.next().map_err(classify)? {
        n += 1;
        key.clear();
        // The id only when the walks read it (`id` is then also part of the key).
        let id = match (reads.ids, by_id) {
            (IdReads::Unread, false) => None,
            _ => Some(contact_id(r)?),
        };
        if let (true, Some(id)) = (by_id, id) {
            key_bytes(ValueRef::Text(id.as_bytes()), &mut key);
        }
        for i in 1..3 + read.len() {
            key_bytes(r.get_ref(i).map_err(classify)?, &mut key);
        }
        if let Some(&group) = groups.get(key.as_slice()) {
            f(Member::Again { group, id })?;
            continue;
        }
        let contact = grouped_member(r, p.fields.len(), &read).map_err(classify)?;
        if groups.len() >= MAX_GROUPS {
            f(Member::Alone(contact))?;
            continue;
        }
        let group = GroupId(groups.len() as u32);
        groups.insert(key.as_slice().into(), group);
        f(Member::First { group, contact })?;
    }
    Ok(n)
}

fn contact_id<'r>(r: &'r Row<'_>) -> Result<&'r str, StoreError> {
    match r.get_ref(0).map_err(classify)? {
        ValueRef::Text(t) => std::str::from_utf8(t).map_err(|e| StoreError::Other(e.to_string())),
        other => Err(StoreError::Other(format!("contact id of type {}", other.data_type()))),
    }
}

/// One value of a row, tagged with its type, into a group key.
fn key_bytes(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(x) => {
            out.push(2);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            out.push(if matches!(v, ValueRef::Text(_)) { 3 } else { 4 });
            // The length first, so no value's bytes read as the next one's.
            match u8::try_from(t.len()) {
                Ok(short) if short < u8::MAX => out.push(short),
                _ => {
                    out.push(u8::MAX);
                    out.extend_from_slice(&(t.len() as u64).to_le_bytes());
                }
            }
            out.extend_from_slice(t);
        }
    }
}

/// A row of `groups` as the contact it is: the read fields in their slots
/// (`fields` of them in all), the others absent since no walk reads them;
/// the sets and addresses from its `profile`.
fn grouped_member(r: &Row<'_>, fields: usize, read: &[(usize, &FieldDef)]) -> rusqlite::Result<DueContact> {
    let id: String = r.get(0)?;
    let profile: String = r.get(1)?;
    // JSON text holds no raw U+001F (it is escaped), so the separators are
    // the profile's own; anything else is a corrupt row.
    let parts: Vec<&str> = profile.split('\u{1f}').collect();
    let [tags, consent, capabilities, addresses] = parts.as_slice() else {
        return Err(super::corrupt("contacts", &id, &profile));
    };
    let list = |s: &str| parse_list(s, "contacts", &id);
    let tags = list(tags)?;
    let (consent, capabilities) = (list(consent)?, list(capabilities)?);
    let addresses = addresses.parse().map_err(|_| super::corrupt("contacts", &id, &profile))?;
    let mut values = vec![FieldValue::Absent; fields];
    for (i, (slot, field)) in read.iter().enumerate() {
        if let Some(v) = values.get_mut(*slot) {
            *v = segment::field_from_sql(field, &id, &tags, r.get_ref(3 + i)?);
        }
    }
    let created_at: Option<i64> = r.get(2)?;
    let addresses = typed::addresses_from_flags(addresses);
    Ok(DueContact { id: ContactId(id), fields: values, tags, consent, capabilities, created_at, addresses })
}

/// The sent messages of `contacts` at or after `since`, over every campaign.
pub(super) fn sends_since(
    conn: &Connection,
    contacts: &[&ContactId],
    since: i64,
) -> Result<Vec<RecordedSend>, StoreError> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT contact_id, channel, message, sent_at FROM outbox
         WHERE status = 'sent' AND sent_at >= ? AND contact_id IN ({})",
        vec!["?"; contacts.len()].join(",")
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let args = std::iter::once(Value::Integer(since)).chain(contacts.iter().map(|c| Value::Text(c.0.clone())));
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok(RecordedSend { contact: r.get(0)?, channel: r.get(1)?, message: r.get(2)?, sent_at: r.get(3)? })
        })
        .map_err(classify)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(classify)
}
