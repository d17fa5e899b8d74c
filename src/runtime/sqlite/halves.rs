//! Reading the contacts table in two halves at once: the ids below a split
//! point on the store's own connection, the others on a second read-only
//! connection to the same file, on another thread. An estimate reads every
//! contact of its audience (and the virtual clock every contact's creation),
//! which on a two-core machine takes half the time this way. Only for a
//! database file (an in-memory one has no second connection) whose ids
//! allow a split point; otherwise, and whenever the second half cannot be
//! read, the caller reads everything on its own connection.

use super::classify;
use crate::runtime::store::StoreError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Where the table splits: ids below `mid` are the first half.
pub(super) struct Split {
    path: String,
    pub mid: String,
}

/// A split point between the smallest and the largest id, from their
/// first differing byte (an ASCII one, so the point is text): balanced for
/// ids spread evenly over it (`c0000000` to `c0999999` split at `c04`).
pub(super) fn split(conn: &Connection) -> Result<Option<Split>, StoreError> {
    let Some(path) = conn.path().filter(|p| !p.is_empty()).map(str::to_string) else { return Ok(None) };
    // One end at a time: SQLite reads `MIN(id)` or `MAX(id)` alone off the
    // primary key, but scans the table for both in one query.
    let end =
        |sql: &str| -> Result<Option<String>, StoreError> { conn.query_row(sql, [], |r| r.get(0)).map_err(classify) };
    let (Some(low), Some(high)) = (end("SELECT MIN(id) FROM contacts")?, end("SELECT MAX(id) FROM contacts")?) else {
        return Ok(None);
    };
    let common = low.bytes().zip(high.bytes()).take_while(|(a, b)| a == b).count();
    let (Some(&a), Some(&b)) = (low.as_bytes().get(common), high.as_bytes().get(common)) else { return Ok(None) };
    // `high` sorts after `low`, so `b > a`; the point is above `low` and at
    // most `high`, so each half holds at least one contact.
    let m = a + (b - a).div_ceil(2);
    if !m.is_ascii() || !low.is_char_boundary(common) {
        return Ok(None);
    }
    let mut mid = low[..common].to_string();
    mid.push(char::from(m));
    Ok(Some(Split { path, mid }))
}

/// A second connection to the split's file, as the read-only store opens one.
pub(super) fn reader(split: &Split) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        &split.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(classify)?;
    conn.busy_handler(Some(super::wait_for_the_lock)).map_err(classify)?;
    conn.execute_batch("PRAGMA mmap_size=4294967296;").map_err(classify)?;
    Ok(conn)
}

/// The database's `data_version` token as this connection sees it: two
/// read transactions that see the same token see the same contacts, events
/// and sends (every write of them changes it).
pub(super) fn token(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.query_row("SELECT token FROM data_version WHERE id = 1", [], |r| r.get(0)).optional().map_err(classify)
}

/// A read transaction on `conn` for as long as it lives (a savepoint, so it
/// nests in one the caller has open).
pub(super) struct Snapshot<'c>(&'c Connection);

impl<'c> Snapshot<'c> {
    pub fn begin(conn: &'c Connection) -> Result<Snapshot<'c>, StoreError> {
        conn.execute_batch("SAVEPOINT flowc_halves").map_err(classify)?;
        Ok(Snapshot(conn))
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        // Only reads happened inside: releasing cannot lose anything.
        let _ = self.0.execute_batch("RELEASE flowc_halves");
    }
}
