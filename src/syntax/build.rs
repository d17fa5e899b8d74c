//! Builds the typed syntax tree from pest's pairs, one declaration at a time.
//!
//! The grammar guarantees the shape of each pair, so the walks below take
//! children in order; what the grammar cannot check (a date that does not
//! exist) becomes a `syntax` diagnostic here, and a literal beyond
//! `crate::limits` an `out-of-range` one. A literal reported here keeps a
//! value outside its range in the tree (see `ast::ExprKind::Number`,
//! `ast::DurationLit`, `ast::Variant`), which tells the checker to say no more
//! about it.

use crate::diag::{Code, Diagnostic};
use crate::limits;
use crate::source::{FileId, Span};
use crate::syntax::ast::*;
use crate::syntax::grammar::Rule;
use pest::iterators::{Pair, Pairs};

/// More `not`s in a row than anyone writes; keeps the tree shallow.
const MAX_NOTS: usize = 16;

pub struct Ctx<'d> {
    /// Offset of the parsed slice in the file.
    pub base: usize,
    pub file: FileId,
    pub diags: &'d mut Vec<Diagnostic>,
    /// The whole file and its comments, to trim trivia off span ends.
    pub text: &'d str,
    pub comments: &'d [Comment],
}

impl Ctx<'_> {
    /// A node's span, without the whitespace and comments pest's implicit
    /// skipping leaves at its end (after an optional part that was absent).
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let start = self.base + s.start();
        let mut end = self.base + s.end();
        let bytes = self.text.as_bytes();
        // Only a span that ends in whitespace or `*/` can hold trailing
        // trivia: most spans end on their last token and skip the search.
        if !matches!(bytes.get(end.wrapping_sub(1)), Some(b' ' | b'\t' | b'\r' | b'\n' | b'/')) || end == start {
            return Span::new(start, end);
        }
        loop {
            while end > start && matches!(bytes.get(end - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                end -= 1;
            }
            match self.comments.binary_search_by_key(&(end as u32), |c| c.span.end) {
                Ok(i) if self.comments[i].span.start as usize >= start => end = self.comments[i].span.start as usize,
                _ => break,
            }
        }
        Span::new(start, end)
    }
    fn name(&self, p: Pair<Rule>) -> Name {
        Name { text: p.as_str().to_string(), span: self.span(&p) }
    }
    fn error(&mut self, span: Span, message: impl Into<String>, label: &str) {
        self.diags.push(Diagnostic::new(Code::Syntax, self.file, span, message).with_label(label));
    }
    fn out_of_range(&mut self, span: Span, message: impl Into<String>, label: &str, help: &str) {
        self.diags.push(Diagnostic::new(Code::OutOfRange, self.file, span, message).with_label(label).with_help(help));
    }
}

/// Next child; the grammar guarantees it exists, so absence is a flowc bug.
fn next<'i>(it: &mut Pairs<'i, Rule>) -> Pair<'i, Rule> {
    it.next().expect("grammar guarantees this child")
}

pub fn item(ctx: &mut Ctx, p: Pair<Rule>) -> Option<Item> {
    let span = ctx.span(&p);
    let rule = p.as_rule();
    let whole = p.as_str();
    let mut it = p.into_inner();
    Some(match rule {
        Rule::import_decl => {
            next(&mut it);
            Item::Import(Import { path: string(ctx, next(&mut it)), span })
        }
        Rule::template_decl => {
            next(&mut it);
            let name = ctx.name(next(&mut it));
            let mut fields = Vec::new();
            for f in it {
                let Some(inner) = f.into_inner().next() else { continue };
                let fspan = ctx.span(&inner);
                let r = inner.as_rule();
                let value = next(&mut inner.into_inner());
                fields.push(match r {
                    Rule::tf_channel => TemplateField::Channel(ctx.name(value)),
                    Rule::tf_message => TemplateField::Message(ctx.name(value)),
                    Rule::tf_status => TemplateField::Status(ctx.name(value)),
                    _ => TemplateField::Version { value: int(ctx, &value).unwrap_or(0), span: fspan },
                });
            }
            Item::Template(Template { name, fields, span })
        }
        Rule::contact_decl => {
            next(&mut it);
            Item::Contact(ContactDecl { fields: it.map(|f| field(ctx, f)).collect(), span })
        }
        Rule::event_decl => {
            next(&mut it);
            let name = ctx.name(next(&mut it));
            let fields: Vec<FieldDecl> = it.map(|f| field(ctx, f)).collect();
            let has_body = whole.trim_end().ends_with('}');
            Item::Event(EventDecl { name, fields, has_body, span })
        }
        Rule::segment_decl => {
            next(&mut it);
            let name = ctx.name(next(&mut it));
            let expr = expr(ctx, next(&mut it));
            Item::Segment(SegmentDecl { name, expr, span })
        }
        Rule::channel_decl => {
            next(&mut it);
            let name = ctx.name(next(&mut it));
            let mut entries = Vec::new();
            for e in it {
                let Some(inner) = e.into_inner().next() else { continue };
                let espan = ctx.span(&inner);
                entries.push(match inner.as_rule() {
                    Rule::ch_requires_capability => ChannelEntry::RequiresCapability(espan),
                    Rule::ch_fallback => {
                        let mut c = inner.into_inner();
                        next(&mut c);
                        ChannelEntry::Fallback(ctx.name(next(&mut c)))
                    }
                    _ => {
                        let mut c = inner.into_inner();
                        let name = ctx.name(next(&mut c));
                        ChannelEntry::Message { name, requires_consent: c.next().is_some(), span: espan }
                    }
                });
            }
            Item::Channel(ChannelDecl { name, entries, span })
        }
        Rule::pricing_decl => {
            next(&mut it);
            let entries = it
                .map(|e| {
                    let espan = ctx.span(&e);
                    let mut c = e.into_inner();
                    let cm = channel_message(ctx, next(&mut c));
                    let m = next(&mut c);
                    let mspan = ctx.span(&m);
                    let mut mc = m.into_inner();
                    let text = next(&mut mc).as_str().to_string();
                    let currency = ctx.name(next(&mut mc));
                    PriceEntry {
                        channel: cm.channel,
                        message: cm.message,
                        amount: Money { text, currency, span: mspan },
                        span: espan,
                    }
                })
                .collect();
            Item::Pricing(PricingDecl { entries, span })
        }
        Rule::policy_decl => {
            let keyword = ctx.span(&next(&mut it));
            let caps = it.map(|c| frequency_cap(ctx, c)).collect();
            Item::Policy(PolicyDecl { caps, keyword, span })
        }
        Rule::campaign_decl => {
            next(&mut it);
            let name = ctx.name(next(&mut it));
            let mut settings = Vec::new();
            let mut steps = Vec::new();
            for c in it {
                match c.as_rule() {
                    Rule::campaign_setting => settings.push(setting(ctx, c)),
                    _ => steps.push(step(ctx, c)),
                }
            }
            Item::Campaign(Campaign { name, settings, steps, span })
        }
        _ => return None,
    })
}

fn field(ctx: &mut Ctx, p: Pair<Rule>) -> FieldDecl {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    let name = ctx.name(next(&mut it));
    let t = next(&mut it);
    let tspan = ctx.span(&t);
    let mut ti = t.into_inner();
    let k = next(&mut ti);
    let kind = match k.as_rule() {
        Rule::set_type => TypeKind::Set(ctx.name(next(&mut k.into_inner()))),
        Rule::enum_type => TypeKind::Enum(k.into_inner().map(|v| ctx.name(v)).collect()),
        _ => TypeKind::Named(ctx.name(k)),
    };
    FieldDecl { name, ty: TypeExpr { kind, optional: ti.next().is_some(), span: tspan }, span }
}

fn setting(ctx: &mut Ctx, p: Pair<Rule>) -> Setting {
    let inner = next(&mut p.into_inner());
    let span = ctx.span(&inner);
    match inner.as_rule() {
        Rule::setting_name => Setting::DisplayName(string(ctx, next(&mut inner.into_inner())), span),
        Rule::audience => {
            let mut it = inner.into_inner();
            next(&mut it);
            Setting::Audience(expr(ctx, next(&mut it)), span)
        }
        Rule::goal => {
            let mut it = inner.into_inner();
            next(&mut it);
            let event = event_match(ctx, next(&mut it));
            next(&mut it);
            let within = duration(ctx, next(&mut it));
            Setting::Goal(Goal { event, within, span })
        }
        Rule::exit => {
            let mut it = inner.into_inner();
            next(&mut it);
            next(&mut it);
            Setting::Exit(arm_cond(ctx, next(&mut it)), span)
        }
        Rule::on_ineligible => {
            let mut it = inner.into_inner();
            next(&mut it);
            next(&mut it);
            let what = if next(&mut it).as_rule() == Rule::kw_skip { Ineligible::Skip } else { Ineligible::Continue };
            Setting::OnIneligible(what, span)
        }
        Rule::quiet_hours => {
            let mut it = inner.into_inner();
            next(&mut it);
            next(&mut it);
            let start = clock(ctx, next(&mut it));
            next(&mut it);
            let end = clock(ctx, next(&mut it));
            let then = if it.next().is_some() { QuietThen::Skip } else { QuietThen::Hold };
            Setting::QuietHours(QuietHours { start, end, then, span })
        }
        Rule::reentry => {
            let mut it = inner.into_inner();
            next(&mut it);
            let what = next(&mut it);
            let reentry = match what.as_rule() {
                Rule::kw_once => Reentry::Once,
                Rule::kw_always => Reentry::Always,
                _ => Reentry::After(duration(ctx, next(&mut it))),
            };
            Setting::Reentry(reentry, span)
        }
        Rule::rate_limit => {
            let mut it = inner.into_inner();
            next(&mut it);
            next(&mut it);
            let count = count(ctx, next(&mut it));
            next(&mut it);
            let per = match next(&mut it).as_rule() {
                Rule::kw_second => RatePer::Second,
                Rule::kw_minute => RatePer::Minute,
                _ => RatePer::Hour,
            };
            Setting::RateLimit(RateLimit { count, per, span })
        }
        _ => {
            let mut it = inner.into_inner();
            next(&mut it);
            let t = next(&mut it);
            let kind = match t.as_rule() {
                Rule::trigger_scheduled => {
                    let mut c = t.into_inner();
                    next(&mut c);
                    let at = date_lit(ctx, next(&mut c));
                    let zone = string(ctx, next(&mut c));
                    TriggerKind::Scheduled { at, zone }
                }
                Rule::trigger_event => {
                    let mut c = t.into_inner();
                    next(&mut c);
                    let event = ctx.name(next(&mut c));
                    let filter = c.next().and_then(|_| c.next()).map(|e| expr(ctx, e));
                    TriggerKind::Event { event, filter }
                }
                Rule::trigger_manual => TriggerKind::Manual,
                _ => TriggerKind::Api,
            };
            Setting::Trigger(Trigger { kind, span })
        }
    }
}

fn clock(ctx: &mut Ctx, p: Pair<Rule>) -> Clock {
    Clock { text: p.as_str().to_string(), span: ctx.span(&p) }
}

/// Digits as a count; more than `u64` holds saturates (the checker's ranges are far below).
fn count(ctx: &mut Ctx, p: Pair<Rule>) -> Count {
    Count { value: p.as_str().parse().unwrap_or(u64::MAX), span: ctx.span(&p) }
}

/// `frequency cap [CHANNEL] N per D`.
fn frequency_cap(ctx: &mut Ctx, p: Pair<Rule>) -> FrequencyCap {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    next(&mut it);
    next(&mut it);
    let mut first = next(&mut it);
    let channel = if first.as_rule() == Rule::ident {
        let n = ctx.name(first);
        first = next(&mut it);
        Some(n)
    } else {
        None
    };
    let count = count(ctx, first);
    next(&mut it);
    let window = duration(ctx, next(&mut it));
    FrequencyCap { channel, count, window, span }
}

/// `event NAME [where …]`.
fn event_match(ctx: &mut Ctx, p: Pair<Rule>) -> EventMatch {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    next(&mut it);
    let event = ctx.name(next(&mut it));
    let filter = match it.next() {
        Some(_) => next(&mut it).into_inner().filter(|x| x.as_rule() != Rule::kw_and).map(|x| expr(ctx, x)).collect(),
        None => Vec::new(),
    };
    EventMatch { event, filter, span }
}

/// An `event_match` or an expression: what a `when` or an `exit when` waits for.
fn arm_cond(ctx: &mut Ctx, p: Pair<Rule>) -> ArmCond {
    if p.as_rule() == Rule::event_match {
        ArmCond::Event(event_match(ctx, p))
    } else {
        ArmCond::State(expr(ctx, p))
    }
}

fn wait_until(ctx: &mut Ctx, p: Pair<Rule>, step_span: Span) -> WaitUntil {
    let mut it = p.into_inner();
    let start = ctx.span(&next(&mut it)).start as usize;
    let head = Span::new(start, ctx.span(&next(&mut it)).end as usize);
    let body = next(&mut it);
    if body.as_rule() == Rule::wait_short {
        let mut c = body.into_inner();
        let event = event_match(ctx, next(&mut c));
        // The short form's blocks are empty; they sit at the step's end so
        // comments and positions stay inside the step.
        let empty = Block { steps: Vec::new(), span: Span::new(step_span.end as usize, step_span.end as usize) };
        let arm_span = event.span;
        let timeout = c.next().map(|_| {
            let d = next(&mut c);
            let span = ctx.span(&d);
            Timeout { duration: duration(ctx, d), block: empty.clone(), span }
        });
        let arm = WhenArm { cond: ArmCond::Event(event), block: empty, span: arm_span };
        return WaitUntil { arms: vec![arm], timeout, form: WaitForm::Short, head };
    }
    let mut arms = Vec::new();
    let mut timeout = None;
    for a in body.into_inner().filter(|a| a.as_rule() != Rule::wait_close) {
        let span = ctx.span(&a);
        let rule = a.as_rule();
        let mut c = a.into_inner();
        next(&mut c);
        if rule == Rule::when_arm {
            let cond = arm_cond(ctx, next(&mut c));
            arms.push(WhenArm { cond, block: block(ctx, next(&mut c)), span });
        } else {
            let duration = duration(ctx, next(&mut c));
            timeout = Some(Timeout { duration, block: block(ctx, next(&mut c)), span });
        }
    }
    WaitUntil { arms, timeout, form: WaitForm::Arms, head }
}

fn block(ctx: &mut Ctx, p: Pair<Rule>) -> Block {
    let span = ctx.span(&p);
    Block { steps: p.into_inner().map(|s| step(ctx, s)).collect(), span }
}

fn step(ctx: &mut Ctx, p: Pair<Rule>) -> Step {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    let mut first = next(&mut it);
    let label = if first.as_rule() == Rule::label {
        let l = ctx.name(next(&mut first.into_inner()));
        first = next(&mut it);
        Some(l)
    } else {
        None
    };
    let rule = first.as_rule();
    if rule == Rule::wait_until_step {
        let kind = StepKind::WaitUntil(wait_until(ctx, first, span));
        return Step { label, kind, span };
    }
    let mut c = first.into_inner();
    let kind = match rule {
        Rule::send_step => {
            next(&mut c);
            let target = send_target(ctx, next(&mut c));
            let fallback = c.next().map(|f| {
                let mut fi = f.into_inner();
                next(&mut fi);
                let what = next(&mut fi);
                if what.as_rule() == Rule::kw_none {
                    Fallback::None(ctx.span(&what))
                } else {
                    Fallback::To(send_target(ctx, what))
                }
            });
            StepKind::Send(Send { target, fallback })
        }
        Rule::wait_step => {
            next(&mut c);
            StepKind::Wait(duration(ctx, next(&mut c)))
        }
        Rule::if_step => {
            next(&mut c);
            let cond = expr(ctx, next(&mut c));
            let body = block(ctx, next(&mut c));
            let mut arms = vec![(cond, body)];
            let mut otherwise = None;
            for rest in c {
                let r = rest.as_rule();
                let mut ri = rest.into_inner();
                next(&mut ri);
                if r == Rule::else_if {
                    next(&mut ri);
                    let cond = expr(ctx, next(&mut ri));
                    arms.push((cond, block(ctx, next(&mut ri))));
                } else {
                    otherwise = Some(block(ctx, next(&mut ri)));
                }
            }
            StepKind::If(If { arms, otherwise })
        }
        Rule::ab_test_step => {
            next(&mut c);
            let name = ctx.name(next(&mut c));
            let variants = c
                .map(|v| {
                    let vspan = ctx.span(&v);
                    let mut vi = v.into_inner();
                    next(&mut vi);
                    let name = ctx.name(next(&mut vi));
                    let pct = next(&mut vi);
                    let weight_span = ctx.span(&pct);
                    let weight_bp = percent(ctx, next(&mut pct.into_inner()));
                    let block = block(ctx, next(&mut vi));
                    Variant { name, weight_bp, weight_span, block, span: vspan }
                })
                .collect();
            StepKind::AbTest(AbTest { name, variants })
        }
        Rule::tag_step => {
            next(&mut c);
            let op = if next(&mut c).as_rule() == Rule::kw_add { TagOp::Add } else { TagOp::Remove };
            StepKind::Tag { op, tag: string(ctx, next(&mut c)) }
        }
        Rule::set_step => {
            next(&mut c);
            let field = ctx.name(next(&mut c));
            next(&mut c);
            StepKind::Set { field, value: expr(ctx, next(&mut c)) }
        }
        _ => StepKind::End,
    };
    Step { label, kind, span }
}

fn send_target(ctx: &mut Ctx, p: Pair<Rule>) -> SendTarget {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    let first = next(&mut it);
    if first.as_rule() == Rule::channel_message {
        let cm = channel_message(ctx, first);
        SendTarget { channel: Some(cm), template: ctx.name(next(&mut it)), span }
    } else {
        SendTarget { channel: None, template: ctx.name(first), span }
    }
}

fn channel_message(ctx: &mut Ctx, p: Pair<Rule>) -> ChannelMessage {
    let span = ctx.span(&p);
    let mut it = p.into_inner();
    ChannelMessage { channel: ctx.name(next(&mut it)), message: ctx.name(next(&mut it)), span }
}

pub fn expr(ctx: &mut Ctx, p: Pair<Rule>) -> Expr {
    let span = ctx.span(&p);
    match p.as_rule() {
        Rule::expr | Rule::and_expr => {
            let is_or = p.as_rule() == Rule::expr;
            let operands: Vec<Expr> = p
                .into_inner()
                .filter(|c| !matches!(c.as_rule(), Rule::kw_or | Rule::kw_and))
                .map(|c| expr(ctx, c))
                .collect();
            collapse(operands, span, if is_or { ExprKind::Or } else { ExprKind::And })
        }
        Rule::unary => {
            let children: Vec<Pair<Rule>> = p.into_inner().collect();
            let nots = children.len().saturating_sub(1);
            if nots > MAX_NOTS {
                ctx.error(span, format!("more than {MAX_NOTS} `not`s in a row"), "simplify this");
            }
            let mut e = match children.into_iter().last() {
                Some(c) => expr(ctx, c),
                None => Expr { kind: ExprKind::Bool(false), span },
            };
            // Each `not` wraps from its own keyword to the end of the operand.
            for _ in 0..nots.min(MAX_NOTS) {
                e = Expr { kind: ExprKind::Not(Box::new(e)), span };
            }
            e
        }
        Rule::comparison => {
            let mut it = p.into_inner();
            let lhs = expr(ctx, next(&mut it));
            let Some(op) = it.next() else { return lhs };
            let rhs = next(&mut it);
            let kind = match op.as_rule() {
                Rule::cmp_op => {
                    let op = match op.as_str() {
                        "==" => CmpOp::Eq,
                        "!=" => CmpOp::Ne,
                        "<" => CmpOp::Lt,
                        "<=" => CmpOp::Le,
                        ">" => CmpOp::Gt,
                        _ => CmpOp::Ge,
                    };
                    ExprKind::Compare { op, lhs: Box::new(lhs), rhs: Box::new(expr(ctx, rhs)) }
                }
                Rule::kw_in => {
                    ExprKind::In { lhs: Box::new(lhs), list: rhs.into_inner().map(|a| expr(ctx, a)).collect() }
                }
                _ => ExprKind::Has { lhs: Box::new(lhs), rhs: Box::new(expr(ctx, rhs)) },
            };
            Expr { kind, span }
        }
        Rule::additive => {
            let mut it = p.into_inner();
            let first = expr(ctx, next(&mut it));
            let mut rest = Vec::new();
            while let Some(op) = it.next() {
                let op = if op.as_str() == "+" { ArithOp::Add } else { ArithOp::Sub };
                rest.push((op, expr(ctx, next(&mut it))));
            }
            if rest.is_empty() {
                first
            } else {
                Expr { kind: ExprKind::Arith { first: Box::new(first), rest }, span }
            }
        }
        Rule::atom => expr(ctx, next(&mut p.into_inner())),
        Rule::paren => Expr { kind: ExprKind::Paren(Box::new(expr(ctx, next(&mut p.into_inner())))), span },
        Rule::name_or_call => {
            let mut it = p.into_inner();
            let func = ctx.name(next(&mut it));
            match it.next() {
                Some(arg) => Expr { kind: ExprKind::Call { func, arg: ctx.name(next(&mut arg.into_inner())) }, span },
                None => Expr { kind: ExprKind::Name(func), span },
            }
        }
        Rule::happened => {
            let mut it = p.into_inner();
            let event = ctx.name(next(&mut it));
            let mut within = None;
            let mut filter = Vec::new();
            while let Some(c) = it.next() {
                match c.as_rule() {
                    Rule::kw_within => within = Some(duration(ctx, next(&mut it))),
                    Rule::kw_where => {
                        filter = next(&mut it)
                            .into_inner()
                            .filter(|x| x.as_rule() != Rule::kw_and)
                            .map(|x| expr(ctx, x))
                            .collect()
                    }
                    _ => {}
                }
            }
            Expr { kind: ExprKind::Happened { event, within, filter }, span }
        }
        Rule::kw_true => Expr { kind: ExprKind::Bool(true), span },
        Rule::kw_false => Expr { kind: ExprKind::Bool(false), span },
        Rule::kw_now => Expr { kind: ExprKind::Now, span },
        Rule::kw_none => Expr { kind: ExprKind::None, span },
        Rule::date | Rule::datetime => Expr { kind: ExprKind::Date(date_lit(ctx, p)), span },
        Rule::duration => Expr { kind: ExprKind::Duration(duration(ctx, p)), span },
        Rule::number => {
            let text = p.as_str().to_string();
            // The grammar's digits always parse; past `f64::MAX` they parse to infinity.
            let value = text.parse::<f64>().unwrap_or(f64::INFINITY);
            if !limits::number(value) {
                ctx.out_of_range(
                    span,
                    "number out of range",
                    "beyond the largest number, about ±1.8e308",
                    "numbers are 64-bit floating point",
                );
            }
            Expr { kind: ExprKind::Number { value, text }, span }
        }
        Rule::string => Expr { kind: ExprKind::Str(string(ctx, p).value), span },
        _ => Expr { kind: ExprKind::Name(ctx.name(p)), span },
    }
}

/// A chain of one operand is just that operand.
fn collapse(mut operands: Vec<Expr>, span: Span, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    if operands.len() == 1 {
        return operands.pop().unwrap_or(Expr { kind: ExprKind::Bool(false), span });
    }
    Expr { kind: make(operands), span }
}

fn string(ctx: &mut Ctx, p: Pair<Rule>) -> StrLit {
    let span = ctx.span(&p);
    let raw = p.into_inner().next().map_or("", |i| i.as_str());
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => value.push('\n'),
            Some('t') => value.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => value.push(ch),
                    None => ctx.error(span, format!("`\\u{{{hex}}}` is not a Unicode scalar value"), "invalid escape"),
                }
            }
            Some(other) => value.push(other),
            None => {}
        }
    }
    StrLit { value, span }
}

fn int(ctx: &mut Ctx, p: &Pair<Rule>) -> Option<u32> {
    let v = p.as_str().parse::<u32>().ok();
    if v.is_none() {
        let span = ctx.span(p);
        ctx.out_of_range(
            span,
            "number out of range",
            "must fit in 32 bits",
            "a template version is at most 4294967295",
        );
    }
    v
}

/// A weight in hundredths of a percent. One the parser reports is kept above
/// `limits::MAX_WEIGHT_BP`, so the checker adds no "weight 0" or "sum" to it.
fn percent(ctx: &mut Ctx, p: Pair<Rule>) -> u32 {
    let span = ctx.span(&p);
    let text = p.as_str();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 {
        ctx.error(span, "a weight has at most two decimals", "too precise");
        return u32::MAX;
    }
    let frac_bp = format!("{frac:0<2}").parse::<u32>().unwrap_or(0);
    let bp = whole
        .parse::<u32>()
        .ok()
        .and_then(|w| w.checked_mul(100))
        .and_then(|w| w.checked_add(frac_bp))
        .unwrap_or(u32::MAX);
    if bp > limits::MAX_WEIGHT_BP {
        ctx.out_of_range(
            span,
            "weight out of range",
            "above 100%",
            "a variant's weight is a percentage of the contacts entering the test, at most 100%",
        );
    }
    bp
}

/// A duration literal. One longer than `limits::MAX_DURATION` is reported
/// here, once for the whole literal, and keeps its (saturated) length so the
/// checker recognises it.
fn duration(ctx: &mut Ctx, p: Pair<Rule>) -> DurationLit {
    let span = ctx.span(&p);
    let mut parts = Vec::new();
    for part in p.into_inner() {
        let text = part.as_str();
        let (digits, unit) = text.split_at(text.len() - 1);
        let unit = match unit {
            "m" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            _ => DurationUnit::Week,
        };
        parts.push((digits.parse::<u64>().unwrap_or(u64::MAX), unit));
    }
    let lit = DurationLit { parts, span };
    if lit.out_of_range() {
        ctx.out_of_range(
            span,
            "duration out of range",
            "longer than 10,000 years",
            "a duration spans at most the calendar's years 0000 to 9999",
        );
    }
    lit
}

fn date_lit(ctx: &mut Ctx, p: Pair<Rule>) -> DateLit {
    let span = ctx.span(&p);
    let text = p.as_str();
    let num = |s: &str| s.parse::<u32>().unwrap_or(0);
    let date = chrono::NaiveDate::from_ymd_opt(num(&text[0..4]) as i32, num(&text[5..7]), num(&text[8..10]));
    let time = if text.len() > 10 {
        Some(chrono::NaiveTime::from_hms_opt(num(&text[11..13]), num(&text[14..16]), 0))
    } else {
        None
    };
    let valid_date = date.unwrap_or_default();
    if date.is_none() {
        ctx.error(span, format!("`{}` is not a calendar date", &text[..10]), "no such date");
    }
    let time = match time {
        Some(None) => {
            ctx.error(span, format!("`{}` is not a time of day", &text[11..]), "no such time");
            None
        }
        Some(t) => t,
        None => None,
    };
    DateLit { date: valid_date, time, span }
}
