//! Contacts alike for an estimate: what a program's walks read of each
//! contact (`reads_of`), and the grouping of an audience by it for stores
//! that do not group themselves (`group`, `Store::audience_groups`'s default).
//!
//! A walk (`estimate::walk`) is a function of the contact's facts and of
//! nothing else; of the facts it reads only the fields its conditions and
//! `set` steps name, the tag, consent and capability sets, the addresses,
//! the events when a condition reads events, and the id for the A/B
//! variants. Contacts equal in all of that but the id walk alike once their
//! variants are known, so the estimate walks each (group, variants) once.

use super::facts::FieldValue;
use super::store::{Audience, DueContact, EventReads, GroupId, IdReads, Member, Store, StoreError, WalkReads};
use crate::compile::program::{Cond, Exit, FieldSlot, Op, Operand, Program, SetValue, WaitOn};
use std::collections::{BTreeSet, HashMap};

/// At most this many groups in one stream: the groups' data is kept for the
/// whole estimate, so an audience of contacts all unlike (a walk reading
/// the id, or a number every contact has its own of) costs bounded memory;
/// contacts after the last group are streamed alone.
pub const MAX_GROUPS: usize = 1 << 16;

/// What the walks of `p` read of a contact: the field slots named by its
/// steps' conditions and values, its exits, and — when any of those uses a
/// segment — every segment's; the audience and the trigger are the store's
/// filter and not walked. Events are read when anything in the program
/// reads them (the engine's own rule, `engine::needs_events`); ids, when the
/// program splits contacts (A/B), reads events, or counts recorded sends
/// against frequency caps.
pub fn reads_of(p: &Program) -> WalkReads {
    let mut r = Reading::default();
    for n in &p.nodes {
        match &n.op {
            Op::Branch { cond, .. } => r.cond(cond),
            Op::WaitUntil { arms, .. } => {
                for a in arms {
                    match &a.on {
                        WaitOn::State { cond } => r.cond(cond),
                        WaitOn::Event { event } => event.filter.iter().for_each(|c| r.cond(c)),
                    }
                }
            }
            Op::Set { value, .. } => match value {
                SetValue::Cond { cond } => r.cond(cond),
                SetValue::Operand { operand } => r.operand(operand),
            },
            Op::Send { .. } | Op::Wait { .. } | Op::Split { .. } | Op::Tag { .. } | Op::Jump { .. } | Op::End => {}
        }
    }
    for e in &p.exits {
        match e {
            Exit::State { cond } => r.cond(cond),
            Exit::Event { event } => event.filter.iter().for_each(|c| r.cond(c)),
        }
    }
    if r.segments {
        // A segment's own references are among these: all of them, once.
        for s in &p.segments {
            r.cond(&s.cond);
        }
    }
    let events = if super::engine::needs_events(p) { EventReads::Read } else { EventReads::Unread };
    let splits = p.nodes.iter().any(|n| matches!(n.op, Op::Split { .. }));
    let ids = if splits || events == EventReads::Read || !p.delivery.frequency_caps.is_empty() {
        IdReads::Read
    } else {
        IdReads::Unread
    };
    WalkReads { slots: r.slots.into_iter().map(FieldSlot).collect(), events, ids }
}

/// The slots conditions read, and whether any uses a segment.
#[derive(Default)]
struct Reading {
    slots: BTreeSet<u16>,
    segments: bool,
}

impl Reading {
    fn cond(&mut self, c: &Cond) {
        match c {
            Cond::Const { .. } | Cond::Consent { .. } | Cond::Capable { .. } | Cond::Engaged { .. } => {}
            Cond::And { all: v } | Cond::Or { any: v } => v.iter().for_each(|x| self.cond(x)),
            Cond::Not { cond } => self.cond(cond),
            Cond::Cmp { lhs, rhs, .. } => {
                self.operand(lhs);
                self.operand(rhs);
            }
            Cond::In { lhs, .. } => self.operand(lhs),
            Cond::Has { set, elem } => {
                self.operand(set);
                self.operand(elem);
            }
            Cond::Happened { filter, .. } => filter.iter().for_each(|x| self.cond(x)),
            Cond::InSegment { .. } => self.segments = true,
        }
    }

    fn operand(&mut self, o: &Operand) {
        match o {
            Operand::Field { slot } => {
                self.slots.insert(slot.0);
            }
            Operand::Offset { base, .. } => self.operand(base),
            Operand::Sum { terms } => terms.iter().for_each(|(_, t)| self.operand(t)),
            Operand::Prop { .. } | Operand::Const { .. } | Operand::Now { .. } => {}
        }
    }
}

/// Groups what `store.audience` streams by `reads`, in its order: the
/// grouping of a store that cannot do better.
pub fn group<S: Store + ?Sized>(
    store: &S,
    audience: Audience<'_>,
    reads: &WalkReads,
    f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut groups: HashMap<Vec<u8>, GroupId> = HashMap::new();
    let mut key = Vec::new();
    store.audience(audience, &mut |c| {
        key.clear();
        key_of(&c, reads, &mut key);
        if let Some(&group) = groups.get(key.as_slice()) {
            return f(Member::Again { group, id: Some(c.id.as_str()) });
        }
        if groups.len() >= MAX_GROUPS {
            return f(Member::Alone(c));
        }
        let group = GroupId(groups.len() as u32);
        groups.insert(key.clone(), group);
        f(Member::First { group, contact: c })
    })
}

/// The bytes two contacts share exactly when they are alike under `reads`.
fn key_of(c: &DueContact, reads: &WalkReads, out: &mut Vec<u8>) {
    for slot in &reads.slots {
        field_key(c.fields.get(slot.0 as usize).unwrap_or(&FieldValue::Absent), out);
    }
    for set in [&c.tags, &c.consent, &c.capabilities] {
        strings_key(set, out);
    }
    out.push(u8::from(c.addresses.email) | u8::from(c.addresses.phone) << 1);
    if reads.events == EventReads::Read {
        match c.created_at {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
            None => out.push(0),
        }
    }
}

fn field_key(v: &FieldValue, out: &mut Vec<u8>) {
    match v {
        FieldValue::Absent => out.push(0),
        FieldValue::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        FieldValue::Number(n) => {
            out.push(2);
            out.extend_from_slice(&n.to_bits().to_le_bytes());
        }
        FieldValue::Str(s) => {
            out.push(3);
            string_key(s, out);
        }
        FieldValue::Datetime(m) => {
            out.push(4);
            out.extend_from_slice(&m.to_le_bytes());
        }
        FieldValue::Date(d) => {
            out.push(5);
            out.extend_from_slice(&d.to_le_bytes());
        }
        FieldValue::Duration(m) => {
            out.push(6);
            out.extend_from_slice(&m.to_le_bytes());
        }
        FieldValue::Set(s) => {
            out.push(7);
            strings_key(s, out);
        }
    }
}

fn strings_key(v: &[String], out: &mut Vec<u8>) {
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for s in v {
        string_key(s, out);
    }
}

/// Length first, so no string's bytes can be read as the start of the next.
fn string_key(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}
