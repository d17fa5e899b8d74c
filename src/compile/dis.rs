//! `flowc dis`: a readable listing of a program.

use super::program::*;
use crate::source::Span;
use crate::syntax::ast::{self, ArithOp, DurationUnit, Expr, ExprKind};
use crate::syntax::print;
use std::fmt::Write;

pub fn listing(p: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "campaign {}{}",
        p.campaign,
        p.display_name.as_ref().map(|n| format!(" ({})", print::string(n))).unwrap_or_default()
    );
    let _ = writeln!(out, "version  {}", p.version);
    let _ = writeln!(out, "trigger  {}", trigger(p));
    if let Some(a) = &p.audience {
        let _ = writeln!(out, "audience {}", cond(p, a, &[]));
    }
    if let Some(g) = &p.goal {
        let _ = writeln!(out, "goal     {} within {}", event_match(p, &g.event), duration(g.within_minutes));
    }
    for (k, e) in p.exits.iter().enumerate() {
        let what = match e {
            Exit::Event { event } => event_match(p, event),
            Exit::State { cond: c } => cond(p, c, &[]),
        };
        let _ = writeln!(out, "exit:{}   when {what}", k + 1);
    }
    if p.on_ineligible == OnIneligible::Continue {
        let _ = writeln!(out, "on ineligible continue");
    }
    for line in delivery(&p.delivery) {
        let _ = writeln!(out, "{line}");
    }
    for s in &p.segments {
        let _ = writeln!(out, "segment  {} = {}", s.name, cond(p, &s.cond, &[]));
    }
    let _ = writeln!(out);
    let width = p.nodes.iter().map(|n| n.id.0.chars().count()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:>4}  {:<width$}  {:<48}  {:<12}  line", "idx", "step", "instruction", "next");
    for (i, n) in p.nodes.iter().enumerate() {
        let succ = n.op.successors().iter().map(|s| s.0.to_string()).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "{i:>4}  {:<width$}  {:<48}  {:<12}  {}",
            n.id.0,
            instruction(p, &n.op),
            if succ.is_empty() { "-".into() } else { succ },
            n.line
        );
    }
    out
}

/// The delivery settings as the listing's header shows them, in the
/// language's words; nothing for the v0.1 defaults.
pub fn delivery(d: &Delivery) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(q) = &d.quiet_hours {
        let then = if q.then == QuietThen::Skip { " then skip" } else { "" };
        out.push(format!("quiet hours {} to {}{then}", clock(q.start_minute), clock(q.end_minute)));
    }
    match d.reentry {
        Reentry::Once => {}
        Reentry::Always => out.push("reentry always".into()),
        Reentry::After { minutes } => out.push(format!("reentry after {}", duration(minutes))),
    }
    if let Some(r) = &d.rate_limit {
        out.push(format!("rate limit {} per {}", r.count, r.per.word()));
    }
    for c in &d.frequency_caps {
        let channel = c.channel.as_ref().map(|ch| format!("{ch} ")).unwrap_or_default();
        out.push(format!("frequency cap {channel}{} per {}", c.count, duration(c.window_minutes)));
    }
    out
}

/// Minutes after midnight as `HH:MM`.
pub fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The trigger as the listing shows it (`event x where …`, `manual`).
pub fn trigger(p: &Program) -> String {
    match &p.trigger {
        Trigger::Scheduled { at, zone } => format!("scheduled at {at} {}", print::string(zone)),
        Trigger::Event { event, props, filter: Some(f) } => format!("event {event} where {}", cond(p, f, props)),
        Trigger::Event { event, .. } => format!("event {event}"),
        Trigger::Manual => "manual".into(),
        Trigger::Api => "api".into(),
    }
}

/// `event NAME [where …]`, as written in `when`, `goal` and `exit when`.
pub fn event_match(p: &Program, m: &EventMatch) -> String {
    let filter = m.filter.iter().map(|c| cond(p, c, &m.props)).collect::<Vec<_>>();
    if filter.is_empty() {
        format!("event {}", m.event)
    } else {
        format!("event {} where {}", m.event, filter.join(" and "))
    }
}

fn target(t: &SendTarget) -> String {
    format!("{}.{} {}", t.channel, t.message, t.template)
}

pub fn instruction(p: &Program, op: &Op) -> String {
    match op {
        Op::Send { target: t, fallback, .. } => {
            let fb = fallback.as_ref().map(|f| format!(" fallback {}", target(f))).unwrap_or_default();
            format!("SEND {}{fb}", target(t))
        }
        Op::Wait { minutes, .. } => format!("WAIT {}", duration(*minutes)),
        Op::Branch { cond: c, .. } => format!("BRANCH {}", cond(p, c, &[])),
        Op::Split { name, variants } => {
            let vs: Vec<String> = variants.iter().map(|v| format!("{} {}%", v.name, percent(v.weight_bp))).collect();
            format!("SPLIT {name} [{}]", vs.join(", "))
        }
        Op::Tag { add, tag, .. } => format!("TAG {} {}", if *add { "add" } else { "remove" }, print::string(tag)),
        Op::WaitUntil { arms, timeout_minutes, .. } => {
            let arms: Vec<String> = arms
                .iter()
                .map(|a| match &a.on {
                    WaitOn::Event { event } => event_match(p, event),
                    WaitOn::State { cond: c } => cond(p, c, &[]),
                })
                .collect();
            format!("WAIT_UNTIL [{}] timeout {}", arms.join("; "), duration(*timeout_minutes))
        }
        Op::Set { field, value, .. } => match value {
            SetValue::Operand { operand: o } => format!("SET {field} = {}", print::expr(&operand(p, o, &[]))),
            SetValue::Cond { cond: c } => format!("SET {field} = {}", cond(p, c, &[])),
        },
        Op::Jump { .. } => "JUMP".into(),
        Op::End => "END".into(),
    }
}

/// The labels of a `wait until`'s paths, in successor order: each arm's
/// condition, then `timeout D` (the graphs' edge labels).
pub fn wait_paths(p: &Program, arms: &[WaitArm], timeout_minutes: i64) -> Vec<String> {
    arms.iter()
        .map(|a| match &a.on {
            WaitOn::Event { event } => event_match(p, event),
            WaitOn::State { cond: c } => cond(p, c, &[]),
        })
        .chain([format!("timeout {}", duration(timeout_minutes))])
        .collect()
}

/// A weight in basis points as written in `.flow` text (`print::percent`).
pub use crate::syntax::print::percent;

pub fn duration(minutes: i64) -> String {
    print::duration(&duration_lit(minutes))
}

/// A duration the way people write one: whole weeks as `2w`, anything else
/// in days, hours and minutes (`90d`, `1d 12h`, `45m`); `0m` for zero or
/// less. A program keeps only minutes, so `90d` must not come back as `12w 6d`.
fn duration_lit(minutes: i64) -> ast::DurationLit {
    let week = DurationUnit::Week.minutes() as i64;
    if minutes > 0 && minutes % week == 0 {
        return ast::DurationLit { parts: vec![((minutes / week) as u64, DurationUnit::Week)], span: Span::default() };
    }
    let mut left = minutes;
    let mut parts = Vec::new();
    for unit in [DurationUnit::Day, DurationUnit::Hour, DurationUnit::Minute] {
        let size = unit.minutes() as i64;
        if left >= size {
            parts.push(((left / size) as u64, unit));
            left %= size;
        }
    }
    if parts.is_empty() {
        parts.push((0, DurationUnit::Minute));
    }
    ast::DurationLit { parts, span: Span::default() }
}

/// Renders a condition back to `.flow` text: as a syntax tree, through the
/// one expression printer, so the listing reads back with the meaning the
/// program has (`(happened … where a) and b`, `x - (y + z)`).
pub fn cond(p: &Program, c: &Cond, props: &[String]) -> String {
    print::expr(&cond_tree(p, c, props))
}

fn node(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

fn name(text: &str) -> ast::Name {
    ast::Name { text: text.to_string(), span: Span::default() }
}

fn cond_tree(p: &Program, c: &Cond, props: &[String]) -> Expr {
    let all = |v: &[Cond], props: &[String]| v.iter().map(|x| cond_tree(p, x, props)).collect::<Vec<_>>();
    node(match c {
        Cond::Const { value } => ExprKind::Bool(*value),
        Cond::And { all: v } if v.is_empty() => ExprKind::Bool(true),
        Cond::Or { any } if any.is_empty() => ExprKind::Bool(false),
        Cond::And { all: v } => ExprKind::And(all(v, props)),
        Cond::Or { any } => ExprKind::Or(all(any, props)),
        Cond::Not { cond: x } => ExprKind::Not(Box::new(cond_tree(p, x, props))),
        Cond::Cmp { op, lhs, rhs } => ExprKind::Compare {
            op: cmp_op(*op),
            lhs: Box::new(operand(p, lhs, props)),
            rhs: Box::new(operand(p, rhs, props)),
        },
        Cond::In { lhs, list } => {
            ExprKind::In { lhs: Box::new(operand(p, lhs, props)), list: list.iter().map(constant).collect() }
        }
        Cond::Has { set, elem } => {
            ExprKind::Has { lhs: Box::new(operand(p, set, props)), rhs: Box::new(operand(p, elem, props)) }
        }
        Cond::Consent { channel } => ExprKind::Call { func: name("consent"), arg: name(channel) },
        Cond::Capable { channel } => ExprKind::Call { func: name("capable"), arg: name(channel) },
        Cond::Engaged { kind, step } => ExprKind::Call { func: name(kind.as_str()), arg: name(&step.0) },
        Cond::Happened { event, within_minutes, props: hp, filter } => {
            ExprKind::Happened { event: name(event), within: within_minutes.map(duration_lit), filter: all(filter, hp) }
        }
        Cond::InSegment { segment } => ExprKind::Call {
            func: name("in_segment"),
            arg: name(p.segments.get(segment.0 as usize).map_or("?", |s| s.name.as_str())),
        },
    })
}

fn cmp_op(op: CmpOpRepr) -> ast::CmpOp {
    match op {
        CmpOpRepr::Eq => ast::CmpOp::Eq,
        CmpOpRepr::Ne => ast::CmpOp::Ne,
        CmpOpRepr::Lt => ast::CmpOp::Lt,
        CmpOpRepr::Le => ast::CmpOp::Le,
        CmpOpRepr::Gt => ast::CmpOp::Gt,
        CmpOpRepr::Ge => ast::CmpOp::Ge,
    }
}

/// `base ± minutes`, or `base` alone for no offset.
fn offset(base: Expr, minutes: i64) -> Expr {
    if minutes == 0 {
        return base;
    }
    let op = if minutes < 0 { ArithOp::Sub } else { ArithOp::Add };
    let term = node(ExprKind::Duration(duration_lit(minutes.saturating_abs())));
    sum(base, vec![(op, term)])
}

/// `first` followed by `rest`; a sum on the left continues (sums are
/// left-associative), so `a + b + 1d` is one chain.
fn sum(first: Expr, rest: Vec<(ArithOp, Expr)>) -> Expr {
    match first.kind {
        ExprKind::Arith { first, rest: mut before } => {
            before.extend(rest);
            node(ExprKind::Arith { first, rest: before })
        }
        kind => node(ExprKind::Arith { first: Box::new(node(kind)), rest }),
    }
}

fn operand(p: &Program, o: &Operand, props: &[String]) -> Expr {
    match o {
        Operand::Field { slot } => {
            node(ExprKind::Name(name(p.fields.get(slot.0 as usize).map_or("?", |f| f.name.as_str()))))
        }
        Operand::Prop { index } => node(ExprKind::Name(name(props.get(*index as usize).map_or("?", String::as_str)))),
        Operand::Const { value } => constant(value),
        Operand::Now { offset_minutes } => offset(node(ExprKind::Now), *offset_minutes),
        Operand::Offset { base, offset_minutes } => offset(operand(p, base, props), *offset_minutes),
        Operand::Sum { terms } => {
            let mut it = terms.iter();
            let Some((plus, first)) = it.next() else { return node(ExprKind::Number { value: 0.0, text: "0".into() }) };
            let rest: Vec<(ArithOp, Expr)> =
                it.map(|(plus, t)| (if *plus { ArithOp::Add } else { ArithOp::Sub }, operand(p, t, props))).collect();
            // A first term taken away (only in a crafted program) reads as `0 - x`.
            let (first, rest) = if *plus {
                (operand(p, first, props), rest)
            } else {
                (
                    node(ExprKind::Number { value: 0.0, text: "0".into() }),
                    std::iter::once((ArithOp::Sub, operand(p, first, props))).chain(rest).collect(),
                )
            };
            if rest.is_empty() {
                first
            } else {
                sum(first, rest)
            }
        }
    }
}

/// A constant as a literal; a date or time outside chrono's range (only in a
/// crafted program) prints as its number rather than panicking.
fn constant(c: &Const) -> Expr {
    let number = |n: i64| node(ExprKind::Number { value: n as f64, text: n.to_string() });
    match c {
        Const::Bool(b) => node(ExprKind::Bool(*b)),
        Const::Number(n) => node(ExprKind::Number { value: *n, text: n.to_string() }),
        Const::Str(s) => node(ExprKind::Str(s.clone())),
        Const::Datetime(m) => match m.checked_mul(60).and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)) {
            Some(t) => {
                node(ExprKind::Date(ast::DateLit { date: t.date_naive(), time: Some(t.time()), span: Span::default() }))
            }
            None => number(*m),
        },
        Const::Date(d) => match chrono::TimeDelta::try_days(*d)
            .and_then(|days| chrono::NaiveDate::default().checked_add_signed(days))
        {
            Some(date) => node(ExprKind::Date(ast::DateLit { date, time: None, span: Span::default() })),
            None => number(*d),
        },
        Const::Duration(m) => node(ExprKind::Duration(duration_lit(*m))),
        Const::Enum(e) => node(ExprKind::Name(name(e))),
        Const::None => node(ExprKind::None),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_print_as_people_write_them() {
        for (minutes, text) in [
            (90 * 1440, "90d"),
            (30 * 1440, "30d"),
            (36 * 60, "1d 12h"),
            (14 * 1440, "2w"),
            (45, "45m"),
            (90, "1h 30m"),
            (0, "0m"),
        ] {
            assert_eq!(duration(minutes), text, "{minutes} minutes");
        }
    }
}
