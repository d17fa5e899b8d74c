//! The runtime's durable state behind a narrow interface, so a PostgreSQL
//! backend can follow the SQLite one. Row types here are the store's own:
//! they are a persisted format, not the compiler's internals.

use super::facts::{Addresses, ContactEvent, ContactRecord, FieldValue, SentMessage};
use crate::compile::program::FieldDef;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is locked by another flowc process: {0}")]
    Locked(String),
    #[error("the database is corrupt or not a flowc database: {0}")]
    Corrupt(String),
    #[error("database written by a newer flowc (schema {found}, this flowc knows up to {known})")]
    TooNew { found: i64, known: i64 },
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
    pub const ALL: [ExecState; 5] = [ExecState::Pending, ExecState::Processing, ExecState::Completed, ExecState::Failed, ExecState::Skipped];
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

#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub name: String,
    pub version: String,
    pub program: Vec<u8>,
    pub state: String,
}

/// An execution ready to step, with its contact.
#[derive(Debug, Clone)]
pub struct Due {
    pub contact: DueContact,
    /// The step id to run next.
    pub step: String,
    pub version: String,
    pub state: ExecState,
}

/// What a claimed execution needs of its contact: the fields the caller
/// asked for (by their slots), pulled out by the store, not the whole record.
#[derive(Debug, Clone, PartialEq)]
pub struct DueContact {
    pub id: String,
    pub fields: Vec<FieldValue>,
    pub tags: Vec<String>,
    pub consent: Vec<String>,
    pub capabilities: Vec<String>,
    /// The built-in `created_at`, in minutes.
    pub created_at: Option<i64>,
    /// Which addresses it has (only their presence leaves the store).
    pub addresses: Addresses,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecUpdate {
    pub contact: String,
    pub step: String,
    pub version: String,
    pub state: ExecState,
    pub wake_at: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxNew {
    pub key: String,
    pub contact: String,
    pub version: String,
    pub step: String,
    pub channel: String,
    pub message: String,
    pub template: String,
    pub price_micros: i64,
    pub created_at: i64,
}

impl OutboxNew {
    /// The message to hand the provider for this row, borrowing from it.
    pub fn to_message(&self, now: i64) -> super::provider::Message<'_> {
        super::provider::Message { key: &self.key, contact: &self.contact, channel: &self.channel, message: &self.message, template: &self.template, now }
    }

    /// The outcome of this send, for the same outbox row.
    pub fn outcome(&self, sent: bool, at: i64, engagement: (Option<i64>, Option<i64>, Option<i64>), error: Option<String>) -> OutboxDone {
        let (delivered_at, opened_at, clicked_at) = engagement;
        OutboxDone { contact: self.contact.clone(), step: self.step.clone(), version: self.version.clone(), sent, at, delivered_at, opened_at, clicked_at, error }
    }
}

/// The idempotency key of one send: unique per campaign, version, contact
/// and step (the outbox's primary key), stable across retries and restarts.
pub fn outbox_key(campaign: &str, version: &str, contact: &str, step: &str) -> String {
    format!("{campaign}/{version}/{contact}/{step}")
}

/// The outcome of a send; names its outbox row by the row's primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxDone {
    pub contact: String,
    pub step: String,
    pub version: String,
    pub sent: bool,
    pub at: i64,
    pub delivered_at: Option<i64>,
    pub opened_at: Option<i64>,
    pub clicked_at: Option<i64>,
    pub error: Option<String>,
}

/// Counters of one step, added up across batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepCounts {
    pub entered: u64,
    pub sent: u64,
    pub failed: u64,
    pub cost_micros: i64,
    pub skipped: BTreeMap<String, u64>,
}

/// Everything one round of a batch writes, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub executions: Vec<ExecUpdate>,
    pub outbox_new: Vec<OutboxNew>,
    pub outbox_done: Vec<OutboxDone>,
    /// (amount in micro-euros, reason); negative is a debit.
    pub ledger: Vec<(i64, String)>,
    pub tags: Vec<(String, Vec<String>)>,
    pub steps: BTreeMap<String, StepCounts>,
    /// (ab_test, variant) → contacts assigned.
    pub ab: BTreeMap<(String, String), u64>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.executions.is_empty() && self.outbox_new.is_empty() && self.outbox_done.is_empty() && self.ledger.is_empty() && self.tags.is_empty()
    }
}

/// The interface the engine uses; `sqlite::SqliteStore` implements it.
pub trait Store {
    fn put_campaign(&mut self, name: &str, version: &str, program: &[u8], state: &str, now: i64) -> Result<(), StoreError>;
    fn campaign(&self, name: &str) -> Result<Option<CampaignRow>, StoreError>;
    fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError>;
    fn program_version(&self, campaign: &str, version: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records a campaign state change and its reason in the audit log.
    fn set_state(&mut self, name: &str, from: &str, to: &str, why: &str, now: i64) -> Result<(), StoreError>;
    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<(i64, String, String, String)>, StoreError>;
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError>;
    fn balance(&self) -> Result<i64, StoreError>;
    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError>;
    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[(String, ContactEvent)]) -> Result<(), StoreError>;
    fn contact_count(&self) -> Result<u64, StoreError>;
    fn for_each_contact(&self, f: &mut dyn FnMut(ContactRecord)) -> Result<(), StoreError>;
    fn contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError>;
    /// Contacts in id order after `after`, at most `limit`: streaming without holding a cursor.
    fn contacts_page(&self, after: &str, limit: usize) -> Result<Vec<ContactRecord>, StoreError>;
    /// Credits the opening balance once per database, atomically with its marker.
    fn ensure_initial_balance(&mut self, micros: i64, now: i64) -> Result<(), StoreError>;
    fn events_for(&self, contacts: &[&str]) -> Result<Vec<(String, ContactEvent)>, StoreError>;
    fn sent_for(&self, campaign: &str, contacts: &[&str]) -> Result<Vec<(String, SentMessage)>, StoreError>;
    /// Enrolls contacts (at most once each): (contact, step, wake_at).
    fn enroll(&mut self, campaign: &str, version: &str, entries: &[(String, String, i64)], now: i64) -> Result<u64, StoreError>;
    /// Enrolls every contact matching `program`'s audience (evaluated at
    /// `wake`) at `step`, waking at `wake`, inside the store: no contact
    /// crosses into the engine. `None` when this store cannot evaluate the
    /// audience itself; the caller then enrolls contact by contact.
    fn enroll_audience(&mut self, program: &crate::compile::program::Program, step: &str, wake: i64, now: i64) -> Result<Option<u64>, StoreError>;
    /// Executions due by `now`, earliest first, with `fields` of their contacts.
    fn due(&self, campaign: &str, now: i64, limit: usize, fields: &[FieldDef]) -> Result<Vec<Due>, StoreError>;
    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError>;
    fn commit(&mut self, campaign: &str, round: &Round, now: i64) -> Result<(), StoreError>;
    fn counts(&self, campaign: &str) -> Result<BTreeMap<ExecState, u64>, StoreError>;
    fn step_counts(&self, campaign: &str) -> Result<BTreeMap<String, StepCounts>, StoreError>;
    fn ab_counts(&self, campaign: &str) -> Result<BTreeMap<(String, String), u64>, StoreError>;
    /// Sends recorded but not confirmed (their `created_at` is when they were recorded).
    fn outbox_pending(&self, campaign: &str) -> Result<Vec<OutboxNew>, StoreError>;
    /// How many unfinished executions of `version` sit at one of `steps`.
    fn waiting_at(&self, campaign: &str, version: &str, steps: &[String]) -> Result<u64, StoreError>;
    /// Moves unfinished executions of `from` to `to` where their step is in
    /// `kept`; the others are skipped with reason `step-removed`. Returns (moved, skipped).
    fn migrate_executions(&mut self, campaign: &str, from: &str, to: &str, kept: &[String], now: i64) -> Result<(u64, u64), StoreError>;
    /// Puts `processing` executions back to `pending` (crash recovery).
    fn requeue_processing(&mut self, campaign: &str) -> Result<u64, StoreError>;
}
