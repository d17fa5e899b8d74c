//! Conditions in builder JSON: one object with one key naming the kind, read
//! into a syntax tree that the one expression printer prints back.

use super::value::*;
use crate::source::Span;
use crate::syntax::ast::*;
use serde_json::Value;

/// Deeper than this, a condition is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

pub fn read(v: &Value, path: &str) -> R<Expr> {
    at_depth(v, path, 0)
}

pub fn read_all(v: &Value, path: &str, depth: usize) -> R<Vec<Expr>> {
    array(v, path)?.iter().enumerate().map(|(i, x)| at_depth(x, &format!("{path}[{i}]"), depth)).collect()
}

fn expr_of(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

/// `true`, the only value of the markers `{"now": true}` and `{"none": true}`.
fn marker(v: &Value, path: &str) -> R<()> {
    match v {
        Value::Bool(true) => Ok(()),
        other => err(path, format!("expected true, found {}", if other.is_boolean() { "false" } else { kind(other) })),
    }
}

fn at_depth(v: &Value, path: &str, depth: usize) -> R<Expr> {
    if depth > MAX_DEPTH {
        return err(path, format!("conditions nest deeper than {MAX_DEPTH} levels"));
    }
    let m = obj(v, path)?;
    if m.len() != 1 {
        return err(path, "a condition is an object with exactly one key naming its kind");
    }
    let Some((k, x)) = m.iter().next() else { return err(path, "empty condition") };
    let p = key_path(path, k);
    let sub = |x: &Value, key: &str| at_depth(x, &key_path(&p, key), depth + 1);
    let kind = match k.as_str() {
        "or" | "and" => {
            let items = read_all(x, &p, depth + 1)?;
            if items.len() < 2 {
                return err(&p, "needs at least two operands");
            }
            if k == "or" {
                ExprKind::Or(items)
            } else {
                ExprKind::And(items)
            }
        }
        "not" => ExprKind::Not(Box::new(at_depth(x, &p, depth + 1)?)),
        "group" => {
            let inner = at_depth(x, &p, depth + 1)?;
            // A bare `happened` name always prints in parentheses, which export
            // leaves out; a group around it is one more pair.
            let inner = if crate::syntax::print::bare_happened(&inner) {
                expr_of(ExprKind::Paren(Box::new(inner)))
            } else {
                inner
            };
            ExprKind::Paren(Box::new(inner))
        }
        "compare" => {
            let c = closed(x, &p, &["op", "left", "right"])?;
            let op = match string(field(c, "op", &p)?, &key_path(&p, "op"))? {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                other => return err(&key_path(&p, "op"), format!("expected ==, !=, <, <=, > or >=, found `{other}`")),
            };
            ExprKind::Compare {
                op,
                lhs: Box::new(sub(field(c, "left", &p)?, "left")?),
                rhs: Box::new(sub(field(c, "right", &p)?, "right")?),
            }
        }
        "in" => {
            let c = closed(x, &p, &["value", "list"])?;
            ExprKind::In {
                lhs: Box::new(sub(field(c, "value", &p)?, "value")?),
                list: read_all(field(c, "list", &p)?, &key_path(&p, "list"), depth + 1)?,
            }
        }
        "has" => {
            let c = closed(x, &p, &["set", "value"])?;
            ExprKind::Has {
                lhs: Box::new(sub(field(c, "set", &p)?, "set")?),
                rhs: Box::new(sub(field(c, "value", &p)?, "value")?),
            }
        }
        "arith" => {
            let c = closed(x, &p, &["first", "rest"])?;
            let first = sub(field(c, "first", &p)?, "first")?;
            let rest_path = key_path(&p, "rest");
            let mut rest = Vec::new();
            for (i, r) in array(field(c, "rest", &p)?, &rest_path)?.iter().enumerate() {
                let rp = format!("{rest_path}[{i}]");
                let rm = closed(r, &rp, &["op", "value"])?;
                let op = match string(field(rm, "op", &rp)?, &key_path(&rp, "op"))? {
                    "+" => ArithOp::Add,
                    "-" => ArithOp::Sub,
                    other => return err(&key_path(&rp, "op"), format!("expected + or -, found `{other}`")),
                };
                rest.push((op, at_depth(field(rm, "value", &rp)?, &key_path(&rp, "value"), depth + 1)?));
            }
            if rest.is_empty() {
                return err(&rest_path, "needs at least one term");
            }
            ExprKind::Arith { first: Box::new(first), rest }
        }
        "attribute" => ExprKind::Name(ident(x, &p)?),
        "predicate" => {
            let c = closed(x, &p, &["name", "arg"])?;
            ExprKind::Call {
                func: ident(field(c, "name", &p)?, &key_path(&p, "name"))?,
                arg: ident(field(c, "arg", &p)?, &key_path(&p, "arg"))?,
            }
        }
        "happened" => {
            let c = closed(x, &p, &["event", "within", "where"])?;
            let within = optional(c, "within").map(|d| duration(d, &key_path(&p, "within"))).transpose()?;
            let filter = optional(c, "where")
                .map(|w| read_all(w, &key_path(&p, "where"), depth + 1))
                .transpose()?
                .unwrap_or_default();
            ExprKind::Happened { event: event_name(field(c, "event", &p)?, &key_path(&p, "event"))?, within, filter }
        }
        "bool" => {
            ExprKind::Bool(x.as_bool().map_or_else(|| err(&p, format!("expected a boolean, found {}", kind(x))), Ok)?)
        }
        "number" => {
            let Some(n) = x.as_f64() else { return err(&p, format!("expected a number, found {}", kind(x))) };
            ExprKind::Number { value: n, text: crate::syntax::print::number(n, "") }
        }
        "string" => ExprKind::Str(string(x, &p)?.to_string()),
        "duration" => ExprKind::Duration(duration(x, &p)?),
        "date" => ExprKind::Date(date(x, &p, DateForm::Date)?),
        "datetime" => ExprKind::Date(date(x, &p, DateForm::DateTime)?),
        "now" => {
            marker(x, &p)?;
            ExprKind::Now
        }
        "none" => {
            marker(x, &p)?;
            ExprKind::None
        }
        other => return err(path, format!("unknown condition kind `{}`", other.escape_debug())),
    };
    Ok(expr_of(kind))
}
