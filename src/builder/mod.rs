//! The dashboard's builder timeline JSON (`docs/builder-json.md`,
//! `docs/builder.schema.json`): export from `.flow` and import back.
//!
//! Both directions go through the syntax tree, so a campaign survives the
//! trip: builder node ids are step labels (structural ids, which contain
//! `/`, stand for unlabelled steps), and conditions travel as structured JSON.

mod cond;
mod json;
mod read;
mod value;

use crate::syntax::ast::*;
use crate::syntax::print::{duration, Place, Slot};
use serde_json::{json, Map, Value};

pub use read::import;
pub use value::ImportError;

pub const FORMAT: &str = "flowc-builder/1";

/// Exports the campaign `c` of a file whose imports are `imports`.
pub fn export(imports: &[String], c: &Campaign) -> Value {
    let mut root = Map::new();
    root.insert("format".into(), json!(FORMAT));
    if !imports.is_empty() {
        root.insert("imports".into(), json!(imports));
    }
    let mut meta = Map::new();
    meta.insert("id".into(), json!(c.name.text));
    let mut trigger_v = Value::Null;
    let mut audience = Value::Null;
    let mut settings = Map::new();
    let mut goals = Vec::new();
    let mut exits = Vec::new();
    for s in &c.settings {
        match s {
            Setting::DisplayName(n, _) => {
                meta.insert("name".into(), json!(n.value));
            }
            Setting::Trigger(t) => trigger_v = trigger(&t.kind),
            Setting::Audience(e, _) => audience = expr(e),
            Setting::Goal(g) => {
                let mut v = event_match(&g.event);
                v["within"] = json!(duration(&g.within));
                goals.push(v);
            }
            Setting::Exit(cond, _) => exits.push(arm_cond(cond)),
            Setting::OnIneligible(w, _) => {
                settings.insert("on_ineligible".into(), json!(w.as_str()));
            }
            Setting::QuietHours(q) => {
                let then = if q.then == QuietThen::Skip { "skip" } else { "hold" };
                settings.insert("quiet_hours".into(), json!({"start": q.start.text, "end": q.end.text, "then": then}));
            }
            Setting::Reentry(r, _) => {
                let v = match r {
                    Reentry::Once => json!("once"),
                    Reentry::Always => json!("always"),
                    Reentry::After(d) => json!({"after": duration(d)}),
                };
                settings.insert("reentry".into(), v);
            }
            Setting::RateLimit(r) => {
                settings.insert("rate_limit".into(), json!({"count": r.count.value, "per": r.per.as_str()}));
            }
        }
    }
    // One goal is an object; more (an error the checker reports) stay a list
    // so nothing written is lost on the way.
    match goals.len() {
        0 => {}
        1 => {
            settings.insert("goal".into(), goals.remove(0));
        }
        _ => {
            settings.insert("goal".into(), Value::Array(goals));
        }
    }
    if !exits.is_empty() {
        settings.insert("exits".into(), Value::Array(exits));
    }
    root.insert("campaign".into(), Value::Object(meta));
    root.insert("trigger".into(), trigger_v);
    if !audience.is_null() {
        root.insert("audience".into(), audience);
    }
    if !settings.is_empty() {
        root.insert("settings".into(), Value::Object(settings));
    }
    root.insert("timeline".into(), timeline(&c.steps, &c.name.text));
    Value::Object(root)
}

fn trigger(t: &TriggerKind) -> Value {
    match t {
        TriggerKind::Scheduled { at, zone } => {
            json!({"type": "SCHEDULED", "at": crate::syntax::print::date(at), "timezone": zone.value})
        }
        TriggerKind::Event { event, filter } => {
            let mut m = json!({"type": "EVENT", "event": event.text});
            if let Some(f) = filter {
                m["where"] = expr(f);
            }
            m
        }
        TriggerKind::Manual => json!({"type": "MANUAL"}),
        TriggerKind::Api => json!({"type": "API"}),
    }
}

/// Steps of a block whose structural path is `path` (ids as the checker makes them).
fn timeline(steps: &[Step], path: &str) -> Value {
    Value::Array(
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = s.label.as_ref().map_or_else(|| format!("{path}/{}", i + 1), |l| l.text.clone());
                node(s, &id)
            })
            .collect(),
    )
}

/// `event NAME [where …]` as `{"event": NAME, "where": [...]}`.
fn event_match(m: &EventMatch) -> Value {
    let n = m.filter.len();
    let filter: Vec<Value> = m
        .filter
        .iter()
        .enumerate()
        .map(|(i, x)| expr_at(x, Place::TOP.child(Slot::Where { last: i + 1 == n })))
        .collect();
    json!({"event": m.event.text, "where": filter})
}

/// A `when` arm's or an exit's condition: an event, or `{"condition": …}`.
fn arm_cond(c: &ArmCond) -> Value {
    match c {
        ArmCond::Event(m) => event_match(m),
        ArmCond::State(e) => json!({"condition": expr(e)}),
    }
}

fn target(t: &SendTarget) -> Value {
    json!({
        "channel": t.channel.as_ref().map(|c| c.channel.text.clone()),
        "message_type": t.channel.as_ref().map(|c| c.message.text.clone()),
        "template": t.template.text,
    })
}

fn weight(bp: u32) -> Value {
    if bp.is_multiple_of(100) {
        json!(bp / 100)
    } else {
        json!(bp as f64 / 100.0)
    }
}

fn node(s: &Step, id: &str) -> Value {
    let (kind, config) = match &s.kind {
        StepKind::Send(send) => {
            let mut config = target(&send.target);
            config["fallback"] = match &send.fallback {
                None => Value::Null,
                Some(Fallback::None(_)) => json!("none"),
                Some(Fallback::To(t)) => target(t),
            };
            ("SEND", config)
        }
        StepKind::Wait(d) => ("WAIT", json!({"duration": duration(d)})),
        StepKind::If(i) => {
            let branches: Vec<Value> = i
                .arms
                .iter()
                .enumerate()
                .map(|(k, (c, b))| {
                    let arm = if k == 0 { "then".to_string() } else { format!("elif{k}") };
                    json!({"condition": expr(c), "timeline": timeline(&b.steps, &format!("{id}/{arm}"))})
                })
                .collect();
            let otherwise = i.otherwise.as_ref().map_or(Value::Null, |b| timeline(&b.steps, &format!("{id}/else")));
            ("CONDITION", json!({"branches": branches, "else": otherwise}))
        }
        StepKind::AbTest(t) => {
            let variants: Vec<Value> = t
                .variants
                .iter()
                .map(|v| json!({"name": v.name.text, "weight": weight(v.weight_bp), "timeline": timeline(&v.block.steps, &format!("{id}/{}", v.name.text))}))
                .collect();
            ("AB_TEST", json!({"name": t.name.text, "variants": variants}))
        }
        StepKind::Tag { op, tag } => {
            ("TAG", json!({"action": if *op == TagOp::Add { "add" } else { "remove" }, "tag": tag.value}))
        }
        StepKind::End => ("END", json!({})),
        StepKind::Set { field, value } => ("SET", json!({"field": field.text, "value": expr(value)})),
        StepKind::WaitUntil(w) => {
            let mut paths: Vec<Value> = w
                .arms
                .iter()
                .enumerate()
                .map(|(k, a)| {
                    json!({"when": arm_cond(&a.cond), "timeline": timeline(&a.block.steps, &format!("{id}/when{}", k + 1))})
                })
                .collect();
            if let Some(t) = &w.timeout {
                paths.push(json!({"timeout": duration(&t.duration), "timeline": timeline(&t.block.steps, &format!("{id}/timeout"))}));
            }
            match w.form {
                WaitForm::Short => ("WAIT_UNTIL", json!({"paths": paths, "form": "short"})),
                WaitForm::Arms => ("WAIT_UNTIL", json!({"paths": paths})),
            }
        }
    };
    json!({"id": id, "type": kind, "config": config})
}

/// A condition or value as structured JSON: one key naming its kind.
pub fn expr(e: &Expr) -> Value {
    expr_at(e, Place::TOP)
}

/// `e` printed at `at`. Parentheses the printer would add anyway are no
/// `group`, so import then export gives back the same JSON; a `group` is a
/// parenthesis the text has beyond those (kept for the trip back to text).
fn expr_at(e: &Expr, at: Place) -> Value {
    let at = at.inside(e);
    let list = |v: &[Expr], slot: fn(bool) -> Slot| {
        Value::Array(v.iter().enumerate().map(|(i, x)| expr_at(x, at.child(slot(i + 1 == v.len())))).collect())
    };
    let one = |x: &Expr, slot: Slot| expr_at(x, at.child(slot));
    match &e.kind {
        ExprKind::Or(v) => json!({"or": list(v, |last| Slot::Or { last })}),
        ExprKind::And(v) => json!({"and": list(v, |last| Slot::And { last })}),
        ExprKind::Not(x) => json!({"not": one(x, Slot::Not)}),
        ExprKind::Paren(x) if at.needs_parens(x) => expr_at(x, at),
        ExprKind::Paren(x) => json!({"group": one(x, Slot::Group)}),
        ExprKind::Compare { op, lhs, rhs } => {
            json!({"compare": {"op": op.as_str(), "left": one(lhs, Slot::CompareLeft), "right": one(rhs, Slot::CompareRight)}})
        }
        ExprKind::In { lhs, list: l } => {
            json!({"in": {"value": one(lhs, Slot::InValue), "list": list(l, |_| Slot::InItem)}})
        }
        ExprKind::Has { lhs, rhs } => {
            json!({"has": {"set": one(lhs, Slot::HasSet), "value": one(rhs, Slot::HasValue)}})
        }
        ExprKind::Arith { first, rest } => {
            let terms: Vec<Value> = rest
                .iter()
                .enumerate()
                .map(|(i, (op, x))| json!({"op": if *op == ArithOp::Add { "+" } else { "-" }, "value": one(x, Slot::Sum { last: i + 1 == rest.len() })}))
                .collect();
            json!({"arith": {"first": one(first, Slot::Sum { last: rest.is_empty() }), "rest": terms}})
        }
        ExprKind::Name(n) => json!({"attribute": n.text}),
        ExprKind::Call { func, arg } => json!({"predicate": {"name": func.text, "arg": arg.text}}),
        ExprKind::Happened { event, within, filter } => {
            json!({"happened": {"event": event.text, "within": within.as_ref().map(duration), "where": list(filter, |last| Slot::Where { last })}})
        }
        ExprKind::Bool(b) => json!({"bool": b}),
        ExprKind::Number { value, .. } => json!({"number": value}),
        ExprKind::Str(s) => json!({"string": s}),
        ExprKind::Duration(d) => json!({"duration": duration(d)}),
        ExprKind::Date(d) if d.time.is_some() => json!({"datetime": crate::syntax::print::date(d)}),
        ExprKind::Date(d) => json!({"date": crate::syntax::print::date(d)}),
        ExprKind::Now => json!({"now": true}),
        ExprKind::None => json!({"none": true}),
    }
}
