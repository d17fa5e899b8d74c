//! The interpreter inside `flowc serve`: starts campaigns whose time has
//! come, and runs batches of every RUNNING campaign, until told to stop.

use crate::compile::codec;
use crate::compile::program::Trigger;
use crate::runtime::clock::{self, Minutes};
use crate::runtime::drive::{Driver, Ending};
use crate::runtime::engine::EngineConfig;
use crate::runtime::lifecycle::{self, State};
use crate::runtime::provider::Provider;
use crate::runtime::run;
use crate::runtime::store::{Lease, Store, StoreError};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// The service's clock: real, or virtual (jumping to the next wake-up when
/// idle, for tests and demos). Shared with the handlers so enrollments and
/// the runner agree on "now".
#[derive(Clone)]
pub struct SharedClock {
    virtual_now: Option<Arc<AtomicI64>>,
    kept: Kept,
}

/// Where a virtual clock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// In this process (one `flowc serve` on its own database).
    InProcess,
    /// In the database (meta `clock`), so every worker and replica on it
    /// reads the same time, and it moves only when no worker has work in
    /// hand (`Store::advance_clock`).
    InDatabase,
}

impl SharedClock {
    pub fn real() -> SharedClock {
        SharedClock { virtual_now: None, kept: Kept::InProcess }
    }
    pub fn virtual_at(start: Minutes) -> SharedClock {
        SharedClock { virtual_now: Some(Arc::new(AtomicI64::new(start))), kept: Kept::InProcess }
    }
    /// A virtual clock kept in `store`'s database, starting at what it
    /// saved, else at `start` (saved now, unless another process saved one
    /// first).
    pub fn virtual_in_database(store: &mut dyn Store, start: Minutes) -> Result<SharedClock, StoreError> {
        let saved = store.meta("clock")?.and_then(|v| v.parse::<Minutes>().ok());
        let at = match saved {
            Some(t) => t,
            None => {
                store.advance_clock(start, start)?;
                store.meta("clock")?.and_then(|v| v.parse::<Minutes>().ok()).unwrap_or(start)
            }
        };
        Ok(SharedClock { virtual_now: Some(Arc::new(AtomicI64::new(at))), kept: Kept::InDatabase })
    }
    pub fn now(&self) -> Minutes {
        self.virtual_now.as_ref().map_or_else(clock::real_now, |v| v.load(Ordering::SeqCst))
    }
    fn advance_to(&self, t: Minutes) {
        if let Some(v) = &self.virtual_now {
            v.fetch_max(t, Ordering::SeqCst);
        }
    }
    pub fn is_virtual(&self) -> bool {
        self.virtual_now.is_some()
    }
    /// Reads the database's clock (another worker may have moved it).
    fn sync(&self, store: &dyn Store) -> Result<(), StoreError> {
        if self.kept == Kept::InDatabase {
            if let Some(t) = store.meta("clock")?.and_then(|v| v.parse::<Minutes>().ok()) {
                self.advance_to(t);
            }
        }
        Ok(())
    }
    /// Moves an idle virtual clock to `to`; false when another worker
    /// still has work in hand (or moved it first).
    fn jump(&self, store: &mut dyn Store, to: Minutes) -> Result<bool, StoreError> {
        match self.kept {
            Kept::InProcess => {
                self.advance_to(to);
                Ok(true)
            }
            Kept::InDatabase => {
                let moved = store.advance_clock(self.now(), to)?;
                self.sync(store)?;
                Ok(moved)
            }
        }
    }
}

#[derive(Clone, Default)]
pub struct RunnerConfig {
    pub engine: EngineConfig,
    /// Only these campaigns (all when empty).
    pub campaigns: Vec<String>,
    pub until: Until,
}

/// When a runner stops by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Until {
    /// Only when told to (`stop`).
    #[default]
    Stopped,
    /// Also when no campaign it runs is RUNNING and nothing is scheduled:
    /// `flowc worker --until-idle`, for batch jobs and tests.
    Idle,
}

/// Runs until `stop`; each pass commits whole batches, so stopping between
/// passes loses nothing.
pub fn run(
    mut store: Box<dyn Store + Send>,
    mut provider: Box<dyn Provider + Send>,
    clock: SharedClock,
    config: RunnerConfig,
    lease: Lease,
    stop: Arc<AtomicBool>,
) {
    let mut config = config;
    if !clock.is_virtual() {
        config.engine.pace = crate::runtime::engine::Pace::RealTime;
        config.engine.stop = Some(stop.clone());
    }
    let mut driver = Driver::new(lease);
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = clock.sync(store.as_ref()) {
            super::log(format_args!("flowc: runner: {e}"));
        }
        let busy = match pass(store.as_mut(), provider.as_mut(), &clock, &config, &mut driver) {
            Ok(b) => b,
            Err(e) => {
                super::log(format_args!("flowc: runner: {e}"));
                Busy::Idle
            }
        };
        match busy {
            Busy::Behind => continue,
            // Caught up on a real clock: what comes due next is taken a
            // pause later, in one batch instead of many small ones. Under
            // a stream of API triggers a batch per request or two cost
            // the runner about three times the CPU per trigger of a batch
            // per pause (each batch has a fixed cost, and each of its
            // commits writes again the pages the triggers' commits just
            // wrote), CPU the triggers' own commits then lacked. A
            // virtual clock goes on at once: it has no real time to wait.
            Busy::CaughtUp if clock.is_virtual() => continue,
            Busy::CaughtUp => {
                std::thread::sleep(PAUSE);
                continue;
            }
            Busy::Idle => {}
        }
        let next = next_wake(store.as_ref(), &config, clock.now());
        // Idle: a virtual clock jumps to the next wake-up; a real one waits a little.
        if clock.is_virtual() {
            if let Ok(Some(t)) = next {
                match clock.jump(store.as_mut(), t) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => super::log(format_args!("flowc: runner: {e}")),
                }
            }
        }
        if config.until == Until::Idle && matches!(next, Ok(None)) && !any_running(store.as_ref(), &config) {
            break;
        }
        std::thread::sleep(PAUSE);
    }
}

/// How long an idle runner waits before it looks again, and one that has
/// caught up before its next batch: the latency a new enrollment may see
/// before its first step (on a real clock, whose steps are minutes apart).
const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// What a pass found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    /// Nothing to do.
    Idle,
    /// Some work, all there was: no batch came back full.
    CaughtUp,
    /// A full batch (more may be due), or a campaign just started.
    Behind,
}

/// Whether a campaign this runner runs is RUNNING.
fn any_running(store: &dyn Store, config: &RunnerConfig) -> bool {
    store.campaigns().map_or(true, |cs| cs.iter().any(|c| c.state == State::Running && runs(config, &c.name)))
}

fn runs(config: &RunnerConfig, campaign: &str) -> bool {
    config.campaigns.is_empty() || config.campaigns.iter().any(|c| c == campaign)
}

fn next_wake(store: &dyn Store, config: &RunnerConfig, now: Minutes) -> Result<Option<Minutes>, String> {
    let mut best: Option<Minutes> = None;
    for c in store.campaigns().map_err(|e| e.to_string())?.into_iter().filter(|c| runs(config, &c.name)) {
        let t = match c.state {
            State::Running => store.next_wake(&c.name).map_err(|e| e.to_string())?,
            State::Scheduled => match codec::from_binary(&c.program).map(|p| p.trigger) {
                Ok(Trigger::Scheduled { at, zone }) => run::scheduled_instant(&at, &zone),
                _ => None,
            },
            _ => None,
        };
        if let Some(t) = t.filter(|t| *t > now) {
            best = Some(best.map_or(t, |b: Minutes| b.min(t)));
        }
    }
    Ok(best)
}

/// One pass over the campaigns.
fn pass(
    store: &mut dyn Store,
    provider: &mut dyn Provider,
    clock: &SharedClock,
    config: &RunnerConfig,
    driver: &mut Driver,
) -> Result<Busy, String> {
    let now = clock.now();
    let mut busy = Busy::Idle;
    for c in store.campaigns().map_err(|e| e.to_string())?.into_iter().filter(|c| runs(config, &c.name)) {
        let Ok(program) = codec::from_binary(&c.program) else { continue };
        match c.state {
            State::Scheduled => {
                // Event and API campaigns run from the moment the service serves them;
                // scheduled ones when their local time comes; manual ones on `flowc campaign start`.
                let due = match &program.trigger {
                    Trigger::Event { .. } | Trigger::Api => true,
                    Trigger::Scheduled { at, zone } => run::scheduled_instant(at, zone).is_some_and(|t| t <= now),
                    Trigger::Manual => false,
                };
                if due {
                    let started = if matches!(program.trigger, Trigger::Scheduled { .. }) {
                        run::start_enrolling(store, &program, "started by flowc serve", now).map(|_| ())
                    } else {
                        lifecycle::transition(store, &c.name, State::Running, "started by flowc serve", now)
                            .map(|_| ())
                            .map_err(|e| run::RunError::Refused(e.to_string()))
                    };
                    // Another process on the same database (a replica, a
                    // worker) started it first: enrolling is once per
                    // contact, so nothing was done twice.
                    if let Err(e) = started {
                        if lifecycle::state(store, &c.name).map_err(|e| e.to_string())? == State::Scheduled {
                            return Err(e.to_string());
                        }
                    }
                    busy = Busy::Behind;
                }
            }
            State::Running => {
                let p = driver
                    .pass(store, provider, &program, &config.engine, Ending::in_service(&program.trigger), now)
                    .map_err(|e| e.to_string())?;
                if p.work as usize >= config.engine.batch.max(1) {
                    busy = Busy::Behind;
                } else if p.work > 0 && busy == Busy::Idle {
                    busy = Busy::CaughtUp;
                }
            }
            _ => {}
        }
    }
    Ok(busy)
}
