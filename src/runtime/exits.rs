//! `exit when …`: whether an execution leaves the campaign before its next
//! instruction (LANGUAGE.md §9.2, docs/runtime.md "Exits").
//!
//! Checked at step boundaries only — before each instruction the
//! interpreter runs — so a send already handed to the provider is never
//! interrupted.

use super::eval::{self, Ctx};
use super::facts::ContactEvent;
use super::wait;
use crate::compile::program::Exit;

/// The 1-based index of the first exit criterion that holds at `cx.now`,
/// for an execution that entered the campaign at `started_at` (`None`: an
/// execution enrolled before flowc recorded it, taken as started before
/// every event).
pub fn reached(cx: &Ctx, exits: &[Exit], started_at: Option<i64>) -> Option<usize> {
    let since = counts_from(started_at);
    exits
        .iter()
        .position(|x| match x {
            Exit::Event { event } => wait::happened_between(cx, event, since),
            Exit::State { cond } => eval::eval(cx, cond),
        })
        .map(|i| i + 1)
}

/// The earliest known moment after now at which an `exit when event`
/// criterion will hold: a parked execution wakes then to leave.
pub fn next_event(cx: &Ctx, exits: &[Exit], started_at: Option<i64>) -> Option<i64> {
    let since = counts_from(started_at);
    exits
        .iter()
        .filter_map(|x| match x {
            Exit::Event { event } => wait::next_event(cx, event, since),
            Exit::State { .. } => None,
        })
        .min()
}

/// From when an execution's exit events count: its start (events at that
/// very minute included). `None`, an execution enrolled before flowc
/// recorded starts, counts every event. `Store::exit` writes this same rule
/// in its UPDATE (`started_at IS NULL OR started_at <= at`).
pub fn counts_from(started_at: Option<i64>) -> i64 {
    started_at.unwrap_or(i64::MIN)
}

/// The 1-based index of the first `exit when event` criterion that the
/// event `e` (just arrived, at `cx.now`) meets, its `where` filter read by
/// the one event-matching function (`eval::event_times`); `cx.facts` holds
/// that event. State criteria are the engine's to check before each step.
pub fn met_by(cx: &Ctx, exits: &[Exit], e: &ContactEvent) -> Option<usize> {
    exits
        .iter()
        .position(|x| match x {
            Exit::Event { event } => {
                event.event == e.name
                    && eval::event_times(cx, &event.event, &event.props, &event.filter).any(|t| t == e.at)
            }
            Exit::State { .. } => false,
        })
        .map(|i| i + 1)
}

/// The reason an exited execution records: `exit:<index>`.
pub fn reason(index: usize) -> String {
    format!("exit:{index}")
}
