//! `flowc fmt`: one canonical layout for `.flow` files.
//!
//! Prints the syntax tree back with two-space indentation and canonical
//! spacing, keeping every comment (leading ones on their own lines, trailing
//! ones after the line they followed) and at most one blank line wherever the
//! source had blank lines. It reads only the tree and the text: never the
//! checker's model, so it formats files that do not check.

pub mod diff;

use crate::syntax::ast::*;
use crate::syntax::print::{self, arm_cond, date, duration, event_match, expr, string};

/// Formats a parsed file; `text` is the source the tree came from.
pub fn format(file: &SourceFile, text: &str) -> String {
    let mut p = Printer { text, out: String::new(), comments: &file.comments, next_comment: 0, last_end: 0 };
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 {
            // Braced declarations always stand apart; one-liners keep the
            // source's grouping.
            if braced(&file.items[i - 1]) || braced(item) {
                if !p.out.ends_with("\n\n") {
                    p.out.push('\n');
                }
            } else {
                p.separate(item.span().start as usize);
            }
        }
        p.leading_node(item.span().start as usize, 0);
        p.item(item);
        p.last_end = item.span().end as usize;
        p.trailing();
    }
    p.leading(text.len() + 1, 0);
    let mut out = p.out.trim_end().to_string();
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn braced(item: &Item) -> bool {
    match item {
        Item::Import(_) | Item::Segment(_) => false,
        Item::Event(e) => e.has_body,
        _ => true,
    }
}

/// Whether a block's first step opens it or follows the campaign's
/// settings (and so gets the blank line that separates them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lead {
    First,
    AfterSettings,
}

struct Printer<'a> {
    text: &'a str,
    out: String,
    comments: &'a [Comment],
    next_comment: usize,
    /// End offset of the last node printed, to tell trailing comments.
    last_end: usize,
}

impl Printer<'_> {
    fn line(&mut self, indent: usize, s: &str) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn comment_text(&self, c: &Comment) -> &str {
        self.text.get(c.span.range()).unwrap_or("").trim_end()
    }

    /// Is there a blank line in the source between `from` and `to`?
    fn blank_between(&self, from: usize, to: usize) -> bool {
        let gap = self.text.get(from.min(to)..to).unwrap_or("");
        // A line holding only whitespace, between two line breaks.
        let mut lines = gap.split('\n');
        lines.next();
        let inner: Vec<&str> = lines.collect();
        inner.len() >= 2 && inner[..inner.len() - 1].iter().any(|l| l.trim().is_empty())
    }

    /// One blank line before the next node if the source had any.
    fn separate(&mut self, next_start: usize) {
        let upto = self.comments.get(self.next_comment).map_or(next_start, |c| (c.span.start as usize).min(next_start));
        if self.blank_between(self.last_end, upto) && !self.out.ends_with("\n\n") && !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    /// Comments that start before `pos`, each on its own line.
    fn leading(&mut self, pos: usize, indent: usize) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start as usize >= pos {
                break;
            }
            if self.blank_between(self.last_end, c.span.start as usize)
                && !self.out.is_empty()
                && !self.out.ends_with("\n\n")
                && !self.out.ends_with("{\n")
            {
                self.out.push('\n');
            }
            let t = self.comment_text(c).to_string();
            if c.block && t.contains('\n') {
                // A multi-line block comment keeps its own inner layout.
                let pad = "  ".repeat(indent);
                self.out.push_str(&pad);
                self.out.push_str(&t);
                self.out.push('\n');
            } else {
                self.line(indent, &t);
            }
            self.last_end = c.span.end as usize;
            self.next_comment += 1;
        }
    }

    /// Leading comments of a node, and the blank line that separated them from it.
    fn leading_node(&mut self, pos: usize, indent: usize) {
        let before = self.next_comment;
        self.leading(pos, indent);
        if self.next_comment > before && self.blank_between(self.last_end, pos) {
            self.out.push('\n');
        }
    }

    /// Comments right after the node just printed, on its source line, go
    /// after it. Only whitespace may stand between: a comment that follows a
    /// later token of the line (a `}`, another branch) belongs to that token,
    /// and printing it here would move it into another block.
    fn trailing(&mut self) {
        while let Some(c) = self.comments.get(self.next_comment) {
            let start = c.span.start as usize;
            let between = self.text.get(self.last_end.min(start)..start).unwrap_or("\n");
            if start < self.last_end || between.contains('\n') || !between.trim().is_empty() {
                break;
            }
            let t = self.comment_text(c).to_string();
            if t.contains('\n') {
                break;
            }
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            self.out.push_str("  ");
            self.out.push_str(&t);
            self.out.push('\n');
            self.last_end = c.span.end as usize;
            self.next_comment += 1;
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(i) => self.line(0, &format!("import {}", string(&i.path.value))),
            Item::Template(t) => {
                self.line(0, &format!("template {} {{", t.name.text));
                for f in &t.fields {
                    let (span, s) = match f {
                        TemplateField::Channel(n) => (n.span, format!("channel {}", n.text)),
                        TemplateField::Message(n) => (n.span, format!("message {}", n.text)),
                        TemplateField::Status(n) => (n.span, format!("status {}", n.text)),
                        TemplateField::Version { value, span } => (*span, format!("version {value}")),
                    };
                    self.member(span, 1, &s);
                }
                self.close(t.span, 0);
            }
            Item::Contact(c) => {
                self.line(0, "contact {");
                for f in &c.fields {
                    self.member(f.span, 1, &field(f));
                }
                self.close(c.span, 0);
            }
            Item::Event(e) => {
                if !e.has_body {
                    self.line(0, &format!("event {}", e.name.text));
                    return;
                }
                if e.fields.is_empty() && !self.has_comments_within(e.span) {
                    self.line(0, &format!("event {} {{ }}", e.name.text));
                    return;
                }
                self.line(0, &format!("event {} {{", e.name.text));
                for f in &e.fields {
                    self.member(f.span, 1, &field(f));
                }
                self.close(e.span, 0);
            }
            Item::Segment(s) => self.line(0, &format!("segment {} = {}", s.name.text, expr(&s.expr))),
            Item::Channel(c) => {
                self.line(0, &format!("channel {} {{", c.name.text));
                for e in &c.entries {
                    let (span, s) = match e {
                        ChannelEntry::RequiresCapability(sp) => (*sp, "requires capability".to_string()),
                        ChannelEntry::Fallback(n) => (n.span, format!("fallback {}", n.text)),
                        ChannelEntry::Message { name, requires_consent, span } => (
                            *span,
                            format!(
                                "message {}{}",
                                name.text,
                                if *requires_consent { " requires consent" } else { "" }
                            ),
                        ),
                    };
                    self.member(span, 1, &s);
                }
                self.close(c.span, 0);
            }
            Item::Pricing(p) => {
                self.line(0, "pricing {");
                for e in &p.entries {
                    self.member(
                        e.span,
                        1,
                        &format!(
                            "{}.{} = {} {}",
                            e.channel.text, e.message.text, e.amount.text, e.amount.currency.text
                        ),
                    );
                }
                self.close(p.span, 0);
            }
            Item::Policy(p) => {
                self.line(0, "policy {");
                for c in &p.caps {
                    self.member(c.span, 1, &print::frequency_cap(c));
                }
                self.close(p.span, 0);
            }
            Item::Campaign(c) => {
                self.line(0, &format!("campaign {} {{", c.name.text));
                let mut first = true;
                for s in &c.settings {
                    let (span, text) = match s {
                        Setting::DisplayName(n, sp) => (*sp, format!("name {}", string(&n.value))),
                        Setting::Trigger(t) => (t.span, format!("trigger {}", trigger(&t.kind))),
                        Setting::Audience(e, sp) => (*sp, format!("audience {}", expr(e))),
                        Setting::Goal(g) => (g.span, crate::syntax::print::goal(&g.event, &g.within)),
                        Setting::Exit(c, sp) => (*sp, format!("exit when {}", arm_cond(c))),
                        Setting::OnIneligible(w, sp) => (*sp, format!("on ineligible {}", w.as_str())),
                        Setting::QuietHours(q) => (q.span, print::quiet_hours(q)),
                        Setting::Reentry(r, sp) => (*sp, print::reentry(r)),
                        Setting::RateLimit(r) => (r.span, print::rate_limit(r)),
                    };
                    if !first {
                        self.separate(span.start as usize);
                    }
                    first = false;
                    self.member(span, 1, &text);
                }
                if !c.settings.is_empty() && !c.steps.is_empty() {
                    // Settings and steps are always apart.
                    if !self.out.ends_with("\n\n") {
                        self.out.push('\n');
                    }
                }
                self.steps(&c.steps, 1, if c.settings.is_empty() { Lead::First } else { Lead::AfterSettings });
                self.close(c.span, 0);
            }
        }
    }

    /// The offset of the first `{` at or after `pos`, past whitespace and comments.
    fn brace_after(&self, mut pos: usize) -> usize {
        let bytes = self.text.as_bytes();
        while pos < bytes.len() && bytes[pos] != b'{' {
            match self.comments.binary_search_by_key(&(pos as u32), |c| c.span.start) {
                Ok(i) => pos = self.comments[i].span.end as usize,
                Err(_) => pos += 1,
            }
        }
        pos
    }

    fn has_comments_within(&self, span: crate::source::Span) -> bool {
        // Comments are in source order: the first one starting inside is the one to test.
        let first = self.comments.partition_point(|c| c.span.start < span.start);
        self.comments.get(first).is_some_and(|c| c.span.end <= span.end)
    }

    /// A one-line member of a braced declaration, with its comments.
    fn member(&mut self, span: crate::source::Span, indent: usize, s: &str) {
        self.leading(span.start as usize, indent);
        self.line(indent, s);
        self.last_end = span.end as usize;
        self.trailing();
    }

    /// The closing brace of a block ending at `span.end`, after any comments inside it.
    fn close(&mut self, span: crate::source::Span, indent: usize) {
        self.leading(span.end as usize, indent + 1);
        self.line(indent, "}");
        self.last_end = span.end as usize;
        self.trailing();
    }

    fn steps(&mut self, steps: &[Step], indent: usize, lead: Lead) {
        for (i, s) in steps.iter().enumerate() {
            if i > 0 || lead == Lead::AfterSettings {
                self.separate(s.span.start as usize);
            }
            self.leading_node(s.span.start as usize, indent);
            self.step(s, indent);
        }
    }

    /// An empty block prints as `{ }` unless comments live inside it.
    fn block_open(&self, b: &Block) -> bool {
        !b.steps.is_empty() || self.has_comments_within(b.span)
    }

    fn block(&mut self, b: &Block, indent: usize) {
        self.steps(&b.steps, indent + 1, Lead::First);
        self.leading(b.span.end as usize, indent + 1);
    }

    fn step(&mut self, s: &Step, indent: usize) {
        let label = s.label.as_ref().map(|l| format!("{}: ", l.text)).unwrap_or_default();
        if let Some(text) = simple_step(s) {
            self.line(indent, &text);
            self.last_end = s.span.end as usize;
            self.trailing();
            return;
        }
        match &s.kind {
            // One-line steps were printed above.
            StepKind::Send(_) | StepKind::Wait(_) | StepKind::Tag { .. } | StepKind::End | StepKind::Set { .. } => {}
            StepKind::WaitUntil(w) if w.form == WaitForm::Short => {}
            StepKind::If(i) => {
                for (k, (cond, body)) in i.arms.iter().enumerate() {
                    let head = if k == 0 {
                        format!("{label}if {} ", expr(cond))
                    } else {
                        format!("}} else if {} ", expr(cond))
                    };
                    self.line(indent, &format!("{head}{{"));
                    self.after_open(body.span.start as usize);
                    if self.block_open(body) {
                        self.block(body, indent);
                    }
                }
                if let Some(b) = &i.otherwise {
                    self.line(indent, "} else {");
                    self.after_open(b.span.start as usize);
                    self.block(b, indent);
                }
                self.line(indent, "}");
            }
            StepKind::AbTest(t) => {
                self.line(indent, &format!("{label}ab_test {} {{", t.name.text));
                self.after_open(self.brace_after(t.name.span.end as usize));
                for v in &t.variants {
                    let head = format!("variant {} {}%", v.name.text, percent(v.weight_bp));
                    self.path(&head, &v.block, v.span, indent + 1);
                }
                self.leading(s.span.end as usize, indent + 1);
                self.line(indent, "}");
            }
            StepKind::WaitUntil(w) => {
                self.line(indent, &format!("{label}wait until {{"));
                self.after_open(self.brace_after(w.head.end as usize));
                for a in &w.arms {
                    self.path(&format!("when {}", arm_cond(&a.cond)), &a.block, a.span, indent + 1);
                }
                if let Some(t) = &w.timeout {
                    self.path(&format!("timeout {}", duration(&t.duration)), &t.block, t.span, indent + 1);
                }
                self.leading(s.span.end as usize, indent + 1);
                self.line(indent, "}");
            }
        }
        self.last_end = s.span.end as usize;
        self.trailing();
    }

    /// One path of an `ab_test` or a `wait until`: `HEAD { … }`, with its
    /// comments kept inside it.
    fn path(&mut self, head: &str, block: &Block, span: crate::source::Span, indent: usize) {
        self.leading(span.start as usize, indent);
        let one = if self.has_comments_within(span) { None } else { inline_step(block, self) };
        if let Some(one) = one {
            // A path of one simple step stays on one line, as the builder shows it.
            self.line(indent, &format!("{head} {{ {one} }}"));
        } else if self.block_open(block) || self.has_comments_within(span) {
            self.line(indent, &format!("{head} {{"));
            self.after_open(block.span.start as usize);
            self.block(block, indent);
            self.line(indent, "}");
        } else {
            self.line(indent, &format!("{head} {{ }}"));
        }
        self.last_end = span.end as usize;
        self.trailing();
    }

    /// After a line that opens the block whose `{` is at `brace` (`if a {`,
    /// `} else {`, `ab_test t {`, `variant v 50% {`): comments inside the header, before the `{`, and those right
    /// after the `{` on its source line end that line.
    fn after_open(&mut self, brace: usize) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start as usize >= brace {
                break;
            }
            let t = self.comment_text(c).to_string();
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            self.out.push_str("  ");
            self.out.push_str(&t);
            self.out.push('\n');
            self.next_comment += 1;
        }
        self.last_end = brace + 1;
        self.trailing();
    }
}

/// The text of a block's only step when it is simple enough to print inline.
fn inline_step(b: &Block, p: &Printer) -> Option<String> {
    let [s] = b.steps.as_slice() else { return None };
    if p.has_comments_within(b.span) {
        return None;
    }
    simple_step(s)
}

/// A one-line step (send, wait, tag, end) with its label; `None` for blocks.
fn simple_step(s: &Step) -> Option<String> {
    let label = s.label.as_ref().map(|l| format!("{}: ", l.text)).unwrap_or_default();
    let body = match &s.kind {
        StepKind::Send(send) => {
            let fb = match &send.fallback {
                None => String::new(),
                Some(Fallback::None(_)) => " fallback none".into(),
                Some(Fallback::To(t)) => format!(" fallback {}", target(t)),
            };
            format!("send {}{fb}", target(&send.target))
        }
        StepKind::Wait(d) => format!("wait {}", duration(d)),
        StepKind::Tag { op, tag } => {
            format!("tag {} {}", if *op == TagOp::Add { "add" } else { "remove" }, string(&tag.value))
        }
        StepKind::End => "end".into(),
        StepKind::Set { field, value } => print::set_step(field, value),
        StepKind::WaitUntil(w) => short_form(w)?,
        StepKind::If(_) | StepKind::AbTest(_) => return None,
    };
    Some(format!("{label}{body}"))
}

/// `wait until event NAME [where …] timeout D`, when the wait was written
/// that way; `None` for the form with arms.
fn short_form(w: &WaitUntil) -> Option<String> {
    let [WhenArm { cond: ArmCond::Event(m), .. }] = w.arms.as_slice() else { return None };
    if w.form != WaitForm::Short {
        return None;
    }
    Some(match &w.timeout {
        Some(t) => format!("wait until {} timeout {}", event_match(m), duration(&t.duration)),
        None => format!("wait until {}", event_match(m)),
    })
}

fn field(f: &FieldDecl) -> String {
    let ty = match &f.ty.kind {
        TypeKind::Named(n) => n.text.clone(),
        TypeKind::Set(n) => format!("set<{}>", n.text),
        TypeKind::Enum(v) => format!("enum({})", v.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join(", ")),
    };
    format!("{}: {ty}{}", f.name.text, if f.ty.optional { "?" } else { "" })
}

fn trigger(t: &TriggerKind) -> String {
    match t {
        TriggerKind::Scheduled { at, zone } => format!("scheduled at {} {}", date(at), string(&zone.value)),
        TriggerKind::Event { event, filter: Some(f) } => format!("event {} where {}", event.text, expr(f)),
        TriggerKind::Event { event, filter: None } => format!("event {}", event.text),
        TriggerKind::Manual => "manual".into(),
        TriggerKind::Api => "api".into(),
    }
}

fn target(t: &SendTarget) -> String {
    match &t.channel {
        Some(cm) => format!("{}.{} {}", cm.channel.text, cm.message.text, t.template.text),
        None => t.template.text.clone(),
    }
}

pub fn percent(bp: u32) -> String {
    crate::syntax::print::percent(bp)
}
