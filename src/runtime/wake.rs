//! Event-driven wake-ups: which waiting executions an incoming fact concerns.
//!
//! A program's *interests* say, per event name and per contact field, which
//! steps wait on it: the `wait until` steps whose arms read it, and for
//! what an exit criterion reads, every `wait until` step (an exit concerns
//! an execution wherever it waits). Only executions parked at a `wait
//! until` are woken: stepping re-evaluates their arms and parks them again
//! when nothing holds, where an execution parked after a plain `wait` (or
//! before its start) would go on early. An `exit when event` does not wait
//! for them: `leave` completes the contact's pending execution, wherever it
//! waits, when the event is ingested. Interests are computed once per
//! (campaign, version) and cached with the decoded program.
//! Waking is then one indexed UPDATE per (campaign, contact) through
//! `Store::wake`: an event costs the executions it concerns, never a scan,
//! and an unrelated event touches nothing.

use super::facts::ContactRecord;
use super::store::{CampaignState, ContactId, EventOf, FieldDelta, StepId, Steps, Store, StoreError, TagDelta};
use crate::compile::codec;
use crate::compile::program::{Cond, EventMatch, Exit, Op, Operand, Program, WaitOn};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The steps (ids of `wait until` instructions) whose parked executions a
/// fact concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Concern(pub BTreeSet<StepId>);

/// What a program's waiting executions wait on, by event name and by
/// contact field (`tags`, `consent` and `capabilities` are fields too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interests {
    pub events: BTreeMap<String, Concern>,
    pub fields: BTreeMap<String, Concern>,
}

/// What one condition reads, before it is charged to steps.
#[derive(Default)]
struct Reads {
    events: BTreeSet<String>,
    fields: BTreeSet<String>,
}

impl Interests {
    pub fn of(p: &Program) -> Interests {
        let mut out = Interests::default();
        let mut every_wait = Concern::default();
        for n in &p.nodes {
            let Op::WaitUntil { arms, .. } = &n.op else { continue };
            every_wait.0.insert(n.id.clone());
            let here = Concern(BTreeSet::from([n.id.clone()]));
            for arm in arms {
                let reads = match &arm.on {
                    WaitOn::Event { event } => event_reads(p, event),
                    WaitOn::State { cond } => cond_reads(p, cond),
                };
                out.charge(&reads, &here);
            }
        }
        for exit in &p.exits {
            let reads = match exit {
                Exit::Event { event } => event_reads(p, event),
                Exit::State { cond } => cond_reads(p, cond),
            };
            out.charge(&reads, &every_wait);
        }
        out
    }

    fn charge(&mut self, reads: &Reads, concern: &Concern) {
        for e in &reads.events {
            self.events.entry(e.clone()).or_default().0.extend(concern.0.iter().cloned());
        }
        for f in &reads.fields {
            self.fields.entry(f.clone()).or_default().0.extend(concern.0.iter().cloned());
        }
    }

    /// Who an event named `name` concerns; `None`: nobody.
    pub fn event(&self, name: &str) -> Option<&Concern> {
        self.events.get(name)
    }

    /// Who a change of any of `fields` concerns; `None`: nobody.
    pub fn fields<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> Option<Concern> {
        let mut out: Option<Concern> = None;
        for f in fields {
            if let Some(c) = self.fields.get(f) {
                out.get_or_insert_with(Concern::default).0.extend(c.0.iter().cloned());
            }
        }
        out
    }

    /// Who a change of any field concerns (an import replaces whole records).
    pub fn any_field(&self) -> Option<Concern> {
        self.fields(self.fields.keys().map(String::as_str))
    }
}

/// `when event NAME where …`: the event, and what its filter reads.
fn event_reads(p: &Program, e: &EventMatch) -> Reads {
    let mut r = Reads::default();
    r.events.insert(e.event.clone());
    for c in &e.filter {
        add_cond(p, c, &mut r, &mut BTreeSet::new());
    }
    r
}

fn cond_reads(p: &Program, c: &Cond) -> Reads {
    let mut r = Reads::default();
    add_cond(p, c, &mut r, &mut BTreeSet::new());
    r
}

/// Adds what `c` reads; `seen` keeps a segment that refers to itself
/// (through others) from being walked forever.
fn add_cond(p: &Program, c: &Cond, r: &mut Reads, seen: &mut BTreeSet<u16>) {
    match c {
        Cond::Const { .. } => {}
        Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| add_cond(p, x, r, seen)),
        Cond::Not { cond } => add_cond(p, cond, r, seen),
        Cond::Cmp { lhs, rhs, .. } => {
            add_operand(p, lhs, r);
            add_operand(p, rhs, r);
        }
        Cond::In { lhs, .. } => add_operand(p, lhs, r),
        Cond::Has { set, elem } => {
            add_operand(p, set, r);
            add_operand(p, elem, r);
        }
        Cond::Consent { .. } => {
            r.fields.insert("consent".into());
        }
        Cond::Capable { .. } => {
            r.fields.insert("capabilities".into());
        }
        // Engagement arrives as the provider's `message.*` events.
        Cond::Engaged { kind, .. } => {
            r.events.insert(kind.event().to_string());
        }
        // The filter reads the event's properties, and may read fields.
        Cond::Happened { event, filter, .. } => {
            r.events.insert(event.clone());
            filter.iter().for_each(|x| add_cond(p, x, r, seen));
        }
        Cond::InSegment { segment } => {
            if seen.insert(segment.0) {
                if let Some(s) = p.segments.get(segment.0 as usize) {
                    add_cond(p, &s.cond, r, seen);
                }
            }
        }
    }
}

fn add_operand(p: &Program, o: &Operand, r: &mut Reads) {
    match o {
        Operand::Field { slot } => {
            if let Some(f) = p.fields.get(slot.0 as usize) {
                r.fields.insert(f.name.clone());
            }
        }
        Operand::Offset { base, .. } => add_operand(p, base, r),
        Operand::Sum { terms } => terms.iter().for_each(|(_, t)| add_operand(p, t, r)),
        Operand::Prop { .. } | Operand::Const { .. } | Operand::Now { .. } => {}
    }
}

/// Interests by (campaign, version): a program's never change, and the
/// process decodes each version once. Bounded: cleared past `CACHE_MAX`.
static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
type Cache = HashMap<(String, String), Arc<Decoded>>;

/// A stored campaign version as the wake-ups and exits read it.
pub struct Decoded {
    pub program: Program,
    pub interests: Interests,
}
const CACHE_MAX: usize = 1024;

/// Rows woken since the process started, by every caller: what a bench and
/// the service's operators read.
static TOUCHED: AtomicU64 = AtomicU64::new(0);

/// Executions woken in this process so far (rows the wake UPDATEs touched).
pub fn touched() -> u64 {
    TOUCHED.load(Ordering::Relaxed)
}

/// A stored campaign's program and its interests; `None` when it cannot be
/// decoded (that campaign fails where it runs, not here).
fn decoded(name: &str, version: &str, program: &[u8]) -> Option<Arc<Decoded>> {
    let key = (name.to_string(), version.to_string());
    // A poisoned cache only means another thread panicked mid-insert: the map is still sound.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(i) = map.get(&key) {
        return Some(i.clone());
    }
    let p = codec::from_binary(program).ok()?;
    let i = Arc::new(Decoded { interests: Interests::of(&p), program: p });
    if map.len() >= CACHE_MAX {
        map.clear();
    }
    map.insert(key, i.clone());
    Some(i)
}

/// The campaigns whose executions can wait, with their interests: RUNNING
/// ones and paused ones (a paused campaign does not step, but an event that
/// arrives meanwhile must not be forgotten when it resumes).
fn running(store: &dyn Store) -> Result<Vec<(String, Arc<Decoded>)>, StoreError> {
    Ok(store
        .campaigns()?
        .into_iter()
        .filter(|c| {
            matches!(
                c.state,
                CampaignState::Running
                    | CampaignState::Paused
                    | CampaignState::PausedError
                    | CampaignState::PausedBalance
            )
        })
        .filter_map(|c| decoded(&c.name, &c.version, &c.program).map(|i| (c.name, i)))
        .collect())
}

/// Wakes `contact`'s executions that `concern` names, at `at`.
fn wake_one(
    store: &mut dyn Store,
    campaign: &str,
    contact: &ContactId,
    concern: &Concern,
    at: i64,
) -> Result<u64, StoreError> {
    if concern.0.is_empty() {
        return Ok(0);
    }
    let list: Vec<&StepId> = concern.0.iter().collect();
    let n = store.wake(campaign, contact, Steps::Only(&list), at)?;
    TOUCHED.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

/// One fact that may wake executions.
#[derive(Debug, Clone, Copy)]
pub enum Fact<'a> {
    /// An event `name` of the contact.
    Event { name: &'a str },
    /// Some of the contact's fields changed.
    Fields { names: &'a [&'a str] },
    /// The contact was replaced whole (an import): any field may have changed.
    Record,
}

/// The campaigns that can be woken, with their interests, read once for a
/// whole import or replay step.
pub struct Waiting(Vec<(String, Arc<Decoded>)>);

impl Waiting {
    pub fn load(store: &dyn Store) -> Result<Waiting, StoreError> {
        Ok(Waiting(running(store)?))
    }

    /// Each campaign's name and program.
    pub fn programs(&self) -> impl Iterator<Item = (&str, &Program)> {
        self.0.iter().map(|(name, d)| (name.as_str(), &d.program))
    }

    /// Wakes, in every campaign but `except`, the executions of each
    /// contact that wait on its fact, at `at`. Returns the rows touched.
    pub fn wake(
        &self,
        store: &mut dyn Store,
        facts: &[(&ContactId, Fact<'_>)],
        except: Option<&str>,
        at: i64,
    ) -> Result<u64, StoreError> {
        let mut touched = 0;
        for (campaign, decoded) in &self.0 {
            let interests = &decoded.interests;
            if except == Some(campaign.as_str()) {
                continue;
            }
            for (contact, fact) in facts {
                let concern = match fact {
                    Fact::Event { name } => interests.event(name).cloned(),
                    Fact::Fields { names } => interests.fields(names.iter().copied()),
                    Fact::Record => interests.any_field(),
                };
                if let Some(c) = concern {
                    touched += wake_one(store, campaign, contact, &c, at)?;
                }
            }
        }
        Ok(touched)
    }
}

/// `Waiting::wake` with the campaigns read now.
pub fn wake(
    store: &mut dyn Store,
    facts: &[(&ContactId, Fact<'_>)],
    except: Option<&str>,
    at: i64,
) -> Result<u64, StoreError> {
    if facts.is_empty() {
        return Ok(0);
    }
    Waiting::load(store)?.wake(store, facts, except, at)
}

/// What the engine calls after a round of `campaign` changed tags: the
/// executions of OTHER campaigns that read those contacts' tags wake now.
pub fn tags_changed(store: &mut dyn Store, campaign: &str, deltas: &[TagDelta], now: i64) -> Result<u64, StoreError> {
    if deltas.is_empty() {
        return Ok(0);
    }
    let facts: Vec<(&ContactId, Fact<'_>)> =
        deltas.iter().map(|d| (&d.contact, Fact::Fields { names: &["tags"] })).collect();
    wake(store, &facts, Some(campaign), now)
}

/// What the engine calls after a round of `campaign` ran `set` steps: the
/// executions of OTHER campaigns whose `wait until` arms or exits read those
/// fields wake now (this campaign's executions stepped on the new values).
pub fn fields_set(store: &mut dyn Store, campaign: &str, deltas: &[FieldDelta], now: i64) -> Result<u64, StoreError> {
    if deltas.is_empty() {
        return Ok(0);
    }
    let names: Vec<Vec<&str>> = deltas.iter().map(|d| d.values.iter().map(|(n, _)| n.as_str()).collect()).collect();
    let facts: Vec<(&ContactId, Fact<'_>)> =
        deltas.iter().zip(&names).map(|(d, n)| (&d.contact, Fact::Fields { names: n })).collect();
    wake(store, &facts, Some(campaign), now)
}

/// The fields of a contact that differ between `before` (absent for a new
/// contact) and `after`, by the names conditions use.
pub fn changed_fields(before: Option<&ContactRecord>, after: &ContactRecord) -> Vec<String> {
    let Some(b) = before else {
        let mut all: Vec<String> = after.attrs.keys().cloned().collect();
        all.extend(["tags", "consent", "capabilities"].map(String::from));
        return all;
    };
    let mut out: Vec<String> = Vec::new();
    let sets = [
        ("tags", &b.tags, &after.tags),
        ("consent", &b.consent, &after.consent),
        ("capabilities", &b.capabilities, &after.capabilities),
    ];
    for (name, x, y) in sets {
        // Order is not meaning: a set that only changed order did not change.
        if x.len() != y.len() || x.iter().any(|t| !y.contains(t)) {
            out.push(name.to_string());
        }
    }
    let keys: BTreeSet<&String> = b.attrs.keys().chain(after.attrs.keys()).collect();
    out.extend(keys.into_iter().filter(|k| b.attrs.get(*k) != after.attrs.get(*k)).cloned());
    out
}

/// Wakes what contact upserts concern: for each (before, after) pair, the
/// executions reading a field that changed, and those waiting on `events`.
pub fn contacts_changed(
    store: &mut dyn Store,
    changes: &[(Option<ContactRecord>, ContactRecord)],
    events: &[EventOf],
    now: i64,
) -> Result<u64, StoreError> {
    let names: Vec<Vec<String>> = changes.iter().map(|(b, a)| changed_fields(b.as_ref(), a)).collect();
    let refs: Vec<Vec<&str>> = names.iter().map(|v| v.iter().map(String::as_str).collect()).collect();
    let facts: Vec<(&ContactId, Fact<'_>)> = changes
        .iter()
        .zip(&refs)
        .filter(|(_, r)| !r.is_empty())
        .map(|((_, a), r)| (&a.id, Fact::Fields { names: r }))
        .collect();
    let waiting = Waiting::load(store)?;
    let mut woken = waiting.wake(store, &facts, None, now)?;
    for EventOf { contact, event: e } in events {
        woken += waiting.wake(store, &[(contact, Fact::Event { name: &e.name })], None, e.at)?;
    }
    Ok(woken)
}
