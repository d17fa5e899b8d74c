//! `flowc dis`: a readable listing of a program.

use super::program::*;
use std::fmt::Write;

pub fn listing(p: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "campaign {}{}", p.campaign, p.display_name.as_ref().map(|n| format!(" ({n:?})")).unwrap_or_default());
    let _ = writeln!(out, "version  {}", p.version);
    let _ = writeln!(out, "trigger  {}", trigger(p));
    if let Some(a) = &p.audience {
        let _ = writeln!(out, "audience {}", cond(p, a, &[]));
    }
    for s in &p.segments {
        let _ = writeln!(out, "segment  {} = {}", s.name, cond(p, &s.cond, &[]));
    }
    let _ = writeln!(out);
    let width = p.nodes.iter().map(|n| n.id.0.chars().count()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:>4}  {:<width$}  {:<48}  {:<12}  line", "idx", "step", "instruction", "next");
    for (i, n) in p.nodes.iter().enumerate() {
        let succ = n.op.successors().iter().map(|s| s.0.to_string()).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "{i:>4}  {:<width$}  {:<48}  {:<12}  {}", n.id.0, instruction(p, &n.op), if succ.is_empty() { "-".into() } else { succ }, n.line);
    }
    out
}

fn trigger(p: &Program) -> String {
    match &p.trigger {
        Trigger::Scheduled { at, zone } => format!("scheduled at {at} {zone:?}"),
        Trigger::Event { event, props, filter: Some(f) } => format!("event {event} where {}", cond(p, f, props)),
        Trigger::Event { event, .. } => format!("event {event}"),
        Trigger::Manual => "manual".into(),
        Trigger::Api => "api".into(),
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
        Op::Tag { add, tag, .. } => format!("TAG {} {tag:?}", if *add { "add" } else { "remove" }),
        Op::Jump { .. } => "JUMP".into(),
        Op::End => "END".into(),
    }
}

pub fn percent(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        (bp / 100).to_string()
    } else {
        format!("{}.{:02}", bp / 100, bp % 100).trim_end_matches('0').to_string()
    }
}

pub fn duration(minutes: i64) -> String {
    let mut left = minutes;
    let mut parts = Vec::new();
    for (unit, size) in [("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60), ("m", 1)] {
        if left >= size {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if parts.is_empty() {
        "0m".into()
    } else {
        parts.join(" ")
    }
}

/// Renders a condition back to `.flow`-like text.
pub fn cond(p: &Program, c: &Cond, props: &[String]) -> String {
    match c {
        Cond::Const { value } => value.to_string(),
        Cond::And { all } => all.iter().map(|x| group(p, x, props)).collect::<Vec<_>>().join(" and "),
        Cond::Or { any } => any.iter().map(|x| group(p, x, props)).collect::<Vec<_>>().join(" or "),
        Cond::Not { cond: x } => format!("not {}", group(p, x, props)),
        Cond::Cmp { op, lhs, rhs } => format!("{} {} {}", operand(p, lhs, props), op.as_str(), operand(p, rhs, props)),
        Cond::In { lhs, list } => format!("{} in [{}]", operand(p, lhs, props), list.iter().map(constant).collect::<Vec<_>>().join(", ")),
        Cond::Has { set, elem } => format!("{} has {}", operand(p, set, props), operand(p, elem, props)),
        Cond::Consent { channel } => format!("consent({channel})"),
        Cond::Capable { channel } => format!("capable({channel})"),
        Cond::Engaged { kind, step } => format!("{}({step})", kind.as_str()),
        Cond::Happened { event, within_minutes, props: hp, filter } => {
            let mut s = format!("happened {event}");
            if let Some(m) = within_minutes {
                s.push_str(&format!(" within {}", duration(*m)));
            }
            if !filter.is_empty() {
                s.push_str(&format!(" where {}", filter.iter().map(|f| cond(p, f, hp)).collect::<Vec<_>>().join(" and ")));
            }
            s
        }
        Cond::InSegment { segment } => format!("in_segment({})", p.segments.get(segment.0 as usize).map_or("?", |s| s.name.as_str())),
    }
}

fn group(p: &Program, c: &Cond, props: &[String]) -> String {
    match c {
        Cond::And { .. } | Cond::Or { .. } => format!("({})", cond(p, c, props)),
        _ => cond(p, c, props),
    }
}

fn operand(p: &Program, o: &Operand, props: &[String]) -> String {
    match o {
        Operand::Field { slot } => p.fields.get(slot.0 as usize).map_or("?".into(), |f| f.name.clone()),
        Operand::Prop { index } => props.get(*index as usize).cloned().unwrap_or_else(|| "?".into()),
        Operand::Const { value } => constant(value),
        Operand::Now { offset_minutes: 0 } => "now".into(),
        Operand::Now { offset_minutes } if *offset_minutes < 0 => format!("now - {}", duration(offset_minutes.saturating_neg())),
        Operand::Now { offset_minutes } => format!("now + {}", duration(*offset_minutes)),
        Operand::Offset { base, offset_minutes } if *offset_minutes < 0 => format!("{} - {}", operand(p, base, props), duration(offset_minutes.saturating_neg())),
        Operand::Offset { base, offset_minutes } => format!("{} + {}", operand(p, base, props), duration(*offset_minutes)),
        Operand::Sum { terms } => terms
            .iter()
            .enumerate()
            .map(|(i, (plus, t))| match (i, plus) {
                (0, _) => operand(p, t, props),
                (_, true) => format!("+ {}", operand(p, t, props)),
                (_, false) => format!("- {}", operand(p, t, props)),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn constant(c: &Const) -> String {
    match c {
        Const::Bool(b) => b.to_string(),
        Const::Number(n) => n.to_string(),
        Const::Str(s) => format!("{s:?}"),
        Const::Datetime(m) => chrono::DateTime::from_timestamp(m.saturating_mul(60), 0).map_or_else(|| m.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string()),
        // `validate` keeps dates in the calendar; a listing of anything else still shows the number.
        Const::Date(d) => chrono::TimeDelta::try_days(*d).and_then(|t| chrono::NaiveDate::default().checked_add_signed(t)).map_or_else(|| d.to_string(), |d| d.to_string()),
        Const::Duration(m) => duration(*m),
        Const::Enum(e) => e.clone(),
        Const::None => "none".into(),
    }
}
