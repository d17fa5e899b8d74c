//! Importing builder JSON: every value is checked where it stands, and an
//! error names its JSON path (`$.timeline[3].config.weight`) and the reason.

use crate::source::Span;
use crate::syntax::ast::*;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ImportError {
    pub path: String,
    pub reason: String,
}

type R<T> = Result<T, ImportError>;

fn err<T>(path: &str, reason: impl Into<String>) -> R<T> {
    Err(ImportError { path: path.to_string(), reason: reason.into() })
}

fn name_of(text: &str) -> Name {
    Name { text: text.to_string(), span: Span::default() }
}

fn obj<'v>(v: &'v Value, path: &str) -> R<&'v Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => err(path, format!("expected an object, found {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'v>(m: &'v Map<String, Value>, key: &str, path: &str) -> R<&'v Value> {
    m.get(key).ok_or_else(|| ImportError { path: path.to_string(), reason: format!("missing `{key}`") })
}

fn string<'v>(v: &'v Value, path: &str) -> R<&'v str> {
    v.as_str().map_or_else(|| err(path, format!("expected a string, found {}", kind(v))), Ok)
}

fn array<'v>(v: &'v Value, path: &str) -> R<&'v Vec<Value>> {
    v.as_array().map_or_else(|| err(path, format!("expected an array, found {}", kind(v))), Ok)
}

/// Names follow the language: `[a-z_][a-z0-9_]*`, not a keyword.
fn ident(v: &Value, path: &str) -> R<Name> {
    let s = string(v, path)?;
    let ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok || KEYWORDS.contains(&s) {
        return err(path, format!("`{s}` is not a valid name ([a-z_][a-z0-9_]*, not a keyword)"));
    }
    Ok(name_of(s))
}

const KEYWORDS: &[&str] = &[
    "campaign", "segment", "template", "contact", "event", "channel", "import", "trigger", "audience", "send", "wait", "if", "else", "ab_test", "variant",
    "tag", "add", "remove", "end", "as", "fallback", "none", "and", "or", "not", "in", "has", "within", "where", "true", "false", "now",
];

fn event_name(v: &Value, path: &str) -> R<Name> {
    let s = string(v, path)?;
    let ok = !s.is_empty() && s.split('.').all(|p| p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    if !ok {
        return err(path, format!("`{s}` is not an event name like `order.completed`"));
    }
    Ok(name_of(s))
}

fn duration(v: &Value, path: &str) -> R<DurationLit> {
    let s = string(v, path)?;
    let mut parts = Vec::new();
    for p in s.split_whitespace() {
        let (n, unit) = p.split_at(p.len().saturating_sub(1));
        let unit = match unit {
            "m" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            "w" => DurationUnit::Week,
            _ => return err(path, format!("`{s}` is not a duration like `2d` or `1d 12h`")),
        };
        let Ok(n) = n.parse::<u64>() else { return err(path, format!("`{s}` is not a duration like `2d` or `1d 12h`")) };
        parts.push((n, unit));
    }
    if parts.is_empty() {
        return err(path, "empty duration");
    }
    Ok(DurationLit { parts, span: Span::default() })
}

fn date(v: &Value, path: &str, with_time: bool) -> R<DateLit> {
    let s = string(v, path)?;
    if with_time {
        let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"));
        return match t {
            Ok(t) => Ok(DateLit { date: t.date(), time: Some(t.time()), span: Span::default() }),
            Err(_) => err(path, format!("`{s}` is not a datetime like `2026-12-01 09:00`")),
        };
    }
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(DateLit { date: d, time: None, span: Span::default() }),
        Err(_) => err(path, format!("`{s}` is not a date like `2026-12-01`")),
    }
}

fn expr_of(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

/// Imports builder JSON text as formatted `.flow` source.
pub fn import(text: &str) -> Result<String, ImportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ImportError { path: "$".into(), reason: format!("invalid JSON: {e}") })?;
    let file = document(&v)?;
    Ok(crate::fmt::format(&file, ""))
}

fn document(v: &Value) -> R<SourceFile> {
    let root = obj(v, "$")?;
    match root.get("format") {
        Some(Value::String(f)) if f == super::FORMAT => {}
        Some(other) => return err("$.format", format!("expected \"{}\", found {other}", super::FORMAT)),
        None => return err("$", "missing `format`"),
    }
    let mut items = Vec::new();
    if let Some(imports) = root.get("imports") {
        for (i, p) in array(imports, "$.imports")?.iter().enumerate() {
            let path = string(p, &format!("$.imports[{i}]"))?;
            items.push(Item::Import(Import { path: StrLit { value: path.to_string(), span: Span::default() }, span: Span::default() }));
        }
    }
    let meta = obj(field(root, "campaign", "$")?, "$.campaign")?;
    let id = ident(field(meta, "id", "$.campaign")?, "$.campaign.id")?;
    let mut settings = Vec::new();
    if let Some(n) = meta.get("name").filter(|n| !n.is_null()) {
        settings.push(Setting::DisplayName(StrLit { value: string(n, "$.campaign.name")?.to_string(), span: Span::default() }, Span::default()));
    }
    let t = obj(field(root, "trigger", "$")?, "$.trigger")?;
    let kind = match string(field(t, "type", "$.trigger")?, "$.trigger.type")? {
        "SCHEDULED" => TriggerKind::Scheduled {
            at: date(field(t, "at", "$.trigger")?, "$.trigger.at", true)?,
            zone: StrLit { value: string(field(t, "timezone", "$.trigger")?, "$.trigger.timezone")?.to_string(), span: Span::default() },
        },
        "EVENT" => TriggerKind::Event {
            event: event_name(field(t, "event", "$.trigger")?, "$.trigger.event")?,
            filter: match t.get("where") {
                Some(w) if !w.is_null() => Some(expr(w, "$.trigger.where")?),
                _ => None,
            },
        },
        "MANUAL" => TriggerKind::Manual,
        "API" => TriggerKind::Api,
        other => return err("$.trigger.type", format!("expected SCHEDULED, EVENT, MANUAL or API, found `{other}`")),
    };
    settings.push(Setting::Trigger(Trigger { kind, span: Span::default() }));
    if let Some(a) = root.get("audience").filter(|a| !a.is_null()) {
        settings.push(Setting::Audience(expr(a, "$.audience")?, Span::default()));
    }
    let steps = timeline(field(root, "timeline", "$")?, "$.timeline", 0)?;
    items.push(Item::Campaign(Campaign { name: id, settings, steps, span: Span::default() }));
    Ok(SourceFile { items, comments: Vec::new() })
}

/// Deeper than this, a timeline is refused rather than recursed into.
const MAX_DEPTH: usize = 32;

fn timeline(v: &Value, path: &str, depth: usize) -> R<Vec<Step>> {
    if depth > MAX_DEPTH {
        return err(path, format!("timelines nest deeper than {MAX_DEPTH} levels"));
    }
    array(v, path)?.iter().enumerate().map(|(i, n)| node(n, &format!("{path}[{i}]"), depth)).collect()
}

fn target(v: &Value, path: &str) -> R<SendTarget> {
    let m = obj(v, path)?;
    let template = ident(field(m, "template", path)?, &format!("{path}.template"))?;
    let ch = m.get("channel").filter(|x| !x.is_null());
    let mt = m.get("message_type").filter(|x| !x.is_null());
    let channel = match (ch, mt) {
        (Some(c), Some(t)) => Some(ChannelMessage { channel: ident(c, &format!("{path}.channel"))?, message: ident(t, &format!("{path}.message_type"))?, span: Span::default() }),
        (None, None) => None,
        (Some(_), None) => return err(&format!("{path}.message_type"), "a channel needs its message type"),
        (None, Some(_)) => return err(&format!("{path}.channel"), "a message type needs its channel"),
    };
    Ok(SendTarget { channel, template, span: Span::default() })
}

fn node(v: &Value, path: &str, depth: usize) -> R<Step> {
    let m = obj(v, path)?;
    let id = string(field(m, "id", path)?, &format!("{path}.id"))?;
    // Structural ids (with `/`) mark unlabelled steps; anything else is a label.
    let label = if id.contains('/') { None } else { Some(ident(&Value::String(id.to_string()), &format!("{path}.id"))?) };
    let ty = string(field(m, "type", path)?, &format!("{path}.type"))?;
    let cpath = format!("{path}.config");
    let empty = Value::Object(Map::new());
    let config_v = m.get("config").unwrap_or(&empty);
    let config = obj(config_v, &cpath)?;
    let get = |k: &str| field(config, k, &cpath);
    let kind = match ty {
        "SEND" => {
            let target = target(config_v, &cpath)?;
            let fallback = match config.get("fallback") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s == "none" => Some(Fallback::None(Span::default())),
                Some(f @ Value::Object(_)) => Some(Fallback::To(self::target(f, &format!("{cpath}.fallback"))?)),
                Some(other) => return err(&format!("{cpath}.fallback"), format!("expected null, \"none\" or a target, found {}", kind(other))),
            };
            StepKind::Send(Send { target, fallback })
        }
        "WAIT" => StepKind::Wait(duration(get("duration")?, &format!("{cpath}.duration"))?),
        "CONDITION" => {
            let bpath = format!("{cpath}.branches");
            let branches = array(get("branches")?, &bpath)?;
            if branches.is_empty() {
                return err(&bpath, "a condition needs at least one branch");
            }
            let mut arms = Vec::new();
            for (k, b) in branches.iter().enumerate() {
                let p = format!("{bpath}[{k}]");
                let bm = obj(b, &p)?;
                let cond = expr(field(bm, "condition", &p)?, &format!("{p}.condition"))?;
                let steps = timeline(field(bm, "timeline", &p)?, &format!("{p}.timeline"), depth + 1)?;
                arms.push((cond, Block { steps, span: Span::default() }));
            }
            let otherwise = match config.get("else") {
                None | Some(Value::Null) => None,
                Some(e) => Some(Block { steps: timeline(e, &format!("{cpath}.else"), depth + 1)?, span: Span::default() }),
            };
            StepKind::If(If { arms, otherwise })
        }
        "AB_TEST" => {
            let name = ident(get("name")?, &format!("{cpath}.name"))?;
            let vpath = format!("{cpath}.variants");
            let mut variants = Vec::new();
            for (k, vv) in array(get("variants")?, &vpath)?.iter().enumerate() {
                let p = format!("{vpath}[{k}]");
                let vm = obj(vv, &p)?;
                let vname = ident(field(vm, "name", &p)?, &format!("{p}.name"))?;
                let w = field(vm, "weight", &p)?;
                let Some(wf) = w.as_f64() else { return err(&format!("{p}.weight"), format!("expected a number, found {}", kind(w))) };
                let bp = (wf * 100.0).round();
                if !(0.0..=10_000.0).contains(&bp) || (wf * 100.0 - bp).abs() > 1e-6 {
                    return err(&format!("{p}.weight"), format!("expected a percentage between 0 and 100 with at most two decimals, found {wf}"));
                }
                let steps = timeline(field(vm, "timeline", &p)?, &format!("{p}.timeline"), depth + 1)?;
                variants.push(Variant { name: vname, weight_bp: bp as u32, weight_span: Span::default(), block: Block { steps, span: Span::default() }, span: Span::default() });
            }
            StepKind::AbTest(AbTest { name, variants })
        }
        "TAG" => {
            let op = match string(get("action")?, &format!("{cpath}.action"))? {
                "add" => TagOp::Add,
                "remove" => TagOp::Remove,
                other => return err(&format!("{cpath}.action"), format!("expected add or remove, found `{other}`")),
            };
            StepKind::Tag { op, tag: StrLit { value: string(get("tag")?, &format!("{cpath}.tag"))?.to_string(), span: Span::default() } }
        }
        "END" => StepKind::End,
        other => return err(&format!("{path}.type"), format!("expected SEND, WAIT, CONDITION, AB_TEST, TAG or END, found `{other}`")),
    };
    Ok(Step { label, kind, span: Span::default() })
}

fn exprs(v: &Value, path: &str) -> R<Vec<Expr>> {
    array(v, path)?.iter().enumerate().map(|(i, x)| expr(x, &format!("{path}[{i}]"))).collect()
}

fn expr(v: &Value, path: &str) -> R<Expr> {
    expr_at(v, path, 0)
}

fn expr_at(v: &Value, path: &str, depth: usize) -> R<Expr> {
    if depth > 64 {
        return err(path, "conditions nest deeper than 64 levels");
    }
    let m = obj(v, path)?;
    if m.len() != 1 {
        return err(path, "a condition is an object with exactly one key naming its kind");
    }
    let Some((k, x)) = m.iter().next() else { return err(path, "empty condition") };
    let p = format!("{path}.{k}");
    let sub = |x: &Value, p: &str| expr_at(x, p, depth + 1);
    let kind = match k.as_str() {
        "or" | "and" => {
            let items: Vec<Expr> = array(x, &p)?.iter().enumerate().map(|(i, e)| sub(e, &format!("{p}[{i}]"))).collect::<R<_>>()?;
            if items.len() < 2 {
                return err(&p, "needs at least two operands");
            }
            if k == "or" {
                ExprKind::Or(items)
            } else {
                ExprKind::And(items)
            }
        }
        "not" => ExprKind::Not(Box::new(sub(x, &p)?)),
        "group" => ExprKind::Paren(Box::new(sub(x, &p)?)),
        "compare" => {
            let c = obj(x, &p)?;
            let op = match string(field(c, "op", &p)?, &format!("{p}.op"))? {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                other => return err(&format!("{p}.op"), format!("expected ==, !=, <, <=, > or >=, found `{other}`")),
            };
            ExprKind::Compare { op, lhs: Box::new(sub(field(c, "left", &p)?, &format!("{p}.left"))?), rhs: Box::new(sub(field(c, "right", &p)?, &format!("{p}.right"))?) }
        }
        "in" => {
            let c = obj(x, &p)?;
            ExprKind::In { lhs: Box::new(sub(field(c, "value", &p)?, &format!("{p}.value"))?), list: exprs(field(c, "list", &p)?, &format!("{p}.list"))? }
        }
        "has" => {
            let c = obj(x, &p)?;
            ExprKind::Has { lhs: Box::new(sub(field(c, "set", &p)?, &format!("{p}.set"))?), rhs: Box::new(sub(field(c, "value", &p)?, &format!("{p}.value"))?) }
        }
        "arith" => {
            let c = obj(x, &p)?;
            let first = sub(field(c, "first", &p)?, &format!("{p}.first"))?;
            let mut rest = Vec::new();
            for (i, r) in array(field(c, "rest", &p)?, &format!("{p}.rest"))?.iter().enumerate() {
                let rp = format!("{p}.rest[{i}]");
                let rm = obj(r, &rp)?;
                let op = match string(field(rm, "op", &rp)?, &format!("{rp}.op"))? {
                    "+" => ArithOp::Add,
                    "-" => ArithOp::Sub,
                    other => return err(&format!("{rp}.op"), format!("expected + or -, found `{other}`")),
                };
                rest.push((op, sub(field(rm, "value", &rp)?, &format!("{rp}.value"))?));
            }
            if rest.is_empty() {
                return err(&format!("{p}.rest"), "needs at least one term");
            }
            ExprKind::Arith { first: Box::new(first), rest }
        }
        "attribute" => ExprKind::Name(ident(x, &p)?),
        "predicate" => {
            let c = obj(x, &p)?;
            ExprKind::Call { func: ident(field(c, "name", &p)?, &format!("{p}.name"))?, arg: ident(field(c, "arg", &p)?, &format!("{p}.arg"))? }
        }
        "happened" => {
            let c = obj(x, &p)?;
            let within = match c.get("within") {
                None | Some(Value::Null) => None,
                Some(d) => Some(duration(d, &format!("{p}.within"))?),
            };
            let filter = match c.get("where") {
                None | Some(Value::Null) => Vec::new(),
                Some(w) => exprs(w, &format!("{p}.where"))?,
            };
            ExprKind::Happened { event: event_name(field(c, "event", &p)?, &format!("{p}.event"))?, within, filter }
        }
        "bool" => ExprKind::Bool(x.as_bool().map_or_else(|| err(&p, format!("expected a boolean, found {}", kind(x))), Ok)?),
        "number" => {
            let Some(n) = x.as_f64() else { return err(&p, format!("expected a number, found {}", kind(x))) };
            ExprKind::Number { value: n, text: crate::syntax::print::number(n, "") }
        }
        "string" => ExprKind::Str(string(x, &p)?.to_string()),
        "duration" => ExprKind::Duration(duration(x, &p)?),
        "date" => ExprKind::Date(date(x, &p, false)?),
        "datetime" => ExprKind::Date(date(x, &p, true)?),
        "now" => ExprKind::Now,
        "none" => ExprKind::None,
        other => return err(path, format!("unknown condition kind `{other}`")),
    };
    Ok(expr_of(kind))
}
