//! A round's commit on PostgreSQL: fenced by the committing claim, one
//! statement per kind of write (arrays through `unnest`), the prices of its
//! new sends reserved last by one conditional update. Runs inside one transaction
//! (`Conn::tx`): a refusal writes nothing.

use super::{move_balance, write_breaker, Conn, Covered, StoreError};
use crate::runtime::store::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The lease's duration as the interval SQL adds to the database's clock.
pub(super) const LEASE_UNTIL: &str = "clock_timestamp() + $3::bigint * interval '1 millisecond'";

pub(super) fn commit(c: &mut Conn, campaign: &str, round: &Round, lease: &Lease, now: i64) -> Result<(), StoreError> {
    let me = lease.worker.0.as_str();
    // The statements that join the round's keys against the outbox's
    // pending rows are planned as hash joins. The pending rows of a campaign
    // are the sends in flight (a few batches), so hashing them is cheap;
    // but a fresh outbox grows by thousands of rows before its statistics
    // are taken, and with statistics that call it empty the planner chose a
    // nested loop that read every key array once per pending row: 2,000
    // outcomes took 5 s instead of milliseconds (auto_explain: "Rows
    // Removed by Join Filter: 3998000"). The other statements keep nested
    // loops: they look up big tables (executions, contacts) by key.
    c.batch("SET LOCAL enable_nestloop = off")?;
    fence_outbox(c, campaign, round, me)?;
    c.batch("SET LOCAL enable_nestloop = on")?;
    // Before the outbox writes: an update is justified by a send this
    // worker held when the round began, not by one the round adds or settles.
    let held: HashSet<(String, i32)> = c
        .held
        .as_ref()
        .filter(|h| h.campaign == campaign)
        .map(|h| h.keys.iter().cloned().collect())
        .unwrap_or_default();
    update_executions(c, campaign, &round.executions, &held, me, now)?;
    c.batch("SET LOCAL enable_nestloop = off")?;
    // A send's price is reserved from the balance when its outbox row is
    // committed, before the provider is asked: two workers cannot both
    // hand over messages the money pays for only once. A send that fails
    // for good gives its price back.
    let reserved = insert_outbox(c, campaign, &round.outbox_new, lease)?;
    let released = record_outcomes(c, campaign, &round.outbox_done)?;
    schedule_retries(c, campaign, &round.outbox_retry)?;
    c.batch("SET LOCAL enable_nestloop = on")?;
    assign_variants(c, campaign, &round.ab_assigned, now)?;
    park(c, campaign, &round.parked, me, now)?;
    settle(c, campaign, &round.settled, now)?;
    // What the round did not move is due again as it was.
    c.execute(
        "UPDATE executions SET state = COALESCE(then_state, 'pending'), then_state = NULL, claimed_by = NULL, lease_until = NULL
         WHERE campaign = $1 AND state = 'processing' AND claimed_by = $2 AND lease_until IS NOT NULL",
        &[&campaign, &me],
    )?;
    contacts(c, round)?;
    statistics(c, campaign, round)?;
    if let Some(next) = round.rate_next_free_ms {
        c.execute(
            "INSERT INTO rate_limits (campaign, next_free_ms) VALUES ($1, $2)
             ON CONFLICT (campaign) DO UPDATE SET next_free_ms = excluded.next_free_ms",
            &[&campaign, &next],
        )?;
    }
    if let Some(b) = &round.breaker {
        write_breaker(c, campaign, b)?;
    }
    // The ledger keeps the engine's entries as they are (a round's debits
    // are the prices of the sends it saw accepted, as on SQLite). The
    // account moves by what is not reserved already: credits (auto-reload)
    // in, reservations out, prices of failed sends back.
    let mut credits = 0i64;
    if !round.ledger.is_empty() {
        let amounts: Vec<i64> = round.ledger.iter().map(|l| l.amount_micros).collect();
        let reasons: Vec<&str> = round.ledger.iter().map(|l| l.reason.as_str()).collect();
        c.execute(
            "INSERT INTO ledger (at, amount_micros, reason) SELECT $1, a, r FROM unnest($2::bigint[], $3::text[]) AS u(a, r)",
            &[&now, &amounts, &reasons],
        )?;
        credits = amounts.iter().filter(|a| **a > 0).sum();
    }
    // Last: the account row is the one row every worker's commit writes,
    // so it is held for the shortest time.
    let delta = credits + released - reserved;
    if delta != 0 {
        move_balance(c, delta, Covered::Required)?;
    }
    Ok(())
}

/// An outcome or a retry of a send another worker holds under a live lease
/// is refused: that worker is relaying it now.
fn fence_outbox(c: &mut Conn, campaign: &str, round: &Round, me: &str) -> Result<(), StoreError> {
    let keys: Vec<(&ContactId, Entry, &StepId, &str)> = round
        .outbox_done
        .iter()
        .map(|d| (&d.contact, d.entry, &d.step, d.version.as_str()))
        .chain(round.outbox_retry.iter().map(|r| (&r.contact, r.entry, &r.step, r.version.as_str())))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let k = Keys::of(keys.into_iter());
    let taken: i64 = c
        .query(
            "SELECT (o.lease_worker <> $6 AND o.lease_until > clock_timestamp()) FROM outbox o
             JOIN unnest($2::text[], $3::int[], $4::text[], $5::text[]) AS u(c, n, s, v)
               ON o.contact_id = u.c AND o.entry = u.n AND o.step = u.s AND o.version = u.v
             WHERE o.campaign = $1 AND o.status = 'pending'
             FOR UPDATE OF o",
            &[&campaign, &k.contacts, &k.entries, &k.steps, &k.versions, &me],
        )?
        .iter()
        .filter(|r| r.get::<_, Option<bool>>(0) == Some(true))
        .count() as i64;
    if taken > 0 {
        return Err(StoreError::LeaseLost(me.to_string()));
    }
    Ok(())
}

/// Outbox primary keys (campaign aside) as parallel arrays.
struct Keys<'a> {
    contacts: Vec<&'a str>,
    entries: Vec<i32>,
    steps: Vec<&'a str>,
    versions: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn of(keys: impl Iterator<Item = (&'a ContactId, Entry, &'a StepId, &'a str)>) -> Keys<'a> {
        let mut k = Keys { contacts: Vec::new(), entries: Vec::new(), steps: Vec::new(), versions: Vec::new() };
        for (contact, entry, step, version) in keys {
            k.contacts.push(contact.as_str());
            k.entries.push(entry.0 as i32);
            k.steps.push(step.0.as_str());
            k.versions.push(version);
        }
        k
    }
}

/// New sends, pending and held by the committing lease until their
/// outcome. Returns the prices of the rows written (a row already there
/// is not written again, nor reserved twice).
fn insert_outbox(c: &mut Conn, campaign: &str, rows: &[OutboxNew], lease: &Lease) -> Result<i64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let k = Keys::of(rows.iter().map(|o| (&o.contact, o.entry, &o.step, o.version.as_str())));
    let channels: Vec<&str> = rows.iter().map(|o| o.channel.as_str()).collect();
    let messages: Vec<&str> = rows.iter().map(|o| o.message.as_str()).collect();
    let templates: Vec<&str> = rows.iter().map(|o| o.template.as_str()).collect();
    let prices: Vec<i64> = rows.iter().map(|o| o.price_micros).collect();
    let created: Vec<i64> = rows.iter().map(|o| o.created_at).collect();
    let written = c.query_one(
        &format!(
            "WITH written AS (
               INSERT INTO outbox (campaign, contact_id, entry, step, version, channel, message, template, price_micros,
                 status, created_at, lease_worker, lease_until)
               SELECT $1, u.c, u.n, u.s, u.v, u.ch, u.m, u.t, u.p, 'pending', u.at, $2, {LEASE_UNTIL}
               FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])
                 AS u(c, n, s, v, ch, m, t, p, at)
               ON CONFLICT DO NOTHING
               RETURNING price_micros)
             SELECT COALESCE(SUM(price_micros), 0)::bigint FROM written"
        ),
        &[
            &campaign,
            &lease.worker.0,
            &lease.ttl_ms,
            &k.contacts,
            &k.entries,
            &k.steps,
            &k.versions,
            &channels,
            &messages,
            &templates,
            &prices,
            &created,
        ],
    )?;
    Ok(written.get(0))
}

/// Outcomes of sends: the row leaves `pending` (a row already settled is
/// left as it is) and its lease ends. A send failed for good gives back
/// its frequency-cap slot.
/// Returns the prices of the sends that failed for good: their reservation
/// goes back to the balance.
fn record_outcomes(c: &mut Conn, campaign: &str, done: &[OutboxDone]) -> Result<i64, StoreError> {
    if done.is_empty() {
        return Ok(0);
    }
    // The first outcome of a row counts, as when they are applied in turn.
    let mut seen = HashSet::new();
    let done: Vec<&OutboxDone> = done
        .iter()
        .filter(|d| seen.insert((d.contact.as_str(), d.entry, d.step.0.as_str(), d.version.as_str())))
        .collect();
    let k = Keys::of(done.iter().map(|d| (&d.contact, d.entry, &d.step, d.version.as_str())));
    let status: Vec<&str> = done.iter().map(|d| d.outcome.status()).collect();
    let at: Vec<i64> = done.iter().map(|d| d.at).collect();
    let e: Vec<Engagement> = done.iter().map(|d| d.outcome.engagement()).collect();
    let delivered: Vec<Option<i64>> = e.iter().map(|e| e.delivered_at).collect();
    let opened: Vec<Option<i64>> = e.iter().map(|e| e.opened_at).collect();
    let clicked: Vec<Option<i64>> = e.iter().map(|e| e.clicked_at).collect();
    let errors: Vec<Option<&str>> = done.iter().map(|d| d.outcome.error()).collect();
    let released = c.query_one(
        "WITH settled AS (
           UPDATE outbox o SET status = u.st, sent_at = u.at, delivered_at = u.d, opened_at = u.op, clicked_at = u.cl,
             error = u.err, attempts = o.attempts + 1, next_attempt_at = NULL, lease_worker = NULL, lease_until = NULL
           FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
             $10::bigint[], $11::text[]) AS u(c, n, s, v, st, at, d, op, cl, err)
           WHERE o.campaign = $1 AND o.contact_id = u.c AND o.entry = u.n AND o.step = u.s AND o.version = u.v
             AND o.status = 'pending'
           RETURNING o.status, o.price_micros)
         SELECT COALESCE(SUM(price_micros) FILTER (WHERE status <> 'sent'), 0)::bigint FROM settled",
        &[
            &campaign,
            &k.contacts,
            &k.entries,
            &k.steps,
            &k.versions,
            &status,
            &at,
            &delivered,
            &opened,
            &clicked,
            &errors,
        ],
    )?;
    let failed: Vec<&&OutboxDone> = done.iter().filter(|d| matches!(d.outcome, SendOutcome::Failed { .. })).collect();
    if !failed.is_empty() {
        let contacts: Vec<&str> = failed.iter().map(|d| d.contact.as_str()).collect();
        let keys: Vec<String> =
            failed.iter().map(|d| execution_key(campaign, &d.version, &d.contact, d.entry, &d.step)).collect();
        c.execute(
            "DELETE FROM capped_sends s USING unnest($1::text[], $2::text[]) AS u(c, k)
             WHERE s.contact_id = u.c AND s.key = u.k",
            &[&contacts, &keys],
        )?;
    }
    Ok(released.get(0))
}

/// Failed attempts to be made again: the row stays pending, unleased, due
/// at its next attempt for whichever worker takes it.
fn schedule_retries(c: &mut Conn, campaign: &str, retries: &[OutboxRetry]) -> Result<(), StoreError> {
    if retries.is_empty() {
        return Ok(());
    }
    // The last retry of a row counts, as when they are applied in turn.
    let mut last: HashMap<(&str, Entry, &str, &str), &OutboxRetry> = HashMap::new();
    for r in retries {
        last.insert((r.contact.as_str(), r.entry, r.step.0.as_str(), r.version.as_str()), r);
    }
    let retries: Vec<&OutboxRetry> = last.into_values().collect();
    let k = Keys::of(retries.iter().map(|r| (&r.contact, r.entry, &r.step, r.version.as_str())));
    let attempts: Vec<i32> = retries.iter().map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX)).collect();
    let next: Vec<i64> = retries.iter().map(|r| r.next_attempt_at).collect();
    let errors: Vec<&str> = retries.iter().map(|r| r.error.as_str()).collect();
    c.execute(
        "UPDATE outbox o SET attempts = u.a, next_attempt_at = u.at, error = u.err, lease_worker = NULL, lease_until = NULL
         FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::text[])
           AS u(c, n, s, v, a, at, err)
         WHERE o.campaign = $1 AND o.contact_id = u.c AND o.entry = u.n AND o.step = u.s AND o.version = u.v
           AND o.status = 'pending'",
        &[&campaign, &k.contacts, &k.entries, &k.steps, &k.versions, &attempts, &next, &errors],
    )?;
    Ok(())
}

/// The executions the round moves, fenced: each must be locked by this
/// transaction's claim (`held`), or be held under this worker's live lease
/// (a claim of an older flowc), or, unclaimed, be the execution of a send
/// this worker holds (an outcome moving it: a send failed for good). When
/// one is not, another worker may have moved it: the round is refused (the
/// transaction rolls back, nothing is written).
fn update_executions(
    c: &mut Conn,
    campaign: &str,
    updates: &[ExecUpdate],
    held: &HashSet<(String, i32)>,
    me: &str,
    now: i64,
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    // The last update of an execution counts, as when they are applied in turn.
    let mut last: HashMap<(&str, Entry), &ExecUpdate> = HashMap::new();
    for u in updates {
        last.insert((u.contact.as_str(), u.entry), u);
    }
    let updates: Vec<&ExecUpdate> = last.into_values().collect();
    let contacts: Vec<&str> = updates.iter().map(|u| u.contact.as_str()).collect();
    let entries: Vec<i32> = updates.iter().map(|u| u.entry.0 as i32).collect();
    let steps: Vec<&str> = updates.iter().map(|u| u.step.0.as_str()).collect();
    let versions: Vec<&str> = updates.iter().map(|u| u.version.as_str()).collect();
    let states: Vec<&str> = updates.iter().map(|u| u.state.as_str()).collect();
    let wakes: Vec<Option<i64>> = updates.iter().map(|u| u.wake_at).collect();
    let reasons: Vec<Option<&str>> = updates.iter().map(|u| u.reason.as_deref()).collect();
    let since: Vec<Option<i64>> = updates.iter().map(|u| u.wait_since).collect();
    let locked: Vec<bool> =
        updates.iter().map(|u| held.contains(&(u.contact.as_str().to_string(), u.entry.0 as i32))).collect();
    let moved = c.execute(
        "UPDATE executions e SET step = u.s, version = u.v, state = u.st, wake_at = u.w, reason = u.r, updated_at = $2,
           wait_since = u.ws, then_state = NULL, claimed_by = NULL, lease_until = NULL
         FROM unnest($3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::bigint[],
           $12::bool[]) AS u(c, n, s, v, st, w, r, ws, held)
         WHERE e.campaign = $1 AND e.contact_id = u.c AND e.entry = u.n
           AND ((u.held AND e.state = 'pending')
             OR (NOT u.held AND e.state = 'processing' AND e.claimed_by = $11 AND e.lease_until > clock_timestamp())
             OR (NOT u.held AND e.lease_until IS NULL AND EXISTS (
               SELECT 1 FROM outbox o WHERE o.campaign = $1 AND o.contact_id = e.contact_id AND o.entry = e.entry
                 AND o.status = 'pending' AND o.lease_worker = $11)))",
        &[&campaign, &now, &contacts, &entries, &steps, &versions, &states, &wakes, &reasons, &since, &me, &locked],
    )?;
    if moved != updates.len() as u64 {
        return Err(StoreError::LeaseLost(me.to_string()));
    }
    Ok(())
}

fn assign_variants(c: &mut Conn, campaign: &str, assigned: &[AbAssignment], now: i64) -> Result<(), StoreError> {
    if assigned.is_empty() {
        return Ok(());
    }
    let contacts: Vec<&str> = assigned.iter().map(|a| a.contact.as_str()).collect();
    let entries: Vec<i32> = assigned.iter().map(|a| a.entry.0 as i32).collect();
    let tests: Vec<&str> = assigned.iter().map(|a| a.ab.as_str()).collect();
    let variants: Vec<&str> = assigned.iter().map(|a| a.variant.as_str()).collect();
    // The first assignment stays.
    c.execute(
        "INSERT INTO ab_assignments (campaign, contact_id, entry, ab, variant, at)
         SELECT $1, u.c, u.n, u.a, u.v, $2 FROM unnest($3::text[], $4::int[], $5::text[], $6::text[]) AS u(c, n, a, v)
         ON CONFLICT DO NOTHING",
        &[&campaign, &now, &contacts, &entries, &tests, &variants],
    )?;
    Ok(())
}

fn pairs(list: &[(ContactId, Entry)]) -> (Vec<&str>, Vec<i32>) {
    list.iter().map(|(c, e)| (c.as_str(), e.0 as i32)).unzip()
}

/// Executions whose send waits for another attempt: `processing` with no
/// lease (the outbox row owns them), remembering the state to go back to.
fn park(c: &mut Conn, campaign: &str, parked: &[(ContactId, Entry)], me: &str, now: i64) -> Result<(), StoreError> {
    if parked.is_empty() {
        return Ok(());
    }
    let (contacts, entries) = pairs(parked);
    c.execute(
        "UPDATE executions e SET then_state = e.state, state = 'processing', claimed_by = $2, lease_until = NULL, updated_at = $3
         FROM unnest($4::text[], $5::int[]) AS u(c, n)
         WHERE e.campaign = $1 AND e.contact_id = u.c AND e.entry = u.n AND e.state NOT IN ('processing', 'failed')",
        &[&campaign, &me, &now, &contacts, &entries],
    )?;
    Ok(())
}

/// Parked executions whose sends were all accepted take the state they were
/// parked with.
fn settle(c: &mut Conn, campaign: &str, settled: &[(ContactId, Entry)], now: i64) -> Result<(), StoreError> {
    if settled.is_empty() {
        return Ok(());
    }
    let (contacts, entries) = pairs(settled);
    c.execute(
        "UPDATE executions e SET state = COALESCE(e.then_state, 'pending'), then_state = NULL, claimed_by = NULL,
           lease_until = NULL, updated_at = $2
         FROM unnest($3::text[], $4::int[]) AS u(c, n)
         WHERE e.campaign = $1 AND e.contact_id = u.c AND e.entry = u.n AND e.state = 'processing' AND e.lease_until IS NULL
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign = $1 AND o.contact_id = u.c AND o.entry = u.n
             AND o.status = 'pending')",
        &[&campaign, &now, &contacts, &entries],
    )?;
    Ok(())
}

/// Tag and attribute changes, applied in SQL to the values stored now (a
/// change another writer committed meanwhile is kept). The contacts are
/// locked first in id order, so two workers never deadlock on them.
fn contacts(c: &mut Conn, round: &Round) -> Result<(), StoreError> {
    if round.tags.is_empty() && round.fields.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<&str> =
        round.tags.iter().map(|d| d.contact.as_str()).chain(round.fields.iter().map(|d| d.contact.as_str())).collect();
    ids.sort_unstable();
    ids.dedup();
    c.execute("SELECT 1 FROM contacts WHERE id = ANY ($1) ORDER BY id FOR UPDATE", &[&ids])?;
    // One statement touches a row once: a contact's second delta (two of
    // its executions in one round) goes in the next pass, in order.
    let mut passes: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for d in &round.tags {
        let n = seen.entry(d.contact.as_str()).or_default();
        if passes.len() <= *n {
            passes.push(Vec::new());
        }
        passes[*n].push(serde_json::json!({ "id": d.contact.as_str(), "added": d.add, "removed": d.remove }));
        *n += 1;
    }
    for pass in passes {
        c.execute(
            "UPDATE contacts k SET tags = flowc_apply_tags(k.tags, d.added, d.removed)
             FROM jsonb_to_recordset($1::jsonb) AS d(id TEXT, added TEXT[], removed TEXT[]) WHERE k.id = d.id",
            &[&serde_json::Value::Array(pass)],
        )?;
    }
    if !round.fields.is_empty() {
        // A contact's fields, later values over earlier: one object each.
        let mut merged: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
        for d in &round.fields {
            let m = merged.entry(d.contact.as_str()).or_default();
            for (name, value) in &d.values {
                m.insert(name.clone(), value.clone());
            }
        }
        let rows: Vec<serde_json::Value> =
            merged.into_iter().map(|(id, set)| serde_json::json!({ "id": id, "set": set })).collect();
        c.execute(
            "UPDATE contacts k SET attrs = k.attrs || d.set
             FROM jsonb_to_recordset($1::jsonb) AS d(id TEXT, set JSONB) WHERE k.id = d.id",
            &[&serde_json::Value::Array(rows)],
        )?;
    }
    Ok(())
}

/// Step and A/B counts as rows added, summed when read.
fn statistics(c: &mut Conn, campaign: &str, round: &Round) -> Result<(), StoreError> {
    if !round.steps.is_empty() {
        let steps: Vec<&str> = round.steps.keys().map(|s| s.0.as_str()).collect();
        let n = |f: fn(&StepCounts) -> i64| -> Vec<i64> { round.steps.values().map(f).collect() };
        c.execute(
            "INSERT INTO step_stats (campaign, step, entered, sent, failed, cost_micros)
             SELECT $1, u.s, u.e, u.se, u.f, u.c FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
               AS u(s, e, se, f, c)",
            &[
                &campaign,
                &steps,
                &n(|c| c.entered as i64),
                &n(|c| c.sent as i64),
                &n(|c| c.failed as i64),
                &n(|c| c.cost_micros),
            ],
        )?;
        for (table, of) in [
            ("step_skips", (|c: &StepCounts| &c.skipped) as fn(&StepCounts) -> &BTreeMap<String, u64>),
            ("step_holds", |c: &StepCounts| &c.held),
        ] {
            let mut steps = Vec::new();
            let mut reasons = Vec::new();
            let mut counts = Vec::new();
            for (step, counted) in &round.steps {
                for (reason, k) in of(counted) {
                    steps.push(step.0.as_str());
                    reasons.push(reason.as_str());
                    counts.push(*k as i64);
                }
            }
            if !steps.is_empty() {
                c.execute(
                    &format!(
                        "INSERT INTO {table} (campaign, step, reason, count)
                         SELECT $1, u.s, u.r, u.n FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(s, r, n)"
                    ),
                    &[&campaign, &steps, &reasons, &counts],
                )?;
            }
        }
    }
    if !round.ab.is_empty() {
        let tests: Vec<&str> = round.ab.keys().map(|(a, _)| a.as_str()).collect();
        let variants: Vec<&str> = round.ab.keys().map(|(_, v)| v.as_str()).collect();
        let counts: Vec<i64> = round.ab.values().map(|n| *n as i64).collect();
        c.execute(
            "INSERT INTO ab_stats (campaign, ab, variant, count)
             SELECT $1, u.a, u.v, u.n FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(a, v, n)",
            &[&campaign, &tests, &variants, &counts],
        )?;
    }
    Ok(())
}
