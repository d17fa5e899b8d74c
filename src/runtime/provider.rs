//! The provider interface for SEND, and the simulated provider used for demos
//! and tests.
//!
//! The simulated provider stands in for an external service: it keeps its own
//! durable record of deliveries (an append-only log beside the database), so
//! it can tell when the engine sends a message it already delivered.

use std::path::Path;

pub mod log;

/// One message to deliver; `key` is the idempotency key. It borrows from the
/// outbox row it is sent for: a send allocates nothing for the provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Message<'a> {
    pub key: &'a str,
    pub campaign: &'a str,
    pub contact: &'a str,
    pub step: &'a str,
    pub channel: &'a str,
    pub message: &'a str,
    pub template: &'a str,
    /// When the message is handed over, in milliseconds since the epoch:
    /// the clock's minute, or the instant within it a rate limit gave it.
    pub at_ms: i64,
    /// Which attempt this is (1 for the first), as the outbox counts them:
    /// durable, so a provider that decides by it decides the same after a restart.
    pub attempt: u32,
}

impl Message<'_> {
    /// The minute it is handed over (minutes since the epoch).
    pub fn minute(&self) -> i64 {
        self.at_ms.div_euclid(60_000)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Accepted; engagement times (minutes) as the provider will report them.
    Accepted { delivered_at: Option<i64>, opened_at: Option<i64>, clicked_at: Option<i64> },
    /// Not accepted; the engine may retry with the same key.
    Failed { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Observed {
    /// Distinct messages accepted.
    pub deliveries: u64,
    /// Sends received again with a key already delivered.
    pub duplicates: u64,
}

pub trait Provider {
    fn name(&self) -> &str;
    fn send_batch(&mut self, batch: &[Message<'_>]) -> Vec<Delivery>;
    /// What the provider already did with these keys, for reconciling
    /// in-flight sends after a crash instead of re-sending them: the
    /// delivery (with its engagement) of a key it accepted, `None` otherwise.
    /// A provider that cannot tell answers `None` (a re-send still dedups by key).
    fn status(&mut self, keys: &[String]) -> Vec<Option<Delivery>>;
    fn observed(&self) -> Observed;
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Share of sends that fail (0..=1).
    pub fail_rate: f64,
    pub delivered_rate: f64,
    /// Share of delivered messages that are opened.
    pub open_rate: f64,
    /// Share of opened messages that are clicked.
    pub click_rate: f64,
    /// Windows (minutes since epoch, half-open) in which every send fails.
    pub outages: Vec<(i64, i64)>,
    /// Real time each batch takes, to simulate a remote service.
    pub latency: std::time::Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            fail_rate: 0.0,
            delivered_rate: 0.97,
            open_rate: 0.45,
            click_rate: 0.25,
            outages: Vec::new(),
            latency: std::time::Duration::ZERO,
        }
    }
}

pub struct Simulated {
    /// The delivery log, shared by every process that sends through this
    /// provider (`flowc worker`s on one PostgreSQL database name the same
    /// `--provider-log`): the provider's memory across processes.
    log: std::fs::File,
    path: std::path::PathBuf,
    /// How much of the log this process has read: before deciding a batch,
    /// the lines other processes appended since are read too.
    read_upto: u64,
    /// A 64-bit hash of every key accepted so far, with when it was sent:
    /// the provider's memory, small enough for millions of messages.
    accepted: std::collections::HashMap<u64, i64>,
    /// Failed attempts per key, so a retry gets a fresh roll.
    attempts: std::collections::HashMap<String, u32>,
    config: SimConfig,
    observed: Observed,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated provider: {0}")]
pub struct SimError(String);

/// Holds the log's exclusive lock (`flock`) while a batch is decided and
/// appended, so two processes never accept the same key: the second reads
/// the first's lines before it decides. Released on drop (and by the
/// kernel when a process dies).
struct LogLock<'a>(&'a std::fs::File);

impl<'a> LogLock<'a> {
    fn take(file: &'a std::fs::File) -> Result<LogLock<'a>, std::io::Error> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this struct borrows for its lifetime.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(LogLock(file))
    }
}

impl Drop for LogLock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `take`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Simulated {
    /// Opens the provider's delivery log beside the database (`DB.provider.log`).
    pub fn open(db: &Path, config: SimConfig) -> Result<Simulated, SimError> {
        Simulated::open_log(&log_path(db), config)
    }

    /// Opens the provider's delivery log at `path`.
    ///
    /// The log is append-only JSON Lines, one object per message received
    /// (`log::Entry`, docs/runtime.md), written once per batch under an
    /// exclusive lock; the accepted keys are read back from it, also those
    /// other processes append while this one runs. A process killed
    /// mid-write leaves at most a torn last line (no newline): the next
    /// process to take the lock drops it. Any other line that is not a
    /// record is refused with its line number — the provider's memory of
    /// what it delivered would be wrong without it.
    pub fn open_log(path: &Path, config: SimConfig) -> Result<Simulated, SimError> {
        let shown = path.display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| SimError(format!("{shown}: {e}")))?;
        let mut sim = Simulated {
            log,
            path: path.to_path_buf(),
            read_upto: 0,
            accepted: Default::default(),
            attempts: Default::default(),
            config,
            observed: Observed::default(),
        };
        let lock = LogLock::take(&sim.log).map_err(|e| SimError(format!("{shown}: {e}")))?;
        let caught_up = catch_up(&sim.log, &sim.path, sim.read_upto, &mut sim.accepted, &mut sim.observed);
        drop(lock);
        sim.read_upto = caught_up?;
        Ok(sim)
    }
}

/// Reads the log's lines after `from` (bytes) into the provider's memory;
/// called under the lock. A torn last line (a writer killed mid-write; no
/// writer is active while the lock is held) is cut off. Returns the new end.
fn catch_up(
    file: &std::fs::File,
    path: &Path,
    from: u64,
    accepted: &mut std::collections::HashMap<u64, i64>,
    observed: &mut Observed,
) -> Result<u64, SimError> {
    use std::io::{Read, Seek};
    let shown = || path.display().to_string();
    let io = |e: std::io::Error| SimError(format!("{}: {e}", shown()));
    let len = file.metadata().map_err(io)?.len();
    if len <= from {
        return Ok(from);
    }
    let mut reader = file;
    reader.seek(std::io::SeekFrom::Start(from)).map_err(io)?;
    let mut bytes = Vec::with_capacity((len - from) as usize);
    reader.take(len - from).read_to_end(&mut bytes).map_err(io)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..complete])
        .map_err(|_| SimError(format!("{}: not UTF-8 after byte {from}", shown())))?;
    for (i, line) in text.lines().enumerate() {
        let seen = log::read(line).map_err(|why| SimError(format!("{} line {}: {why}", shown(), i + 1)))?;
        match seen {
            log::Seen::Accepted { key, minute } => {
                accepted.insert(key_hash(&key), minute);
                observed.deliveries += 1;
            }
            log::Seen::Duplicate => observed.duplicates += 1,
            log::Seen::NotAccepted => {}
        }
    }
    let end = from + complete as u64;
    if end != len {
        // Drop the torn line so later appends start on a fresh line.
        file.set_len(end).map_err(io)?;
    }
    Ok(end)
}

fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn log_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".provider.log");
    db.with_file_name(name)
}

/// A uniform number in [0, 1) from (seed, key, salt): the same message always
/// gets the same answer.
fn roll(config: &SimConfig, key: &str, salt: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in key.bytes().chain(salt.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Engagement is a function of the key, so a duplicate gets the same answer.
fn engagement(config: &SimConfig, key: &str, sent_at: i64) -> Delivery {
    if roll(config, key, "delivered") >= config.delivered_rate {
        return Delivery::Accepted { delivered_at: None, opened_at: None, clicked_at: None };
    }
    let delivered = sent_at + 1;
    let opened = (roll(config, key, "opened") < config.open_rate)
        .then(|| delivered + 5 + (roll(config, key, "open-delay") * 36.0 * 60.0) as i64);
    let clicked = opened
        .filter(|_| roll(config, key, "clicked") < config.click_rate)
        .map(|o| o + 1 + (roll(config, key, "click-delay") * 30.0) as i64);
    Delivery::Accepted { delivered_at: Some(delivered), opened_at: opened, clicked_at: clicked }
}

impl Provider for Simulated {
    fn name(&self) -> &str {
        "simulated"
    }

    fn send_batch(&mut self, batch: &[Message<'_>]) -> Vec<Delivery> {
        use std::io::Write;
        if !self.config.latency.is_zero() {
            std::thread::sleep(self.config.latency);
        }
        let unavailable = || batch.iter().map(|_| Delivery::Failed { reason: "provider unavailable".into() }).collect();
        // Decided and written under the lock, after reading what other
        // processes delivered meanwhile: one key is accepted once.
        let Ok(_lock) = LogLock::take(&self.log) else { return unavailable() };
        match catch_up(&self.log, &self.path, self.read_upto, &mut self.accepted, &mut self.observed) {
            Ok(end) => self.read_upto = end,
            Err(_) => return unavailable(),
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut lines = Vec::new();
        let (mut delivered, mut repeated) = (0u64, 0u64);
        let mut fresh: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
        for m in batch {
            let now = m.minute();
            let down = self.config.outages.iter().any(|(a, b)| now >= *a && now < *b);
            // The attempt as the outbox counts it (durable), or as this process
            // has seen it, whichever is further: a retry always gets a fresh
            // roll, also in a new process after a resume.
            let tries = self.attempts.get(m.key).copied().unwrap_or(0).max(m.attempt.saturating_sub(1));
            // The failure roll needs the attempt in its salt only when failures are configured.
            let rejected = !down
                && self.config.fail_rate > 0.0
                && roll(&self.config, m.key, &format!("fail{tries}")) < self.config.fail_rate;
            if down || rejected {
                *self.attempts.entry(m.key.to_string()).or_default() += 1;
                let (outcome, reason) = if down {
                    (log::Outcome::Outage, "provider outage")
                } else {
                    (log::Outcome::Rejected, "provider rejected the message")
                };
                log::write(&mut lines, m, outcome);
                out.push(Delivery::Failed { reason: reason.into() });
                continue;
            }
            let h = key_hash(m.key);
            // A key seen before gets the answer it got the first time.
            let first = self.accepted.get(&h).or_else(|| fresh.get(&h)).copied();
            match first {
                Some(at) => {
                    repeated += 1;
                    log::write(&mut lines, m, log::Outcome::Duplicate);
                    out.push(engagement(&self.config, m.key, at));
                }
                None => {
                    delivered += 1;
                    fresh.insert(h, now);
                    log::write(&mut lines, m, log::Outcome::Accepted);
                    out.push(engagement(&self.config, m.key, now));
                }
            }
        }
        // Accepted only once recorded: a failed write fails the whole batch.
        if !lines.is_empty() {
            if (&self.log).write_all(&lines).is_err() {
                return unavailable();
            }
            self.read_upto += lines.len() as u64;
        }
        self.accepted.extend(fresh);
        self.observed.deliveries += delivered;
        self.observed.duplicates += repeated;
        out
    }

    fn status(&mut self, keys: &[String]) -> Vec<Option<Delivery>> {
        // What another process delivered counts: a worker recovering a dead
        // one's sends must not send them again.
        if let Ok(_lock) = LogLock::take(&self.log) {
            if let Ok(end) = catch_up(&self.log, &self.path, self.read_upto, &mut self.accepted, &mut self.observed) {
                self.read_upto = end;
            }
        }
        keys.iter()
            .map(|k| {
                let at = *self.accepted.get(&key_hash(k))?;
                Some(engagement(&self.config, k, at))
            })
            .collect()
    }

    fn observed(&self) -> Observed {
        self.observed
    }
}
