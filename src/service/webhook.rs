//! The webhook provider: each message is POSTed as JSON to a configured URL
//! with its idempotency key in a header; timeouts, and retries with
//! exponential backoff and jitter. What still fails is reported as failed and
//! feeds the engine's retries and circuit breaker.

use crate::runtime::provider::{Delivery, Message, Observed, Provider};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub timeout: Duration,
    /// Attempts per message within one send (the engine retries later too).
    pub attempts: u32,
    pub backoff: Duration,
}

pub struct Webhook {
    agent: ureq::Agent,
    config: WebhookConfig,
    observed: Observed,
    jitter: u64,
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Webhook {
        // Redirects are not followed: ureq would repeat the request as a GET
        // without the body (and with the Idempotency-Key), so a 3xx would be
        // recorded as delivered and billed although the message went nowhere.
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).redirects(0).build();
        Webhook { agent, config, observed: Observed::default(), jitter: 0x2545_f491_4f6c_dd1d }
    }

    fn pause(&mut self, attempt: u32) {
        // xorshift jitter: up to the base delay again, so retries spread out.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let base = self.config.backoff.saturating_mul(1 << attempt.min(8));
        let extra = Duration::from_millis(self.jitter % (base.as_millis().max(1) as u64));
        std::thread::sleep(base + extra);
    }

    fn post(&mut self, m: &Message<'_>) -> Delivery {
        let body = serde_json::json!({
            "idempotency_key": m.key, "contact": m.contact, "channel": m.channel,
            "message_type": m.message, "template": m.template,
        });
        let mut last = String::from("not attempted");
        for attempt in 0..self.config.attempts.max(1) {
            if attempt > 0 {
                self.pause(attempt - 1);
            }
            match self.agent.post(&self.config.url).set("Idempotency-Key", m.key).send_json(body.clone()) {
                // Without redirects ureq hands a 3xx back as a response; it is a
                // failure like a 5xx (retried, and counted by the breaker).
                Ok(r) if !(200..300).contains(&r.status()) => last = format!("webhook answered {}", r.status()),
                Ok(_) => {
                    self.observed.deliveries += 1;
                    return Delivery::Accepted { delivered_at: None, opened_at: None, clicked_at: None };
                }
                // A 4xx other than 408/429 will not get better by retrying.
                Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 408 && code != 429 => {
                    return Delivery::Failed { reason: format!("webhook answered {code}") };
                }
                Err(ureq::Error::Status(code, _)) => last = format!("webhook answered {code}"),
                Err(e) => last = format!("webhook unreachable: {e}"),
            }
        }
        Delivery::Failed { reason: last }
    }
}

impl Provider for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }
    fn send_batch(&mut self, batch: &[Message<'_>]) -> Vec<Delivery> {
        batch.iter().map(|m| self.post(m)).collect()
    }
    /// A webhook cannot be asked; the receiver deduplicates by the key header.
    fn status(&mut self, keys: &[String]) -> Vec<Option<Delivery>> {
        vec![None; keys.len()]
    }
    fn observed(&self) -> Observed {
        self.observed
    }
}
