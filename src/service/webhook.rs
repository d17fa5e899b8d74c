//! The webhook provider: each message is POSTed as JSON to a configured URL
//! with its idempotency key in a header, under a timeout. One request per
//! attempt: the engine retries (durably, counted in the outbox row, spaced
//! out on the clock) and its circuit breaker sees every failure; a client
//! that slept between its own retries would hold up every campaign's runner.

use crate::runtime::provider::{Delivery, Message, Observed, Provider};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub timeout: Duration,
}

pub struct Webhook {
    agent: ureq::Agent,
    config: WebhookConfig,
    observed: Observed,
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Webhook {
        // Redirects are not followed: ureq would repeat the request as a GET
        // without the body (and with the Idempotency-Key), so a 3xx would be
        // recorded as delivered and billed although the message went nowhere.
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).redirects(0).build();
        Webhook { agent, config, observed: Observed::default() }
    }

    fn post(&mut self, m: &Message<'_>) -> Delivery {
        let body = serde_json::json!({
            "idempotency_key": m.key, "contact": m.contact, "channel": m.channel,
            "message_type": m.message, "template": m.template,
        });
        match self.agent.post(&self.config.url).set("Idempotency-Key", m.key).send_json(body) {
            // Without redirects ureq hands a 3xx back as a response; it is a
            // failure like a 5xx (retried, and counted by the breaker).
            Ok(r) if !(200..300).contains(&r.status()) => {
                Delivery::Failed { reason: format!("webhook answered {}", r.status()) }
            }
            Ok(_) => {
                self.observed.deliveries += 1;
                Delivery::Accepted { delivered_at: None, opened_at: None, clicked_at: None }
            }
            Err(ureq::Error::Status(code, _)) => Delivery::Failed { reason: format!("webhook answered {code}") },
            Err(e) => Delivery::Failed { reason: format!("webhook unreachable: {e}") },
        }
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
