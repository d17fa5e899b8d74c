//! Lowering a checked campaign to a flat `Program`.
//!
//! Blocks are emitted in source order and every edge points forward: a step's
//! successor is patched once the next step is emitted ("holes"), so the
//! program is acyclic by construction and every execution terminates.

use super::program::*;
use crate::check::model::{self, ArithOp, Model, StepKind, TExpr, TKind, Type, Value};
use crate::source::SourceText;
use std::collections::HashMap;

/// A successor slot still waiting for its target.
#[derive(Clone, Copy)]
enum Hole {
    Next(usize),
    Then(usize),
    Otherwise(usize),
    Variant(usize, usize),
}

const UNSET: NodeIdx = NodeIdx(u32::MAX);

struct Lower<'m> {
    model: &'m Model,
    source: &'m SourceText,
    nodes: Vec<Node>,
    fields: Vec<FieldDef>,
    field_slots: HashMap<String, FieldSlot>,
    segments: Vec<SegmentDef>,
    segment_idx: HashMap<String, SegmentIdx>,
}

/// Compiles one checked campaign. The model must be free of errors (the
/// checker's verdict): names are assumed resolved.
pub fn compile(model: &Model, campaign: &model::Campaign, source: &SourceText) -> Program {
    let mut cx = Lower {
        model,
        source,
        nodes: Vec::new(),
        fields: Vec::new(),
        field_slots: HashMap::new(),
        segments: Vec::new(),
        segment_idx: HashMap::new(),
    };
    let trigger = match &campaign.trigger {
        model::Trigger::Scheduled { at, zone } => {
            Trigger::Scheduled { at: at.format(SCHEDULE_FORMAT).to_string(), zone: zone.clone() }
        }
        model::Trigger::Event { event, filter } => {
            let props = cx.props_of(event);
            let filter = filter.as_ref().map(|f| cx.cond(f, &props));
            Trigger::Event { event: event.clone(), props, filter }
        }
        model::Trigger::Manual | model::Trigger::Missing => Trigger::Manual,
        model::Trigger::Api => Trigger::Api,
    };
    let audience = campaign.audience.as_ref().map(|a| cx.cond(a, &[]));
    let goal =
        campaign.goal.as_ref().map(|g| Goal { event: cx.event_match(&g.event), within_minutes: g.within_minutes });
    let exits = campaign
        .exits
        .iter()
        .map(|e| match e {
            model::ArmCond::Event(m) => Exit::Event { event: cx.event_match(m) },
            model::ArmCond::State(c) => Exit::State { cond: cx.cond(c, &[]) },
        })
        .collect();
    let on_ineligible = match campaign.on_ineligible {
        model::OnIneligible::Skip => OnIneligible::Skip,
        model::OnIneligible::Continue => OnIneligible::Continue,
    };
    let (_, holes) = cx.block(&campaign.steps);
    if !holes.is_empty() || cx.nodes.is_empty() {
        let end = cx.push(model::StepId(format!("{}/end", campaign.name)), campaign.span.end as usize, Op::End);
        cx.patch(&holes, end);
    }
    let mut program = Program {
        campaign: campaign.name.clone(),
        display_name: campaign.display_name.clone(),
        version: Version(String::new()),
        trigger,
        audience,
        fields: cx.fields,
        segments: cx.segments,
        nodes: cx.nodes,
        goal,
        exits,
        on_ineligible,
        delivery: delivery(model, &campaign.delivery),
    };
    program.version = super::codec::content_hash(&program);
    program
}

impl Lower<'_> {
    fn push(&mut self, id: model::StepId, at: usize, op: Op) -> NodeIdx {
        let line = self.source.line_col(at).line as u32;
        self.nodes.push(Node { id, line, span: (at as u32, at as u32), op });
        NodeIdx(self.nodes.len() as u32 - 1)
    }

    fn patch(&mut self, holes: &[Hole], target: NodeIdx) {
        for h in holes {
            match *h {
                Hole::Next(i) => match &mut self.nodes[i].op {
                    Op::Send { next, .. } | Op::Wait { next, .. } | Op::Tag { next, .. } | Op::Set { next, .. } => {
                        *next = target
                    }
                    Op::Jump { target: t } => *t = target,
                    _ => {}
                },
                Hole::Then(i) => {
                    if let Op::Branch { then, .. } = &mut self.nodes[i].op {
                        *then = target;
                    }
                }
                Hole::Otherwise(i) => {
                    if let Op::Branch { otherwise, .. } = &mut self.nodes[i].op {
                        *otherwise = target;
                    }
                }
                Hole::Variant(i, v) => {
                    if let Op::Split { variants, .. } = &mut self.nodes[i].op {
                        variants[v].target = target;
                    }
                }
            }
        }
    }

    /// Emits a block; returns its entry (if it has steps) and its open exits.
    fn block(&mut self, steps: &[model::Step]) -> (Option<NodeIdx>, Vec<Hole>) {
        let mut entry = None;
        let mut open: Vec<Hole> = Vec::new();
        for s in steps {
            let (e, out) = self.step(s);
            self.patch(&open, e);
            entry.get_or_insert(e);
            open = out;
        }
        (entry, open)
    }

    /// A block that must have an entry: an empty one becomes a `JUMP` whose id
    /// is the block's path plus `/0` (its steps are numbered from 1, so this
    /// never collides).
    fn arm(&mut self, steps: &[model::Step], path: String, at: usize) -> (NodeIdx, Vec<Hole>) {
        match self.block(steps) {
            (Some(e), holes) => (e, holes),
            (None, _) => {
                let j = self.push(model::StepId(format!("{path}/0")), at, Op::Jump { target: UNSET });
                (j, vec![Hole::Next(j.get())])
            }
        }
    }

    fn step(&mut self, s: &model::Step) -> (NodeIdx, Vec<Hole>) {
        let at = s.span.start as usize;
        let set_span = |nodes: &mut Vec<Node>, i: NodeIdx| {
            nodes[i.get()].span = (s.span.start, s.span.end);
        };
        match &s.kind {
            StepKind::Send { target, fallback, .. } => {
                let op = Op::Send {
                    target: self.target(target),
                    fallback: fallback.as_ref().map(|f| self.target(f)),
                    next: UNSET,
                };
                let i = self.push(s.id.clone(), at, op);
                set_span(&mut self.nodes, i);
                (i, vec![Hole::Next(i.get())])
            }
            StepKind::Wait { minutes } => {
                let i = self.push(s.id.clone(), at, Op::Wait { minutes: *minutes, next: UNSET });
                set_span(&mut self.nodes, i);
                (i, vec![Hole::Next(i.get())])
            }
            StepKind::Tag { add, tag } => {
                let i = self.push(s.id.clone(), at, Op::Tag { add: *add, tag: tag.clone(), next: UNSET });
                set_span(&mut self.nodes, i);
                (i, vec![Hole::Next(i.get())])
            }
            StepKind::Set { field, value } => {
                let slot = self.field(field);
                let value = match self.model.contact.get(field).map(|f| &f.ty) {
                    Some(Type::Bool) if value.ty != Type::None => SetValue::Cond { cond: self.cond(value, &[]) },
                    _ => SetValue::Operand { operand: self.operand(value, &[]) },
                };
                let i = self.push(s.id.clone(), at, Op::Set { field: field.clone(), slot, value, next: UNSET });
                set_span(&mut self.nodes, i);
                (i, vec![Hole::Next(i.get())])
            }
            StepKind::End => {
                let i = self.push(s.id.clone(), at, Op::End);
                set_span(&mut self.nodes, i);
                (i, vec![])
            }
            StepKind::If { arms, otherwise } => {
                let mut exits = Vec::new();
                let mut entry = None;
                let mut pending_otherwise: Option<usize> = None;
                for (k, (cond, body)) in arms.iter().enumerate() {
                    let id = if k == 0 { s.id.clone() } else { model::StepId(format!("{}/elif{k}", s.id)) };
                    let cond = self.cond(cond, &[]);
                    let b = self.push(id, at, Op::Branch { cond, then: UNSET, otherwise: UNSET });
                    set_span(&mut self.nodes, b);
                    if let Some(prev) = pending_otherwise.take() {
                        self.patch(&[Hole::Otherwise(prev)], b);
                    }
                    entry.get_or_insert(b);
                    let arm_name = if k == 0 { "then".to_string() } else { format!("elif{k}") };
                    let (e, holes) = self.arm(body, format!("{}/{arm_name}", s.id), at);
                    self.patch(&[Hole::Then(b.get())], e);
                    exits.extend(holes);
                    pending_otherwise = Some(b.get());
                }
                if let Some(last) = pending_otherwise {
                    match self.block(otherwise) {
                        (Some(e), holes) => {
                            self.patch(&[Hole::Otherwise(last)], e);
                            exits.extend(holes);
                        }
                        (None, _) => exits.push(Hole::Otherwise(last)),
                    }
                }
                (entry.unwrap_or(UNSET), exits)
            }
            StepKind::WaitUntil { arms, timeout_minutes, timeout } => {
                let ons = arms
                    .iter()
                    .map(|a| WaitArm {
                        on: match &a.on {
                            model::ArmCond::Event(m) => WaitOn::Event { event: self.event_match(m) },
                            model::ArmCond::State(c) => WaitOn::State { cond: self.cond(c, &[]) },
                        },
                        target: UNSET,
                    })
                    .collect();
                let op = Op::WaitUntil { arms: ons, timeout_minutes: *timeout_minutes, timeout: UNSET };
                let wait = self.push(s.id.clone(), at, op);
                set_span(&mut self.nodes, wait);
                let mut exits = Vec::new();
                // Each path opens with a `Jump` named after it (`<id>/when1`,
                // `<id>/timeout`), so reports count who took it even when its
                // block is empty.
                let paths = arms.iter().enumerate().map(|(k, a)| (format!("when{}", k + 1), &a.steps));
                for (k, (name, steps)) in paths.chain([("timeout".to_string(), timeout)]).enumerate() {
                    let jump = self.push(model::StepId(format!("{}/{name}", s.id)), at, Op::Jump { target: UNSET });
                    if let Op::WaitUntil { arms, timeout, .. } = &mut self.nodes[wait.get()].op {
                        match arms.get_mut(k) {
                            Some(arm) => arm.target = jump,
                            None => *timeout = jump,
                        }
                    }
                    match self.block(steps) {
                        (Some(e), holes) => {
                            self.patch(&[Hole::Next(jump.get())], e);
                            exits.extend(holes);
                        }
                        (None, _) => exits.push(Hole::Next(jump.get())),
                    }
                }
                (wait, exits)
            }
            StepKind::AbTest { name, variants } => {
                let vs = variants
                    .iter()
                    .map(|v| Variant { name: v.name.clone(), weight_bp: v.weight_bp, target: UNSET })
                    .collect();
                let split = self.push(s.id.clone(), at, Op::Split { name: name.clone(), variants: vs });
                set_span(&mut self.nodes, split);
                let mut exits = Vec::new();
                for (k, v) in variants.iter().enumerate() {
                    let (e, holes) = self.arm(&v.steps, format!("{}/{}", s.id, v.name), at);
                    self.patch(&[Hole::Variant(split.get(), k)], e);
                    exits.extend(holes);
                }
                (split, exits)
            }
        }
    }

    fn target(&self, t: &model::SendTarget) -> SendTarget {
        let channel = self.model.channels.get(&t.channel);
        SendTarget {
            channel: t.channel.clone(),
            message: t.message.clone(),
            template: t.template.clone(),
            requires_consent: channel.and_then(|c| c.messages.get(&t.message)).is_some_and(|m| m.requires_consent),
            requires_capability: channel.is_some_and(|c| c.requires_capability),
            price_micros: self.model.pricing.get(&(t.channel.clone(), t.message.clone())).map_or(0, |p| p.micros),
        }
    }

    /// `event NAME [where …]`: the filter reads the event's properties by index.
    fn event_match(&mut self, m: &model::EventMatch) -> EventMatch {
        let props = self.props_of(&m.event);
        let filter = m.filter.iter().map(|f| self.cond(f, &props)).collect();
        EventMatch { event: m.event.clone(), props, filter }
    }

    fn props_of(&self, event: &str) -> Vec<String> {
        self.model.events.get(event).map(|e| e.fields.keys().cloned().collect()).unwrap_or_default()
    }

    fn field(&mut self, name: &str) -> FieldSlot {
        if let Some(s) = self.field_slots.get(name) {
            return *s;
        }
        let (ty, optional) = match self.model.contact.get(name) {
            Some(f) => (field_type(&f.ty), f.optional),
            None => (FieldType::String, true),
        };
        let slot = FieldSlot(self.fields.len() as u16);
        self.fields.push(FieldDef { name: name.to_string(), ty, optional });
        self.field_slots.insert(name.to_string(), slot);
        slot
    }

    fn segment(&mut self, name: &str) -> SegmentIdx {
        if let Some(i) = self.segment_idx.get(name) {
            return *i;
        }
        // Dependencies are lowered first, so a segment only refers to lower indices.
        let cond = match self.model.segments.get(name) {
            Some(seg) => {
                let expr = seg.expr.clone();
                self.cond(&expr, &[])
            }
            None => Cond::Const { value: false },
        };
        let idx = SegmentIdx(self.segments.len() as u16);
        self.segments.push(SegmentDef { name: name.to_string(), cond });
        self.segment_idx.insert(name.to_string(), idx);
        idx
    }

    fn cond(&mut self, e: &TExpr, props: &[String]) -> Cond {
        match &e.kind {
            TKind::And(v) => Cond::And { all: v.iter().map(|x| self.cond(x, props)).collect() },
            TKind::Or(v) => Cond::Or { any: v.iter().map(|x| self.cond(x, props)).collect() },
            TKind::Not(x) => Cond::Not { cond: Box::new(self.cond(x, props)) },
            TKind::Compare { op, lhs, rhs } => {
                // `date_field == 2026-01-01 09:00` compares as datetimes.
                Cond::Cmp { op: (*op).into(), lhs: self.operand(lhs, props), rhs: self.operand(rhs, props) }
            }
            TKind::In { lhs, list } => {
                let lhs = self.operand(lhs, props);
                let list = list
                    .iter()
                    .filter_map(|x| if let TKind::Const(v) = &x.kind { Some(constant(v)) } else { None })
                    .collect();
                Cond::In { lhs, list }
            }
            TKind::Has { set, elem } => Cond::Has { set: self.operand(set, props), elem: self.operand(elem, props) },
            TKind::Consent(c) => Cond::Consent { channel: c.clone() },
            TKind::Capable(c) => Cond::Capable { channel: c.clone() },
            TKind::Engaged { kind, step } => Cond::Engaged { kind: (*kind).into(), step: model::StepId(step.clone()) },
            TKind::Happened { event, within_minutes, filter } => {
                let hp = self.props_of(event);
                let filter = filter.iter().map(|f| self.cond(f, &hp)).collect();
                Cond::Happened { event: event.clone(), within_minutes: *within_minutes, props: hp, filter }
            }
            TKind::InSegment(name) => Cond::InSegment { segment: self.segment(name) },
            TKind::Const(Value::Bool(b)) => Cond::Const { value: *b },
            TKind::ContactField(name) => Cond::Cmp {
                op: CmpOpRepr::Eq,
                lhs: Operand::Field { slot: self.field(name) },
                rhs: Operand::Const { value: Const::Bool(true) },
            },
            TKind::EventProp(name) => Cond::Cmp {
                op: CmpOpRepr::Eq,
                lhs: Operand::Prop { index: prop_index(props, name) },
                rhs: Operand::Const { value: Const::Bool(true) },
            },
            _ => Cond::Const { value: false },
        }
    }

    fn operand(&mut self, e: &TExpr, props: &[String]) -> Operand {
        match &e.kind {
            TKind::ContactField(name) => Operand::Field { slot: self.field(name) },
            TKind::EventProp(name) => Operand::Prop { index: prop_index(props, name) },
            TKind::Const(v) => {
                // A date literal compared with a datetime is midnight UTC of that day.
                Operand::Const { value: constant(v) }
            }
            TKind::Now => Operand::Now { offset_minutes: 0 },
            TKind::Arith { first, rest } => {
                let base = self.operand(first, props);
                let mut offset: i64 = 0;
                let mut unfolded = Vec::new();
                let numeric = matches!(e.ty, Type::Number);
                for (op, x) in rest {
                    let sign = if *op == ArithOp::Add { 1 } else { -1 };
                    match (&x.kind, numeric) {
                        (TKind::Const(Value::Duration(m)), false) => offset = offset.saturating_add(sign * m),
                        _ => unfolded.push((*op == ArithOp::Add, self.operand(x, props))),
                    }
                }
                if !unfolded.is_empty() || numeric {
                    let mut terms = vec![(true, base)];
                    if offset != 0 {
                        terms.push((true, Operand::Const { value: Const::Duration(offset) }));
                    }
                    terms.extend(unfolded);
                    return Operand::Sum { terms };
                }
                match base {
                    Operand::Now { offset_minutes } => {
                        Operand::Now { offset_minutes: offset_minutes.saturating_add(offset) }
                    }
                    Operand::Const { value: Const::Datetime(m) } => {
                        Operand::Const { value: Const::Datetime(m.saturating_add(offset)) }
                    }
                    other => Operand::Offset { base: Box::new(other), offset_minutes: offset },
                }
            }
            TKind::InSegment(_)
            | TKind::Engaged { .. }
            | TKind::Consent(_)
            | TKind::Capable(_)
            | TKind::Happened { .. } => {
                // A predicate used as a value (`in_segment(a) == true`): not produced by the checker.
                Operand::Const { value: Const::Bool(false) }
            }
            _ => Operand::Const { value: Const::None },
        }
    }
}

/// The campaign's delivery settings, with the workspace's frequency caps:
/// every campaign of a workspace obeys the caps it was compiled with.
fn delivery(model: &Model, d: &model::Delivery) -> Delivery {
    Delivery {
        quiet_hours: d.quiet_hours.map(|q| QuietHours {
            start_minute: q.start_minute,
            end_minute: q.end_minute,
            then: match q.then {
                model::QuietThen::Hold => QuietThen::Hold,
                model::QuietThen::Skip => QuietThen::Skip,
            },
        }),
        reentry: match d.reentry {
            model::Reentry::Once => Reentry::Once,
            model::Reentry::Always => Reentry::Always,
            model::Reentry::After { minutes } => Reentry::After { minutes },
        },
        rate_limit: d.rate_limit.map(|r| RateLimit {
            count: r.count,
            per: match r.per {
                model::RatePer::Second => RatePer::Second,
                model::RatePer::Minute => RatePer::Minute,
                model::RatePer::Hour => RatePer::Hour,
            },
        }),
        frequency_caps: model
            .policy
            .iter()
            .map(|c| FrequencyCap { channel: c.channel.clone(), count: c.count, window_minutes: c.window_minutes })
            .collect(),
    }
}

fn prop_index(props: &[String], name: &str) -> u16 {
    props.iter().position(|p| p == name).unwrap_or(0) as u16
}

fn constant(v: &Value) -> Const {
    match v {
        Value::Bool(b) => Const::Bool(*b),
        Value::Number(n) => Const::Number(*n),
        Value::Str(s) => Const::Str(s.clone()),
        Value::DateTime(m) => Const::Datetime(*m),
        Value::Date(d) => Const::Date(*d),
        Value::Duration(m) => Const::Duration(*m),
        Value::Enum(s) => Const::Enum(s.clone()),
        Value::None => Const::None,
    }
}

fn field_type(t: &Type) -> FieldType {
    // Undeclarable types were reported by the checker; read them as strings meanwhile.
    FieldType::declared(t).unwrap_or(FieldType::String)
}
