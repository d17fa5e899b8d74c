//! A compact, indented dump of the syntax tree, for golden tests and
//! `flowc parse`. Expressions print as S-expressions so precedence shows.

use crate::syntax::ast::*;
use crate::syntax::print::duration;
use std::fmt::Write;

pub fn dump(file: &SourceFile) -> String {
    let mut out = String::new();
    for item in &file.items {
        item_dump(&mut out, item);
    }
    if !file.comments.is_empty() {
        let _ = writeln!(out, "comments {}", file.comments.len());
    }
    out
}

fn at(s: crate::source::Span) -> String {
    format!("@{}..{}", s.start, s.end)
}

fn item_dump(out: &mut String, item: &Item) {
    let _ = match item {
        Item::Import(i) => writeln!(out, "import {:?} {}", i.path.value, at(i.span)),
        Item::Template(t) => {
            let fields: Vec<String> = t
                .fields
                .iter()
                .map(|f| match f {
                    TemplateField::Channel(n) => format!("channel={}", n.text),
                    TemplateField::Message(n) => format!("message={}", n.text),
                    TemplateField::Status(n) => format!("status={}", n.text),
                    TemplateField::Version { value, .. } => format!("version={value}"),
                })
                .collect();
            writeln!(out, "template {} [{}] {}", t.name.text, fields.join(" "), at(t.span))
        }
        Item::Contact(c) => {
            let _ = writeln!(out, "contact {}", at(c.span));
            fields(out, &c.fields)
        }
        Item::Event(e) => {
            let _ = writeln!(out, "event {}{} {}", e.name.text, if e.has_body { " {}" } else { "" }, at(e.span));
            fields(out, &e.fields)
        }
        Item::Segment(s) => writeln!(out, "segment {} = {} {}", s.name.text, expr(&s.expr), at(s.span)),
        Item::Channel(c) => {
            let entries: Vec<String> = c
                .entries
                .iter()
                .map(|e| match e {
                    ChannelEntry::RequiresCapability(_) => "requires-capability".to_string(),
                    ChannelEntry::Fallback(n) => format!("fallback={}", n.text),
                    ChannelEntry::Message { name, requires_consent, .. } => {
                        format!("message={}{}", name.text, if *requires_consent { "+consent" } else { "" })
                    }
                })
                .collect();
            writeln!(out, "channel {} [{}] {}", c.name.text, entries.join(" "), at(c.span))
        }
        Item::Pricing(p) => {
            let _ = writeln!(out, "pricing {}", at(p.span));
            for e in &p.entries {
                let _ = writeln!(
                    out,
                    "  {}.{} = {} {}",
                    e.channel.text, e.message.text, e.amount.text, e.amount.currency.text
                );
            }
            Ok(())
        }
        Item::Policy(p) => {
            let _ = writeln!(out, "policy {}", at(p.span));
            for c in &p.caps {
                let channel = c.channel.as_ref().map(|n| format!("{} ", n.text)).unwrap_or_default();
                let _ = writeln!(out, "  frequency cap {channel}{} per {}", c.count.value, duration(&c.window));
            }
            Ok(())
        }
        Item::Campaign(c) => {
            let _ = writeln!(out, "campaign {} {}", c.name.text, at(c.span));
            for s in &c.settings {
                let _ = match s {
                    Setting::DisplayName(n, _) => writeln!(out, "  name {:?}", n.value),
                    Setting::Audience(e, _) => writeln!(out, "  audience {}", expr(e)),
                    Setting::Trigger(t) => writeln!(out, "  trigger {}", trigger(&t.kind)),
                    Setting::Goal(g) => {
                        writeln!(out, "  goal {} within {}", event_match(&g.event), duration(&g.within))
                    }
                    Setting::Exit(c, _) => writeln!(out, "  exit when {}", arm_cond(c)),
                    Setting::OnIneligible(w, _) => writeln!(out, "  on ineligible {}", w.as_str()),
                    Setting::QuietHours(q) => writeln!(
                        out,
                        "  quiet hours {} to {}{}",
                        q.start.text,
                        q.end.text,
                        if q.then == QuietThen::Skip { " then skip" } else { "" }
                    ),
                    Setting::Reentry(r, _) => match r {
                        Reentry::Once => writeln!(out, "  reentry once"),
                        Reentry::Always => writeln!(out, "  reentry always"),
                        Reentry::After(d) => writeln!(out, "  reentry after {}", duration(d)),
                    },
                    Setting::RateLimit(r) => writeln!(out, "  rate limit {} per {}", r.count.value, r.per.as_str()),
                };
            }
            steps(out, &c.steps, 1);
            Ok(())
        }
    };
}

fn fields(out: &mut String, fs: &[FieldDecl]) -> std::fmt::Result {
    for f in fs {
        let ty = match &f.ty.kind {
            TypeKind::Named(n) => n.text.clone(),
            TypeKind::Set(n) => format!("set<{}>", n.text),
            TypeKind::Enum(v) => format!("enum({})", v.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join(", ")),
        };
        writeln!(out, "  {}: {}{}", f.name.text, ty, if f.ty.optional { "?" } else { "" })?;
    }
    Ok(())
}

fn trigger(t: &TriggerKind) -> String {
    match t {
        TriggerKind::Scheduled { at, zone } => format!("scheduled {} {:?}", date(at), zone.value),
        TriggerKind::Event { event, filter: Some(f) } => format!("event {} where {}", event.text, expr(f)),
        TriggerKind::Event { event, filter: None } => format!("event {}", event.text),
        TriggerKind::Manual => "manual".into(),
        TriggerKind::Api => "api".into(),
    }
}

fn event_match(m: &EventMatch) -> String {
    if m.filter.is_empty() {
        return format!("(event {})", m.event.text);
    }
    format!("(event {} where {})", m.event.text, m.filter.iter().map(expr).collect::<Vec<_>>().join(" "))
}

fn arm_cond(c: &ArmCond) -> String {
    match c {
        ArmCond::Event(m) => event_match(m),
        ArmCond::State(e) => expr(e),
    }
}

fn date(d: &DateLit) -> String {
    match d.time {
        Some(t) => format!("{} {}", d.date, t.format("%H:%M")),
        None => d.date.to_string(),
    }
}

fn target(t: &SendTarget) -> String {
    match &t.channel {
        Some(cm) => format!("{}.{} {}", cm.channel.text, cm.message.text, t.template.text),
        None => t.template.text.clone(),
    }
}

fn steps(out: &mut String, steps: &[Step], depth: usize) {
    let pad = "  ".repeat(depth);
    for s in steps {
        let label = s.label.as_ref().map(|l| format!("{}: ", l.text)).unwrap_or_default();
        let _ = write!(out, "{pad}{label}");
        let _ = match &s.kind {
            StepKind::Send(send) => {
                let fb = match &send.fallback {
                    None => String::new(),
                    Some(Fallback::None(_)) => " fallback none".into(),
                    Some(Fallback::To(t)) => format!(" fallback {}", target(t)),
                };
                writeln!(out, "send {}{fb} {}", target(&send.target), at(s.span))
            }
            StepKind::Wait(d) => writeln!(out, "wait {} {}", duration(d), at(s.span)),
            StepKind::Tag { op, tag } => {
                writeln!(out, "tag {} {:?} {}", if *op == TagOp::Add { "add" } else { "remove" }, tag.value, at(s.span))
            }
            StepKind::End => writeln!(out, "end {}", at(s.span)),
            StepKind::Set { field, value } => writeln!(out, "set {} = {} {}", field.text, expr(value), at(s.span)),
            StepKind::If(i) => {
                let _ = writeln!(out, "if {}", at(s.span));
                for (k, (c, b)) in i.arms.iter().enumerate() {
                    let _ = writeln!(out, "{pad}  {} {}", if k == 0 { "when" } else { "else-if" }, expr(c));
                    self::steps(out, &b.steps, depth + 2);
                }
                if let Some(b) = &i.otherwise {
                    let _ = writeln!(out, "{pad}  else");
                    self::steps(out, &b.steps, depth + 2);
                }
                Ok(())
            }
            StepKind::WaitUntil(w) => {
                let form = if w.form == WaitForm::Short { " short" } else { "" };
                let _ = writeln!(out, "wait-until{form} {}", at(s.span));
                for a in &w.arms {
                    let _ = writeln!(out, "{pad}  when {}", arm_cond(&a.cond));
                    self::steps(out, &a.block.steps, depth + 2);
                }
                match &w.timeout {
                    Some(t) => {
                        let _ = writeln!(out, "{pad}  timeout {}", duration(&t.duration));
                        self::steps(out, &t.block.steps, depth + 2);
                    }
                    None => {
                        let _ = writeln!(out, "{pad}  no-timeout");
                    }
                }
                Ok(())
            }
            StepKind::AbTest(t) => {
                let _ = writeln!(out, "ab_test {} {}", t.name.text, at(s.span));
                for v in &t.variants {
                    let _ = writeln!(out, "{pad}  variant {} {}bp", v.name.text, v.weight_bp);
                    self::steps(out, &v.block.steps, depth + 2);
                }
                Ok(())
            }
        };
    }
}

pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Or(v) => format!("(or {})", v.iter().map(expr).collect::<Vec<_>>().join(" ")),
        ExprKind::And(v) => format!("(and {})", v.iter().map(expr).collect::<Vec<_>>().join(" ")),
        ExprKind::Not(x) => format!("(not {})", expr(x)),
        ExprKind::Compare { op, lhs, rhs } => format!("({} {} {})", op.as_str(), expr(lhs), expr(rhs)),
        ExprKind::In { lhs, list } => {
            format!("(in {} [{}])", expr(lhs), list.iter().map(expr).collect::<Vec<_>>().join(" "))
        }
        ExprKind::Has { lhs, rhs } => format!("(has {} {})", expr(lhs), expr(rhs)),
        ExprKind::Arith { first, rest } => {
            let mut s = format!("(arith {}", expr(first));
            for (op, x) in rest {
                s.push_str(&format!(" {} {}", if *op == ArithOp::Add { "+" } else { "-" }, expr(x)));
            }
            s + ")"
        }
        ExprKind::Paren(x) => format!("(paren {})", expr(x)),
        ExprKind::Name(n) => n.text.clone(),
        ExprKind::Call { func, arg } => format!("{}({})", func.text, arg.text),
        ExprKind::Happened { event, within, filter } => {
            let mut s = format!("(happened {}", event.text);
            if let Some(d) = within {
                s.push_str(&format!(" within {}", duration(d)));
            }
            if !filter.is_empty() {
                s.push_str(&format!(" where {}", filter.iter().map(expr).collect::<Vec<_>>().join(" ")));
            }
            s + ")"
        }
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Duration(d) => duration(d),
        ExprKind::Date(d) => date(d),
        ExprKind::Now => "now".into(),
        ExprKind::None => "none".into(),
    }
}
