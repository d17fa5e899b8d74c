//! Persisting programs: JSON and a compact binary form, and the validation
//! every loaded program passes before anything runs it.
//!
//! Binary layout: `FLOWPROG` magic, format version (u16 LE), payload length
//! (u32 LE), payload (postcard), FNV-1a 64 checksum of the payload (u64 LE).

use super::program::*;
use crate::limits;
use std::collections::HashSet;

pub const MAGIC: &[u8; 8] = b"FLOWPROG";
pub const FORMAT_VERSION: u16 = 3;
const HEADER: usize = 8 + 2 + 4;
/// Refuse absurd payloads before allocating for them.
const MAX_PAYLOAD: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("not a flowc program (bad magic bytes)")]
    BadMagic,
    #[error("program format version {found}; this flowc reads versions 1 to {FORMAT_VERSION}")]
    Version { found: u16 },
    #[error("program is truncated: {0}")]
    Truncated(String),
    #[error("program checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("program cannot be decoded: {0}")]
    Decode(String),
    #[error("invalid program: {0}")]
    Invalid(String),
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fields of a format-version-1 program, in their order. Postcard
/// writes a struct as its fields in order, so a nested struct encodes like
/// its fields written out: version 2 appended `goal`, `exits` and
/// `on_ineligible` (`ProgramV2`), version 3 `delivery` (and the `WaitUntil`
/// and `Set` instructions as the last variants), so older payloads decode
/// as these views.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProgramV1 {
    campaign: String,
    display_name: Option<String>,
    version: Version,
    trigger: Trigger,
    audience: Option<Cond>,
    fields: Vec<FieldDef>,
    segments: Vec<SegmentDef>,
    nodes: Vec<Node>,
}

/// What format version 2 added.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct AddedInV2 {
    goal: Option<Goal>,
    exits: Vec<Exit>,
    on_ineligible: OnIneligible,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProgramV2 {
    base: ProgramV1,
    added: AddedInV2,
}

/// A program as its parts by the format version that added them.
fn split(p: Program) -> (ProgramV1, AddedInV2, Delivery) {
    let Program {
        campaign,
        display_name,
        version,
        trigger,
        audience,
        fields,
        segments,
        nodes,
        goal,
        exits,
        on_ineligible,
        delivery,
    } = p;
    (
        ProgramV1 { campaign, display_name, version, trigger, audience, fields, segments, nodes },
        AddedInV2 { goal, exits, on_ineligible },
        delivery,
    )
}

/// A program from its parts; what an older format lacks is the default,
/// which is what that format meant.
fn join(base: ProgramV1, added: AddedInV2, delivery: Delivery) -> Program {
    let ProgramV1 { campaign, display_name, version, trigger, audience, fields, segments, nodes } = base;
    let AddedInV2 { goal, exits, on_ineligible } = added;
    Program {
        campaign,
        display_name,
        version,
        trigger,
        audience,
        fields,
        segments,
        nodes,
        goal,
        exits,
        on_ineligible,
        delivery,
    }
}

/// The version of a program: a hash of its meaning. Source positions and the
/// version field itself are left out, so reformatting keeps the version. A
/// program is hashed in the oldest format that holds it (nothing of format
/// 2's settings: as version 1; no delivery rule or `set`: as version 2), so
/// upgrading flowc never changes a running campaign's version.
pub fn content_hash(p: &Program) -> Version {
    let q = without_positions(p);
    let v2_defaults = q.goal.is_none() && q.exits.is_empty() && q.on_ineligible == OnIneligible::Skip;
    let uses_set = q.nodes.iter().any(|n| matches!(n.op, Op::Set { .. }));
    let bytes = if q.delivery.is_default() && !uses_set && v2_defaults {
        postcard::to_stdvec(&split(q).0)
    } else if q.delivery.is_default() && !uses_set {
        let (base, added, _) = split(q);
        postcard::to_stdvec(&ProgramV2 { base, added })
    } else {
        postcard::to_stdvec(&q)
    }
    .unwrap_or_default();
    Version(format!("{:016x}", fnv1a(&bytes)))
}

/// A copy with source positions and version cleared: what "same program" means.
pub fn without_positions(p: &Program) -> Program {
    let mut q = p.clone();
    q.version = Version(String::new());
    for n in &mut q.nodes {
        n.line = 0;
        n.span = (0, 0);
    }
    q
}

pub fn to_json(p: &Program) -> String {
    serde_json::to_string_pretty(p).unwrap_or_default()
}

pub fn from_json(text: &str) -> Result<Program, LoadError> {
    let p: Program = serde_json::from_str(text).map_err(|e| LoadError::Decode(e.to_string()))?;
    validate(&p)?;
    Ok(p)
}

pub fn to_binary(p: &Program) -> Vec<u8> {
    let payload = postcard::to_stdvec(p).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + payload.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    out
}

pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

pub fn from_binary(bytes: &[u8]) -> Result<Program, LoadError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(LoadError::BadMagic);
    }
    if bytes.len() < HEADER {
        return Err(LoadError::Truncated(format!("{} bytes, the header alone is {HEADER}", bytes.len())));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(LoadError::Version { found: version });
    }
    let len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(LoadError::Invalid(format!("payload of {len} bytes is over the {MAX_PAYLOAD}-byte limit")));
    }
    let Some(payload) = bytes.get(HEADER..HEADER + len) else {
        return Err(LoadError::Truncated(format!(
            "header promises {len} payload bytes, {} present",
            bytes.len().saturating_sub(HEADER)
        )));
    };
    let Some(sum) = bytes.get(HEADER + len..HEADER + len + 8) else {
        return Err(LoadError::Truncated("checksum missing".into()));
    };
    if bytes.len() != HEADER + len + 8 {
        return Err(LoadError::Invalid(format!(
            "{} trailing bytes after the checksum",
            bytes.len() - HEADER - len - 8
        )));
    }
    let mut sum_bytes = [0u8; 8];
    sum_bytes.copy_from_slice(sum);
    if u64::from_le_bytes(sum_bytes) != fnv1a(payload) {
        return Err(LoadError::Checksum);
    }
    // The payload must be read to its last byte: a version-2 payload read
    // as version 1 (a damaged header) leaves its new fields over.
    let decoded = match version {
        1 => postcard::take_from_bytes::<ProgramV1>(payload)
            .map(|(p, rest)| (join(p, AddedInV2::default(), Delivery::default()), rest)),
        2 => postcard::take_from_bytes::<ProgramV2>(payload)
            .map(|(p, rest)| (join(p.base, p.added, Delivery::default()), rest)),
        _ => postcard::take_from_bytes::<Program>(payload),
    };
    let (p, rest) = decoded.map_err(|e| LoadError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(LoadError::Decode(format!("{} bytes left over after the program", rest.len())));
    }
    validate(&p)?;
    Ok(p)
}

/// Everything the runtime relies on: successors in range and forward (so
/// every run terminates), well-formed splits, slots and indices in range,
/// engagement predicates naming a send, every constant within
/// `crate::limits` (so listing, drawing and running it cannot overflow), and
/// a version that matches.
pub fn validate(p: &Program) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::Invalid(m));
    if p.nodes.is_empty() {
        return bad("no instructions".into());
    }
    if p.nodes.len() > u32::MAX as usize / 2 {
        return bad("too many instructions".into());
    }
    let sends: HashSet<&str> =
        p.nodes.iter().filter(|n| matches!(n.op, Op::Send { .. })).map(|n| n.id.0.as_str()).collect();
    let mut ids = HashSet::new();
    for (i, n) in p.nodes.iter().enumerate() {
        if !ids.insert(n.id.0.as_str()) {
            return bad(format!("step id `{}` appears twice", n.id));
        }
        for s in n.op.successors() {
            if s.get() >= p.nodes.len() {
                return bad(format!(
                    "instruction {i} (`{}`) jumps to {}, past the end ({} instructions)",
                    n.id,
                    s.0,
                    p.nodes.len()
                ));
            }
            if s.get() <= i {
                return bad(format!("instruction {i} (`{}`) jumps backwards to {}", n.id, s.0));
            }
        }
        match &n.op {
            Op::Wait { minutes, .. } if !(1..=365 * 24 * 60).contains(minutes) => {
                return bad(format!("instruction {i}: wait of {minutes} minutes"))
            }
            Op::Send { target, fallback, .. } => {
                for t in std::iter::once(target).chain(fallback) {
                    if !limits::price(t.price_micros) {
                        return bad(format!(
                            "instruction {i}: price of {} micro-euros is out of range",
                            t.price_micros
                        ));
                    }
                }
            }
            Op::Split { variants, .. } => {
                let sum: u64 = variants.iter().map(|v| u64::from(v.weight_bp)).sum();
                if !(2..=4).contains(&variants.len()) || sum != 10_000 || variants.iter().any(|v| v.weight_bp == 0) {
                    return bad(format!("instruction {i}: split weights or variant count are invalid"));
                }
            }
            Op::Branch { cond, .. } => check_cond(p, cond, None, &sends, p.segments.len())?,
            Op::WaitUntil { timeout_minutes, .. } if !(1..=365 * 24 * 60).contains(timeout_minutes) => {
                return bad(format!("instruction {i}: wait until timeout of {timeout_minutes} minutes"))
            }
            Op::WaitUntil { arms, .. } => {
                for a in arms {
                    match &a.on {
                        WaitOn::Event { event } => check_event(p, event, &sends)?,
                        WaitOn::State { cond } => check_cond(p, cond, None, &sends, p.segments.len())?,
                    }
                }
            }
            Op::Set { field, slot, value, .. } => {
                match p.fields.get(slot.0 as usize) {
                    Some(f) if f.name == *field && !READ_ONLY.contains(&field.as_str()) => {}
                    _ => return bad(format!("instruction {i}: `set` of `{field}` at field slot {}", slot.0)),
                }
                match value {
                    SetValue::Operand { operand } => check_operand(p, operand, None)?,
                    SetValue::Cond { cond } => check_cond(p, cond, None, &sends, p.segments.len())?,
                }
            }
            _ => {}
        }
    }
    check_delivery(&p.delivery)?;
    if let Some(a) = &p.audience {
        check_cond(p, a, None, &sends, p.segments.len())?;
    }
    if let Trigger::Event { props, filter: Some(f), .. } = &p.trigger {
        check_cond(p, f, Some(props.len()), &sends, p.segments.len())?;
    }
    if let Trigger::Scheduled { at, zone } = &p.trigger {
        check_schedule(at, zone)?;
    }
    for (i, s) in p.segments.iter().enumerate() {
        // A segment may only use segments before it: no cycles.
        check_cond(p, &s.cond, None, &sends, i)?;
    }
    if let Some(g) = &p.goal {
        if !(1..=90 * 24 * 60).contains(&g.within_minutes) {
            return bad(format!("goal window of {} minutes is out of range", g.within_minutes));
        }
        check_event(p, &g.event, &sends)?;
    }
    for x in &p.exits {
        match x {
            Exit::Event { event } => check_event(p, event, &sends)?,
            Exit::State { cond } => check_cond(p, cond, None, &sends, p.segments.len())?,
        }
    }
    let expected = content_hash(p);
    if expected != p.version {
        return bad(format!("version {} does not match its content ({expected})", p.version));
    }
    Ok(())
}

/// Contact fields no `set` may write (the checker's `readonly-field`).
const READ_ONLY: [&str; 3] = ["id", "created_at", "tags"];

/// The delivery rules within the ranges the checker allows.
fn check_delivery(d: &Delivery) -> Result<(), LoadError> {
    const MAX: i64 = 365 * 24 * 60;
    let bad = |m: String| Err(LoadError::Invalid(m));
    if let Some(q) = d.quiet_hours {
        if q.start_minute >= 1440 || q.end_minute >= 1440 || q.start_minute == q.end_minute {
            return bad(format!("quiet hours from minute {} to {}", q.start_minute, q.end_minute));
        }
    }
    if let Reentry::After { minutes } = d.reentry {
        if !(1..=MAX).contains(&minutes) {
            return bad(format!("re-entry after {minutes} minutes"));
        }
    }
    if let Some(r) = d.rate_limit {
        if r.count == 0 {
            return bad("a rate limit of 0".into());
        }
    }
    for c in &d.frequency_caps {
        if c.count == 0 || !(1..=MAX).contains(&c.window_minutes) {
            return bad(format!("frequency cap of {} per {} minutes", c.count, c.window_minutes));
        }
    }
    Ok(())
}

fn check_event(p: &Program, m: &EventMatch, sends: &HashSet<&str>) -> Result<(), LoadError> {
    m.filter.iter().try_for_each(|x| check_cond(p, x, Some(m.props.len()), sends, p.segments.len()))
}

fn check_cond(
    p: &Program,
    c: &Cond,
    props: Option<usize>,
    sends: &HashSet<&str>,
    segments: usize,
) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::Invalid(m));
    match c {
        Cond::Const { .. } | Cond::Consent { .. } | Cond::Capable { .. } => Ok(()),
        Cond::And { all: v } | Cond::Or { any: v } => {
            v.iter().try_for_each(|x| check_cond(p, x, props, sends, segments))
        }
        Cond::Not { cond } => check_cond(p, cond, props, sends, segments),
        Cond::Cmp { lhs, rhs, .. } => {
            check_operand(p, lhs, props)?;
            check_operand(p, rhs, props)
        }
        Cond::In { lhs, list } => {
            check_operand(p, lhs, props)?;
            list.iter().try_for_each(check_const)
        }
        Cond::Has { set, elem } => {
            check_operand(p, set, props)?;
            check_operand(p, elem, props)
        }
        Cond::Engaged { step, .. } if !sends.contains(step.0.as_str()) => {
            bad(format!("engagement predicate names `{step}`, which is not a send"))
        }
        Cond::Engaged { .. } => Ok(()),
        Cond::Happened { within_minutes: Some(w), .. } if !(1..=limits::MAX_DURATION).contains(w) => {
            bad(format!("`happened` window of {w} minutes is out of range"))
        }
        Cond::Happened { props: hp, filter, .. } => {
            filter.iter().try_for_each(|x| check_cond(p, x, Some(hp.len()), sends, segments))
        }
        Cond::InSegment { segment } if segment.0 as usize >= segments => {
            bad(format!("segment index {} out of range", segment.0))
        }
        Cond::InSegment { .. } => Ok(()),
    }
}

fn check_operand(p: &Program, o: &Operand, props: Option<usize>) -> Result<(), LoadError> {
    match o {
        Operand::Field { slot } if slot.0 as usize >= p.fields.len() => {
            Err(LoadError::Invalid(format!("field slot {} out of range", slot.0)))
        }
        Operand::Prop { index } if props.is_none_or(|n| *index as usize >= n) => {
            Err(LoadError::Invalid(format!("event property {index} out of range")))
        }
        Operand::Now { offset_minutes } | Operand::Offset { offset_minutes, .. }
            if !limits::duration(*offset_minutes) =>
        {
            Err(LoadError::Invalid(format!("time offset of {offset_minutes} minutes is out of range")))
        }
        Operand::Offset { base, .. } => check_operand(p, base, props),
        Operand::Sum { terms } => terms.iter().try_for_each(|(_, t)| check_operand(p, t, props)),
        Operand::Const { value } => check_const(value),
        Operand::Field { .. } | Operand::Prop { .. } | Operand::Now { .. } => Ok(()),
    }
}

fn check_const(c: &Const) -> Result<(), LoadError> {
    let ok = match c {
        Const::Number(n) => limits::number(*n),
        Const::Datetime(m) => limits::datetime(*m),
        Const::Date(d) => limits::date(*d),
        Const::Duration(m) => limits::duration(*m),
        Const::Bool(_) | Const::Str(_) | Const::Enum(_) | Const::None => true,
    };
    if ok {
        return Ok(());
    }
    // JSON has no infinity: say what the constant is rather than `null`.
    let shown = match c {
        Const::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    };
    Err(LoadError::Invalid(format!("constant {shown} is out of range")))
}

/// A scheduled trigger's wall time in the calendar's years and a zone the tz
/// database knows: what the runtime needs to find the instant.
fn check_schedule(at: &str, zone: &str) -> Result<(), LoadError> {
    use chrono::Datelike;
    let bad = |m: String| Err(LoadError::Invalid(m));
    match chrono::NaiveDateTime::parse_from_str(at, SCHEDULE_FORMAT) {
        Ok(t) if (0..=9999).contains(&t.year()) => {}
        _ => {
            return bad(format!(
                "scheduled trigger at `{at}`: expected a time like 2026-12-01T09:00 in the years 0000 to 9999"
            ))
        }
    }
    if zone.parse::<chrono_tz::Tz>().is_err() {
        return bad(format!("scheduled trigger in unknown time zone `{zone}`"));
    }
    Ok(())
}
