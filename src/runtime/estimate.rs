//! Launch estimates: audience size, the contacts expected to reach each step,
//! sends and cost, as minimum, expected and maximum.
//!
//! The contacts who enter come from the store (`Store::audience`): the
//! audience, and for an event trigger the contacts with a matching recorded
//! event in a look-back window. This module knows no SQL; the store
//! evaluates the filter it is handed. Each of them is then walked through the program by the
//! engine's own transition function (`step::transition`): attribute
//! conditions, A/B assignment, send eligibility and the clock moving at waits
//! are exactly what a run does; only engagement conditions, which depend on
//! the future, split the contact's weight by the configured rates. Minimum
//! counts what happens for certain, maximum what can happen, expected the
//! weighted sum.
//!
//! What a contact does after entering (events, attribute changes) is not
//! known, so a `wait until` and exits can only lower reach: a state arm that
//! holds on arrival is taken as the run takes it, and the rest of the contact
//! is split evenly across the paths it may take (every arm, and the
//! timeout), so `min` counts none of them and `max` all; an `exit when EXPR`
//! is evaluated before each step like a condition; once time has passed, an
//! `exit when event` may have fired, so nothing after is certain.
//!
//! Delivery rules can only lower the sends: a consent-requiring send under
//! `quiet hours … then skip` may fall in the window, and one that a
//! frequency cap would refuse (the contact's recorded sends in the database,
//! with this walk's own earlier sends, already fill the cap's window) is
//! skipped, so neither counts in `min`; `expected` and `max` assume they go
//! out. Held sends (quiet hours without `then skip`) and the rate limit move
//! sends in time, not in number.

use super::eval::{self, Ctx};
use super::facts::{Facts, SentMessage};
use super::step::{self, Account, Stop, Transition};
use super::store::{Audience, Store, StoreError};
use crate::compile::program::{Cond, Exit, NodeIdx, Op, Program, QuietThen, SendTarget, Trigger, WaitOn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub mod cache;
pub mod launched;
mod members;

/// Engagement rates, each of the previous stage (stated defaults).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub delivered: f64,
    pub opened: f64,
    pub clicked: f64,
}

impl Default for Rates {
    fn default() -> Self {
        // The simulated provider's defaults, so estimates and simulations agree.
        Rates { delivered: 0.97, opened: 0.45, clicked: 0.25 }
    }
}

/// What an estimate assumes beyond the contacts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rates: Rates,
    pub account: Account,
    /// How far back an event trigger's recorded events count, in minutes.
    pub event_window: i64,
    /// The (channel, message type) pairs that require consent, so the sends
    /// other campaigns recorded count against frequency caps; the program's
    /// own consent-requiring targets count whether listed or not.
    pub consent_messages: BTreeSet<(String, String)>,
    pub walks: Walks,
}

/// How the estimate walks its contacts. Both give the same estimate, to
/// the last bit: the contacts are added up in the same order either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Walks {
    /// Alike contacts (`alike`) that get the same A/B variants walk alike:
    /// walked once, counted for each.
    #[default]
    Shared,
    /// Every contact walked on its own from its own record: the reference
    /// the shared walks are tested against.
    EachContact,
}

/// An event trigger looks back 30 days unless told otherwise.
pub const DEFAULT_EVENT_WINDOW: i64 = 30 * 24 * 60;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rates: Rates::default(),
            account: Account { approved_channels: None },
            event_window: DEFAULT_EVENT_WINDOW,
            consent_messages: BTreeSet::new(),
            walks: Walks::Shared,
        }
    }
}

/// Who the estimate counts as entering the campaign, stated in its output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Manual and API triggers: the audience at the as-of time.
    Audience,
    /// The audience when the scheduled trigger fires (or at the as-of time, if that is later).
    Scheduled { at: String },
    /// Contacts (in the audience) with a recorded `event` matching the
    /// trigger's `where` in the `window` before the as-of time, from `since`.
    Event { event: String, window: String, since: String },
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Range {
    pub min: f64,
    pub expected: f64,
    pub max: f64,
}

impl Range {
    /// One contact's share, which counts for `min` only when every way
    /// through got there and none of them may have left on the way.
    fn add_as(&mut self, weight: f64, presence: Presence) {
        self.expected += weight;
        if weight >= 1.0 - 1e-9 && presence == Presence::Certain {
            self.min += 1.0;
        }
        if weight > 0.0 {
            self.max += 1.0;
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepEstimate {
    pub id: String,
    pub kind: String,
    pub reach: Range,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendEstimate {
    pub channel: String,
    pub message: String,
    pub sends: Range,
    pub cost: Range,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostRange {
    pub min: f64,
    pub expected: f64,
    pub max: f64,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub campaign: String,
    /// The clock the estimate was made on (RFC 3339, UTC): the same rule as
    /// the run's clock, so a launch enrolls what was estimated.
    pub as_of: String,
    pub entry: Entry,
    pub audience: u64,
    pub steps: Vec<StepEstimate>,
    pub sends: Vec<SendEstimate>,
    pub cost: CostRange,
    pub rates: Rates,
}

/// When the contacts enter and on what condition, as the run enrolls them
/// (`run::enroll`): the audience at the trigger's time for scheduled
/// triggers; for event triggers, a matching recorded event in the window
/// (the run enrolls such a contact now, since its event is in the past).
struct Entering {
    at: i64,
    cond: Option<Cond>,
    entry: Entry,
}

fn entering(p: &Program, now: i64, window: i64) -> Entering {
    match &p.trigger {
        Trigger::Scheduled { at, zone } => {
            // An unresolvable time cannot be launched; estimate it as of now.
            let at = super::run::scheduled_instant(at, zone).map_or(now, |t| t.max(now));
            Entering { at, cond: p.audience.clone(), entry: Entry::Scheduled { at: rfc3339(at) } }
        }
        Trigger::Event { event, props, filter } => {
            let happened = Cond::Happened {
                event: event.clone(),
                within_minutes: Some(window),
                props: props.clone(),
                filter: filter.iter().cloned().collect(),
            };
            let cond = match &p.audience {
                Some(a) => Cond::And { all: vec![happened, a.clone()] },
                None => happened,
            };
            let entry = Entry::Event {
                event: event.clone(),
                window: duration(window),
                since: rfc3339(now.saturating_sub(window)),
            };
            Entering { at: now, cond: Some(cond), entry }
        }
        Trigger::Manual | Trigger::Api => Entering { at: now, cond: p.audience.clone(), entry: Entry::Audience },
    }
}

/// A window in the unit it was most likely given in (`30d`, `36h`, `90m`).
fn duration(minutes: i64) -> String {
    match minutes {
        m if m % 1440 == 0 => format!("{}d", m / 1440),
        m if m % 60 == 0 => format!("{}h", m / 60),
        m => format!("{m}m"),
    }
}

/// Minutes since the epoch as RFC 3339 in UTC.
pub fn rfc3339(minutes: i64) -> String {
    chrono::DateTime::from_timestamp(minutes.saturating_mul(60), 0)
        .map_or_else(|| minutes.to_string(), |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

struct Acc {
    reach: Vec<Range>,
    /// Per node: the sends of its primary (0) and fallback (1) target, for
    /// a send node some contact sent from.
    per_step: Vec<[Option<Range>; 2]>,
}

/// Where one contact's walk adds its weights.
struct Weights<'a> {
    seen: &'a mut Vec<f64>,
    sent: &'a mut Vec<[f64; 2]>,
    touched: &'a mut Vec<usize>,
    /// Per node: reached on a way through where the contact may have left
    /// earlier (an `exit when event` after time passed).
    doubtful: &'a mut Vec<bool>,
    /// The program's `exit when EXPR` criteria, as one condition.
    exit: &'a Option<Cond>,
    /// Per send node, primary (0) or fallback (1): a way through on which
    /// the send may be skipped by a delivery rule (not counted in `min`).
    sent_doubt: &'a mut Vec<[bool; 2]>,
    /// This contact's consent-requiring sends recorded in the database
    /// (channel, minute), for the frequency caps.
    recorded: &'a [(String, i64)],
}

/// Whether a contact walking a way through is surely still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Certain,
    /// An `exit when event` may have fired since it entered.
    Doubtful,
}

/// The state exits of `p` as one condition (any of them).
fn state_exit(p: &Program) -> Option<Cond> {
    let any: Vec<Cond> = p
        .exits
        .iter()
        .filter_map(|e| match e {
            Exit::State { cond } => Some(cond.clone()),
            Exit::Event { .. } => None,
        })
        .collect();
    (!any.is_empty()).then_some(Cond::Or { any })
}

/// Estimates `p` as of `now` (minutes; use the run's clock rule, `run::clock_now`).
pub fn estimate(store: &dyn Store, p: &Program, now: i64, settings: &Settings) -> Result<Estimate, StoreError> {
    let rates = settings.rates;
    let Entering { at, cond, entry } = entering(p, now, settings.event_window);
    let reads = super::alike::reads_of(p);
    let setup = members::Setup {
        program: p,
        at,
        rates,
        account: &settings.account,
        exit: state_exit(p),
        consent: consent_messages(p, &settings.consent_messages),
        // Sends older than the longest cap's window before entry cannot count.
        longest_cap: p.delivery.frequency_caps.iter().map(|c| c.window_minutes).max(),
        events: super::engine::needs_events(p),
        ids: reads.ids,
    };
    let mut walker = members::Walker::new(setup, store);
    let audience = Audience { program: p, filter: cond.as_ref(), at };
    let n = match settings.walks {
        Walks::Shared => store.audience_groups(audience, &reads, &mut |m| walker.member(m))?,
        Walks::EachContact => store.audience(audience, &mut |c| walker.own(c))?,
    };
    walker.flush()?;
    let acc = walker.acc;
    let mut cost = CostRange { min: 0.0, expected: 0.0, max: 0.0, currency: "EUR".to_string() };
    let mut by_target: BTreeMap<(String, String, i64), Range> = BTreeMap::new();
    let per_step = acc.per_step.into_iter().enumerate().flat_map(|(node, sends)| {
        sends.into_iter().enumerate().filter_map(move |(which, r)| r.map(|r| (node, which, r)))
    });
    for (node, which, r) in per_step {
        let Some(Op::Send { target, fallback, .. }) = p.nodes.get(node).map(|n| &n.op) else { continue };
        let Some(t) = (if which == 0 { Some(target) } else { fallback.as_ref() }) else { continue };
        let t = by_target.entry((t.channel.clone(), t.message.clone(), t.price_micros)).or_default();
        t.min += r.min;
        t.expected += r.expected;
        t.max += r.max;
    }
    let sends = by_target
        .into_iter()
        .map(|((channel, message, price), r)| {
            let eur = price as f64 / 1e6;
            let c = Range { min: r.min * eur, expected: r.expected * eur, max: r.max * eur };
            cost.min += c.min;
            cost.expected += c.expected;
            cost.max += c.max;
            SendEstimate { channel, message, sends: r, cost: c }
        })
        .collect();
    let steps = p
        .nodes
        .iter()
        .zip(acc.reach)
        .map(|(n, reach)| StepEstimate { id: n.id.0.clone(), kind: n.op.kind().to_string(), reach })
        .collect();
    Ok(Estimate { campaign: p.campaign.clone(), as_of: rfc3339(now), entry, audience: n, steps, sends, cost, rates })
}

/// Engagement levels of one message, with their probabilities.
fn levels(r: Rates) -> [(u8, f64); 4] {
    let d = r.delivered;
    [(0, 1.0 - d), (1, d * (1.0 - r.opened)), (2, d * r.opened * (1.0 - r.clicked)), (3, d * r.opened * r.clicked)]
}

/// The probability that `cond` holds, over the engagement of the messages it reads.
fn probability(p: &Program, cond: &Cond, f: &mut Facts, now: i64, rates: Rates) -> f64 {
    let mut steps: Vec<String> = Vec::new();
    collect_engaged(cond, &mut steps);
    steps.retain(|s| f.sent.iter().any(|m| m.step == *s));
    steps.sort();
    steps.dedup();
    steps.truncate(5); // 4^5 combinations at most; more is beyond any real campaign
    if steps.is_empty() {
        let cx = Ctx { program: p, facts: f, now };
        return if eval::eval(&cx, cond) { 1.0 } else { 0.0 };
    }
    let saved: Vec<SentMessage> = f.sent.clone();
    let mut total = 0.0;
    let combos = 4usize.pow(steps.len() as u32);
    for mut k in 0..combos {
        let mut weight = 1.0;
        for s in &steps {
            let (level, pr) = levels(rates)[k % 4];
            k /= 4;
            weight *= pr;
            for m in f.sent.iter_mut().filter(|m| m.step == *s) {
                m.delivered_at = (level >= 1).then_some(i64::MIN);
                m.opened_at = (level >= 2).then_some(i64::MIN);
                m.clicked_at = (level >= 3).then_some(i64::MIN);
            }
        }
        let cx = Ctx { program: p, facts: f, now };
        if eval::eval(&cx, cond) {
            total += weight;
        }
    }
    f.sent = saved;
    total
}

fn collect_engaged(c: &Cond, out: &mut Vec<String>) {
    match c {
        Cond::Engaged { step, .. } => out.push(step.0.clone()),
        Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| collect_engaged(x, out)),
        Cond::Not { cond } => collect_engaged(cond, out),
        _ => {}
    }
}

/// Walks one contact (with `weight`, its share of the ways through) from
/// `start` at time `now`, through the engine's transition function. A send
/// is recorded as the engine records it; a wait moves this walk's clock, so
/// conditions on `now` and `within` after it read the time the run will see.
#[allow(clippy::too_many_arguments)]
fn walk(
    p: &Program,
    start: NodeIdx,
    f: &mut Facts,
    weight: f64,
    now: i64,
    rates: Rates,
    account: &Account,
    w: &mut Weights,
    depth: usize,
    presence: Presence,
) {
    let mut pc = start;
    let mut now = now;
    let mut weight = weight;
    let mut presence = presence;
    let event_exits = p.exits.iter().any(|e| matches!(e, Exit::Event { .. }));
    let mut trace = Vec::new();
    // Edges go forward, so this ends within the program's length.
    for _ in 0..=p.nodes.len() {
        // `exit when EXPR` is checked before every step: who meets it leaves.
        if let Some(exit) = w.exit {
            let pe = probability(p, exit, f, now, rates);
            if pe >= 1.0 - 1e-9 {
                return;
            }
            weight *= 1.0 - pe;
        }
        if let Some(Op::WaitUntil { arms, timeout_minutes, timeout }) = p.nodes.get(pc.get()).map(|n| &n.op) {
            w.seen[pc.get()] += weight;
            w.touched.push(pc.get());
            if presence == Presence::Doubtful {
                w.doubtful[pc.get()] = true;
            }
            let later = if event_exits { Presence::Doubtful } else { presence };
            let paths =
                wait_paths(p, arms, *timeout, now.saturating_add(*timeout_minutes), f, now, rates, later, presence);
            if let [(target, share, at, how)] = paths.as_slice() {
                (pc, now, presence) = (*target, *at, *how);
                weight *= share;
                continue;
            }
            if depth > 12 {
                // Deep enough: the likeliest way only, as for branches.
                let best = paths.iter().copied().fold(None, |b: Option<(NodeIdx, f64, i64, Presence)>, x| match b {
                    Some(b) if b.1 >= x.1 => Some(b),
                    _ => Some(x),
                });
                let Some((target, _, at, how)) = best else { return };
                (pc, now, presence) = (target, at, how);
                continue;
            }
            for (target, share, at, how) in paths {
                let mut own = f.clone();
                walk(p, target, &mut own, weight * share, at, rates, account, w, depth + 1, how);
            }
            return;
        }
        trace.clear();
        let t = step::transition(p, pc, f, now, account, &mut trace);
        for e in &trace {
            if let step::Trace::Entered(n) = e {
                w.seen[n.get()] += weight;
                w.touched.push(n.get());
                if presence == Presence::Doubtful {
                    w.doubtful[n.get()] = true;
                }
            }
        }
        match t {
            Transition::Next(next) => pc = next,
            Transition::Stop(Stop::Send { node, target, fallback_used, next }) => {
                w.sent[node.get()][usize::from(fallback_used)] += weight;
                if quiet_skip(p, &target) || at_cap(p, &target, f, w.recorded, now) {
                    w.sent_doubt[node.get()][usize::from(fallback_used)] = true;
                }
                let id = p.nodes.get(node.get()).map_or_else(String::new, |n| n.id.0.clone());
                f.sent.push(SentMessage {
                    step: id,
                    channel: target.channel,
                    sent_at: now,
                    delivered_at: None,
                    opened_at: None,
                    clicked_at: None,
                });
                pc = next;
            }
            Transition::Stop(Stop::Wait { until, next }) => {
                // The engine wakes the execution at `until` (the virtual clock jumps there).
                now = until;
                pc = next;
                if event_exits {
                    presence = Presence::Doubtful;
                }
            }
            // Handled above, before `transition`: the estimate reckons a wait
            // until's arms itself.
            Transition::WaitUntil { .. } => return,
            Transition::Stop(Stop::Completed | Stop::Skipped { .. } | Stop::Parked { .. } | Stop::Exited { .. }) => {
                return
            }
            Transition::Branch { cond, then, otherwise } => {
                let pt = probability(p, cond, f, now, rates);
                if pt >= 1.0 || depth > 12 {
                    pc = if pt >= 0.5 { then } else { otherwise };
                    continue;
                }
                if pt <= 0.0 {
                    pc = otherwise;
                    continue;
                }
                // Uncertain: both ways, each with its share of the weight.
                let mut other = f.clone();
                walk(p, then, f, weight * pt, now, rates, account, w, depth + 1, presence);
                walk(p, otherwise, &mut other, weight * (1.0 - pt), now, rates, account, w, depth + 1, presence);
                return;
            }
        }
    }
}

/// The consent-requiring (channel, message type) pairs: the settings' and
/// the program's own targets'.
fn consent_messages(p: &Program, given: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let mut out = given.clone();
    for n in &p.nodes {
        if let Op::Send { target, fallback, .. } = &n.op {
            for t in std::iter::once(target).chain(fallback).filter(|t| t.requires_consent) {
                out.insert((t.channel.clone(), t.message.clone()));
            }
        }
    }
    out
}

/// A send that `quiet hours … then skip` may drop: consent-requiring, and
/// the window (never empty: the checker refuses `start == end`) may hold
/// the contact's local time.
fn quiet_skip(p: &Program, t: &SendTarget) -> bool {
    t.requires_consent && p.delivery.quiet_hours.is_some_and(|q| q.then == QuietThen::Skip)
}

/// Whether a frequency cap refuses this consent-requiring send at `now`:
/// the contact's recorded sends and this walk's own earlier ones in the
/// cap's window (on its channel, if it names one) already reach its count.
fn at_cap(p: &Program, t: &SendTarget, f: &Facts, recorded: &[(String, i64)], now: i64) -> bool {
    if !t.requires_consent {
        return false;
    }
    p.delivery.frequency_caps.iter().any(|cap| {
        let on = |channel: &str| cap.channel.as_deref().is_none_or(|c| c == channel);
        if !on(&t.channel) {
            return false;
        }
        let from = now.saturating_sub(cap.window_minutes);
        let before = recorded.iter().filter(|(ch, at)| *at > from && on(ch)).count();
        let own = f.sent.iter().filter(|m| m.sent_at > from && on(&m.channel) && sent_with_consent(p, m)).count();
        before + own >= cap.count as usize
    })
}

/// Whether a message this walk sent was a consent-requiring one (the
/// target of its step on that channel).
fn sent_with_consent(p: &Program, m: &SentMessage) -> bool {
    p.nodes.iter().filter(|n| n.id.0 == m.step).any(|n| match &n.op {
        Op::Send { target, fallback, .. } => {
            std::iter::once(target).chain(fallback).any(|t| t.channel == m.channel && t.requires_consent)
        }
        _ => false,
    })
}

/// The ways out of a `wait until` entered at `now`, each with its share of
/// the contact, the time it is taken and whether the contact is surely still
/// there: state arms that hold on arrival are taken at once (the first that
/// holds wins); the rest of the contact may take any arm later, or time out
/// at `timeout_at`, and is split evenly across them, since flowc has no rate
/// for what contacts do.
#[allow(clippy::too_many_arguments)]
fn wait_paths(
    p: &Program,
    arms: &[crate::compile::program::WaitArm],
    timeout: NodeIdx,
    timeout_at: i64,
    f: &mut Facts,
    now: i64,
    rates: Rates,
    later: Presence,
    at_once: Presence,
) -> Vec<(NodeIdx, f64, i64, Presence)> {
    let mut out = Vec::new();
    let mut left = 1.0;
    for a in arms {
        if let WaitOn::State { cond } = &a.on {
            let share = left * probability(p, cond, f, now, rates);
            if share > 0.0 {
                out.push((a.target, share, now, at_once));
                left -= share;
            }
        }
    }
    if left > 1e-9 {
        let each = left / (arms.len() + 1) as f64;
        out.extend(arms.iter().map(|a| (a.target, each, now, later)));
        out.push((timeout, each, timeout_at, later));
    }
    out
}

/// The estimate as text for people: `flowc estimate`, the launch's cost
/// check and the editor's per-step view.
pub fn human(e: &Estimate) -> String {
    let mut out = format!("campaign {}: audience {} contact(s), as of {}\n", e.campaign, e.audience, e.as_of);
    match &e.entry {
        Entry::Audience => {}
        Entry::Scheduled { at } => out.push_str(&format!("entering when the trigger fires, at {at}\n")),
        Entry::Event { event, window, since } => out.push_str(&format!(
            "entering: contacts with a recorded `{event}` matching the trigger, in the {window} before (since {since}); --window changes it\n"
        )),
    }
    out.push('\n');
    let w = e.steps.iter().map(|s| s.id.chars().count()).max().unwrap_or(4).max(4);
    // As wide as the longest kind (`wait_until`), so the numbers line up.
    let kw = e.steps.iter().map(|s| s.kind.chars().count()).max().unwrap_or(4).max(4);
    out.push_str(&format!("{:<w$}  {:<kw$}  {:>10}  {:>12}  {:>10}\n", "step", "kind", "min", "expected", "max"));
    for s in &e.steps {
        out.push_str(&format!(
            "{:<w$}  {:<kw$}  {:>10.0}  {:>12.1}  {:>10.0}\n",
            s.id, s.kind, s.reach.min, s.reach.expected, s.reach.max
        ));
    }
    out.push('\n');
    for s in &e.sends {
        out.push_str(&format!(
            "{}.{}: {:.0} – {:.1} – {:.0} sends, {:.4} – {:.4} – {:.4} EUR\n",
            s.channel, s.message, s.sends.min, s.sends.expected, s.sends.max, s.cost.min, s.cost.expected, s.cost.max
        ));
    }
    out.push_str(&format!(
        "\ncost: min {:.4}, expected {:.4}, max {:.4} {}\n",
        e.cost.min, e.cost.expected, e.cost.max, e.cost.currency
    ));
    out
}
