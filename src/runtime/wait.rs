//! `wait until`: which arm an execution parked at one takes, and when it
//! must look again (LANGUAGE.md §9.1, docs/runtime.md "Waiting until").
//!
//! Pure: program + facts + the moment the wait began + now → a decision.
//! The engine parks the execution at the wait with the wake-up time
//! decided here; wake-ups by arriving events move that time earlier.

use super::eval::{self, Ctx};
use super::facts::Facts;
use crate::compile::program::{Cond, EventMatch, NodeIdx, Program, WaitArm, WaitOn};

/// What a `wait until` does at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Continue at this instruction: the first arm that holds, or the timeout.
    Take(NodeIdx),
    /// Stay parked at the wait until `wake_at` (always later than now).
    Park { wake_at: i64 },
}

/// The arms of one `wait until`, read from its instruction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arms<'p> {
    pub arms: &'p [WaitArm],
    pub timeout_minutes: i64,
    pub timeout: NodeIdx,
}

/// Tries the arms in order on the facts at `now`, for an execution that
/// entered the wait at `since`: the first that holds wins; none, and the
/// deadline (`since + timeout`) has come, the timeout; else park until the
/// earliest of the deadline and the next moment an arm may come to hold
/// that the facts already know (a stored event timed later, an engagement
/// the provider reported with a later time). So nothing polls.
pub fn decide(p: &Program, facts: &Facts, w: Arms, since: i64, now: i64) -> Decision {
    let cx = Ctx { program: p, facts, now };
    if let Some(arm) = w.arms.iter().find(|a| holds(&cx, &a.on, since)) {
        return Decision::Take(arm.target);
    }
    let deadline = since.saturating_add(w.timeout_minutes);
    if now >= deadline {
        return Decision::Take(w.timeout);
    }
    let wake = w.arms.iter().filter_map(|a| next_change(&cx, &a.on, since)).fold(deadline, i64::min);
    Decision::Park { wake_at: wake }
}

fn holds(cx: &Ctx, on: &WaitOn, since: i64) -> bool {
    match on {
        WaitOn::Event { event } => happened_between(cx, event, since),
        WaitOn::State { cond } => eval::eval(cx, cond),
    }
}

/// Whether an event matching `m` happened at or after `since`, by now.
pub fn happened_between(cx: &Ctx, m: &EventMatch, since: i64) -> bool {
    eval::event_times(cx, &m.event, &m.props, &m.filter).any(|t| t >= since && t <= cx.now)
}

/// The earliest known moment after now at which an event matching `m`
/// (at or after `since`) happens.
pub fn next_event(cx: &Ctx, m: &EventMatch, since: i64) -> Option<i64> {
    eval::event_times(cx, &m.event, &m.props, &m.filter).filter(|t| *t >= since && *t > cx.now).min()
}

/// When an arm may next come to hold, as far as the facts already know.
fn next_change(cx: &Ctx, on: &WaitOn, since: i64) -> Option<i64> {
    match on {
        WaitOn::Event { event } => next_event(cx, event, since),
        WaitOn::State { cond } => {
            let mut earliest: Option<i64> = None;
            later_facts(cx, cond, &mut earliest);
            earliest
        }
    }
}

/// Engagement and events a state condition reads that the facts time after
/// now: waking then re-tries the condition. Too early a wake-up only parks
/// again; none at all would wait to the deadline.
fn later_facts(cx: &Ctx, c: &Cond, earliest: &mut Option<i64>) {
    let mut see = |t: i64| {
        if t > cx.now {
            *earliest = Some(earliest.map_or(t, |e| e.min(t)));
        }
    };
    match c {
        Cond::Engaged { step, .. } => {
            for m in cx.facts.sent.iter().filter(|m| m.step == step.0) {
                m.delivered_at.into_iter().chain(m.opened_at).chain(m.clicked_at).for_each(&mut see);
            }
        }
        Cond::Happened { event, props, .. } => {
            // Without the filter: an early look costs a step, a late one a wrong answer.
            eval::event_times(cx, event, props, &[]).for_each(see);
        }
        Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| later_facts(cx, x, earliest)),
        Cond::Not { cond } => later_facts(cx, cond, earliest),
        Cond::InSegment { segment } => {
            if let Some(s) = cx.program.segments.get(segment.0 as usize) {
                later_facts(cx, &s.cond, earliest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::program::{Cond, Trigger, Version};
    use crate::runtime::facts::{ContactEvent, SentMessage};

    fn program() -> Program {
        Program {
            campaign: "c".into(),
            display_name: None,
            version: Version("v".into()),
            trigger: Trigger::Manual,
            audience: None,
            fields: vec![],
            segments: vec![],
            nodes: vec![],
            goal: None,
            exits: vec![],
            on_ineligible: Default::default(),
            delivery: Default::default(),
        }
    }

    fn on_event(name: &str) -> WaitOn {
        WaitOn::Event { event: EventMatch { event: name.into(), props: vec![], filter: vec![] } }
    }

    fn at(name: &str, t: i64) -> ContactEvent {
        ContactEvent { name: name.into(), at: t, props: Default::default() }
    }

    const ARMS: fn(&[WaitArm]) -> Arms = |arms| Arms { arms, timeout_minutes: 100, timeout: NodeIdx(9) };

    #[test]
    fn arms_are_tried_in_order_and_only_events_since_entry_count() {
        let p = program();
        let arms =
            [WaitArm { on: on_event("x"), target: NodeIdx(1) }, WaitArm { on: on_event("y"), target: NodeIdx(2) }];
        let mut f = Facts { events: vec![at("x", 999), at("y", 1005), at("x", 1007)], ..Facts::default() };
        // x at 999 is before the wait began at 1000: only y counts at 1005.
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1005), Decision::Take(NodeIdx(2)));
        // By 1007 both hold: the first arm wins.
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1007), Decision::Take(NodeIdx(1)));
        // Before anything: parked until the earliest known event (y at 1005).
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1000), Decision::Park { wake_at: 1005 });
        // Nothing known: until the deadline; at the deadline, the timeout.
        f.events.clear();
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1000), Decision::Park { wake_at: 1100 });
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1100), Decision::Take(NodeIdx(9)));
        // An arm that holds at the deadline still wins over the timeout.
        f.events.push(at("y", 1100));
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1100), Decision::Take(NodeIdx(2)));
    }

    #[test]
    fn a_reported_engagement_time_is_a_wake_up() {
        let p = program();
        let clicked = Cond::Engaged {
            kind: crate::compile::program::EngagementRepr::Clicked,
            step: crate::check::model::StepId("mail".into()),
        };
        let arms = [WaitArm { on: WaitOn::State { cond: clicked }, target: NodeIdx(1) }];
        let f = Facts {
            sent: vec![SentMessage {
                step: "mail".into(),
                channel: "email".into(),
                sent_at: 1000,
                delivered_at: Some(1001),
                opened_at: Some(1020),
                clicked_at: Some(1030),
            }],
            ..Facts::default()
        };
        // Woken at each later engagement time (an early look only parks again).
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1000), Decision::Park { wake_at: 1001 });
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1020), Decision::Park { wake_at: 1030 });
        assert_eq!(decide(&p, &f, ARMS(&arms), 1000, 1030), Decision::Take(NodeIdx(1)));
    }
}
