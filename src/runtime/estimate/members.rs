//! The audience through the walks: each contact's facts put together (its
//! events and recorded sends read one query per batch, when the program
//! needs them), walked, and its weights added up — in the audience's order,
//! so the sums are the same whichever way the contacts came.
//!
//! Alike contacts (`alike`) with the same A/B variants walk alike, so a
//! walk's outcome is kept and added again for each of them: on 1,000,000
//! contacts a campaign is walked once per kind of contact, not per contact.
//! A contact with stored events or recorded sends of its own is walked on
//! its own (they are not part of what makes contacts alike).

use super::{walk, Acc, Presence, Weights};
use crate::compile::program::{Cond, NodeIdx, Op, Program, Variant};
use crate::runtime::facts::{self, Facts};
use crate::runtime::step::{self, Account};
use crate::runtime::store::{ContactId, DueContact, GroupId, IdReads, Member, Store, StoreError};
use std::collections::{BTreeSet, HashMap};

/// Contacts whose events or recorded sends are read in one query.
const BATCH: usize = 2000;

/// At most this many walk outcomes are kept; beyond, a contact that
/// matches none is walked without keeping its outcome (bounded memory when
/// every contact is unlike the others).
const MAX_KEPT: usize = 1 << 17;

/// At most this many outcomes per group (one per combination of A/B
/// variants met), looked up in order: a few in practice.
const MAX_KEPT_PER_GROUP: usize = 64;

/// What the walks need besides the contacts.
pub(super) struct Setup<'a> {
    pub program: &'a Program,
    /// When the contacts enter (minutes).
    pub at: i64,
    pub rates: super::Rates,
    pub account: &'a Account,
    /// The program's `exit when EXPR` criteria as one condition.
    pub exit: Option<Cond>,
    /// The consent-requiring (channel, message) pairs, for the caps.
    pub consent: BTreeSet<(String, String)>,
    /// The longest frequency cap's window: the recorded sends it reaches.
    pub longest_cap: Option<i64>,
    /// Whether a walk reads the contact's stored events.
    pub events: bool,
    /// Whether the walks need each contact's id (`alike::reads_of`).
    pub ids: IdReads,
}

/// One contact's walk, as it adds to the totals: per node entered, in node
/// order.
#[derive(Debug, Clone)]
struct Outcome(Vec<Touch>);

#[derive(Debug, Clone, Copy)]
struct Touch {
    node: usize,
    seen: f64,
    doubtful: bool,
    /// Primary (0) and fallback (1) sends, and whether each may be skipped.
    sent: [f64; 2],
    sent_doubt: [bool; 2],
}

/// A contact waiting in a batch for its events and recorded sends.
enum Pending {
    /// Its id and the group whose data it shares.
    Grouped(ContactId, GroupId),
    Own(DueContact),
}

/// One contact's weights while it walks, reused across contacts.
struct Scratch {
    seen: Vec<f64>,
    sent: Vec<[f64; 2]>,
    touched: Vec<usize>,
    doubtful: Vec<bool>,
    sent_doubt: Vec<[bool; 2]>,
}

pub(super) struct Walker<'a> {
    setup: Setup<'a>,
    store: &'a dyn Store,
    pub acc: Acc,
    scratch: Scratch,
    /// Each group's data, by `GroupId`.
    groups: Vec<DueContact>,
    /// Per group, its walks' outcomes by the variants of the A/B splits
    /// (`variants`).
    kept: Vec<Vec<(u64, Outcome)>>,
    kept_total: usize,
    splits: Vec<(&'a str, &'a [Variant])>,
    pending: Vec<Pending>,
}

impl<'a> Walker<'a> {
    pub fn new(setup: Setup<'a>, store: &'a dyn Store) -> Walker<'a> {
        let n = setup.program.nodes.len();
        let splits = setup
            .program
            .nodes
            .iter()
            .filter_map(|node| match &node.op {
                Op::Split { name, variants } => Some((name.as_str(), variants.as_slice())),
                _ => None,
            })
            .collect();
        Walker {
            store,
            acc: Acc { reach: vec![super::Range::default(); n], per_step: vec![[None; 2]; n] },
            scratch: Scratch {
                seen: vec![0.0; n],
                sent: vec![[0.0; 2]; n],
                touched: Vec::new(),
                doubtful: vec![false; n],
                sent_doubt: vec![[false; 2]; n],
            },
            groups: Vec::new(),
            kept: Vec::new(),
            kept_total: 0,
            splits,
            pending: Vec::new(),
            setup,
        }
    }

    /// Whether contacts wait in batches for their events and sends.
    fn batched(&self) -> bool {
        self.setup.events || self.setup.longest_cap.is_some()
    }

    /// A contact of `Store::audience_groups`.
    pub fn member(&mut self, m: Member<'_>) -> Result<(), StoreError> {
        match m {
            Member::Alone(c) => self.own(c),
            Member::Again { group, id: Some(id) } => self.in_group(group, id),
            // No walk reads it (no A/B split, no history of its own to read).
            Member::Again { group, id: None } if self.setup.ids == IdReads::Unread => self.in_group(group, ""),
            Member::Again { group, id: None } => {
                Err(StoreError::Other(format!("the store gave a contact of group {} without its id", group.0)))
            }
            Member::First { group, contact } => {
                if group.0 as usize != self.groups.len() {
                    return Err(StoreError::Other(format!("the store numbered a new group {} out of order", group.0)));
                }
                let id = contact.id.clone();
                self.groups.push(contact);
                self.kept.push(Vec::new());
                self.in_group(group, id.as_str())
            }
        }
    }

    fn in_group(&mut self, group: GroupId, id: &str) -> Result<(), StoreError> {
        if self.batched() {
            self.pending.push(Pending::Grouped(ContactId(id.to_string()), group));
            return self.flush_if_full();
        }
        self.grouped(group, id, Vec::new(), &[])
    }

    /// A contact with its own data (`Store::audience`, or one in no group).
    pub fn own(&mut self, c: DueContact) -> Result<(), StoreError> {
        if self.batched() {
            self.pending.push(Pending::Own(c));
            return self.flush_if_full();
        }
        self.walk_own(c, Vec::new(), &[]);
        Ok(())
    }

    fn flush_if_full(&mut self) -> Result<(), StoreError> {
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Walks the contacts waiting in the batch, with their events and
    /// recorded sends read in one query each.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let ids: Vec<&ContactId> = batch
            .iter()
            .map(|p| match p {
                Pending::Grouped(id, _) => id,
                Pending::Own(c) => &c.id,
            })
            .collect();
        let mut events: HashMap<ContactId, Vec<facts::ContactEvent>> = HashMap::new();
        if self.setup.events {
            for e in self.store.events_for(&ids)? {
                events.entry(e.contact).or_default().push(e.event);
            }
        }
        let mut recorded: HashMap<ContactId, Vec<(String, i64)>> = HashMap::new();
        if let Some(window) = self.setup.longest_cap {
            for sent in self.store.sends_since(&ids, self.setup.at.saturating_sub(window))? {
                if self.setup.consent.contains(&(sent.channel.clone(), sent.message.clone())) {
                    recorded.entry(sent.contact).or_default().push((sent.channel, sent.sent_at));
                }
            }
        }
        for p in batch {
            match p {
                Pending::Grouped(id, group) => {
                    let own_events = events.remove(id.as_str()).unwrap_or_default();
                    let sends = recorded.remove(id.as_str()).unwrap_or_default();
                    self.grouped(group, id.as_str(), own_events, &sends)?;
                }
                Pending::Own(c) => {
                    let own_events = events.remove(c.id.as_str()).unwrap_or_default();
                    let sends = recorded.remove(c.id.as_str()).unwrap_or_default();
                    self.walk_own(c, own_events, &sends);
                }
            }
        }
        Ok(())
    }

    /// A member `id` of `group`: the outcome kept for its group and
    /// variants if there is one, else its walk (kept for the next alike).
    fn grouped(
        &mut self,
        group: GroupId,
        id: &str,
        events: Vec<facts::ContactEvent>,
        recorded: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let Some(data) = self.groups.get(group.0 as usize) else {
            return Err(StoreError::Other(format!("the store named group {} before its first contact", group.0)));
        };
        if !events.is_empty() || !recorded.is_empty() {
            // Its own history: walked alone.
            let facts = facts_of(data, ContactId(id.to_string()), events);
            let outcome = self.walk(facts, recorded);
            self.acc.add(&outcome);
            return Ok(());
        }
        let variants = self.variants(id);
        let kept = &self.kept[group.0 as usize];
        if let Some((_, outcome)) = variants.and_then(|v| kept.iter().find(|(k, _)| *k == v)) {
            self.acc.add(outcome);
            return Ok(());
        }
        let facts = facts_of(data, ContactId(id.to_string()), events);
        let outcome = self.walk(facts, recorded);
        self.acc.add(&outcome);
        let kept = &mut self.kept[group.0 as usize];
        if let Some(v) = variants.filter(|_| self.kept_total < MAX_KEPT && kept.len() < MAX_KEPT_PER_GROUP) {
            kept.push((v, outcome));
            self.kept_total += 1;
        }
        Ok(())
    }

    /// The variants contact `id` gets at each A/B split, as one number
    /// (mixed radix); `None` when there are too many combinations to count.
    fn variants(&self, id: &str) -> Option<u64> {
        let campaign = &self.setup.program.campaign;
        self.splits.iter().try_fold(0u64, |code, (name, variants)| {
            let chosen = step::pick_variant(campaign, id, name, variants) as u64;
            code.checked_mul(variants.len().max(1) as u64)?.checked_add(chosen)
        })
    }

    fn walk_own(&mut self, c: DueContact, events: Vec<facts::ContactEvent>, recorded: &[(String, i64)]) {
        let id = c.id.clone();
        let facts = facts_of(&c, id, events);
        let outcome = self.walk(facts, recorded);
        self.acc.add(&outcome);
    }

    /// Walks one contact through the program and reads off what it adds.
    fn walk(&mut self, mut f: Facts, recorded: &[(String, i64)]) -> Outcome {
        let s = &mut self.scratch;
        let mut w = Weights {
            seen: &mut s.seen,
            sent: &mut s.sent,
            touched: &mut s.touched,
            doubtful: &mut s.doubtful,
            exit: &self.setup.exit,
            sent_doubt: &mut s.sent_doubt,
            recorded,
        };
        let setup = &self.setup;
        walk(
            setup.program,
            NodeIdx(0),
            &mut f,
            1.0,
            setup.at,
            setup.rates,
            setup.account,
            &mut w,
            0,
            Presence::Certain,
        );
        s.touched.sort_unstable();
        s.touched.dedup();
        let touches = s
            .touched
            .iter()
            .map(|&node| Touch {
                node,
                seen: std::mem::take(&mut s.seen[node]),
                doubtful: std::mem::take(&mut s.doubtful[node]),
                sent: std::mem::take(&mut s.sent[node]),
                sent_doubt: std::mem::take(&mut s.sent_doubt[node]),
            })
            .collect();
        s.touched.clear();
        Outcome(touches)
    }
}

/// The facts of contact `id` with `data`'s fields, sets and addresses, its
/// own `events` and its creation as the `contact.created` event.
fn facts_of(data: &DueContact, id: ContactId, mut events: Vec<facts::ContactEvent>) -> Facts {
    if let Some(created) = data.created_at {
        events.push(facts::ContactEvent { name: "contact.created".into(), at: created, props: Default::default() });
    }
    Facts {
        events,
        contact_id: id,
        fields: data.fields.clone(),
        tags: data.tags.clone(),
        consent: data.consent.clone(),
        capabilities: data.capabilities.clone(),
        addresses: data.addresses,
        sent: Vec::new(),
    }
}

impl Acc {
    /// One contact's outcome: a share of reach per node entered (certain
    /// only when every way got there surely), and its sends.
    fn add(&mut self, o: &Outcome) {
        for t in &o.0 {
            let presence = |doubt: bool| if doubt { Presence::Doubtful } else { Presence::Certain };
            if let Some(r) = self.reach.get_mut(t.node) {
                r.add_as(t.seen, presence(t.doubtful));
            }
            let Some(sends) = self.per_step.get_mut(t.node) else { continue };
            for (which, weight) in t.sent.iter().enumerate() {
                if *weight > 0.0 {
                    sends[which].get_or_insert_with(Default::default).add_as(*weight, presence(t.sent_doubt[which]));
                }
            }
        }
    }
}
