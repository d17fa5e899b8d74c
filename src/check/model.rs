//! The checked model: resolved, typed declarations and campaigns.
//!
//! This is the checker's public result and the only thing the compiler and
//! the language server read. Names here are resolved: a `send` knows its
//! channel, message type and template; an expression knows each operand's type
//! and whether a name is a contact field, an event property or an enum value.

use crate::source::{FileId, Span};
/// The operators a checked expression keeps are the syntax tree's own: the
/// model carries them so later layers name them through the model.
pub use crate::syntax::ast::{ArithOp, CmpOp, QuietThen, RatePer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a declaration was written: a file span, or the template registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Source(FileId, Span),
    Registry,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub channels: BTreeMap<String, Channel>,
    pub templates: BTreeMap<String, Template>,
    pub contact: BTreeMap<String, Field>,
    pub events: BTreeMap<String, Event>,
    pub segments: BTreeMap<String, Segment>,
    /// Price per send in micro-euros, keyed by (channel, message type).
    pub pricing: BTreeMap<(String, String), Price>,
    /// The workspace's `policy { frequency cap … }` (every loaded file's,
    /// not only this unit's): empty without a policy.
    pub policy: Vec<FrequencyCap>,
    pub campaigns: Vec<Campaign>,
}

impl Model {
    /// The consent-requiring (channel, message type) pairs declared.
    pub fn consent_messages(&self) -> std::collections::BTreeSet<(String, String)> {
        self.channels
            .values()
            .flat_map(|c| {
                c.messages.iter().filter(|(_, m)| m.requires_consent).map(|(name, _)| (c.name.clone(), name.clone()))
            })
            .collect()
    }
}

/// `frequency cap [CHANNEL] N per D`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequencyCap {
    pub channel: Option<String>,
    pub count: u32,
    pub window_minutes: i64,
}

/// A campaign's delivery settings; the default is the v0.1 behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub quiet_hours: Option<QuietHours>,
    pub reentry: Reentry,
    pub rate_limit: Option<RateLimit>,
}

/// `quiet hours START to END [then skip]`, in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start_minute: u16,
    pub end_minute: u16,
    pub then: QuietThen,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reentry {
    #[default]
    Once,
    Always,
    After {
        minutes: i64,
    },
}

/// `rate limit N per UNIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: RatePer,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub requires_capability: bool,
    pub fallback: Option<String>,
    pub messages: BTreeMap<String, MessageType>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct MessageType {
    pub requires_consent: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateStatus {
    Draft,
    Published,
    Rejected,
}

impl TemplateStatus {
    pub fn parse(s: &str) -> Option<TemplateStatus> {
        match s {
            "draft" => Some(TemplateStatus::Draft),
            "published" => Some(TemplateStatus::Published),
            "rejected" => Some(TemplateStatus::Rejected),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Draft => "draft",
            TemplateStatus::Published => "published",
            TemplateStatus::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub channel: String,
    pub message: String,
    pub status: TemplateStatus,
    pub version: u32,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    String,
    Number,
    Bool,
    DateTime,
    Date,
    Duration,
    Timezone,
    SetString,
    Enum(Arc<[String]>),
    /// The `none` literal: compares only with optional values.
    None,
    /// The type of an expression already reported as wrong; fits anywhere so
    /// one mistake yields one diagnostic.
    Unknown,
}

impl Type {
    pub fn describe(&self) -> String {
        match self {
            Type::String => "string".into(),
            Type::Number => "number".into(),
            Type::Bool => "bool".into(),
            Type::DateTime => "datetime".into(),
            Type::Date => "date".into(),
            Type::Duration => "duration".into(),
            Type::Timezone => "timezone".into(),
            Type::SetString => "set<string>".into(),
            Type::Enum(v) => format!("enum({})", v.join(", ")),
            Type::None => "none".into(),
            Type::Unknown => "unknown".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub fields: BTreeMap<String, Field>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub expr: TExpr,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub micros: i64,
}

impl Price {
    pub fn euros(self) -> f64 {
        self.micros as f64 / 1_000_000.0
    }
}

/// A typed, resolved expression.
#[derive(Debug, Clone, PartialEq)]
pub struct TExpr {
    pub kind: TKind,
    pub ty: Type,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Number(f64),
    Str(String),
    /// Minutes since the Unix epoch, UTC.
    DateTime(i64),
    /// Days since the Unix epoch.
    Date(i64),
    /// Minutes.
    Duration(i64),
    Enum(String),
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Delivered,
    Opened,
    Clicked,
}

impl Engagement {
    pub fn as_str(self) -> &'static str {
        match self {
            Engagement::Delivered => "delivered",
            Engagement::Opened => "opened",
            Engagement::Clicked => "clicked",
        }
    }
    pub fn event(self) -> &'static str {
        match self {
            Engagement::Delivered => "message.delivered",
            Engagement::Opened => "message.opened",
            Engagement::Clicked => "message.clicked",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TKind {
    And(Vec<TExpr>),
    Or(Vec<TExpr>),
    Not(Box<TExpr>),
    Compare {
        op: CmpOp,
        lhs: Box<TExpr>,
        rhs: Box<TExpr>,
    },
    In {
        lhs: Box<TExpr>,
        list: Vec<TExpr>,
    },
    Has {
        set: Box<TExpr>,
        elem: Box<TExpr>,
    },
    /// `first ± rest…` over numbers, datetimes, dates and durations.
    Arith {
        first: Box<TExpr>,
        rest: Vec<(ArithOp, TExpr)>,
    },
    ContactField(String),
    EventProp(String),
    Const(Value),
    Now,
    Consent(String),
    Capable(String),
    Engaged {
        kind: Engagement,
        step: String,
    },
    Happened {
        event: String,
        within_minutes: Option<i64>,
        filter: Vec<TExpr>,
    },
    InSegment(String),
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub display_name: Option<String>,
    pub trigger: Trigger,
    pub audience: Option<TExpr>,
    pub goal: Option<Goal>,
    /// `exit when …` criteria in source order.
    pub exits: Vec<ArmCond>,
    pub on_ineligible: OnIneligible,
    pub delivery: Delivery,
    pub steps: Vec<Step>,
    pub file: FileId,
    pub span: Span,
    pub name_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// `at` is the local wall-clock time in `zone`; resolving it is the runtime's job (DST).
    Scheduled {
        at: chrono::NaiveDateTime,
        zone: String,
    },
    Event {
        event: String,
        filter: Option<TExpr>,
    },
    Manual,
    Api,
    /// A campaign without a trigger (already reported as `missing-trigger`).
    Missing,
}

/// `event NAME [where …]`: the filter reads the event's properties
/// (`TKind::EventProp`), and-joined.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMatch {
    pub event: String,
    pub filter: Vec<TExpr>,
}

/// What a `when` arm or an `exit when` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum ArmCond {
    /// Such an event arriving after the execution entered the wait (or the campaign).
    Event(EventMatch),
    /// A state condition (bool) over the contact.
    State(TExpr),
}

/// `goal event NAME [where …] within D`.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub event: EventMatch,
    pub within_minutes: i64,
}

/// `on ineligible skip | continue`; `Skip` when unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnIneligible {
    #[default]
    Skip,
    Continue,
}

/// A stable step id: the label, else a structural path like `welcome/3/else/1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

// Maps keyed by step id are looked up by `&str` (derived `Ord`/`Hash` of a
// one-field newtype agree with the `String`'s, as `Borrow` requires).
impl std::borrow::Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for StepId {
    fn from(s: &str) -> StepId {
        StepId(s.to_string())
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: StepId,
    pub labelled: bool,
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendTarget {
    pub channel: String,
    pub message: String,
    pub template: String,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Send {
        target: SendTarget,
        fallback: Option<SendTarget>,
        explicit_no_fallback: bool,
    },
    Wait {
        minutes: i64,
    },
    If {
        arms: Vec<(TExpr, Vec<Step>)>,
        otherwise: Vec<Step>,
    },
    AbTest {
        name: String,
        variants: Vec<Variant>,
    },
    Tag {
        add: bool,
        tag: String,
    },
    End,
    /// `wait until`: arm `k` (1-based) has step id `<id>/when<k>`, the
    /// timeout `<id>/timeout`.
    WaitUntil {
        arms: Vec<WaitArm>,
        timeout_minutes: i64,
        timeout: Vec<Step>,
    },
    /// `set FIELD = EXPR`: `value` has the field's type (or is `none` for an
    /// optional field).
    Set {
        field: String,
        value: TExpr,
    },
}

#[derive(Debug, Clone)]
pub struct WaitArm {
    pub on: ArmCond,
    pub steps: Vec<Step>,
    /// The arm's condition as written (`event order.completed where …`).
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub weight_bp: u32,
    pub steps: Vec<Step>,
}
