//! The rate limit (LANGUAGE.md §9.3): an even-spacing limiter (GCRA with a
//! burst of one). A campaign with `rate limit N per P` hands the provider at
//! most one message every `ceil(P / N)` milliseconds, so no window of length
//! `P` (sliding, half-open) ever holds more than `N`. The only state is the
//! instant the next message may go (`next_free_ms`), kept in the store per
//! campaign and committed with the outbox rows that used it.

use crate::compile::program::RateLimit;

/// What the limiter answers for a send at a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send now, handed over at this instant (ms) within the minute.
    Now { at_ms: i64 },
    /// No slot is left in this minute: hold the execution until this minute.
    Later { wake_at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiter {
    interval_ms: i64,
    next_free_ms: i64,
    /// Where the sends held so far would queue: only spreads their wake-ups
    /// so they do not all come back at the same minute (not persisted; the
    /// slot itself is taken when they come back).
    queued_ms: i64,
}

impl Limiter {
    /// A limiter for `limit`, resuming from the stored `next_free_ms`.
    pub fn new(limit: &RateLimit, next_free_ms: Option<i64>) -> Limiter {
        let per_ms = limit.per.seconds() * 1000;
        let count = i64::from(limit.count.max(1));
        let interval_ms = (per_ms + count - 1) / count;
        let next = next_free_ms.unwrap_or(i64::MIN);
        Limiter { interval_ms, next_free_ms: next, queued_ms: next }
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The instant the next message may go, to store.
    pub fn next_free_ms(&self) -> i64 {
        self.next_free_ms
    }

    /// Takes the next slot for a send at minute `now`, or says when to come back.
    pub fn take(&mut self, now: i64) -> Slot {
        let minute_ms = now.saturating_mul(60_000);
        let slot = minute_ms.max(self.next_free_ms);
        if slot < minute_ms.saturating_add(60_000) {
            self.next_free_ms = slot.saturating_add(self.interval_ms);
            return Slot::Now { at_ms: slot };
        }
        let queued = self.queued_ms.max(slot);
        self.queued_ms = queued.saturating_add(self.interval_ms);
        Slot::Later { wake_at: queued.div_euclid(60_000) }
    }
}

/// How a wait for a slot on the wall clock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Reached,
    /// `stop` was set (Ctrl-C, service shutdown) before the slot came.
    Stopped,
}

/// The wall clock in milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// With the real clock, a message is not handed over before its slot:
/// sleeps until `at_ms` in slices of at most 200 ms, so a stop is seen
/// quickly (what is not sent then stays pending in the outbox).
pub fn wait_for(at_ms: i64, stop: Option<&std::sync::atomic::AtomicBool>) -> Waited {
    loop {
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
            return Waited::Stopped;
        }
        let left = at_ms - wall_ms();
        if left <= 0 {
            return Waited::Reached;
        }
        std::thread::sleep(std::time::Duration::from_millis(left.clamp(1, 200) as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::program::RatePer;

    #[test]
    fn sends_are_spaced_evenly_and_the_rest_held_to_later_minutes() {
        let mut l = Limiter::new(&RateLimit { count: 2, per: RatePer::Minute }, None);
        assert_eq!(l.take(10), Slot::Now { at_ms: 600_000 });
        assert_eq!(l.take(10), Slot::Now { at_ms: 630_000 });
        assert_eq!(l.take(10), Slot::Later { wake_at: 11 });
        assert_eq!(l.take(10), Slot::Later { wake_at: 11 });
        assert_eq!(l.take(10), Slot::Later { wake_at: 12 });
        assert_eq!(l.take(11), Slot::Now { at_ms: 660_000 });
        // A restart resumes from the stored instant.
        let mut again = Limiter::new(&RateLimit { count: 2, per: RatePer::Minute }, Some(l.next_free_ms()));
        assert_eq!(again.take(11), Slot::Now { at_ms: 690_000 });
        assert_eq!(again.take(11), Slot::Later { wake_at: 12 });
    }

    #[test]
    fn a_wait_for_a_slot_ends_when_it_has_come_or_on_stop() {
        let stop = std::sync::atomic::AtomicBool::new(true);
        // A slot a day away: the stop ends the wait at once.
        assert_eq!(wait_for(wall_ms() + 86_400_000, Some(&stop)), Waited::Stopped);
        assert_eq!(wait_for(wall_ms() - 1, None), Waited::Reached);
    }

    #[test]
    fn the_interval_rounds_up_so_no_window_holds_more_than_the_limit() {
        assert_eq!(Limiter::new(&RateLimit { count: 3, per: RatePer::Second }, None).interval_ms(), 334);
        assert_eq!(Limiter::new(&RateLimit { count: 5000, per: RatePer::Second }, None).interval_ms(), 1);
        assert_eq!(Limiter::new(&RateLimit { count: 10, per: RatePer::Hour }, None).interval_ms(), 360_000);
    }
}
