//! Typing and resolving expressions: conditions, segments, audiences and
//! trigger rules (docs/language.md, "Expressions").

use super::model::*;
use super::Checker;
use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};
use crate::suggest;
use crate::syntax::ast::{self, ArithOp, CmpOp, ExprKind};
use std::collections::{BTreeMap, BTreeSet};

/// What a labelled step is, for engagement predicates.
#[derive(Debug, Clone)]
pub struct LabelInfo {
    pub is_send: bool,
    pub span: Span,
}

#[derive(Clone, Copy)]
pub struct CampaignScope<'s> {
    pub labels: &'s BTreeMap<String, LabelInfo>,
    /// The labelled sends before this point.
    pub sent: &'s Before,
}

/// What is known at one point of a campaign about the labelled sends before
/// it, over every path that reaches it (campaigns have no loops, so one walk
/// in order computes it).
#[derive(Debug, Clone, Default)]
pub struct Before {
    /// Sent on every path.
    pub all: BTreeSet<String>,
    /// Sent on at least one path.
    pub any: BTreeSet<String>,
    /// Sent on some path with no `wait` since.
    pub unwaited: BTreeSet<String>,
}

impl Before {
    pub fn sent(&mut self, label: &str) {
        self.all.insert(label.to_string());
        self.any.insert(label.to_string());
        self.unwaited.insert(label.to_string());
    }

    pub fn waited(&self) -> Before {
        Before { all: self.all.clone(), any: self.any.clone(), unwaited: BTreeSet::new() }
    }

    /// Merges the end of one more path into `joined` (`None` so far: no path
    /// reached the join; `set` `None`: this path ended).
    pub fn join(joined: &mut Option<Before>, set: Option<Before>) {
        let Some(set) = set else { return };
        *joined = Some(match joined.take() {
            None => set,
            Some(j) => Before {
                all: j.all.intersection(&set.all).cloned().collect(),
                any: j.any.union(&set.any).cloned().collect(),
                unwaited: j.unwaited.union(&set.unwaited).cloned().collect(),
            },
        });
    }
}

/// Where names in an expression resolve.
#[derive(Clone, Copy, Default)]
pub struct Scope<'s> {
    /// Event whose properties resolve before contact fields (trigger `where`, `happened … where`).
    pub event: Option<&'s str>,
    /// Only the event's properties resolve (`happened … where`).
    pub event_only: bool,
    pub campaign: Option<CampaignScope<'s>>,
    /// In `audience`, an unknown bare name is reported as an unknown segment.
    pub audience: bool,
}

impl<'s> Scope<'s> {
    pub fn plain() -> Scope<'s> {
        Scope::default()
    }
}

const FUNCTIONS: &[&str] = &["consent", "capable", "opened", "clicked", "delivered", "in_segment"];

/// Visits every node, outermost first.
pub fn walk(e: &TExpr, f: &mut dyn FnMut(&TExpr)) {
    f(e);
    match &e.kind {
        TKind::And(v) | TKind::Or(v) => v.iter().for_each(|x| walk(x, f)),
        TKind::Not(x) => walk(x, f),
        TKind::Compare { lhs, rhs, .. } => {
            walk(lhs, f);
            walk(rhs, f);
        }
        TKind::In { lhs, list } => {
            walk(lhs, f);
            list.iter().for_each(|x| walk(x, f));
        }
        TKind::Has { set, elem } => {
            walk(set, f);
            walk(elem, f);
        }
        TKind::Arith { first, rest } => {
            walk(first, f);
            rest.iter().for_each(|(_, x)| walk(x, f));
        }
        TKind::Happened { filter, .. } => filter.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

fn unknown(span: Span) -> TExpr {
    TExpr { kind: TKind::Const(Value::Bool(false)), ty: Type::Unknown, span }
}

/// A boolean expression; anything else is a `type-mismatch`.
pub fn condition(cx: &mut Checker, file: FileId, e: &ast::Expr, scope: &Scope) -> TExpr {
    let t = typed(cx, file, e, scope, None);
    expect_bool(cx, file, t)
}

/// The value a `set` writes into `field`: of the field's type (a bool field
/// takes any condition, an enum field a bare enum value, an optional field
/// `none`). Without a field (already reported) it is only typed.
pub fn value(cx: &mut Checker, file: FileId, e: &ast::Expr, scope: &Scope, field: Option<&Field>) -> TExpr {
    let Some(field) = field else {
        return typed(cx, file, e, scope, None);
    };
    if field.ty == Type::Bool && !matches!(e.kind, ExprKind::None) {
        return condition(cx, file, e, scope);
    }
    let t = typed(cx, file, e, scope, Some(&field.ty));
    let fits = match (&field.ty, &t.ty) {
        (_, Type::Unknown) => true,
        (_, Type::None) => field.optional,
        (Type::Enum(a), Type::Enum(b)) => a == b,
        (Type::String, Type::Timezone) => true,
        (a, b) => a == b,
    };
    if fits {
        return t;
    }
    let help = if t.ty == Type::None {
        format!("`{}` is not optional (`{}?`), so it always holds a value", field.name, field.ty.describe())
    } else {
        format!("`{}` holds {}; give it a value of that type", field.name, field.ty.describe())
    };
    cx.report(
        Diagnostic::new(
            Code::TypeMismatch,
            file,
            t.span,
            format!("`{}` is {}, but this value is {}", field.name, field.ty.describe(), t.ty.describe()),
        )
        .with_label(format!("this is {}", t.ty.describe()))
        .with_help(help),
    );
    unknown(t.span)
}

fn expect_bool(cx: &mut Checker, file: FileId, t: TExpr) -> TExpr {
    if matches!(t.ty, Type::Bool | Type::Unknown) {
        return t;
    }
    cx.report(
        Diagnostic::new(
            Code::TypeMismatch,
            file,
            t.span,
            format!("expected a condition (bool), found {}", t.ty.describe()),
        )
        .with_label(format!("this is {}", t.ty.describe()))
        .with_help("compare it with something, e.g. `x == …`, or use a predicate"),
    );
    unknown(t.span)
}

fn typed(cx: &mut Checker, file: FileId, e: &ast::Expr, scope: &Scope, hint: Option<&Type>) -> TExpr {
    let span = e.span;
    let make = |kind, ty| TExpr { kind, ty, span };
    match &e.kind {
        ExprKind::Or(v) | ExprKind::And(v) => {
            let parts = v.iter().map(|x| condition(cx, file, x, scope)).collect();
            let kind = if matches!(e.kind, ExprKind::Or(_)) { TKind::Or(parts) } else { TKind::And(parts) };
            make(kind, Type::Bool)
        }
        ExprKind::Not(x) => make(TKind::Not(Box::new(condition(cx, file, x, scope))), Type::Bool),
        ExprKind::Paren(x) => typed(cx, file, x, scope, hint),
        ExprKind::Compare { op, lhs, rhs } => compare(cx, file, *op, lhs, rhs, scope, span),
        ExprKind::In { lhs, list } => {
            let l = typed(cx, file, lhs, scope, None);
            let items: Vec<TExpr> = list
                .iter()
                .map(|x| {
                    let t = typed(cx, file, x, scope, Some(&l.ty));
                    if !comparable(&l.ty, &t.ty) {
                        mismatch(cx, file, &l, &t, "`in`");
                    }
                    t
                })
                .collect();
            make(TKind::In { lhs: Box::new(l), list: items }, Type::Bool)
        }
        ExprKind::Has { lhs, rhs } => {
            let set = typed(cx, file, lhs, scope, None);
            let elem = typed(cx, file, rhs, scope, Some(&Type::String));
            if !matches!(set.ty, Type::SetString | Type::Unknown) {
                cx.report(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        file,
                        set.span,
                        format!("`has` needs a set<string> on its left, found {}", set.ty.describe()),
                    )
                    .with_label("not a set")
                    .with_help("`has` tests set membership, e.g. `tags has \"vip\"`; use `==` to compare values"),
                );
            } else if !matches!(elem.ty, Type::String | Type::Unknown) {
                cx.report(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        file,
                        elem.span,
                        format!("a set<string> holds strings, not {}", elem.ty.describe()),
                    )
                    .with_label("not a string"),
                );
            }
            make(TKind::Has { set: Box::new(set), elem: Box::new(elem) }, Type::Bool)
        }
        ExprKind::Arith { first, rest } => arith(cx, file, first, rest, scope, span),
        ExprKind::Name(n) => name(cx, file, n, scope, hint),
        ExprKind::Call { func, arg } => call(cx, file, func, arg, scope, span),
        ExprKind::Happened { event, within, filter } => happened(cx, file, event, within.as_ref(), filter, span),
        ExprKind::Bool(b) => make(TKind::Const(Value::Bool(*b)), Type::Bool),
        // A literal out of range was reported by the parser: say no more about it.
        ExprKind::Number { value, .. } if !crate::limits::number(*value) => unknown(span),
        ExprKind::Number { value, .. } => make(TKind::Const(Value::Number(*value)), Type::Number),
        ExprKind::Str(s) => string_literal(cx, file, s, span, hint),
        ExprKind::Duration(d) if d.out_of_range() => unknown(span),
        ExprKind::Duration(d) => make(TKind::Const(Value::Duration(d.minutes() as i64)), Type::Duration),
        ExprKind::Date(d) => match d.time {
            Some(t) => {
                let dt = d.date.and_time(t).and_utc().timestamp() / 60;
                make(TKind::Const(Value::DateTime(dt)), Type::DateTime)
            }
            None => {
                let days = d.date.signed_duration_since(chrono::NaiveDate::default()).num_days();
                make(TKind::Const(Value::Date(days)), Type::Date)
            }
        },
        ExprKind::Now => make(TKind::Now, Type::DateTime),
        ExprKind::None => make(TKind::Const(Value::None), Type::None),
    }
}

fn string_literal(cx: &mut Checker, file: FileId, s: &str, span: Span, hint: Option<&Type>) -> TExpr {
    match hint {
        Some(Type::Enum(values)) => {
            if values.iter().any(|v| v == s) {
                return TExpr { kind: TKind::Const(Value::Enum(s.to_string())), ty: Type::Enum(values.clone()), span };
            }
            report_enum(cx, file, s, span, values);
            unknown(span)
        }
        Some(Type::Timezone) => {
            if !zone_ok(s) {
                report_zone(cx, file, s, span);
                return unknown(span);
            }
            TExpr { kind: TKind::Const(Value::Str(s.to_string())), ty: Type::Timezone, span }
        }
        _ => TExpr { kind: TKind::Const(Value::Str(s.to_string())), ty: Type::String, span },
    }
}

/// A zone flowc accepts: in the tz database and named by its region
/// (`Europe/Paris`), or `UTC`. The database also keeps legacy abbreviations
/// (`EST`, `CET`, `PST8PDT`); they are fixed offsets or ambiguous, and a
/// campaign meant for New York in July would send an hour off, so they are
/// refused with the region people usually mean.
pub(crate) fn zone_ok(zone: &str) -> bool {
    zone == "UTC" || (zone.contains('/') && zone.parse::<chrono_tz::Tz>().is_ok())
}

/// Abbreviations people write for a zone, and the region they usually mean.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("EST", "America/New_York"),
    ("EDT", "America/New_York"),
    ("EST5EDT", "America/New_York"),
    ("ET", "America/New_York"),
    ("CST", "America/Chicago"),
    ("CDT", "America/Chicago"),
    ("CST6CDT", "America/Chicago"),
    ("MST", "America/Denver"),
    ("MDT", "America/Denver"),
    ("MST7MDT", "America/Denver"),
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("PST8PDT", "America/Los_Angeles"),
    ("PT", "America/Los_Angeles"),
    ("HST", "Pacific/Honolulu"),
    ("AKST", "America/Anchorage"),
    ("GMT", "UTC"),
    ("UCT", "UTC"),
    ("UNIVERSAL", "UTC"),
    ("ZULU", "UTC"),
    ("GREENWICH", "UTC"),
    ("Z", "UTC"),
    ("BST", "Europe/London"),
    ("WET", "Europe/Lisbon"),
    ("WEST", "Europe/Lisbon"),
    ("CET", "Europe/Paris"),
    ("CEST", "Europe/Paris"),
    ("MET", "Europe/Paris"),
    ("EET", "Europe/Athens"),
    ("EEST", "Europe/Athens"),
    ("MSK", "Europe/Moscow"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("KST", "Asia/Seoul"),
    ("HKT", "Asia/Hong_Kong"),
    ("SGT", "Asia/Singapore"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
    ("NZST", "Pacific/Auckland"),
];

pub(crate) fn report_zone(cx: &mut Checker, file: FileId, zone: &str, span: Span) {
    let upper = zone.to_ascii_uppercase();
    if let Some((_, region)) = ABBREVIATIONS.iter().find(|(a, _)| *a == upper) {
        cx.report(
            Diagnostic::new(Code::UnknownTimezone, file, span, format!("`{zone}` is an abbreviation, not a time zone"))
                .with_label("not an IANA zone name")
                .with_help(format!("abbreviations are fixed offsets or ambiguous (summer time is lost); name the region, e.g. \"{region}\"")),
        );
        return;
    }
    let help = suggest::help(zone, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).filter(|z| zone_ok(z)))
        .unwrap_or_else(|| "use an IANA zone name such as \"Europe/Paris\" or \"America/New_York\"".into());
    cx.report(
        Diagnostic::new(Code::UnknownTimezone, file, span, format!("unknown time zone `{zone}`"))
            .with_label("not an IANA time zone")
            .with_help(help),
    );
}

fn report_enum(cx: &mut Checker, file: FileId, value: &str, span: Span, values: &[String]) {
    let help = suggest::help(value, values.iter().map(String::as_str))
        .unwrap_or_else(|| format!("the values are {}", super::join(values.iter())));
    cx.report(
        Diagnostic::new(Code::UnknownEnumValue, file, span, format!("`{value}` is not one of the enum's values"))
            .with_label("not in the enum")
            .with_help(help),
    );
}

/// Resolves a bare name: enum value (when compared with an enum), event
/// property, contact field, then segment.
fn name(cx: &mut Checker, file: FileId, n: &ast::Name, scope: &Scope, hint: Option<&Type>) -> TExpr {
    let span = n.span;
    if let Some(Type::Enum(values)) = hint {
        if values.contains(&n.text) {
            return TExpr { kind: TKind::Const(Value::Enum(n.text.clone())), ty: Type::Enum(values.clone()), span };
        }
        if lookup(cx, &n.text, scope).is_none() {
            report_enum(cx, file, &n.text, span, values);
            return unknown(span);
        }
    }
    if let Some(found) = lookup(cx, &n.text, scope) {
        return TExpr { kind: found.0, ty: found.1, span };
    }
    if hint == Some(&Type::Unknown) {
        // The other side of the comparison is already reported; `x == pro` says no more.
        return unknown(span);
    }
    let mut candidates: Vec<String> = Vec::new();
    if let Some(ev) = scope.event.and_then(|e| cx.model.events.get(e)) {
        candidates.extend(ev.fields.keys().cloned());
    }
    if !scope.event_only {
        candidates.extend(cx.model.contact.keys().cloned());
        candidates.extend(cx.segment_names.iter().cloned());
    }
    let best = suggest::best(&n.text, candidates.iter().map(String::as_str));
    // `tags has vip`, `city == paris`: a word where a string was meant.
    let help = (hint == Some(&Type::String)).then(|| format!("to compare with the text, quote it: `\"{}\"`", n.text));
    let d = if scope.audience {
        Diagnostic::new(Code::UnknownSegment, file, span, format!("unknown segment `{}`", n.text))
            .with_label("no such segment")
    } else if scope.event_only {
        let ev = scope.event.unwrap_or("the event");
        Diagnostic::new(Code::UnknownAttribute, file, span, format!("event `{ev}` has no property `{}`", n.text))
            .with_label("unknown property")
    } else if let Some(ev) = scope.event {
        Diagnostic::new(Code::UnknownAttribute, file, span, format!("unknown attribute `{}`", n.text))
            .with_label(format!("neither a property of `{ev}` nor a contact field"))
    } else {
        Diagnostic::new(Code::UnknownAttribute, file, span, format!("unknown attribute `{}`", n.text))
            .with_label("not a contact field")
    };
    let help = help.or_else(|| match scope.event.map(|e| (e, cx.model.events.get(e))) {
        // In a trigger's `where`, say what the event carries and what the contact has.
        Some((ev, Some(decl))) => {
            let props: Vec<&str> = decl.fields.keys().map(String::as_str).collect();
            let props = if props.is_empty() {
                format!("`{ev}` declares no properties")
            } else {
                format!("`{ev}` has {}", list(&props))
            };
            if scope.event_only {
                Some(props)
            } else {
                let fields: Vec<&str> = cx.model.contact.keys().map(String::as_str).collect();
                Some(format!(
                    "{props}; the contact has {}; declare new properties in `event {ev} {{ … }}`",
                    list(&fields)
                ))
            }
        }
        _ => (!scope.event_only).then(|| "declare it in `contact { … }`".to_string()),
    });
    cx.report(d.with_suggestion(n.span, best, help));
    unknown(span)
}

/// `a`, `b` and `c`, cut short after a dozen names.
fn list(names: &[&str]) -> String {
    const SHOWN: usize = 12;
    let mut shown: Vec<String> = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    if names.len() > SHOWN {
        shown.push(format!("{} more", names.len() - SHOWN));
    }
    match shown.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn lookup(cx: &Checker, text: &str, scope: &Scope) -> Option<(TKind, Type)> {
    if let Some(f) = scope.event.and_then(|e| cx.model.events.get(e)).and_then(|ev| ev.fields.get(text)) {
        return Some((TKind::EventProp(text.to_string()), f.ty.clone()));
    }
    if scope.event_only {
        return None;
    }
    if let Some(f) = cx.model.contact.get(text) {
        return Some((TKind::ContactField(text.to_string()), f.ty.clone()));
    }
    if cx.segment_names.contains(text) {
        return Some((TKind::InSegment(text.to_string()), Type::Bool));
    }
    None
}

fn is_optional(cx: &Checker, e: &TExpr, scope: &Scope) -> bool {
    match &e.kind {
        TKind::ContactField(n) => cx.model.contact.get(n).is_some_and(|f| f.optional),
        TKind::EventProp(n) => scope
            .event
            .and_then(|ev| cx.model.events.get(ev))
            .and_then(|ev| ev.fields.get(n))
            .is_some_and(|f| f.optional),
        _ => false,
    }
}

/// Can values of these two types be compared for equality?
fn comparable(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Unknown, _) | (_, Type::Unknown) => true,
        (Type::Date | Type::DateTime, Type::Date | Type::DateTime) => true,
        (Type::Enum(x), Type::Enum(y)) => x == y,
        (Type::Timezone, Type::String) | (Type::String, Type::Timezone) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

fn mismatch(cx: &mut Checker, file: FileId, l: &TExpr, r: &TExpr, what: &str) {
    cx.report(
        Diagnostic::new(
            Code::TypeMismatch,
            file,
            r.span,
            format!("{what} compares {} with {}", l.ty.describe(), r.ty.describe()),
        )
        .with_label(format!("this is {}", r.ty.describe()))
        .with_related(l.span, format!("this is {}", l.ty.describe())),
    );
}

fn is_bare_unresolved(cx: &Checker, e: &ast::Expr, scope: &Scope) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if lookup(cx, &n.text, scope).is_none())
}

fn compare(
    cx: &mut Checker,
    file: FileId,
    op: CmpOp,
    lhs: &ast::Expr,
    rhs: &ast::Expr,
    scope: &Scope,
    span: Span,
) -> TExpr {
    // `pro == plan` reads as well as `plan == pro`: type the side that resolves first.
    let (l, r) = if is_bare_unresolved(cx, lhs, scope) && !is_bare_unresolved(cx, rhs, scope) {
        let r = typed(cx, file, rhs, scope, None);
        let l = typed(cx, file, lhs, scope, Some(&r.ty));
        (l, r)
    } else {
        let l = typed(cx, file, lhs, scope, None);
        let r = typed(cx, file, rhs, scope, Some(&l.ty));
        (l, r)
    };
    let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    let none_side = matches!(l.ty, Type::None) || matches!(r.ty, Type::None);
    if none_side {
        let other = if matches!(l.ty, Type::None) { &r } else { &l };
        if ordered {
            cx.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    file,
                    span,
                    format!("`{}` cannot order against `none`", op.as_str()),
                )
                .with_label("use `==` or `!=` with `none`"),
            );
        } else if !matches!(other.ty, Type::Unknown | Type::None) && !is_optional(cx, other, scope) {
            cx.report(
                Diagnostic::new(
                    Code::TypeMismatch,
                    file,
                    other.span,
                    "this value is never absent, so comparing it with `none` is always the same",
                )
                .with_label(format!("not optional: {}", other.ty.describe()))
                .with_help("only fields declared with `?` may be `none`"),
            );
        }
    } else if !comparable(&l.ty, &r.ty) {
        mismatch(cx, file, &l, &r, &format!("`{}`", op.as_str()));
    } else if ordered && !matches!(l.ty, Type::Number | Type::DateTime | Type::Date | Type::Duration | Type::Unknown) {
        cx.report(
            Diagnostic::new(
                Code::TypeMismatch,
                file,
                span,
                format!("`{}` needs numbers, dates or durations, not {}", op.as_str(), l.ty.describe()),
            )
            .with_label("cannot be ordered"),
        );
    }
    TExpr { kind: TKind::Compare { op, lhs: Box::new(l), rhs: Box::new(r) }, ty: Type::Bool, span }
}

fn arith(
    cx: &mut Checker,
    file: FileId,
    first: &ast::Expr,
    rest: &[(ArithOp, ast::Expr)],
    scope: &Scope,
    span: Span,
) -> TExpr {
    let f = typed(cx, file, first, scope, None);
    let mut acc = f.ty.clone();
    let mut parts = Vec::new();
    for (op, x) in rest {
        let t = typed(cx, file, x, scope, None);
        let result = match (&acc, op, &t.ty) {
            (Type::Unknown, _, _) | (_, _, Type::Unknown) => Some(Type::Unknown),
            (Type::Number, _, Type::Number) => Some(Type::Number),
            (Type::Duration, _, Type::Duration) => Some(Type::Duration),
            (Type::DateTime, _, Type::Duration) => Some(Type::DateTime),
            (Type::Date, _, Type::Duration) => Some(Type::Date),
            (Type::Duration, ArithOp::Add, Type::DateTime) => Some(Type::DateTime),
            (Type::DateTime, ArithOp::Sub, Type::DateTime | Type::Date) => Some(Type::Duration),
            (Type::Date, ArithOp::Sub, Type::Date) => Some(Type::Duration),
            _ => None,
        };
        acc = match result {
            Some(ty) => ty,
            None => {
                let sym = if *op == ArithOp::Add { "+" } else { "-" };
                cx.report(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        file,
                        t.span,
                        format!("cannot compute {} {sym} {}", acc.describe(), t.ty.describe()),
                    )
                    .with_label(format!("this is {}", t.ty.describe()))
                    .with_help("arithmetic works on numbers, and on datetimes with durations (`now - 7d`)"),
                );
                Type::Unknown
            }
        };
        parts.push((*op, t));
    }
    let e = TExpr { kind: TKind::Arith { first: Box::new(f), rest: parts }, ty: acc, span };
    if let Some(why) = constant_out_of_range(&e) {
        cx.report(
            Diagnostic::new(Code::OutOfRange, file, span, "value out of range")
                .with_label(why)
                .with_help("numbers reach about ±1.8e308, datetimes the years 0000 to 9999, durations 10,000 years"),
        );
        return unknown(span);
    }
    e
}

/// What goes out of range when the constants of an arithmetic chain are
/// combined: the number it computes, or the offset and datetime that
/// `compile` folds its duration constants into (`now - 7d - 1d`,
/// `2026-01-01 09:00 + 2d`). Mirrors the folding in `compile::lower`, so every
/// constant a program stores is within `crate::limits`.
fn constant_out_of_range(e: &TExpr) -> Option<&'static str> {
    let TKind::Arith { first, rest } = &e.kind else { return None };
    if e.ty == Type::Number {
        let n = number_value(e)?;
        return (!crate::limits::number(n)).then_some("this computes a number beyond about ±1.8e308");
    }
    if e.ty == Type::Unknown {
        return None;
    }
    let mut offset: i128 = 0;
    let mut all_durations = true;
    for (op, x) in rest {
        match x.kind {
            TKind::Const(Value::Duration(m)) => {
                offset += if *op == ArithOp::Add { i128::from(m) } else { -i128::from(m) }
            }
            _ => all_durations = false,
        }
    }
    let fits = |v: i128, ok: fn(i64) -> bool| i64::try_from(v).is_ok_and(ok);
    if !fits(offset, crate::limits::duration) {
        return Some("these durations add up to more than 10,000 years");
    }
    if !all_durations {
        return None;
    }
    match first.kind {
        TKind::Const(Value::DateTime(m)) if !fits(i128::from(m) + offset, crate::limits::datetime) => {
            Some("this falls outside the years 0000 to 9999")
        }
        TKind::Const(Value::Date(d)) if !fits(i128::from(d) * 1440 + offset, crate::limits::datetime) => {
            Some("this falls outside the years 0000 to 9999")
        }
        TKind::Const(Value::Duration(m)) if !fits(i128::from(m) + offset, crate::limits::duration) => {
            Some("these durations add up to more than 10,000 years")
        }
        _ => None,
    }
}

/// The value of an expression made only of number constants.
fn number_value(e: &TExpr) -> Option<f64> {
    match &e.kind {
        TKind::Const(Value::Number(n)) => Some(*n),
        TKind::Arith { first, rest } => rest.iter().try_fold(number_value(first)?, |acc, (op, x)| {
            let x = number_value(x)?;
            Some(if *op == ArithOp::Add { acc + x } else { acc - x })
        }),
        _ => None,
    }
}

fn call(cx: &mut Checker, file: FileId, func: &ast::Name, arg: &ast::Name, scope: &Scope, span: Span) -> TExpr {
    let ok = |kind| TExpr { kind, ty: Type::Bool, span };
    match func.text.as_str() {
        "consent" | "capable" => {
            if !cx.model.channels.contains_key(&arg.text) {
                let help = cx.channel_help(&arg.text);
                cx.report(
                    Diagnostic::new(Code::UnknownChannel, file, arg.span, format!("unknown channel `{}`", arg.text))
                        .with_label("no such channel")
                        .with_help_opt(help),
                );
                return unknown(span);
            }
            if func.text == "consent" {
                ok(TKind::Consent(arg.text.clone()))
            } else {
                ok(TKind::Capable(arg.text.clone()))
            }
        }
        "opened" | "clicked" | "delivered" => {
            let kind = match func.text.as_str() {
                "opened" => Engagement::Opened,
                "clicked" => Engagement::Clicked,
                _ => Engagement::Delivered,
            };
            let Some(campaign) = scope.campaign else {
                cx.report(
                    Diagnostic::new(Code::UnknownStep, file, span, format!("`{}(…)` refers to a step, and there are no steps here", func.text))
                        .with_label("outside a campaign's steps")
                        .with_help("engagement predicates belong in an `if` inside a campaign; use `happened message.opened` elsewhere"),
                );
                return unknown(span);
            };
            match campaign.labels.get(&arg.text) {
                Some(info) if info.is_send => {
                    let before = campaign.sent;
                    if !before.any.contains(&arg.text) {
                        cx.report(
                            Diagnostic::new(
                                Code::StepNotBefore,
                                file,
                                arg.span,
                                format!("`{}` cannot have run before this condition", arg.text),
                            )
                            .with_label("no path reaches this point through the send")
                            .with_related(info.span, "the send comes later, or on another branch")
                            .with_help(format!(
                                "`{}({})` is always false here; move the check after `{}`",
                                func.text, arg.text, arg.text
                            )),
                        );
                    } else if !before.all.contains(&arg.text) {
                        cx.report(
                            Diagnostic::new(
                                Code::StepNotDominating,
                                file,
                                arg.span,
                                format!("`{}` may not have run on every path to this condition", arg.text),
                            )
                            .with_label("not sent on every path here")
                            .with_related(info.span, "the send")
                            .with_help(format!(
                                "on paths that skip `{}`, `{}({})` is always false",
                                arg.text, func.text, arg.text
                            )),
                        );
                    }
                    if before.unwaited.contains(&arg.text) {
                        cx.report(
                            Diagnostic::new(Code::EngagementTooEarly, file, arg.span, format!("`{}({})` is checked with no wait after the send", func.text, arg.text))
                                .with_label("checked right after the send")
                                .with_related(info.span, "the send")
                                .with_help(format!("deliveries, opens and clicks take time to arrive, so this is almost always false; add a `wait` (e.g. `wait 1d`) between `{}` and this check", arg.text)),
                        );
                    }
                    ok(TKind::Engaged { kind, step: arg.text.clone() })
                }
                Some(info) => {
                    let span_first = info.span;
                    cx.report(
                        Diagnostic::new(
                            Code::UnknownStep,
                            file,
                            arg.span,
                            format!("step `{}` is not a `send`", arg.text),
                        )
                        .with_label("engagement needs a send")
                        .with_related(span_first, "this step sends nothing"),
                    );
                    unknown(span)
                }
                None => {
                    let sends = campaign.labels.iter().filter(|(_, i)| i.is_send).map(|(k, _)| k.as_str());
                    let best = suggest::best(&arg.text, sends);
                    let otherwise = "label the send: `hello: send …`".to_string();
                    cx.report(
                        Diagnostic::new(
                            Code::UnknownStep,
                            file,
                            arg.span,
                            format!("no `send` is labelled `{}`", arg.text),
                        )
                        .with_label("unknown step")
                        .with_suggestion(arg.span, best, Some(otherwise)),
                    );
                    unknown(span)
                }
            }
        }
        "in_segment" => {
            if cx.segment_names.contains(&arg.text) {
                return ok(TKind::InSegment(arg.text.clone()));
            }
            let best = suggest::best(&arg.text, cx.segment_names.iter().map(String::as_str));
            cx.report(
                Diagnostic::new(Code::UnknownSegment, file, arg.span, format!("unknown segment `{}`", arg.text))
                    .with_label("no such segment")
                    .with_suggestion(arg.span, best, None),
            );
            unknown(span)
        }
        other => {
            let best = suggest::best(other, FUNCTIONS.iter().copied());
            let otherwise = format!("the predicates are {}", FUNCTIONS.join(", "));
            cx.report(
                Diagnostic::new(Code::UnknownFunction, file, func.span, format!("unknown predicate `{other}`"))
                    .with_label("no such predicate")
                    .with_suggestion(func.span, best, Some(otherwise)),
            );
            unknown(span)
        }
    }
}

fn happened(
    cx: &mut Checker,
    file: FileId,
    event: &ast::Name,
    within: Option<&ast::DurationLit>,
    filter: &[ast::Expr],
    span: Span,
) -> TExpr {
    if !cx.model.events.contains_key(&event.text) {
        report_unknown_event(cx, file, event);
        return unknown(span);
    }
    let within_minutes = within.map(|d| {
        let m = d.minutes().min(crate::limits::MAX_DURATION as u64) as i64;
        if m == 0 {
            cx.report(
                Diagnostic::new(Code::InvalidDuration, file, d.span, "`within` needs a duration above zero")
                    .with_label("empty window"),
            );
        }
        m
    });
    let scope = Scope { event: Some(&event.text), event_only: true, campaign: None, audience: false };
    let filter = filter.iter().map(|f| condition(cx, file, f, &scope)).collect();
    // A window out of range was reported by the parser.
    let ty = if within.is_some_and(ast::DurationLit::out_of_range) { Type::Unknown } else { Type::Bool };
    TExpr { kind: TKind::Happened { event: event.text.clone(), within_minutes, filter }, ty, span }
}

/// `event NAME [where …]` of a goal, an exit or a `when` arm: the filter
/// reads only the event's properties, as `happened … where` does.
pub(crate) fn event_match(cx: &mut Checker, file: FileId, m: &ast::EventMatch) -> EventMatch {
    if !cx.model.events.contains_key(&m.event.text) {
        report_unknown_event(cx, file, &m.event);
        return EventMatch { event: m.event.text.clone(), filter: Vec::new() };
    }
    let scope = Scope { event: Some(&m.event.text), event_only: true, campaign: None, audience: false };
    let filter = m.filter.iter().map(|f| condition(cx, file, f, &scope)).collect();
    EventMatch { event: m.event.text.clone(), filter }
}

pub(crate) fn report_unknown_event(cx: &mut Checker, file: FileId, event: &ast::Name) {
    let best = suggest::best(&event.text, cx.model.events.keys().map(String::as_str));
    let otherwise = "declare it with `event NAME { … }`".to_string();
    cx.report(
        Diagnostic::new(Code::UnknownEvent, file, event.span, format!("unknown event `{}`", event.text))
            .with_label("no such event")
            .with_suggestion(event.span, best, Some(otherwise)),
    );
}
