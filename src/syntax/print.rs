//! The one printer of `.flow` expressions and literals: text from a syntax tree.
//!
//! `fmt`, builder import, `dis` (and through it the DOT and Mermaid graphs)
//! all print expressions here, so there is one place that knows how the
//! grammar (`grammar/flow.pest`) reads text back.
//!
//! Parentheses come from the grammar, not from the tree: the levels, loosest
//! first, are `or`, `and`, `not`, one comparison (`== != < <= > >=`, `in`,
//! `has`; never chained), `+ -`, and atoms. A node looser than its place
//! allows is parenthesised. Chains are n-ary in the tree, so a chain directly
//! inside a chain of the same operator is parenthesised too: print, then
//! parse, gives back the same tree (up to `Paren` nodes). `happened … where`
//! is open on the right (its `where` takes the `and`s, `+`s and comparison
//! that follow), so it is parenthesised wherever such a token follows it.

use super::ast::*;

/// A variant weight in basis points the way `.flow` text writes it: `50`,
/// `33.5`, `0.25` — no trailing zeros, so printing then parsing keeps it.
pub fn percent(bp: u32) -> String {
    if bp.is_multiple_of(100) {
        (bp / 100).to_string()
    } else {
        format!("{}.{:02}", bp / 100, bp % 100).trim_end_matches('0').to_string()
    }
}

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

/// How tightly a node binds, loosest first (the grammar's rules `expr`,
/// `and_expr`, `unary`, `comparison`, `additive`, `atom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Or,
    And,
    Not,
    Comparison,
    Sum,
    Atom,
}

pub fn level(e: &Expr) -> Level {
    match &e.kind {
        ExprKind::Or(_) => Level::Or,
        ExprKind::And(_) => Level::And,
        ExprKind::Not(_) => Level::Not,
        ExprKind::Compare { .. } | ExprKind::In { .. } | ExprKind::Has { .. } => Level::Comparison,
        ExprKind::Arith { .. } => Level::Sum,
        _ => Level::Atom,
    }
}

/// What the text after an expression's place starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follower {
    /// Nothing an expression could take in: `)`, `]`, `,`, `or`, `{`, the end.
    Closed,
    /// `and`, `+`, `-`, a comparison, `in` or `has`: a `where` would take it in.
    Operator,
}

/// Where a node is printed: the loosest level it may have without
/// parentheses, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    loosest: Level,
    follower: Follower,
}

/// The position of an operand within its parent node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An operand of `or`; `last` is the rightmost one.
    Or {
        last: bool,
    },
    And {
        last: bool,
    },
    Not,
    CompareLeft,
    CompareRight,
    InValue,
    InItem,
    HasSet,
    HasValue,
    Sum {
        last: bool,
    },
    /// A comparison of `happened … where`.
    Where {
        last: bool,
    },
    /// Inside parentheses written in the tree (`ExprKind::Paren`).
    Group,
}

impl Place {
    /// A whole expression: after `audience`, `if`, `where`, `=`.
    pub const TOP: Place = Place { loosest: Level::Or, follower: Follower::Closed };

    /// Would `e`, printed here as it is, read back as something else?
    pub fn needs_parens(self, e: &Expr) -> bool {
        level(e) < self.loosest || (self.follower == Follower::Operator && open_right(e)) || bare_happened(e)
    }

    /// The place of `e`'s own operands' parent: inside parentheses when `e`
    /// needs them here, else this place.
    pub fn inside(self, e: &Expr) -> Place {
        if self.needs_parens(e) {
            Place::TOP
        } else {
            self
        }
    }

    /// The place of an operand in `slot` of a node printed at `self` (as
    /// returned by `inside`). An operand at the end of its parent's text is
    /// followed by whatever follows the parent.
    pub fn child(self, slot: Slot) -> Place {
        use Follower::*;
        let (loosest, follower) = match slot {
            Slot::Or { last } => (Level::And, if last { self.follower } else { Closed }),
            Slot::And { last } | Slot::Sum { last } | Slot::Where { last } => {
                let loosest = match slot {
                    Slot::And { .. } => Level::Not,
                    Slot::Sum { .. } => Level::Atom,
                    _ => Level::Comparison,
                };
                (loosest, if last { self.follower } else { Operator })
            }
            Slot::Not => (Level::Not, self.follower),
            Slot::CompareLeft | Slot::InValue | Slot::HasSet => (Level::Sum, Operator),
            Slot::CompareRight | Slot::HasValue => (Level::Sum, self.follower),
            // A list holds atoms (`[a, b]`), not expressions.
            Slot::InItem => (Level::Atom, Closed),
            Slot::Group => (Level::Or, Closed),
        };
        Place { loosest, follower }
    }
}

/// `happened` is a name too, but bare it would start `happened EVENT` and
/// take the next word (`and`, `or`, the next setting) as its event, so it
/// is always printed in parentheses: the tree's own, or added.
pub fn bare_happened(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if n.text == "happened")
}

/// A `happened` with a `where` ends only where its comparisons end.
fn open_right(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Happened { filter, .. } if !filter.is_empty())
}

/// An expression as `.flow` text, parenthesised where the grammar needs it.
pub fn expr(e: &Expr) -> String {
    let mut out = String::new();
    write(&mut out, e, Place::TOP);
    out
}

fn write(out: &mut String, e: &Expr, at: Place) {
    let parens = at.needs_parens(e);
    if parens {
        out.push('(');
    }
    let at = at.inside(e);
    match &e.kind {
        ExprKind::Or(v) => chain(out, v, " or ", |last| at.child(Slot::Or { last })),
        ExprKind::And(v) => chain(out, v, " and ", |last| at.child(Slot::And { last })),
        ExprKind::Not(x) => {
            out.push_str("not ");
            write(out, x, at.child(Slot::Not));
        }
        ExprKind::Compare { op, lhs, rhs } => {
            write(out, lhs, at.child(Slot::CompareLeft));
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            write(out, rhs, at.child(Slot::CompareRight));
        }
        ExprKind::In { lhs, list } => {
            write(out, lhs, at.child(Slot::InValue));
            out.push_str(" in [");
            chain(out, list, ", ", |_| at.child(Slot::InItem));
            out.push(']');
        }
        ExprKind::Has { lhs, rhs } => {
            write(out, lhs, at.child(Slot::HasSet));
            out.push_str(" has ");
            write(out, rhs, at.child(Slot::HasValue));
        }
        ExprKind::Arith { first, rest } => {
            write(out, first, at.child(Slot::Sum { last: rest.is_empty() }));
            for (i, (op, x)) in rest.iter().enumerate() {
                out.push_str(if *op == ArithOp::Add { " + " } else { " - " });
                write(out, x, at.child(Slot::Sum { last: i + 1 == rest.len() }));
            }
        }
        // The tree's own parentheses are the ones a bare `happened` needs.
        ExprKind::Paren(x) if bare_happened(x) => write(out, x, at),
        ExprKind::Paren(x) => {
            out.push('(');
            write(out, x, at.child(Slot::Group));
            out.push(')');
        }
        ExprKind::Name(n) => out.push_str(&n.text),
        ExprKind::Call { func, arg } => {
            out.push_str(&func.text);
            out.push('(');
            out.push_str(&arg.text);
            out.push(')');
        }
        ExprKind::Happened { event, within, filter } => {
            out.push_str("happened ");
            out.push_str(&event.text);
            if let Some(d) = within {
                out.push_str(" within ");
                out.push_str(&duration(d));
            }
            if !filter.is_empty() {
                out.push_str(" where ");
                chain(out, filter, " and ", |last| at.child(Slot::Where { last }));
            }
        }
        ExprKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ExprKind::Number { value, text } => out.push_str(&number(*value, text)),
        ExprKind::Str(s) => out.push_str(&string(s)),
        ExprKind::Duration(d) => out.push_str(&duration(d)),
        ExprKind::Date(d) => out.push_str(&date(d)),
        ExprKind::Now => out.push_str("now"),
        ExprKind::None => out.push_str("none"),
    }
    if parens {
        out.push(')');
    }
}

/// `event NAME [where A and B …]` of a goal, an exit or a `when` arm. What
/// follows it (`{`, `within`, `timeout`, the next setting) takes no operator,
/// so its comparisons print as at the top.
pub fn event_match(m: &EventMatch) -> String {
    let mut out = format!("event {}", m.event.text);
    if !m.filter.is_empty() {
        out.push_str(" where ");
        chain(&mut out, &m.filter, " and ", |last| Place::TOP.child(Slot::Where { last }));
    }
    out
}

/// `goal event NAME [where …] within D`. A filter whose text ends in a
/// `happened` without its own `within` would take the goal's: that last
/// comparison is parenthesised.
pub fn goal(m: &EventMatch, within: &DurationLit) -> String {
    let mut m = m.clone();
    if let Some(last) = m.filter.last_mut() {
        if takes_within(last) {
            let span = last.span;
            *last = Expr { kind: ExprKind::Paren(Box::new(last.clone())), span };
        }
    }
    format!("goal {} within {}", event_match(&m), duration(within))
}

/// Does the text of `e` end in `happened NAME` with no `within` and no
/// `where`, so that a `within` after it would read as its own?
fn takes_within(e: &Expr) -> bool {
    let mut e = e;
    loop {
        e = match &e.kind {
            ExprKind::Or(v) | ExprKind::And(v) => match v.last() {
                Some(x) => x,
                None => return false,
            },
            ExprKind::Not(x) => x,
            ExprKind::Compare { rhs, .. } | ExprKind::Has { rhs, .. } => rhs,
            ExprKind::Arith { first, rest } => rest.last().map_or(&**first, |(_, x)| x),
            ExprKind::Happened { within: None, filter, .. } => match filter.last() {
                None => return true,
                Some(x) => x,
            },
            ExprKind::Happened { filter, .. } => match filter.last() {
                None => return false,
                Some(x) => x,
            },
            _ => return false,
        };
    }
}

/// What a `when` arm or an `exit when` waits for, as text.
pub fn arm_cond(c: &ArmCond) -> String {
    match c {
        ArmCond::Event(m) => event_match(m),
        ArmCond::State(e) => expr(e),
    }
}

/// Operands separated by `sep`, each at the place `place(is_last)` gives.
fn chain(out: &mut String, items: &[Expr], sep: &str, place: impl Fn(bool) -> Place) {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        write(out, x, place(i + 1 == items.len()));
    }
}

/// `quiet hours 21:00 to 08:00 [then skip]`.
pub fn quiet_hours(q: &QuietHours) -> String {
    let then = if q.then == QuietThen::Skip { " then skip" } else { "" };
    format!("quiet hours {} to {}{then}", q.start.text, q.end.text)
}

/// `reentry once | always | after D`.
pub fn reentry(r: &Reentry) -> String {
    match r {
        Reentry::Once => "reentry once".into(),
        Reentry::Always => "reentry always".into(),
        Reentry::After(d) => format!("reentry after {}", duration(d)),
    }
}

/// `rate limit N per UNIT`.
pub fn rate_limit(r: &RateLimit) -> String {
    format!("rate limit {} per {}", r.count.value, r.per.as_str())
}

/// `frequency cap [CHANNEL] N per D`.
pub fn frequency_cap(c: &FrequencyCap) -> String {
    let channel = c.channel.as_ref().map(|n| format!("{} ", n.text)).unwrap_or_default();
    format!("frequency cap {channel}{} per {}", c.count.value, duration(&c.window))
}

/// `set FIELD = EXPR`.
pub fn set_step(field: &Name, value: &Expr) -> String {
    format!("set {} = {}", field.text, expr(value))
}
