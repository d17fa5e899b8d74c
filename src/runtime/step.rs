//! Stepping one execution: the pure core of the interpreter.
//!
//! `advance` runs from the execution's program counter until the next
//! durable boundary — a send to perform, a wait, the end, or a skip — and
//! reports what happened on the way. It does no IO: sending, persisting and
//! the clock belong to the engine.

use super::eval::{self, Ctx};
use super::exits;
use super::facts::{Facts, FieldValue};
use super::wait::{self, Arms, Decision};
use crate::compile::program::{Cond, FieldSlot, NodeIdx, OnIneligible, Op, Program, SendTarget};

/// Why a send was not made (docs/runtime.md, "Sends", in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The contact has no address on the channel (no email, no phone, no push registration).
    NoAddress,
    NoConsent,
    ChannelNotApproved,
    NotCapable,
    /// The send fell in the campaign's quiet hours (`then skip`).
    QuietHours,
    /// Over a workspace frequency cap (decided at commit: `caps`).
    FrequencyCap,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoAddress => "no-address",
            SkipReason::NoConsent => "no-consent",
            SkipReason::ChannelNotApproved => "channel-not-approved",
            SkipReason::NotCapable => "not-capable",
            SkipReason::QuietHours => "quiet-hours",
            SkipReason::FrequencyCap => super::caps::SKIP_REASON,
        }
    }
    pub fn parse(s: &str) -> Option<SkipReason> {
        match s {
            "no-address" => Some(SkipReason::NoAddress),
            "no-consent" => Some(SkipReason::NoConsent),
            "channel-not-approved" => Some(SkipReason::ChannelNotApproved),
            "not-capable" => Some(SkipReason::NotCapable),
            "quiet-hours" => Some(SkipReason::QuietHours),
            super::caps::SKIP_REASON => Some(SkipReason::FrequencyCap),
            _ => None,
        }
    }
}

/// The account's settings that decide eligibility.
#[derive(Debug, Clone)]
pub struct Account {
    /// Channels the account may send on; `None` means all.
    pub approved_channels: Option<Vec<String>>,
}

/// Where stepping stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// Perform this send (primary or fallback), then continue at `next`.
    Send {
        node: NodeIdx,
        target: SendTarget,
        fallback_used: bool,
        next: NodeIdx,
    },
    Wait {
        until: i64,
        next: NodeIdx,
    },
    /// Parked at a `wait until` (`node`) entered at `since`, until `wake_at`.
    Parked {
        node: NodeIdx,
        since: i64,
        wake_at: i64,
    },
    Completed,
    Skipped {
        node: NodeIdx,
        reason: SkipReason,
    },
    /// An `exit when` criterion (1-based `index`) held before `at` ran.
    Exited {
        at: NodeIdx,
        index: usize,
    },
}

/// The moments of one execution that stepping reads: when it entered the
/// campaign (`exit when event` counts events from then) and, parked at a
/// `wait until`, when it entered that wait. `None`: not known (an execution
/// enrolled before flowc recorded it), or not waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moments {
    pub started_at: Option<i64>,
    pub wait_since: Option<i64>,
}

/// What happened on the way, for statistics and contact updates.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    Entered(NodeIdx),
    AbPick {
        node: NodeIdx,
        variant: usize,
    },
    Tag {
        change: TagChange,
        tag: String,
    },
    /// A `set` step wrote this field (the engine persists it).
    Set {
        slot: FieldSlot,
    },
    /// An ineligible send passed over (`on ineligible continue`).
    Skip {
        node: NodeIdx,
        reason: SkipReason,
    },
}

/// What one instruction does to an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition<'p> {
    /// Go on at this instruction.
    Next(NodeIdx),
    /// A condition for the caller to decide: the engine evaluates it
    /// (`advance`), the estimator splits the contact by engagement rates.
    Branch { cond: &'p Cond, then: NodeIdx, otherwise: NodeIdx },
    /// A `wait until` entered now: the engine decides its arms (`advance`,
    /// through `wait::decide`), the estimator reckons with them its own way.
    WaitUntil { node: NodeIdx, arms: Arms<'p> },
    /// A boundary: the caller performs the send, lets the wait pass, or stops.
    Stop(Stop),
}

/// Runs one instruction at `pc`: the semantics of every instruction, shared
/// by the engine (through `advance`) and the estimator, so an estimate walks
/// exactly the path a run takes. `now` is in minutes.
pub fn transition<'p>(
    p: &'p Program,
    pc: NodeIdx,
    facts: &mut Facts,
    now: i64,
    account: &Account,
    trace: &mut Vec<Trace>,
) -> Transition<'p> {
    let Some(node) = p.nodes.get(pc.get()) else { return Transition::Stop(Stop::Completed) };
    trace.push(Trace::Entered(pc));
    match &node.op {
        Op::Send { target, fallback, next } => {
            match (send(pc, target, fallback.as_ref(), *next, facts, account), p.on_ineligible) {
                (Stop::Skipped { node, reason }, OnIneligible::Continue) => {
                    trace.push(Trace::Skip { node, reason });
                    Transition::Next(*next)
                }
                (stop, _) => Transition::Stop(stop),
            }
        }
        Op::Wait { minutes, next } => Transition::Stop(Stop::Wait { until: now.saturating_add(*minutes), next: *next }),
        Op::Branch { cond, then, otherwise } => Transition::Branch { cond, then: *then, otherwise: *otherwise },
        Op::Split { name, variants } => {
            let chosen = pick_variant(&p.campaign, facts.contact_id.as_str(), name, variants);
            trace.push(Trace::AbPick { node: pc, variant: chosen });
            Transition::Next(variants.get(chosen).map_or(pc, |v| v.target))
        }
        Op::Tag { add, tag, next } => {
            let change = TagChange::of_op(*add);
            apply_tag(p, facts, change, tag);
            trace.push(Trace::Tag { change, tag: tag.clone() });
            Transition::Next(*next)
        }
        Op::Jump { target } => Transition::Next(*target),
        Op::WaitUntil { arms, timeout_minutes, timeout } => Transition::WaitUntil {
            node: pc,
            arms: Arms { arms, timeout_minutes: *timeout_minutes, timeout: *timeout },
        },
        Op::Set { slot, value, next, .. } => {
            super::set::apply(p, facts, *slot, value, now);
            trace.push(Trace::Set { slot: *slot });
            Transition::Next(*next)
        }
        Op::End => Transition::Stop(Stop::Completed),
    }
}

/// Runs from `pc` to the next boundary, deciding branches on the facts. `now` is in minutes.
/// An execution resuming at a `wait until` it is parked at (`at.wait_since`
/// set) tries its arms again without entering it anew. Exit criteria are
/// checked before every instruction.
pub fn advance(
    p: &Program,
    pc: NodeIdx,
    at: Moments,
    facts: &mut Facts,
    now: i64,
    account: &Account,
    trace: &mut Vec<Trace>,
) -> Stop {
    let mut pc = pc;
    let mut resumed = at.wait_since;
    // Edges only go forward, so this loop ends within `nodes.len()` steps.
    for _ in 0..=p.nodes.len() {
        if !p.exits.is_empty() {
            let cx = Ctx { program: p, facts, now };
            if let Some(index) = exits::reached(&cx, &p.exits, at.started_at) {
                return Stop::Exited { at: pc, index };
            }
        }
        let parked = resumed.take().and_then(|since| match p.nodes.get(pc.get()).map(|n| &n.op) {
            Some(Op::WaitUntil { arms, timeout_minutes, timeout }) => {
                Some((since, Arms { arms, timeout_minutes: *timeout_minutes, timeout: *timeout }))
            }
            _ => None,
        });
        let t = match parked {
            // Parked here already: try the arms again without entering anew.
            Some((since, arms)) => match wait_until(p, facts, pc, arms, since, at, now) {
                Ok(next) => Transition::Next(next),
                Err(stop) => return stop,
            },
            None => transition(p, pc, facts, now, account, trace),
        };
        match t {
            Transition::Next(next) => pc = next,
            Transition::Branch { cond, then, otherwise } => {
                let cx = Ctx { program: p, facts, now };
                pc = if eval::eval(&cx, cond) { then } else { otherwise };
            }
            Transition::WaitUntil { node, arms } => match wait_until(p, facts, node, arms, now, at, now) {
                Ok(next) => pc = next,
                Err(stop) => return stop,
            },
            Transition::Stop(stop) => return stop,
        }
    }
    Stop::Completed
}

/// A `wait until` at `node`, entered at `since`: the arm to go on at, or
/// the execution parked there — woken early for an `exit when event` the
/// facts already time before the wait's own wake-up.
fn wait_until(
    p: &Program,
    facts: &Facts,
    node: NodeIdx,
    arms: Arms,
    since: i64,
    at: Moments,
    now: i64,
) -> Result<NodeIdx, Stop> {
    match wait::decide(p, facts, arms, since, now) {
        Decision::Take(next) => Ok(next),
        Decision::Park { wake_at } => {
            let cx = Ctx { program: p, facts, now };
            let exit = exits::next_event(&cx, &p.exits, at.started_at);
            Err(Stop::Parked { node, since, wake_at: exit.map_or(wake_at, |e| e.min(wake_at)) })
        }
    }
}

/// The send a contact gets: the primary target if eligible; when the primary
/// cannot reach this contact at all (no address on its channel, or a device
/// that is not capable) the fallback, checked the same way from the start —
/// what a Braze user expects. So an RCS send to a phone without RCS goes out
/// as SMS, and one to a contact without a phone is skipped `no-address` by
/// the SMS fallback's own check. Any other reason skips without a fallback.
fn send(
    pc: NodeIdx,
    target: &SendTarget,
    fallback: Option<&SendTarget>,
    next: NodeIdx,
    facts: &Facts,
    account: &Account,
) -> Stop {
    match eligible(target, facts, account) {
        Ok(()) => Stop::Send { node: pc, target: target.clone(), fallback_used: false, next },
        Err(reason @ (SkipReason::NoAddress | SkipReason::NotCapable)) => match fallback {
            Some(fb) => match eligible(fb, facts, account) {
                Ok(()) => Stop::Send { node: pc, target: fb.clone(), fallback_used: true, next },
                Err(reason) => Stop::Skipped { node: pc, reason },
            },
            None => Stop::Skipped { node: pc, reason },
        },
        Err(reason) => Stop::Skipped { node: pc, reason },
    }
}

/// What a channel delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    Email,
    Phone,
    /// A device registered for push, which the contact shows as its `push` capability.
    PushRegistration,
    /// A channel the stdlib does not declare: the runtime knows no address for it.
    Unknown,
}

/// The address each stdlib channel needs (stdlib/channels.flow).
pub fn address_of(channel: &str) -> Address {
    match channel {
        "email" => Address::Email,
        "sms" | "rcs" | "whatsapp" => Address::Phone,
        "push" => Address::PushRegistration,
        _ => Address::Unknown,
    }
}

fn has_address(channel: &str, facts: &Facts) -> bool {
    match address_of(channel) {
        Address::Email => facts.addresses.email,
        Address::Phone => facts.addresses.phone,
        Address::PushRegistration => facts.capabilities.iter().any(|c| c == "push"),
        Address::Unknown => true,
    }
}

/// Send eligibility, in the documented order: address, consent, approval, capability.
/// (Balance is the engine's: it depends on the other sends of the batch.)
pub fn eligible(t: &SendTarget, facts: &Facts, account: &Account) -> Result<(), SkipReason> {
    if !has_address(&t.channel, facts) {
        return Err(SkipReason::NoAddress);
    }
    if t.requires_consent && !facts.consent.contains(&t.channel) {
        return Err(SkipReason::NoConsent);
    }
    if account.approved_channels.as_ref().is_some_and(|a| !a.contains(&t.channel)) {
        return Err(SkipReason::ChannelNotApproved);
    }
    if t.requires_capability && !facts.capabilities.contains(&t.channel) {
        return Err(SkipReason::NotCapable);
    }
    Ok(())
}

/// What a `tag` step does to its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChange {
    Add,
    Remove,
}

impl TagChange {
    /// The change of a compiled `Op::Tag`, whose persisted form keeps a
    /// boolean (`add`) so stored programs stay readable.
    pub fn of_op(add: bool) -> TagChange {
        if add {
            TagChange::Add
        } else {
            TagChange::Remove
        }
    }
}

/// Keeps the `tags` set and any `tags` field slot in step.
pub fn apply_tag(p: &Program, facts: &mut Facts, change: TagChange, tag: &str) {
    let present = facts.tags.iter().position(|t| t == tag);
    match (change, present) {
        (TagChange::Add, None) => facts.tags.push(tag.to_string()),
        (TagChange::Remove, Some(i)) => {
            facts.tags.remove(i);
        }
        _ => return,
    }
    if let Some(i) = p.fields.iter().position(|f| f.name == "tags") {
        if let Some(slot) = facts.fields.get_mut(i) {
            *slot = FieldValue::Set(facts.tags.clone());
        }
    }
}

/// The variant a contact gets: its bucket falls in the variant's share of
/// the cumulative weights.
pub fn pick_variant(campaign: &str, contact: &str, test: &str, variants: &[crate::compile::program::Variant]) -> usize {
    let bucket = ab_bucket(campaign, contact, test);
    let mut acc = 0u32;
    for (i, v) in variants.iter().enumerate() {
        acc += v.weight_bp;
        if bucket < acc {
            return i;
        }
    }
    variants.len().saturating_sub(1)
}

/// Deterministic A/B bucket in `0..10_000` for (campaign, contact, test).
pub fn ab_bucket(campaign: &str, contact: &str, test: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [campaign, contact, test] {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Final avalanche so close inputs spread evenly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % 10_000) as u32
}
