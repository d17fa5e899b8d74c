//! The estimate's query: an audience's contacts with the fields a program
//! reads, pulled out by SQLite (`json_extract`) so no contact's whole JSON
//! is parsed. Part of the SQLite store (`Store::audience`, and grouped,
//! `Store::audience_groups`); also the sends recorded for contacts, which
//! the estimate counts against frequency caps (`Store::sends_since`).

use super::halves;
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
    let q = format!("SELECT id, tags, consent, capabilities{cols} FROM contacts WHERE {clause} ORDER BY id");
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
/// a group is decoded. Rows alike in their stored bytes hold alike values,
/// so a group is never too wide (two spellings of one value make two
/// groups, which is only slower).
///
/// The two halves of the table are read at once (`halves`): the first
/// streamed as it is read, the second kept by the other thread and streamed
/// after it, in the same order and with the same groups as one scan would
/// give. Both halves are read from the same `data_version`; should a write
/// come between the two reads, the second half is read again here.
pub(super) fn groups(
    conn: &Connection,
    audience: Audience<'_>,
    reads: &WalkReads,
    f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let q = GroupQuery::new(audience, reads);
    let mut grouping = Grouping::default();
    let split = halves::split(conn)?;
    let Some(split) = split else {
        return q.scan(conn, Range::All, &mut |r, key, id| grouping.live(&q, r, key, id, f));
    };
    let _snapshot = halves::Snapshot::begin(conn)?;
    let token = halves::token(conn)?;
    std::thread::scope(|s| {
        let second = s.spawn(|| -> Result<Option<Kept>, StoreError> {
            let other = halves::reader(&split)?;
            let _snapshot = halves::Snapshot::begin(&other)?;
            if halves::token(&other)? != token {
                return Ok(None);
            }
            let mut kept = Kept::default();
            kept.rows = q.scan(&other, Range::From(&split.mid), &mut |r, key, id| kept.keep(&q, r, key, id))?;
            Ok((kept.locals.len() <= MAX_GROUPS).then_some(kept))
        });
        let first = q.scan(conn, Range::Below(&split.mid), &mut |r, key, id| grouping.live(&q, r, key, id, f))?;
        // A second half that could not be read, or was read from other
        // data, or in too many groups to keep: read here after all.
        match second.join() {
            Ok(Ok(Some(kept))) => Ok(first + kept.replay(&mut grouping, f)?),
            _ => Ok(first + q.scan(conn, Range::From(&split.mid), &mut |r, key, id| grouping.live(&q, r, key, id, f))?),
        }
    })
}

/// What a scan does with each row: its group key and (when read) its id.
type Visit<'a> = dyn FnMut(&Row<'_>, &[u8], Option<&str>) -> Result<(), StoreError> + 'a;

/// Which contacts a scan reads.
#[derive(Clone, Copy)]
enum Range<'a> {
    All,
    Below(&'a str),
    From(&'a str),
}

/// The grouped query of one audience.
struct GroupQuery<'p> {
    /// The select list and table, then the filter; a range of ids is added.
    select: String,
    filter: String,
    params: Vec<Value>,
    /// The read slots' fields, in `reads` order, after the three fixed columns.
    read: Vec<(usize, &'p FieldDef)>,
    /// How many fields the program has (the slots of a decoded contact).
    fields: usize,
    by_id: bool,
    ids: IdReads,
}

impl<'p> GroupQuery<'p> {
    fn new(audience: Audience<'p>, reads: &WalkReads) -> GroupQuery<'p> {
        let p = audience.program;
        let (filter, mut params) = match audience.filter {
            Some(c) => {
                let s = segment::condition(p, c, audience.at);
                (s.text, s.params)
            }
            None => ("1".to_string(), Vec::new()),
        };
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
        // The creation is the `contact.created` event: of no use to walks
        // that read no events, so not even read.
        let created = if reads.events == EventReads::Read { "created_minute" } else { "NULL" };
        let by_id = read.iter().any(|(_, f)| f.name == "id");
        GroupQuery {
            select: format!("SELECT id, profile, {created}{cols} FROM contacts"),
            filter,
            params: extracts,
            read,
            fields: p.fields.len(),
            by_id,
            ids: reads.ids,
        }
    }

    /// Reads the contacts of `range` in id order, handing each row to
    /// `visit` with its group key and (when read) its id. Returns how many.
    fn scan(&self, conn: &Connection, range: Range<'_>, visit: &mut Visit<'_>) -> Result<u64, StoreError> {
        let (bound, mid) = match range {
            Range::All => ("", None),
            Range::Below(mid) => (" AND id < ?", Some(mid)),
            Range::From(mid) => (" AND id >= ?", Some(mid)),
        };
        // The filter is parenthesised: the range must not join an `OR` of
        // it. In id order, as `members` streams (the primary key's order:
        // no sorting).
        let sql = format!("{} WHERE ({}){bound} ORDER BY id", self.select, self.filter);
        let mut stmt = conn.prepare(&sql).map_err(classify)?;
        let args = self.params.iter().cloned().chain(mid.map(|m| Value::Text(m.to_string())));
        let mut rows = stmt.query(params_from_iter(args)).map_err(classify)?;
        let mut key = Vec::new();
        let mut n = 0;
        while let Some(r) = rows.next().map_err(classify)? {
            n += 1;
            key.clear();
            // The id only when the walks read it (`id` is then also part of the key).
            let id = match (self.ids, self.by_id) {
                (IdReads::Unread, false) => None,
                _ => Some(contact_id(r)?),
            };
            if let (true, Some(id)) = (self.by_id, id) {
                key_bytes(ValueRef::Text(id.as_bytes()), &mut key);
            }
            for i in 1..3 + self.read.len() {
                key_bytes(r.get_ref(i).map_err(classify)?, &mut key);
            }
            visit(r, &key, id)?;
        }
        Ok(n)
    }

    fn decode(&self, r: &Row<'_>) -> Result<DueContact, StoreError> {
        grouped_member(r, self.fields, &self.read).map_err(classify)
    }
}

/// The groups of a stream so far, by key.
#[derive(Default)]
struct Grouping {
    groups: HashMap<Box<[u8]>, GroupId>,
}

impl Grouping {
    /// The member a contact with `key` is: of a group seen before, the
    /// first of a new one (its data from `decode`), or alone.
    fn place(
        &mut self,
        key: &[u8],
        id: Option<&str>,
        decode: impl FnOnce() -> Result<DueContact, StoreError>,
        f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
    ) -> Result<Placed, StoreError> {
        if let Some(&group) = self.groups.get(key) {
            f(Member::Again { group, id })?;
            return Ok(Placed::In(group));
        }
        let contact = decode()?;
        if self.groups.len() >= MAX_GROUPS {
            f(Member::Alone(contact))?;
            return Ok(Placed::Alone);
        }
        let group = GroupId(self.groups.len() as u32);
        self.groups.insert(key.into(), group);
        f(Member::First { group, contact })?;
        Ok(Placed::In(group))
    }

    fn live(
        &mut self,
        q: &GroupQuery<'_>,
        r: &Row<'_>,
        key: &[u8],
        id: Option<&str>,
        f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.place(key, id, || q.decode(r), f).map(|_| ())
    }
}

/// Where `Grouping::place` put a contact: the kept half's later rows with
/// the same key go there too, without looking the key up again.
#[derive(Clone, Copy)]
enum Placed {
    In(GroupId),
    Alone,
}

/// The second half as the other thread read it, to stream after the first:
/// its own groups (key and decoded first contact) and, per row, its group
/// and id.
#[derive(Default)]
struct Kept {
    locals: Vec<(Box<[u8]>, DueContact)>,
    by_key: HashMap<Box<[u8]>, u32>,
    rows_group: Vec<u32>,
    /// The rows' ids one after another, with where each ends (when read).
    ids: String,
    ids_end: Vec<usize>,
    rows: u64,
}

impl Kept {
    fn keep(&mut self, q: &GroupQuery<'_>, r: &Row<'_>, key: &[u8], id: Option<&str>) -> Result<(), StoreError> {
        let local = match self.by_key.get(key) {
            Some(&local) => local,
            // Past the most groups a stream keeps, the rest is read again by
            // the caller: stop keeping (the rows still count, nothing more).
            None if self.locals.len() > MAX_GROUPS => return Ok(()),
            None => {
                let local = self.locals.len() as u32;
                self.locals.push((key.into(), q.decode(r)?));
                self.by_key.insert(key.into(), local);
                local
            }
        };
        self.rows_group.push(local);
        if let Some(id) = id {
            self.ids.push_str(id);
            self.ids_end.push(self.ids.len());
        }
        Ok(())
    }

    /// Streams the kept rows after the first half, placed in its groups.
    fn replay(
        self,
        grouping: &mut Grouping,
        f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut placed: Vec<Option<Placed>> = vec![None; self.locals.len()];
        let mut start = 0;
        for (i, &local) in self.rows_group.iter().enumerate() {
            let id = self.ids_end.get(i).map(|&end| {
                let id = &self.ids[start..end];
                start = end;
                id
            });
            let (key, data) = &self.locals[local as usize];
            // This row's own data: its group's, under its own id.
            let own = || {
                let mut c = data.clone();
                if let Some(id) = id {
                    c.id = ContactId(id.to_string());
                }
                c
            };
            match placed[local as usize] {
                Some(Placed::In(group)) => f(Member::Again { group, id })?,
                Some(Placed::Alone) => f(Member::Alone(own()))?,
                None => placed[local as usize] = Some(grouping.place(key, id, || Ok(own()), f)?),
            }
        }
        Ok(self.rows)
    }
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
