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

use super::exits;
use super::facts::{self, Facts, SentMessage};
use super::provider::{Delivery, Message, Provider};
use super::step::{self, Account, Stop, Trace};
use super::store::*;
use super::{quiet, rate};
use crate::compile::codec;
use crate::compile::program::{
    Cond, Exit, FieldDef, FieldType, NodeIdx, Op, Program, QuietHours, QuietThen, Reentry, SendTarget, WaitOn,
};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    /// Attempts per message before it (and its execution) fails.
    pub max_attempts: u32,
    /// Consecutive provider failures that trip the circuit breaker.
    pub breaker_consecutive: u32,
    /// Or: an error rate over the last `breaker_window` sends above this.
    pub breaker_rate: f64,
    pub breaker_window: usize,
    /// Send one message first and go on only if it succeeds (after a
    /// resume from PAUSED_ERROR).
    pub probe: bool,
    /// Top up when the balance falls below the threshold. It never resumes
    /// a paused campaign.
    pub auto_reload: Option<AutoReload>,
    /// Whether a rate-limit slot later in the minute is waited for on the
    /// wall clock before its message is handed over.
    pub pace: Pace,
    /// Set to stop (Ctrl-C, service shutdown): ends a wait for a slot.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How the relay treats a rate-limit slot later in the current minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pace {
    /// The virtual clock: the message goes at once, logged at its slot.
    #[default]
    Virtual,
    /// The real clock: the relay sleeps until the slot (docs/runtime.md, "Rate limit").
    RealTime,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch: 2000,
            account: Account { approved_channels: None },
            max_attempts: 3,
            breaker_consecutive: 10,
            breaker_rate: 0.5,
            breaker_window: 200,
            probe: false,
            auto_reload: None,
            pace: Pace::Virtual,
            stop: None,
        }
    }
}

/// What a condition reads beyond the contact record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Reads {
    /// The execution's sent messages and their engagement.
    sent: bool,
    /// The contact's events.
    events: bool,
}

impl Reads {
    fn of(c: &Cond, segments: Reads) -> Reads {
        let mut r = Reads::default();
        walk(c, &mut |x| match x {
            Cond::Engaged { .. } => r.sent = true,
            Cond::Happened { event, .. } => {
                r.events = true;
                r.sent |= event.starts_with("message.");
            }
            // Conservative: a segment reference reads what any segment reads.
            Cond::InSegment { .. } => r = r.or(segments),
            _ => {}
        });
        r
    }

    /// What matching an event reads: the contact's events, and this
    /// execution's engagement for `message.*`.
    fn of_event(event: &str) -> Reads {
        Reads { sent: event.starts_with("message."), events: true }
    }

    /// What one instruction reads before it lets the execution go on.
    fn of_op(op: &Op, segments: Reads) -> Reads {
        match op {
            Op::Branch { cond, .. } => Reads::of(cond, segments),
            Op::WaitUntil { arms, .. } => arms.iter().fold(Reads::default(), |acc, a| {
                acc.or(match &a.on {
                    WaitOn::Event { event } => Reads::of_event(&event.event),
                    WaitOn::State { cond } => Reads::of(cond, segments),
                })
            }),
            _ => Reads::default(),
        }
    }

    /// What the exit criteria read: checked before every instruction.
    fn of_exits(exits: &[Exit], segments: Reads) -> Reads {
        exits.iter().fold(Reads::default(), |acc, x| {
            acc.or(match x {
                Exit::Event { event } => Reads::of_event(&event.event),
                Exit::State { cond } => Reads::of(cond, segments),
            })
        })
    }

    fn or(self, o: Reads) -> Reads {
        Reads { sent: self.sent || o.sent, events: self.events || o.events }
    }
}

/// One program version with its step index.
struct Loaded {
    program: Program,
    index: HashMap<String, NodeIdx>,
    /// Anything in the program (enrollment reads events if so).
    uses: Reads,
    /// Whether the program has `tag` steps (only then is a contact's tag set
    /// kept aside to compute what a batch changed).
    touches_tags: bool,
    /// Per instruction: what an execution resuming there can read before it
    /// next stops (a wait or the end). A batch loads sent messages and events
    /// only for the executions that can read them.
    reads_from: Vec<Reads>,
    /// The fields a batch loads: the program's, and the contact's
    /// `timezone` after them when quiet hours need it and no condition reads it.
    due_fields: Vec<FieldDef>,
    /// Quiet hours, with the slot of `timezone` among `due_fields`.
    quiet: Option<(QuietHours, usize)>,
}

impl Loaded {
    fn new(program: Program) -> Loaded {
        let index = program.nodes.iter().enumerate().map(|(i, n)| (n.id.0.clone(), NodeIdx(i as u32))).collect();
        // The union of every segment's own reads already covers any chain of
        // segment references (a reference is charged the whole union).
        let segments =
            program.segments.iter().fold(Reads::default(), |acc, s| acc.or(Reads::of(&s.cond, Reads::default())));
        let exits = Reads::of_exits(&program.exits, segments);
        let own: Vec<Reads> = program.nodes.iter().map(|n| Reads::of_op(&n.op, segments).or(exits)).collect();
        let mut uses = own.iter().fold(segments, |acc, r| acc.or(*r));
        if let Some(a) = &program.audience {
            uses = uses.or(Reads::of(a, segments));
        }
        // Successors come later in a program, but a fixpoint does not rely on it.
        let mut reads_from = own.clone();
        loop {
            let mut changed = false;
            for (i, n) in program.nodes.iter().enumerate().rev() {
                if matches!(n.op, Op::Wait { .. } | Op::End) {
                    continue;
                }
                let r =
                    n.op.successors()
                        .iter()
                        .filter_map(|s| reads_from.get(s.get()))
                        .fold(reads_from[i], |acc, x| acc.or(*x));
                if r != reads_from[i] {
                    reads_from[i] = r;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let touches_tags = program.nodes.iter().any(|n| matches!(n.op, Op::Tag { .. }));
        let mut due_fields = program.fields.clone();
        let quiet = program.delivery.quiet_hours.map(|q| {
            let slot = due_fields.iter().position(|f| f.name == "timezone").unwrap_or_else(|| {
                due_fields.push(FieldDef { name: "timezone".into(), ty: FieldType::Timezone, optional: true });
                due_fields.len() - 1
            });
            (q, slot)
        });
        Loaded { program, index, uses, touches_tags, reads_from, due_fields, quiet }
    }

    fn reads_at(&self, step: &str) -> Reads {
        // An unknown step is reported by the caller; read everything meanwhile.
        self.index
            .get(step)
            .and_then(|i| self.reads_from.get(i.get()).copied())
            .unwrap_or(Reads { sent: true, events: true })
    }
}

/// Updates the counters of step `id`, allocating its name only the first time.
fn count(steps: &mut std::collections::BTreeMap<StepId, StepCounts>, id: &StepId, f: impl FnOnce(&mut StepCounts)) {
    if let Some(c) = steps.get_mut(id) {
        f(c);
        return;
    }
    f(steps.entry(id.clone()).or_default());
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
    Loaded::new(p.clone()).uses.events
}

/// What trying the due retries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retried {
    pub attempts: u64,
    /// Sends that failed for good (their executions are failed).
    pub failed: u64,
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
    /// Messages that failed for good (their executions are failed).
    pub provider_failures: u64,
    /// The circuit breaker tripped: the campaign must pause.
    pub breaker_tripped: bool,
}

pub struct Engine<'a> {
    store: &'a mut dyn Store,
    provider: &'a mut dyn Provider,
    campaign: String,
    current: String,
    /// Shared so stepping an execution can hold its version while the engine changes.
    versions: HashMap<String, Rc<Loaded>>,
    balance: i64,
    config: EngineConfig,
    lease: Lease,
    /// Contacts whose send was in flight when the last run stopped.
    recovered: HashSet<String>,
    /// Loaded from the store and written back with each relay, so the
    /// breaker counts across passes, restarts and (later) workers.
    breaker: BreakerState,
    tripped: bool,
    /// The campaign's rate limit (its current version's), resumed from the
    /// store; `None` without one.
    limiter: Option<rate::Limiter>,
}

/// When a failed send is tried again: 1, 2, 4 … minutes after the failure,
/// at most an hour (the provider's own client already retried quickly).
pub fn retry_delay(attempts: u32) -> i64 {
    1i64 << attempts.saturating_sub(1).min(6)
}

impl<'a> Engine<'a> {
    pub fn new(
        store: &'a mut dyn Store,
        provider: &'a mut dyn Provider,
        program: Program,
        config: EngineConfig,
        lease: Lease,
    ) -> Result<Engine<'a>, EngineError> {
        let balance = store.balance()?;
        let campaign = program.campaign.clone();
        let breaker = store.breaker(&campaign)?;
        let current = program.version.0.clone();
        let limiter = match &program.delivery.rate_limit {
            Some(limit) => Some(rate::Limiter::new(limit, store.rate_next_free(&campaign)?)),
            None => None,
        };
        let mut versions = HashMap::new();
        versions.insert(current.clone(), Rc::new(Loaded::new(program)));
        Ok(Engine {
            store,
            provider,
            campaign,
            current,
            versions,
            balance,
            config,
            lease,
            recovered: HashSet::new(),
            breaker,
            tripped: false,
            limiter,
        })
    }

    /// Settles sends whose outcome a stopped process never recorded, then
    /// gives back executions it left claimed. A send the provider already
    /// accepted is only recorded (reconciled by its key), never sent again;
    /// the others are sent again under the same key. Completed and failed
    /// executions are never touched.
    pub fn recover(&mut self, now: i64) -> Result<u64, EngineError> {
        let pending = self.store.outbox_pending(&self.campaign, &self.lease)?;
        if !pending.is_empty() {
            self.recovered.extend(pending.iter().map(|o| o.contact.0.clone()));
            let keys: Vec<String> = pending.iter().map(|r| r.key.clone()).collect();
            let known = self.provider.status(&keys);
            let mut done = Vec::new();
            let mut unsent = Vec::new();
            for (r, k) in pending.into_iter().zip(known) {
                match k {
                    Some(Delivery::Accepted { delivered_at, opened_at, clicked_at }) => {
                        done.push((r, Engagement { delivered_at, opened_at, clicked_at }))
                    }
                    _ => unsent.push(Attempt { row: r, made: 0, origin: Origin::Earlier, at_ms: None }),
                }
            }
            self.record_accepted(&done, now)?;
            self.relay(unsent, now)?;
        }
        Ok(self.store.requeue_processing(&self.campaign, &self.lease)?)
    }

    /// Tries again the failed sends whose next attempt is due.
    pub fn retry_due(&mut self, now: i64) -> Result<Retried, EngineError> {
        if self.tripped {
            return Ok(Retried::default());
        }
        let due = self.store.outbox_due(&self.campaign, now, self.config.batch, &self.lease)?;
        let attempts = due.len() as u64;
        let queue =
            due.into_iter().map(|(row, made)| Attempt { row, made, origin: Origin::Earlier, at_ms: None }).collect();
        Ok(Retried { attempts, failed: self.relay(queue, now)? })
    }

    fn version(&mut self, v: &str) -> Result<&Loaded, EngineError> {
        if !self.versions.contains_key(v) {
            let bytes = self.store.program_version(&self.campaign, v)?.ok_or_else(|| EngineError::Program {
                campaign: self.campaign.clone(),
                version: v.to_string(),
                why: "not in the database".into(),
            })?;
            let p = codec::from_binary(&bytes).map_err(|e| EngineError::Program {
                campaign: self.campaign.clone(),
                version: v.to_string(),
                why: e.to_string(),
            })?;
            self.versions.insert(v.to_string(), Rc::new(Loaded::new(p)));
        }
        Ok(&self.versions[v])
    }

    /// Runs one batch of due executions to their next durable boundary (a
    /// wait, the end, a skip), commits it, then relays the batch's sends.
    pub fn run_batch(&mut self, now: i64) -> Result<BatchOutcome, EngineError> {
        // In a shared store another worker may have spent the balance this
        // engine read: the round is then refused whole, and the batch is
        // stepped again (the claim keeps its executions) on the balance
        // there really is, so it stops sending where the money stops.
        let mut refused_for_balance = 0;
        loop {
            match self.try_batch(now) {
                Err(EngineError::Store(StoreError::InsufficientBalance)) if refused_for_balance < 8 => {
                    refused_for_balance += 1;
                    self.balance = self.store.balance()?;
                }
                other => return other,
            }
        }
    }

    fn try_batch(&mut self, now: i64) -> Result<BatchOutcome, EngineError> {
        let mut stepped = self.step_batch(now)?;
        if stepped.outcome.executions == 0 {
            return Ok(stepped.outcome);
        }
        // Commit: the outbox rows (pending) with the executions' advance past them.
        stepped.round.outbox_new = std::mem::take(&mut stepped.sends);
        // The limiter's state commits with the outbox rows whose slots it gave.
        stepped.round.rate_next_free_ms = self.limiter.as_ref().map(rate::Limiter::next_free_ms);
        // The round and the wake-ups its tag and `set` changes cause in
        // other campaigns commit together: a crash cannot lose the wake-ups.
        // Frequency caps (only for a program under some): counted and
        // taken in the commit's transaction, so they hold across campaigns.
        let caps = super::caps::of(&self.versions[&self.current].program).to_vec();
        let versions = &self.versions;
        let counted = |o: &OutboxNew| {
            versions.get(&o.version).is_some_and(|l| {
                l.index.get(&o.step.0).is_some_and(|i| super::caps::requires_consent(&l.program.nodes[i.get()].op, o))
            })
        };
        let mut refused = Vec::new();
        // Under caps some rows may leave the round: remember which instant
        // (`at_ms`, in row order) went with which row.
        let sent_keys: Vec<String> =
            if caps.is_empty() { Vec::new() } else { stepped.round.outbox_new.iter().map(|o| o.key.clone()).collect() };
        let (campaign, round, lease) = (&self.campaign, &mut stepped.round, &self.lease);
        super::store::atomically(&mut *self.store, |s| {
            if !caps.is_empty() {
                refused = super::caps::enforce(s, &caps, round, &counted, now)?;
            }
            s.commit(campaign, round, lease, now)?;
            super::wake::tags_changed(s, campaign, &round.tags, now)?;
            super::wake::fields_set(s, campaign, &round.fields, now)
        })?;
        if !refused.is_empty() {
            // The refused rows left the round: their slots leave with them,
            // so each remaining row keeps the instant the limiter gave it.
            let gone: HashSet<&str> = refused.iter().map(|o| o.key.as_str()).collect();
            let kept = std::mem::take(&mut stepped.at_ms)
                .into_iter()
                .zip(&sent_keys)
                .filter(|(_, k)| !gone.contains(k.as_str()))
                .map(|(at, _)| at);
            stepped.at_ms = kept.collect();
        }
        for o in &refused {
            // Never sent: its price goes back.
            self.balance += o.price_micros;
            stepped.outcome.sends -= 1;
        }
        let fresh = std::mem::take(&mut stepped.round.outbox_new)
            .into_iter()
            .zip(std::mem::take(&mut stepped.at_ms))
            .map(|(row, at_ms)| Attempt { row, made: 0, origin: Origin::Batch, at_ms: Some(at_ms) })
            .collect();
        stepped.outcome.provider_failures = self.relay(fresh, now)?;
        stepped.outcome.breaker_tripped = self.tripped;
        Ok(stepped.outcome)
    }

    /// The load and step phases of a batch, uncommitted: `run_batch` commits
    /// and relays the result; a benchmark may relay it another way.
    pub fn step_batch(&mut self, now: i64) -> Result<Stepped, EngineError> {
        let Some(mut batch) = self.load(now)? else { return Ok(Stepped::default()) };
        let mut acc = Stepped {
            outcome: BatchOutcome { executions: batch.due.len(), ..Default::default() },
            ..Default::default()
        };
        let mut trace = Vec::new();
        for d in std::mem::take(&mut batch.due) {
            self.step_one(d, &mut batch, &mut acc, &mut trace, now)?;
        }
        Ok(acc)
    }

    /// Load phase: the due executions, their program versions, and the facts
    /// the batch can read (sent messages and events only where read).
    fn load(&mut self, now: i64) -> Result<Option<Batch>, EngineError> {
        let current = Rc::clone(&self.versions[&self.current]);
        // Triggers a store queued (`Store::enroll_triggered`) become
        // executions first, a batch's worth (the oldest), so this batch
        // can take them and a queue that grew while the campaign was
        // paused drains in transactions of bounded size.
        self.store.drain_triggered(&self.campaign, self.config.batch, now)?;
        let due = self.store.claim(&self.campaign, now, self.config.batch, &current.due_fields, &self.lease)?;
        if due.is_empty() {
            return Ok(None);
        }
        if let Some(r) = self.config.auto_reload {
            if self.balance < r.threshold_micros && r.amount_micros > 0 {
                self.store.ledger_add(r.amount_micros, "auto-reload", now)?;
                self.balance += r.amount_micros;
            }
        }
        for d in &due {
            self.version(&d.version)?;
        }
        // Sent messages for executions that may read engagement before they
        // stop (and for any interrupted mid-send); events likewise.
        let mut sent_ids: Vec<&ContactId> = Vec::new();
        let mut event_ids: Vec<&ContactId> = Vec::new();
        for d in &due {
            let r = self.versions[&d.version].reads_at(&d.step.0);
            if r.sent || self.recovered.contains(d.contact.id.as_str()) {
                sent_ids.push(&d.contact.id);
            }
            if r.events {
                event_ids.push(&d.contact.id);
            }
        }
        // Keyed by execution: engagement predicates read this execution's sends only.
        let mut sent: HashMap<(ContactId, Entry), Vec<SentMessage>> = HashMap::new();
        if !sent_ids.is_empty() {
            for s in self.store.sent_for(&self.campaign, &sent_ids)? {
                sent.entry((s.contact, s.entry)).or_default().push(s.message);
            }
        }
        // Under re-entry a contact may have two executions due in one batch:
        // they share its events (cloned), where one execution takes them.
        let shared = if self.versions[&self.current].program.delivery.reentry == Reentry::Once {
            HashSet::new()
        } else {
            let mut seen = HashSet::new();
            due.iter().filter(|d| !seen.insert(&d.contact.id)).map(|d| d.contact.id.clone()).collect()
        };
        let mut events: HashMap<ContactId, Vec<facts::ContactEvent>> = HashMap::new();
        if !event_ids.is_empty() {
            for e in self.store.events_for(&event_ids)? {
                events.entry(e.contact).or_default().push(e.event);
            }
        }
        Ok(Some(Batch { due, sent, events, shared }))
    }

    /// The facts one due execution steps on.
    fn facts_of(&mut self, d: Due, loaded: &Loaded, batch: &mut Batch) -> Result<Facts, EngineError> {
        let (contact, entry) = (d.contact, d.entry);
        let mut fields = contact.fields;
        if d.version != self.current && loaded.due_fields != self.versions[&self.current].due_fields {
            // An execution still on an older version whose program reads
            // other fields (rare: after a migration): read them for it.
            let record = self.store.contact(&contact.id)?.unwrap_or_default();
            fields = facts::fields_for(&loaded.program, &record);
            if loaded.quiet.is_some_and(|(_, slot)| slot >= fields.len()) {
                let zone = record.attrs.get("timezone").and_then(|v| v.as_str());
                fields.push(zone.map_or(facts::FieldValue::Absent, |z| facts::FieldValue::Str(z.to_string())));
            }
        }
        // The id moves into the execution's key and back: no copy per execution.
        let key = (contact.id, entry);
        let sent = if batch.sent.is_empty() { Vec::new() } else { batch.sent.remove(&key).unwrap_or_default() };
        let id = key.0;
        let events = if !batch.shared.is_empty() && batch.shared.contains(id.as_str()) {
            batch.events.get(id.as_str()).cloned().unwrap_or_default()
        } else {
            batch.events.remove(id.as_str()).unwrap_or_default()
        };
        let mut f = Facts {
            addresses: contact.addresses,
            sent,
            events,
            contact_id: id,
            fields,
            tags: contact.tags,
            consent: contact.consent,
            capabilities: contact.capabilities,
        };
        if let Some(created) = contact.created_at {
            f.events.push(facts::ContactEvent {
                name: "contact.created".into(),
                at: created,
                props: Default::default(),
            });
        }
        Ok(f)
    }

    /// Step phase for one execution: runs it to its next durable boundary.
    /// A send is not a boundary: its outbox row commits with the execution's
    /// advance past it, and the relay delivers it after.
    fn step_one(
        &mut self,
        d: Due,
        batch: &mut Batch,
        acc: &mut Stepped,
        trace: &mut Vec<Trace>,
        now: i64,
    ) -> Result<(), EngineError> {
        let loaded = Rc::clone(&self.versions[&d.version]);
        let p = &loaded.program;
        let Some(&start) = loaded.index.get(&d.step.0) else {
            return Err(EngineError::Program {
                campaign: self.campaign.clone(),
                version: d.version.clone(),
                why: format!("no step `{}`", d.step),
            });
        };
        let version = d.version.clone();
        let entry = d.entry;
        let moments = step::Moments { started_at: d.started_at, wait_since: d.wait_since };
        let sends_before = acc.sends.len();
        let held_since =
            if d.wait_since.is_some() && p.nodes.get(start.get()).is_some_and(|n| matches!(n.op, Op::Send { .. })) {
                // Resuming a send it was held at (quiet hours, rate limit).
                d.wait_since
            } else {
                None
            };
        let mut f = self.facts_of(d, &loaded, batch)?;
        let tags_before = if loaded.touches_tags { f.tags.clone() } else { Vec::new() };
        let (mut pc, mut last, mut tags_changed) = (start, start, false);
        // Fields written by `set` steps (empty, so no allocation, without them).
        let mut set_slots: Vec<crate::compile::program::FieldSlot> = Vec::new();
        let end = loop {
            trace.clear();
            // Only the first stretch resumes where the execution was parked.
            let at = if pc == start { moments } else { step::Moments { wait_since: None, ..moments } };
            let stop = step::advance(p, pc, at, &mut f, now, &self.config.account, trace);
            for t in trace.iter() {
                match t {
                    Trace::Entered(n) => {
                        acc.outcome.transitions += 1;
                        last = *n;
                        count(&mut acc.round.steps, &p.nodes[n.get()].id, |c| c.entered += 1);
                    }
                    Trace::AbPick { node, variant } => {
                        if let Op::Split { name, variants } = &p.nodes[node.get()].op {
                            let v = variants.get(*variant).map_or_else(String::new, |v| v.name.clone());
                            // Only a goal reads who got which variant: a
                            // program without one keeps its hot loop as it was.
                            if p.goal.is_some() {
                                acc.round.ab_assigned.push(AbAssignment {
                                    contact: f.contact_id.clone(),
                                    entry,
                                    ab: name.clone(),
                                    variant: v.clone(),
                                });
                            }
                            *acc.round.ab.entry((name.clone(), v)).or_default() += 1;
                        }
                    }
                    Trace::Skip { node, reason } => {
                        count(&mut acc.round.steps, &p.nodes[node.get()].id, |c| {
                            *c.skipped.entry(reason.as_str().to_string()).or_default() += 1
                        });
                    }
                    Trace::Tag { .. } => tags_changed = true,
                    Trace::Set { slot } => set_slots.push(*slot),
                }
            }
            match stop {
                Stop::Send { node, target, next, .. } => {
                    // Delivery rules: one check of an Option per send when
                    // the campaign has none.
                    let at_ms = match self.gate(&loaded, node, &target, &f, now) {
                        Gate::Go { at_ms } => at_ms,
                        Gate::Skip(reason) => {
                            count(&mut acc.round.steps, &p.nodes[node.get()].id, |c| {
                                *c.skipped.entry(reason.as_str().to_string()).or_default() += 1
                            });
                            pc = next;
                            continue;
                        }
                        Gate::Hold { until, why } => {
                            let id = &p.nodes[node.get()].id;
                            // Entered again when it goes; a send held again
                            // at the same step is one held send.
                            let again = node == start && held_since.is_some();
                            count(&mut acc.round.steps, id, |c| {
                                c.entered = c.entered.saturating_sub(1);
                                if !again {
                                    *c.held.entry(why.as_str().to_string()).or_default() += 1;
                                }
                            });
                            acc.outcome.transitions -= 1;
                            break Boundary {
                                step: id.clone(),
                                state: ExecState::Pending,
                                wake_at: Some(until),
                                reason: None,
                                wait_since: Some(if again { held_since.unwrap_or(now) } else { now }),
                            };
                        }
                    };
                    match self.send(p, node, &target, (&version, entry), &mut f, acc, at_ms, now) {
                        Some(end) => break end,
                        None => pc = next,
                    }
                }
                Stop::Wait { until, next } => {
                    break Boundary {
                        step: p.nodes[next.get()].id.clone(),
                        state: ExecState::Pending,
                        wake_at: Some(until),
                        reason: None,
                        wait_since: None,
                    }
                }
                Stop::Parked { node, since, wake_at } => {
                    // A send made on the way here is relayed after this
                    // commit, and only then is its engagement known: arms
                    // reading it look again once it is (same instant).
                    let fresh = acc.sends.len() > sends_before && loaded.reads_from[node.get()].sent;
                    break Boundary {
                        step: p.nodes[node.get()].id.clone(),
                        state: ExecState::Pending,
                        wake_at: Some(if fresh { now } else { wake_at }),
                        reason: None,
                        wait_since: Some(since),
                    };
                }
                Stop::Exited { at, index } => {
                    acc.outcome.finished += 1;
                    break Boundary {
                        step: p.nodes.get(at.get()).map_or_else(|| p.nodes[last.get()].id.clone(), |n| n.id.clone()),
                        state: ExecState::Completed,
                        wake_at: None,
                        reason: Some(exits::reason(index)),
                        wait_since: None,
                    };
                }
                Stop::Completed => {
                    acc.outcome.finished += 1;
                    break Boundary {
                        step: p.nodes[last.get()].id.clone(),
                        state: ExecState::Completed,
                        wake_at: None,
                        reason: None,
                        wait_since: None,
                    };
                }
                Stop::Skipped { node, reason } => {
                    acc.outcome.finished += 1;
                    let id = p.nodes[node.get()].id.clone();
                    *acc.round
                        .steps
                        .entry(id.clone())
                        .or_default()
                        .skipped
                        .entry(reason.as_str().to_string())
                        .or_default() += 1;
                    break Boundary {
                        step: id,
                        state: ExecState::Skipped,
                        wake_at: None,
                        reason: Some(reason.as_str().to_string()),
                        wait_since: None,
                    };
                }
            }
        };
        if !set_slots.is_empty() {
            acc.round.fields.extend(super::set::delta(p, &f.contact_id, &f, &set_slots));
        }
        let contact = f.contact_id;
        if tags_changed {
            acc.round.tags.extend(TagDelta::between(&contact, &tags_before, &f.tags));
        }
        acc.round.executions.push(ExecUpdate {
            contact,
            entry,
            step: end.step,
            version,
            state: end.state,
            wake_at: end.wake_at,
            reason: end.reason,
            wait_since: end.wait_since,
        });
        Ok(())
    }

    /// What the delivery rules say of a send the stepping reached: quiet
    /// hours first (in the contact's zone, consent-requiring sends only),
    /// then the rate limit's slot.
    fn gate(&mut self, loaded: &Loaded, node: NodeIdx, target: &SendTarget, f: &Facts, now: i64) -> Gate {
        if loaded.quiet.is_none() && self.limiter.is_none() {
            return Gate::Go { at_ms: now * 60_000 };
        }
        // Sent before a crash: `send` moves on without sending again, so no rule applies.
        if f.sent.iter().any(|m| m.step == loaded.program.nodes[node.get()].id.0) {
            return Gate::Go { at_ms: now * 60_000 };
        }
        if let Some((q, slot)) = &loaded.quiet {
            if target.requires_consent {
                let name = match f.fields.get(*slot) {
                    Some(facts::FieldValue::Str(z)) => Some(z.as_str()),
                    _ => None,
                };
                if let Some(until) = quiet::ends_at(q, quiet::zone(name), now) {
                    return match q.then {
                        QuietThen::Hold => Gate::Hold { until, why: Held::QuietHours },
                        QuietThen::Skip => Gate::Skip(step::SkipReason::QuietHours),
                    };
                }
            }
        }
        match self.limiter.as_mut().map(|l| l.take(now)) {
            Some(rate::Slot::Now { at_ms }) => Gate::Go { at_ms },
            Some(rate::Slot::Later { wake_at }) => Gate::Hold { until: wake_at, why: Held::RateLimit },
            None => Gate::Go { at_ms: now * 60_000 },
        }
    }

    /// A send the stepping reached: owed to the relay (`None`: go on past
    /// it), or, when the balance cannot pay it, the boundary to stop at.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        p: &Program,
        node: NodeIdx,
        target: &SendTarget,
        (version, entry): (&str, Entry),
        f: &mut Facts,
        acc: &mut Stepped,
        at_ms: i64,
        now: i64,
    ) -> Option<Boundary> {
        let step = &p.nodes[node.get()].id;
        let id = step;
        if f.sent.iter().any(|m| m.step == id.0) {
            // Sent before a crash: move on without sending again.
            count(&mut acc.round.steps, id, |c| c.entered = c.entered.saturating_sub(1));
            acc.outcome.transitions -= 1;
            return None;
        }
        if self.balance < target.price_micros {
            // Auto-reload tops up (committed with this batch) before anything pauses.
            if let Some(amount) = self.config.auto_reload.map(|r| r.amount_micros).filter(|a| *a > 0) {
                let times = ((target.price_micros - self.balance) + amount - 1) / amount;
                for _ in 0..times.clamp(1, 1000) {
                    acc.round.ledger.push(LedgerEntry { amount_micros: amount, reason: "auto-reload".into() });
                    self.balance += amount;
                }
            }
        }
        if self.balance < target.price_micros {
            acc.outcome.out_of_balance = true;
            count(&mut acc.round.steps, id, |c| c.entered = c.entered.saturating_sub(1));
            return Some(Boundary {
                step: step.clone(),
                state: ExecState::Pending,
                wake_at: Some(now),
                reason: None,
                wait_since: None,
            });
        }
        self.balance -= target.price_micros;
        acc.outcome.sends += 1;
        let contact = f.contact_id.clone();
        acc.sends.push(OutboxNew {
            key: execution_key(&self.campaign, version, &contact, entry, step),
            contact,
            entry,
            version: version.to_string(),
            step: step.clone(),
            channel: target.channel.clone(),
            message: target.message.clone(),
            template: target.template.clone(),
            price_micros: target.price_micros,
            created_at: now,
        });
        acc.at_ms.push(at_ms);
        f.sent.push(SentMessage {
            step: id.0.clone(),
            channel: target.channel.clone(),
            sent_at: now,
            delivered_at: None,
            opened_at: None,
            clicked_at: None,
        });
        None
    }

    /// Records sends the provider accepted before a crash, with the
    /// engagement it reports for them.
    fn record_accepted(&mut self, rows: &[(OutboxNew, Engagement)], now: i64) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut round = Round::default();
        let mut debits = Debits::default();
        for (o, engagement) in rows {
            record_sent(&mut round, &mut debits, o, *engagement, now);
        }
        round.ledger.push(LedgerEntry {
            amount_micros: -debits.micros,
            reason: format!("{}: {} send(s) reconciled after restart", self.campaign, rows.len()),
        });
        round.settled = rows.iter().map(|(o, _)| (o.contact.clone(), o.entry)).collect();
        self.store.commit(&self.campaign, &round, &self.lease, now)?;
        Ok(())
    }

    pub fn breaker_tripped(&self) -> bool {
        self.tripped
    }

    /// Whether the probe after an outage is still owed (no send went through yet).
    pub fn probe_owed(&self) -> bool {
        self.config.probe
    }

    fn breaker_sees(&mut self, seen: Seen) {
        let ok = seen == Seen::Success;
        let b = &mut self.breaker;
        if ok {
            b.consecutive_failures = 0;
        } else {
            b.consecutive_failures += 1;
        }
        b.recent.push_back(ok);
        while b.recent.len() > self.config.breaker_window {
            b.recent.pop_front();
        }
        let failures = b.recent.iter().filter(|x| !**x).count();
        let full = b.recent.len() >= self.config.breaker_window;
        if b.consecutive_failures >= self.config.breaker_consecutive
            || (full && failures as f64 > self.config.breaker_rate * b.recent.len() as f64)
        {
            self.tripped = true;
        }
    }

    /// Records a failed attempt: another one scheduled on the outbox row
    /// (the execution parked until then), or, after `max_attempts`, the
    /// send and its execution failed for good and its price refunded.
    fn record_failed(&mut self, round: &mut Round, a: &Attempt, reason: String, now: i64) -> Failure {
        let o = &a.row;
        let made = a.made + 1;
        if made < self.config.max_attempts {
            round.try_again(o, made, now + retry_delay(made), reason);
            return Failure::WillRetry;
        }
        self.balance += o.price_micros;
        round.outbox_done.push(o.outcome(now, SendOutcome::Failed { error: reason.clone() }));
        count(&mut round.steps, &o.step, |c| c.failed += 1);
        round.executions.push(ExecUpdate {
            contact: o.contact.clone(),
            entry: o.entry,
            step: o.step.clone(),
            version: o.version.clone(),
            state: ExecState::Failed,
            wake_at: None,
            reason: Some(reason),
            wait_since: None,
        });
        Failure::ForGood
    }

    /// Delivers sends through the provider and records each outcome in one
    /// commit: sent (debited, with engagement), failed for good after
    /// `max_attempts` (refunded, execution failed), or another attempt
    /// scheduled on the outbox row (the execution parked `processing` until
    /// then). Once the breaker trips nothing more is sent; the rest stays
    /// pending in the outbox for after the resume. Returns how many failed
    /// for good.
    fn relay(&mut self, queue: Vec<Attempt>, now: i64) -> Result<u64, EngineError> {
        if queue.is_empty() {
            return Ok(0);
        }
        let mut round = Round::default();
        let mut queue = match self.limiter.as_mut() {
            Some(limiter) => rate_earlier(limiter, queue, &mut round, now),
            None => queue,
        };
        let (mut debits, mut failed) = (Debits::default(), 0u64);
        let mut start = 0;
        let mut stopped = false;
        // The sends are held under the lease taken when they were committed
        // or claimed, for `ttl`: a relay that outlasts a third of it (a slow
        // provider) renews the lease on all of them before going on, and
        // does not hand over those another worker took over meanwhile.
        // Messages go in chunks sized to take about a quarter of the lease.
        let ttl = Duration::from_millis(self.lease.ttl_ms.max(1) as u64);
        let mut renewed = Instant::now();
        // How long a message takes is known after the first chunk: it is small.
        let mut chunk = FIRST_RELAY_CHUNK;
        while start < queue.len() && !self.tripped {
            if renewed.elapsed() >= ttl / 3 {
                // Those handed over already too: their outcomes commit with
                // the relay's round, and until then they are pending.
                let all: Vec<&OutboxNew> = queue.iter().map(|a| &a.row).collect();
                let held = self.store.renew_sends(&self.campaign, &all, &self.lease)?;
                renewed = Instant::now();
                if held.len() < all.len() {
                    let mut i = 0;
                    queue.retain(|a| {
                        i += 1;
                        i <= start || held.contains(&a.row.key)
                    });
                    if start >= queue.len() {
                        break;
                    }
                }
            }
            // A probe after an outage: one message first, the rest only if it goes through.
            let mut end = if self.config.probe { start + 1 } else { queue.len().min(start + chunk) };
            if self.config.pace == Pace::RealTime && queue[start].at_ms.is_some() {
                // Real time: each message at its slot, not before.
                if let Some(at) = queue[start].at_ms {
                    if rate::wait_for(at, self.config.stop.as_deref()) == rate::Waited::Stopped {
                        stopped = true;
                        break;
                    }
                }
                let wall = rate::wall_ms();
                end =
                    start + 1 + queue[start + 1..end].iter().take_while(|a| a.at_ms.is_none_or(|t| t <= wall)).count();
            }
            let slice = &queue[start..end];
            let msgs: Vec<Message> = slice
                .iter()
                .map(|a| a.row.to_message(&self.campaign, a.at_ms.unwrap_or(now * 60_000), a.made + 1))
                .collect();
            let handed = Instant::now();
            let results = self.provider.send_batch(&msgs);
            let per_message = handed.elapsed() / msgs.len().max(1) as u32;
            chunk = if per_message.is_zero() {
                RELAY_CHUNK
            } else {
                ((ttl / 4).as_nanos() / per_message.as_nanos()).clamp(1, RELAY_CHUNK as u128) as usize
            };
            for (a, r) in slice.iter().zip(results) {
                let o = &a.row;
                match r {
                    Delivery::Accepted { delivered_at, opened_at, clicked_at } => {
                        self.breaker_sees(Seen::Success);
                        self.config.probe = false;
                        record_sent(
                            &mut round,
                            &mut debits,
                            o,
                            Engagement { delivered_at, opened_at, clicked_at },
                            now,
                        );
                        if a.origin != Origin::Batch {
                            round.settled.push((o.contact.clone(), o.entry));
                        }
                    }
                    Delivery::Failed { reason } => {
                        self.breaker_sees(Seen::Failure);
                        if self.record_failed(&mut round, a, reason, now) == Failure::ForGood {
                            failed += 1;
                        }
                    }
                }
            }
            if self.config.probe && !self.tripped {
                // The probe failed without tripping: treat it as an outage still going on.
                self.tripped = true;
            }
            start = end;
        }
        // Not sent because the breaker tripped (or the process is stopping
        // while waiting for a slot): these stay pending and are parked, to be
        // tried when the campaign is resumed.
        let why = if stopped {
            "not sent yet: stopped while waiting for its rate-limit slot"
        } else {
            "not sent: the circuit breaker tripped"
        };
        for a in &queue[start..] {
            round.try_again(&a.row, a.made, now, why.into());
        }
        // One ledger entry per relay: each send's price is in its outbox row.
        if debits.sends > 0 {
            round.ledger.push(LedgerEntry {
                amount_micros: -debits.micros,
                reason: format!("{}: {} send(s)", self.campaign, debits.sends),
            });
        }
        round.breaker = Some(self.breaker.clone());
        self.store.commit(&self.campaign, &round, &self.lease, now)?;
        Ok(failed)
    }
}

/// Most messages handed to the provider at once: the relay renews its
/// lease on the rest between chunks.
const RELAY_CHUNK: usize = 256;

/// Messages in a relay's first chunk, before it knows how long one takes.
const FIRST_RELAY_CHUNK: usize = 4;

/// Retries and sends a stopped process left in flight take rate-limit
/// slots too (a batch's fresh sends took theirs when stepped): one with no
/// slot left in this minute stays pending, its next attempt at the minute
/// the limiter names, its execution parked; the attempt is not counted.
/// The limiter's state commits with the round.
fn rate_earlier(limiter: &mut rate::Limiter, queue: Vec<Attempt>, round: &mut Round, now: i64) -> Vec<Attempt> {
    let mut go = Vec::with_capacity(queue.len());
    for mut a in queue {
        if a.at_ms.is_some() {
            go.push(a);
            continue;
        }
        match limiter.take(now) {
            rate::Slot::Now { at_ms } => {
                a.at_ms = Some(at_ms);
                go.push(a);
            }
            rate::Slot::Later { wake_at } => {
                round.try_again(&a.row, a.made, wake_at, "held by the rate limit".into());
            }
        }
    }
    round.rate_next_free_ms = Some(limiter.next_free_ms());
    go
}

/// Where a send handed to the relay comes from. Settling one recorded
/// earlier (a retry, or one a stopped process left in flight) may release a
/// parked execution; a batch's fresh sends never parked one, so they skip
/// that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Batch,
    Earlier,
}

/// One send to attempt, with the attempts already made.
struct Attempt {
    row: OutboxNew,
    made: u32,
    origin: Origin,
    /// The instant to hand it over (ms), when a rate limit gave it one;
    /// else the start of the relay's minute.
    at_ms: Option<i64>,
}

/// A batch loaded for stepping: its due executions and the facts they read.
struct Batch {
    due: Vec<Due>,
    sent: HashMap<(ContactId, Entry), Vec<SentMessage>>,
    events: HashMap<ContactId, Vec<facts::ContactEvent>>,
    /// Contacts with more than one execution in the batch (re-entry).
    shared: HashSet<ContactId>,
}

/// Where an execution stops in this batch.
struct Boundary {
    step: StepId,
    state: ExecState,
    wake_at: Option<i64>,
    reason: Option<String>,
    wait_since: Option<i64>,
}

/// A stepped batch, not yet committed: the round it writes and the sends
/// it owes (outbox rows to commit, then relay).
#[derive(Debug, Default)]
pub struct Stepped {
    pub round: Round,
    pub sends: Vec<OutboxNew>,
    /// When each of `sends` is handed over (ms): its minute's start, or
    /// the rate limit's slot.
    pub at_ms: Vec<i64>,
    pub outcome: BatchOutcome,
}

/// What the sends recorded in one round cost, for its one ledger entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Debits {
    pub micros: i64,
    pub sends: u64,
}

/// The one place an accepted send is recorded: its outcome on the outbox
/// row, its price among the round's debits, and its step's counters.
pub fn record_sent(round: &mut Round, debits: &mut Debits, row: &OutboxNew, engagement: Engagement, now: i64) {
    round.outbox_done.push(row.outcome(now, SendOutcome::Sent(engagement)));
    debits.micros += row.price_micros;
    debits.sends += 1;
    count(&mut round.steps, &row.step, |c| {
        c.sent += 1;
        c.cost_micros += row.price_micros;
    });
}

/// What the circuit breaker learns from one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Success,
    Failure,
}

/// Where a failed attempt leaves its send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    WillRetry,
    ForGood,
}

/// What the delivery rules decide for a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Send, handed over at this instant (ms).
    Go { at_ms: i64 },
    /// Not now: the execution waits at the send until `until` (minutes).
    Hold { until: i64, why: Held },
    /// Skipped, and the execution goes on.
    Skip(step::SkipReason),
}
