//! Diagnostics as plain data: stable codes, severities, spans and help text.
//!
//! Every layer reports through [`Diagnostic`]; only `diag::render` knows how
//! they look to people (miette) and to machines (JSON, SARIF, GitHub).

pub mod excerpt;
pub mod render;

use crate::source::{FileId, Span};

macro_rules! codes {
    ($($variant:ident = $text:literal, $sev:ident, $summary:literal;)*) => {
        /// The stable diagnostic codes (docs/diagnostics.md is generated from this table).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }
            /// The severity the contract gives this code before flags change it.
            pub fn default_severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
            pub fn parse(s: &str) -> Option<Code> {
                match s { $($text => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    Syntax = "syntax", Error, "the text does not parse";
    UnknownTemplate = "unknown-template", Error, "a `send` names a template that is not declared";
    ChannelMismatch = "channel-mismatch", Error, "the template's channel differs from the step's";
    MessageTypeMismatch = "message-type-mismatch", Error, "the template's message type differs from the step's";
    UnknownMessageType = "unknown-message-type", Error, "the channel has no such message type";
    UnknownChannel = "unknown-channel", Error, "no such channel";
    TemplateNotPublished = "template-not-published", Error, "a template in draft or rejected status is referenced";
    InvalidFallback = "invalid-fallback", Error, "a fallback on a channel without capability rules, or to the wrong channel";
    MissingFallback = "missing-fallback", Warning, "a `send` on a capability channel without `fallback`";
    UnknownSegment = "unknown-segment", Error, "no segment of that name is declared";
    UnknownAttribute = "unknown-attribute", Error, "no contact field or event property of that name is declared";
    UnknownEvent = "unknown-event", Error, "no event of that name is declared";
    TypeMismatch = "type-mismatch", Error, "an expression compares or combines incompatible types";
    UnknownEnumValue = "unknown-enum-value", Error, "a value that is not in the attribute's enum";
    AbVariantCount = "ab-variant-count", Error, "an `ab_test` with fewer than 2 or more than 4 variants";
    AbWeights = "ab-weights", Error, "variant weights that do not sum to 100, or a weight of 0";
    InvalidDuration = "invalid-duration", Error, "a wait, a `wait until` timeout or a `reentry after` delay outside (0, 365d]";
    UnknownTimezone = "unknown-timezone", Error, "not an IANA time zone";
    DuplicateLabel = "duplicate-label", Error, "a step label used twice in one campaign";
    DuplicateDeclaration = "duplicate-declaration", Error, "a name declared twice";
    UnknownStep = "unknown-step", Error, "an engagement predicate names no labelled `send`";
    StepNotDominating = "step-not-dominating", Warning, "an engagement predicate names a `send` that is not on every path to it";
    StepNotBefore = "step-not-before", Error, "an engagement predicate names a `send` that cannot have run before it (later, or on another branch)";
    EngagementTooEarly = "engagement-too-early", Warning, "an engagement predicate right after its `send`, with no `wait` between them";
    UnusedAllow = "unused-allow", Warning, "a `// flowc: allow(…)` comment that silences nothing";
    DuplicateCampaign = "duplicate-campaign", Error, "the same campaign id in two files of one workspace";
    ScheduleInPast = "schedule-in-past", Warning, "a scheduled trigger whose time has already passed";
    Unreachable = "unreachable", Warning, "steps after `end`";
    MissingTrigger = "missing-trigger", Error, "a campaign without a trigger";
    NoSend = "no-send", Warning, "a campaign that sends nothing";
    InvalidTemplate = "invalid-template", Error, "a template declaration or registry entry that is incomplete or malformed";
    InvalidDeclaration = "invalid-declaration", Error, "a declaration that breaks a rule of its own kind (types, channels, prices, a rate limit of 0)";
    ImportError = "import-error", Error, "an import that cannot be read, or that forms a cycle";
    UnknownFunction = "unknown-function", Error, "a predicate call that is not one of consent, capable, opened, clicked, delivered, in_segment";
    DuplicateSetting = "duplicate-setting", Error, "a campaign setting (`name`, `trigger`, `audience`, `on ineligible`, `quiet hours`, `reentry`, `rate limit`) given twice";
    MissingTimeout = "missing-timeout", Error, "a `wait until` without `timeout`";
    InvalidGoal = "invalid-goal", Error, "more than one `goal`, or a goal window outside (0, 90d]";
    UnreachableArm = "unreachable-arm", Warning, "a `when` arm after one that always holds";
    MissingQuietHours = "missing-quiet-hours", Warning, "a campaign that sends consent-requiring `sms` or `whatsapp` messages without quiet hours";
    InvalidQuietHours = "invalid-quiet-hours", Error, "quiet hours whose times are not `HH:MM` (00:00–23:59), or whose start equals their end";
    InvalidFrequencyCap = "invalid-frequency-cap", Error, "a frequency cap of 0, a window outside (0, 365d], or a second `policy` block";
    ReadonlyField = "readonly-field", Error, "a `set` on `id`, `created_at`, `tags` or an undeclared field";
    OutOfRange = "out-of-range", Error, "a number, duration, date, weight or price beyond what flowc can represent";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Replace the text at `span` (in the diagnostic's file) with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fix {
    pub span: Span,
    pub replacement: String,
}

impl Fix {
    pub fn replace(span: Span, replacement: impl Into<String>) -> Fix {
        Fix { span, replacement: replacement.into() }
    }
}

/// One finding: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub file: FileId,
    pub span: Span,
    pub message: String,
    /// Text of the primary label; the message is used when absent.
    pub label: Option<String>,
    pub help: Option<String>,
    /// A machine-applicable fix: `render` shows it as help ("did you mean
    /// `x`?") when there is no other help; the language server offers it as
    /// a code action.
    pub fix: Option<Fix>,
    /// Secondary locations in the same file ("first declared here").
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.default_severity(),
            file,
            span,
            message: message.into(),
            label: None,
            help: None,
            fix: None,
            related: Vec::new(),
        }
    }
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
    pub fn with_help_opt(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }
    /// A did-you-mean with its replacement; `None` leaves the diagnostic as is.
    pub fn with_fix(mut self, fix: Option<Fix>) -> Diagnostic {
        self.fix = fix;
        self
    }
    /// A did-you-mean: with a close `best` name, the fix replacing `span` by
    /// it (which `render` shows as the help); without one, `otherwise` as help.
    pub fn with_suggestion(self, span: Span, best: Option<&str>, otherwise: Option<String>) -> Diagnostic {
        match best {
            Some(name) => self.with_fix(Some(Fix::replace(span, name))),
            None => self.with_help_opt(otherwise),
        }
    }
    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by file, position, then code, so output is stable.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| (a.file, a.span.start, a.code, &a.message).cmp(&(b.file, b.span.start, b.code, &b.message)));
}
