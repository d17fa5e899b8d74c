//! What is under the cursor, and what may be typed there: answers for
//! hover, go to definition, completion and the outline, from the syntax
//! tree and the checked model (no LSP types but the completion items and
//! symbols the protocol returns).

use super::Analysis;
use crate::check::model::{Model, Origin, TemplateStatus, Type};
use crate::source::{FileId, Span};
use crate::syntax::ast::*;
use lsp_types::{CompletionItem, CompletionItemKind, DocumentSymbol, InsertTextFormat, SymbolKind};

/// A name in the source and what kind of thing it names.
#[derive(Debug, Clone)]
enum Ref {
    Template(String),
    Segment(String),
    Attribute(String),
    Event(String),
    Label(String),
    Channel(String),
    Duration(u64),
    Import(String),
    /// A keyword of issue 18's constructs (`wait until`, `when`, `goal` …).
    Construct(Construct),
}

/// What the keyword under the cursor opens, with the step ids it gives.
#[derive(Debug, Clone)]
enum Construct {
    WaitUntil {
        id: String,
        arms: usize,
    },
    When {
        id: String,
        waits_for_event: bool,
    },
    Timeout {
        id: String,
    },
    Goal,
    Exit {
        index: usize,
        waits_for_event: bool,
    },
    OnIneligible(Ineligible),
    /// Issue 19's: the texts are the setting as written, after its keyword.
    QuietHours {
        window: String,
        then: QuietThen,
    },
    Reentry(String),
    RateLimit(String),
    Set {
        field: String,
    },
    Policy,
    FrequencyCap(String),
}

/// The span of the `len` bytes of a keyword at the start of `s`.
fn keyword(s: Span, len: usize) -> Span {
    Span::new(s.start as usize, (s.start as usize + len).min(s.end as usize))
}

fn model(a: &Analysis) -> Option<&Model> {
    a.result.models.first().map(|(_, m)| m)
}

fn tree(a: &Analysis) -> &SourceFile {
    a.ws.tree(a.file)
}

/// Every reference in a file, in order.
fn walk_refs(file: &SourceFile, segments: &[String], see: &mut dyn FnMut(Ref, Span)) {
    for item in &file.items {
        match item {
            Item::Import(i) => see(Ref::Import(i.path.value.clone()), i.path.span),
            Item::Template(t) => see(Ref::Template(t.name.text.clone()), t.name.span),
            Item::Segment(s) => {
                see(Ref::Segment(s.name.text.clone()), s.name.span);
                expr(&s.expr, segments, see);
            }
            Item::Event(e) => see(Ref::Event(e.name.text.clone()), e.name.span),
            Item::Policy(p) => {
                see(Ref::Construct(Construct::Policy), p.keyword);
                for c in &p.caps {
                    let text = crate::syntax::print::frequency_cap(c);
                    let rest = text.trim_start_matches("frequency cap ").to_string();
                    see(Ref::Construct(Construct::FrequencyCap(rest)), keyword(c.span, "frequency cap".len()));
                    if let Some(ch) = &c.channel {
                        see(Ref::Channel(ch.text.clone()), ch.span);
                    }
                    see(Ref::Duration(c.window.minutes()), c.window.span);
                }
            }
            Item::Campaign(c) => {
                let mut exits = 0;
                for s in &c.settings {
                    match s {
                        Setting::Trigger(t) => {
                            if let TriggerKind::Event { event, filter } = &t.kind {
                                see(Ref::Event(event.text.clone()), event.span);
                                if let Some(f) = filter {
                                    expr(f, segments, see);
                                }
                            }
                        }
                        Setting::Audience(e, _) => expr(e, segments, see),
                        Setting::Goal(g) => {
                            see(Ref::Construct(Construct::Goal), keyword(g.span, "goal".len()));
                            event_match(&g.event, segments, see);
                            see(Ref::Duration(g.within.minutes()), g.within.span);
                        }
                        Setting::Exit(c, sp) => {
                            exits += 1;
                            let waits_for_event = matches!(c, ArmCond::Event(_));
                            see(
                                Ref::Construct(Construct::Exit { index: exits, waits_for_event }),
                                keyword(*sp, "exit".len()),
                            );
                            arm_cond(c, segments, see)
                        }
                        Setting::OnIneligible(w, sp) => {
                            see(Ref::Construct(Construct::OnIneligible(*w)), keyword(*sp, "on ineligible".len()))
                        }
                        Setting::QuietHours(q) => {
                            let window = format!("{} to {}", q.start.text, q.end.text);
                            let c = Construct::QuietHours { window, then: q.then };
                            see(Ref::Construct(c), keyword(q.span, "quiet hours".len()))
                        }
                        Setting::Reentry(r, sp) => {
                            let words = crate::syntax::print::reentry(r);
                            let rest = words.trim_start_matches("reentry ").to_string();
                            see(Ref::Construct(Construct::Reentry(rest)), keyword(*sp, "reentry".len()));
                            if let Reentry::After(d) = r {
                                see(Ref::Duration(d.minutes()), d.span);
                            }
                        }
                        Setting::RateLimit(r) => {
                            let rest = format!("{} per {}", r.count.value, r.per.as_str());
                            see(Ref::Construct(Construct::RateLimit(rest)), keyword(r.span, "rate limit".len()))
                        }
                        Setting::DisplayName(..) => {}
                    }
                }
                steps(&c.steps, &c.name.text, segments, see);
            }
            _ => {}
        }
    }
}

fn segment_names(a: &Analysis) -> Vec<String> {
    model(a).map(|m| m.segments.keys().cloned().collect()).unwrap_or_default()
}

/// The innermost reference whose span holds `off`.
fn find(a: &Analysis, off: usize) -> Option<(Ref, Span)> {
    let mut found: Option<(Ref, Span)> = None;
    let segments = segment_names(a);
    walk_refs(tree(a), &segments, &mut |r: Ref, s: Span| {
        if s.contains(off) && found.as_ref().is_none_or(|(_, f)| s.len() <= f.len()) {
            found = Some((r, s));
        }
    });
    found
}

fn same(a: &Ref, b: &Ref) -> bool {
    match (a, b) {
        (Ref::Template(x), Ref::Template(y))
        | (Ref::Segment(x), Ref::Segment(y))
        | (Ref::Attribute(x), Ref::Attribute(y))
        | (Ref::Event(x), Ref::Event(y))
        | (Ref::Label(x), Ref::Label(y))
        | (Ref::Channel(x), Ref::Channel(y)) => x == y,
        _ => false,
    }
}

/// Every use and the declaration of the name under the cursor, across the
/// files the document sees (labels: within their campaign).
pub fn references(a: &Analysis, off: usize) -> Vec<(FileId, Span)> {
    let Some((target, _)) = find(a, off) else { return vec![] };
    if matches!(target, Ref::Duration(_) | Ref::Import(_)) {
        return vec![];
    }
    let segments = segment_names(a);
    let files: Vec<FileId> = match &target {
        Ref::Label(_) => vec![a.file],
        _ => {
            a.ws.units
                .first()
                .map(|u| u.files.iter().copied().filter(|f| !a.ws.is_stdlib(*f)).collect())
                .unwrap_or_default()
        }
    };
    let campaign = tree(a).items.iter().find_map(|i| match i {
        Item::Campaign(c) if c.span.contains(off) => Some(c.span),
        _ => None,
    });
    let mut out = Vec::new();
    for f in files {
        walk_refs(a.ws.tree(f), &segments, &mut |r: Ref, s: Span| {
            let in_scope = !matches!(target, Ref::Label(_)) || campaign.is_some_and(|c| c.contains(s.start as usize));
            if same(&r, &target) && in_scope {
                out.push((f, s));
            }
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Renaming is offered for labels and segments, whose names the author owns.
pub fn renamable(a: &Analysis, off: usize) -> bool {
    matches!(find(a, off), Some((Ref::Label(_) | Ref::Segment(_), _)))
}

/// Lines that fold: declarations and blocks spanning more than one line.
pub fn folds(a: &Analysis) -> Vec<(usize, usize)> {
    let src = a.ws.sources.get(a.file);
    let mut out = Vec::new();
    let mut add = |s: Span| {
        let (l0, l1) = (src.line_of(s.start as usize), src.line_of(s.end as usize));
        if l1 > l0 {
            out.push((l0, l1));
        }
    };
    fn blocks(list: &[Step], add: &mut dyn FnMut(Span)) {
        for s in list {
            match &s.kind {
                StepKind::If(i) => {
                    for (_, b) in &i.arms {
                        add(b.span);
                        blocks(&b.steps, add);
                    }
                    if let Some(b) = &i.otherwise {
                        add(b.span);
                        blocks(&b.steps, add);
                    }
                }
                StepKind::AbTest(t) => {
                    add(s.span);
                    for v in &t.variants {
                        add(v.block.span);
                        blocks(&v.block.steps, add);
                    }
                }
                StepKind::WaitUntil(w) => {
                    add(s.span);
                    for b in w.arms.iter().map(|a| &a.block).chain(w.timeout.as_ref().map(|t| &t.block)) {
                        add(b.span);
                        blocks(&b.steps, add);
                    }
                }
                _ => {}
            }
        }
    }
    for item in &tree(a).items {
        add(item.span());
        if let Item::Campaign(c) = item {
            blocks(&c.steps, &mut add);
        }
    }
    for c in &tree(a).comments {
        add(c.span);
    }
    out
}

fn target(t: &SendTarget, see: &mut dyn FnMut(Ref, Span)) {
    if let Some(cm) = &t.channel {
        see(Ref::Channel(cm.channel.text.clone()), cm.channel.span);
    }
    see(Ref::Template(t.template.text.clone()), t.template.span);
}

/// The steps of a block whose structural path is `path` (step ids as the
/// checker makes them).
fn steps(list: &[Step], path: &str, segments: &[String], see: &mut dyn FnMut(Ref, Span)) {
    for (i, s) in list.iter().enumerate() {
        let id = s.label.as_ref().map_or_else(|| format!("{path}/{}", i + 1), |l| l.text.clone());
        if let Some(l) = &s.label {
            see(Ref::Label(l.text.clone()), l.span);
        }
        match &s.kind {
            StepKind::Send(send) => {
                target(&send.target, see);
                if let Some(Fallback::To(t)) = &send.fallback {
                    target(t, see);
                }
            }
            StepKind::Wait(d) => see(Ref::Duration(d.minutes()), d.span),
            StepKind::Set { field, value } => {
                // The whole step explains `set`; the names inside it, being
                // smaller, answer for themselves.
                see(Ref::Construct(Construct::Set { field: field.text.clone() }), s.span);
                see(Ref::Attribute(field.text.clone()), field.span);
                expr(value, segments, see);
            }
            StepKind::If(i) => {
                for (k, (c, b)) in i.arms.iter().enumerate() {
                    expr(c, segments, see);
                    let arm = if k == 0 { "then".to_string() } else { format!("elif{k}") };
                    steps(&b.steps, &format!("{id}/{arm}"), segments, see);
                }
                if let Some(b) = &i.otherwise {
                    steps(&b.steps, &format!("{id}/else"), segments, see);
                }
            }
            StepKind::AbTest(t) => {
                t.variants.iter().for_each(|v| steps(&v.block.steps, &format!("{id}/{}", v.name.text), segments, see))
            }
            StepKind::WaitUntil(w) => {
                see(Ref::Construct(Construct::WaitUntil { id: id.clone(), arms: w.arms.len() }), w.head);
                for (k, a) in w.arms.iter().enumerate() {
                    let arm = format!("{id}/when{}", k + 1);
                    if w.form == WaitForm::Arms {
                        let waits_for_event = matches!(a.cond, ArmCond::Event(_));
                        let c = Construct::When { id: arm.clone(), waits_for_event };
                        see(Ref::Construct(c), keyword(a.span, "when".len()));
                    }
                    arm_cond(&a.cond, segments, see);
                    steps(&a.block.steps, &arm, segments, see);
                }
                if let Some(t) = &w.timeout {
                    if w.form == WaitForm::Arms {
                        let c = Construct::Timeout { id: format!("{id}/timeout") };
                        see(Ref::Construct(c), keyword(t.span, "timeout".len()));
                    }
                    see(Ref::Duration(t.duration.minutes()), t.duration.span);
                    steps(&t.block.steps, &format!("{id}/timeout"), segments, see);
                }
            }
            _ => {}
        }
    }
}

fn event_match(m: &EventMatch, segments: &[String], see: &mut dyn FnMut(Ref, Span)) {
    see(Ref::Event(m.event.text.clone()), m.event.span);
    m.filter.iter().for_each(|x| expr(x, segments, see));
}

fn arm_cond(c: &ArmCond, segments: &[String], see: &mut dyn FnMut(Ref, Span)) {
    match c {
        ArmCond::Event(m) => event_match(m, segments, see),
        ArmCond::State(e) => expr(e, segments, see),
    }
}

fn expr(e: &Expr, segments: &[String], see: &mut dyn FnMut(Ref, Span)) {
    match &e.kind {
        ExprKind::Or(v) | ExprKind::And(v) => v.iter().for_each(|x| expr(x, segments, see)),
        ExprKind::Not(x) | ExprKind::Paren(x) => expr(x, segments, see),
        ExprKind::Compare { lhs, rhs, .. } | ExprKind::Has { lhs, rhs } => {
            expr(lhs, segments, see);
            expr(rhs, segments, see);
        }
        ExprKind::In { lhs, list } => {
            expr(lhs, segments, see);
            list.iter().for_each(|x| expr(x, segments, see));
        }
        ExprKind::Arith { first, rest } => {
            expr(first, segments, see);
            rest.iter().for_each(|(_, x)| expr(x, segments, see));
        }
        ExprKind::Name(n) if segments.contains(&n.text) => see(Ref::Segment(n.text.clone()), n.span),
        ExprKind::Name(n) => see(Ref::Attribute(n.text.clone()), n.span),
        ExprKind::Call { func, arg } => match func.text.as_str() {
            "opened" | "clicked" | "delivered" => see(Ref::Label(arg.text.clone()), arg.span),
            "in_segment" => see(Ref::Segment(arg.text.clone()), arg.span),
            _ => see(Ref::Channel(arg.text.clone()), arg.span),
        },
        ExprKind::Happened { event, within, filter } => {
            see(Ref::Event(event.text.clone()), event.span);
            if let Some(d) = within {
                see(Ref::Duration(d.minutes()), d.span);
            }
            filter.iter().for_each(|x| expr(x, segments, see));
        }
        ExprKind::Duration(d) => see(Ref::Duration(d.minutes()), d.span),
        _ => {}
    }
}

/// The segment named under the cursor, if that is what is there.
pub fn segment_at(a: &Analysis, off: usize) -> Option<String> {
    match find(a, off)?.0 {
        Ref::Segment(n) => Some(n),
        _ => None,
    }
}

/// Markdown for the thing under the cursor.
pub fn hover(a: &Analysis, off: usize) -> Option<(String, Span)> {
    let (r, span) = find(a, off)?;
    let m = model(a)?;
    let text = match &r {
        Ref::Template(n) => {
            let t = m.templates.get(n)?;
            format!("**template** `{n}`\n\n{}.{} · {} · version {}", t.channel, t.message, t.status.as_str(), t.version)
        }
        Ref::Segment(n) => {
            let s = m.segments.get(n)?;
            let def = match s.origin {
                Origin::Source(f, sp) => {
                    a.ws.sources
                        .get(f)
                        .text
                        .get(sp.start as usize..)
                        .and_then(|t| t.lines().next())
                        .map(|l| l.to_string())
                }
                Origin::Registry => None,
            };
            format!("**segment** `{n}`\n\n```flow\nsegment {}\n```", def.unwrap_or_else(|| n.clone()))
        }
        Ref::Attribute(n) => {
            let f = m.contact.get(n)?;
            format!("**contact field** `{n}`: `{}{}`", f.ty.describe(), if f.optional { "?" } else { "" })
        }
        Ref::Event(n) => {
            let e = m.events.get(n)?;
            let props: Vec<String> = e.fields.values().map(|f| format!("`{}: {}`", f.name, f.ty.describe())).collect();
            format!(
                "**event** `{n}`{}",
                if props.is_empty() { String::new() } else { format!("\n\n{}", props.join(", ")) }
            )
        }
        Ref::Label(n) => {
            let c = m.campaigns.iter().find(|c| c.file == a.file && c.span.contains(off))?;
            let kind = step_kind(&c.steps, n)?;
            format!("**step** `{n}` ({kind})\n\nIts stable id across versions is `{n}`.")
        }
        Ref::Channel(n) => {
            let ch = m.channels.get(n)?;
            let msgs: Vec<String> = ch
                .messages
                .iter()
                .map(|(k, v)| format!("`{k}`{}", if v.requires_consent { " (consent)" } else { "" }))
                .collect();
            format!(
                "**channel** `{n}`{}{}\n\nmessages: {}",
                if ch.requires_capability { " · requires capability" } else { "" },
                ch.fallback.as_ref().map(|f| format!(" · fallback `{f}`")).unwrap_or_default(),
                msgs.join(", ")
            )
        }
        Ref::Duration(minutes) => format!("**duration**: {minutes} minutes ({:.2} days)", *minutes as f64 / 1440.0),
        Ref::Import(p) => format!("**import** `{p}`"),
        Ref::Construct(c) => construct_hover(c),
    };
    Some((text, span))
}

/// What a construct of issue 18 does, in the words of docs/language.md.
fn construct_hover(c: &Construct) -> String {
    match c {
        Construct::WaitUntil { id, arms } => format!(
            "**wait until** `{id}` ({arms} arm{})\n\nHolds the contact until the first `when` arm that holds, tried in order, or until the `timeout` (measured from entering the wait). After the arm's block the timeline goes on after the wait.\n\nPaths: `{id}/when1` … and `{id}/timeout`.",
            if *arms == 1 { "" } else { "s" }
        ),
        Construct::When { id, waits_for_event: true } => format!(
            "**when** `{id}`: an event arm\n\nHolds when such an event arrives for the contact after it entered the wait; events before entry do not count."
        ),
        Construct::When { id, waits_for_event: false } => format!(
            "**when** `{id}`: a state arm\n\nTried when the contact arrives (one who already meets it passes at once) and again whenever what it reads may have changed."
        ),
        Construct::Timeout { id } => format!(
            "**timeout** `{id}`\n\nTaken when no arm held within this long of entering the wait; required, at most 365 days."
        ),
        Construct::Goal => "**goal**\n\nA contact converts when this event happens within the window of entering the campaign (at most 90 days); the run report counts conversions, per send (last touch) and per A/B variant.".into(),
        Construct::Exit { index, waits_for_event: true } => format!(
            "**exit** `exit:{index}`\n\nThe execution leaves (completed) as soon as such an event arrives after it entered the campaign; a waiting execution is woken to leave."
        ),
        Construct::Exit { index, waits_for_event: false } => format!(
            "**exit** `exit:{index}`\n\nChecked before every step: the execution leaves (completed) once the condition holds."
        ),
        Construct::OnIneligible(Ineligible::Skip) => "**on ineligible skip**\n\nAn ineligible send (no consent, no capability and no fallback …) ends the execution `skipped` (the default).".into(),
        Construct::OnIneligible(Ineligible::Continue) => "**on ineligible continue**\n\nAn ineligible send records its skip reason and the contact goes on to the next step.".into(),
        Construct::QuietHours { window, then: QuietThen::Hold } => format!(
            "**quiet hours** {window}, then hold\n\nA consent-requiring send (marketing, promotional) that falls in this window, in the contact's own time zone (UTC without one), is held until the window ends. Transactional, utility and authentication messages are exempt."
        ),
        Construct::QuietHours { window, then: QuietThen::Skip } => format!(
            "**quiet hours** {window}, then skip\n\nA consent-requiring send (marketing, promotional) that falls in this window, in the contact's own time zone (UTC without one), is skipped with reason `quiet-hours` and the execution goes on. Transactional, utility and authentication messages are exempt."
        ),
        Construct::Reentry(how) => {
            let what = match how.as_str() {
                "once" => "A contact enters this campaign at most once (the default).".to_string(),
                "always" => "A contact enters again whenever the trigger fires, even while an earlier execution runs; each execution has its own id.".to_string(),
                after => format!("A contact enters again only {} after its previous execution started.", after.trim_start_matches("after ")),
            };
            format!("**reentry {how}**\n\n{what}")
        }
        Construct::RateLimit(rate) => format!(
            "**rate limit** {rate}\n\nThis campaign's sends never exceed {rate}, across restarts; on the virtual clock time advances instead of sleeping."
        ),
        Construct::Set { field } => format!(
            "**set** `{field}`\n\nWrites this contact attribute; the steps after it, and `wait until` arms that read it, see the new value. `id`, `created_at` and `tags` cannot be set."
        ),
        Construct::Policy => "**policy**\n\nThe workspace's delivery policy (one per workspace): its frequency caps hold for every campaign compiled with it in view, over the sends of every campaign in the database.".into(),
        Construct::FrequencyCap(cap) => format!(
            "**frequency cap** {cap}\n\nAt most this many consent-requiring sends to a contact in any rolling window, counted over every campaign in the database (on one channel when it names one). A capped send is skipped with reason `frequency-cap` and the execution goes on; transactional messages are exempt."
        ),
    }
}

fn step_kind(list: &[crate::check::model::Step], label: &str) -> Option<&'static str> {
    use crate::check::model::StepKind as K;
    for s in list {
        if s.labelled && s.id.0 == label {
            return Some(match s.kind {
                K::Send { .. } => "send",
                K::Wait { .. } => "wait",
                K::If { .. } => "if",
                K::AbTest { .. } => "ab_test",
                K::Tag { .. } => "tag",
                K::End => "end",
                K::WaitUntil { .. } => "wait until",
                K::Set { .. } => "set",
            });
        }
        let nested = match &s.kind {
            K::If { arms, otherwise } => {
                arms.iter().find_map(|(_, b)| step_kind(b, label)).or_else(|| step_kind(otherwise, label))
            }
            K::AbTest { variants, .. } => variants.iter().find_map(|v| step_kind(&v.steps, label)),
            K::WaitUntil { arms, timeout, .. } => {
                arms.iter().find_map(|a| step_kind(&a.steps, label)).or_else(|| step_kind(timeout, label))
            }
            _ => None,
        };
        if nested.is_some() {
            return nested;
        }
    }
    None
}

/// Where the thing under the cursor is declared.
pub fn definition(a: &Analysis, off: usize) -> Option<(FileId, Span)> {
    let (r, _) = find(a, off)?;
    let m = model(a)?;
    let origin = match &r {
        Ref::Template(n) => m.templates.get(n)?.origin,
        Ref::Segment(n) => m.segments.get(n)?.origin,
        Ref::Attribute(n) => m.contact.get(n)?.origin,
        Ref::Event(n) => m.events.get(n)?.origin,
        Ref::Channel(n) => m.channels.get(n)?.origin,
        Ref::Label(n) => {
            let mut at = None;
            let mut see = |r: Ref, s: Span| {
                if matches!(&r, Ref::Label(l) if l == n) && at.is_none() {
                    at = Some(s);
                }
            };
            for item in &tree(a).items {
                if let Item::Campaign(c) = item {
                    if c.span.contains(off) {
                        label_defs(&c.steps, &mut see);
                    }
                }
            }
            Origin::Source(a.file, at?)
        }
        Ref::Import(p) => {
            return a.ws.imported(a.file, p).map(|f| (f, Span::default()));
        }
        Ref::Duration(_) | Ref::Construct(_) => return None,
    };
    match origin {
        Origin::Source(f, s) => Some((f, s)),
        Origin::Registry => None,
    }
}

fn label_defs(list: &[Step], see: &mut dyn FnMut(Ref, Span)) {
    for s in list {
        if let Some(l) = &s.label {
            see(Ref::Label(l.text.clone()), l.span);
        }
        match &s.kind {
            StepKind::If(i) => {
                i.arms.iter().for_each(|(_, b)| label_defs(&b.steps, see));
                if let Some(b) = &i.otherwise {
                    label_defs(&b.steps, see);
                }
            }
            StepKind::AbTest(t) => t.variants.iter().for_each(|v| label_defs(&v.block.steps, see)),
            StepKind::WaitUntil(w) => {
                w.arms.iter().for_each(|a| label_defs(&a.block.steps, see));
                if let Some(t) = &w.timeout {
                    label_defs(&t.block.steps, see);
                }
            }
            _ => {}
        }
    }
}

fn item(label: impl Into<String>, kind: CompletionItemKind, detail: impl Into<String>) -> CompletionItem {
    CompletionItem { label: label.into(), kind: Some(kind), detail: Some(detail.into()), ..Default::default() }
}

fn snippet(label: &str, body: &str, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.into(),
        kind: Some(CompletionItemKind::SNIPPET),
        detail: Some(detail.into()),
        insert_text: Some(body.into()),
        insert_text_format: Some(InsertTextFormat::SNIPPET),
        ..Default::default()
    }
}

/// What may be typed at `off`, from the text before it on its line.
pub fn complete(a: &Analysis, off: usize) -> Vec<CompletionItem> {
    let src = a.ws.sources.get(a.file);
    let off = crate::source::floor_char_boundary(&src.text, off.min(src.text.len()));
    let line_start = src.text[..off].rfind('\n').map_or(0, |i| i + 1);
    let before = &src.text[line_start..off];
    let words: Vec<&str> = before.split_whitespace().collect();
    let Some(m) = model(a) else { return vec![] };
    let ends_in_space = before.ends_with(' ');
    let last = words.last().copied().unwrap_or("");
    let prev = if ends_in_space { last } else { words.iter().rev().nth(1).copied().unwrap_or("") };
    let current_is = |w: &str| {
        words.iter().rev().take(if ends_in_space { 2 } else { 3 }).any(|x| *x == w || x.ends_with(&format!(":{w}")))
    };

    // `send CHANNEL.MESSAGE |`: only published templates of that channel and message type, as the builder offers.
    let pair = if ends_in_space { last } else { prev };
    if current_is("send") || current_is("fallback") {
        if let Some((ch, msg)) = pair.split_once('.') {
            if m.channels.get(ch).is_some_and(|c| c.messages.contains_key(msg)) {
                return m
                    .templates
                    .values()
                    .filter(|t| t.channel == ch && t.message == msg && t.status == TemplateStatus::Published)
                    .map(|t| {
                        item(&t.name, CompletionItemKind::VALUE, format!("{}.{} v{}", t.channel, t.message, t.version))
                    })
                    .collect();
            }
        }
        // `send email.|`: the channel's message types.
        if let Some((ch, _)) = last.rsplit(' ').next().unwrap_or("").split_once('.') {
            if !ends_in_space {
                if let Some(c) = m.channels.get(ch) {
                    return c
                        .messages
                        .keys()
                        .map(|k| item(k, CompletionItemKind::ENUM_MEMBER, format!("{ch}.{k}")))
                        .collect();
                }
            }
        }
        let mut out: Vec<CompletionItem> = m
            .channels
            .values()
            .flat_map(|c| {
                c.messages
                    .keys()
                    .map(move |k| item(format!("{}.{k}", c.name), CompletionItemKind::MODULE, "channel.message"))
            })
            .collect();
        out.extend(
            m.templates
                .values()
                .filter(|t| t.status == TemplateStatus::Published)
                .map(|t| item(&t.name, CompletionItemKind::VALUE, format!("{}.{}", t.channel, t.message))),
        );
        return out;
    }
    // `set |`: the fields a `set` may write.
    if prev == "set" {
        return m
            .contact
            .values()
            .filter(|f| !matches!(f.name.as_str(), "id" | "created_at" | "tags"))
            .map(|f| item(&f.name, CompletionItemKind::FIELD, f.ty.describe()))
            .collect();
    }
    // `frequency cap |`: a channel (or the count, for all channels).
    if prev == "cap" && words.iter().rev().nth(if ends_in_space { 1 } else { 2 }) == Some(&"frequency") {
        return m.channels.keys().map(|c| item(c, CompletionItemKind::MODULE, "channel")).collect();
    }
    // Inside the quotes of a scheduled trigger: IANA zones.
    if before.contains("scheduled") && before.matches('"').count() % 2 == 1 {
        return chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| item(z.name(), CompletionItemKind::CONSTANT, "IANA time zone"))
            .collect();
    }
    // `… event NAME where |` (a trigger, a goal, an exit, a `when` arm) and
    // `happened NAME … where |`: that event's properties; only a trigger's
    // `where` reads contact fields too.
    if let Some(w) = words.iter().rposition(|w| *w == "where") {
        let event = words[..w]
            .windows(2)
            .rev()
            .find(|p| p[0] == "event" || p[0] == "happened")
            .and_then(|p| m.events.get(p[1]));
        if let Some(e) = event {
            let mut out: Vec<CompletionItem> = e
                .fields
                .values()
                .map(|f| item(&f.name, CompletionItemKind::PROPERTY, format!("{} property", e.name)))
                .collect();
            if words.first().is_some_and(|w| *w == "trigger") {
                out.extend(m.contact.values().map(|f| item(&f.name, CompletionItemKind::FIELD, f.ty.describe())));
            }
            return out;
        }
    }
    if prev == "event" || prev == "happened" {
        return m.events.keys().map(|e| item(e, CompletionItemKind::EVENT, "event")).collect();
    }
    if prev == "audience" {
        return m.segments.keys().map(|s| item(s, CompletionItemKind::CLASS, "segment")).collect();
    }
    // After `x ==`: the values of x's enum.
    if matches!(prev, "==" | "!=" | "in" | "[") || prev.ends_with('[') {
        let field = words.iter().rev().find(|w| m.contact.contains_key(**w));
        if let Some(Type::Enum(values)) = field.and_then(|f| m.contact.get(*f)).map(|f| &f.ty) {
            return values.iter().map(|v| item(v, CompletionItemKind::ENUM_MEMBER, "enum value")).collect();
        }
    }
    let mut out = vec![
        snippet("send", "send ${1:email}.${2:marketing} ${3:template}", "send a message"),
        snippet("wait", "wait ${1:2d}", "wait a duration"),
        snippet(
            "wait until",
            "wait until {\n\twhen event ${1:order.completed} { $2 }\n\ttimeout ${3:3d} { $0 }\n}",
            "wait for an event or a condition, with a timeout",
        ),
        snippet("goal", "goal event ${1:order.completed} within ${2:7d}", "what counts as a conversion"),
        snippet(
            "exit when",
            "exit when event ${1:order.completed}",
            "leave when an event happens or a condition holds",
        ),
        snippet("on ineligible", "on ineligible ${1|skip,continue|}", "what an ineligible send does"),
        snippet("if", "if ${1:condition} {\n\t$0\n}", "branch"),
        snippet("ab_test", "ab_test ${1:name} {\n\tvariant a 50% { $2 }\n\tvariant b 50% { $3 }\n}", "A/B test"),
        snippet("tag", "tag add \"${1:tag}\"", "add or remove a tag"),
        snippet("set", "set ${1:field} = ${2:value}", "set a contact attribute"),
        snippet("quiet hours", "quiet hours ${1:21:00} to ${2:08:00}", "hold consent-requiring sends at night"),
        snippet("reentry", "reentry ${1|once,always,after 30d|}", "whether a contact may enter again"),
        snippet("rate limit", "rate limit ${1:600} per ${2|second,minute,hour|}", "space this campaign's sends"),
        snippet("policy", "policy {\n\tfrequency cap ${1:3} per ${2:7d}\n}", "the workspace's frequency caps"),
        snippet("end", "end", "end this execution"),
        snippet("trigger", "trigger ${1|manual,api,event,scheduled|}", "the campaign's trigger"),
        snippet("campaign", "campaign ${1:name} {\n\ttrigger manual\n\t$0\n}", "a campaign"),
    ];
    out.extend(m.contact.values().map(|f| item(&f.name, CompletionItemKind::FIELD, f.ty.describe())));
    out.extend(m.segments.keys().map(|s| item(s, CompletionItemKind::CLASS, "segment")));
    out.extend(
        ["consent", "capable", "opened", "clicked", "delivered", "in_segment"]
            .iter()
            .map(|f| item(*f, CompletionItemKind::FUNCTION, "predicate")),
    );
    out
}

/// The outline: campaigns with their steps, templates, segments.
#[allow(deprecated)]
pub fn symbols(a: &Analysis, range: &dyn Fn(Span) -> lsp_types::Range) -> Vec<DocumentSymbol> {
    let sym =
        |name: String, kind: SymbolKind, span: Span, sel: Span, children: Option<Vec<DocumentSymbol>>| DocumentSymbol {
            name,
            detail: None,
            kind,
            tags: None,
            deprecated: None,
            range: range(span),
            selection_range: range(sel),
            children,
        };
    fn step_syms(
        list: &[Step],
        sym: &dyn Fn(String, SymbolKind, Span, Span, Option<Vec<DocumentSymbol>>) -> DocumentSymbol,
    ) -> Vec<DocumentSymbol> {
        list.iter()
            .map(|s| {
                let what = match &s.kind {
                    StepKind::Set { field, .. } => format!("set {}", field.text),
                    other => other.keyword().to_string(),
                };
                let name = match &s.label {
                    Some(l) => format!("{}: {what}", l.text),
                    None => what,
                };
                let children = match &s.kind {
                    StepKind::If(i) => {
                        let mut c: Vec<DocumentSymbol> =
                            i.arms.iter().flat_map(|(_, b)| step_syms(&b.steps, sym)).collect();
                        if let Some(b) = &i.otherwise {
                            c.extend(step_syms(&b.steps, sym));
                        }
                        Some(c)
                    }
                    StepKind::WaitUntil(w) => {
                        let mut c: Vec<DocumentSymbol> = w
                            .arms
                            .iter()
                            .map(|a| {
                                let head = crate::syntax::print::arm_cond(&a.cond);
                                let sel = keyword(a.span, "when".len());
                                let kids = Some(step_syms(&a.block.steps, sym));
                                sym(format!("when {head}"), SymbolKind::EVENT, a.span, sel, kids)
                            })
                            .collect();
                        if let Some(t) = &w.timeout {
                            let name = format!("timeout {}", crate::syntax::print::duration(&t.duration));
                            let sel = keyword(t.span, "timeout".len());
                            c.push(sym(name, SymbolKind::EVENT, t.span, sel, Some(step_syms(&t.block.steps, sym))));
                        }
                        Some(c)
                    }
                    StepKind::AbTest(t) => Some(
                        t.variants
                            .iter()
                            .map(|v| {
                                sym(
                                    format!("variant {}", v.name.text),
                                    SymbolKind::ENUM_MEMBER,
                                    v.span,
                                    v.name.span,
                                    Some(step_syms(&v.block.steps, sym)),
                                )
                            })
                            .collect(),
                    ),
                    _ => None,
                };
                sym(name, SymbolKind::FUNCTION, s.span, s.label.as_ref().map_or(s.span, |l| l.span), children)
            })
            .collect()
    }
    tree(a)
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Campaign(c) => Some(sym(
                format!("campaign {}", c.name.text),
                SymbolKind::MODULE,
                c.span,
                c.name.span,
                Some(step_syms(&c.steps, &sym)),
            )),
            Item::Template(t) => {
                Some(sym(format!("template {}", t.name.text), SymbolKind::STRUCT, t.span, t.name.span, None))
            }
            Item::Segment(s) => {
                Some(sym(format!("segment {}", s.name.text), SymbolKind::CLASS, s.span, s.name.span, None))
            }
            Item::Event(e) => Some(sym(format!("event {}", e.name.text), SymbolKind::EVENT, e.span, e.name.span, None)),
            Item::Policy(p) => {
                let caps = p
                    .caps
                    .iter()
                    .map(|c| {
                        let sel = keyword(c.span, "frequency cap".len());
                        sym(crate::syntax::print::frequency_cap(c), SymbolKind::PROPERTY, c.span, sel, None)
                    })
                    .collect();
                Some(sym("policy".into(), SymbolKind::OBJECT, p.span, p.keyword, Some(caps)))
            }
            _ => None,
        })
        .collect()
}
