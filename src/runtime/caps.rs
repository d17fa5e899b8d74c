//! Frequency caps at the engine: which of a batch's sends the workspace's
//! caps apply to, and turning the ones the store refuses into skips.
//!
//! The count lives in the store (`Store::admit_capped`), asked inside the
//! write transaction that commits the batch's outbox rows: the store's
//! writer lock orders every commit of every campaign, so two batches (of
//! one process or of two) can never both take a contact's last slot. A
//! refused send never gets an outbox row; its execution has already gone
//! on past it at the send's `next` (Braze semantics), so nothing else
//! changes but the step's `frequency-cap` skip count and the price.

use super::store::{CapSend, OutboxNew, Round, Store, StoreError};
use crate::compile::program::{FrequencyCap, Op, Program};

/// The skip reason of a send over a cap (docs/runtime.md, "Frequency caps").
pub const SKIP_REASON: &str = "frequency-cap";

/// Whether the send recorded in `row`, made at instruction `op`, has a
/// message type that requires consent — the only sends caps count. The
/// row is the primary target's or the fallback's: whichever it names.
pub fn requires_consent(op: &Op, row: &OutboxNew) -> bool {
    let Op::Send { target, fallback, .. } = op else { return false };
    std::iter::once(target)
        .chain(fallback.iter())
        .find(|t| t.channel == row.channel && t.message == row.message)
        .is_some_and(|t| t.requires_consent)
}

/// Applies `caps` to the round's new outbox rows inside the commit's
/// transaction: the consent-requiring ones (`counted`) are admitted or
/// refused by the store in batch order; refused rows leave the round and
/// are counted as `frequency-cap` skips of their step. Returns them, so
/// the caller gives their price back and does not relay them.
pub fn enforce(
    store: &mut dyn Store,
    caps: &[FrequencyCap],
    round: &mut Round,
    counted: &dyn Fn(&OutboxNew) -> bool,
    now: i64,
) -> Result<Vec<OutboxNew>, StoreError> {
    let which: Vec<usize> = (0..round.outbox_new.len()).filter(|i| counted(&round.outbox_new[*i])).collect();
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let sends: Vec<CapSend<'_>> = which
        .iter()
        .map(|i| {
            let o = &round.outbox_new[*i];
            CapSend { contact: &o.contact, channel: &o.channel, key: &o.key }
        })
        .collect();
    let fits = store.admit_capped(caps, &sends, now)?;
    let refused: std::collections::HashSet<usize> =
        which.iter().zip(fits).filter(|(_, fits)| !fits).map(|(i, _)| *i).collect();
    if refused.is_empty() {
        return Ok(Vec::new());
    }
    let (mut kept, mut out) = (Vec::with_capacity(round.outbox_new.len()), Vec::with_capacity(refused.len()));
    for (i, o) in std::mem::take(&mut round.outbox_new).into_iter().enumerate() {
        if refused.contains(&i) {
            out.push(o);
        } else {
            kept.push(o);
        }
    }
    round.outbox_new = kept;
    for o in &out {
        *round.steps.entry(o.step.clone()).or_default().skipped.entry(SKIP_REASON.to_string()).or_default() += 1;
    }
    Ok(out)
}

/// The caps a program's sends are under (the workspace policy compiled into it).
pub fn of(p: &Program) -> &[FrequencyCap] {
    &p.delivery.frequency_caps
}
