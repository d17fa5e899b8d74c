//! Campaign states and their transitions (docs/runtime.md), launching and
//! version migration. Every transition is checked here and written to the
//! audit log with its reason.

use super::store::{atomically, BreakerState, CampaignVersion, Migration, Probe, StepId, Store, StoreError};
use crate::compile::codec;
use crate::compile::diff;
use crate::compile::program::Program;

/// The stored lifecycle state; its transitions are checked here.
pub use super::store::CampaignState as State;

impl State {
    /// The transitions of the contract; everything else is refused.
    pub fn can_go_to(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Draft, Scheduled)
                | (Scheduled, Running)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, PausedError)
                | (Running, PausedBalance)
                | (PausedError, Running)
                | (PausedBalance, Running)
                | (Running, Completed)
                | (Running, CompletedPartial)
        )
    }

    pub fn is_paused(self) -> bool {
        matches!(self, State::Paused | State::PausedError | State::PausedBalance)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no campaign `{0}` in the database (launch it first)")]
    NotFound(String),
    #[error("campaign `{name}` is {from}; it cannot become {to}")]
    Invalid { name: String, from: String, to: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The campaign's current state.
pub fn state(store: &dyn Store, name: &str) -> Result<State, LifecycleError> {
    let row = store.campaign(name)?.ok_or_else(|| LifecycleError::NotFound(name.to_string()))?;
    Ok(row.state)
}

/// Moves a campaign to `to`, if the contract allows it from where it is.
pub fn transition(store: &mut dyn Store, name: &str, to: State, why: &str, now: i64) -> Result<State, LifecycleError> {
    let from = state(store, name)?;
    if !from.can_go_to(to) {
        return Err(LifecycleError::Invalid {
            name: name.to_string(),
            from: from.as_str().into(),
            to: to.as_str().into(),
        });
    }
    store.set_state(name, from, to, why, now)?;
    Ok(from)
}

/// What launching a new version does with executions waiting at steps it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedSteps {
    /// Refuse the new version (the default).
    Refuse,
    /// Skip those executions with reason `step-removed` (`--force`).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    /// A new campaign, now SCHEDULED.
    New,
    /// A new version of a live campaign; executions moved by step id.
    Migrated { moved: u64, skipped: u64, removed_steps: Vec<StepId> },
}

/// Launches `program`. The caller has already refused programs with check
/// errors. A new version of a live campaign moves its waiting executions to
/// the same step ids in the new version; executions waiting at a step the new
/// version removed make the migration unmappable, refused unless `force`,
/// which marks them skipped (reason `step-removed`).
pub fn launch(
    store: &mut dyn Store,
    program: &Program,
    removed: RemovedSteps,
    now: i64,
) -> Result<Launched, LifecycleError> {
    // One transaction: a crash or a failed write leaves the campaign as it
    // was (or absent), never stored without its state change or half migrated.
    atomically(store, |store| launch_in(store, program, removed, now))
}

fn launch_in(
    store: &mut dyn Store,
    program: &Program,
    removed_steps: RemovedSteps,
    now: i64,
) -> Result<Launched, LifecycleError> {
    let bytes = codec::to_binary(program);
    let name = &program.campaign;
    let Some(row) = store.campaign(name)? else {
        store.put_campaign(
            &CampaignVersion { name, version: &program.version.0, program: &bytes, state: State::Draft },
            now,
        )?;
        transition(store, name, State::Scheduled, "launched", now)?;
        return Ok(Launched::New);
    };
    let current = row.state;
    if row.version == program.version.0 {
        return Err(LifecycleError::Refused(format!(
            "campaign `{name}` version {} is already launched ({})",
            row.version, row.state
        )));
    }
    if matches!(current, State::Completed | State::CompletedPartial) {
        return Err(LifecycleError::Refused(format!(
            "campaign `{name}` has finished ({}); give the new version another name",
            row.state
        )));
    }
    let old = codec::from_binary(&row.program)
        .map_err(|e| LifecycleError::Refused(format!("stored program of `{name}`: {e}")))?;
    let map = diff::map_versions(&old, program);
    let removed: Vec<StepId> = map.removed.iter().map(|(id, _)| id.clone()).collect();
    // Triggers queued for the campaign (`Store::enroll_triggered`) are
    // executions of the old version: enrolled first, so the check below
    // and the migration see them as the others.
    store.drain_triggered(name, usize::MAX, now)?;
    let waiting = store.waiting_at(name, &old.version.0, &removed)?;
    if waiting > 0 && removed_steps == RemovedSteps::Refuse {
        return Err(LifecycleError::Refused(format!(
            "{waiting} execution(s) wait at step(s) the new version removes ({}); label the steps so they keep their ids, or pass --force to skip those executions",
            removed.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    store
        .put_campaign(&CampaignVersion { name, version: &program.version.0, program: &bytes, state: row.state }, now)?;
    let kept: Vec<StepId> = map.kept.iter().map(|(id, _, _, _)| id.clone()).collect();
    let migration = Migration { campaign: name, from: &old.version.0, to: &program.version.0, kept: &kept };
    let (moved, skipped) = store.migrate_executions(&migration, now)?;
    store.set_state(
        name,
        row.state,
        row.state,
        &format!("version {} replaced {}: {moved} moved, {skipped} skipped", program.version, old.version),
        now,
    )?;
    Ok(Launched::Migrated { moved, skipped, removed_steps: removed })
}

/// `flowc campaign resume`: back to RUNNING from any paused state, in one
/// transaction. After a provider outage the breaker starts afresh and the
/// next pass probes with one message before full speed.
pub fn resume(store: &mut dyn Store, name: &str, now: i64) -> Result<State, LifecycleError> {
    atomically(store, |store| {
        let from = state(store, name)?;
        if !from.is_paused() {
            return Err(LifecycleError::Invalid {
                name: name.to_string(),
                from: from.as_str().into(),
                to: State::Running.as_str().into(),
            });
        }
        transition(store, name, State::Running, "resumed", now)?;
        if from == State::PausedError {
            store.set_probe(name, Probe::Owed)?;
            store.set_breaker(name, &BreakerState::default())?;
        }
        Ok(from)
    })
}

/// `flowc campaign pause`.
pub fn pause(store: &mut dyn Store, name: &str, now: i64) -> Result<(), LifecycleError> {
    transition(store, name, State::Paused, "paused by an operator", now).map(|_| ())
}
