//! `exit when event …` at ingestion (LANGUAGE.md §9.2): an execution leaves
//! as soon as such an event arrives, wherever it waits. Waking it would not
//! do for one parked after a plain `wait` (stepping it early would skip the
//! rest of its wait), so the execution is completed here, in the
//! ingestion's transaction: one UPDATE by primary key per (campaign,
//! event) through `Store::exit`. A send in flight is never interrupted: a
//! `processing` execution is left to the engine's exit check before its
//! next step.

use super::eval::Ctx;
use super::exits;
use super::facts::{self, ContactRecord};
use super::ingest::Incoming;
use super::store::{Store, StoreError};
use super::wake::Waiting;
use crate::compile::program::{Exit, Program};

/// Completes, in every campaign `waiting` holds whose exit criteria `e`
/// meets, the contact's pending execution (reason `exit:<index>` of the
/// first criterion met). Returns the executions completed.
pub fn on_event(store: &mut dyn Store, waiting: &Waiting, e: &Incoming) -> Result<u64, StoreError> {
    // Read once, and only when some campaign exits on this event's name.
    let mut contact: Option<Option<ContactRecord>> = None;
    let mut exited = 0;
    for (campaign, program) in waiting.programs() {
        if !exits_on(program, &e.event.name) {
            continue;
        }
        let record = match &contact {
            Some(r) => r,
            None => contact.insert(store.contact(&e.contact)?),
        };
        // An event of an unknown contact concerns no execution.
        let Some(record) = record else { return Ok(exited) };
        let f = facts::of_record(program, record, vec![e.event.clone()]);
        let cx = Ctx { program, facts: &f, now: e.event.at };
        if let Some(index) = exits::met_by(&cx, &program.exits, &e.event) {
            exited += store.exit(campaign, &e.contact, &exits::reason(index), e.event.at)?;
        }
    }
    Ok(exited)
}

/// Whether some `exit when event` criterion of `p` names `event`: the
/// cheap test before the contact is read.
fn exits_on(p: &Program, event: &str) -> bool {
    p.exits.iter().any(|x| matches!(x, Exit::Event { event: m } if m.event == event))
}
