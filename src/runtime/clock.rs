//! The clock as a dependency: a virtual clock jumps to the next wake-up so a
//! 30-day campaign simulates in seconds; the real clock waits.

/// Minutes since the Unix epoch.
pub type Minutes = i64;

pub trait Clock {
    fn now(&self) -> Minutes;
    /// Lets time pass until `t` (or less, if the clock decides to check earlier).
    fn wait_until(&mut self, t: Minutes);
}

#[derive(Debug, Clone)]
pub struct Virtual {
    now: Minutes,
}

impl Virtual {
    pub fn starting_at(now: Minutes) -> Virtual {
        Virtual { now }
    }
}

impl Clock for Virtual {
    fn now(&self) -> Minutes {
        self.now
    }
    fn wait_until(&mut self, t: Minutes) {
        self.now = self.now.max(t);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Real;

pub fn real_now() -> Minutes {
    chrono::Utc::now().timestamp().div_euclid(60)
}

impl Clock for Real {
    fn now(&self) -> Minutes {
        real_now()
    }
    fn wait_until(&mut self, t: Minutes) {
        // Sleep in short slices so Ctrl-C stays responsive.
        let secs = (t - real_now()).clamp(0, 1) as u64;
        std::thread::sleep(std::time::Duration::from_millis(if secs == 0 { 200 } else { 1000 }));
    }
}
