//! What the console shows, read through the `Store` and the run report:
//! the campaign list, one campaign's numbers and a contact's place in it.
//! Every number the pages show comes from a [`Live`] map, which the live
//! endpoints also answer, so a page and its updates never disagree.

use crate::compile::codec;
use crate::compile::program::Program;
use crate::runtime::estimate::launched::{self, LaunchEstimate};
use crate::runtime::lifecycle::State;
use crate::runtime::provider::Observed;
use crate::runtime::report::{self, AbTest, Report};
use crate::runtime::store::{ContactId, ExecState, Store, StoreError, Transition};
use serde::Serialize;
use std::collections::BTreeMap;

/// Audit entries the campaign page shows (newest first).
pub const AUDIT_ROWS: usize = 10;

/// The numbers of a page by key (`step.hello.sent`), the state of each
/// state badge, and which actions are possible. `set` names the rows the
/// page was drawn with: when it changes, the page reloads itself.
#[derive(Debug, Default, Serialize)]
pub struct Live {
    pub values: BTreeMap<String, String>,
    pub states: BTreeMap<String, String>,
    pub enabled: BTreeMap<String, bool>,
    pub set: String,
}

impl Live {
    fn put(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }

    /// The value the page starts with (`–` for one the live map lacks).
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("–", String::as_str)
    }
}

/// One row of the campaign list.
pub struct Row {
    pub id: String,
    pub display_name: Option<String>,
    pub state: State,
}

pub struct Overview {
    pub rows: Vec<Row>,
    pub live: Live,
}

/// One campaign: its program, run report and audit log (the kept launch
/// estimate is in the numbers, beside the cost).
pub struct CampaignView {
    pub program: Program,
    pub state: State,
    pub report: Report,
    pub audit: Vec<Transition>,
    pub live: Live,
}

/// A contact looked up on a campaign page.
pub struct ContactView {
    pub id: String,
    pub known: bool,
    pub enrolled: bool,
    pub variants: Vec<(String, String)>,
    pub sent: Vec<(String, i64)>,
}

/// `n` with thousands separators (`12,345`).
pub fn count(n: u64) -> String {
    crate::runtime::report::grouped(n)
}

/// A count for a step box, short enough for its line (`1.2k`, `3.4M`).
fn short(n: u64) -> String {
    match n {
        0..=9_999 => count(n),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

pub fn eur(x: f64) -> String {
    format!("{x:.4} EUR")
}

/// Minutes since the epoch as `2026-03-29 01:30 UTC`.
pub fn time(minutes: i64) -> String {
    chrono::DateTime::from_timestamp(minutes.saturating_mul(60), 0)
        .map_or_else(|| minutes.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn rate(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{:.1}%", x * 100.0))
}

/// What a state means for the people running it, beside the word.
pub fn meaning(s: State) -> &'static str {
    match s {
        State::Draft => "not launched",
        State::Scheduled => "launched, waiting for its trigger",
        State::Running => "sending",
        State::Paused => "paused by an operator",
        State::PausedError => "paused by the provider circuit breaker: resume explicitly",
        State::PausedBalance => "paused: the balance ran out; top up, then resume explicitly",
        State::Completed => "finished",
        State::CompletedPartial => "finished, some executions failed",
    }
}

/// Why an action is not possible from `s` (`None`: it is).
pub fn pause_refused(s: State) -> Option<String> {
    (!s.can_go_to(State::Paused)).then(|| format!("Pause is possible only while RUNNING; this campaign is {s}."))
}

pub fn resume_refused(s: State) -> Option<String> {
    (!s.is_paused())
        .then(|| format!("Resume is possible only from PAUSED, PAUSED_ERROR or PAUSED_BALANCE; this campaign is {s}."))
}

/// The text under the Resume button: the rule for the state it is in.
fn resume_note(s: State) -> String {
    match s {
        State::PausedBalance => "The balance ran out: top up, then resume. flowc never resumes it by itself.".into(),
        State::PausedError => {
            "The provider kept failing: check it, then resume. The first send after resuming is a probe.".into()
        }
        _ => resume_refused(s).unwrap_or_else(|| "Resuming sends again from where each contact stopped.".into()),
    }
}

fn executions(live: &mut Live, prefix: &str, counts: &BTreeMap<ExecState, u64>) {
    let mut total = 0;
    for s in ExecState::ALL {
        let n = counts.get(&s).copied().unwrap_or(0);
        total += n;
        live.put(format!("{prefix}exec.{}", s.as_str()), count(n));
    }
    live.put(format!("{prefix}exec.total"), count(total));
}

fn estimate_text(spent: f64, e: Option<&LaunchEstimate>, version: &str) -> String {
    match e {
        Some(e) if e.version == version => {
            let range = if e.min == e.max { String::new() } else { format!(", range {}–{}", eur(e.min), eur(e.max)) };
            format!(
                "{} of ≈ {} expected at launch (audience {}{range})",
                eur(spent),
                eur(e.expected),
                count(e.audience)
            )
        }
        Some(e) => format!("{} (the launch estimate, ≈ {}, was for an earlier version)", eur(spent), eur(e.expected)),
        None => format!("{} (no launch estimate kept: launched before flowc kept them)", eur(spent)),
    }
}

/// The campaign list with its numbers.
pub fn overview(store: &dyn Store) -> Result<Overview, StoreError> {
    let mut live = Live::default();
    let mut rows = Vec::new();
    for c in store.campaigns()? {
        let p = codec::from_binary(&c.program).ok();
        let key = format!("c.{}.", c.name);
        live.states.insert(c.name.clone(), c.state.as_str().into());
        live.put(format!("{key}state"), c.state.as_str());
        live.put(format!("{key}meaning"), meaning(c.state));
        executions(&mut live, &key, &store.counts(&c.name)?);
        let spent: i64 = store.step_counts(&c.name)?.values().map(|s| s.cost_micros).sum();
        let spent = spent as f64 / 1e6;
        live.put(format!("{key}cost"), estimate_text(spent, launched::read(store, &c.name)?.as_ref(), &c.version));
        let last = store.transitions(&c.name, 1)?;
        live.put(
            format!("{key}audit"),
            last.first().map_or_else(String::new, |t| format!("{} {} → {}: {}", time(t.at), t.from, t.to, t.reason)),
        );
        rows.push(Row { id: c.name, display_name: p.and_then(|p| p.display_name), state: c.state });
    }
    live.put("balance", eur(store.balance()? as f64 / 1e6));
    live.set = rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(",");
    Ok(Overview { rows, live })
}

/// One campaign, as of `now` (minutes); `None` when there is no such campaign.
pub fn campaign(store: &dyn Store, id: &str, now: i64) -> Result<Option<CampaignView>, StoreError> {
    let Some(row) = store.campaign(id)? else { return Ok(None) };
    let program = codec::from_binary(&row.program).map_err(|e| StoreError::Other(e.to_string()))?;
    let state = row.state;
    let report = report::build(store, &program, state.as_str(), Observed::default(), now)?;
    let audit = store.transitions(id, AUDIT_ROWS)?;
    let estimate = launched::read(store, id)?;
    let mut live = Live::default();
    live.states.insert("campaign".into(), state.as_str().into());
    live.put("state", state.as_str());
    live.put("meaning", meaning(state));
    live.enabled.insert("pause".into(), pause_refused(state).is_none());
    live.enabled.insert("resume".into(), resume_refused(state).is_none());
    live.put("pause.why", pause_refused(state).unwrap_or_else(|| "Stops new sends until resumed.".into()));
    live.put("resume.why", resume_note(state));
    let mut exec = BTreeMap::new();
    for (k, v) in &report.executions {
        if let Some(s) = ExecState::parse(k) {
            exec.insert(s, *v);
        }
    }
    executions(&mut live, "", &exec);
    live.put("cost", estimate_text(report.cost.total, estimate.as_ref(), &row.version));
    live.put("balance", eur(report.balance));
    live.put("clock", report.clock.clone());
    let total: u64 = exec.values().sum();
    live.put(format!("badge.{}/trigger", program.campaign), format!("{} entered", short(total)));
    for s in &report.steps {
        step_values(&mut live, s);
    }
    for (ab, test) in &report.ab_tests {
        match test {
            AbTest::Counts(vs) => {
                for (v, n) in vs {
                    live.put(format!("ab.{ab}.{v}.entered"), count(*n));
                }
            }
            AbTest::Outcomes(vs) => {
                for (v, o) in vs {
                    let k = format!("ab.{ab}.{v}.");
                    live.put(format!("{k}entered"), count(o.entered));
                    live.put(format!("{k}converted"), count(o.converted));
                    live.put(format!("{k}rate"), rate(o.rate));
                    live.put(
                        format!("{k}uplift"),
                        o.uplift.map_or_else(|| "–".into(), |u| format!("{:+.1}%", u * 100.0)),
                    );
                    live.put(format!("{k}confidence"), rate(o.confidence));
                }
            }
        }
    }
    if let Some(g) = &report.goal {
        live.put(
            "goal",
            format!(
                "goal {} within {}: {} of {} converted ({})",
                g.event,
                g.within,
                count(g.converted),
                count(g.entered),
                rate(g.rate)
            ),
        );
    }
    for (i, t) in audit.iter().enumerate() {
        live.put(format!("audit.{i}.at"), time(t.at));
        live.put(format!("audit.{i}.change"), format!("{} → {}", t.from, t.to));
        live.put(format!("audit.{i}.why"), t.reason.clone());
    }
    live.set = row.version.clone();
    Ok(Some(CampaignView { program, state, report, audit, live }))
}

fn step_values(live: &mut Live, s: &report::StepReport) {
    let k = format!("step.{}.", s.id);
    let skipped: u64 = s.skipped.values().sum();
    live.put(format!("{k}entered"), count(s.entered));
    live.put(format!("{k}sent"), count(s.sent));
    let reasons: Vec<String> = s.skipped.iter().map(|(why, n)| format!("{why} {}", count(*n))).collect();
    live.put(
        format!("{k}skipped"),
        if reasons.is_empty() { count(skipped) } else { format!("{} ({})", count(skipped), reasons.join(", ")) },
    );
    let held: Vec<String> = s.held.iter().map(|(why, n)| format!("{why} {}", count(*n))).collect();
    live.put(format!("{k}held"), if held.is_empty() { "0".into() } else { held.join(", ") });
    live.put(format!("{k}failed"), count(s.failed));
    let opt = |x: Option<u64>| x.map_or_else(|| "–".to_string(), count);
    live.put(format!("{k}delivered"), opt(s.delivered));
    live.put(format!("{k}opened"), opt(s.opened));
    live.put(format!("{k}clicked"), opt(s.clicked));
    live.put(format!("{k}conversions"), opt(s.conversions));
    live.put(format!("{k}cost"), eur(s.cost));
    let mut badge = format!("{} in", short(s.entered));
    if s.kind == "send" {
        badge.push_str(&format!(" · {} sent", short(s.sent)));
    }
    if skipped > 0 {
        badge.push_str(&format!(" · {} skip", short(skipped)));
    }
    if s.failed > 0 {
        badge.push_str(&format!(" · {} fail", short(s.failed)));
    }
    live.put(format!("badge.{}", s.id), badge);
}

/// Where contact `id` is in campaign `campaign`.
pub fn contact(store: &dyn Store, campaign: &str, id: &str) -> Result<ContactView, StoreError> {
    let cid = ContactId::from(id);
    let known = store.contact(&cid)?.is_some();
    let enrolled = known && store.enrolled(campaign, &[&cid])?.contains(&cid);
    let variants = if enrolled {
        store.ab_assignments(campaign, &[&cid])?.into_iter().map(|a| (a.ab, a.variant)).collect()
    } else {
        Vec::new()
    };
    let sent = if enrolled {
        store.sent_for(campaign, &[&cid])?.into_iter().map(|s| (s.message.step, s.message.sent_at)).collect()
    } else {
        Vec::new()
    };
    Ok(ContactView { id: id.to_string(), known, enrolled, variants, sent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_counts_stay_short() {
        assert_eq!(short(1000), "1,000");
        assert_eq!(short(12_345), "12.3k");
        assert_eq!(short(3_400_000), "3.4M");
    }
}
