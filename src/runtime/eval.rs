//! Evaluating compiled conditions against one contact's facts.
//!
//! Pure and allocation-free: operands are borrowed views of the facts and the
//! program's constants. With an absent value, `==` is true only against
//! another absent value (`x == none`), `!=` is its negation, and ordering is
//! false (docs/language.md, "Absent values").

use super::facts::{Facts, FieldValue, SentMessage};
use crate::compile::program::{CmpOpRepr, Cond, Const, EngagementRepr, FieldType, Operand, Program, SetValue};
use serde_json::Value as J;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq)]
enum V<'a> {
    Absent,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// Minutes (datetimes are compared as minutes; dates are converted).
    Time(i64),
    Set(&'a [String]),
}

/// Where `Operand::Prop` reads from.
#[derive(Clone, Copy)]
pub enum Props<'a> {
    None,
    Event { names: &'a [String], values: &'a serde_json::Map<String, J> },
}

pub struct Ctx<'a> {
    pub program: &'a Program,
    pub facts: &'a Facts,
    /// Minutes since the epoch.
    pub now: i64,
}

pub fn eval(cx: &Ctx, c: &Cond) -> bool {
    eval_with(cx, c, Props::None)
}

pub fn eval_with(cx: &Ctx, c: &Cond, props: Props) -> bool {
    match c {
        Cond::Const { value } => *value,
        Cond::And { all } => all.iter().all(|x| eval_with(cx, x, props)),
        Cond::Or { any } => any.iter().any(|x| eval_with(cx, x, props)),
        Cond::Not { cond } => !eval_with(cx, cond, props),
        Cond::Cmp { op, lhs, rhs } => compare(*op, operand(cx, lhs, props), operand(cx, rhs, props)),
        Cond::In { lhs, list } => {
            let l = operand(cx, lhs, props);
            list.iter().any(|k| compare(CmpOpRepr::Eq, l, constant(k)))
        }
        Cond::Has { set, elem } => match (operand(cx, set, props), operand(cx, elem, props)) {
            (V::Set(s), V::Str(e)) => s.iter().any(|x| x == e),
            _ => false,
        },
        Cond::Consent { channel } => cx.facts.consent.iter().any(|c| c == channel),
        Cond::Capable { channel } => cx.facts.capabilities.iter().any(|c| c == channel),
        Cond::Engaged { kind, step } => cx.facts.sent.iter().any(|m| {
            m.step == step.0
                && match kind {
                    EngagementRepr::Delivered => m.delivered_at.is_some_and(|t| t <= cx.now),
                    EngagementRepr::Opened => m.opened_at.is_some_and(|t| t <= cx.now),
                    EngagementRepr::Clicked => m.clicked_at.is_some_and(|t| t <= cx.now),
                }
        }),
        Cond::Happened { event, within_minutes, props: names, filter } => {
            let since = within_minutes.map_or(i64::MIN, |w| cx.now.saturating_sub(w));
            event_times(cx, event, names, filter).any(|t| t >= since && t <= cx.now)
        }
        Cond::InSegment { segment } => {
            cx.program.segments.get(segment.0 as usize).is_some_and(|s| eval_with(cx, &s.cond, Props::None))
        }
    }
}

/// The value a `set` step writes into a field of type `ty`: the operand
/// evaluated as comparisons evaluate it (or the condition, for a `bool`
/// field), then read as that type. A value that does not fit (an absent
/// operand, a sum over an absent field) is absent.
pub fn set_value(cx: &Ctx, v: &SetValue, ty: &FieldType) -> FieldValue {
    let x = match v {
        SetValue::Cond { cond } => return FieldValue::Bool(eval(cx, cond)),
        SetValue::Operand { operand: o } => operand(cx, o, Props::None),
    };
    match (ty, x) {
        (FieldType::Bool, V::Bool(b)) => FieldValue::Bool(b),
        (FieldType::Number, V::Num(n)) if n.is_finite() => FieldValue::Number(n),
        (FieldType::Duration, V::Num(n)) if n.is_finite() => FieldValue::Duration(n.round() as i64),
        (FieldType::String | FieldType::Timezone | FieldType::Enum(_), V::Str(s)) => FieldValue::Str(s.to_string()),
        (FieldType::Datetime, V::Time(m)) => FieldValue::Datetime(m),
        (FieldType::Date, V::Time(m)) => FieldValue::Date(m.div_euclid(1440)),
        (FieldType::SetString, V::Set(s)) => FieldValue::Set(s.to_vec()),
        _ => FieldValue::Absent,
    }
}

/// The times of the contact's events named `event` whose properties pass
/// `filter` (read through `names`), and, for `message.delivered`,
/// `message.opened` and `message.clicked`, of this execution's own
/// engagement (which has no properties to filter). Unbounded in time: the
/// caller picks its window (`happened … within`, `when event` after the
/// wait began, `exit when event` after the start, the goal's window), so
/// every event condition matches events one way. Allocates nothing.
pub fn event_times<'a>(
    cx: &'a Ctx<'a>,
    event: &'a str,
    names: &'a [String],
    filter: &'a [Cond],
) -> impl Iterator<Item = i64> + 'a {
    let own = cx.facts.events.iter().filter(move |e| {
        e.name == event && filter.iter().all(|f| eval_with(cx, f, Props::Event { names, values: &e.props }))
    });
    let pick: Option<fn(&SentMessage) -> Option<i64>> = match event {
        "message.delivered" => Some(|m| m.delivered_at),
        "message.opened" => Some(|m| m.opened_at),
        "message.clicked" => Some(|m| m.clicked_at),
        _ => None,
    };
    let engagement = pick.into_iter().flat_map(move |pick| cx.facts.sent.iter().filter_map(pick));
    own.map(|e| e.at).chain(engagement)
}

fn operand<'a>(cx: &'a Ctx, o: &'a Operand, props: Props<'a>) -> V<'a> {
    match o {
        Operand::Field { slot } => match cx.facts.fields.get(slot.0 as usize) {
            Some(f) => field(f),
            None => V::Absent,
        },
        Operand::Prop { index } => match props {
            Props::Event { names, values } => {
                names.get(*index as usize).and_then(|n| values.get(n)).map_or(V::Absent, json)
            }
            Props::None => V::Absent,
        },
        Operand::Const { value } => constant(value),
        Operand::Now { offset_minutes } => V::Time(cx.now.saturating_add(*offset_minutes)),
        Operand::Offset { base, offset_minutes } => match operand(cx, base, props) {
            V::Time(t) => V::Time(t.saturating_add(*offset_minutes)),
            V::Num(n) => V::Num(n + *offset_minutes as f64),
            _ => V::Absent,
        },
        Operand::Sum { terms } => {
            let mut acc = 0f64;
            let mut time = false;
            for (plus, t) in terms {
                let x = match operand(cx, t, props) {
                    V::Num(n) => n,
                    V::Time(m) => {
                        time = true;
                        m as f64
                    }
                    _ => return V::Absent,
                };
                acc += if *plus { x } else { -x };
            }
            if time {
                V::Time(acc as i64)
            } else {
                V::Num(acc)
            }
        }
    }
}

fn field(f: &FieldValue) -> V<'_> {
    match f {
        FieldValue::Absent => V::Absent,
        FieldValue::Bool(b) => V::Bool(*b),
        FieldValue::Number(n) => V::Num(*n),
        FieldValue::Str(s) => V::Str(s),
        FieldValue::Datetime(m) => V::Time(*m),
        FieldValue::Date(d) => V::Time(d.saturating_mul(1440)),
        FieldValue::Duration(m) => V::Num(*m as f64),
        FieldValue::Set(s) => V::Set(s),
    }
}

fn json(v: &J) -> V<'_> {
    match v {
        J::Null => V::Absent,
        J::Bool(b) => V::Bool(*b),
        J::Number(n) => n.as_f64().map_or(V::Absent, V::Num),
        J::String(s) => V::Str(s),
        _ => V::Absent,
    }
}

fn constant(c: &Const) -> V<'_> {
    match c {
        Const::Bool(b) => V::Bool(*b),
        Const::Number(n) => V::Num(*n),
        Const::Str(s) | Const::Enum(s) => V::Str(s),
        Const::Datetime(m) => V::Time(*m),
        Const::Date(d) => V::Time(d.saturating_mul(1440)),
        Const::Duration(m) => V::Num(*m as f64),
        Const::None => V::Absent,
    }
}

fn compare(op: CmpOpRepr, l: V, r: V) -> bool {
    // Presence tests: `x == none`, `x != none`.
    let l_absent = matches!(l, V::Absent);
    let r_absent = matches!(r, V::Absent);
    if l_absent || r_absent {
        return match op {
            CmpOpRepr::Eq => l_absent && r_absent,
            CmpOpRepr::Ne => l_absent != r_absent,
            _ => false,
        };
    }
    let ord = match (l, r) {
        (V::Num(a), V::Num(b)) => a.partial_cmp(&b),
        (V::Time(a), V::Time(b)) => Some(a.cmp(&b)),
        (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
        (V::Bool(a), V::Bool(b)) => Some(a.cmp(&b)),
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOpRepr::Eq => ord == Ordering::Equal,
        CmpOpRepr::Ne => ord != Ordering::Equal,
        CmpOpRepr::Lt => ord == Ordering::Less,
        CmpOpRepr::Le => ord != Ordering::Greater,
        CmpOpRepr::Gt => ord == Ordering::Greater,
        CmpOpRepr::Ge => ord != Ordering::Less,
    }
}
