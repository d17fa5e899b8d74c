//! The run report: what happened to a campaign, for people and machines
//! (docs/cli.md, "The run report").

use super::provider::Observed;
use super::store::{ExecState, Store, StoreError};
use crate::compile::program::{Op, Program};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    pub id: String,
    pub kind: &'static str,
    pub entered: u64,
    pub sent: u64,
    pub skipped: BTreeMap<String, u64>,
    pub failed: u64,
    pub cost: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cost {
    pub total: f64,
    pub currency: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub campaign: String,
    pub version: String,
    pub state: String,
    pub executions: BTreeMap<String, u64>,
    pub steps: Vec<StepReport>,
    pub ab_tests: BTreeMap<String, BTreeMap<String, u64>>,
    pub cost: Cost,
    pub balance: f64,
    pub provider: Observed,
    /// The clock at the end of the run (RFC 3339).
    pub clock: String,
}

fn euros(micros: i64) -> f64 {
    (micros as f64 / 1_000_000.0 * 1e6).round() / 1e6
}

pub fn build(store: &dyn Store, p: &Program, state: &str, provider: Observed, now: i64) -> Result<Report, StoreError> {
    let counts = store.counts(&p.campaign)?;
    let steps_db = store.step_counts(&p.campaign)?;
    let mut ab_tests: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    // Every variant shows, even with no contacts yet.
    for n in &p.nodes {
        if let Op::Split { name, variants } = &n.op {
            let e = ab_tests.entry(name.clone()).or_default();
            for v in variants {
                e.entry(v.name.clone()).or_insert(0);
            }
        }
    }
    for ((ab, variant), n) in store.ab_counts(&p.campaign)? {
        *ab_tests.entry(ab).or_default().entry(variant).or_default() += n;
    }
    let mut total = 0i64;
    let steps = p
        .nodes
        .iter()
        .map(|n| {
            let c = steps_db.get(&n.id.0).cloned().unwrap_or_default();
            total += c.cost_micros;
            StepReport {
                id: n.id.0.clone(),
                kind: n.op.kind(),
                entered: c.entered,
                sent: c.sent,
                skipped: c.skipped,
                failed: c.failed,
                cost: euros(c.cost_micros),
            }
        })
        .collect();
    Ok(Report {
        campaign: p.campaign.clone(),
        version: p.version.0.clone(),
        state: state.to_string(),
        executions: counts.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
        steps,
        ab_tests,
        cost: Cost { total: euros(total), currency: "EUR" },
        balance: euros(store.balance()?),
        provider,
        clock: chrono::DateTime::from_timestamp(now.saturating_mul(60), 0).map_or_else(String::new, |d| d.to_rfc3339()),
    })
}

pub fn human(r: &Report) -> String {
    let mut out = format!("campaign {} (version {}): {}\n", r.campaign, r.version, r.state);
    let states: Vec<String> = ExecState::ALL
        .iter()
        .map(|s| format!("{} {}", s.as_str(), r.executions.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    out.push_str(&format!("executions: {}\n\n", states.join(", ")));
    let w = r.steps.iter().map(|s| s.id.chars().count()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "{:<w$}  {:<7}  {:>9}  {:>9}  {:>9}  {:>7}  {:>10}\n",
        "step", "kind", "entered", "sent", "skipped", "failed", "cost"
    ));
    for s in &r.steps {
        let skipped: u64 = s.skipped.values().sum();
        out.push_str(&format!(
            "{:<w$}  {:<7}  {:>9}  {:>9}  {:>9}  {:>7}  {:>10.4}\n",
            s.id, s.kind, s.entered, s.sent, skipped, s.failed, s.cost
        ));
        for (why, n) in &s.skipped {
            out.push_str(&format!("{:<w$}    skipped {why}: {n}\n", ""));
        }
    }
    for (ab, variants) in &r.ab_tests {
        let vs: Vec<String> = variants.iter().map(|(v, n)| format!("{v} {n}")).collect();
        out.push_str(&format!("\nab_test {ab}: {}", vs.join(", ")));
    }
    out.push_str(&format!(
        "\n\ncost {:.4} {}, balance {:.4} EUR; provider saw {} deliveries, {} duplicates; clock {}\n",
        r.cost.total, r.cost.currency, r.balance, r.provider.deliveries, r.provider.duplicates, r.clock
    ));
    out
}
