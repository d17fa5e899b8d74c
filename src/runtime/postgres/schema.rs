//! The PostgreSQL store's schema: versioned migrations recorded in
//! `flowc_schema`, applied on connect under a transaction-scoped advisory
//! lock (several workers may connect at once; one migrates, the others wait
//! and find it done), and a database newer than this flowc refused.
//!
//! The tables mean what SQLite's mean at its schema 7 (docs/runtime.md),
//! in PostgreSQL's types, with what many workers need besides: leases on
//! executions and outbox rows, the balance kept beside the ledger, and
//! statistics as rows that are only ever added (no row every worker updates).

use super::{Conn, StoreError};

/// Each entry migrates from schema `i` to `i + 1`; `flowc_schema.version`
/// records where a database is.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
-- Text keys compare bytewise (COLLATE "C"), as SQLite's do: pages of
-- contacts and reports come out in the same order on both stores.
CREATE TABLE contacts (
  id TEXT COLLATE "C" PRIMARY KEY,
  attrs JSONB NOT NULL,
  tags TEXT[] NOT NULL,
  consent TEXT[] NOT NULL,
  capabilities TEXT[] NOT NULL
);
CREATE TABLE contact_events (
  id BIGSERIAL PRIMARY KEY,
  contact_id TEXT COLLATE "C" NOT NULL,
  name TEXT NOT NULL,
  at BIGINT NOT NULL,
  props JSONB NOT NULL,
  key TEXT NOT NULL UNIQUE
);
CREATE INDEX contact_events_by_contact ON contact_events (contact_id, name, at);
CREATE TABLE campaigns (
  name TEXT COLLATE "C" PRIMARY KEY,
  version TEXT NOT NULL,
  program BYTEA NOT NULL,
  state TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  probe BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE campaign_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  program BYTEA NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE campaign_transitions (
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL,
  at BIGINT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  why TEXT NOT NULL
);
CREATE INDEX campaign_transitions_by_name ON campaign_transitions (name, id);
-- An execution a worker claimed is `processing` with `claimed_by` and
-- `lease_until` (the database's clock), and takes `then_state` back if the
-- claim lapses. Parked under a send awaiting another attempt it is
-- `processing` with no lease: the outbox row owns it (`claimed_by` names
-- who parked it).
CREATE TABLE executions (
  campaign TEXT NOT NULL,
  contact_id TEXT COLLATE "C" NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  version TEXT NOT NULL,
  step TEXT NOT NULL,
  state TEXT NOT NULL,
  wake_at BIGINT,
  reason TEXT,
  updated_at BIGINT NOT NULL,
  then_state TEXT,
  claimed_by TEXT,
  lease_until TIMESTAMPTZ,
  started_at BIGINT,
  wait_since BIGINT,
  PRIMARY KEY (campaign, contact_id, entry)
);
-- Claiming reads the due end of the pending executions only.
CREATE INDEX executions_due ON executions (campaign, wake_at) WHERE state = 'pending';
-- Claimed and parked executions: a few batches' worth of rows. (Counts per
-- state read the campaign's range of the primary key; an index on the state
-- would be one more to write at every claim and commit.)
CREATE INDEX executions_claimed ON executions (campaign, claimed_by) WHERE state = 'processing';
-- The idempotency key is derived from the primary key (`store::execution_key`).
-- A pending row being relayed is leased (`lease_worker`, `lease_until`) so two
-- workers never relay the same message.
CREATE TABLE outbox (
  campaign TEXT NOT NULL,
  contact_id TEXT COLLATE "C" NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  step TEXT NOT NULL,
  version TEXT NOT NULL,
  channel TEXT NOT NULL,
  message TEXT NOT NULL,
  template TEXT NOT NULL,
  price_micros BIGINT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  sent_at BIGINT,
  delivered_at BIGINT,
  opened_at BIGINT,
  clicked_at BIGINT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT,
  lease_worker TEXT,
  lease_until TIMESTAMPTZ,
  PRIMARY KEY (campaign, contact_id, entry, step, version)
);
-- In flight and retries: as small as what is pending.
CREATE INDEX outbox_pending ON outbox (campaign, next_attempt_at) WHERE status = 'pending';
CREATE TABLE ledger (
  id BIGSERIAL PRIMARY KEY,
  at BIGINT NOT NULL,
  amount_micros BIGINT NOT NULL,
  reason TEXT NOT NULL
);
-- The balance beside the append-only ledger, moved in the same transaction
-- as each ledger row: a round's debits are one conditional update of it.
CREATE TABLE account (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  balance_micros BIGINT NOT NULL DEFAULT 0,
  reload_threshold_micros BIGINT,
  reload_amount_micros BIGINT
);
INSERT INTO account (id) VALUES (1);
-- Statistics are deltas, one row per batch and step, summed when read:
-- workers append, never wait on one another's counters.
CREATE TABLE step_stats (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  entered BIGINT NOT NULL DEFAULT 0,
  sent BIGINT NOT NULL DEFAULT 0,
  failed BIGINT NOT NULL DEFAULT 0,
  cost_micros BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX step_stats_by_campaign ON step_stats (campaign);
CREATE TABLE step_skips (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  reason TEXT NOT NULL,
  count BIGINT NOT NULL
);
CREATE INDEX step_skips_by_campaign ON step_skips (campaign);
CREATE TABLE step_holds (
  campaign TEXT NOT NULL,
  step TEXT NOT NULL,
  reason TEXT NOT NULL,
  count BIGINT NOT NULL
);
CREATE INDEX step_holds_by_campaign ON step_holds (campaign);
CREATE TABLE ab_stats (
  campaign TEXT NOT NULL,
  ab TEXT NOT NULL,
  variant TEXT NOT NULL,
  count BIGINT NOT NULL
);
CREATE INDEX ab_stats_by_campaign ON ab_stats (campaign);
CREATE TABLE ab_assignments (
  campaign TEXT NOT NULL,
  contact_id TEXT COLLATE "C" NOT NULL,
  entry INTEGER NOT NULL DEFAULT 1,
  ab TEXT NOT NULL,
  variant TEXT NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (campaign, contact_id, entry, ab)
);
CREATE TABLE breakers (
  campaign TEXT PRIMARY KEY,
  consecutive BIGINT NOT NULL,
  recent TEXT NOT NULL
);
CREATE TABLE rate_limits (
  campaign TEXT PRIMARY KEY,
  next_free_ms BIGINT NOT NULL
);
CREATE TABLE capped_sends (
  contact_id TEXT COLLATE "C" NOT NULL,
  at BIGINT NOT NULL,
  key TEXT NOT NULL,
  channel TEXT NOT NULL,
  PRIMARY KEY (contact_id, at, key)
);
CREATE INDEX capped_sends_by_key ON capped_sends (contact_id, key);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- A batch's change to a contact's tags, applied to the stored list inside
-- the UPDATE (as `TagDelta::apply`: removals first, then the additions not
-- already there, in order), so a change another writer made meanwhile stays.
CREATE FUNCTION flowc_apply_tags(tags TEXT[], added TEXT[], removed TEXT[]) RETURNS TEXT[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE(array_agg(t ORDER BY k, o), '{}') FROM (
    SELECT t, 0 AS k, o FROM unnest(tags) WITH ORDINALITY AS a(t, o) WHERE t <> ALL (removed)
    UNION ALL
    SELECT t, 1, MIN(o) FROM unnest(added) WITH ORDINALITY AS b(t, o)
      WHERE NOT (t = ANY (tags) AND t <> ALL (removed)) GROUP BY t
  ) x
$$;
"#,
    r#"
-- Schema 2: the events flowc records with each enrollment by a trigger
-- (`campaign.triggered`) have no idempotency key: each is stored, as two
-- identical triggers in one minute are two enrollments. A unique index
-- holds any number of NULLs.
ALTER TABLE contact_events ALTER COLUMN key DROP NOT NULL;
"#,
];

/// Any number serves, as long as it is the same for every flowc: the
/// advisory lock under which a database is migrated.
const MIGRATION_LOCK: i64 = 0x666c_6f77_635f_6d67;

/// Checks that the connected database holds flowc's tables in a schema
/// this flowc knows, changing nothing.
pub(super) fn check(conn: &mut Conn) -> Result<(), StoreError> {
    conn.tx(|c| {
        let exists: bool = c.query_one("SELECT to_regclass('flowc_schema') IS NOT NULL", &[])?.get(0);
        if !exists {
            return Err(StoreError::Missing);
        }
        let current: i64 = c.query_one("SELECT version::bigint FROM flowc_schema", &[])?.get(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew { found: current, known });
        }
        if current < READABLE_FROM {
            return Err(StoreError::Other(format!(
                "the database has flowc's schema {current}, older than this flowc reads without migrating it \
                 ({READABLE_FROM}); a command that writes (`flowc worker`, `flowc campaign start`) migrates it"
            )));
        }
        Ok(())
    })
}

/// The oldest schema a command that only reads reads as it is. Raise it
/// with a migration that changes what readers read (a column they select,
/// a table they join): schema 2 only let a key be NULL.
const READABLE_FROM: i64 = 1;

/// Brings the connected database to the newest schema, or refuses it.
pub(super) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.tx(|c| {
        c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let known = MIGRATIONS.len() as i64;
        let exists: bool = c.query_one("SELECT to_regclass('flowc_schema') IS NOT NULL", &[])?.get(0);
        let current: i64 = if exists {
            c.query_one("SELECT version::bigint FROM flowc_schema", &[])?.get(0)
        } else {
            // A schema holding tables of something else is not taken over.
            let (schema, tables): (Option<String>, i64) = {
                let r = c.query_one(
                    "SELECT current_schema()::text, (SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema())",
                    &[],
                )?;
                (r.get(0), r.get(1))
            };
            let Some(schema) = schema else {
                return Err(StoreError::Other(
                    "the connection's search_path names no existing schema to create flowc's tables in".into(),
                ));
            };
            if tables > 0 {
                return Err(StoreError::Corrupt(format!(
                    "schema `{schema}` holds tables of something else; give flowc a database (or a schema, \
                     `?options=-csearch_path%3DNAME`) of its own"
                )));
            }
            c.batch("CREATE TABLE flowc_schema (version INTEGER NOT NULL); INSERT INTO flowc_schema VALUES (0);")?;
            0
        };
        if current > known {
            return Err(StoreError::TooNew { found: current, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            c.batch(sql)?;
            c.execute("UPDATE flowc_schema SET version = $1", &[&((i + 1) as i32)])?;
        }
        Ok(())
    })
}
