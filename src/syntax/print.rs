//! The one printer of `.flow` expressions and literals: text from a syntax tree.
//!
//! `fmt`, builder import, `dis` (and through it the DOT and Mermaid graphs)
//! all print expressions here, so there is one place that knows how the
//! grammar (`grammar/flow.pest`) reads text back.

use super::ast::*;

pub fn duration(d: &DurationLit) -> String {
    d.parts.iter().map(|(n, u)| format!("{n}{}", u.suffix())).collect::<Vec<_>>().join(" ")
}

pub fn date(d: &DateLit) -> String {
    match d.time {
        Some(t) => format!("{} {}", d.date.format("%Y-%m-%d"), t.format("%H:%M")),
        None => d.date.format("%Y-%m-%d").to_string(),
    }
}

/// A string literal with the escapes the lexer reads back.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Canonical number text: `12`, `12.5`, `-3` (trailing zeros dropped).
pub fn number(value: f64, text: &str) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else if value.is_finite() {
        format!("{value}")
    } else {
        text.to_string()
    }
}

pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Or(v) => v.iter().map(expr).collect::<Vec<_>>().join(" or "),
        ExprKind::And(v) => v.iter().map(expr).collect::<Vec<_>>().join(" and "),
        ExprKind::Not(x) => format!("not {}", expr(x)),
        ExprKind::Compare { op, lhs, rhs } => format!("{} {} {}", expr(lhs), op.as_str(), expr(rhs)),
        ExprKind::In { lhs, list } => format!("{} in [{}]", expr(lhs), list.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Has { lhs, rhs } => format!("{} has {}", expr(lhs), expr(rhs)),
        ExprKind::Arith { first, rest } => {
            let mut s = expr(first);
            for (op, x) in rest {
                s.push_str(if *op == ArithOp::Add { " + " } else { " - " });
                s.push_str(&expr(x));
            }
            s
        }
        ExprKind::Paren(x) => format!("({})", expr(x)),
        ExprKind::Name(n) => n.text.clone(),
        ExprKind::Call { func, arg } => format!("{}({})", func.text, arg.text),
        ExprKind::Happened { event, within, filter } => {
            let mut s = format!("happened {}", event.text);
            if let Some(d) = within {
                s.push_str(&format!(" within {}", duration(d)));
            }
            if !filter.is_empty() {
                s.push_str(&format!(" where {}", filter.iter().map(expr).collect::<Vec<_>>().join(" and ")));
            }
            s
        }
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Number { value, text } => number(*value, text),
        ExprKind::Str(s) => string(s),
        ExprKind::Duration(d) => duration(d),
        ExprKind::Date(d) => date(d),
        ExprKind::Now => "now".into(),
        ExprKind::None => "none".into(),
    }
}
