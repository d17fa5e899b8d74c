//! Claiming work on PostgreSQL: due executions and pending sends are taken
//! with `FOR UPDATE SKIP LOCKED` — executions by the row locks of the
//! round's own transaction, sends under a lease on the database's clock —
//! so workers never take the same row and a dead worker's work is taken
//! over once its claim lapses; the virtual clock moves only when no worker
//! holds work and nothing is due.

use super::conn::Held;
use super::{corrupt, entry_of, outbox_row, Conn, StoreError, OUTBOX_COLUMNS};
use crate::compile::program::FieldDef;
use crate::runtime::facts::{self, Addresses, FieldValue};
use crate::runtime::store::*;
use std::collections::HashSet;

/// What a claim reads of each execution and its contact.
const DUE_COLUMNS: &str = "e.contact_id, e.entry, e.step, e.version, e.state, e.started_at, e.wait_since,
    c.tags, c.consent, c.capabilities, c.attrs ->> 'created_at',
    COALESCE(c.attrs ->> 'email', '') <> '', COALESCE(c.attrs ->> 'phone', '') <> '',
    ARRAY(SELECT c.attrs -> f FROM unnest($4::text[]) WITH ORDINALITY AS u(f, i) ORDER BY i), e.wake_at";

/// Due executions up to `limit`, earliest first, with the asked-for fields
/// of their contacts, claimed by the row locks of a transaction left open
/// for the round (`Conn::held`): the claim writes nothing, and the round's
/// commit writes each execution once. The locks end with the transaction —
/// at the round's commit, when the worker's connection drops (a killed
/// worker), or when the transaction sits idle longer than the lease
/// (`idle_in_transaction_session_timeout`: a stalled worker's claim lapses,
/// its late commit fails). Claiming again while a claim is held (a round
/// refused for balance is stepped again) returns the same executions.
pub(super) fn executions(
    c: &mut Conn,
    campaign: &str,
    now: i64,
    limit: usize,
    fields: &[FieldDef],
    lease: &Lease,
) -> Result<Vec<Due>, StoreError> {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let rows = if let Some(held) = &c.held {
        if held.campaign != campaign {
            return Err(StoreError::Other(format!(
                "a claim on campaign `{}` is still open; commit or release it first",
                held.campaign
            )));
        }
        let (ids, entries): (Vec<String>, Vec<i32>) = held.keys.iter().cloned().unzip();
        c.query(
            &format!(
                "SELECT {DUE_COLUMNS} FROM executions e
                 JOIN unnest($2::text[], $3::int[]) AS u(id, n) ON e.contact_id = u.id AND e.entry = u.n
                 JOIN contacts c ON c.id = e.contact_id
                 WHERE e.campaign = $1
                 ORDER BY e.wake_at, e.contact_id, e.entry LIMIT $5"
            ),
            &[&campaign, &ids, &entries, &names, &(limit as i64)],
        )?
    } else {
        if c.depth() > 0 {
            return Err(StoreError::Other(
                "a claim must begin outside any open transaction: it keeps its own open until the round commits".into(),
            ));
        }
        c.open()?;
        let claimed = (|| {
            c.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
                &[&lease.ttl_ms.max(1).to_string()],
            )?;
            // Locked in the index's order (the earliest first), then put in
            // a total order: two workers lock different rows, never wait.
            c.query(
                &format!(
                    "SELECT * FROM (
                       SELECT {DUE_COLUMNS} FROM executions e JOIN contacts c ON c.id = e.contact_id
                       WHERE e.campaign = $1 AND e.state = 'pending' AND e.wake_at <= $2
                       ORDER BY e.wake_at LIMIT $3 FOR UPDATE OF e SKIP LOCKED
                     ) d ORDER BY 15, 1, 2"
                ),
                &[&campaign, &now, &(limit as i64), &names],
            )
        })();
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                let _ = c.close(TxEnd::Rollback);
                return Err(e);
            }
        };
        if rows.is_empty() {
            c.close(TxEnd::Rollback)?;
            return Ok(Vec::new());
        }
        c.held = Some(Held {
            campaign: campaign.to_string(),
            worker: lease.worker.0.clone(),
            keys: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        });
        rows
    };
    rows.iter()
        .map(|r| {
            let id: String = r.get(0);
            let state: Option<String> = r.get(4);
            let state = state.as_deref().and_then(ExecState::parse).ok_or_else(|| {
                corrupt("executions", &format!("{campaign}/{id}"), state.as_deref().unwrap_or("NULL"))
            })?;
            let tags: Vec<String> = r.get(7);
            let values: Vec<Option<serde_json::Value>> = r.get(13);
            let fields = fields
                .iter()
                .zip(values)
                .map(|(f, v)| match f.name.as_str() {
                    "id" => FieldValue::Str(id.clone()),
                    "tags" => FieldValue::Set(tags.clone()),
                    _ => v.map_or(FieldValue::Absent, |v| facts::json_to_field(&f.ty, &v)),
                })
                .collect();
            let created: Option<String> = r.get(10);
            Ok(Due {
                entry: entry_of(r.get(1), "executions", &id)?,
                step: StepId(r.get(2)),
                version: r.get(3),
                state,
                started_at: r.get(5),
                wait_since: r.get(6),
                contact: DueContact {
                    fields,
                    tags,
                    consent: r.get(8),
                    capabilities: r.get(9),
                    created_at: created.as_deref().and_then(facts::parse_datetime),
                    addresses: Addresses { email: r.get(11), phone: r.get(12) },
                    id: ContactId(id),
                },
            })
        })
        .collect()
}

/// Sends in flight that no other worker's live lease holds (their relayer
/// is gone), taken under `lease` (rows it holds already come back too).
pub(super) fn outbox_pending(c: &mut Conn, campaign: &str, lease: &Lease) -> Result<Vec<OutboxNew>, StoreError> {
    let rows = c.query(
        &format!(
            "WITH taken AS (
               UPDATE outbox o SET lease_worker = $2, lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
               FROM (SELECT contact_id, entry, step, version FROM outbox
                     WHERE campaign = $1 AND status = 'pending' AND next_attempt_at IS NULL
                       AND (lease_until IS NULL OR lease_until <= clock_timestamp() OR lease_worker = $2)
                     FOR UPDATE SKIP LOCKED) p
               WHERE o.campaign = $1 AND o.contact_id = p.contact_id AND o.entry = p.entry AND o.step = p.step
                 AND o.version = p.version
               RETURNING o.*
             )
             SELECT {OUTBOX_COLUMNS} FROM taken ORDER BY contact_id, entry, step, version"
        ),
        &[&campaign, &lease.worker.0, &lease.ttl_ms],
    )?;
    rows.iter().map(outbox_row).collect()
}

/// Sends whose next attempt is due by `now`, earliest first, that no other
/// live lease holds, taken under `lease`, with the attempts made so far.
pub(super) fn outbox_due(
    c: &mut Conn,
    campaign: &str,
    now: i64,
    limit: usize,
    lease: &Lease,
) -> Result<Vec<(OutboxNew, u32)>, StoreError> {
    let rows = c.query(
        &format!(
            "WITH taken AS (
               UPDATE outbox o SET lease_worker = $2, lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
               FROM (SELECT contact_id, entry, step, version FROM outbox
                     WHERE campaign = $1 AND status = 'pending' AND next_attempt_at <= $4
                       AND (lease_until IS NULL OR lease_until <= clock_timestamp() OR lease_worker = $2)
                     ORDER BY next_attempt_at LIMIT $5
                     FOR UPDATE SKIP LOCKED) p
               WHERE o.campaign = $1 AND o.contact_id = p.contact_id AND o.entry = p.entry AND o.step = p.step
                 AND o.version = p.version
               RETURNING o.*
             )
             SELECT {OUTBOX_COLUMNS}, attempts FROM taken ORDER BY next_attempt_at, contact_id, entry, step, version"
        ),
        &[&campaign, &lease.worker.0, &lease.ttl_ms, &now, &(limit as i64)],
    )?;
    rows.iter()
        .map(|r| {
            let row = outbox_row(r)?;
            let attempts: i32 = r.get(10);
            let attempts = u32::try_from(attempts).map_err(|_| corrupt("outbox", &row.key, &attempts.to_string()))?;
            Ok((row, attempts))
        })
        .collect()
}

/// Extends `lease` on the pending sends of `rows` it holds, or whose lease
/// lapsed without another worker taking them; returns their keys.
pub(super) fn renew_sends(
    c: &mut Conn,
    campaign: &str,
    rows: &[&OutboxNew],
    lease: &Lease,
) -> Result<HashSet<String>, StoreError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let contacts: Vec<&str> = rows.iter().map(|r| r.contact.as_str()).collect();
    let entries: Vec<i32> = rows.iter().map(|r| r.entry.0 as i32).collect();
    let steps: Vec<&str> = rows.iter().map(|r| r.step.0.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.version.as_str()).collect();
    let kept = c.query(
        "UPDATE outbox o SET lease_worker = $2, lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
         FROM unnest($4::text[], $5::int[], $6::text[], $7::text[]) AS u(c, n, s, v)
         WHERE o.campaign = $1 AND o.contact_id = u.c AND o.entry = u.n AND o.step = u.s AND o.version = u.v
           AND o.status = 'pending'
           AND (o.lease_worker = $2 OR o.lease_until IS NULL OR o.lease_until <= clock_timestamp())
         RETURNING o.contact_id, o.entry, o.step, o.version",
        &[&campaign, &lease.worker.0, &lease.ttl_ms, &contacts, &entries, &steps, &versions],
    )?;
    let kept: HashSet<(String, i32, String, String)> =
        kept.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    Ok(rows
        .iter()
        .filter(|r| kept.contains(&(r.contact.0.clone(), r.entry.0 as i32, r.step.0.clone(), r.version.clone())))
        .map(|r| r.key.clone())
        .collect())
}

/// Executions whose claim lapsed (or that nothing owns: parked without a
/// send pending) go back to the state they were claimed or parked in.
pub(super) fn requeue(c: &mut Conn, campaign: &str, lease: &Lease) -> Result<u64, StoreError> {
    c.execute(
        "UPDATE executions e SET state = COALESCE(e.then_state, 'pending'), then_state = NULL, claimed_by = NULL, lease_until = NULL
         WHERE e.campaign = $1 AND e.state = 'processing' AND e.claimed_by IS DISTINCT FROM $2
           AND (e.lease_until IS NULL OR e.lease_until <= clock_timestamp())
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign = $1 AND o.contact_id = e.contact_id
             AND o.entry = e.entry AND o.status = 'pending')",
        &[&campaign, &lease.worker.0],
    )
}

/// Moves meta `clock` from `from` to `to` in one statement, only when no
/// worker holds live work and nothing of a RUNNING campaign is due at
/// `from`: no execution, no retry, and no send left in flight by a worker
/// whose lease lapsed (its outcome is unknown until another worker takes it
/// over; executions that read it must not step past it). Work of a paused
/// campaign waits for its resume, not the clock.
pub(super) fn advance_clock(c: &mut Conn, from: i64, to: i64) -> Result<bool, StoreError> {
    let n = c.execute(
        "INSERT INTO meta (key, value)
         SELECT 'clock', $2
         -- Standing still (from = to) sets a clock not set yet whatever is
         -- in hand: it moves no time. Without it, a worker started on due
         -- work kept its clock to itself until the first idle jump, and a
         -- run that never waited left no clock for the report to read.
         WHERE $1 = $2
           OR (NOT EXISTS (SELECT 1 FROM executions WHERE state = 'processing' AND lease_until > clock_timestamp())
           AND NOT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending' AND lease_until > clock_timestamp())
           AND NOT EXISTS (SELECT 1 FROM campaigns k WHERE k.state = 'RUNNING' AND (
             EXISTS (SELECT 1 FROM executions e WHERE e.campaign = k.name AND e.state = 'pending' AND e.wake_at <= $3)
             OR EXISTS (SELECT 1 FROM outbox o WHERE o.campaign = k.name AND o.status = 'pending'
               AND (o.next_attempt_at <= $3 OR o.next_attempt_at IS NULL)))))
         ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE meta.value = $1",
        &[&from.to_string(), &to.to_string(), &from],
    )?;
    Ok(n == 1)
}
