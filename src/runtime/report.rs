//! The run report: what happened to a campaign, for people and machines
//! (docs/cli.md, "The run report").

use super::outcomes::{self, Outcomes};
use super::provider::Observed;
use super::stats::{self, Proportion};
use super::store::{ExecState, Store, StoreError};
use crate::compile::program::{Exit, Op, Program};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    pub id: String,
    pub kind: &'static str,
    pub entered: u64,
    pub sent: u64,
    pub skipped: BTreeMap<String, u64>,
    /// Sends held back for later by a delivery rule (`quiet-hours`,
    /// `rate-limit`), each once however often it was held; they are sent
    /// (or skipped) afterwards.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, u64>,
    pub failed: u64,
    pub cost: f64,
    /// Send steps: messages the provider reports delivered, opened and
    /// clicked at or before the report's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clicked: Option<u64>,
    /// Send steps of a campaign with a goal: conversions by last touch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversions: Option<u64>,
}

/// One A/B test in the report: without a goal, contacts per variant (v0.1);
/// with one, each variant's outcome against the first variant.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum AbTest {
    Counts(BTreeMap<String, u64>),
    Outcomes(BTreeMap<String, VariantOutcome>),
}

impl AbTest {
    /// Contacts per variant, whichever form.
    pub fn entered(&self) -> BTreeMap<String, u64> {
        match self {
            AbTest::Counts(c) => c.clone(),
            AbTest::Outcomes(o) => o.iter().map(|(k, v)| (k.clone(), v.entered)).collect(),
        }
    }
}

/// A variant's conversions; `uplift` and `confidence` compare it with the
/// campaign's first variant (`null` for the first itself, and where the
/// comparison is undefined: see `stats::compare`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantOutcome {
    /// Its place in the program (0 is the baseline): the human table lists
    /// variants in this order, so the baseline comes first.
    #[serde(skip)]
    pub order: usize,
    pub entered: u64,
    pub converted: u64,
    pub rate: Option<f64>,
    pub uplift: Option<f64>,
    pub confidence: Option<f64>,
}

/// The campaign's goal and how many executions reached it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoalReport {
    pub event: String,
    /// The window after entering the campaign, as the language writes it (`7d`).
    pub within: String,
    pub entered: u64,
    pub converted: u64,
    /// `converted / entered`; `null` when nobody entered.
    pub rate: Option<f64>,
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
    pub ab_tests: BTreeMap<String, AbTest>,
    /// Campaigns with `exit when`: executions that left, per criterion (`exit:<index>`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exits: BTreeMap<String, u64>,
    /// Each exit reason's criterion as written (`event order.completed`),
    /// for the human report; JSON readers have the program.
    #[serde(skip)]
    pub exit_criteria: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<GoalReport>,
    pub cost: Cost,
    pub balance: f64,
    pub provider: Observed,
    /// The clock at the end of the run (RFC 3339).
    pub clock: String,
}

/// A share as a percentage with one decimal; `-` when undefined.
fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0))
}

/// A duration in the language's largest whole unit (`7d`, `36h`, `90m`).
fn minutes(m: i64) -> String {
    if m % 1440 == 0 {
        format!("{}d", m / 1440)
    } else if m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
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
    let engagement = store.engagement_counts(&p.campaign, now)?;
    let outcomes = match &p.goal {
        Some(g) => Some(outcomes::compute(store, p, g, now)?),
        None => None,
    };
    let mut total = 0i64;
    let steps = p
        .nodes
        .iter()
        .map(|n| {
            let c = steps_db.get(&n.id).cloned().unwrap_or_default();
            total += c.cost_micros;
            let send = matches!(n.op, Op::Send { .. });
            let e = engagement.get(&n.id.0).copied().unwrap_or_default();
            let on_send = |x: u64| send.then_some(x);
            StepReport {
                id: n.id.0.clone(),
                kind: n.op.kind(),
                entered: c.entered,
                sent: c.sent,
                skipped: c.skipped,
                held: c.held,
                failed: c.failed,
                cost: euros(c.cost_micros),
                delivered: on_send(e.delivered),
                opened: on_send(e.opened),
                clicked: on_send(e.clicked),
                conversions: outcomes.as_ref().and_then(|o| on_send(o.conversions.get(&n.id.0).copied().unwrap_or(0))),
            }
        })
        .collect();
    let mut exits: BTreeMap<String, u64> = (1..=p.exits.len()).map(|i| (super::exits::reason(i), 0)).collect();
    if !p.exits.is_empty() {
        exits.extend(store.exit_counts(&p.campaign)?);
    }
    let ab_tests = match &outcomes {
        Some(o) => ab_outcomes(p, o),
        None => ab_tests.into_iter().map(|(k, v)| (k, AbTest::Counts(v))).collect(),
    };
    let goal = p.goal.as_ref().zip(outcomes.as_ref()).map(|(g, o)| GoalReport {
        event: g.event.event.clone(),
        within: minutes(g.within_minutes),
        entered: o.entered,
        converted: o.converted,
        rate: Proportion { converted: o.converted, entered: o.entered }.rate(),
    });
    Ok(Report {
        campaign: p.campaign.clone(),
        version: p.version.0.clone(),
        state: state.to_string(),
        executions: counts.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
        steps,
        ab_tests,
        exits,
        exit_criteria: exit_criteria(p),
        goal,
        cost: Cost { total: euros(total), currency: "EUR" },
        balance: euros(store.balance()?),
        provider,
        clock: chrono::DateTime::from_timestamp(now.saturating_mul(60), 0).map_or_else(String::new, |d| d.to_rfc3339()),
    })
}

/// Each exit criterion as the language writes it, by its exit reason.
fn exit_criteria(p: &Program) -> BTreeMap<String, String> {
    p.exits
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let text = match x {
                Exit::Event { event } => crate::compile::dis::event_match(p, event),
                Exit::State { cond } => crate::compile::dis::cond(p, cond, &[]),
            };
            (super::exits::reason(i + 1), text)
        })
        .collect()
}

/// Each A/B test's variants with their conversions, compared with the
/// test's first variant in program order.
fn ab_outcomes(p: &Program, o: &Outcomes) -> BTreeMap<String, AbTest> {
    let mut out = BTreeMap::new();
    for n in &p.nodes {
        let Op::Split { name, variants } = &n.op else { continue };
        let prop = |v: &str| {
            let (entered, converted) = o.variants.get(&(name.clone(), v.to_string())).copied().unwrap_or_default();
            Proportion { converted, entered }
        };
        let Some(first) = variants.first().map(|v| prop(&v.name)) else { continue };
        let mut vs = BTreeMap::new();
        for (i, v) in variants.iter().enumerate() {
            let x = prop(&v.name);
            let c = (i > 0).then(|| stats::compare(first, x));
            vs.insert(
                v.name.clone(),
                VariantOutcome {
                    order: i,
                    entered: x.entered,
                    converted: x.converted,
                    rate: x.rate(),
                    uplift: c.and_then(|c| c.uplift),
                    confidence: c.and_then(|c| c.confidence),
                },
            );
        }
        out.insert(name.clone(), AbTest::Outcomes(vs));
    }
    out
}

/// An A/B test's outcomes as a table, variants in program order (the
/// baseline, whose uplift and confidence are `-`, first).
fn outcome_table(ab: &str, variants: &BTreeMap<String, VariantOutcome>) -> String {
    let mut out = String::new();
    let vw = variants.keys().map(|k| k.chars().count()).max().unwrap_or(7).max(7);
    out.push_str(&format!(
        "\nab_test {ab}:\n  {:<vw$}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}",
        "variant", "entered", "converted", "rate", "uplift", "confidence"
    ));
    let mut in_program_order: Vec<_> = variants.iter().collect();
    in_program_order.sort_by_key(|(_, o)| o.order);
    for (v, o) in in_program_order {
        let uplift = o.uplift.map_or_else(|| "-".to_string(), |u| format!("{:+.1}%", u * 100.0));
        out.push_str(&format!(
            "\n  {:<vw$}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}",
            v,
            o.entered,
            o.converted,
            percent(o.rate),
            uplift,
            percent(o.confidence)
        ));
    }
    out
}

pub fn human(r: &Report) -> String {
    let mut out = format!("campaign {} (version {}): {}\n", r.campaign, r.version, r.state);
    let states: Vec<String> = ExecState::ALL
        .iter()
        .map(|s| format!("{} {}", s.as_str(), r.executions.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    out.push_str(&format!("executions: {}\n", states.join(", ")));
    // Why a run took virtual days: sends waited for a delivery rule.
    let mut held: BTreeMap<&str, u64> = BTreeMap::new();
    for (why, n) in r.steps.iter().flat_map(|s| s.held.iter()) {
        *held.entry(why.as_str()).or_default() += n;
    }
    if !held.is_empty() {
        let parts: Vec<String> = held.iter().map(|(why, n)| format!("{n} by {why}")).collect();
        out.push_str(&format!("held sends (sent later): {}\n", parts.join(", ")));
    }
    out.push('\n');
    let w = r.steps.iter().map(|s| s.id.chars().count()).max().unwrap_or(4).max(4);
    let k = r.steps.iter().map(|s| s.kind.len()).max().unwrap_or(7).max(7);
    out.push_str(&format!(
        "{:<w$}  {:<k$}  {:>9}  {:>9}  {:>9}  {:>7}  {:>10}\n",
        "step", "kind", "entered", "sent", "skipped", "failed", "cost"
    ));
    for s in &r.steps {
        let skipped: u64 = s.skipped.values().sum();
        out.push_str(&format!(
            "{:<w$}  {:<k$}  {:>9}  {:>9}  {:>9}  {:>7}  {:>10.4}\n",
            s.id, s.kind, s.entered, s.sent, skipped, s.failed, s.cost
        ));
        for (why, n) in &s.skipped {
            out.push_str(&format!("{:<w$}    skipped {why}: {n}\n", ""));
        }
        for (why, n) in &s.held {
            out.push_str(&format!("{:<w$}    held by {why}: {n}\n", ""));
        }
        if let (Some(d), Some(o), Some(c)) = (s.delivered, s.opened, s.clicked) {
            if s.sent > 0 {
                let conv = s.conversions.map_or_else(String::new, |n| format!(", conversions {n}"));
                out.push_str(&format!("{:<w$}    delivered {d}, opened {o}, clicked {c}{conv}\n", ""));
            }
        }
    }
    if !r.exits.is_empty() {
        // By criterion number, not text order (`exit:10` after `exit:9`).
        let mut xs: Vec<(&String, &u64)> = r.exits.iter().collect();
        xs.sort_by_key(|(k, _)| k.trim_start_matches("exit:").parse::<usize>().unwrap_or(usize::MAX));
        out.push_str("\nexits:");
        for (k, n) in xs {
            match r.exit_criteria.get(k) {
                Some(c) => out.push_str(&format!("\n  {k} {n:>9}  exit when {c}")),
                None => out.push_str(&format!("\n  {k} {n:>9}")),
            }
        }
    }
    if let Some(g) = &r.goal {
        out.push_str(&format!(
            "\ngoal {} within {}: converted {} of {} ({})",
            g.event,
            g.within,
            g.converted,
            g.entered,
            percent(g.rate)
        ));
    }
    for (ab, test) in &r.ab_tests {
        match test {
            AbTest::Counts(variants) => {
                let vs: Vec<String> = variants.iter().map(|(v, n)| format!("{v} {n}")).collect();
                out.push_str(&format!("\nab_test {ab}: {}", vs.join(", ")));
            }
            AbTest::Outcomes(variants) => out.push_str(&outcome_table(ab, variants)),
        }
    }
    out.push_str(&format!(
        "\n\ncost {:.4} {}, balance {:.4} EUR; provider saw {} deliveries, {} duplicates; clock {}\n",
        r.cost.total, r.cost.currency, r.balance, r.provider.deliveries, r.provider.duplicates, r.clock
    ));
    out
}

/// `n` with its thousands grouped as a person writes them: `12,345,678`.
/// The console's counts and the editor's reach lens print numbers so.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_like_a_person_writes_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(23_410), "23,410");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn the_outcome_table_lists_the_baseline_first() {
        let v = |order, entered, converted, uplift: Option<f64>| VariantOutcome {
            order,
            entered,
            converted,
            rate: Some(converted as f64 / entered as f64),
            uplift,
            confidence: uplift.map(|_| 0.5),
        };
        // Named so that alphabetical order would put the baseline last.
        let variants =
            BTreeMap::from([("soft".to_string(), v(0, 100, 10, None)), ("hard".to_string(), v(1, 100, 5, Some(-0.5)))]);
        let table = outcome_table("closing", &variants);
        let soft = table.find("\n  soft").expect("soft row");
        let hard = table.find("\n  hard").expect("hard row");
        assert!(soft < hard, "{table}");
    }
}
