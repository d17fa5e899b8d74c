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
use crate::runtime::store::{Lease, Store, WorkerId};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// The service's clock: real, or virtual (jumping to the next wake-up when
/// idle, for tests and demos). Shared with the handlers so enrollments and
/// the runner agree on "now".
#[derive(Clone)]
pub struct SharedClock {
    virtual_now: Option<Arc<AtomicI64>>,
}

impl SharedClock {
    pub fn real() -> SharedClock {
        SharedClock { virtual_now: None }
    }
    pub fn virtual_at(start: Minutes) -> SharedClock {
        SharedClock { virtual_now: Some(Arc::new(AtomicI64::new(start))) }
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
}

#[derive(Clone, Default)]
pub struct RunnerConfig {
    pub engine: EngineConfig,
}

/// Runs until `stop`; each pass commits whole batches, so stopping between
/// passes loses nothing.
pub fn run(
    mut store: Box<dyn Store + Send>,
    mut provider: Box<dyn Provider + Send>,
    clock: SharedClock,
    config: RunnerConfig,
    stop: Arc<AtomicBool>,
) {
    let mut config = config;
    if !clock.is_virtual() {
        config.engine.pace = crate::runtime::engine::Pace::RealTime;
        config.engine.stop = Some(stop.clone());
    }
    let mut driver = Driver::new(Lease::new(WorkerId::this_process()));
    while !stop.load(Ordering::SeqCst) {
        let busy = match pass(store.as_mut(), provider.as_mut(), &clock, &config, &mut driver) {
            Ok(b) => b,
            Err(e) => {
                super::log(format_args!("flowc serve: runner: {e}"));
                false
            }
        };
        if busy {
            continue;
        }
        // Idle: a virtual clock jumps to the next wake-up; a real one waits a little.
        if clock.is_virtual() {
            if let Ok(Some(t)) = next_wake(store.as_ref(), clock.now()) {
                clock.advance_to(t);
                continue;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn next_wake(store: &dyn Store, now: Minutes) -> Result<Option<Minutes>, String> {
    let mut best: Option<Minutes> = None;
    for c in store.campaigns().map_err(|e| e.to_string())? {
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

/// One pass over the campaigns; true when some work was done.
fn pass(
    store: &mut dyn Store,
    provider: &mut dyn Provider,
    clock: &SharedClock,
    config: &RunnerConfig,
    driver: &mut Driver,
) -> Result<bool, String> {
    let now = clock.now();
    let mut busy = false;
    for c in store.campaigns().map_err(|e| e.to_string())? {
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
                    if matches!(program.trigger, Trigger::Scheduled { .. }) {
                        run::start_enrolling(store, &program, "started by flowc serve", now)
                            .map_err(|e| e.to_string())?;
                    } else {
                        lifecycle::transition(store, &c.name, State::Running, "started by flowc serve", now)
                            .map_err(|e| e.to_string())?;
                    }
                    busy = true;
                }
            }
            State::Running => {
                let p = driver
                    .pass(store, provider, &program, &config.engine, Ending::in_service(&program.trigger), now)
                    .map_err(|e| e.to_string())?;
                busy |= p.work > 0;
            }
            _ => {}
        }
    }
    Ok(busy)
}
