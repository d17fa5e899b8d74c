//! Driving one RUNNING campaign: the policy `flowc run` and `flowc serve`
//! share. Each pass settles what a stopped process left in flight (once per
//! driver), tries again the failed sends that are due, runs one batch, and
//! decides the campaign's next state (circuit breaker, balance, completion).
//! The callers only differ in how they wait between passes.

use super::clock::Minutes;
use super::engine::{Engine, EngineConfig, EngineError};
use super::lifecycle::{self, LifecycleError, State};
use super::provider::Provider;
use super::store::{ExecState, Lease, Probe, Store, StoreError};
use crate::compile::program::{Program, Trigger};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

/// What happens to a campaign once nothing of it is left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It completes (`flowc run`; scheduled and manual campaigns in `flowc serve`).
    WhenDrained,
    /// It stays RUNNING for new contacts (API and event campaigns in `flowc serve`).
    StaysOpen,
}

impl Ending {
    /// The service's rule: one-shot campaigns finish, triggered ones stay open.
    pub fn in_service(trigger: &Trigger) -> Ending {
        match trigger {
            Trigger::Scheduled { .. } | Trigger::Manual => Ending::WhenDrained,
            Trigger::Event { .. } | Trigger::Api => Ending::StaysOpen,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Executions stepped plus sends tried again: zero means idle.
    pub work: u64,
    pub transitions: u64,
    /// Executions that finished (completed, skipped or failed) in this pass.
    pub finished: u64,
    /// The campaign's state after the pass.
    pub state: State,
}

/// The settings a campaign runs with: the caller's, plus what the store
/// says (the account's auto-reload; the probe owed after a resume from
/// PAUSED_ERROR). Read afresh every pass, so `flowc balance auto-reload`
/// takes effect on a running service.
pub fn policy(store: &dyn Store, base: &EngineConfig, campaign: &str) -> Result<EngineConfig, StoreError> {
    let mut config = base.clone();
    if config.auto_reload.is_none() {
        config.auto_reload = store.auto_reload()?;
    }
    config.probe = config.probe || store.probe_pending(campaign)?;
    Ok(config)
}

/// Drives campaigns for one process: remembers which campaigns it has
/// already recovered and the identity its claims carry.
pub struct Driver {
    lease: Lease,
    /// When each campaign was last recovered: again once a claim could have
    /// lapsed since, so work a killed worker held is taken over.
    recovered: HashMap<String, Instant>,
}

impl Driver {
    pub fn new(lease: Lease) -> Driver {
        Driver { lease, recovered: HashMap::new() }
    }

    fn recovery_due(&self, campaign: &str) -> bool {
        let every = Duration::from_millis(self.lease.ttl_ms.max(0) as u64);
        self.recovered.get(campaign).is_none_or(|at| at.elapsed() >= every)
    }

    /// One pass over `program`'s campaign, which must be RUNNING.
    pub fn pass(
        &mut self,
        store: &mut dyn Store,
        provider: &mut dyn Provider,
        program: &Program,
        base: &EngineConfig,
        ending: Ending,
        now: Minutes,
    ) -> Result<Pass, DriveError> {
        let name = program.campaign.as_str();
        let config = policy(store, base, name)?;
        let recover = self.recovery_due(name).then(Instant::now);
        let ran = (|| -> Result<_, DriveError> {
            let mut engine = Engine::new(&mut *store, provider, program.clone(), config.clone(), self.lease.clone())?;
            if recover.is_some() {
                engine.recover(now)?;
            }
            let retried = engine.retry_due(now)?;
            let out = if engine.breaker_tripped() { Default::default() } else { engine.run_batch(now)? };
            Ok((out, retried, engine.breaker_tripped(), engine.probe_owed()))
        })();
        let (out, retried, tripped, probe_owed) = match ran {
            Ok(ran) => ran,
            Err(e) => {
                // A batch stopped between its claim and its commit: the
                // claim ends now, not when its lease runs out.
                let _ = store.release_claim();
                return Err(e);
            }
        };
        if let Some(at) = recover {
            self.recovered.insert(name.to_string(), at);
        }
        if config.probe && !probe_owed {
            store.set_probe(name, Probe::Done)?;
        }
        let mut pass = Pass {
            work: out.executions as u64 + retried.attempts,
            transitions: out.transitions,
            finished: out.finished + out.provider_failures + retried.failed,
            state: State::Running,
        };
        let next = if tripped {
            Some((State::PausedError, "the provider kept failing: circuit breaker tripped"))
        } else if out.out_of_balance {
            Some((State::PausedBalance, "the balance cannot pay the next send"))
        } else if pass.work == 0
            && ending == Ending::WhenDrained
            && store.next_wake(name)?.is_none()
            // A send another worker is relaying (or left in flight when it
            // died, taken over once its lease lapses) is still to be made.
            && store.sends_in_flight(name)? == 0
        {
            let counts = store.counts(name)?;
            // Nothing due here, but another worker may hold executions it
            // is stepping: finished only when none is left unfinished.
            let open = counts.get(&ExecState::Pending).copied().unwrap_or(0)
                + counts.get(&ExecState::Processing).copied().unwrap_or(0);
            let partial = counts.get(&ExecState::Failed).copied().unwrap_or(0)
                + counts.get(&ExecState::Skipped).copied().unwrap_or(0)
                > 0;
            match (open, partial) {
                (0, true) => Some((State::CompletedPartial, "every execution finished; some failed or were skipped")),
                (0, false) => Some((State::Completed, "every execution finished")),
                _ => None,
            }
        } else {
            None
        };
        if let Some((to, why)) = next {
            pass.state = match lifecycle::transition(store, name, to, why, now) {
                Ok(_) => to,
                // Another worker on the same database moved the campaign
                // first (finished it, or paused it for the same balance):
                // its state is the outcome, not an error.
                Err(LifecycleError::Invalid { .. }) | Err(LifecycleError::Store(StoreError::StateChanged { .. })) => {
                    lifecycle::state(store, name)?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(pass)
    }
}
