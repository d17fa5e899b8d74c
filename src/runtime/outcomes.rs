//! Goal conversions for the run report, computed at report time from what
//! the store holds (docs/runtime.md, "Goals and A/B outcomes"): exact
//! whatever path an event arrived by (contacts import, events import, the
//! API, a simulation's timeline), and never kept as a counter that a late
//! event could leave stale.

use super::eval::{self, Ctx};
use super::facts::{ContactEvent, Facts, SentMessage};
use super::store::{ContactId, Entry, Start, Store, StoreError};
use crate::compile::program::{Goal, Program};
use std::collections::{BTreeMap, HashMap};

/// Conversions of one campaign.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    /// Executions of the campaign.
    pub entered: u64,
    pub converted: u64,
    /// Send step → conversions it gets by last touch.
    pub conversions: BTreeMap<String, u64>,
    /// (ab_test, variant) → (entered, converted).
    pub variants: BTreeMap<(String, String), (u64, u64)>,
}

/// Executions read per round trip to the store.
const PAGE: usize = 1000;

/// A contact converts when an event matching the goal happens in
/// `[started_at, started_at + within]`, at or before `now`. Its conversion
/// goes to the last message its execution sent at or before that moment.
/// An execution enrolled before flowc recorded its start never converts.
pub fn compute(store: &dyn Store, p: &Program, goal: &Goal, now: i64) -> Result<Outcomes, StoreError> {
    let mut out = Outcomes::default();
    let mut after: Option<(ContactId, Entry)> = None;
    loop {
        let page = store.starts(&p.campaign, after.as_ref().map(|(c, e)| (c, *e)), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some((last.contact.clone(), last.entry));
        // A contact's executions (re-entry) are in one page or the next:
        // each page asks for its contacts once.
        let mut ids: Vec<&ContactId> = page.iter().map(|s| &s.contact).collect();
        ids.dedup();
        let mut events: HashMap<ContactId, Vec<ContactEvent>> = HashMap::new();
        for e in store.events_for(&ids)? {
            events.entry(e.contact).or_default().push(e.event);
        }
        // By execution: a conversion goes to the sends and variant of the
        // execution whose window it falls in.
        let mut sent: HashMap<(ContactId, Entry), Vec<SentMessage>> = HashMap::new();
        for s in store.sent_for(&p.campaign, &ids)? {
            sent.entry((s.contact, s.entry)).or_default().push(s.message);
        }
        let mut assigned: HashMap<(ContactId, Entry), Vec<(String, String)>> = HashMap::new();
        for a in store.ab_assignments(&p.campaign, &ids)? {
            assigned.entry((a.contact, a.entry)).or_default().push((a.ab, a.variant));
        }
        for Start { contact, started_at, entry } in &page {
            out.entered += 1;
            let key = (contact.clone(), *entry);
            let facts = Facts {
                contact_id: contact.clone(),
                events: events.get(contact).cloned().unwrap_or_default(),
                sent: sent.remove(&key).unwrap_or_default(),
                ..Facts::default()
            };
            let at = started_at.and_then(|s| conversion(p, goal, &facts, s, now));
            let variants = assigned.remove(&key).unwrap_or_default();
            for v in variants {
                let e = out.variants.entry(v).or_default();
                e.0 += 1;
                e.1 += u64::from(at.is_some());
            }
            let Some(at) = at else { continue };
            out.converted += 1;
            if let Some(m) = facts.sent.iter().filter(|m| m.sent_at <= at).max_by_key(|m| m.sent_at) {
                *out.conversions.entry(m.step.clone()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// When the contact converted: the first goal event in its window.
fn conversion(p: &Program, goal: &Goal, facts: &Facts, started_at: i64, now: i64) -> Option<i64> {
    let until = started_at.saturating_add(goal.within_minutes).min(now);
    let cx = Ctx { program: p, facts, now };
    let m = &goal.event;
    eval::event_times(&cx, &m.event, &m.props, &m.filter).filter(|t| *t >= started_at && *t <= until).min()
}
