//! `flowc run`: launch a campaign into the store, enroll its audience, and
//! run it to the end on a virtual or real clock, resumably.

use super::clock::{self, Clock, Minutes};
use super::drive::{DriveError, Driver, Ending};
use super::engine::{EngineConfig, EngineError};
use super::eval::{self, Ctx, Props};
use super::facts::{self, ContactEvent};
use super::lifecycle::{self, State};
use super::provider::Provider;
use super::report::{self, Report};
use super::store::{ContactId, Enrollment, ExecState, Lease, StepId, Store, StoreError, WorkerId};
use crate::compile::program::{Program, Trigger};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    Virtual,
    Real,
}

#[derive(Clone)]
pub struct RunOptions {
    pub clock: ClockKind,
    /// Where a virtual clock starts on a new database (minutes); default: now.
    pub start: Option<Minutes>,
    /// The prepaid balance a new database starts with, in micro-euros.
    pub initial_balance_micros: i64,
    pub engine: EngineConfig,
    /// Set by Ctrl-C: stop after the current batch.
    pub stop: Arc<AtomicBool>,
    /// How long this run's claims live (`Lease::ttl_ms`): on a shared
    /// database, work a killed run held is taken over this long after it
    /// was claimed, by a worker or by the same command run again.
    pub lease_ttl_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub finished: u64,
    pub total: u64,
    pub now: Minutes,
    pub transitions: u64,
}

/// The wall-clock instant of a scheduled trigger. A local time that occurs
/// twice (clocks go back) fires at the first; one that does not exist
/// (clocks go forward) fires at the same wall time after the jump, an hour
/// later for a one-hour gap.
pub fn scheduled_instant(at: &str, zone: &str) -> Option<Minutes> {
    use chrono::TimeZone;
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let naive = chrono::NaiveDateTime::parse_from_str(at, crate::compile::program::SCHEDULE_FORMAT).ok()?;
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Some(t.timestamp().div_euclid(60)),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.timestamp().div_euclid(60)),
        chrono::LocalResult::None => {
            // In a gap: read the wall time with the offset in force just
            // before it, which lands the same distance past the jump.
            use chrono::Offset;
            let before = tz.from_local_datetime(&(naive - chrono::TimeDelta::hours(3))).earliest()?;
            let offset = before.offset().fix().local_minus_utc() as i64;
            Some((naive.and_utc().timestamp() - offset).div_euclid(60))
        }
    }
}

fn clock_start(store: &dyn Store, opts: &RunOptions) -> Result<Minutes, StoreError> {
    clock_now(store, opts.clock, opts.start)
}

/// What time it is for this database on this clock: the rule every command
/// that reads the time shares (run, estimate, launch's cost check, start),
/// so what is estimated is what gets enrolled.
pub fn clock_now(store: &dyn Store, kind: ClockKind, start: Option<Minutes>) -> Result<Minutes, StoreError> {
    match clock_source(store, kind, start)? {
        ClockSource::At(now) => Ok(now),
        ClockSource::AfterNewestContact => Ok(after_newest(store.newest_created_at()?)),
    }
}

/// Where a virtual clock stands for this database: where it was saved, else
/// `start`, else just after the newest contact data.
pub fn virtual_now(store: &dyn Store, start: Option<Minutes>) -> Result<Minutes, StoreError> {
    clock_now(store, ClockKind::Virtual, start)
}

/// What the time of `clock_now` is, found without reading the contacts: a
/// known instant, or just after the newest contact's creation, which is a
/// function of the contacts alone (an estimate cached for the same data
/// holds for it without reading every contact again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The wall clock, the time the database's last run saved, or `start`.
    At(Minutes),
    AfterNewestContact,
}

pub fn clock_source(store: &dyn Store, kind: ClockKind, start: Option<Minutes>) -> Result<ClockSource, StoreError> {
    if kind == ClockKind::Real {
        return Ok(ClockSource::At(clock::real_now()));
    }
    if let Some(saved) = store.meta("clock")?.and_then(|s| s.parse().ok()) {
        return Ok(ClockSource::At(saved));
    }
    Ok(start.map_or(ClockSource::AfterNewestContact, ClockSource::At))
}

/// A simulation starts just after its newest contact data (`newest`
/// creation), so the same contacts give the same report whenever it runs;
/// with no contact created yet, at the wall clock.
pub fn after_newest(newest: Option<Minutes>) -> Minutes {
    newest.map_or_else(clock::real_now, |n| n + 60)
}

/// Launches (or resumes) `program` and runs it until every execution has
/// finished, the campaign pauses, or `opts.stop` is set.
pub fn run(
    store: &mut dyn Store,
    provider: &mut dyn Provider,
    program: &Program,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, RunError> {
    run_with_events(store, provider, program, opts, Vec::new(), progress)
}

/// `run`, replaying `events` on the run's clock: the clock goes to the
/// earlier of the next wake-up and the next event; every event whose time
/// has come is stored and wakes what it concerns before the next pass.
/// Events before the run's start come in at the start.
pub fn run_with_events(
    store: &mut dyn Store,
    provider: &mut dyn Provider,
    program: &Program,
    opts: &RunOptions,
    events: Vec<super::ingest::Incoming>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, RunError> {
    let mut now = clock_start(store, opts)?;
    let mut clock: Box<dyn Clock> = match opts.clock {
        ClockKind::Virtual => Box::new(clock::Virtual::starting_at(now)),
        ClockKind::Real => Box::new(clock::Real),
    };
    store.ensure_initial_balance(opts.initial_balance_micros, now)?;
    let name = program.campaign.clone();
    let mut state = start(store, program, now)?;
    if state != State::Running {
        return Ok(report::build(store, program, state.as_str(), provider.observed(), now)?);
    }
    let enrolled_key = format!("enrolled/{name}/{}", program.version);
    if store.meta(&enrolled_key)?.is_none() {
        enroll(store, program, now)?;
        store.set_meta(&enrolled_key, "1")?;
    }
    let total = store.counts(&name)?.values().sum::<u64>();
    let mut driver = Driver::new(Lease { worker: WorkerId::this_process(), ttl_ms: opts.lease_ttl_ms });
    let mut transitions = 0;
    // Counted here, not queried: a GROUP BY over a million executions per batch would dominate.
    let mut finished = finished_count(store, &name)?;
    let mut replay = super::ingest::Replay::resume(store, &name, events)?;
    let mut engine = opts.engine.clone();
    if opts.clock == ClockKind::Real {
        engine.pace = super::engine::Pace::RealTime;
        engine.stop = Some(opts.stop.clone());
    }
    while !opts.stop.load(Ordering::SeqCst) {
        replay.ingest_due(store, &name, now)?;
        // While events are still to come, a drained campaign is not finished:
        // they may wake or exit its executions.
        let ending = if replay.next_at().is_some() { Ending::StaysOpen } else { Ending::WhenDrained };
        let pass = driver.pass(store, provider, program, &engine, ending, now)?;
        transitions += pass.transitions;
        finished += pass.finished;
        state = pass.state;
        if state != State::Running {
            break;
        }
        if pass.work > 0 {
            progress(Progress { finished: finished.min(total), total, now, transitions });
            continue;
        }
        // Idle and not finished: something is due later (a wake-up, a retry or an event).
        let next = match (store.next_wake(&name)?, replay.next_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(t) = next else { break };
        clock.wait_until(t);
        now = clock.now();
        if opts.clock == ClockKind::Virtual {
            store.set_meta("clock", &now.to_string())?;
        }
    }
    if opts.clock == ClockKind::Virtual {
        store.set_meta("clock", &now.to_string())?;
    }
    let done = finished_count(store, &name)?;
    progress(Progress { finished: done, total, now, transitions });
    Ok(report::build(store, program, state.as_str(), provider.observed(), now)?)
}

fn finished_count(store: &dyn Store, name: &str) -> Result<u64, StoreError> {
    let c = store.counts(name)?;
    Ok([ExecState::Completed, ExecState::Failed, ExecState::Skipped]
        .iter()
        .map(|s| c.get(s).copied().unwrap_or(0))
        .sum())
}

/// Launches the program if it is new (or a new version), and starts it if it
/// is launched but not started. Returns the campaign's state.
fn start(store: &mut dyn Store, program: &Program, now: Minutes) -> Result<State, RunError> {
    let refused = |e: lifecycle::LifecycleError| RunError::Refused(e.to_string());
    let row = store.campaign(&program.campaign)?;
    let launched_here = match &row {
        None => true,
        Some(r) => r.version != program.version.0 && !matches!(r.state, State::Completed | State::CompletedPartial),
    };
    if launched_here {
        lifecycle::launch(store, program, lifecycle::RemovedSteps::Refuse, now).map_err(refused)?;
    }
    let mut state = lifecycle::state(store, &program.campaign).map_err(refused)?;
    if state == State::Draft {
        lifecycle::transition(store, &program.campaign, State::Scheduled, "launched by flowc run", now)
            .map_err(refused)?;
        state = State::Scheduled;
    }
    if state == State::Scheduled {
        lifecycle::transition(store, &program.campaign, State::Running, "started by flowc run", now)
            .map_err(refused)?;
        state = State::Running;
    }
    Ok(state)
}

/// The program's entry step and when non-event enrollments start (the
/// scheduled instant, else now).
fn entry_and_start(p: &Program, now: Minutes) -> Result<(StepId, Minutes), RunError> {
    let entry = p.nodes.first().map_or_else(|| StepId(String::new()), |n| n.id.clone());
    let start_at = match &p.trigger {
        Trigger::Scheduled { at, zone } => scheduled_instant(at, zone)
            .ok_or_else(|| RunError::Refused(format!("cannot resolve the scheduled time {at} in {zone}")))?,
        _ => now,
    };
    Ok((entry, start_at))
}

/// Starts a SCHEDULED campaign whose trigger enrolls its audience at once
/// (manual, scheduled): enrolls first, then moves it to RUNNING. Enrolling
/// is idempotent (once per contact) and a campaign that is not RUNNING is
/// not stepped, so a crash in between leaves it SCHEDULED and starting it
/// again finishes the job, where the other order would leave it RUNNING
/// with part of its audience and refuse a second start.
pub fn start_enrolling(store: &mut dyn Store, p: &Program, why: &str, now: Minutes) -> Result<u64, RunError> {
    let state = lifecycle::state(store, &p.campaign).map_err(|e| RunError::Refused(e.to_string()))?;
    if state != State::Scheduled {
        return Err(RunError::Refused(format!(
            "campaign `{}` is {}; only a SCHEDULED campaign can be started",
            p.campaign,
            state.as_str()
        )));
    }
    let n = enroll(store, p, now)?;
    lifecycle::transition(store, &p.campaign, State::Running, why, now)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    Ok(n)
}

/// Enrolls every contact the trigger and audience select, once each.
pub fn enroll(store: &mut dyn Store, p: &Program, now: Minutes) -> Result<u64, RunError> {
    if matches!(p.trigger, Trigger::Api) {
        // An API campaign enrolls the contacts its triggers name (the
        // service's trigger endpoint, `flowc run --triggers`), never its
        // whole audience: that would send a one-time code to everyone.
        return Ok(0);
    }
    let (entry, start_at) = entry_and_start(p, now)?;
    if !matches!(p.trigger, Trigger::Event { .. }) {
        // One start time for everyone: the store can select the audience itself.
        if let Some(n) = store.enroll_audience(p, &entry, start_at.max(now), now)? {
            return Ok(n);
        }
    }
    enroll_each(store, p, now)
}

/// Enrolls contact by contact, evaluating trigger and audience in the
/// engine's evaluator (event triggers, and stores that cannot select).
pub fn enroll_each(store: &mut dyn Store, p: &Program, now: Minutes) -> Result<u64, RunError> {
    if matches!(p.trigger, Trigger::Api) {
        return Ok(0); // As in `enroll`: triggers name the contacts.
    }
    let (entry, start_at) = entry_and_start(p, now)?;
    let needs_events = super::engine::needs_events(p)
        || matches!(&p.trigger, Trigger::Event { event, .. } if event != "contact.created");
    let mut enrolled = 0;
    let mut after: Option<ContactId> = None;
    loop {
        let chunk = store.contacts_page(after.as_ref(), 5000)?;
        let Some(last) = chunk.last() else { break };
        after = Some(last.id.clone());
        let mut entries = Vec::new();
        let mut events: std::collections::HashMap<ContactId, Vec<ContactEvent>> = std::collections::HashMap::new();
        if needs_events {
            let ids: Vec<&ContactId> = chunk.iter().map(|c| &c.id).collect();
            for e in store.events_for(&ids)? {
                events.entry(e.contact).or_default().push(e.event);
            }
        }
        for c in &chunk {
            let f = facts::of_record(p, c, events.remove(&c.id).unwrap_or_default());
            let wake = match &p.trigger {
                Trigger::Event { event, props, filter } => {
                    let cx = Ctx { program: p, facts: &f, now };
                    let first = f
                        .events
                        .iter()
                        .filter(|e| e.name == *event)
                        .filter(|e| {
                            filter.as_ref().is_none_or(|flt| {
                                eval::eval_with(&cx, flt, Props::Event { names: props, values: &e.props })
                            })
                        })
                        .map(|e| e.at)
                        .min();
                    match first {
                        Some(at) => at.max(now),
                        None => continue,
                    }
                }
                _ => start_at.max(now),
            };
            let cx = Ctx { program: p, facts: &f, now: wake };
            if p.audience.as_ref().is_some_and(|a| !eval::eval(&cx, a)) {
                continue;
            }
            entries.push(Enrollment { contact: c.id.clone(), step: entry.clone(), wake_at: wake });
        }
        enrolled += store.enroll(&p.campaign, &p.version.0, &entries, now)?;
    }
    Ok(enrolled)
}
