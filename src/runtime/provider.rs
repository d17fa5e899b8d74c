//! The provider interface for SEND, and the simulated provider used for demos
//! and tests.
//!
//! The simulated provider stands in for an external service: it keeps its own
//! record of deliveries (in its own table, committed on its own), so it can
//! tell when the engine sends a message it already delivered.

use rusqlite::{params, Connection};
use std::path::Path;

/// One message to deliver; `key` is the idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub key: String,
    pub contact: String,
    pub channel: String,
    pub message: String,
    pub template: String,
    /// Minutes since the epoch.
    pub now: i64,
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
    fn send_batch(&mut self, batch: &[Message]) -> Vec<Delivery>;
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
    conn: Connection,
    config: SimConfig,
    observed: Observed,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated provider: {0}")]
pub struct SimError(String);

impl Simulated {
    /// Opens the provider's record in `db` (its own table in the same file).
    pub fn open(db: &Path, config: SimConfig) -> Result<Simulated, SimError> {
        let conn = Connection::open(db).map_err(|e| SimError(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| SimError(e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS sim_deliveries (key TEXT PRIMARY KEY, contact TEXT NOT NULL, channel TEXT NOT NULL, at INTEGER NOT NULL, received INTEGER NOT NULL);",
        )
        .map_err(|e| SimError(e.to_string()))?;
        let deliveries: i64 = conn.query_row("SELECT COUNT(*) FROM sim_deliveries", [], |r| r.get(0)).map_err(|e| SimError(e.to_string()))?;
        let received: i64 = conn.query_row("SELECT COALESCE(SUM(received), 0) FROM sim_deliveries", [], |r| r.get(0)).map_err(|e| SimError(e.to_string()))?;
        let observed = Observed { deliveries: deliveries as u64, duplicates: (received - deliveries).max(0) as u64 };
        Ok(Simulated { conn, config, observed })
    }
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
fn engagement(config: &SimConfig, m: &Message) -> Delivery {
    if roll(config, &m.key, "delivered") >= config.delivered_rate {
        return Delivery::Accepted { delivered_at: None, opened_at: None, clicked_at: None };
    }
    let delivered = m.now + 1;
    let opened = (roll(config, &m.key, "opened") < config.open_rate).then(|| delivered + 5 + (roll(config, &m.key, "open-delay") * 36.0 * 60.0) as i64);
    let clicked = opened.filter(|_| roll(config, &m.key, "clicked") < config.click_rate).map(|o| o + 1 + (roll(config, &m.key, "click-delay") * 30.0) as i64);
    Delivery::Accepted { delivered_at: Some(delivered), opened_at: opened, clicked_at: clicked }
}

impl Provider for Simulated {
    fn name(&self) -> &str {
        "simulated"
    }

    fn send_batch(&mut self, batch: &[Message]) -> Vec<Delivery> {
        if !self.config.latency.is_zero() {
            std::thread::sleep(self.config.latency);
        }
        let mut out = Vec::with_capacity(batch.len());
        let tx = match self.conn.transaction() {
            Ok(t) => t,
            Err(e) => return batch.iter().map(|_| Delivery::Failed { reason: format!("provider unavailable: {e}") }).collect(),
        };
        let mut accepted = Vec::new();
        {
            let mut stmt = match tx.prepare_cached(
                "INSERT INTO sim_deliveries (key, contact, channel, at, received) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(key) DO UPDATE SET received = received + 1 RETURNING received",
            ) {
                Ok(s) => s,
                Err(e) => return batch.iter().map(|_| Delivery::Failed { reason: format!("provider unavailable: {e}") }).collect(),
            };
            for m in batch {
                let down = self.config.outages.iter().any(|(a, b)| m.now >= *a && m.now < *b);
                if down || roll(&self.config, &m.key, "fail") < self.config.fail_rate {
                    out.push(Delivery::Failed { reason: if down { "provider outage".into() } else { "provider rejected the message".into() } });
                    continue;
                }
                match stmt.query_row(params![m.key, m.contact, m.channel, m.now], |r| r.get::<_, i64>(0)) {
                    Ok(received) => {
                        accepted.push(received);
                        out.push(engagement(&self.config, m));
                    }
                    Err(e) => out.push(Delivery::Failed { reason: format!("provider error: {e}") }),
                }
            }
        }
        if let Err(e) = tx.commit() {
            return batch.iter().map(|_| Delivery::Failed { reason: format!("provider error: {e}") }).collect();
        }
        for r in accepted {
            if r == 1 {
                self.observed.deliveries += 1;
            } else {
                self.observed.duplicates += 1;
            }
        }
        out
    }

    fn observed(&self) -> Observed {
        self.observed
    }
}
