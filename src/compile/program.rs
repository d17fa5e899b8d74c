//! The compiled program: a flat array of instructions with explicit
//! successors, and conditions resolved to slots.
//!
//! This is a persisted format (`flowc compile --emit binary|json`, the
//! runtime's campaign table), so its shape is a compatibility promise: change
//! it only with `FORMAT_VERSION`.

use crate::check::model::{CmpOp, Engagement, StepId};
use serde::{Deserialize, Serialize};

/// Index of an instruction in `Program::nodes`. Only meaningful with its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeIdx(pub u32);

impl NodeIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Index into `Program::fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldSlot(pub u16);

/// Index into `Program::segments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SegmentIdx(pub u16);

/// The content hash of a program, hex; the campaign's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub campaign: String,
    pub display_name: Option<String>,
    /// Hash of everything below except source positions: reformatting a
    /// file keeps its version, any change of meaning gives a new one.
    pub version: Version,
    pub trigger: Trigger,
    pub audience: Option<Cond>,
    /// Contact fields the conditions read, by slot.
    pub fields: Vec<FieldDef>,
    /// Segments the conditions use (transitively), by index.
    pub segments: Vec<SegmentDef>,
    /// Instruction 0 is the entry.
    pub nodes: Vec<Node>,
    // The fields below came with format version 2; their defaults are what
    // a version-1 program meant, and a program that keeps all of them at
    // the default hashes to the version it had before (codec::content_hash).
    /// `goal event … within D`: what counts as a conversion.
    #[serde(default)]
    pub goal: Option<Goal>,
    /// `exit when …` criteria, in source order; an execution that meets one
    /// completes with exit reason `exit:<index>` (1-based).
    #[serde(default)]
    pub exits: Vec<Exit>,
    /// What an ineligible send does to the execution.
    #[serde(default)]
    pub on_ineligible: OnIneligible,
    // Format version 3: the delivery rules (and `Op::Set`). The default is
    // what a format-2 program meant.
    /// Quiet hours, re-entry, rate limit and the workspace's frequency caps.
    #[serde(default)]
    pub delivery: Delivery,
}

/// The delivery rules of a campaign (LANGUAGE.md §9.3). `Delivery::default()`
/// is the v0.1 behaviour: no quiet hours, enrolled at most once, no rate
/// limit, no caps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `quiet hours HH:MM to HH:MM [then skip]`.
    pub quiet_hours: Option<QuietHours>,
    /// `reentry once | always | after D`.
    pub reentry: Reentry,
    /// `rate limit N per second|minute|hour`.
    pub rate_limit: Option<RateLimit>,
    /// The workspace's `policy { frequency cap … }`, compiled into every
    /// campaign of the workspace: the caps a campaign obeys are the ones it
    /// was compiled with, counted over the sends of every campaign in the
    /// database.
    pub frequency_caps: Vec<FrequencyCap>,
}

impl Delivery {
    pub fn is_default(&self) -> bool {
        *self == Delivery::default()
    }
}

/// A daily window in the contact's own time zone, in minutes after local
/// midnight. `start > end` wraps midnight (`21:00 to 08:00`); `start == end`
/// is refused by the checker (`invalid-quiet-hours`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start_minute: u16,
    pub end_minute: u16,
    pub then: QuietThen,
}

/// What a send that falls in the quiet hours does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuietThen {
    /// Held until the window ends in the contact's time zone.
    #[default]
    Hold,
    /// `then skip`: skipped with reason `quiet-hours`; the execution goes on.
    Skip,
}

/// Whether a contact may enter the campaign again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// At most one execution per contact, ever (the v0.1 rule).
    #[default]
    Once,
    /// A new execution whenever the trigger fires, even while one runs.
    Always,
    /// Again only `minutes` after the contact's previous execution started.
    After { minutes: i64 },
}

/// `rate limit N per UNIT`: this campaign's sends never exceed `count` in
/// any window of one `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub count: u32,
    pub per: RatePer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatePer {
    Second,
    Minute,
    Hour,
}

impl RatePer {
    pub fn seconds(self) -> i64 {
        match self {
            RatePer::Second => 1,
            RatePer::Minute => 60,
            RatePer::Hour => 3600,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            RatePer::Second => "second",
            RatePer::Minute => "minute",
            RatePer::Hour => "hour",
        }
    }
}

/// `frequency cap [CHANNEL] N per D`: at most `count` consent-requiring
/// sends delivered to a contact in any rolling `window_minutes`, over every
/// campaign in the database (over `channel` only, when given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub channel: Option<String>,
    pub count: u32,
    pub window_minutes: i64,
}

/// The value a `set` step writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetValue {
    /// A value of the field's type (`lifetime_value + 10`, `"gold"`, `now`).
    Operand { operand: Operand },
    /// A condition, for a `bool` field (`set vip = lifetime_value > 100`).
    Cond { cond: Cond },
}

/// An event of the contact that a condition waits for or counts: `NAME
/// [where …]`. `filter` reads the event's properties through `props`
/// (`Operand::Prop` indexes it), like `Cond::Happened`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMatch {
    pub event: String,
    pub props: Vec<String>,
    #[serde(deserialize_with = "guarded")]
    pub filter: Vec<Cond>,
}

/// `goal event NAME [where …] within D`: a contact converts when such an
/// event happens within `within_minutes` of entering the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub event: EventMatch,
    pub within_minutes: i64,
}

/// One `exit when …` criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// `exit when event NAME [where …]`: such an event after the execution
    /// entered the campaign; a waiting execution is woken to leave.
    Event { event: EventMatch },
    /// `exit when EXPR`: a state condition, tried before every step.
    State { cond: Cond },
}

/// `on ineligible skip | continue` (a campaign setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnIneligible {
    /// The seed's rule: the execution ends `skipped` with the send's reason.
    #[default]
    Skip,
    /// The step records its skip reason and the execution goes on at the
    /// send's successor (what Braze and Customer.io do).
    Continue,
}

/// One `when` arm of a `wait until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitArm {
    pub on: WaitOn,
    /// The arm's first instruction: a `Jump` carrying the arm's step id
    /// (`<wait>/when1`), so reports count who took it.
    pub target: NodeIdx,
}

/// What a `when` arm waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOn {
    /// `when event NAME [where …]`: holds once such an event for the contact
    /// arrives at or after the moment the execution entered the wait.
    Event { event: EventMatch },
    /// Any other condition (attributes, tags, engagement, segments): tried
    /// on arrival and again whenever something it reads may have changed.
    State { cond: Cond },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Bool,
    Datetime,
    Date,
    Duration,
    Timezone,
    SetString,
    Enum(Vec<String>),
}

impl FieldType {
    /// The stored type of a declared field; `None` for types no field can be
    /// declared with (the checker has already reported such a field).
    pub fn declared(t: &crate::check::model::Type) -> Option<FieldType> {
        use crate::check::model::Type;
        Some(match t {
            Type::String => FieldType::String,
            Type::Number => FieldType::Number,
            Type::Bool => FieldType::Bool,
            Type::DateTime => FieldType::Datetime,
            Type::Date => FieldType::Date,
            Type::Duration => FieldType::Duration,
            Type::Timezone => FieldType::Timezone,
            Type::SetString => FieldType::SetString,
            Type::Enum(v) => FieldType::Enum(v.to_vec()),
            Type::None | Type::Unknown => return None,
        })
    }

    /// Back to the checker's type, to validate values against it.
    pub fn checked(self) -> crate::check::model::Type {
        use crate::check::model::Type;
        match self {
            FieldType::String => Type::String,
            FieldType::Number => Type::Number,
            FieldType::Bool => Type::Bool,
            FieldType::Datetime => Type::DateTime,
            FieldType::Date => Type::Date,
            FieldType::Duration => Type::Duration,
            FieldType::Timezone => Type::Timezone,
            FieldType::SetString => Type::SetString,
            FieldType::Enum(v) => Type::Enum(v.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDef {
    pub name: String,
    pub cond: Cond,
}

/// How `Trigger::Scheduled` writes its local wall time (`2026-12-01T09:00`).
pub const SCHEDULE_FORMAT: &str = "%Y-%m-%dT%H:%M";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Local wall-clock time in `zone`; the runtime resolves it across DST.
    Scheduled {
        at: String,
        zone: String,
    },
    Event {
        event: String,
        props: Vec<String>,
        filter: Option<Cond>,
    },
    Manual,
    Api,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: StepId,
    /// Source position: 1-based line, and byte span. Not part of the version.
    pub line: u32,
    pub span: (u32, u32),
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendTarget {
    pub channel: String,
    pub message: String,
    pub template: String,
    pub requires_consent: bool,
    pub requires_capability: bool,
    /// Price per delivered message, in micro-euros.
    pub price_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// Hundredths of a percent; a program's variants sum to 10,000.
    pub weight_bp: u32,
    pub target: NodeIdx,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Send {
        target: SendTarget,
        fallback: Option<SendTarget>,
        next: NodeIdx,
    },
    Wait {
        minutes: i64,
        next: NodeIdx,
    },
    Branch {
        cond: Cond,
        then: NodeIdx,
        otherwise: NodeIdx,
    },
    Split {
        name: String,
        variants: Vec<Variant>,
    },
    Tag {
        add: bool,
        tag: String,
        next: NodeIdx,
    },
    /// Marks an empty branch or variant (a holdout), so it has a step id that
    /// reports can count.
    Jump {
        target: NodeIdx,
    },
    End,
    /// (Last, so programs of format version 1 decode unchanged.)
    /// `wait until { when … { } … timeout D { } }`: arms tried in order, the
    /// first that holds wins; after `timeout_minutes` in the wait, `timeout`.
    /// Every arm's block ends by jumping to the step after the wait.
    WaitUntil {
        arms: Vec<WaitArm>,
        timeout_minutes: i64,
        /// The timeout's first instruction: a `Jump` with id `<wait>/timeout`.
        timeout: NodeIdx,
    },
    /// (Format version 3.) `set FIELD = EXPR`: writes a declared, writable
    /// contact attribute; `slot` is the field among `Program.fields`, so the
    /// steps after it read the new value.
    Set {
        field: String,
        slot: FieldSlot,
        value: SetValue,
        next: NodeIdx,
    },
}

impl Op {
    /// The step's kind in the language's words (`if`, `ab_test`), as the run
    /// report and the estimate print it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Send { .. } => "send",
            Op::Wait { .. } => "wait",
            Op::Branch { .. } => "if",
            Op::Split { .. } => "ab_test",
            Op::Tag { .. } => "tag",
            Op::WaitUntil { .. } => "wait_until",
            Op::Set { .. } => "set",
            Op::Jump { .. } => "jump",
            Op::End => "end",
        }
    }

    /// The instructions this one can continue at.
    pub fn successors(&self) -> Vec<NodeIdx> {
        match self {
            Op::Send { next, .. } | Op::Wait { next, .. } | Op::Tag { next, .. } | Op::Set { next, .. } => {
                vec![*next]
            }
            Op::Jump { target } => vec![*target],
            Op::Branch { then, otherwise, .. } => vec![*then, *otherwise],
            Op::Split { variants, .. } => variants.iter().map(|v| v.target).collect(),
            Op::WaitUntil { arms, timeout, .. } => arms.iter().map(|a| a.target).chain([*timeout]).collect(),
            Op::End => vec![],
        }
    }
}

/// A resolved condition: names are slots, segments are indices, `now - 7d`
/// is folded. Evaluating it allocates nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cond {
    Const {
        value: bool,
    },
    And {
        #[serde(deserialize_with = "guarded")]
        all: Vec<Cond>,
    },
    Or {
        #[serde(deserialize_with = "guarded")]
        any: Vec<Cond>,
    },
    Not {
        #[serde(deserialize_with = "guarded")]
        cond: Box<Cond>,
    },
    Cmp {
        op: CmpOpRepr,
        lhs: Operand,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        list: Vec<Const>,
    },
    Has {
        set: Operand,
        elem: Operand,
    },
    Consent {
        channel: String,
    },
    Capable {
        channel: String,
    },
    Engaged {
        kind: EngagementRepr,
        step: StepId,
    },
    Happened {
        event: String,
        within_minutes: Option<i64>,
        props: Vec<String>,
        #[serde(deserialize_with = "guarded")]
        filter: Vec<Cond>,
    },
    InSegment {
        segment: SegmentIdx,
    },
}

/// `CmpOp` as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOpRepr {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl From<CmpOp> for CmpOpRepr {
    fn from(op: CmpOp) -> Self {
        match op {
            CmpOp::Eq => CmpOpRepr::Eq,
            CmpOp::Ne => CmpOpRepr::Ne,
            CmpOp::Lt => CmpOpRepr::Lt,
            CmpOp::Le => CmpOpRepr::Le,
            CmpOp::Gt => CmpOpRepr::Gt,
            CmpOp::Ge => CmpOpRepr::Ge,
        }
    }
}

impl CmpOpRepr {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOpRepr::Eq => "==",
            CmpOpRepr::Ne => "!=",
            CmpOpRepr::Lt => "<",
            CmpOpRepr::Le => "<=",
            CmpOpRepr::Gt => ">",
            CmpOpRepr::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngagementRepr {
    Delivered,
    Opened,
    Clicked,
}

impl From<Engagement> for EngagementRepr {
    fn from(e: Engagement) -> Self {
        match e {
            Engagement::Delivered => EngagementRepr::Delivered,
            Engagement::Opened => EngagementRepr::Opened,
            Engagement::Clicked => EngagementRepr::Clicked,
        }
    }
}

impl EngagementRepr {
    pub fn as_str(self) -> &'static str {
        match self {
            EngagementRepr::Delivered => "delivered",
            EngagementRepr::Opened => "opened",
            EngagementRepr::Clicked => "clicked",
        }
    }
    /// The engagement event a provider raises.
    pub fn event(self) -> &'static str {
        match self {
            EngagementRepr::Delivered => "message.delivered",
            EngagementRepr::Opened => "message.opened",
            EngagementRepr::Clicked => "message.clicked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operand {
    Field {
        slot: FieldSlot,
    },
    /// A property of the event being matched (trigger `where`, `happened … where`), by index into its `props`.
    Prop {
        index: u16,
    },
    Const {
        value: Const,
    },
    /// `now + offset_minutes`.
    Now {
        offset_minutes: i64,
    },
    /// A field or property plus a constant offset (`created_at + 7d`).
    Offset {
        #[serde(deserialize_with = "guarded")]
        base: Box<Operand>,
        offset_minutes: i64,
    },
    /// Numeric sums that could not be folded (`a + b - 3`).
    Sum {
        #[serde(deserialize_with = "guarded")]
        terms: Vec<(bool, Operand)>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Const {
    Bool(bool),
    Number(f64),
    Str(String),
    /// Minutes since the Unix epoch, UTC.
    Datetime(i64),
    /// Days since the Unix epoch.
    Date(i64),
    /// Minutes.
    Duration(i64),
    Enum(String),
    None,
}

/// Deepest condition nesting a loaded program may have. The compiler stays far
/// below it (the parser's limit is 64); a crafted file past it is refused
/// instead of exhausting the stack while decoding.
pub const MAX_COND_DEPTH: u32 = 256;

thread_local! {
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Deserializes a recursive field, counting how deep the decoder is.
fn guarded<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let depth = DEPTH.with(|c| {
        let v = c.get() + 1;
        c.set(v);
        v
    });
    let result = if depth > MAX_COND_DEPTH {
        Err(serde::de::Error::custom(format!("conditions nest deeper than {MAX_COND_DEPTH} levels")))
    } else {
        T::deserialize(d)
    };
    DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
    result
}
