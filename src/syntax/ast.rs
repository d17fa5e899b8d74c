//! The typed syntax tree: one plain-data node per construct, each with its byte span.
//!
//! The tree keeps the source's shape (parentheses, written order of fields,
//! the parts of a duration) so that `fmt` can print it back and `lsp` can
//! point into it. It knows nothing of types, the stdlib, or the runtime.

use crate::source::Span;

/// An identifier or dotted name with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A string literal, already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    pub value: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    pub items: Vec<Item>,
    /// Every comment of the file in source order; trivia for the parser, kept for `fmt`.
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    pub block: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Import(Import),
    Template(Template),
    Contact(ContactDecl),
    Event(EventDecl),
    Segment(SegmentDecl),
    Channel(ChannelDecl),
    Pricing(PricingDecl),
    Policy(PolicyDecl),
    Campaign(Campaign),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Template(i) => i.span,
            Item::Contact(i) => i.span,
            Item::Event(i) => i.span,
            Item::Segment(i) => i.span,
            Item::Channel(i) => i.span,
            Item::Pricing(i) => i.span,
            Item::Policy(i) => i.span,
            Item::Campaign(i) => i.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub path: StrLit,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: Name,
    /// Fields in written order; duplicates are the checker's business.
    pub fields: Vec<TemplateField>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplateField {
    Channel(Name),
    Message(Name),
    Status(Name),
    Version { value: u32, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactDecl {
    pub fields: Vec<FieldDecl>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    pub name: Name,
    pub fields: Vec<FieldDecl>,
    /// `event x.y` without braces; kept so `fmt` prints it back the same way.
    pub has_body: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    pub name: Name,
    pub ty: TypeExpr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    pub kind: TypeKind,
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// `string`, `number`, … (validated by the checker).
    Named(Name),
    Set(Name),
    Enum(Vec<Name>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDecl {
    pub name: Name,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDecl {
    pub name: Name,
    pub entries: Vec<ChannelEntry>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEntry {
    RequiresCapability(Span),
    Fallback(Name),
    Message { name: Name, requires_consent: bool, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PricingDecl {
    pub entries: Vec<PriceEntry>,
    pub span: Span,
}

/// `policy { frequency cap … }`: the workspace's delivery policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDecl {
    pub caps: Vec<FrequencyCap>,
    /// The word `policy`, where a second policy is reported.
    pub keyword: Span,
    pub span: Span,
}

/// `frequency cap [CHANNEL] N per D`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyCap {
    pub channel: Option<Name>,
    pub count: Count,
    pub window: DurationLit,
    pub span: Span,
}

/// A count as written (`600`); saturated at `u64::MAX` when longer, which
/// the checker reports with the range it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub value: u64,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    pub channel: Name,
    pub message: Name,
    pub amount: Money,
    pub span: Span,
}

/// A price as written (`0.045 EUR`); the decimal text is kept so no float
/// rounding creeps in before the checker converts it to exact micro-units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub text: String,
    pub currency: Name,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub name: Name,
    pub settings: Vec<Setting>,
    pub steps: Vec<Step>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    DisplayName(StrLit, Span),
    Trigger(Trigger),
    Audience(Expr, Span),
    /// `goal event NAME [where …] within D`.
    Goal(Goal),
    /// `exit when event NAME [where …]` or `exit when EXPR`.
    Exit(ArmCond, Span),
    /// `on ineligible skip | continue`.
    OnIneligible(Ineligible, Span),
    /// `quiet hours HH:MM to HH:MM [then skip]`.
    QuietHours(QuietHours),
    /// `reentry once | always | after D`.
    Reentry(Reentry, Span),
    /// `rate limit N per second | minute | hour`.
    RateLimit(RateLimit),
}

impl Setting {
    /// The setting's keyword, as duplicate-setting names it.
    pub fn key(&self) -> &'static str {
        match self {
            Setting::DisplayName(..) => "name",
            Setting::Trigger(_) => "trigger",
            Setting::Audience(..) => "audience",
            Setting::Goal(_) => "goal",
            Setting::Exit(..) => "exit",
            Setting::OnIneligible(..) => "on ineligible",
            Setting::QuietHours(_) => "quiet hours",
            Setting::Reentry(..) => "reentry",
            Setting::RateLimit(_) => "rate limit",
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Setting::DisplayName(_, s)
            | Setting::Audience(_, s)
            | Setting::Exit(_, s)
            | Setting::OnIneligible(_, s)
            | Setting::Reentry(_, s) => *s,
            Setting::Trigger(t) => t.span,
            Setting::Goal(g) => g.span,
            Setting::QuietHours(q) => q.span,
            Setting::RateLimit(r) => r.span,
        }
    }
}

/// `quiet hours START to END [then skip]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    pub start: Clock,
    pub end: Clock,
    pub then: QuietThen,
    pub span: Span,
}

/// A time of day as written; the checker reads `HH:MM` (`invalid-quiet-hours`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub text: String,
    pub span: Span,
}

impl Clock {
    /// Minutes after midnight of a well-formed `HH:MM` (00:00–23:59).
    pub fn minutes(&self) -> Option<u16> {
        let (h, m) = self.text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    }
}

/// What a send in the quiet hours does; `Hold` is the default, not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietThen {
    Hold,
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reentry {
    Once,
    Always,
    After(DurationLit),
}

/// `rate limit N per UNIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub count: Count,
    pub per: RatePer,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePer {
    Second,
    Minute,
    Hour,
}

impl RatePer {
    pub fn as_str(self) -> &'static str {
        match self {
            RatePer::Second => "second",
            RatePer::Minute => "minute",
            RatePer::Hour => "hour",
        }
    }
}

/// `event NAME [where A and B …]`: an event the contact does; the filter
/// reads the event's properties, like `happened … where`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMatch {
    pub event: Name,
    pub filter: Vec<Expr>,
    pub span: Span,
}

/// What a `when` arm or an `exit when` waits for: an event that arrives, or
/// a state condition that holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ArmCond {
    Event(EventMatch),
    State(Expr),
}

impl ArmCond {
    pub fn span(&self) -> Span {
        match self {
            ArmCond::Event(e) => e.span,
            ArmCond::State(e) => e.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub event: EventMatch,
    pub within: DurationLit,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    Skip,
    Continue,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::Skip => "skip",
            Ineligible::Continue => "continue",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    Scheduled { at: DateLit, zone: StrLit },
    Event { event: Name, filter: Option<Expr> },
    Manual,
    Api,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub steps: Vec<Step>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: Option<Name>,
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Send(Send),
    Wait(DurationLit),
    If(If),
    AbTest(AbTest),
    Tag {
        op: TagOp,
        tag: StrLit,
    },
    End,
    WaitUntil(WaitUntil),
    /// `set FIELD = EXPR`.
    Set {
        field: Name,
        value: Expr,
    },
}

impl StepKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Send(_) => "send",
            StepKind::Wait(_) => "wait",
            StepKind::If(_) => "if",
            StepKind::AbTest(_) => "ab_test",
            StepKind::Tag { .. } => "tag",
            StepKind::End => "end",
            StepKind::WaitUntil(_) => "wait until",
            StepKind::Set { .. } => "set",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub target: SendTarget,
    pub fallback: Option<Fallback>,
}

/// `email.marketing welcome` or just `welcome`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendTarget {
    pub channel: Option<ChannelMessage>,
    pub template: Name,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    pub channel: Name,
    pub message: Name,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fallback {
    None(Span),
    To(SendTarget),
}

#[derive(Debug, Clone, PartialEq)]
pub struct If {
    /// The `if` and each `else if`, in order.
    pub arms: Vec<(Expr, Block)>,
    pub otherwise: Option<Block>,
}

/// `wait until { when … { } … timeout D { } }`, or its short form.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitUntil {
    pub arms: Vec<WhenArm>,
    /// `None` only in a tree that failed to say it (`missing-timeout`).
    pub timeout: Option<Timeout>,
    pub form: WaitForm,
    /// The words `wait until`, where diagnostics about the whole wait point.
    pub head: Span,
}

/// How a `wait until` was written; `fmt` prints it back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitForm {
    Arms,
    /// `wait until event NAME [where …] timeout D`: one event arm, both
    /// blocks empty.
    Short,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WhenArm {
    pub cond: ArmCond,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeout {
    pub duration: DurationLit,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AbTest {
    pub name: Name,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: Name,
    /// The weight in hundredths of a percent (`33.5%` is 3350), so sums are
    /// exact. Above `limits::MAX_WEIGHT_BP` only when the parser reported it.
    pub weight_bp: u32,
    pub weight_span: Span,
    pub block: Block,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    Minute,
    Hour,
    Day,
    Week,
}

impl DurationUnit {
    pub fn minutes(self) -> u64 {
        match self {
            DurationUnit::Minute => 1,
            DurationUnit::Hour => 60,
            DurationUnit::Day => 60 * 24,
            DurationUnit::Week => 60 * 24 * 7,
        }
    }
    pub fn suffix(self) -> char {
        match self {
            DurationUnit::Minute => 'm',
            DurationUnit::Hour => 'h',
            DurationUnit::Day => 'd',
            DurationUnit::Week => 'w',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationLit {
    pub parts: Vec<(u64, DurationUnit)>,
    pub span: Span,
}

impl DurationLit {
    /// Longer than `limits::MAX_DURATION`: the parser reported this literal.
    pub fn out_of_range(&self) -> bool {
        self.minutes() > crate::limits::MAX_DURATION as u64
    }

    /// Total length in minutes, saturating (see `out_of_range`).
    pub fn minutes(&self) -> u64 {
        self.parts.iter().fold(0u64, |acc, (n, u)| acc.saturating_add(n.saturating_mul(u.minutes())))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateLit {
    pub date: chrono::NaiveDate,
    /// Absent for a bare date (midnight).
    pub time: Option<chrono::NaiveTime>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// Operator chains are n-ary so that a long `a or b or …` is flat, not deep:
/// every walk over expressions stays within the parser's nesting limit.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    In {
        lhs: Box<Expr>,
        list: Vec<Expr>,
    },
    Has {
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Arith {
        first: Box<Expr>,
        rest: Vec<(ArithOp, Expr)>,
    },
    Paren(Box<Expr>),
    Name(Name),
    Call {
        func: Name,
        arg: Name,
    },
    Happened {
        event: Name,
        within: Option<DurationLit>,
        filter: Vec<Expr>,
    },
    Bool(bool),
    /// Not finite only when the parser reported the literal out of range.
    Number {
        value: f64,
        text: String,
    },
    Str(String),
    Duration(DurationLit),
    Date(DateLit),
    Now,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
}
