//! The engine: claims due executions in batches, steps each with the pure
//! interpreter, performs sends through the provider, and commits each round
//! of effects atomically.
//!
//! Exactly-once sends follow the outbox pattern: a round commits the outbox
//! row (`pending`) together with the execution parked at its send
//! (`processing`); the provider is called with the idempotency key; the next
//! round commits the outcome together with the program counter's advance. A
//! crash anywhere leaves either a pending outbox row (re-sent with the same
//! key: the provider does not deliver twice) or a committed outcome.

use super::facts::{self, Facts, SentMessage};
use super::provider::{Delivery, Message, Provider};
use super::step::{self, Account, Stop, Trace};
use super::store::*;
use crate::compile::codec;
use crate::compile::program::{Cond, NodeIdx, Op, Program};
use std::collections::{HashMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored program of `{campaign}` version {version} is unusable: {why}")]
    Program { campaign: String, version: String, why: String },
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub batch: usize,
    pub account: Account,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { batch: 2000, account: Account { approved_channels: None } }
    }
}

/// One program version with its step index.
struct Loaded {
    program: Program,
    index: HashMap<String, NodeIdx>,
    uses_engagement: bool,
    uses_events: bool,
}

impl Loaded {
    fn new(program: Program) -> Loaded {
        let index = program.nodes.iter().enumerate().map(|(i, n)| (n.id.0.clone(), NodeIdx(i as u32))).collect();
        let mut uses_engagement = false;
        let mut uses_events = false;
        let mut visit = |c: &Cond| walk(c, &mut |x| match x {
            Cond::Engaged { .. } => uses_engagement = true,
            Cond::Happened { event, .. } => {
                uses_events = true;
                if event.starts_with("message.") {
                    uses_engagement = true;
                }
            }
            _ => {}
        });
        for n in &program.nodes {
            if let Op::Branch { cond, .. } = &n.op {
                visit(cond);
            }
        }
        for s in &program.segments {
            visit(&s.cond);
        }
        if let Some(a) = &program.audience {
            visit(a);
        }
        Loaded { program, index, uses_engagement, uses_events }
    }
}

fn walk(c: &Cond, f: &mut dyn FnMut(&Cond)) {
    f(c);
    match c {
        Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| walk(x, f)),
        Cond::Not { cond } => walk(cond, f),
        Cond::Happened { filter, .. } => filter.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// Does this condition (or a segment it uses) read contact events?
pub fn needs_events(p: &Program) -> bool {
    Loaded::new(p.clone()).uses_events
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub executions: usize,
    /// Instructions entered (the "step transitions" of the benchmarks).
    pub transitions: u64,
    pub sends: u64,
    pub finished: u64,
    /// A send could not be paid: the campaign must pause.
    pub out_of_balance: bool,
    pub provider_failures: u64,
}

pub struct Engine<'a> {
    store: &'a mut dyn Store,
    provider: &'a mut dyn Provider,
    campaign: String,
    current: String,
    versions: HashMap<String, Loaded>,
    balance: i64,
    config: EngineConfig,
    /// Contacts whose send was in flight when the last run stopped.
    recovered: HashSet<String>,
}

impl<'a> Engine<'a> {
    pub fn new(store: &'a mut dyn Store, provider: &'a mut dyn Provider, program: Program, config: EngineConfig) -> Result<Engine<'a>, EngineError> {
        let balance = store.balance()?;
        let campaign = program.campaign.clone();
        let current = program.version.0.clone();
        let mut versions = HashMap::new();
        versions.insert(current.clone(), Loaded::new(program));
        Ok(Engine { store, provider, campaign, current, versions, balance, config, recovered: HashSet::new() })
    }

    /// The store, lent back to the caller between batches.
    pub fn store_mut(&mut self) -> &mut dyn Store {
        &mut *self.store
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }

    pub fn program(&self) -> &Program {
        &self.versions[&self.current].program
    }

    /// Re-queues executions interrupted mid-send and re-sends their pending
    /// outbox rows under the same keys. Completed and failed executions are
    /// never touched.
    pub fn recover(&mut self, now: i64) -> Result<u64, EngineError> {
        let pending = self.store.outbox_pending(&self.campaign)?;
        if !pending.is_empty() {
            let msgs: Vec<Message> = pending
                .iter()
                .map(|o| Message { key: o.key.clone(), contact: o.contact.clone(), channel: o.channel.clone(), message: o.message.clone(), template: o.template.clone(), now })
                .collect();
            let results = self.provider.send_batch(&msgs);
            let mut round = Round::default();
            for (o, r) in pending.iter().zip(results) {
                self.recovered.insert(o.contact.clone());
                match r {
                    Delivery::Accepted { delivered_at, opened_at, clicked_at } => {
                        round.outbox_done.push(OutboxDone { key: o.key.clone(), sent: true, at: now, delivered_at, opened_at, clicked_at, error: None });
                        round.ledger.push((-o.price_micros, format!("{} {}", self.campaign, o.key)));
                        self.balance -= o.price_micros;
                        let c = round.steps.entry(o.step.clone()).or_default();
                        c.sent += 1;
                        c.cost_micros += o.price_micros;
                    }
                    // Left pending: the execution re-sends when it runs again.
                    Delivery::Failed { .. } => {}
                }
            }
            self.store.commit(&self.campaign, &round, now)?;
        }
        Ok(self.store.requeue_processing(&self.campaign)?)
    }

    fn version(&mut self, v: &str) -> Result<&Loaded, EngineError> {
        if !self.versions.contains_key(v) {
            let bytes = self.store.program_version(&self.campaign, v)?.ok_or_else(|| EngineError::Program {
                campaign: self.campaign.clone(),
                version: v.to_string(),
                why: "not in the database".into(),
            })?;
            let p = codec::from_binary(&bytes).map_err(|e| EngineError::Program { campaign: self.campaign.clone(), version: v.to_string(), why: e.to_string() })?;
            self.versions.insert(v.to_string(), Loaded::new(p));
        }
        Ok(&self.versions[v])
    }

    /// Runs one batch of due executions to their next durable boundary.
    pub fn run_batch(&mut self, now: i64) -> Result<BatchOutcome, EngineError> {
        let due = self.store.due(&self.campaign, now, self.config.batch)?;
        let mut out = BatchOutcome { executions: due.len(), ..Default::default() };
        if due.is_empty() {
            return Ok(out);
        }
        for d in &due {
            self.version(&d.version)?;
        }
        // Facts for the whole batch, with engagement and events only when read.
        let ids: Vec<&str> = due.iter().map(|d| d.contact.id.as_str()).collect();
        let needs_sent = due.iter().any(|d| self.versions[&d.version].uses_engagement || self.recovered.contains(&d.contact.id));
        let needs_events = due.iter().any(|d| self.versions[&d.version].uses_events);
        let mut sent: HashMap<String, Vec<SentMessage>> = HashMap::new();
        if needs_sent {
            for (c, m) in self.store.sent_for(&self.campaign, &ids)? {
                sent.entry(c).or_default().push(m);
            }
        }
        let mut events: HashMap<String, Vec<facts::ContactEvent>> = HashMap::new();
        if needs_events {
            for (c, e) in self.store.events_for(&ids)? {
                events.entry(c).or_default().push(e);
            }
        }
        struct Active {
            version: String,
            pc: NodeIdx,
            facts: Facts,
            tags_changed: bool,
            last: NodeIdx,
        }
        let mut active: Vec<Option<Active>> = Vec::with_capacity(due.len());
        for d in due {
            let loaded = &self.versions[&d.version];
            let Some(&pc) = loaded.index.get(&d.step) else {
                return Err(EngineError::Program { campaign: self.campaign.clone(), version: d.version.clone(), why: format!("no step `{}`", d.step) });
            };
            let mut f = Facts {
                contact_id: d.contact.id.clone(),
                fields: facts::fields_for(&loaded.program, &d.contact),
                tags: d.contact.tags.clone(),
                consent: d.contact.consent.clone(),
                capabilities: d.contact.capabilities.clone(),
                sent: sent.remove(&d.contact.id).unwrap_or_default(),
                events: events.remove(&d.contact.id).unwrap_or_default(),
            };
            if let Some(created) = d.contact.attrs.get("created_at").and_then(|v| v.as_str()).and_then(facts::parse_datetime) {
                f.events.push(facts::ContactEvent { name: "contact.created".into(), at: created, props: Default::default() });
            }
            active.push(Some(Active { version: d.version, pc, facts: f, tags_changed: false, last: pc }));
        }

        let mut round = Round::default();
        let mut trace = Vec::new();
        loop {
            // Step every active execution to its next boundary.
            let mut sends: Vec<(usize, Message, NodeIdx, i64, String)> = Vec::new();
            for (i, slot) in active.iter_mut().enumerate() {
                let Some(a) = slot else { continue };
                let loaded = &self.versions[&a.version];
                let p = &loaded.program;
                trace.clear();
                let stop = step::advance(p, a.pc, &mut a.facts, now, &self.config.account, &mut trace);
                for t in &trace {
                    match t {
                        Trace::Entered(n) => {
                            out.transitions += 1;
                            a.last = *n;
                            round.steps.entry(p.nodes[n.get()].id.0.clone()).or_default().entered += 1;
                        }
                        Trace::AbPick { node, variant } => {
                            if let Op::Split { name, variants } = &p.nodes[node.get()].op {
                                let v = variants.get(*variant).map_or_else(String::new, |v| v.name.clone());
                                *round.ab.entry((name.clone(), v)).or_default() += 1;
                            }
                        }
                        Trace::Tag { .. } => a.tags_changed = true,
                    }
                }
                let update = |step: &str, state, wake_at, reason: Option<String>| ExecUpdate {
                    contact: a.facts.contact_id.clone(),
                    step: step.to_string(),
                    version: a.version.clone(),
                    state,
                    wake_at,
                    reason,
                };
                let finished = match stop {
                    Stop::Send { node, target, next, .. } => {
                        let id = p.nodes[node.get()].id.0.clone();
                        if a.facts.sent.iter().any(|m| m.step == id) {
                            // Already sent before a crash: move on without sending again.
                            let c = round.steps.entry(id).or_default();
                            c.entered = c.entered.saturating_sub(1);
                            a.pc = next;
                            continue;
                        }
                        if self.balance < target.price_micros {
                            out.out_of_balance = true;
                            round.executions.push(update(&id, ExecState::Pending, Some(now), None));
                            true
                        } else {
                            self.balance -= target.price_micros;
                            let key = format!("{}/{}/{}/{}", self.campaign, a.version, a.facts.contact_id, id);
                            round.outbox_new.push(OutboxNew {
                                key: key.clone(),
                                contact: a.facts.contact_id.clone(),
                                version: a.version.clone(),
                                step: id.clone(),
                                channel: target.channel.clone(),
                                message: target.message.clone(),
                                template: target.template.clone(),
                                price_micros: target.price_micros,
                                created_at: now,
                            });
                            round.executions.push(update(&id, ExecState::Processing, None, None));
                            let msg = Message { key, contact: a.facts.contact_id.clone(), channel: target.channel.clone(), message: target.message.clone(), template: target.template.clone(), now };
                            sends.push((i, msg, next, target.price_micros, id));
                            false
                        }
                    }
                    Stop::Wait { until, next } => {
                        round.executions.push(update(&p.nodes[next.get()].id.0, ExecState::Pending, Some(until), None));
                        true
                    }
                    Stop::Completed => {
                        out.finished += 1;
                        round.executions.push(update(&p.nodes[a.last.get()].id.0, ExecState::Completed, None, None));
                        true
                    }
                    Stop::Skipped { node, reason } => {
                        out.finished += 1;
                        let id = &p.nodes[node.get()].id.0;
                        *round.steps.entry(id.clone()).or_default().skipped.entry(reason.as_str().to_string()).or_default() += 1;
                        round.executions.push(update(id, ExecState::Skipped, None, Some(reason.as_str().to_string())));
                        true
                    }
                };
                if a.tags_changed && (finished || matches!(round.executions.last(), Some(e) if e.state == ExecState::Processing)) {
                    round.tags.push((a.facts.contact_id.clone(), a.facts.tags.clone()));
                    a.tags_changed = false;
                }
                if finished {
                    *slot = None;
                }
            }
            self.store.commit(&self.campaign, &round, now)?;
            round = Round::default();
            if sends.is_empty() {
                break;
            }
            let msgs: Vec<Message> = sends.iter().map(|s| s.1.clone()).collect();
            let results = self.provider.send_batch(&msgs);
            for ((i, msg, next, price, step_id), r) in sends.into_iter().zip(results) {
                let Some(a) = active[i].as_mut() else { continue };
                match r {
                    Delivery::Accepted { delivered_at, opened_at, clicked_at } => {
                        out.sends += 1;
                        round.outbox_done.push(OutboxDone { key: msg.key.clone(), sent: true, at: now, delivered_at, opened_at, clicked_at, error: None });
                        round.ledger.push((-price, format!("{} {}", self.campaign, msg.key)));
                        let c = round.steps.entry(step_id.clone()).or_default();
                        c.sent += 1;
                        c.cost_micros += price;
                        a.facts.sent.push(SentMessage { step: step_id, channel: msg.channel, sent_at: now, delivered_at, opened_at, clicked_at });
                        a.pc = next;
                    }
                    Delivery::Failed { reason } => {
                        out.provider_failures += 1;
                        out.finished += 1;
                        self.balance += price;
                        round.outbox_done.push(OutboxDone { key: msg.key, sent: false, at: now, delivered_at: None, opened_at: None, clicked_at: None, error: Some(reason.clone()) });
                        round.steps.entry(step_id.clone()).or_default().failed += 1;
                        round.executions.push(ExecUpdate {
                            contact: a.facts.contact_id.clone(),
                            step: step_id,
                            version: a.version.clone(),
                            state: ExecState::Failed,
                            wake_at: None,
                            reason: Some(reason),
                        });
                        active[i] = None;
                    }
                }
            }
        }
        Ok(out)
    }
}
