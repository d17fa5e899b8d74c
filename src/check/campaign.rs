//! Checking one campaign: settings, trigger, steps, sends, labels, A/B
//! tests, reachability and which sends dominate each engagement predicate.

use super::expr::{self, Before, CampaignScope, LabelInfo, Scope};
use super::model::*;
use super::Checker;
use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};
use crate::suggest;
use crate::syntax::ast;
use std::collections::BTreeMap;

const MAX_WAIT_MINUTES: u64 = 365 * 24 * 60;

pub(crate) fn check(cx: &mut Checker, file: FileId, c: &ast::Campaign) -> Option<Campaign> {
    if let Some(first) = cx.campaign_index.get(&c.name.text).map(|&i| &cx.model.campaigns[i]) {
        let first = Origin::Source(first.file, first.name_span);
        cx.duplicate(file, c.name.span, "campaign", &c.name.text, first);
        return None;
    }
    let mut display_name = None;
    let mut trigger = None;
    let mut audience = None;
    let mut goal: Option<(Goal, Span)> = None;
    let mut exits = Vec::new();
    let mut on_ineligible = OnIneligible::Skip;
    let mut delivery = Delivery::default();
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for s in &c.settings {
        let (key, span) = (s.key(), s.span());
        // Exits add up; a second goal is `invalid-goal`, below.
        let once = !matches!(s, ast::Setting::Exit(..) | ast::Setting::Goal(_));
        if let Some(first) = seen.get(key).filter(|_| once) {
            cx.report(
                Diagnostic::new(
                    Code::DuplicateSetting,
                    file,
                    span,
                    format!("campaign `{}` sets `{key}` twice", c.name.text),
                )
                .with_label("set again here")
                .with_related(*first, "first set here")
                .with_help(if key == "trigger" {
                    "a campaign has exactly one trigger"
                } else {
                    "keep one of the two"
                }),
            );
            continue;
        }
        seen.insert(key, span);
        match s {
            ast::Setting::DisplayName(n, _) => display_name = Some(n.value.clone()),
            ast::Setting::Trigger(t) => trigger = Some(check_trigger(cx, file, t)),
            ast::Setting::Audience(e, _) => {
                let scope = Scope { audience: is_bare_name(e), ..Scope::plain() };
                audience = Some(expr::condition(cx, file, e, &scope));
            }
            ast::Setting::Goal(g) => {
                let checked = check_goal(cx, file, g);
                match &goal {
                    Some((_, first)) => {
                        cx.report(
                            Diagnostic::new(
                                Code::InvalidGoal,
                                file,
                                g.span,
                                format!("campaign `{}` has more than one goal", c.name.text),
                            )
                            .with_label("second goal")
                            .with_related(*first, "first goal here")
                            .with_help("a campaign converts on one goal; keep one of the two"),
                        );
                    }
                    None => goal = Some((checked, g.span)),
                }
            }
            ast::Setting::Exit(cond, _) => exits.push(arm_cond(cx, file, cond, &Scope::plain())),
            ast::Setting::OnIneligible(w, _) => {
                on_ineligible = match w {
                    ast::Ineligible::Skip => OnIneligible::Skip,
                    ast::Ineligible::Continue => OnIneligible::Continue,
                }
            }
            ast::Setting::QuietHours(q) => delivery.quiet_hours = check_quiet_hours(cx, file, q),
            ast::Setting::Reentry(r, _) => {
                delivery.reentry = match r {
                    ast::Reentry::Once => Reentry::Once,
                    ast::Reentry::Always => Reentry::Always,
                    ast::Reentry::After(d) => {
                        Reentry::After { minutes: check_wait_minutes(cx, file, d, "a re-entry delay") }
                    }
                }
            }
            ast::Setting::RateLimit(r) => delivery.rate_limit = check_rate_limit(cx, file, r),
        }
    }
    let trigger = trigger.unwrap_or_else(|| {
        cx.report(
            Diagnostic::new(Code::MissingTrigger, file, c.name.span, format!("campaign `{}` has no trigger", c.name.text))
                .with_label("never starts")
                .with_help("add one of: `trigger manual`, `trigger api`, `trigger event NAME`, `trigger scheduled at 2026-12-01 09:00 \"Europe/Paris\"`"),
        );
        Trigger::Missing
    });

    let mut labels = BTreeMap::new();
    let mut ab_names = BTreeMap::new();
    collect_labels(cx, file, &c.steps, &mut labels, &mut ab_names);
    let mut w = Walk { labels: &labels, file, sends: 0, quiet_worthy: None };
    let (steps, _) = w.block(cx, &c.steps, &c.name.text, &Before::default());
    if let (None, Some((send, channel))) = (&delivery.quiet_hours, &w.quiet_worthy) {
        cx.report(
            Diagnostic::new(
                Code::MissingQuietHours,
                file,
                c.name.span,
                format!("campaign `{}` sends consent-requiring {channel} messages and has no quiet hours", c.name.text),
            )
            .with_label("may text contacts at night")
            .with_related(*send, format!("a consent-requiring {channel} message"))
            .with_help("add `quiet hours 21:00 to 08:00` (in each contact's time zone), with `then skip` to drop such sends instead of holding them"),
        );
    }
    if w.sends == 0 {
        cx.report(
            Diagnostic::new(Code::NoSend, file, c.name.span, format!("campaign `{}` sends nothing", c.name.text))
                .with_label("no `send` step")
                .with_help("add a `send CHANNEL.MESSAGE TEMPLATE` step, or remove the campaign"),
        );
    }
    Some(Campaign {
        name: c.name.text.clone(),
        display_name,
        trigger,
        audience,
        goal: goal.map(|(g, _)| g),
        exits,
        on_ineligible,
        delivery,
        steps,
        file,
        span: c.span,
        name_span: c.name.span,
    })
}

/// `quiet hours START to END [then skip]`: both times `HH:MM`, distinct.
fn check_quiet_hours(cx: &mut Checker, file: FileId, q: &ast::QuietHours) -> Option<QuietHours> {
    let mut clock = |c: &ast::Clock| {
        let minutes = c.minutes();
        if minutes.is_none() {
            cx.report(
                Diagnostic::new(
                    Code::InvalidQuietHours,
                    file,
                    c.span,
                    format!("`{}` is not a time of day written HH:MM", c.text),
                )
                .with_label("not HH:MM")
                .with_help("write times with two digits each, from 00:00 to 23:59, like `21:00` or `08:30`"),
            );
        }
        minutes
    };
    let (start, end) = (clock(&q.start), clock(&q.end));
    let (start_minute, end_minute) = (start?, end?);
    if start_minute == end_minute {
        cx.report(
            Diagnostic::new(
                Code::InvalidQuietHours,
                file,
                q.span,
                format!("quiet hours from {} to {} are no window at all", q.start.text, q.end.text),
            )
            .with_label("start equals end")
            .with_help(
                "give the window a different end; one that ends before it starts wraps midnight, like `21:00 to 08:00`",
            ),
        );
        return None;
    }
    Some(QuietHours { start_minute, end_minute, then: q.then })
}

/// `rate limit N per UNIT`: N at least 1 (`invalid-declaration`), and within u32.
fn check_rate_limit(cx: &mut Checker, file: FileId, r: &ast::RateLimit) -> Option<RateLimit> {
    let count = u32::try_from(r.count.value).ok().filter(|n| *n >= 1);
    if count.is_none() {
        let (message, label) = if r.count.value == 0 {
            ("a rate limit of 0 would never send".to_string(), "zero")
        } else {
            (format!("a rate limit of {} is beyond what flowc counts", r.count.value), "too large")
        };
        cx.report(
            Diagnostic::new(Code::InvalidDeclaration, file, r.count.span, message)
                .with_label(label)
                .with_help("a rate limit is between 1 and 4294967295 sends per second, minute or hour"),
        );
    }
    Some(RateLimit { count: count?, per: r.per })
}

/// A goal's window is counted from entering the campaign; 90 days is the
/// longest attribution window the contract allows.
const MAX_GOAL_MINUTES: u64 = 90 * 24 * 60;

fn check_goal(cx: &mut Checker, file: FileId, g: &ast::Goal) -> Goal {
    let event = expr::event_match(cx, file, &g.event);
    let minutes = g.within.minutes();
    // A duration out of range was reported by the parser.
    if !g.within.out_of_range() && (minutes == 0 || minutes > MAX_GOAL_MINUTES) {
        cx.report(
            Diagnostic::new(
                Code::InvalidGoal,
                file,
                g.within.span,
                if minutes == 0 {
                    "a goal's window must be longer than zero"
                } else {
                    "a goal's window can be at most 90 days"
                },
            )
            .with_label(format!("{minutes} minutes"))
            .with_help("goal windows are between 1m and 90d, counted from entering the campaign"),
        );
    }
    Goal { event, within_minutes: minutes.min(MAX_GOAL_MINUTES) as i64 }
}

/// What a `when` arm or an `exit when` waits for; a state condition resolves
/// in `scope`.
fn arm_cond(cx: &mut Checker, file: FileId, c: &ast::ArmCond, scope: &Scope) -> ArmCond {
    match c {
        ast::ArmCond::Event(m) => ArmCond::Event(expr::event_match(cx, file, m)),
        ast::ArmCond::State(e) => ArmCond::State(expr::condition(cx, file, e, scope)),
    }
}

/// Holds whatever the contact: `true`, or an `or` with such a part, or an
/// `and` of such parts. Only constants count; a tautology over fields is not
/// looked for.
fn always_holds(e: &TExpr) -> bool {
    match &e.kind {
        TKind::Const(Value::Bool(b)) => *b && e.ty == Type::Bool,
        TKind::Or(v) => v.iter().any(always_holds),
        TKind::And(v) => v.iter().all(always_holds),
        _ => false,
    }
}

/// Checks a wait or timeout duration: `(0, 365d]`.
fn check_wait_minutes(cx: &mut Checker, file: FileId, d: &ast::DurationLit, what: &str) -> i64 {
    let minutes = d.minutes();
    // A duration out of range was reported by the parser.
    if !d.out_of_range() && (minutes == 0 || minutes > MAX_WAIT_MINUTES) {
        cx.report(
            Diagnostic::new(
                Code::InvalidDuration,
                file,
                d.span,
                if minutes == 0 {
                    format!("{what} must last longer than zero")
                } else {
                    format!("{what} can last at most 365 days")
                },
            )
            .with_label(format!("{} minutes", minutes))
            .with_help("waits are between 1m and 365d"),
        );
    }
    minutes.min(i64::MAX as u64) as i64
}

fn is_bare_name(e: &ast::Expr) -> bool {
    matches!(e.kind, ast::ExprKind::Name(_))
}

fn check_trigger(cx: &mut Checker, file: FileId, t: &ast::Trigger) -> Trigger {
    match &t.kind {
        ast::TriggerKind::Scheduled { at, zone } => {
            if !expr::zone_ok(&zone.value) {
                expr::report_zone(cx, file, &zone.value, zone.span);
            }
            let time = at.time.unwrap_or(chrono::NaiveTime::MIN);
            let local = at.date.and_time(time);
            let instant = zone
                .value
                .parse::<chrono_tz::Tz>()
                .ok()
                .and_then(|tz| chrono::TimeZone::from_local_datetime(&tz, &local).earliest());
            if let (Some(now), Some(instant)) = (cx.opts.now, instant) {
                if instant < now {
                    cx.report(
                        Diagnostic::new(Code::ScheduleInPast, file, at.span, format!("this campaign is scheduled for {} {}, which has passed", local.format("%Y-%m-%d %H:%M"), zone.value))
                            .with_label("in the past")
                            .with_help("`flowc campaign launch` refuses it; pick a future time, or use `trigger manual` and `flowc campaign start`"),
                    );
                }
            }
            Trigger::Scheduled { at: local, zone: zone.value.clone() }
        }
        ast::TriggerKind::Event { event, filter } => {
            if !cx.model.events.contains_key(&event.text) {
                expr::report_unknown_event(cx, file, event);
                return Trigger::Event { event: event.text.clone(), filter: None };
            }
            let scope = Scope { event: Some(&event.text), ..Scope::plain() };
            let filter = filter.as_ref().map(|f| expr::condition(cx, file, f, &scope));
            Trigger::Event { event: event.text.clone(), filter }
        }
        ast::TriggerKind::Manual => Trigger::Manual,
        ast::TriggerKind::Api => Trigger::Api,
    }
}

/// Labels are campaign-wide so an engagement predicate can name a send in
/// any branch; `ab_test` names share their own namespace (the report's keys).
fn collect_labels(
    cx: &mut Checker,
    file: FileId,
    steps: &[ast::Step],
    labels: &mut BTreeMap<String, LabelInfo>,
    ab: &mut BTreeMap<String, Span>,
) {
    for s in steps {
        if let Some(l) = &s.label {
            if let Some(first) = labels.get(&l.text) {
                cx.report(
                    Diagnostic::new(
                        Code::DuplicateLabel,
                        file,
                        l.span,
                        format!("label `{}` is used twice in this campaign", l.text),
                    )
                    .with_label("used again here")
                    .with_related(first.span, "first used here")
                    .with_help("labels are the steps' stable ids, so each must be unique"),
                );
            } else {
                labels.insert(
                    l.text.clone(),
                    LabelInfo { is_send: matches!(s.kind, ast::StepKind::Send(_)), span: l.span },
                );
            }
        }
        match &s.kind {
            ast::StepKind::If(i) => {
                for (_, b) in &i.arms {
                    collect_labels(cx, file, &b.steps, labels, ab);
                }
                if let Some(b) = &i.otherwise {
                    collect_labels(cx, file, &b.steps, labels, ab);
                }
            }
            ast::StepKind::WaitUntil(w) => {
                for a in &w.arms {
                    collect_labels(cx, file, &a.block.steps, labels, ab);
                }
                if let Some(t) = &w.timeout {
                    collect_labels(cx, file, &t.block.steps, labels, ab);
                }
            }
            ast::StepKind::AbTest(t) => {
                if let Some(first) = ab.get(&t.name.text) {
                    cx.report(
                        Diagnostic::new(
                            Code::DuplicateLabel,
                            file,
                            t.name.span,
                            format!("ab_test `{}` is named twice in this campaign", t.name.text),
                        )
                        .with_label("named again here")
                        .with_related(*first, "first named here"),
                    );
                } else {
                    ab.insert(t.name.text.clone(), t.name.span);
                }
                let mut variants: BTreeMap<&str, Span> = BTreeMap::new();
                for v in &t.variants {
                    if let Some(first) = variants.get(v.name.text.as_str()) {
                        cx.report(
                            Diagnostic::new(
                                Code::DuplicateLabel,
                                file,
                                v.name.span,
                                format!("variant `{}` appears twice in `{}`", v.name.text, t.name.text),
                            )
                            .with_label("again here")
                            .with_related(*first, "first here"),
                        );
                    } else {
                        variants.insert(&v.name.text, v.name.span);
                    }
                    collect_labels(cx, file, &v.block.steps, labels, ab);
                }
            }
            _ => {}
        }
    }
}

struct Walk<'l> {
    labels: &'l BTreeMap<String, LabelInfo>,
    file: FileId,
    sends: usize,
    /// The first send (primary or fallback) of a consent-requiring sms or
    /// whatsapp message, and its channel: what `missing-quiet-hours` is about.
    quiet_worthy: Option<(Span, String)>,
}

impl Walk<'_> {
    /// Checks a block; returns its steps and what is known of the labelled
    /// sends at its end, or `None` when every path ends inside it.
    fn block(
        &mut self,
        cx: &mut Checker,
        steps: &[ast::Step],
        path: &str,
        sent_in: &Before,
    ) -> (Vec<Step>, Option<Before>) {
        let mut sent = Some(sent_in.clone());
        // What held before the step that ended every path: dead steps are
        // checked as if they ran there.
        let mut last_live = sent_in.clone();
        let mut out = Vec::with_capacity(steps.len());
        let mut warned = false;
        for (i, s) in steps.iter().enumerate() {
            let id = match &s.label {
                Some(l) => StepId(l.text.clone()),
                None => StepId(format!("{path}/{}", i + 1)),
            };
            let here = match &sent {
                Some(set) => {
                    last_live = set.clone();
                    set.clone()
                }
                None => {
                    if !warned {
                        warned = true;
                        cx.report(
                            Diagnostic::new(Code::Unreachable, self.file, s.span, "this step can never run")
                                .with_label("unreachable")
                                .with_help("every path before it ends; remove it or the `end` above"),
                        );
                    }
                    // Keep checking the dead steps, as if reachable (in
                    // order, from the last live point), so their own
                    // mistakes show and not mistakes of being dead.
                    last_live.clone()
                }
            };
            let (kind, after) = self.step(cx, s, &id, &here);
            match (&sent, after) {
                (Some(_), after) => sent = after,
                (None, Some(after)) => last_live = after,
                (None, None) => {}
            }
            out.push(Step { id, labelled: s.label.is_some(), kind, span: s.span });
        }
        (out, sent)
    }

    fn step(&mut self, cx: &mut Checker, s: &ast::Step, id: &StepId, sent: &Before) -> (StepKind, Option<Before>) {
        let file = self.file;
        match &s.kind {
            ast::StepKind::Send(send) => {
                self.sends += 1;
                let kind = self.send(cx, send);
                let mut after = sent.clone();
                if let Some(l) = &s.label {
                    after.sent(&l.text);
                }
                (kind, Some(after))
            }
            ast::StepKind::Wait(d) => {
                let minutes = check_wait_minutes(cx, file, d, "a wait");
                (StepKind::Wait { minutes }, Some(sent.waited()))
            }
            ast::StepKind::WaitUntil(w) => self.wait_until(cx, w, id, sent),
            ast::StepKind::If(i) => {
                let mut arms = Vec::new();
                let mut joined: Option<Before> = None;
                let mut join = |set: Option<Before>| Before::join(&mut joined, set);
                for (k, (cond, body)) in i.arms.iter().enumerate() {
                    let scope = Scope { campaign: Some(CampaignScope { labels: self.labels, sent }), ..Scope::plain() };
                    let cond = expr::condition(cx, file, cond, &scope);
                    let arm = if k == 0 { "then".to_string() } else { format!("elif{k}") };
                    let (steps, out) = self.block(cx, &body.steps, &format!("{id}/{arm}"), sent);
                    join(out);
                    arms.push((cond, steps));
                }
                let otherwise = match &i.otherwise {
                    Some(b) => {
                        let (steps, out) = self.block(cx, &b.steps, &format!("{id}/else"), sent);
                        join(out);
                        steps
                    }
                    None => {
                        join(Some(sent.clone()));
                        Vec::new()
                    }
                };
                (StepKind::If { arms, otherwise }, joined)
            }
            ast::StepKind::AbTest(t) => {
                let n = t.variants.len();
                if !(2..=4).contains(&n) {
                    cx.report(
                        Diagnostic::new(
                            Code::AbVariantCount,
                            file,
                            t.name.span,
                            format!(
                                "`{}` has {n} variant{}; an A/B test has 2 to 4",
                                t.name.text,
                                if n == 1 { "" } else { "s" }
                            ),
                        )
                        .with_label("wrong number of variants")
                        .with_help(if n < 2 {
                            "add a variant; a holdout is one with an empty block: `variant holdout 10% { }`"
                        } else {
                            "an A/B test has at most 4 variants, a holdout included: merge or remove some"
                        }),
                    );
                }
                let mut total: u64 = 0;
                for v in &t.variants {
                    total += u64::from(v.weight_bp);
                    if v.weight_bp == 0 {
                        cx.report(
                            Diagnostic::new(
                                Code::AbWeights,
                                file,
                                v.weight_span,
                                format!("variant `{}` has weight 0", v.name.text),
                            )
                            .with_label("never chosen")
                            .with_help("remove the variant, or give it a weight above 0%"),
                        );
                    }
                }
                // A weight above 100% was reported by the parser; the sum would only repeat it.
                let reported = t.variants.iter().any(|v| v.weight_bp > crate::limits::MAX_WEIGHT_BP);
                if total != 10_000 && n > 0 && !reported {
                    cx.report(
                        Diagnostic::new(
                            Code::AbWeights,
                            file,
                            t.name.span,
                            format!("the weights of `{}` sum to {}%, not 100%", t.name.text, fmt_bp(total)),
                        )
                        .with_label("weights must sum to exactly 100%")
                        .with_help(if total < 10_000 {
                            format!("add {}% somewhere", fmt_bp(10_000 - total))
                        } else {
                            format!("remove {}% somewhere", fmt_bp(total - 10_000))
                        }),
                    );
                }
                let mut joined: Option<Before> = None;
                let mut variants = Vec::new();
                for v in &t.variants {
                    let (steps, out) = self.block(cx, &v.block.steps, &format!("{id}/{}", v.name.text), sent);
                    Before::join(&mut joined, out);
                    variants.push(Variant { name: v.name.text.clone(), weight_bp: v.weight_bp, steps });
                }
                (StepKind::AbTest { name: t.name.text.clone(), variants }, joined)
            }
            ast::StepKind::Tag { op, tag } => {
                if tag.value.is_empty() {
                    cx.report(
                        Diagnostic::new(Code::InvalidDeclaration, file, tag.span, "a tag cannot be empty")
                            .with_label("empty tag"),
                    );
                }
                (StepKind::Tag { add: *op == ast::TagOp::Add, tag: tag.value.clone() }, Some(sent.clone()))
            }
            ast::StepKind::End => (StepKind::End, None),
            ast::StepKind::Set { field, value } => {
                let scope = Scope { campaign: Some(CampaignScope { labels: self.labels, sent }), ..Scope::plain() };
                let value = set_value(cx, file, field, value, &scope);
                (StepKind::Set { field: field.text.clone(), value }, Some(sent.clone()))
            }
        }
    }

    /// A `wait until` is a wait (engagement has had time to arrive) and then
    /// a branch per arm and one for the timeout.
    fn wait_until(
        &mut self,
        cx: &mut Checker,
        w: &ast::WaitUntil,
        id: &StepId,
        sent: &Before,
    ) -> (StepKind, Option<Before>) {
        let file = self.file;
        let waited = sent.waited();
        let mut joined: Option<Before> = None;
        let mut arms = Vec::new();
        let mut holds_always: Option<Span> = None;
        let mut warned = false;
        for (k, a) in w.arms.iter().enumerate() {
            let scope =
                Scope { campaign: Some(CampaignScope { labels: self.labels, sent: &waited }), ..Scope::plain() };
            let on = arm_cond(cx, file, &a.cond, &scope);
            if let (Some(first), false) = (holds_always, warned) {
                warned = true;
                cx.report(
                    Diagnostic::new(Code::UnreachableArm, file, a.cond.span(), "this arm is never taken")
                        .with_label("an arm above always holds")
                        .with_related(first, "this arm always holds, and arms are tried in order")
                        .with_help("remove this arm, or the condition that always holds"),
                );
            }
            if holds_always.is_none() && matches!(&on, ArmCond::State(e) if always_holds(e)) {
                holds_always = Some(a.cond.span());
            }
            let (steps, out) = self.block(cx, &a.block.steps, &format!("{id}/when{}", k + 1), &waited);
            Before::join(&mut joined, out);
            arms.push(WaitArm { on, steps, span: a.cond.span() });
        }
        let (timeout_minutes, timeout) = match &w.timeout {
            Some(t) => {
                let minutes = check_wait_minutes(cx, file, &t.duration, "a timeout");
                let (steps, out) = self.block(cx, &t.block.steps, &format!("{id}/timeout"), &waited);
                Before::join(&mut joined, out);
                (minutes, steps)
            }
            None => {
                cx.report(
                    Diagnostic::new(Code::MissingTimeout, file, w.head, "this `wait until` has no timeout")
                        .with_label("could wait forever")
                        .with_help(match w.form {
                            ast::WaitForm::Short => "add `timeout D` after the event, e.g. `timeout 3d`",
                            ast::WaitForm::Arms => {
                                "add `timeout D { … }` after the last `when` arm, e.g. `timeout 3d { }`"
                            }
                        }),
                );
                Before::join(&mut joined, Some(waited.clone()));
                (0, Vec::new())
            }
        };
        (StepKind::WaitUntil { arms, timeout_minutes, timeout }, joined)
    }

    fn send(&mut self, cx: &mut Checker, send: &ast::Send) -> StepKind {
        let file = self.file;
        let target = target(cx, file, &send.target);
        let channel = cx.model.channels.get(&target.channel).cloned();
        let mut fallback = None;
        let mut explicit_no_fallback = false;
        match (&send.fallback, channel) {
            (Some(ast::Fallback::None(_)), _) => explicit_no_fallback = true,
            (Some(ast::Fallback::To(fb)), Some(ch)) => {
                let resolved = target_checked(cx, file, fb);
                if !ch.requires_capability {
                    cx.report(
                        Diagnostic::new(
                            Code::InvalidFallback,
                            file,
                            fb.span,
                            format!("`{}` has no capability rule, so this fallback never runs", ch.name),
                        )
                        .with_label("never used")
                        .with_help(
                            "fallbacks apply to channels that `requires capability` (rcs, whatsapp, push); remove it",
                        ),
                    );
                } else if let Some(resolved) = &resolved {
                    match &ch.fallback {
                        Some(expected) if *expected != resolved.channel => {
                            cx.report(
                                Diagnostic::new(
                                    Code::InvalidFallback,
                                    file,
                                    fb.span,
                                    format!("`{}` falls back to `{expected}`, not `{}`", ch.name, resolved.channel),
                                )
                                .with_label(format!("must be a `{expected}` message"))
                                .with_help(format!("use a `{expected}.…` template here")),
                            );
                        }
                        None => {
                            cx.report(
                                Diagnostic::new(
                                    Code::InvalidFallback,
                                    file,
                                    fb.span,
                                    format!("`{}` declares no fallback channel", ch.name),
                                )
                                .with_label("no fallback possible")
                                .with_help("write `fallback none`, or send on a channel that has a fallback"),
                            );
                        }
                        _ => {}
                    }
                }
                fallback = resolved;
            }
            (Some(ast::Fallback::To(fb)), None) => fallback = target_checked(cx, file, fb),
            (None, Some(ch)) if ch.requires_capability => {
                let help = match &ch.fallback {
                    Some(fb) => {
                        format!("add `fallback {fb}.… TEMPLATE`, or `fallback none` to skip contacts without it")
                    }
                    None => "add `fallback none` to say that contacts without it are skipped".to_string(),
                };
                cx.report(
                    Diagnostic::new(
                        Code::MissingFallback,
                        file,
                        send.target.span,
                        format!("`{}` needs device capability, and this send has no fallback", ch.name),
                    )
                    .with_label("contacts without the capability are skipped")
                    .with_help(help),
                );
            }
            (None, _) => {}
        }
        if self.quiet_worthy.is_none() {
            let spans = [(Some(&target), send.target.span), (fallback.as_ref(), fallback_span(send))];
            self.quiet_worthy = spans.into_iter().find_map(|(t, span)| {
                let t = t?;
                needs_quiet_hours(cx, t).then(|| (span, t.channel.clone()))
            });
        }
        StepKind::Send { target, fallback, explicit_no_fallback }
    }
}

fn fallback_span(send: &ast::Send) -> Span {
    match &send.fallback {
        Some(ast::Fallback::To(t)) => t.span,
        _ => send.target.span,
    }
}

/// The channels whose consent-requiring messages `missing-quiet-hours` asks
/// quiet hours for: the ones that ring a phone with a text.
const QUIET_CHANNELS: &[&str] = &["sms", "whatsapp"];

fn needs_quiet_hours(cx: &Checker, t: &SendTarget) -> bool {
    QUIET_CHANNELS.contains(&t.channel.as_str())
        && cx
            .model
            .channels
            .get(&t.channel)
            .and_then(|c| c.messages.get(&t.message))
            .is_some_and(|m| m.requires_consent)
}

/// Fields no `set` may write: the contact's identity and its creation time
/// are fixed; tags change through `tag add` / `tag remove`.
const READONLY_FIELDS: &[(&str, &str)] = &[
    ("id", "`id` is the contact's key and never changes"),
    ("created_at", "`created_at` records when the contact was created and never changes"),
    ("tags", "tags change with `tag add \"…\"` and `tag remove \"…\"`"),
];

/// `set FIELD = EXPR`: a declared, writable field, and a value of its type.
fn set_value(cx: &mut Checker, file: FileId, field: &ast::Name, value: &ast::Expr, scope: &Scope) -> TExpr {
    if let Some((_, why)) = READONLY_FIELDS.iter().find(|(n, _)| *n == field.text) {
        cx.report(
            Diagnostic::new(Code::ReadonlyField, file, field.span, format!("`{}` cannot be set", field.text))
                .with_label("read-only field")
                .with_help(*why),
        );
        return expr::value(cx, file, value, scope, None);
    }
    let Some(declared) = cx.model.contact.get(&field.text).cloned() else {
        let writable: Vec<&str> = cx
            .model
            .contact
            .keys()
            .map(String::as_str)
            .filter(|n| !READONLY_FIELDS.iter().any(|(r, _)| r == n))
            .collect();
        let best = suggest::best(&field.text, writable.iter().copied());
        cx.report(
            Diagnostic::new(
                Code::ReadonlyField,
                file,
                field.span,
                format!("`{}` is not a declared contact field", field.text),
            )
            .with_label("nothing to set")
            .with_suggestion(field.span, best, Some("declare it in `contact { … }` first".to_string())),
        );
        return expr::value(cx, file, value, scope, None);
    };
    expr::value(cx, file, value, scope, Some(&declared))
}

fn fmt_bp(bp: u64) -> String {
    if bp.is_multiple_of(100) {
        format!("{}", bp / 100)
    } else {
        format!("{}.{:02}", bp / 100, bp % 100).trim_end_matches('0').to_string()
    }
}

fn target_checked(cx: &mut Checker, file: FileId, t: &ast::SendTarget) -> Option<SendTarget> {
    let before = cx.diags.iter().filter(|d| d.is_error()).count();
    let r = target(cx, file, t);
    (cx.diags.iter().filter(|d| d.is_error()).count() == before).then_some(r)
}

/// Resolves `CHANNEL.MESSAGE TEMPLATE` or `TEMPLATE`, checking the template
/// against the step's channel and message type, and its status.
fn target(cx: &mut Checker, file: FileId, t: &ast::SendTarget) -> SendTarget {
    let step_pair = t.channel.as_ref().map(|cm| {
        let ok = cx.channel_message(file, &cm.channel.text, cm.channel.span, &cm.message.text, cm.message.span);
        (cm, ok)
    });
    let Some(tpl) = cx.model.templates.get(&t.template.text).cloned() else {
        let same_kind: Vec<&str> = cx.model.templates.keys().map(String::as_str).collect();
        let best = suggest::best(&t.template.text, same_kind.iter().copied());
        let otherwise = "declare it with `template NAME { … }` or pass the registry with --templates".to_string();
        cx.report(
            Diagnostic::new(
                Code::UnknownTemplate,
                file,
                t.template.span,
                format!("unknown template `{}`", t.template.text),
            )
            .with_label("no such template")
            .with_suggestion(t.template.span, best, Some(otherwise)),
        );
        let (channel, message) =
            step_pair.map(|(cm, _)| (cm.channel.text.clone(), cm.message.text.clone())).unwrap_or_default();
        return SendTarget { channel, message, template: t.template.text.clone() };
    };
    if let Some((cm, true)) = step_pair {
        let matching = |cx: &Checker| -> Option<String> {
            let names = cx
                .model
                .templates
                .values()
                .filter(|x| x.channel == cm.channel.text && x.message == cm.message.text)
                .map(|x| x.name.as_str());
            suggest::best(&t.template.text, names)
                .map(|n| format!("did you mean `{n}`, a {}.{} template?", cm.channel.text, cm.message.text))
        };
        if tpl.channel != cm.channel.text {
            let help = matching(cx).unwrap_or_else(|| {
                format!(
                    "send it as `{}.{} {}`, or pick a template made for {}",
                    tpl.channel, tpl.message, tpl.name, cm.channel.text
                )
            });
            cx.report(
                Diagnostic::new(
                    Code::ChannelMismatch,
                    file,
                    t.template.span,
                    format!(
                        "template `{}` is for {}, but this step sends on {}",
                        tpl.name, tpl.channel, cm.channel.text
                    ),
                )
                .with_label(format!("made for {}", tpl.channel))
                .with_related(cm.channel.span, format!("the step's channel is {}", cm.channel.text))
                .with_help(help),
            );
        } else if tpl.message != cm.message.text {
            let help = matching(cx).unwrap_or_else(|| {
                format!(
                    "send it as `{}.{} {}`, or pick a {}.{} template",
                    tpl.channel, tpl.message, tpl.name, cm.channel.text, cm.message.text
                )
            });
            cx.report(
                Diagnostic::new(
                    Code::MessageTypeMismatch,
                    file,
                    t.template.span,
                    format!(
                        "template `{}` is {}.{}, but this step sends {}.{}",
                        tpl.name, tpl.channel, tpl.message, cm.channel.text, cm.message.text
                    ),
                )
                .with_label(format!("made for {}.{}", tpl.channel, tpl.message))
                .with_related(cm.message.span, format!("the step's message type is {}", cm.message.text))
                .with_help(help),
            );
        }
    }
    if tpl.status != TemplateStatus::Published {
        let mut d = Diagnostic::new(
            Code::TemplateNotPublished,
            file,
            t.template.span,
            format!("template `{}` is {}, so launch would be blocked", tpl.name, tpl.status.as_str()),
        )
        .with_label(format!("{} template", tpl.status.as_str()))
        .with_help("publish the template first, or pass --allow-draft while iterating");
        d.severity = cx.severity_of_draft();
        cx.report(d);
    }
    match step_pair {
        Some((cm, _)) => {
            SendTarget { channel: cm.channel.text.clone(), message: cm.message.text.clone(), template: tpl.name }
        }
        None => SendTarget { channel: tpl.channel, message: tpl.message, template: tpl.name },
    }
}
