//! `Store::audience` on PostgreSQL: the contacts page by page. A filter the
//! store can say in SQL (`segment`) selects them there; any other is
//! matched contact by contact by the engine's own evaluator (`eval` over
//! `facts::of_record`, with its events), so the selection is exactly the
//! in-memory one either way.

use super::{PgStore, StoreError, PAGE};
use crate::runtime::eval::{self, Ctx};
use crate::runtime::facts::{self, ContactEvent};
use crate::runtime::store::{Audience, ContactId, DueContact, Store};
use std::collections::HashMap;

pub(super) fn members(
    store: &PgStore,
    audience: Audience<'_>,
    f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let p = audience.program;
    let in_sql = audience.filter.and_then(|f| super::segment::condition(p, f, 3));
    let mut after: Option<ContactId> = None;
    let mut n = 0;
    loop {
        let page = store.contacts_where(after.as_ref(), PAGE, in_sql.as_ref())?;
        let Some(last) = page.last() else { return Ok(n) };
        after = Some(last.id.clone());
        let mut events: HashMap<ContactId, Vec<ContactEvent>> = HashMap::new();
        let evaluated = if in_sql.is_some() { None } else { audience.filter };
        if evaluated.is_some() {
            let ids: Vec<&ContactId> = page.iter().map(|c| &c.id).collect();
            for e in store.events_for(&ids)? {
                events.entry(e.contact).or_default().push(e.event);
            }
        }
        for c in page {
            let facts = facts::of_record(p, &c, events.remove(&c.id).unwrap_or_default());
            if let Some(filter) = evaluated {
                if !eval::eval(&Ctx { program: p, facts: &facts, now: audience.at }, filter) {
                    continue;
                }
            }
            let created_at = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(facts::parse_datetime);
            n += 1;
            f(DueContact {
                id: facts.contact_id,
                fields: facts.fields,
                tags: facts.tags,
                consent: facts.consent,
                capabilities: facts.capabilities,
                created_at,
                addresses: facts.addresses,
            })?;
        }
    }
}
