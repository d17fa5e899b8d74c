//! Audience and segment conditions compiled to PostgreSQL's SQL over the
//! `contacts` table, with exactly the in-memory evaluator's semantics
//! (`eval::compare`): a value of the wrong JSON type reads as absent, as
//! `facts::json_to_field` reads it; `==` / `!=` are presence-aware (`IS
//! NOT DISTINCT FROM`); an ordering with an absent side is false; text
//! compares byte by byte (`COLLATE "C"`); every condition is two-valued
//! (`COALESCE(…, false)`), so `not` of an absent comparison is true. Every
//! value is a bound parameter, never spliced into the text.
//!
//! Only what this compiler can say exactly is compiled: conditions on
//! datetimes and dates, time arithmetic, `happened` and event properties
//! return `None`, and the store then evaluates the audience in Rust,
//! contact by contact, as before.

use crate::compile::program::{CmpOpRepr, Cond, Const, FieldType, Operand, Program};
use postgres::types::ToSql;
use std::collections::HashMap;

/// A boolean SQL expression over `contacts` and its parameters, numbered
/// from the `first` given to `condition`.
pub(super) struct Sql {
    pub text: String,
    pub params: Vec<Box<dyn ToSql + Sync>>,
    next: usize,
    /// Attribute names bound so far, and the placeholder of each.
    names: HashMap<String, String>,
}

/// More parameters than this and the condition is left to the engine's
/// evaluator (the client refuses 32,767; an `in` list of thousands of
/// values is better read in Rust than sent with every page).
const MAX_PARAMS: usize = 2_000;

impl Sql {
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref()).collect()
    }

    /// An attribute's name, bound once and named by its number after.
    fn name(&mut self, field: &str) -> String {
        if let Some(k) = self.names.get(field) {
            return k.clone();
        }
        let k = format!("${}::text", self.next);
        self.params.push(Box::new(field.to_string()));
        self.next += 1;
        self.names.insert(field.to_string(), k.clone());
        k
    }

    fn bind(&mut self, v: Box<dyn ToSql + Sync>, cast: &str) {
        self.params.push(v);
        self.text.push_str(&format!("${}::{cast}", self.next));
        self.next += 1;
    }
}

/// What an operand evaluates to, known from the program alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Str,
    Bool,
    /// A `set<string>` field or the tags: only `has` and presence read it.
    Set,
    /// `none`.
    Absent,
}

/// Why a condition is not compiled: it is left to the engine's evaluator.
struct Declined;

/// `c` as SQL whose parameters are numbered from `$first`, or `None` when
/// part of it is left to the engine's evaluator.
pub(super) fn condition(p: &Program, c: &Cond, first: usize) -> Option<Sql> {
    let mut s = Sql { text: String::new(), params: Vec::new(), next: first, names: HashMap::new() };
    cond(p, c, &mut s).ok()?;
    (s.params.len() <= MAX_PARAMS).then_some(s)
}

fn cond(p: &Program, c: &Cond, s: &mut Sql) -> Result<(), Declined> {
    s.text.push_str("COALESCE((");
    match c {
        Cond::Const { value } => s.text.push_str(if *value { "TRUE" } else { "FALSE" }),
        Cond::And { all } | Cond::Or { any: all } => {
            let and = matches!(c, Cond::And { .. });
            if all.is_empty() {
                s.text.push_str(if and { "TRUE" } else { "FALSE" });
            }
            for (i, x) in all.iter().enumerate() {
                if i > 0 {
                    s.text.push_str(if and { " AND " } else { " OR " });
                }
                cond(p, x, s)?;
            }
        }
        Cond::Not { cond: x } => {
            s.text.push_str("NOT ");
            cond(p, x, s)?;
        }
        Cond::Cmp { op, lhs, rhs } => compare(p, *op, lhs, rhs, s)?,
        Cond::In { lhs, list } => {
            if list.is_empty() {
                s.text.push_str("FALSE");
            }
            for (i, k) in list.iter().enumerate() {
                if i > 0 {
                    s.text.push_str(" OR ");
                }
                compare(p, CmpOpRepr::Eq, lhs, &Operand::Const { value: k.clone() }, s)?;
            }
        }
        Cond::Has { set, elem } => has(p, set, elem, s)?,
        Cond::Consent { channel } | Cond::Capable { channel } => {
            let column = if matches!(c, Cond::Consent { .. }) { "contacts.consent" } else { "contacts.capabilities" };
            s.bind(Box::new(channel.clone()), "text");
            s.text.push_str(&format!(" = ANY ({column})"));
        }
        // Engagement belongs to an execution; outside one it is false.
        Cond::Engaged { .. } => s.text.push_str("FALSE"),
        Cond::Happened { .. } => return Err(Declined),
        Cond::InSegment { segment } => match p.segments.get(segment.0 as usize) {
            Some(seg) => cond(p, &seg.cond, s)?,
            None => s.text.push_str("FALSE"),
        },
    }
    s.text.push_str("), FALSE)");
    Ok(())
}

fn compare(p: &Program, op: CmpOpRepr, lhs: &Operand, rhs: &Operand, s: &mut Sql) -> Result<(), Declined> {
    let (l, r) = (kind(p, lhs)?, kind(p, rhs)?);
    let presence = l == Kind::Absent || r == Kind::Absent;
    if !presence && (l != r || l == Kind::Set) {
        // Values of two kinds (or sets) are compared only for presence in
        // the evaluator; the checker refuses such comparisons anyway.
        return Err(Declined);
    }
    let sql_op = match op {
        CmpOpRepr::Eq => " IS NOT DISTINCT FROM ",
        CmpOpRepr::Ne => " IS DISTINCT FROM ",
        // An ordering with `none` on either side is false.
        _ if presence => {
            s.text.push_str("FALSE");
            return Ok(());
        }
        CmpOpRepr::Lt => " < ",
        CmpOpRepr::Le => " <= ",
        CmpOpRepr::Gt => " > ",
        CmpOpRepr::Ge => " >= ",
    };
    operand(p, lhs, s)?;
    s.text.push_str(sql_op);
    operand(p, rhs, s)
}

fn has(p: &Program, set: &Operand, elem: &Operand, s: &mut Sql) -> Result<(), Declined> {
    if kind(p, set)? != Kind::Set || kind(p, elem)? != Kind::Str {
        // The evaluator's `has` is false unless a set meets a string.
        s.text.push_str("FALSE");
        return Ok(());
    }
    let Operand::Field { slot } = set else { return Err(Declined) };
    let f = p.fields.get(slot.0 as usize).ok_or(Declined)?;
    if f.name == "tags" {
        operand(p, elem, s)?;
        s.text.push_str(" = ANY (contacts.tags)");
        return Ok(());
    }
    // A string element of the array equal to the one looked for; a value
    // that is not an array has none, as `json_to_field` reads it.
    let k = s.name(&f.name);
    s.text.push_str(&format!(
        "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(contacts.attrs -> {k}) = 'array' \
         THEN contacts.attrs -> {k} ELSE '[]'::jsonb END) AS x(v) WHERE x.v = to_jsonb("
    ));
    operand(p, elem, s)?;
    s.text.push_str("))");
    Ok(())
}

fn kind(p: &Program, o: &Operand) -> Result<Kind, Declined> {
    match o {
        Operand::Field { slot } => {
            let f = p.fields.get(slot.0 as usize).ok_or(Declined)?;
            if f.name == "id" {
                return Ok(Kind::Str);
            }
            if f.name == "tags" {
                return Ok(Kind::Set);
            }
            match f.ty {
                FieldType::Number | FieldType::Duration => Ok(Kind::Num),
                FieldType::String | FieldType::Timezone | FieldType::Enum(_) => Ok(Kind::Str),
                FieldType::Bool => Ok(Kind::Bool),
                FieldType::SetString => Ok(Kind::Set),
                FieldType::Datetime | FieldType::Date => Err(Declined),
            }
        }
        Operand::Const { value } => match value {
            Const::Number(_) | Const::Duration(_) => Ok(Kind::Num),
            // PostgreSQL's text holds no NUL: such a value is compared in Rust.
            Const::Str(t) | Const::Enum(t) if t.contains('\0') => Err(Declined),
            Const::Str(_) | Const::Enum(_) => Ok(Kind::Str),
            Const::Bool(_) => Ok(Kind::Bool),
            Const::None => Ok(Kind::Absent),
            Const::Datetime(_) | Const::Date(_) => Err(Declined),
        },
        Operand::Prop { .. } | Operand::Now { .. } | Operand::Offset { .. } | Operand::Sum { .. } => Err(Declined),
    }
}

/// An operand of a known kind (`kind`), NULL when absent.
fn operand(p: &Program, o: &Operand, s: &mut Sql) -> Result<(), Declined> {
    match o {
        Operand::Field { slot } => {
            let f = p.fields.get(slot.0 as usize).ok_or(Declined)?;
            match f.name.as_str() {
                "id" => {
                    s.text.push_str("contacts.id");
                    return Ok(());
                }
                // Never absent (only `== none` reads it here).
                "tags" => {
                    s.text.push_str("contacts.tags");
                    return Ok(());
                }
                _ => {}
            }
            // Each reads the attribute as `facts::json_to_field` does: of
            // its JSON type, else absent.
            let (json_type, read) = match f.ty {
                FieldType::Number => ("number", "(contacts.attrs ->> {k})::float8"),
                // A duration is a whole number of minutes that fits an i64
                // (`as_i64`). flowc only ever stores whole numbers here (the
                // import and the API refuse others); a float written by
                // hand as `1e16` would read as that integer here, as absent
                // in Rust.
                FieldType::Duration => (
                    "number",
                    "CASE WHEN (contacts.attrs ->> {k}) ~ '^-?[0-9]{1,19}$' \
                     AND (contacts.attrs ->> {k})::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 \
                     THEN (contacts.attrs ->> {k})::float8 END",
                ),
                FieldType::String | FieldType::Timezone | FieldType::Enum(_) => {
                    ("string", "(contacts.attrs ->> {k}) COLLATE \"C\"")
                }
                FieldType::Bool => ("boolean", "(contacts.attrs -> {k})::boolean"),
                FieldType::SetString => ("array", "contacts.attrs -> {k}"),
                FieldType::Datetime | FieldType::Date => return Err(Declined),
            };
            let k = s.name(&f.name);
            s.text.push_str(&format!(
                "(CASE WHEN jsonb_typeof(contacts.attrs -> {k}) = '{json_type}' THEN {} END)",
                read.replace("{k}", &k)
            ));
        }
        Operand::Const { value } => match value {
            Const::Number(n) => s.bind(Box::new(*n), "float8"),
            Const::Duration(m) => s.bind(Box::new(*m as f64), "float8"),
            Const::Str(t) | Const::Enum(t) => {
                s.bind(Box::new(t.clone()), "text");
                s.text.push_str(" COLLATE \"C\"");
            }
            Const::Bool(b) => s.bind(Box::new(*b), "boolean"),
            Const::None => s.text.push_str("NULL"),
            Const::Datetime(_) | Const::Date(_) => return Err(Declined),
        },
        Operand::Prop { .. } | Operand::Now { .. } | Operand::Offset { .. } | Operand::Sum { .. } => {
            return Err(Declined)
        }
    }
    Ok(())
}
