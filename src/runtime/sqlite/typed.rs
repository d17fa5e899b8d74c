//! The contacts' typed columns (schema 8): `created_minute` and
//! `addresses`, kept beside the attributes so estimates and batches read
//! them without looking into the JSON, and `profile`, a contact's sets and
//! addresses in one value. Each is defined twice, once over a record (what
//! `upsert_contacts` writes) and once in SQL over the stored columns (what
//! the migration to schema 8, a tag change and a `set` step's update
//! write), and a test holds the two to each other.

use crate::runtime::facts::{self, Addresses, ContactRecord};

/// The attributes the typed columns are computed from: a write of any
/// other attribute leaves them as they are.
pub const SOURCES: [&str; 3] = ["created_at", "email", "phone"];

/// `addresses`: 1 for an email address, 2 for a phone number.
pub fn address_flags(a: Addresses) -> i64 {
    i64::from(a.email) | i64::from(a.phone) << 1
}

pub fn addresses_from_flags(flags: i64) -> Addresses {
    Addresses { email: flags & 1 != 0, phone: flags & 2 != 0 }
}

/// `(created_minute, addresses)` of a record.
pub fn of_record(c: &ContactRecord) -> (Option<i64>, i64) {
    let created = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(facts::parse_datetime);
    (created, address_flags(facts::addresses_of(c)))
}

/// `profile`: the tags, consent and capabilities as stored (JSON lists)
/// and the `addresses` flags, separated by U+001F, which JSON text never
/// holds unescaped: alike contacts have equal profiles.
pub fn profile(tags: &str, consent: &str, capabilities: &str, addresses: i64) -> String {
    format!("{tags}\u{1f}{consent}\u{1f}{capabilities}\u{1f}{addresses}")
}

/// `created_minute = …, addresses = …, profile = …` computed in SQL from
/// the stored attributes `attrs` and sets (`flowc_minutes` is
/// `facts::parse_datetime`, `flowc_profile` is `profile`; an address is
/// present unless absent, null or empty, as `addresses_of` says).
pub fn assignments(attrs: &str) -> String {
    let addresses = format!(
        "(COALESCE(json_extract({attrs}, '$.email'), '') <> '') + 2 * (COALESCE(json_extract({attrs}, '$.phone'), '') <> '')"
    );
    format!(
        "created_minute = flowc_minutes(json_extract({attrs}, '$.created_at')), addresses = {addresses}, \
         profile = flowc_profile(tags, consent, capabilities, {addresses})"
    )
}

/// The whole attributes as JSON text, whether stored as binary JSON
/// (schema 8) or text (before; or text that is not JSON, which is read as
/// it is so the error names it).
pub const ATTRS_TEXT: &str = "CASE WHEN json_valid(attrs, 9) THEN json(attrs) ELSE attrs END";
