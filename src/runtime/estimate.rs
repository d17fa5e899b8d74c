//! Launch estimates: audience size, the contacts expected to reach each step,
//! sends and cost, as minimum, expected and maximum.
//!
//! The audience comes from the store through the compiled SQL of the
//! campaign's audience. Each contact in it is then walked through the
//! program in memory: attribute conditions and A/B assignments are exact
//! (evaluated on the contact), send eligibility is exact (consent,
//! capability, approval), and engagement conditions split the contact's
//! weight by the configured rates. Minimum counts what happens for certain,
//! maximum what can happen, expected the weighted sum.

use super::eval::{self, Ctx};
use super::facts::{self, ContactRecord, Facts, SentMessage};
use super::sql;
use super::step::{self, Account};
use crate::compile::program::{Cond, NodeIdx, Op, Program};
use rusqlite::{params_from_iter, Connection};
use serde::Serialize;
use std::collections::BTreeMap;

/// Engagement rates, each of the previous stage (stated defaults).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Rates {
    pub delivered: f64,
    pub opened: f64,
    pub clicked: f64,
}

impl Default for Rates {
    fn default() -> Self {
        // The simulated provider's defaults, so estimates and simulations agree.
        Rates { delivered: 0.97, opened: 0.45, clicked: 0.25 }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Range {
    pub min: f64,
    pub expected: f64,
    pub max: f64,
}

impl Range {
    /// One contact's share: certain when every way through got there.
    fn add(&mut self, weight: f64) {
        self.expected += weight;
        if weight >= 1.0 - 1e-9 {
            self.min += 1.0;
        }
        if weight > 0.0 {
            self.max += 1.0;
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepEstimate {
    pub id: String,
    pub kind: &'static str,
    pub reach: Range,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendEstimate {
    pub channel: String,
    pub message: String,
    pub sends: Range,
    pub cost: Range,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CostRange {
    pub min: f64,
    pub expected: f64,
    pub max: f64,
    pub currency: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub campaign: String,
    pub audience: u64,
    pub steps: Vec<StepEstimate>,
    pub sends: Vec<SendEstimate>,
    pub cost: CostRange,
    pub rates: Rates,
}

/// Contacts matching the audience (all, without one), via its compiled SQL.
pub fn audience(conn: &Connection, p: &Program, now: i64, f: &mut dyn FnMut(ContactRecord)) -> rusqlite::Result<u64> {
    let (clause, params) = match &p.audience {
        Some(a) => {
            let s = sql::condition(p, a, now);
            (s.text, s.params)
        }
        None => ("1".to_string(), Vec::new()),
    };
    let q = format!("SELECT id, attrs, tags, consent, capabilities FROM contacts WHERE {clause}");
    let mut stmt = conn.prepare(&q)?;
    let mut rows = stmt.query(params_from_iter(params.iter()))?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        n += 1;
        let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
        f(ContactRecord {
            id: r.get(0)?,
            attrs: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
            tags: list(r.get(2)?),
            consent: list(r.get(3)?),
            capabilities: list(r.get(4)?),
        });
    }
    Ok(n)
}

/// One audience member, with only the fields the program reads.
struct Member {
    id: String,
    fields: Vec<facts::FieldValue>,
    tags: Vec<String>,
    consent: Vec<String>,
    capabilities: Vec<String>,
    created_at: Option<i64>,
}

/// Streams the audience with the program's fields pulled out by SQLite
/// (`json_extract`), so no contact's whole JSON is parsed.
fn members(conn: &Connection, p: &Program, now: i64, f: &mut dyn FnMut(Member)) -> rusqlite::Result<u64> {
    use rusqlite::types::ValueRef;
    let (clause, mut params) = match &p.audience {
        Some(a) => {
            let s = sql::condition(p, a, now);
            (s.text, s.params)
        }
        None => ("1".to_string(), Vec::new()),
    };
    let mut cols = String::new();
    let mut extracts = Vec::new();
    for field in &p.fields {
        cols.push_str(", json_extract(attrs, ?)");
        extracts.push(rusqlite::types::Value::Text(format!("$.{}", field.name)));
    }
    cols.push_str(", json_extract(attrs, '$.created_at')");
    // The select list's parameters come before the WHERE clause's.
    extracts.append(&mut params);
    let q = format!("SELECT id, tags, consent, capabilities{cols} FROM contacts WHERE {clause}");
    let mut stmt = conn.prepare(&q)?;
    let mut rows = stmt.query(params_from_iter(extracts.iter()))?;
    let list = |s: &str| serde_json::from_str::<Vec<String>>(s).unwrap_or_default();
    let mut n = 0;
    while let Some(r) = rows.next()? {
        n += 1;
        let id: String = r.get(0)?;
        let tags = list(&r.get::<_, String>(1)?);
        let mut fields = Vec::with_capacity(p.fields.len());
        for (i, field) in p.fields.iter().enumerate() {
            fields.push(sql::field_from_sql(field, &id, &tags, r.get_ref(4 + i)?));
        }
        let created_at = match r.get_ref(4 + p.fields.len())? {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(facts::parse_datetime),
            _ => None,
        };
        f(Member { id, fields, tags, consent: list(&r.get::<_, String>(2)?), capabilities: list(&r.get::<_, String>(3)?), created_at });
    }
    Ok(n)
}

struct Acc {
    reach: Vec<Range>,
    /// (send node, 0 primary / 1 fallback) → sends.
    per_step: BTreeMap<(usize, usize), Range>,
}

/// Where one contact's walk adds its weights.
struct Weights<'a> {
    seen: &'a mut Vec<f64>,
    sent: &'a mut Vec<[f64; 2]>,
    touched: &'a mut Vec<usize>,
}

pub fn estimate(conn: &Connection, p: &Program, now: i64, rates: Rates, account: &Account) -> rusqlite::Result<Estimate> {
    let mut acc = Acc { reach: vec![Range::default(); p.nodes.len()], per_step: BTreeMap::new() };
    let uses_events = super::engine::needs_events(p);
    let mut pending: Vec<Member> = Vec::new();
    // One contact's weights, reused across contacts: per node, and per send
    // node split by primary (0) or fallback (1) target.
    let mut seen = vec![0.0f64; p.nodes.len()];
    let mut sent_w = vec![[0.0f64; 2]; p.nodes.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut flush = |batch: &mut Vec<Member>, acc: &mut Acc| -> rusqlite::Result<()> {
        let mut events: std::collections::HashMap<String, Vec<facts::ContactEvent>> = std::collections::HashMap::new();
        if uses_events && !batch.is_empty() {
            let q = format!("SELECT contact_id, name, at, props FROM contact_events WHERE contact_id IN ({})", vec!["?"; batch.len()].join(","));
            let mut stmt = conn.prepare(&q)?;
            let mut rows = stmt.query(params_from_iter(batch.iter().map(|c| c.id.as_str())))?;
            while let Some(r) = rows.next()? {
                let props: String = r.get(3)?;
                events.entry(r.get(0)?).or_default().push(facts::ContactEvent { name: r.get(1)?, at: r.get(2)?, props: serde_json::from_str(&props).unwrap_or_default() });
            }
        }
        for c in batch.drain(..) {
            let mut f = Facts {
                events: events.remove(&c.id).unwrap_or_default(),
                contact_id: c.id,
                fields: c.fields,
                tags: c.tags,
                consent: c.consent,
                capabilities: c.capabilities,
                sent: Vec::new(),
            };
            if let Some(created) = c.created_at {
                f.events.push(facts::ContactEvent { name: "contact.created".into(), at: created, props: Default::default() });
            }
            let mut w = Weights { seen: &mut seen, sent: &mut sent_w, touched: &mut touched };
            walk(p, NodeIdx(0), &mut f, 1.0, now, rates, account, &mut w, 0);
            touched.sort_unstable();
            touched.dedup();
            for &node in touched.iter() {
                acc.reach[node].add(seen[node]);
                seen[node] = 0.0;
                for (which, weight) in sent_w[node].iter_mut().enumerate() {
                    if *weight > 0.0 {
                        acc.per_step.entry((node, which)).or_default().add(*weight);
                        *weight = 0.0;
                    }
                }
            }
            touched.clear();
        }
        Ok(())
    };
    let mut failure = None;
    let n = members(conn, p, now, &mut |c| {
        pending.push(c);
        if pending.len() >= 2000 && failure.is_none() {
            if let Err(e) = flush(&mut pending, &mut acc) {
                failure = Some(e);
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, &mut acc)?;
    let mut cost = CostRange { min: 0.0, expected: 0.0, max: 0.0, currency: "EUR" };
    let mut by_target: BTreeMap<(String, String, i64), Range> = BTreeMap::new();
    for ((node, which), r) in acc.per_step {
        let Some(Op::Send { target, fallback, .. }) = p.nodes.get(node).map(|n| &n.op) else { continue };
        let Some(t) = (if which == 0 { Some(target) } else { fallback.as_ref() }) else { continue };
        let t = by_target.entry((t.channel.clone(), t.message.clone(), t.price_micros)).or_default();
        t.min += r.min;
        t.expected += r.expected;
        t.max += r.max;
    }
    let sends = by_target
        .into_iter()
        .map(|((channel, message, price), r)| {
            let eur = price as f64 / 1e6;
            let c = Range { min: r.min * eur, expected: r.expected * eur, max: r.max * eur };
            cost.min += c.min;
            cost.expected += c.expected;
            cost.max += c.max;
            SendEstimate { channel, message, sends: r, cost: c }
        })
        .collect();
    let steps = p
        .nodes
        .iter()
        .zip(acc.reach)
        .map(|(n, reach)| StepEstimate { id: n.id.0.clone(), kind: n.op.name(), reach })
        .collect();
    Ok(Estimate { campaign: p.campaign.clone(), audience: n, steps, sends, cost, rates })
}

/// Engagement levels of one message, with their probabilities.
fn levels(r: Rates) -> [(u8, f64); 4] {
    let d = r.delivered;
    [(0, 1.0 - d), (1, d * (1.0 - r.opened)), (2, d * r.opened * (1.0 - r.clicked)), (3, d * r.opened * r.clicked)]
}

/// The probability that `cond` holds, over the engagement of the messages it reads.
fn probability(p: &Program, cond: &Cond, f: &mut Facts, now: i64, rates: Rates) -> f64 {
    let mut steps: Vec<String> = Vec::new();
    collect_engaged(cond, &mut steps);
    steps.retain(|s| f.sent.iter().any(|m| m.step == *s));
    steps.sort();
    steps.dedup();
    steps.truncate(5); // 4^5 combinations at most; more is beyond any real campaign
    if steps.is_empty() {
        let cx = Ctx { program: p, facts: f, now };
        return if eval::eval(&cx, cond) { 1.0 } else { 0.0 };
    }
    let saved: Vec<SentMessage> = f.sent.clone();
    let mut total = 0.0;
    let combos = 4usize.pow(steps.len() as u32);
    for mut k in 0..combos {
        let mut weight = 1.0;
        for s in &steps {
            let (level, pr) = levels(rates)[k % 4];
            k /= 4;
            weight *= pr;
            for m in f.sent.iter_mut().filter(|m| m.step == *s) {
                m.delivered_at = (level >= 1).then_some(i64::MIN);
                m.opened_at = (level >= 2).then_some(i64::MIN);
                m.clicked_at = (level >= 3).then_some(i64::MIN);
            }
        }
        let cx = Ctx { program: p, facts: f, now };
        if eval::eval(&cx, cond) {
            total += weight;
        }
    }
    f.sent = saved;
    total
}

fn collect_engaged(c: &Cond, out: &mut Vec<String>) {
    match c {
        Cond::Engaged { step, .. } => out.push(step.0.clone()),
        Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| collect_engaged(x, out)),
        Cond::Not { cond } => collect_engaged(cond, out),
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    p: &Program,
    start: NodeIdx,
    f: &mut Facts,
    weight: f64,
    now: i64,
    rates: Rates,
    account: &Account,
    w: &mut Weights,
    depth: usize,
) {
    let mut pc = start;
    // Edges go forward, so this ends within the program's length.
    for _ in 0..=p.nodes.len() {
        let Some(node) = p.nodes.get(pc.get()) else { return };
        w.seen[pc.get()] += weight;
        w.touched.push(pc.get());
        match &node.op {
            Op::Send { target, fallback, next } => {
                let chosen = match step::eligible(target, f, account) {
                    Ok(()) => Some((target, 0)),
                    Err(step::SkipReason::NotCapable) => fallback.as_ref().filter(|fb| step::eligible(fb, f, account).is_ok()).map(|fb| (fb, 1)),
                    Err(_) => None,
                };
                let Some((t, which)) = chosen else { return };
                w.sent[pc.get()][which] += weight;
                f.sent.push(SentMessage { step: node.id.0.clone(), channel: t.channel.clone(), sent_at: now, delivered_at: None, opened_at: None, clicked_at: None });
                pc = *next;
            }
            Op::Wait { next, .. } | Op::Tag { next, .. } => {
                if let Op::Tag { add, tag, .. } = &node.op {
                    step::apply_tag(p, f, *add, tag);
                }
                pc = *next;
            }
            Op::Jump { target } => pc = *target,
            Op::Split { name, variants } => {
                let chosen = step::pick_variant(&p.campaign, &f.contact_id, name, variants);
                match variants.get(chosen) {
                    Some(v) => pc = v.target,
                    None => return,
                }
            }
            Op::Branch { cond, then, otherwise } => {
                let pt = probability(p, cond, f, now, rates);
                if pt >= 1.0 || depth > 12 {
                    pc = if pt >= 0.5 { *then } else { *otherwise };
                    continue;
                }
                if pt <= 0.0 {
                    pc = *otherwise;
                    continue;
                }
                // Uncertain: both ways, each with its share of the weight.
                let mut other = f.clone();
                walk(p, *then, f, weight * pt, now, rates, account, w, depth + 1);
                walk(p, *otherwise, &mut other, weight * (1.0 - pt), now, rates, account, w, depth + 1);
                return;
            }
            Op::End => return,
        }
    }
}
