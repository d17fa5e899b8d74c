//! The semantic checker: resolves names across a unit's files, types every
//! expression and applies every rule of docs/language.md.
//!
//! `check` does no IO: it reads a loaded [`Workspace`] and returns a
//! [`Model`] plus diagnostics. It never stops at the first problem; a broken
//! declaration is reported and left out, and checking goes on.

mod campaign;
pub mod explain;
mod expr;
pub mod lints;
pub mod model;
pub mod registry;

use crate::diag::{Code, Diagnostic, Severity};
use crate::source::{FileId, Span};
use crate::suggest;
use crate::syntax::ast;
use crate::workspace::{Unit, Workspace};
use model::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The longest rolling window a frequency cap counts over.
const MAX_CAP_WINDOW_MINUTES: u64 = 365 * 24 * 60;

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--allow-draft`: a draft or rejected template is a warning, not an error.
    pub allow_draft: bool,
    /// The present, for the checks against it (`schedule-in-past`). The
    /// checker reads no clock: commands pass the wall clock, and goldens a
    /// fixed time or `None` to skip those checks.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Levels for warning codes, from `flowc.toml`'s `[lints]`.
    pub lints: lints::Lints,
}

/// The model of the stdlib prelude alone (built-in contact fields,
/// channels): what a database without a declared schema is checked against.
/// The prelude is embedded, so it is checked once per process.
pub fn stdlib_model() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let ws = crate::workspace::stdlib_only();
        match ws.units.first() {
            Some(unit) => check(&ws, unit, &[], &CheckOptions::default()).0,
            None => Model::default(),
        }
    })
}

/// Checks one unit. Diagnostics in files the unit imports are included; the
/// caller deduplicates across units.
pub fn check(
    ws: &Workspace,
    unit: &Unit,
    registry: &[registry::RegistryTemplate],
    opts: &CheckOptions,
) -> (Model, Vec<Diagnostic>) {
    let mut cx = Checker {
        ws,
        opts,
        model: Model::default(),
        diags: Vec::new(),
        segment_asts: Vec::new(),
        campaign_asts: Vec::new(),
        template_spans: Vec::new(),
        segment_names: Default::default(),
        price_origins: BTreeMap::new(),
        campaign_index: HashMap::new(),
    };
    for &file in &unit.files {
        for item in &ws.tree(file).items {
            cx.declare(file, item);
        }
    }
    cx.declare_registry(registry);
    cx.declare_policy();
    cx.validate_declarations();
    cx.check_segments();
    let campaigns = std::mem::take(&mut cx.campaign_asts);
    for (file, c) in campaigns {
        if let Some(m) = campaign::check(&mut cx, file, c) {
            cx.campaign_index.insert(m.name.clone(), cx.model.campaigns.len());
            cx.model.campaigns.push(m);
        }
    }
    let Checker { model, diags, .. } = cx;
    (model, diags)
}

pub(crate) struct Checker<'a> {
    ws: &'a Workspace,
    opts: &'a CheckOptions,
    pub(crate) model: Model,
    pub(crate) diags: Vec<Diagnostic>,
    segment_asts: Vec<(FileId, &'a ast::SegmentDecl)>,
    campaign_asts: Vec<(FileId, &'a ast::Campaign)>,
    /// Declared templates' fields, to validate channels once all are known.
    template_spans: Vec<(String, FileId, Vec<ast::TemplateField>)>,
    /// Every segment name, known before any segment body is checked.
    pub(crate) segment_names: std::collections::BTreeSet<String>,
    price_origins: BTreeMap<(String, String), (i64, FileId, Span)>,
    /// Each checked campaign's index in `model.campaigns`, by name: a
    /// duplicate is found without scanning them all.
    pub(crate) campaign_index: HashMap<String, usize>,
}

impl<'a> Checker<'a> {
    pub(crate) fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// "first declared here", as a related label when in the same file.
    fn duplicate(&mut self, file: FileId, span: Span, what: &str, name: &str, first: Origin) {
        let mut d =
            Diagnostic::new(Code::DuplicateDeclaration, file, span, format!("{what} `{name}` is declared twice"))
                .with_label("declared again here");
        match first {
            Origin::Source(f, s) if f == file => d = d.with_related(s, "first declared here"),
            Origin::Source(f, s) => {
                let src = self.ws.sources.get(f);
                let lc = src.line_col(s.start as usize);
                d = d.with_help(format!("first declared at {}:{}:{}", src.path.display(), lc.line, lc.column));
            }
            Origin::Registry => d = d.with_help("first declared in the template registry (--templates)"),
        }
        self.report(d);
    }

    fn declare(&mut self, file: FileId, item: &'a ast::Item) {
        match item {
            ast::Item::Import(_) => {}
            ast::Item::Channel(c) => self.declare_channel(file, c),
            ast::Item::Contact(c) => {
                for f in &c.fields {
                    if let Some(prev) = self.model.contact.get(&f.name.text) {
                        let origin = prev.origin;
                        self.duplicate(file, f.name.span, "contact field", &f.name.text, origin);
                        continue;
                    }
                    if let Some(field) = self.field(file, f) {
                        self.model.contact.insert(f.name.text.clone(), field);
                    }
                }
            }
            ast::Item::Event(e) => {
                if let Some(prev) = self.model.events.get(&e.name.text) {
                    let origin = prev.origin;
                    self.duplicate(file, e.name.span, "event", &e.name.text, origin);
                    return;
                }
                let mut fields = BTreeMap::new();
                for f in &e.fields {
                    if let Some(prev) = fields.get(&f.name.text) {
                        let Field { origin, .. } = prev;
                        let origin = *origin;
                        self.duplicate(file, f.name.span, "event property", &f.name.text, origin);
                        continue;
                    }
                    if let Some(field) = self.field(file, f) {
                        fields.insert(f.name.text.clone(), field);
                    }
                }
                let origin = Origin::Source(file, e.name.span);
                self.model.events.insert(e.name.text.clone(), Event { name: e.name.text.clone(), fields, origin });
            }
            ast::Item::Template(t) => self.declare_template(file, t),
            ast::Item::Pricing(p) => self.declare_pricing(file, p),
            // Workspace-wide: read from every loaded file by `declare_policy`.
            ast::Item::Policy(_) => {}
            ast::Item::Segment(s) => self.segment_asts.push((file, s)),
            ast::Item::Campaign(c) => self.campaign_asts.push((file, c)),
        }
    }

    fn field(&mut self, file: FileId, f: &ast::FieldDecl) -> Option<Field> {
        let ty = match &f.ty.kind {
            ast::TypeKind::Named(n) => {
                match n.text.as_str() {
                    "string" => Type::String,
                    "number" => Type::Number,
                    "bool" => Type::Bool,
                    "datetime" => Type::DateTime,
                    "date" => Type::Date,
                    "duration" => Type::Duration,
                    "timezone" => Type::Timezone,
                    other => {
                        const TYPES: &[&str] =
                            &["string", "number", "bool", "datetime", "date", "duration", "timezone", "set", "enum"];
                        let best = suggest::best(other, TYPES.iter().copied());
                        let otherwise = "types are string, number, bool, datetime, date, duration, timezone, set<string> and enum(…)".to_string();
                        self.report(
                            Diagnostic::new(Code::InvalidDeclaration, file, n.span, format!("unknown type `{other}`"))
                                .with_label("not a type")
                                .with_suggestion(n.span, best, Some(otherwise)),
                        );
                        return None;
                    }
                }
            }
            ast::TypeKind::Set(inner) => {
                if inner.text != "string" {
                    self.report(
                        Diagnostic::new(
                            Code::InvalidDeclaration,
                            file,
                            inner.span,
                            format!("sets hold strings, not `{}`", inner.text),
                        )
                        .with_label("only `set<string>` exists")
                        .with_help("write `set<string>`"),
                    );
                    return None;
                }
                Type::SetString
            }
            ast::TypeKind::Enum(values) => {
                let mut seen: Vec<&str> = Vec::new();
                for v in values {
                    if seen.contains(&v.text.as_str()) {
                        self.report(
                            Diagnostic::new(
                                Code::DuplicateDeclaration,
                                file,
                                v.span,
                                format!("enum value `{}` is listed twice", v.text),
                            )
                            .with_label("listed again"),
                        );
                    } else {
                        seen.push(&v.text);
                    }
                }
                Type::Enum(Arc::from(seen.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
            }
        };
        Some(Field {
            name: f.name.text.clone(),
            ty,
            optional: f.ty.optional,
            origin: Origin::Source(file, f.name.span),
        })
    }

    fn declare_channel(&mut self, file: FileId, c: &ast::ChannelDecl) {
        if let Some(prev) = self.model.channels.get(&c.name.text) {
            let origin = prev.origin;
            self.duplicate(file, c.name.span, "channel", &c.name.text, origin);
            return;
        }
        let mut channel = Channel {
            name: c.name.text.clone(),
            requires_capability: false,
            fallback: None,
            messages: BTreeMap::new(),
            origin: Origin::Source(file, c.name.span),
        };
        for e in &c.entries {
            match e {
                ast::ChannelEntry::RequiresCapability(_) => channel.requires_capability = true,
                ast::ChannelEntry::Fallback(n) => channel.fallback = Some(n.text.clone()),
                ast::ChannelEntry::Message { name, requires_consent, .. } => {
                    if let Some(prev) = channel.messages.get(&name.text) {
                        let origin = prev.origin;
                        self.duplicate(file, name.span, "message type", &name.text, origin);
                        continue;
                    }
                    let mt =
                        MessageType { requires_consent: *requires_consent, origin: Origin::Source(file, name.span) };
                    channel.messages.insert(name.text.clone(), mt);
                }
            }
        }
        self.model.channels.insert(c.name.text.clone(), channel);
    }

    fn declare_template(&mut self, file: FileId, t: &ast::Template) {
        if let Some(prev) = self.model.templates.get(&t.name.text) {
            let origin = prev.origin;
            self.duplicate(file, t.name.span, "template", &t.name.text, origin);
            return;
        }
        let (mut channel, mut message, mut status, mut version) = (None, None, None, None);
        for f in &t.fields {
            let (slot_filled, span, what) = match f {
                ast::TemplateField::Channel(n) => (channel.replace(n.clone()).is_some(), n.span, "channel"),
                ast::TemplateField::Message(n) => (message.replace(n.clone()).is_some(), n.span, "message"),
                ast::TemplateField::Status(n) => (status.replace(n.clone()).is_some(), n.span, "status"),
                ast::TemplateField::Version { value, span } => (version.replace(*value).is_some(), *span, "version"),
            };
            if slot_filled {
                self.report(
                    Diagnostic::new(
                        Code::InvalidTemplate,
                        file,
                        span,
                        format!("template `{}` sets `{what}` twice", t.name.text),
                    )
                    .with_label("set again here"),
                );
            }
        }
        let missing: Vec<&str> = [("channel", channel.is_none()), ("message", message.is_none())]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            self.report(
                Diagnostic::new(
                    Code::InvalidTemplate,
                    file,
                    t.name.span,
                    format!("template `{}` has no {}", t.name.text, missing.join(" and ")),
                )
                .with_label("incomplete template")
                .with_help(
                    "a template needs `channel NAME` and `message TYPE`; `status` defaults to draft and `version` to 1",
                ),
            );
            return;
        }
        let status = match status {
            None => TemplateStatus::Draft,
            Some(s) => match TemplateStatus::parse(&s.text) {
                Some(st) => st,
                None => {
                    let best = suggest::best(&s.text, ["draft", "published", "rejected"]);
                    let otherwise = "status is draft, published or rejected".to_string();
                    self.report(
                        Diagnostic::new(
                            Code::InvalidTemplate,
                            file,
                            s.span,
                            format!("unknown template status `{}`", s.text),
                        )
                        .with_label("not a status")
                        .with_suggestion(s.span, best, Some(otherwise)),
                    );
                    return;
                }
            },
        };
        let (Some(channel), Some(message)) = (channel, message) else { return };
        self.model.templates.insert(
            t.name.text.clone(),
            Template {
                name: t.name.text.clone(),
                channel: channel.text,
                message: message.text,
                status,
                version: version.unwrap_or(1),
                origin: Origin::Source(file, t.name.span),
            },
        );
        // Channel and message type are validated once every channel is known.
        self.template_spans.push((t.name.text.clone(), file, t.fields.clone()));
    }

    fn declare_registry(&mut self, registry: &[registry::RegistryTemplate]) {
        for r in registry {
            if let Some(prev) = self.model.templates.get(&r.name) {
                if let Origin::Source(file, span) = prev.origin {
                    let d = Diagnostic::new(
                        Code::DuplicateDeclaration,
                        file,
                        span,
                        format!("template `{}` is declared twice", r.name),
                    )
                    .with_label("also in the template registry")
                    .with_help("remove one of the two: the registry (--templates) also defines it");
                    self.report(d);
                }
                continue;
            }
            self.model.templates.insert(
                r.name.clone(),
                Template {
                    name: r.name.clone(),
                    channel: r.channel.clone(),
                    message: r.message_type.clone(),
                    status: r.status,
                    version: r.version,
                    origin: Origin::Registry,
                },
            );
        }
    }

    /// The workspace's one `policy` block, from whichever loaded file holds
    /// it; a second one is `invalid-frequency-cap` and left out.
    fn declare_policy(&mut self) {
        let ws = self.ws;
        let decls = ws.policies.iter().flat_map(|&file| {
            ws.tree(file).items.iter().filter_map(move |i| match i {
                ast::Item::Policy(p) => Some((file, p)),
                _ => None,
            })
        });
        let mut first: Option<(FileId, Span)> = None;
        for (file, p) in decls {
            if let Some((first_file, first_span)) = first {
                let d =
                    Diagnostic::new(Code::InvalidFrequencyCap, file, p.keyword, "a workspace has one `policy` block")
                        .with_label("second policy");
                let d = if first_file == file {
                    d.with_related(first_span, "first policy here").with_help("merge the caps into the first block")
                } else {
                    let src = ws.sources.get(first_file);
                    let lc = src.line_col(first_span.start as usize);
                    d.with_help(format!(
                        "the first is at {}:{}:{}; merge the caps into it",
                        src.path.display(),
                        lc.line,
                        lc.column
                    ))
                };
                self.report(d);
                continue;
            }
            first = Some((file, p.keyword));
            for c in &p.caps {
                if let Some(cap) = self.frequency_cap(file, c) {
                    self.model.policy.push(cap);
                }
            }
        }
    }

    /// One `frequency cap [CHANNEL] N per D`: N at least 1, D in (0, 365d],
    /// CHANNEL a declared channel.
    fn frequency_cap(&mut self, file: FileId, c: &ast::FrequencyCap) -> Option<FrequencyCap> {
        let mut ok = true;
        if let Some(ch) = &c.channel {
            if !self.model.channels.contains_key(&ch.text) {
                let best = suggest::best(&ch.text, self.model.channels.keys().map(String::as_str));
                self.report(
                    Diagnostic::new(Code::UnknownChannel, file, ch.span, format!("unknown channel `{}`", ch.text))
                        .with_label("no such channel")
                        .with_suggestion(ch.span, best, Some("caps name a declared channel, or none for all".into())),
                );
                ok = false;
            }
        }
        let count = u32::try_from(c.count.value).ok().filter(|n| *n >= 1);
        if count.is_none() {
            let message = if c.count.value == 0 {
                "a frequency cap of 0 would block every send".to_string()
            } else {
                format!("a frequency cap of {} is beyond what flowc counts", c.count.value)
            };
            self.report(
                Diagnostic::new(Code::InvalidFrequencyCap, file, c.count.span, message)
                    .with_label("out of range")
                    .with_help("a cap allows between 1 and 4294967295 sends per window"),
            );
        }
        let minutes = c.window.minutes();
        // A duration out of range was reported by the parser.
        if !c.window.out_of_range() && (minutes == 0 || minutes > MAX_CAP_WINDOW_MINUTES) {
            self.report(
                Diagnostic::new(
                    Code::InvalidFrequencyCap,
                    file,
                    c.window.span,
                    if minutes == 0 {
                        "a frequency cap's window must be longer than zero"
                    } else {
                        "a frequency cap's window can be at most 365 days"
                    },
                )
                .with_label(format!("{minutes} minutes"))
                .with_help("windows are between 1m and 365d, counted back from each send"),
            );
            ok = false;
        }
        let count = count?;
        (ok && !c.window.out_of_range()).then(|| FrequencyCap {
            channel: c.channel.as_ref().map(|n| n.text.clone()),
            count,
            window_minutes: minutes as i64,
        })
    }

    fn declare_pricing(&mut self, file: FileId, p: &ast::PricingDecl) {
        let from_stdlib = self.ws.is_stdlib(file);
        for e in &p.entries {
            let key = (e.channel.text.clone(), e.message.text.clone());
            if e.amount.text.split_once('.').is_some_and(|(_, frac)| frac.len() > 6) {
                self.report(
                    Diagnostic::new(Code::InvalidDeclaration, file, e.amount.span, "a price has at most 6 decimals")
                        .with_label("too precise")
                        .with_help("prices are kept in micro-euros"),
                );
                continue;
            }
            let Some(micros) = money_micros(&e.amount.text).filter(|m| crate::limits::price(*m)) else {
                self.report(
                    Diagnostic::new(Code::OutOfRange, file, e.amount.span, "price out of range")
                        .with_label("above 1000 EUR")
                        .with_help("one message costs at most 1000 EUR"),
                );
                continue;
            };
            if e.amount.currency.text != "EUR" {
                self.report(
                    Diagnostic::new(
                        Code::InvalidDeclaration,
                        file,
                        e.amount.currency.span,
                        format!("prices are in EUR, not {}", e.amount.currency.text),
                    )
                    .with_label("unsupported currency")
                    .with_help("the prepaid balance is kept in EUR"),
                );
                continue;
            }
            // User prices override the stdlib's; two user prices for one pair clash.
            if let Some((_, prev_file, prev_span)) = self.price_origins.get(&key) {
                if !self.ws.is_stdlib(*prev_file) && !from_stdlib {
                    let origin = Origin::Source(*prev_file, *prev_span);
                    self.duplicate(file, e.span, "price for", &format!("{}.{}", key.0, key.1), origin);
                    continue;
                }
            }
            self.price_origins.insert(key.clone(), (micros, file, e.span));
            self.model.pricing.insert(key, Price { micros });
        }
    }
}

impl<'a> Checker<'a> {
    fn validate_declarations(&mut self) {
        // Channel fallbacks name channels.
        let channels: Vec<(String, Option<String>, Origin)> =
            self.model.channels.values().map(|c| (c.name.clone(), c.fallback.clone(), c.origin)).collect();
        for (name, fallback, origin) in channels {
            let (Some(fb), Origin::Source(file, span)) = (fallback, origin) else { continue };
            if !self.model.channels.contains_key(&fb) || fb == name {
                let help = self.channel_help(&fb);
                self.report(
                    Diagnostic::new(
                        Code::UnknownChannel,
                        file,
                        span,
                        format!("channel `{name}` falls back to `{fb}`, which is not another declared channel"),
                    )
                    .with_help_opt(help),
                );
            }
        }
        // Templates use declared channel.message pairs.
        let templates = std::mem::take(&mut self.template_spans);
        for (name, file, fields) in &templates {
            let Some(t) = self.model.templates.get(name).cloned() else { continue };
            let span_of = |want: &str| {
                fields.iter().find_map(|f| match (f, want) {
                    (ast::TemplateField::Channel(n), "channel") | (ast::TemplateField::Message(n), "message") => {
                        Some(n.span)
                    }
                    _ => None,
                })
            };
            self.channel_message(
                *file,
                &t.channel,
                span_of("channel").unwrap_or_default(),
                &t.message,
                span_of("message").unwrap_or_default(),
            );
        }
        // Prices name declared channel.message pairs.
        type PriceAt = (i64, FileId, Span);
        let prices: Vec<((String, String), PriceAt)> =
            self.price_origins.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((ch, msg), (_, file, span)) in prices {
            if self.model.channels.get(&ch).is_some_and(|c| c.messages.contains_key(&msg)) {
                continue;
            }
            let help = self.channel_help(&ch);
            self.report(
                Diagnostic::new(
                    Code::UnknownMessageType,
                    file,
                    span,
                    format!("price for `{ch}.{msg}`, which no channel declares"),
                )
                .with_help_opt(help),
            );
        }
    }

    pub(crate) fn channel_help(&self, name: &str) -> Option<String> {
        suggest::help(name, self.model.channels.keys().map(String::as_str))
    }

    /// Checks a `channel.message` pair; true when both exist.
    pub(crate) fn channel_message(
        &mut self,
        file: FileId,
        channel: &str,
        cspan: Span,
        message: &str,
        mspan: Span,
    ) -> bool {
        let Some(ch) = self.model.channels.get(channel) else {
            let best = suggest::best(channel, self.model.channels.keys().map(String::as_str));
            let otherwise = format!("channels are {}", join(self.model.channels.keys()));
            self.report(
                Diagnostic::new(Code::UnknownChannel, file, cspan, format!("unknown channel `{channel}`"))
                    .with_label("no such channel")
                    .with_suggestion(cspan, best, Some(otherwise)),
            );
            return false;
        };
        if ch.messages.contains_key(message) {
            return true;
        }
        let best = suggest::best(message, ch.messages.keys().map(String::as_str));
        let otherwise = format!("`{channel}` has {}", join(ch.messages.keys()));
        self.report(
            Diagnostic::new(
                Code::UnknownMessageType,
                file,
                mspan,
                format!("channel `{channel}` has no message type `{message}`"),
            )
            .with_label("unknown message type")
            .with_suggestion(mspan, best, Some(otherwise)),
        );
        false
    }

    fn check_segments(&mut self) {
        let segs = std::mem::take(&mut self.segment_asts);
        // Declare names first so segments may refer to each other in any order.
        let mut declared: BTreeMap<String, Origin> = BTreeMap::new();
        let mut unique = Vec::new();
        for (file, s) in segs {
            if let Some(first) = declared.get(&s.name.text) {
                let first = *first;
                self.duplicate(file, s.name.span, "segment", &s.name.text, first);
                continue;
            }
            declared.insert(s.name.text.clone(), Origin::Source(file, s.name.span));
            unique.push((file, s));
        }
        self.segment_names = declared.keys().cloned().collect();
        // Segments by their place in `unique` (source order), and whom each uses.
        let index: HashMap<&str, usize> =
            unique.iter().enumerate().map(|(i, (_, s))| (s.name.text.as_str(), i)).collect();
        let mut uses: Vec<Vec<usize>> = Vec::with_capacity(unique.len());
        for (file, s) in &unique {
            let scope = expr::Scope::plain();
            let e = expr::condition(self, *file, &s.expr, &scope);
            uses.push(segment_refs(&e).iter().filter_map(|n| index.get(n.as_str()).copied()).collect());
            let origin = Origin::Source(*file, s.name.span);
            self.model.segments.insert(s.name.text.clone(), Segment { name: s.name.text.clone(), expr: e, origin });
        }
        // A segment that reaches itself would never finish evaluating. Each
        // cycle is reported once, at its first segment in source order.
        for members in cycles(&uses) {
            let first = members[0];
            let path = cycle_path(first, &members, &uses);
            let names = |ids: &[usize]| ids.iter().map(|&i| unique[i].1.name.text.clone()).collect::<Vec<_>>();
            let (file, s) = unique[first];
            let mut help = "break the cycle: a segment cannot contain itself".to_string();
            if members.len() + 1 > path.len() {
                help.push_str(&format!("; these segments all reach each other: {}", names(&members).join(", ")));
            }
            self.report(
                Diagnostic::new(
                    Code::InvalidDeclaration,
                    file,
                    s.name.span,
                    format!("segment `{}` refers to itself: {}", s.name.text, names(&path).join(" → ")),
                )
                .with_label("cyclic segment")
                .with_help(help),
            );
            for m in members {
                self.model.segments.remove(&unique[m].1.name.text);
            }
        }
    }

    pub(crate) fn severity_of_draft(&self) -> Severity {
        if self.opts.allow_draft {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

fn segment_refs(e: &TExpr) -> Vec<String> {
    let mut out = Vec::new();
    expr::walk(e, &mut |x| {
        if let TKind::InSegment(n) = &x.kind {
            out.push(n.clone());
        }
    });
    out
}

/// The cycles of the graph `uses` (node → nodes it uses): its strongly
/// connected components with more than one node, or one node using itself,
/// each sorted, in the order of their first node. Tarjan's algorithm, with an
/// explicit stack so a chain of thousands of segments does not recurse.
fn cycles(uses: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = uses.len();
    let (mut order, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut next_order) = (Vec::new(), 0);
    let mut out = Vec::new();
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        // (node, how many of its edges are done)
        let mut walk = vec![(root, 0usize)];
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut done)) = walk.last_mut() {
            if let Some(&w) = uses[v].get(*done) {
                *done += 1;
                if order[w] == UNSEEN {
                    order[w] = next_order;
                    low[w] = next_order;
                    next_order += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    walk.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            walk.pop();
            if let Some(&(parent, _)) = walk.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || uses[v].contains(&v) {
                    component.sort_unstable();
                    out.push(component);
                }
            }
        }
    }
    out.sort_unstable_by_key(|c| c[0]);
    out
}

/// A shortest path from `start` back to itself inside one cycle's members.
fn cycle_path(start: usize, members: &[usize], uses: &[Vec<usize>]) -> Vec<usize> {
    let inside: std::collections::HashSet<usize> = members.iter().copied().collect();
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &uses[v] {
            if w == start {
                let mut path = vec![v];
                while let Some(&p) = path.last().and_then(|l| came_from.get(l)) {
                    path.push(p);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if w != start && inside.contains(&w) && !came_from.contains_key(&w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

pub(crate) fn join<'s>(names: impl Iterator<Item = &'s String>) -> String {
    names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// `0.0450` → 45_000 micro-euros, exactly.
pub fn money_micros(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 6 {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

/// Every unit of a workspace checked: one model per root file, and all
/// diagnostics (syntax and import ones included) deduplicated and sorted.
pub struct Analysis {
    pub models: Vec<(FileId, Model)>,
    pub diags: Vec<Diagnostic>,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}

pub fn check_all(ws: &Workspace, registry: &[registry::RegistryTemplate], opts: &CheckOptions) -> Analysis {
    let mut diags = ws.diags.clone();
    let mut seen: std::collections::HashSet<Diagnostic> = diags.iter().cloned().collect();
    let mut models = Vec::with_capacity(ws.units.len());
    for unit in &ws.units {
        let (model, unit_diags) = check(ws, unit, registry, opts);
        for d in unit_diags {
            if seen.insert(d.clone()) {
                diags.push(d);
            }
        }
        models.push((unit.root, model));
    }
    duplicate_campaigns(ws, &models, &mut diags);
    lints::apply(ws, &mut diags, &opts.lints);
    crate::diag::sort(&mut diags);
    Analysis { models, diags }
}

/// A campaign id is the campaign's key in the database, so two files of one
/// workspace that declare the same id would replace each other at launch.
fn duplicate_campaigns(ws: &Workspace, models: &[(FileId, Model)], diags: &mut Vec<Diagnostic>) {
    let mut first: std::collections::HashMap<&str, (FileId, Span)> = std::collections::HashMap::new();
    for (root, model) in models {
        // Where each campaign's name is written, found once per file.
        let mut spans: std::collections::HashMap<&str, Span> = std::collections::HashMap::new();
        for item in &ws.tree(*root).items {
            if let crate::syntax::ast::Item::Campaign(c) = item {
                spans.entry(c.name.text.as_str()).or_insert(c.name.span);
            }
        }
        for c in model.campaigns.iter().filter(|c| c.file == *root) {
            let span = spans.get(c.name.as_str()).copied().unwrap_or_default();
            match first.get(c.name.as_str()) {
                Some(&(file, _)) if file == c.file => {}
                Some(&(file, at)) => {
                    let other = ws.sources.get(file);
                    let line = other.line_col(at.start as usize).line;
                    diags.push(
                        Diagnostic::new(Code::DuplicateCampaign, c.file, span, format!("campaign `{}` is also declared in `{}` (line {line})", c.name, other.path.display()))
                            .with_label("same id as another file's campaign")
                            .with_help("the id is the campaign's key in the database: launching one replaces the other; rename one of them"),
                    );
                }
                None => {
                    first.insert(c.name.as_str(), (c.file, span));
                }
            }
        }
    }
}
