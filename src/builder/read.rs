//! Importing builder JSON: the document and its timeline, read into a syntax
//! tree and printed with `fmt`. Import checks the shape; `flowc check` then
//! checks the meaning. Every key is known (a misspelt one is an error, not
//! ignored), and node ids must be what export would have written there.

use super::cond;
use super::value::*;
use crate::source::Span;
use crate::syntax::ast::*;
use crate::syntax::MAX_NESTING;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Imports builder JSON text as formatted `.flow` source.
pub fn import(text: &str) -> Result<String, ImportError> {
    let v = super::json::parse(text)?;
    let file = Reader::default().document(&v)?;
    Ok(crate::fmt::format(&file, ""))
}

fn str_lit(s: &str) -> StrLit {
    StrLit { value: s.to_string(), span: Span::default() }
}

/// The text of `e`, `braces` deep, must stay within what the parser reads
/// back (braces, brackets and parentheses together).
fn fits(e: &Expr, braces: usize, path: &str) -> R<()> {
    let depth = braces + crate::syntax::nesting(&crate::syntax::print::expr(e));
    if depth > MAX_NESTING {
        return err(path, too_deep());
    }
    Ok(())
}

fn too_deep() -> String {
    format!("nests deeper than .flow allows ({MAX_NESTING} levels of braces, brackets and parentheses)")
}

/// A condition `braces` deep in the text.
fn condition(v: &Value, path: &str, braces: usize) -> R<Expr> {
    let e = cond::read(v, path)?;
    fits(&e, braces, path)?;
    Ok(e)
}

#[derive(Default)]
struct Reader {
    /// Each node id seen so far, with the JSON path of its node.
    ids: HashMap<String, String>,
}

impl Reader {
    fn document(&mut self, v: &Value) -> R<SourceFile> {
        let root = closed(v, "$", &["format", "imports", "campaign", "trigger", "audience", "settings", "timeline"])?;
        match root.get("format") {
            Some(Value::String(f)) if f == super::FORMAT => {}
            Some(other) => return err("$.format", format!("expected \"{}\", found {other}", super::FORMAT)),
            None => return err("$", "missing `format`"),
        }
        let mut items = Vec::new();
        if let Some(imports) = root.get("imports") {
            for (i, p) in array(imports, "$.imports")?.iter().enumerate() {
                let path = string(p, &format!("$.imports[{i}]"))?;
                items.push(Item::Import(Import { path: str_lit(path), span: Span::default() }));
            }
        }
        let meta = closed(field(root, "campaign", "$")?, "$.campaign", &["id", "name"])?;
        let id = ident(field(meta, "id", "$.campaign")?, "$.campaign.id")?;
        let mut settings = Vec::new();
        if let Some(n) = optional(meta, "name") {
            settings.push(Setting::DisplayName(str_lit(string(n, "$.campaign.name")?), Span::default()));
        }
        settings
            .push(Setting::Trigger(Trigger { kind: trigger(field(root, "trigger", "$")?)?, span: Span::default() }));
        if let Some(a) = optional(root, "audience") {
            settings.push(Setting::Audience(condition(a, "$.audience", 1)?, Span::default()));
        }
        if let Some(s) = optional(root, "settings") {
            settings.extend(campaign_settings(s)?);
        }
        let steps = self.timeline(field(root, "timeline", "$")?, "$.timeline", &id.text, 1)?;
        items.push(Item::Campaign(Campaign { name: id, settings, steps, span: Span::default() }));
        Ok(SourceFile { items, comments: Vec::new() })
    }

    /// The steps of a block whose structural id is `parent` and whose steps
    /// stand `braces` deep in the text.
    fn timeline(&mut self, v: &Value, path: &str, parent: &str, braces: usize) -> R<Vec<Step>> {
        if braces > MAX_NESTING {
            return err(path, too_deep());
        }
        let nodes = array(v, path)?;
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| self.node(n, &format!("{path}[{i}]"), &format!("{parent}/{}", i + 1), braces))
            .collect()
    }

    /// One step; `structural` is the id an unlabelled step has here.
    fn node(&mut self, v: &Value, path: &str, structural: &str, braces: usize) -> R<Step> {
        let m = closed(v, path, &["id", "type", "config"])?;
        let id_path = format!("{path}.id");
        let id = string(field(m, "id", path)?, &id_path)?;
        // Structural ids (with `/`) mark unlabelled steps and are fixed by
        // position: renumbering one silently would change which step a
        // running contact is on.
        let label = if id.contains('/') {
            if id != structural {
                return err(&id_path, format!("`{id}` is not the structural id of the step at this position (`{structural}`); use that, or a label"));
            }
            None
        } else {
            Some(ident(&Value::String(id.to_string()), &id_path)?)
        };
        if let Some(first) = self.ids.insert(id.to_string(), path.to_string()) {
            return err(&id_path, format!("`{id}` is already the id of {first}; step ids are unique"));
        }
        let ty = string(field(m, "type", path)?, &format!("{path}.type"))?;
        let cpath = format!("{path}.config");
        let empty = Value::Object(Map::new());
        let config_v = m.get("config").unwrap_or(&empty);
        let kind = match ty {
            "SEND" => {
                let config = closed(config_v, &cpath, &["channel", "message_type", "template", "fallback"])?;
                let fallback = match config.get("fallback") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s == "none" => Some(Fallback::None(Span::default())),
                    Some(f @ Value::Object(_)) => Some(Fallback::To(target(
                        closed(f, &format!("{cpath}.fallback"), &["channel", "message_type", "template"])?,
                        &format!("{cpath}.fallback"),
                    )?)),
                    Some(other) => {
                        return err(
                            &format!("{cpath}.fallback"),
                            format!("expected null, \"none\" or a target, found {}", kind(other)),
                        )
                    }
                };
                StepKind::Send(Send { target: target(config, &cpath)?, fallback })
            }
            "WAIT" => {
                let config = closed(config_v, &cpath, &["duration"])?;
                StepKind::Wait(duration(field(config, "duration", &cpath)?, &format!("{cpath}.duration"))?)
            }
            "CONDITION" => self.condition_step(closed(config_v, &cpath, &["branches", "else"])?, &cpath, id, braces)?,
            "AB_TEST" => self.ab_test(closed(config_v, &cpath, &["name", "variants"])?, &cpath, id, braces)?,
            "WAIT_UNTIL" => self.wait_until(closed(config_v, &cpath, &["paths", "form"])?, &cpath, id, braces)?,
            "SET" => {
                let config = closed(config_v, &cpath, &["field", "value"])?;
                let field_name = ident(field(config, "field", &cpath)?, &format!("{cpath}.field"))?;
                let value = condition(field(config, "value", &cpath)?, &format!("{cpath}.value"), braces)?;
                StepKind::Set { field: field_name, value }
            }
            "TAG" => {
                let config = closed(config_v, &cpath, &["action", "tag"])?;
                let op = match string(field(config, "action", &cpath)?, &format!("{cpath}.action"))? {
                    "add" => TagOp::Add,
                    "remove" => TagOp::Remove,
                    other => {
                        return err(&format!("{cpath}.action"), format!("expected add or remove, found `{other}`"))
                    }
                };
                StepKind::Tag { op, tag: str_lit(string(field(config, "tag", &cpath)?, &format!("{cpath}.tag"))?) }
            }
            "END" => {
                closed(config_v, &cpath, &[])?;
                StepKind::End
            }
            other => {
                return err(
                    &format!("{path}.type"),
                    format!("expected SEND, WAIT, WAIT_UNTIL, CONDITION, AB_TEST, TAG, SET or END, found `{other}`"),
                )
            }
        };
        Ok(Step { label, kind, span: Span::default() })
    }

    fn condition_step(&mut self, config: &Map<String, Value>, cpath: &str, id: &str, braces: usize) -> R<StepKind> {
        let bpath = format!("{cpath}.branches");
        let branches = array(field(config, "branches", cpath)?, &bpath)?;
        if branches.is_empty() {
            return err(&bpath, "a condition needs at least one branch");
        }
        let mut arms = Vec::new();
        for (k, b) in branches.iter().enumerate() {
            let p = format!("{bpath}[{k}]");
            let bm = closed(b, &p, &["condition", "timeline"])?;
            let cond = condition(field(bm, "condition", &p)?, &format!("{p}.condition"), braces)?;
            let arm = if k == 0 { "then".to_string() } else { format!("elif{k}") };
            let steps = self.timeline(
                field(bm, "timeline", &p)?,
                &format!("{p}.timeline"),
                &format!("{id}/{arm}"),
                braces + 1,
            )?;
            arms.push((cond, Block { steps, span: Span::default() }));
        }
        let otherwise = match optional(config, "else") {
            None => None,
            Some(e) => Some(Block {
                steps: self.timeline(e, &format!("{cpath}.else"), &format!("{id}/else"), braces + 1)?,
                span: Span::default(),
            }),
        };
        Ok(StepKind::If(If { arms, otherwise }))
    }

    fn ab_test(&mut self, config: &Map<String, Value>, cpath: &str, id: &str, braces: usize) -> R<StepKind> {
        let name = ident(field(config, "name", cpath)?, &format!("{cpath}.name"))?;
        let vpath = format!("{cpath}.variants");
        let mut variants = Vec::new();
        for (k, vv) in array(field(config, "variants", cpath)?, &vpath)?.iter().enumerate() {
            let p = format!("{vpath}[{k}]");
            let vm = closed(vv, &p, &["name", "weight", "timeline"])?;
            let vname = ident(field(vm, "name", &p)?, &format!("{p}.name"))?;
            let w = field(vm, "weight", &p)?;
            let Some(wf) = w.as_f64() else {
                return err(&format!("{p}.weight"), format!("expected a number, found {}", kind(w)));
            };
            let bp = (wf * 100.0).round();
            if !(0.0..=10_000.0).contains(&bp) || (wf * 100.0 - bp).abs() > 1e-6 {
                return err(
                    &format!("{p}.weight"),
                    format!("expected a percentage between 0 and 100 with at most two decimals, found {wf}"),
                );
            }
            // `ab_test t {` then `variant v 50% {`: the steps are two braces in.
            let steps = self.timeline(
                field(vm, "timeline", &p)?,
                &format!("{p}.timeline"),
                &format!("{id}/{}", vname.text),
                braces + 2,
            )?;
            variants.push(Variant {
                name: vname,
                weight_bp: bp as u32,
                weight_span: Span::default(),
                block: Block { steps, span: Span::default() },
                span: Span::default(),
            });
        }
        Ok(StepKind::AbTest(AbTest { name, variants }))
    }
}

impl Reader {
    /// `WAIT_UNTIL`: `paths` holds the `when` paths in order, then at most
    /// one `timeout` path, last. A missing timeout is left for `flowc check`
    /// to report (`missing-timeout`), as in text.
    fn wait_until(&mut self, config: &Map<String, Value>, cpath: &str, id: &str, braces: usize) -> R<StepKind> {
        let ppath = format!("{cpath}.paths");
        let mut arms = Vec::new();
        let mut timeout = None;
        for (k, pv) in array(field(config, "paths", cpath)?, &ppath)?.iter().enumerate() {
            let p = format!("{ppath}[{k}]");
            let m = obj(pv, &p)?;
            if timeout.is_some() {
                return err(&p, "the timeout path comes last");
            }
            // `wait until {` then `when … {`: the steps are two braces in.
            if let Some(d) = optional(m, "timeout") {
                let m = closed(pv, &p, &["timeout", "timeline"])?;
                let duration = duration(d, &format!("{p}.timeout"))?;
                let steps = self.timeline(
                    field(m, "timeline", &p)?,
                    &format!("{p}.timeline"),
                    &format!("{id}/timeout"),
                    braces + 2,
                )?;
                timeout = Some(Timeout { duration, block: block(steps), span: Span::default() });
                continue;
            }
            let m = closed(pv, &p, &["when", "timeline"])?;
            let cond = arm_cond(field(m, "when", &p)?, &format!("{p}.when"), braces + 1)?;
            let steps = self.timeline(
                field(m, "timeline", &p)?,
                &format!("{p}.timeline"),
                &format!("{id}/when{}", arms.len() + 1),
                braces + 2,
            )?;
            arms.push(WhenArm { cond, block: block(steps), span: Span::default() });
        }
        // `"form": "short"` keeps how the text wrote it: one event path and a
        // timeout, both empty.
        let form = match optional(config, "form") {
            None => WaitForm::Arms,
            Some(f) => match string(f, &format!("{cpath}.form"))? {
                "short" => {
                    let short = matches!(arms.as_slice(), [WhenArm { cond: ArmCond::Event(_), block, .. }] if block.steps.is_empty())
                        && timeout.as_ref().is_none_or(|t| t.block.steps.is_empty());
                    if !short {
                        return err(
                            &format!("{cpath}.form"),
                            "the short form has one event path and a timeout, both with empty timelines",
                        );
                    }
                    WaitForm::Short
                }
                other => return err(&format!("{cpath}.form"), format!("expected \"short\", found `{other}`")),
            },
        };
        Ok(StepKind::WaitUntil(WaitUntil { arms, timeout, form, head: Span::default() }))
    }
}

fn block(steps: Vec<Step>) -> Block {
    Block { steps, span: Span::default() }
}

/// `{"event": NAME, "where": [...]}`.
fn event_match(m: &Map<String, Value>, path: &str, braces: usize) -> R<EventMatch> {
    let event = event_name(field(m, "event", path)?, &format!("{path}.event"))?;
    let filter = match optional(m, "where") {
        None => Vec::new(),
        Some(w) => {
            let wpath = format!("{path}.where");
            let list = array(w, &wpath)?;
            let mut filter = Vec::with_capacity(list.len());
            for (i, x) in list.iter().enumerate() {
                filter.push(condition(x, &format!("{wpath}[{i}]"), braces)?);
            }
            filter
        }
    };
    Ok(EventMatch { event, filter, span: Span::default() })
}

/// A `when` path's or an exit's condition: an event, or `{"condition": …}`.
fn arm_cond(v: &Value, path: &str, braces: usize) -> R<ArmCond> {
    let m = obj(v, path)?;
    if m.contains_key("condition") {
        let m = closed(v, path, &["condition"])?;
        return Ok(ArmCond::State(condition(field(m, "condition", path)?, &format!("{path}.condition"), braces)?));
    }
    let m = closed(v, path, &["event", "where"])?;
    Ok(ArmCond::Event(event_match(m, path, braces)?))
}

/// `settings`: `goal` (an object, or a list when the text had several),
/// `exits`, `on_ineligible`.
fn campaign_settings(v: &Value) -> R<Vec<Setting>> {
    let m = closed(v, "$.settings", &["goal", "exits", "on_ineligible", "quiet_hours", "reentry", "rate_limit"])?;
    let mut out = Vec::new();
    if let Some(g) = optional(m, "goal") {
        let goals: Vec<(&Value, String)> = match g {
            Value::Array(list) => list.iter().enumerate().map(|(i, x)| (x, format!("$.settings.goal[{i}]"))).collect(),
            other => vec![(other, "$.settings.goal".to_string())],
        };
        for (g, path) in goals {
            let gm = closed(g, &path, &["event", "where", "within"])?;
            let event = event_match(gm, &path, 1)?;
            let within = duration(field(gm, "within", &path)?, &format!("{path}.within"))?;
            out.push(Setting::Goal(Goal { event, within, span: Span::default() }));
        }
    }
    if let Some(e) = optional(m, "exits") {
        for (i, x) in array(e, "$.settings.exits")?.iter().enumerate() {
            out.push(Setting::Exit(arm_cond(x, &format!("$.settings.exits[{i}]"), 1)?, Span::default()));
        }
    }
    if let Some(w) = optional(m, "on_ineligible") {
        let what = match string(w, "$.settings.on_ineligible")? {
            "skip" => Ineligible::Skip,
            "continue" => Ineligible::Continue,
            other => return err("$.settings.on_ineligible", format!("expected skip or continue, found `{other}`")),
        };
        out.push(Setting::OnIneligible(what, Span::default()));
    }
    if let Some(q) = optional(m, "quiet_hours") {
        out.push(Setting::QuietHours(quiet_hours(q)?));
    }
    if let Some(r) = optional(m, "reentry") {
        out.push(Setting::Reentry(reentry(r)?, Span::default()));
    }
    if let Some(r) = optional(m, "rate_limit") {
        let path = "$.settings.rate_limit";
        let rm = closed(r, path, &["count", "per"])?;
        let count = count(field(rm, "count", path)?, &format!("{path}.count"))?;
        let per = match string(field(rm, "per", path)?, &format!("{path}.per"))? {
            "second" => RatePer::Second,
            "minute" => RatePer::Minute,
            "hour" => RatePer::Hour,
            other => return err(&format!("{path}.per"), format!("expected second, minute or hour, found `{other}`")),
        };
        out.push(Setting::RateLimit(RateLimit { count, per, span: Span::default() }));
    }
    Ok(out)
}

/// `{"start": "21:00", "end": "08:00", "then": "hold" | "skip"}`; `then` may be left out (hold).
fn quiet_hours(v: &Value) -> R<QuietHours> {
    let path = "$.settings.quiet_hours";
    let m = closed(v, path, &["start", "end", "then"])?;
    let start = clock(field(m, "start", path)?, &format!("{path}.start"))?;
    let end = clock(field(m, "end", path)?, &format!("{path}.end"))?;
    let then = match optional(m, "then").map(|t| string(t, &format!("{path}.then"))).transpose()? {
        None | Some("hold") => QuietThen::Hold,
        Some("skip") => QuietThen::Skip,
        Some(other) => return err(&format!("{path}.then"), format!("expected hold or skip, found `{other}`")),
    };
    Ok(QuietHours { start, end, then, span: Span::default() })
}

/// A time of day: digits, `:`, digits (the checker says whether it is a real `HH:MM`).
fn clock(v: &Value, path: &str) -> R<Clock> {
    let text = string(v, path)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.split_once(':') {
        Some((h, m)) if digits(h) && digits(m) => Ok(Clock { text: text.to_string(), span: Span::default() }),
        _ => err(path, format!("expected a time of day like \"21:00\", found \"{text}\"")),
    }
}

/// `"once"`, `"always"` or `{"after": "30d"}`.
fn reentry(v: &Value) -> R<Reentry> {
    let path = "$.settings.reentry";
    match v {
        Value::String(s) if s == "once" => Ok(Reentry::Once),
        Value::String(s) if s == "always" => Ok(Reentry::Always),
        Value::Object(_) => {
            let m = closed(v, path, &["after"])?;
            Ok(Reentry::After(duration(field(m, "after", path)?, &format!("{path}.after"))?))
        }
        other => err(path, format!("expected \"once\", \"always\" or {{\"after\": \"30d\"}}, found {other}")),
    }
}

/// A whole number of 0 or more (the checker says which counts make sense).
fn count(v: &Value, path: &str) -> R<Count> {
    match v.as_u64() {
        Some(value) => Ok(Count { value, span: Span::default() }),
        None => err(path, format!("expected a whole number, found {v}")),
    }
}

fn trigger(v: &Value) -> R<TriggerKind> {
    let t = obj(v, "$.trigger")?;
    let ty = string(field(t, "type", "$.trigger")?, "$.trigger.type")?;
    let keys: &[&str] = match ty {
        "SCHEDULED" => &["type", "at", "timezone"],
        "EVENT" => &["type", "event", "where"],
        "MANUAL" | "API" => &["type"],
        other => return err("$.trigger.type", format!("expected SCHEDULED, EVENT, MANUAL or API, found `{other}`")),
    };
    let t = closed(v, "$.trigger", keys)?;
    Ok(match ty {
        "SCHEDULED" => TriggerKind::Scheduled {
            at: date(field(t, "at", "$.trigger")?, "$.trigger.at", DateForm::DateTime)?,
            zone: str_lit(string(field(t, "timezone", "$.trigger")?, "$.trigger.timezone")?),
        },
        "EVENT" => TriggerKind::Event {
            event: event_name(field(t, "event", "$.trigger")?, "$.trigger.event")?,
            filter: optional(t, "where").map(|w| condition(w, "$.trigger.where", 1)).transpose()?,
        },
        "MANUAL" => TriggerKind::Manual,
        _ => TriggerKind::Api,
    })
}

fn target(m: &Map<String, Value>, path: &str) -> R<SendTarget> {
    let template = ident(field(m, "template", path)?, &format!("{path}.template"))?;
    let channel = match (optional(m, "channel"), optional(m, "message_type")) {
        (Some(c), Some(t)) => Some(ChannelMessage {
            channel: ident(c, &format!("{path}.channel"))?,
            message: ident(t, &format!("{path}.message_type"))?,
            span: Span::default(),
        }),
        (None, None) => None,
        (Some(_), None) => return err(&format!("{path}.message_type"), "a channel needs its message type"),
        (None, Some(_)) => return err(&format!("{path}.channel"), "a message type needs its channel"),
    };
    Ok(SendTarget { channel, template, span: Span::default() })
}
