//! The runtime's durable state behind a narrow interface, so a PostgreSQL
//! backend can follow the SQLite one. Row types here are the store's own:
//! they are a persisted format, not the compiler's internals.

use super::facts::{Addresses, ContactEvent, ContactRecord, FieldValue, SentMessage};
use crate::compile::program::{Cond, FieldDef, FieldSlot, Program};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is locked by another flowc process: {0}")]
    Locked(String),
    #[error("the database is corrupt or not a flowc database: {0}")]
    Corrupt(String),
    /// One stored value this flowc cannot read: never replaced by a default.
    #[error("corrupt value in table `{table}`, row `{key}`: `{value}`")]
    CorruptRow { table: &'static str, key: String, value: String },
    #[error("database written by a newer flowc (schema {found}, this flowc knows up to {known})")]
    TooNew { found: i64, known: i64 },
    /// A command that only reads found no database (and created none).
    #[error("no database here yet; `flowc run` or `flowc contacts import` creates one")]
    Missing,
    /// A worker's claim lapsed (its lease expired and another worker took
    /// the work): the round it tried to commit is refused whole.
    #[error("the claim of `{0}` on this work lapsed; another worker took it over")]
    LeaseLost(String),
    /// A round's debits would take the balance below zero (another worker
    /// spent it first): refused whole, the balance untouched.
    #[error("the balance cannot pay this round's sends")]
    InsufficientBalance,
    /// A guarded state change found the campaign no longer in the state it
    /// expected: another writer moved it first.
    #[error("campaign `{campaign}` is no longer {expected}")]
    StateChanged { campaign: String, expected: String },
    #[error("database error: {0}")]
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecState {
    Pending,
    Processing,
    Completed,
    Failed,
    Skipped,
}

impl ExecState {
    pub const ALL: [ExecState; 5] =
        [ExecState::Pending, ExecState::Processing, ExecState::Completed, ExecState::Failed, ExecState::Skipped];
    pub fn as_str(self) -> &'static str {
        match self {
            ExecState::Pending => "pending",
            ExecState::Processing => "processing",
            ExecState::Completed => "completed",
            ExecState::Failed => "failed",
            ExecState::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Option<ExecState> {
        ExecState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A campaign's lifecycle state as stored (docs/runtime.md); the allowed
/// transitions between them are `lifecycle`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignState {
    Draft,
    Scheduled,
    Running,
    Paused,
    PausedError,
    PausedBalance,
    Completed,
    CompletedPartial,
}

impl CampaignState {
    pub const ALL: [CampaignState; 8] = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::PausedError,
        CampaignState::PausedBalance,
        CampaignState::Completed,
        CampaignState::CompletedPartial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "DRAFT",
            CampaignState::Scheduled => "SCHEDULED",
            CampaignState::Running => "RUNNING",
            CampaignState::Paused => "PAUSED",
            CampaignState::PausedError => "PAUSED_ERROR",
            CampaignState::PausedBalance => "PAUSED_BALANCE",
            CampaignState::Completed => "COMPLETED",
            CampaignState::CompletedPartial => "COMPLETED_PARTIAL",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignState> {
        CampaignState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for CampaignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl serde::Serialize for CampaignState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One row of a campaign's audit log: a state change and why it happened.
/// A version replacement is recorded with `from == to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When, in minutes.
    pub at: i64,
    pub from: CampaignState,
    pub to: CampaignState,
    /// The operator's or the runtime's words (`launched`, `breaker: …`).
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub name: String,
    pub version: String,
    pub program: Vec<u8>,
    pub state: CampaignState,
}

/// A campaign version to store, with the state the campaign is in.
#[derive(Debug, Clone, Copy)]
pub struct CampaignVersion<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The program in its binary form (`compile::codec`).
    pub program: &'a [u8],
    pub state: CampaignState,
}

/// A campaign's unfinished executions moving from one version to the next:
/// those waiting at a step in `kept` move, the others are skipped with
/// reason `step-removed`.
#[derive(Debug, Clone, Copy)]
pub struct Migration<'a> {
    pub campaign: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub kept: &'a [StepId],
}

pub use crate::check::model::StepId;

/// A contact's id as stored: the key of its contacts row and of its
/// executions, sends and events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ContactId(pub String);

impl ContactId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Maps keyed by contact id are looked up by `&str` (derived `Ord`/`Hash`
// of a one-field newtype agree with the `String`'s, as `Borrow` requires).
impl std::borrow::Borrow<str> for ContactId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ContactId {
    fn from(s: &str) -> ContactId {
        ContactId(s.to_string())
    }
}

impl std::fmt::Display for ContactId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which of a contact's executions of a campaign: 1 for its first entry,
/// then 2, 3 … as `reentry` lets it enter again (docs/runtime.md, "Re-entry").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Entry(pub u32);

impl Entry {
    pub const FIRST: Entry = Entry(1);
}

impl Default for Entry {
    fn default() -> Entry {
        Entry::FIRST
    }
}

/// The form in which a store takes the contacts of an import: an import's
/// validating threads prepare them in it, so its one writer only binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactForm {
    /// `ContactRecord`, written by `upsert_contacts`.
    Records,
    /// `EncodedContact`, written by `upsert_encoded`.
    Encoded,
}

/// A contact in the columns the embedded store keeps: its attributes as
/// binary JSON, its sets as JSON lists, and the typed columns beside them
/// (`sqlite::typed`). An import encodes each contact on the thread that
/// validated it, so the one thread that writes, in file order, only binds.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedContact {
    pub id: ContactId,
    /// SQLite's JSONB (`runtime::jsonb`).
    pub attrs: Vec<u8>,
    pub tags: String,
    pub consent: String,
    pub capabilities: String,
    pub created_minute: Option<i64>,
    pub addresses: i64,
    pub profile: String,
}

impl EncodedContact {
    pub fn of(c: &ContactRecord) -> EncodedContact {
        let list = super::sqlite::json_list;
        let (created_minute, addresses) = super::sqlite::typed::of_record(c);
        let (tags, consent, capabilities) = (list(&c.tags), list(&c.consent), list(&c.capabilities));
        let profile = super::sqlite::typed::profile(&tags, &consent, &capabilities, addresses);
        EncodedContact {
            id: c.id.clone(),
            attrs: super::jsonb::encode_object(&c.attrs),
            tags,
            consent,
            capabilities,
            created_minute,
            addresses,
            profile,
        }
    }

    /// The contact again, for a store that keeps it in other forms.
    pub fn record(&self) -> Result<ContactRecord, StoreError> {
        let corrupt = |value: String| StoreError::CorruptRow { table: "contacts", key: self.id.to_string(), value };
        let serde_json::Value::Object(attrs) = super::jsonb::decode(&self.attrs).map_err(|e| corrupt(e.to_string()))?
        else {
            return Err(corrupt("attributes that are not an object".into()));
        };
        let list = |text: &str| serde_json::from_str::<Vec<String>>(text).map_err(|_| corrupt(text.to_string()));
        Ok(ContactRecord {
            id: self.id.clone(),
            attrs,
            tags: list(&self.tags)?,
            consent: list(&self.consent)?,
            capabilities: list(&self.capabilities)?,
        })
    }
}

/// A stored event of a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOf {
    pub contact: ContactId,
    pub event: ContactEvent,
}

/// The event flowc records with each enrollment by a trigger (the API, or
/// `flowc run`'s triggers): the trigger's `data` and the campaign. It
/// cannot be ingested from outside.
pub const TRIGGERED: &str = "campaign.triggered";

impl EventOf {
    /// Whether a store keeps this event once per idempotency key
    /// (`Outside`) or every time it is given (`Recorded`).
    pub fn origin(&self) -> EventOrigin {
        if self.event.name == TRIGGERED {
            EventOrigin::Recorded
        } else {
            EventOrigin::Outside
        }
    }
}

/// Where a stored event came from, which decides whether it has an
/// idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrigin {
    /// Imported or ingested: the same event given twice (a file imported
    /// twice, a retried request) is stored once.
    Outside,
    /// Recorded by flowc with an enrollment: stored every time, without a
    /// key. Two identical triggers of one contact in a minute (under
    /// `reentry always`) are two enrollments, each with its event; and a
    /// key hashed from contact, name, minute and data, written at a random
    /// place of its index, cost an API trigger a page of the log.
    Recorded,
}

/// A message a campaign sent to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct SentOf {
    pub contact: ContactId,
    /// The execution that sent it.
    pub entry: Entry,
    pub message: SentMessage,
}

/// When a contact's execution of a campaign entered it (`None`: enrolled
/// before flowc recorded it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub contact: ContactId,
    pub entry: Entry,
    pub started_at: Option<i64>,
}

/// One contact to enroll: its first step and when it wakes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub contact: ContactId,
    pub step: StepId,
    pub wake_at: i64,
}

impl Enrollment {
    pub fn new(contact: ContactId, step: StepId, wake_at: i64) -> Enrollment {
        Enrollment { contact, step, wake_at }
    }
}

/// An execution ready to step, with its contact.
#[derive(Debug, Clone)]
pub struct Due {
    pub contact: DueContact,
    pub entry: Entry,
    /// The step id to run next.
    pub step: StepId,
    pub version: String,
    pub state: ExecState,
    /// When it entered the campaign (`None` for executions enrolled before
    /// flowc recorded it).
    pub started_at: Option<i64>,
    /// Parked at a `wait until`: when it entered that wait.
    pub wait_since: Option<i64>,
}

/// What a claimed execution needs of its contact: the fields the caller
/// asked for (by their slots), pulled out by the store, not the whole record.
#[derive(Debug, Clone, PartialEq)]
pub struct DueContact {
    pub id: ContactId,
    pub fields: Vec<FieldValue>,
    pub tags: Vec<String>,
    pub consent: Vec<String>,
    pub capabilities: Vec<String>,
    /// The built-in `created_at`, in minutes.
    pub created_at: Option<i64>,
    /// Which addresses it has (only their presence leaves the store).
    pub addresses: Addresses,
}

/// The contacts a program addresses at one instant: those matching `filter`
/// (one of `program`'s conditions, evaluated at `at`), or every contact
/// without one. The store gets the whole program, not a query: a store with
/// a query language evaluates the filter itself, and may push more of the
/// program down (counting its branch predicates) behind the same interface.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub program: &'a Program,
    pub filter: Option<&'a Cond>,
    pub at: i64,
}

/// What the walks of an estimate read of each contact beyond the audience
/// filter: two contacts alike in all of it (and in their A/B variants) walk
/// the program alike, so the estimate walks one of them for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkReads {
    /// The program's field slots its steps, exits and the segments they use
    /// read; the other slots of a grouped contact may be left absent.
    pub slots: Vec<FieldSlot>,
    /// Whether the walks read the contact's events, and with them its
    /// creation (the `contact.created` event).
    pub events: EventReads,
    /// Whether the estimate needs each contact's id: for its A/B variants,
    /// or to read its events or recorded sends.
    pub ids: IdReads,
}

/// Whether an estimate needs the id of every contact of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdReads {
    Read,
    Unread,
}

/// Whether an estimate's walks read a contact's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReads {
    Read,
    Unread,
}

/// A group of alike contacts (`WalkReads`) in one `Store::audience_groups`
/// stream; numbered from 0 in the order they first appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(pub u32);

/// One contact of an audience streamed by `Store::audience_groups`, in the
/// order `Store::audience` streams them.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    /// The first contact of a new group: what every member of the group shares.
    First { group: GroupId, contact: DueContact },
    /// A later contact of a group seen before; its id when the walks read
    /// ids (`WalkReads::ids`).
    Again { group: GroupId, id: Option<&'a str> },
    /// A contact in no group (the stream has `alike::MAX_GROUPS` already).
    Alone(DueContact),
}

/// A token of the data estimates read (contacts, their events, the sends
/// recorded): it changes whenever any of it changes, so an estimate made
/// under one token still holds while the token is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataVersion(pub i64);

#[derive(Debug, Clone, PartialEq)]
pub struct ExecUpdate {
    pub contact: ContactId,
    pub entry: Entry,
    pub step: StepId,
    pub version: String,
    pub state: ExecState,
    pub wake_at: Option<i64>,
    pub reason: Option<String>,
    /// Parked at a `wait until`: when it entered the wait (kept across
    /// wake-ups and restarts); `None` at any other boundary.
    pub wait_since: Option<i64>,
}

/// One execution's pass through an A/B split, so conversions can be
/// attributed per variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbAssignment {
    pub contact: ContactId,
    pub entry: Entry,
    pub ab: String,
    pub variant: String,
}

/// How many of a send step's messages the provider reports delivered,
/// opened and clicked by some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngagementCounts {
    pub delivered: u64,
    pub opened: u64,
    pub clicked: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxNew {
    pub key: String,
    pub contact: ContactId,
    pub entry: Entry,
    pub version: String,
    pub step: StepId,
    pub channel: String,
    pub message: String,
    pub template: String,
    pub price_micros: i64,
    pub created_at: i64,
}

impl OutboxNew {
    /// The message to hand the provider for this row of `campaign`, at
    /// `at_ms` (milliseconds since the epoch), borrowing from the row.
    pub fn to_message<'a>(&'a self, campaign: &'a str, at_ms: i64, attempt: u32) -> super::provider::Message<'a> {
        super::provider::Message {
            key: &self.key,
            campaign,
            contact: self.contact.as_str(),
            step: &self.step.0,
            channel: &self.channel,
            message: &self.message,
            template: &self.template,
            at_ms,
            attempt,
        }
    }

    /// The outcome of this send, for the same outbox row.
    pub fn outcome(&self, at: i64, outcome: SendOutcome) -> OutboxDone {
        OutboxDone {
            contact: self.contact.clone(),
            entry: self.entry,
            step: self.step.clone(),
            version: self.version.clone(),
            at,
            outcome,
        }
    }
}

/// The idempotency key of one send: unique per campaign, version, contact
/// and step (the outbox's primary key), stable across retries and restarts.
pub fn outbox_key(campaign: &str, version: &str, contact: &ContactId, step: &StepId) -> String {
    format!("{campaign}/{version}/{contact}/{step}")
}

/// The idempotency key of a send of execution `entry`: the first entry's is
/// `outbox_key` exactly (so sends pending across an upgrade keep theirs);
/// a re-entry's ends in `#<entry>`, so it is never taken for a duplicate.
/// The outbox derives the same key from its primary key (schema 7).
pub fn execution_key(campaign: &str, version: &str, contact: &ContactId, entry: Entry, step: &StepId) -> String {
    if entry == Entry::FIRST {
        outbox_key(campaign, version, contact, step)
    } else {
        format!("{campaign}/{version}/{contact}/{step}#{}", entry.0)
    }
}

/// When the provider reports a sent message delivered, opened and clicked (minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Engagement {
    pub delivered_at: Option<i64>,
    pub opened_at: Option<i64>,
    pub clicked_at: Option<i64>,
}

/// How a send ended for good: a sent message has engagement and no error,
/// a failed one an error and no engagement.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    Sent(Engagement),
    Failed { error: String },
}

impl SendOutcome {
    /// The outbox row's status column.
    pub fn status(&self) -> &'static str {
        match self {
            SendOutcome::Sent(_) => "sent",
            SendOutcome::Failed { .. } => "failed",
        }
    }

    pub fn engagement(&self) -> Engagement {
        match self {
            SendOutcome::Sent(e) => *e,
            SendOutcome::Failed { .. } => Engagement::default(),
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            SendOutcome::Sent(_) => None,
            SendOutcome::Failed { error } => Some(error),
        }
    }
}

/// The outcome of a send; names its outbox row by the row's primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxDone {
    pub contact: ContactId,
    pub entry: Entry,
    pub step: StepId,
    pub version: String,
    pub at: i64,
    pub outcome: SendOutcome,
}

/// Counters of one step, added up across batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepCounts {
    pub entered: u64,
    pub sent: u64,
    pub failed: u64,
    pub cost_micros: i64,
    pub skipped: BTreeMap<String, u64>,
    /// Sends held (not skipped) by a delivery rule, per `Held::as_str`:
    /// each held send once, however often it was held again.
    pub held: BTreeMap<String, u64>,
}

/// Why a send was held back for later (docs/runtime.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Held {
    QuietHours,
    RateLimit,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Held::QuietHours => "quiet-hours",
            Held::RateLimit => "rate-limit",
        }
    }
}

/// What a batch did to one contact's tags: applied to the tags stored at
/// commit time, so a change made meanwhile (an API upsert, another
/// campaign's batch) is kept rather than overwritten by the set the batch loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDelta {
    pub contact: ContactId,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl TagDelta {
    /// The change that turns `before` into `after`.
    pub fn between(contact: &ContactId, before: &[String], after: &[String]) -> Option<TagDelta> {
        let add: Vec<String> = after.iter().filter(|t| !before.contains(t)).cloned().collect();
        let remove: Vec<String> = before.iter().filter(|t| !after.contains(t)).cloned().collect();
        (!add.is_empty() || !remove.is_empty()).then(|| TagDelta { contact: contact.clone(), add, remove })
    }

    /// `tags` with this change applied: removals first, additions appended in order.
    pub fn apply(&self, tags: &mut Vec<String>) {
        tags.retain(|t| !self.remove.contains(t));
        for t in &self.add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
}

/// What a batch's `set` steps did to one contact's attributes: each field's
/// new value (as stored), written into the stored attributes at commit time
/// one field at a time, so a change made meanwhile to another field is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDelta {
    pub contact: ContactId,
    /// (field name, value as the contacts table stores it).
    pub values: Vec<(String, serde_json::Value)>,
}

/// An outbox row's failed attempt that will be tried again at `next_attempt_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRetry {
    pub contact: ContactId,
    pub entry: Entry,
    pub step: StepId,
    pub version: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub error: String,
}

/// The circuit breaker's memory of one campaign: kept in the store so that
/// every pass (and, later, every worker) sees the same failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakerState {
    pub consecutive_failures: u32,
    /// Outcomes of the most recent sends, oldest first; `true` is a success.
    pub recent: std::collections::VecDeque<bool>,
}

/// Who holds a claim on executions: one per process (and, later, per worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId(pub String);

/// A worker's claim on the work it takes: executions it steps, outbox rows
/// it relays. In a store many processes share, a claim lapses `ttl_ms`
/// after it was taken (measured on the database's clock, so machines'
/// clocks need not agree); lapsed work is taken over by another worker,
/// and a round committed under a lapsed claim is refused
/// (`StoreError::LeaseLost`). A single-writer store (SQLite, behind its
/// writer lock) has only one claimer and ignores `ttl_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub worker: WorkerId,
    pub ttl_ms: i64,
}

impl Lease {
    /// How long a claim lives unless the work is committed: long enough
    /// for a batch and its sends, short enough that a killed worker's work
    /// is picked up soon.
    pub const DEFAULT_TTL_MS: i64 = 30_000;

    pub fn new(worker: WorkerId) -> Lease {
        Lease { worker, ttl_ms: Lease::DEFAULT_TTL_MS }
    }
}

impl WorkerId {
    /// This process: host-free and unique enough to tell two processes apart in the audit.
    pub fn this_process() -> WorkerId {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        WorkerId(format!("pid{}-{started}", std::process::id()))
    }
}

/// Everything one round of a batch writes, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub executions: Vec<ExecUpdate>,
    pub outbox_new: Vec<OutboxNew>,
    pub outbox_done: Vec<OutboxDone>,
    /// Failed attempts to be tried again (the row stays pending).
    pub outbox_retry: Vec<OutboxRetry>,
    /// Contacts whose execution must not step on while a send of theirs
    /// waits for another attempt: written `processing`, claimed by the
    /// committing worker, remembering the state to go back to.
    pub parked: Vec<(ContactId, Entry)>,
    /// Contacts whose retried or recovered sends were accepted: their
    /// `processing` executions take the state they were parked with once
    /// no send of theirs is pending.
    pub settled: Vec<(ContactId, Entry)>,
    pub ledger: Vec<LedgerEntry>,
    pub tags: Vec<TagDelta>,
    /// Attributes written by `set` steps.
    pub fields: Vec<FieldDelta>,
    pub steps: BTreeMap<StepId, StepCounts>,
    /// (ab_test, variant) → contacts assigned.
    pub ab: BTreeMap<(String, String), u64>,
    /// Who was assigned which variant (the first assignment stays).
    pub ab_assigned: Vec<AbAssignment>,
    /// The breaker after this round's sends, when they changed it.
    pub breaker: Option<BreakerState>,
    /// The rate limiter's next free instant (ms) after this round's sends,
    /// for a campaign with a rate limit.
    pub rate_next_free_ms: Option<i64>,
}

impl Round {
    /// Keeps `row` pending for another attempt at `at` (`attempts` made so
    /// far, the last one's `error`) and parks its execution meanwhile: a
    /// failed send, one the breaker stopped, one waiting for its rate-limit
    /// slot.
    pub fn try_again(&mut self, row: &OutboxNew, attempts: u32, at: i64, error: String) {
        self.outbox_retry.push(OutboxRetry {
            contact: row.contact.clone(),
            entry: row.entry,
            step: row.step.clone(),
            version: row.version.clone(),
            attempts,
            next_attempt_at: at,
            error,
        });
        self.parked.push((row.contact.clone(), row.entry));
    }

    pub fn is_empty(&self) -> bool {
        self.executions.is_empty()
            && self.outbox_new.is_empty()
            && self.outbox_done.is_empty()
            && self.outbox_retry.is_empty()
            && self.settled.is_empty()
            && self.parked.is_empty()
            && self.ledger.is_empty()
            && self.tags.is_empty()
            && self.fields.is_empty()
            && self.steps.is_empty()
            && self.ab.is_empty()
            && self.ab_assigned.is_empty()
            && self.breaker.is_none()
            && self.rate_next_free_ms.is_none()
    }
}

/// One movement of the prepaid balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Micro-euros; negative is a debit.
    pub amount_micros: i64,
    pub reason: String,
}

/// An amount in EUR as micro-euros, the ledger's unit; `None` unless it is
/// a finite amount from 0 to 1,000,000,000 EUR.
pub fn micros_of_eur(eur: f64) -> Option<i64> {
    (eur.is_finite() && (0.0..=1e9).contains(&eur)).then(|| (eur * 1_000_000.0).round() as i64)
}

/// The account's automatic top-up: below `threshold`, add `amount` (micro-euros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoReload {
    pub threshold_micros: i64,
    pub amount_micros: i64,
}

/// Whether a campaign owes a probe message before sending at full speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Owed,
    Done,
}

/// How a transaction opened with `Store::begin` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEnd {
    Commit,
    Rollback,
}

/// Runs `f` as one transaction: everything it writes commits together, or
/// nothing does. Lifecycle operations use it so a crash (or a failed write)
/// in the middle leaves the old state, never half of the new one.
pub fn atomically<T, E: From<StoreError>>(
    store: &mut dyn Store,
    f: impl FnOnce(&mut dyn Store) -> Result<T, E>,
) -> Result<T, E> {
    store.begin()?;
    match f(store) {
        Ok(v) => match store.finish(TxEnd::Commit) {
            Ok(()) => Ok(v),
            Err(e) => {
                // A commit that failed leaves the transaction open: end it,
                // so later calls do not run inside it.
                let _ = store.finish(TxEnd::Rollback);
                Err(e.into())
            }
        },
        Err(e) => {
            // The error that stopped `f` is the one to report; a failed
            // rollback leaves SQLite's own rollback on close.
            let _ = store.finish(TxEnd::Rollback);
            Err(e)
        }
    }
}

/// Which waiting executions of a contact a wake-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps<'a> {
    /// Wherever they wait (an exit criterion concerns every step).
    Any,
    /// Only those parked at one of these steps.
    Only(&'a [&'a StepId]),
}

/// A message the database records as sent to a contact (any campaign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSend {
    pub contact: ContactId,
    pub channel: String,
    pub message: String,
    /// Minutes since the epoch.
    pub sent_at: i64,
}

/// One consent-requiring send that the frequency caps apply to, about to
/// be committed with its outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSend<'a> {
    pub contact: &'a ContactId,
    pub channel: &'a str,
    /// Its idempotency key: the capped send's identity in the store.
    pub key: &'a str,
}

/// `Store::newest_created_at` by reading every contact: for a store
/// without an index of it.
pub fn newest_created_by_scan<S: Store + ?Sized>(store: &S) -> Result<Option<i64>, StoreError> {
    let mut newest: Option<i64> = None;
    store.for_each_contact(&mut |c| {
        if let Some(t) = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(super::facts::parse_datetime) {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    })?;
    Ok(newest)
}

/// The interface the engine uses; `sqlite::SqliteStore` implements it.
pub trait Store {
    /// Stores a campaign's current version (and keeps it among its versions).
    fn put_campaign(&mut self, campaign: &CampaignVersion<'_>, now: i64) -> Result<(), StoreError>;
    fn campaign(&self, name: &str) -> Result<Option<CampaignRow>, StoreError>;
    fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError>;
    fn program_version(&self, campaign: &str, version: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records a campaign state change and its reason in the audit log,
    /// only if the campaign is still `from` (`StoreError::StateChanged`
    /// otherwise, nothing written): two writers cannot both move it.
    fn set_state(
        &mut self,
        name: &str,
        from: CampaignState,
        to: CampaignState,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<Transition>, StoreError>;
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError>;
    fn balance(&self) -> Result<i64, StoreError>;
    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError>;
    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[EventOf]) -> Result<(), StoreError>;
    /// The form this store writes contacts in fastest (`ContactForm`).
    fn contact_form(&self) -> ContactForm {
        ContactForm::Records
    }
    /// `upsert_contacts` of contacts encoded already (`EncodedContact::of`).
    fn upsert_encoded(&mut self, contacts: &[EncodedContact], events: &[EventOf]) -> Result<(), StoreError> {
        let records = contacts.iter().map(EncodedContact::record).collect::<Result<Vec<_>, _>>()?;
        self.upsert_contacts(&records, events)
    }
    fn contact_count(&self) -> Result<u64, StoreError>;
    fn for_each_contact(&self, f: &mut dyn FnMut(ContactRecord)) -> Result<(), StoreError>;
    fn contact(&self, id: &ContactId) -> Result<Option<ContactRecord>, StoreError>;
    /// Whether contact `id` is stored, without reading it: an API trigger
    /// of a campaign with no audience needs no more.
    fn contact_exists(&self, id: &ContactId) -> Result<bool, StoreError> {
        self.contact(id).map(|c| c.is_some())
    }
    /// Contacts in id order after `after` (from the first when `None`), at
    /// most `limit`: streaming without holding a cursor.
    fn contacts_page(&self, after: Option<&ContactId>, limit: usize) -> Result<Vec<ContactRecord>, StoreError>;
    /// Credits the opening balance once per database, atomically with its marker.
    fn ensure_initial_balance(&mut self, micros: i64, now: i64) -> Result<(), StoreError>;
    fn events_for(&self, contacts: &[&ContactId]) -> Result<Vec<EventOf>, StoreError>;
    fn sent_for(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<SentOf>, StoreError>;
    /// The messages sent to these contacts at or after `since`, by every
    /// campaign of the database: what the estimate counts against frequency
    /// caps.
    fn sends_since(&self, contacts: &[&ContactId], since: i64) -> Result<Vec<RecordedSend>, StoreError>;
    /// Frequency caps, called inside the transaction that commits these
    /// sends' outbox rows: for each send in order, whether it fits under
    /// every cap of `caps` (a channel's cap counting only that channel),
    /// counting the capped sends stored for its contact less than the
    /// cap's window before `now` — of every campaign — and those admitted
    /// before it in this call. The sends that fit are recorded; a send
    /// recorded already (same key) fits again without a second row.
    fn admit_capped(
        &mut self,
        caps: &[crate::compile::program::FrequencyCap],
        sends: &[CapSend<'_>],
        now: i64,
    ) -> Result<Vec<bool>, StoreError>;
    /// Enrolls contacts under a re-entry rule other than `once`: each entry
    /// is a new execution (entry number one more than the contact's last)
    /// when `rule` lets it in — `always`, or `after D` when the contact's
    /// latest execution started at least D before the entry's `wake_at`
    /// (one with no recorded start counts as long ago). Entries are taken
    /// in order, each seeing the ones before. Returns how many entered.
    fn reenter(
        &mut self,
        campaign: &str,
        version: &str,
        entries: &[Enrollment],
        rule: crate::compile::program::Reentry,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// For those of `contacts` with an execution of `campaign`: when their
    /// latest execution started (`None`: before flowc recorded it).
    fn latest_starts(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashMap<ContactId, Option<i64>>, StoreError>;
    /// Enrolls contacts (at most once each: entry 1).
    fn enroll(&mut self, campaign: &str, version: &str, entries: &[Enrollment], now: i64) -> Result<u64, StoreError>;
    /// Enrolls the contacts an API trigger admitted in `program`'s
    /// campaign (the caller applied its re-entry rule, reading
    /// `latest_starts`), each with its `campaign.triggered` event
    /// (`events`). Returns how many entered.
    ///
    /// A store may queue them instead, to enroll them at the campaign's
    /// next `drain_triggered`: from the moment this returns, its
    /// `latest_starts`, `enrolled`, `counts` and `next_wake` see them as
    /// enrolled (pending, due at their `wake_at`) and its `events_for`
    /// their events, so a second trigger, a report, a condition and a
    /// runner all agree with the answer the trigger got.
    fn enroll_triggered(
        &mut self,
        program: &crate::compile::program::Program,
        entries: &[Enrollment],
        events: &[EventOf],
        now: i64,
    ) -> Result<u64, StoreError> {
        use crate::compile::program::Reentry;
        // The event first, so the execution's first step can read it.
        self.upsert_contacts(&[], events)?;
        let (campaign, version) = (&program.campaign, &program.version.0);
        match program.delivery.reentry {
            Reentry::Once => self.enroll(campaign, version, entries, now),
            rule => self.reenter(campaign, version, entries, rule, now),
        }
    }
    /// Enrolls what `enroll_triggered` queued for `campaign`, up to `limit`
    /// triggers, with their events, in one transaction. Returns how many;
    /// a store that queues none has none to drain.
    fn drain_triggered(&mut self, campaign: &str, limit: usize, now: i64) -> Result<u64, StoreError> {
        let _ = (campaign, limit, now);
        Ok(0)
    }
    /// Enrolls every contact matching `program`'s audience (evaluated at
    /// `wake`) at `step`, waking at `wake`, inside the store: no contact
    /// crosses into the engine. `None` when this store cannot evaluate the
    /// audience itself; the caller then enrolls contact by contact.
    fn enroll_audience(
        &mut self,
        program: &crate::compile::program::Program,
        step: &StepId,
        wake: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Streams the contacts of `audience` to `f`, each with the program's
    /// fields (by slot) as `due` hands them to the engine; stops at the
    /// first error of `f` and returns it. Returns how many were streamed.
    /// The estimate reads its audience this way.
    fn audience(
        &self,
        audience: Audience<'_>,
        f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError>;
    /// `audience`, with alike contacts (`reads`) grouped: a group's data
    /// comes once, with its first contact; later members bring only their
    /// id. The estimate walks each group once. The default groups what
    /// `audience` streams; a store may group without decoding every contact.
    fn audience_groups(
        &self,
        audience: Audience<'_>,
        reads: &WalkReads,
        f: &mut dyn FnMut(Member<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        super::alike::group(self, audience, reads, f)
    }
    /// The newest `created_at` of the contacts, in minutes (where a virtual
    /// clock starts). The default reads every contact.
    fn newest_created_at(&self) -> Result<Option<i64>, StoreError> {
        newest_created_by_scan(self)
    }
    /// The current `DataVersion`; `None` when this store keeps none (its
    /// estimates are not cached).
    fn data_version(&self) -> Result<Option<DataVersion>, StoreError> {
        Ok(None)
    }
    /// Opens a transaction that the following calls join (they nest as
    /// savepoints); ended by `finish`. Use `atomically`.
    fn begin(&mut self) -> Result<(), StoreError>;
    fn finish(&mut self, end: TxEnd) -> Result<(), StoreError>;
    /// The account's auto-reload setting.
    fn auto_reload(&self) -> Result<Option<AutoReload>, StoreError>;
    fn set_auto_reload(&mut self, setting: Option<AutoReload>) -> Result<(), StoreError>;
    /// Whether the campaign must send one probe message before full speed
    /// (set by a resume from PAUSED_ERROR, cleared by a successful send).
    fn probe_pending(&self, campaign: &str) -> Result<bool, StoreError>;
    fn set_probe(&mut self, campaign: &str, probe: Probe) -> Result<(), StoreError>;
    fn breaker(&self, campaign: &str) -> Result<BreakerState, StoreError>;
    /// The rate limiter's next free instant (ms) for `campaign`, if it ever sent under one.
    fn rate_next_free(&self, campaign: &str) -> Result<Option<i64>, StoreError>;
    fn set_breaker(&mut self, campaign: &str, state: &BreakerState) -> Result<(), StoreError>;
    /// Claims executions due by `now`, earliest first, with `fields` of
    /// their contacts, under `lease`: a store shared by many workers locks
    /// them for the lease's lifetime at most and skips rows another worker
    /// holds (`FOR UPDATE SKIP LOCKED`); the single-writer store only reads
    /// them. While a claim is held (a round refused for balance), claiming
    /// again returns the same executions. A claim whose round is not
    /// committed lapses, and the executions are due again.
    fn claim(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        fields: &[FieldDef],
        lease: &Lease,
    ) -> Result<Vec<Due>, StoreError>;
    /// Extends `lease` on sends it is relaying (a slow provider: the relay
    /// outlasts the lease it took them under) and returns the keys it still
    /// holds. A send whose lease lapsed and that another worker took over,
    /// or settled, is not among them: that worker sends it, this one must
    /// not. The single-writer store leases nothing away: every key.
    fn renew_sends(
        &mut self,
        campaign: &str,
        rows: &[&OutboxNew],
        lease: &Lease,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let _ = (campaign, lease);
        Ok(rows.iter().map(|r| r.key.clone()).collect())
    }
    /// Ends a claim whose round will not be committed (the pass stopped on
    /// an error): its executions are due again at once. The single-writer
    /// store holds nothing between calls.
    fn release_claim(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Sends of the campaign committed and not yet settled: handed to the
    /// provider now, or left so by a stopped worker (taken over once its
    /// lease lapses). A campaign is not finished while any is.
    fn sends_in_flight(&self, campaign: &str) -> Result<u64, StoreError>;
    /// The earliest time something of the campaign is due: an execution's
    /// wake-up or a failed send's next attempt.
    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError>;
    /// Commits a round, fenced by `lease`: when the claim on any execution
    /// it updates has lapsed, nothing is written (`StoreError::LeaseLost`).
    /// In a shared store its debits are taken from the balance only if the
    /// balance covers them all (`StoreError::InsufficientBalance`
    /// otherwise, nothing written); the single-writer store's one engine
    /// tracks the balance it spends itself.
    /// Its new outbox rows are held by `lease` until their outcome is
    /// recorded; executions it parks stay `processing` under their send.
    /// Committing ends the claim: the executions the round did not move are
    /// due again as they were.
    fn commit(&mut self, campaign: &str, round: &Round, lease: &Lease, now: i64) -> Result<(), StoreError>;
    fn counts(&self, campaign: &str) -> Result<BTreeMap<ExecState, u64>, StoreError>;
    fn step_counts(&self, campaign: &str) -> Result<BTreeMap<StepId, StepCounts>, StoreError>;
    fn ab_counts(&self, campaign: &str) -> Result<BTreeMap<(String, String), u64>, StoreError>;
    /// Per send step: its messages delivered, opened and clicked at or before `by`.
    fn engagement_counts(&self, campaign: &str, by: i64) -> Result<BTreeMap<String, EngagementCounts>, StoreError>;
    /// Executions that left by an exit criterion, per reason (`exit:<index>`).
    fn exit_counts(&self, campaign: &str) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The campaign's executions in contact order after `after`, at most
    /// `limit`, each with when it entered the campaign.
    fn starts(
        &self,
        campaign: &str,
        after: Option<(&ContactId, Entry)>,
        limit: usize,
    ) -> Result<Vec<Start>, StoreError>;
    /// The A/B assignments of these contacts in the campaign.
    fn ab_assignments(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<AbAssignment>, StoreError>;
    /// Sends recorded whose outcome is unknown: in flight when a process
    /// stopped (a failed attempt waiting for its next try is not among
    /// them; see `outbox_due`). `created_at` is when they were recorded.
    /// Only rows no live claim holds are returned, and they are taken
    /// under `lease`, so two workers never relay the same message.
    fn outbox_pending(&mut self, campaign: &str, lease: &Lease) -> Result<Vec<OutboxNew>, StoreError>;
    /// Pending sends whose next attempt is due by `now`, with the attempts
    /// made so far, taken under `lease` (rows another worker holds are skipped).
    fn outbox_due(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(OutboxNew, u32)>, StoreError>;
    /// How many unfinished executions of `version` sit at one of `steps`.
    fn waiting_at(&self, campaign: &str, version: &str, steps: &[StepId]) -> Result<u64, StoreError>;
    /// Moves unfinished executions of the migration's `from` version to
    /// `to`; see `Migration`. Returns (moved, skipped).
    fn migrate_executions(&mut self, migration: &Migration<'_>, now: i64) -> Result<(u64, u64), StoreError>;
    /// Crash recovery: executions whose claim lapsed (in the single-writer
    /// store: claimed by another worker, which is gone) and with no send
    /// pending go back to the state they were parked with (`pending` at
    /// their next step, or finished). Returns how many.
    fn requeue_processing(&mut self, campaign: &str, lease: &Lease) -> Result<u64, StoreError>;
    /// Moves the database's virtual clock (meta `clock`, minutes) from
    /// `from` to `to`, only if it still reads `from` (or is unset) and, in
    /// a shared store, no worker holds a live claim and nothing is due at
    /// `from` — in one statement, so every worker sees time move at the
    /// same point of the work. False when another worker moved it first or
    /// work appeared; the caller reads the clock again. With `from == to`
    /// it moves no time: it sets an unset clock whatever is in hand.
    fn advance_clock(&mut self, from: i64, to: i64) -> Result<bool, StoreError>;
    /// Makes `contact`'s pending executions of `campaign` due at `at` when
    /// they wait at one of `steps` and would otherwise wake later (one range
    /// of the primary key: the cost of an event is the executions it
    /// concerns — one, or under re-entry each of the contact's). Returns the
    /// rows changed.
    fn wake(&mut self, campaign: &str, contact: &ContactId, steps: Steps<'_>, at: i64) -> Result<u64, StoreError>;
    /// An exit event arrived at `at`: completes `contact`'s `pending`
    /// executions of `campaign` with `reason`, wherever they wait, when they
    /// had started by then (`exits::counts_from`). A `processing` one (a send
    /// in flight) is left to the engine's check before its next step. One
    /// range of the primary key (every entry of the contact); returns the
    /// rows changed.
    fn exit(&mut self, campaign: &str, contact: &ContactId, reason: &str, at: i64) -> Result<u64, StoreError>;
    /// Which of `contacts` already have an execution of `campaign`.
    fn enrolled(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<std::collections::HashSet<ContactId>, StoreError>;
}
