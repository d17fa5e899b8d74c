//! The PostgreSQL store: the `Store` contract for any number of workers on
//! one database. Work is claimed with `FOR UPDATE SKIP LOCKED`: executions
//! by row locks the claiming transaction holds until its round commits,
//! sends under leases on the database's clock; a round's commit is fenced
//! by its claim, a
//! send's price is reserved from the balance by one conditional update as
//! its outbox row commits, statistics are rows only
//! ever added. All SQL of it lives here and in its submodules, always with
//! bound parameters; a batch is a handful of statements (arrays, `unnest`),
//! never one per execution.
//!
//! One connection per store, used from one thread at a time (`RefCell`):
//! reads take `&self` in the trait, and the client needs `&mut` to run a
//! statement. Statements are prepared once per connection and kept.

use super::facts::{ContactEvent, ContactRecord, SentMessage};
use super::store::*;
use crate::compile::program::FieldDef;
use ::postgres::{NoTls, Row};
use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, HashMap, HashSet};

mod audience;
mod claim;
mod conn;
mod round;
mod schema;
mod segment;

use conn::Conn;

pub struct PgStore {
    conn: RefCell<Conn>,
    /// Executions this store enrolled, and how many there were when it
    /// last had their statistics taken (`after_enrolling`).
    enrolled: Cell<(u64, u64)>,
}

/// Where a connection goes, for messages: never the password.
fn describe(config: &::postgres::Config) -> String {
    use ::postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().map_or(String::new(), |p| format!(":{p}"));
    let db = config.get_dbname().map_or(String::new(), |d| format!("/{d}"));
    let user = config.get_user().map_or(String::new(), |u| format!("{u}@"));
    format!("{user}{}{port}{db}", hosts.join(","))
}

impl PgStore {
    /// `contacts_page` of the contacts `filter` selects (`segment`, whose
    /// parameters are numbered from 3), or of all without one.
    fn contacts_where(
        &self,
        after: Option<&ContactId>,
        limit: usize,
        filter: Option<&segment::Sql>,
    ) -> Result<Vec<ContactRecord>, StoreError> {
        let after = after.map_or("", ContactId::as_str);
        let limit = limit as i64;
        let sql = format!(
            "SELECT id, attrs, tags, consent, capabilities FROM contacts WHERE id > $1 AND {} ORDER BY id LIMIT $2",
            filter.map_or("TRUE", |f| f.text.as_str())
        );
        let mut params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = vec![&after, &limit];
        params.extend(filter.iter().flat_map(|f| f.refs()));
        let rows = self.conn()?.query(&sql, &params)?;
        rows.iter().map(contact_row).collect()
    }

    /// Connects to `url` (`postgres://user@host[:port]/database`, no TLS)
    /// and brings its schema up to date; refuses a newer one.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut conn = Self::client(url)?;
        schema::migrate(&mut conn)?;
        Ok(PgStore { conn: RefCell::new(conn), enrolled: Cell::new((0, 0)) })
    }

    /// For a command that only reads: connects to a database that already
    /// holds flowc's tables (`StoreError::Missing` when it does not), and
    /// creates or migrates nothing. An older schema is read as it is (each
    /// migration so far leaves what readers read as it was); the next
    /// writer migrates it.
    pub fn connect_existing(url: &str) -> Result<PgStore, StoreError> {
        let mut conn = Self::client(url)?;
        schema::check(&mut conn)?;
        Ok(PgStore { conn: RefCell::new(conn), enrolled: Cell::new((0, 0)) })
    }

    fn client(url: &str) -> Result<Conn, StoreError> {
        let mut config: ::postgres::Config = url.parse().map_err(|e| {
            StoreError::Other(format!("not a PostgreSQL URL ({e}); expected postgres://user@host[:port]/database"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("flowc");
        }
        let client = config.connect(NoTls).map_err(|e| {
            StoreError::Other(format!("cannot connect to PostgreSQL at {}: {}", describe(&config), conn::why(&e)))
        })?;
        Ok(Conn::new(client, config))
    }

    /// The schema version this flowc writes.
    pub fn schema_version() -> i64 {
        schema::MIGRATIONS.len() as i64
    }

    fn conn(&self) -> Result<RefMut<'_, Conn>, StoreError> {
        self.conn
            .try_borrow_mut()
            .map_err(|_| StoreError::Other("the store was used again from inside one of its own callbacks".into()))
    }
}

/// A stored value that does not read as what it must be.
fn corrupt(table: &'static str, key: &str, value: &str) -> StoreError {
    StoreError::CorruptRow { table, key: key.to_string(), value: value.to_string() }
}

fn entry_of(n: i32, table: &'static str, key: &str) -> Result<Entry, StoreError> {
    u32::try_from(n).ok().filter(|n| *n >= 1).map(Entry).ok_or_else(|| corrupt(table, key, &n.to_string()))
}

fn campaign_state(s: &str, table: &'static str, key: &str) -> Result<CampaignState, StoreError> {
    CampaignState::parse(s).ok_or_else(|| corrupt(table, key, s))
}

/// A campaigns row selected as `name, version, program, state`.
fn campaign_row(r: &Row) -> Result<CampaignRow, StoreError> {
    let name: String = r.get(0);
    let state: String = r.get(3);
    let state = campaign_state(&state, "campaigns", &name)?;
    Ok(CampaignRow { name, version: r.get(1), program: r.get(2), state })
}

/// A contacts row selected as `id, attrs, tags, consent, capabilities`.
fn contact_row(r: &Row) -> Result<ContactRecord, StoreError> {
    let id: String = r.get(0);
    let attrs: serde_json::Value = r.get(1);
    let serde_json::Value::Object(attrs) = attrs else {
        return Err(corrupt("contacts", &id, &attrs.to_string()));
    };
    Ok(ContactRecord { attrs, tags: r.get(2), consent: r.get(3), capabilities: r.get(4), id: ContactId(id) })
}

/// An outbox row selected as `campaign, contact_id, version, step, channel,
/// message, template, price_micros, created_at, entry` (first, in that order);
/// its key derived from its primary key, as SQLite's generated column is.
fn outbox_row(r: &Row) -> Result<OutboxNew, StoreError> {
    let campaign: String = r.get(0);
    let contact = ContactId(r.get(1));
    let version: String = r.get(2);
    let step = StepId(r.get(3));
    let entry = entry_of(r.get(9), "outbox", contact.as_str())?;
    Ok(OutboxNew {
        key: execution_key(&campaign, &version, &contact, entry, &step),
        contact,
        entry,
        version,
        step,
        channel: r.get(4),
        message: r.get(5),
        template: r.get(6),
        price_micros: r.get(7),
        created_at: r.get(8),
    })
}

const OUTBOX_COLUMNS: &str =
    "campaign, contact_id, version, step, channel, message, template, price_micros, created_at, entry";

/// The breaker's recent outcomes as stored: `1` a success, `0` a failure.
fn breaker_of(campaign: &str, consecutive: i64, text: &str) -> Result<BreakerState, StoreError> {
    let consecutive_failures =
        u32::try_from(consecutive).map_err(|_| corrupt("breakers", campaign, &consecutive.to_string()))?;
    let recent = text
        .bytes()
        .map(|b| match b {
            b'1' => Ok(true),
            b'0' => Ok(false),
            _ => Err(corrupt("breakers", campaign, text)),
        })
        .collect::<Result<_, _>>()?;
    Ok(BreakerState { consecutive_failures, recent })
}

fn breaker_text(b: &BreakerState) -> String {
    b.recent.iter().map(|ok| if *ok { '1' } else { '0' }).collect()
}

fn write_breaker(c: &mut Conn, campaign: &str, b: &BreakerState) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO breakers (campaign, consecutive, recent) VALUES ($1, $2, $3)
         ON CONFLICT (campaign) DO UPDATE SET consecutive = excluded.consecutive, recent = excluded.recent",
        &[&campaign, &i64::from(b.consecutive_failures), &breaker_text(b)],
    )
    .map(|_| ())
}

fn ids<'a>(contacts: &[&'a ContactId]) -> Vec<&'a str> {
    contacts.iter().map(|c| c.as_str()).collect()
}

/// Adds `amount` to the balance and the ledger in one transaction; a debit
/// only when the balance covers it (`Covered::Required`).
fn move_balance(c: &mut Conn, amount: i64, covered: Covered) -> Result<(), StoreError> {
    let n = match covered {
        Covered::Required if amount < 0 => c.execute(
            "UPDATE account SET balance_micros = balance_micros + $1 WHERE id = 1 AND balance_micros + $1 >= 0",
            &[&amount],
        )?,
        _ => c.execute("UPDATE account SET balance_micros = balance_micros + $1 WHERE id = 1", &[&amount])?,
    };
    if n == 0 {
        return Err(StoreError::InsufficientBalance);
    }
    Ok(())
}

/// Whether a debit must be covered by the balance (a round's sends) or may
/// take it below zero (an operator's correction through `ledger_add`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Covered {
    Required,
    NotRequired,
}

/// The longest window a frequency cap may have, in minutes (365 days).
const LONGEST_CAP_WINDOW: i64 = 365 * 24 * 60;

/// How many contacts one page of streaming holds.
const PAGE: usize = 5_000;

/// How many contacts one statement of store-side enrollment takes.
const ENROLL_CHUNK: i64 = 100_000;

/// Below this many new executions the statistics are left to autovacuum.
const ANALYZE_AFTER: u64 = 1_000;

impl PgStore {
    /// Takes the executions' statistics again after a bulk enrollment, and
    /// then each time the executions this store enrolled have doubled. A
    /// campaign's executions are written in one burst; until autovacuum
    /// catches up the planner believes the campaign has a few hundred, and
    /// joined a round's 2,000 keys against them row by row: a worker's
    /// commit took 2 s instead of 30 ms (auto_explain: "Rows Removed by Join
    /// Filter: 3998000"). Statistics within a factor of two are enough for
    /// the planner to look rows up by key.
    fn after_enrolling(&self, n: u64, end: EnrollEnd) -> Result<(), StoreError> {
        let (total, analysed) = self.enrolled.get();
        let total = total + n;
        let due = total >= ANALYZE_AFTER
            && match end {
                EnrollEnd::Whole => total > analysed,
                EnrollEnd::Page => total >= 2 * analysed.max(ANALYZE_AFTER / 2),
            };
        if due {
            self.conn()?.batch("ANALYZE executions")?;
            self.enrolled.set((total, total));
        } else {
            self.enrolled.set((total, analysed));
        }
        Ok(())
    }
}

/// Whether an enrollment was the whole audience or one page of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EnrollEnd {
    Whole,
    Page,
}

impl Store for PgStore {
    fn put_campaign(&mut self, campaign: &CampaignVersion<'_>, now: i64) -> Result<(), StoreError> {
        let CampaignVersion { name, version, program, state } = *campaign;
        self.conn()?.tx(|c| {
            c.execute(
                "INSERT INTO campaigns (name, version, program, state, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, program = excluded.program, updated_at = excluded.updated_at",
                &[&name, &version, &program, &state.as_str(), &now],
            )?;
            c.execute(
                "INSERT INTO campaign_versions (name, version, program) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&name, &version, &program],
            )?;
            Ok(())
        })
    }

    fn campaign(&self, name: &str) -> Result<Option<CampaignRow>, StoreError> {
        let row =
            self.conn()?.query_opt("SELECT name, version, program, state FROM campaigns WHERE name = $1", &[&name])?;
        row.as_ref().map(campaign_row).transpose()
    }

    fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let rows = self.conn()?.query("SELECT name, version, program, state FROM campaigns ORDER BY name", &[])?;
        rows.iter().map(campaign_row).collect()
    }

    fn program_version(&self, campaign: &str, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT program FROM campaign_versions WHERE name = $1 AND version = $2",
            &[&campaign, &version],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_state(
        &mut self,
        name: &str,
        from: CampaignState,
        to: CampaignState,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn()?.tx(|c| {
            // The row lock orders concurrent changes: the second sees the first's state.
            let current = c.query_opt("SELECT state FROM campaigns WHERE name = $1 FOR UPDATE", &[&name])?;
            if current.map(|r| r.get::<_, String>(0)).as_deref() != Some(from.as_str()) {
                return Err(StoreError::StateChanged { campaign: name.to_string(), expected: from.to_string() });
            }
            c.execute(
                "UPDATE campaigns SET state = $1, updated_at = $2 WHERE name = $3",
                &[&to.as_str(), &now, &name],
            )?;
            c.execute(
                "INSERT INTO campaign_transitions (name, at, from_state, to_state, why) VALUES ($1, $2, $3, $4, $5)",
                &[&name, &now, &from.as_str(), &to.as_str(), &why],
            )?;
            Ok(())
        })
    }

    fn transitions(&self, name: &str, limit: usize) -> Result<Vec<Transition>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT at, from_state, to_state, why FROM campaign_transitions WHERE name = $1 ORDER BY id DESC LIMIT $2",
            &[&name, &(limit as i64)],
        )?;
        let mut v = rows
            .iter()
            .map(|r| {
                Ok(Transition {
                    at: r.get(0),
                    from: campaign_state(r.get(1), "campaign_transitions", name)?,
                    to: campaign_state(r.get(2), "campaign_transitions", name)?,
                    reason: r.get(3),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        v.reverse();
        Ok(v)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn()?.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?.map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map(|_| ())
    }

    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM meta WHERE key = $1", &[&key]).map(|_| ())
    }

    fn balance(&self) -> Result<i64, StoreError> {
        Ok(self.conn()?.query_one("SELECT balance_micros FROM account WHERE id = 1", &[])?.get(0))
    }

    fn ledger_add(&mut self, amount_micros: i64, reason: &str, now: i64) -> Result<(), StoreError> {
        self.conn()?.tx(|c| {
            c.execute(
                "INSERT INTO ledger (at, amount_micros, reason) VALUES ($1, $2, $3)",
                &[&now, &amount_micros, &reason],
            )?;
            move_balance(c, amount_micros, Covered::NotRequired)
        })
    }

    fn upsert_contacts(&mut self, contacts: &[ContactRecord], events: &[EventOf]) -> Result<(), StoreError> {
        // The last record of an id wins, as one upsert after another would;
        // one statement may not touch a row twice.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(contacts.len());
        for (i, k) in contacts.iter().enumerate() {
            last.insert(k.id.as_str(), i);
        }
        let rows: Vec<serde_json::Value> = contacts
            .iter()
            .enumerate()
            .filter(|(i, k)| last.get(k.id.as_str()) == Some(i))
            .map(|(_, k)| {
                serde_json::json!({
                    "id": k.id.as_str(), "attrs": k.attrs, "tags": k.tags,
                    "consent": k.consent, "capabilities": k.capabilities,
                })
            })
            .collect();
        let events: Vec<serde_json::Value> = events
            .iter()
            .map(|of| {
                let EventOf { contact, event: ev } = of;
                serde_json::json!({
                    "contact_id": contact.as_str(), "name": ev.name, "at": ev.at, "props": ev.props,
                    "key": super::sqlite::stored_event_key(of),
                })
            })
            .collect();
        self.conn()?.tx(|c| {
            if !rows.is_empty() {
                c.execute(
                    "INSERT INTO contacts (id, attrs, tags, consent, capabilities)
                     SELECT id, attrs, tags, consent, capabilities
                     FROM jsonb_to_recordset($1::jsonb) AS r(id TEXT, attrs JSONB, tags TEXT[], consent TEXT[], capabilities TEXT[])
                     ON CONFLICT (id) DO UPDATE SET attrs = excluded.attrs, tags = excluded.tags,
                       consent = excluded.consent, capabilities = excluded.capabilities",
                    &[&serde_json::Value::Array(rows)],
                )?;
            }
            if !events.is_empty() {
                // An event already stored (same key) is not stored again.
                c.execute(
                    "INSERT INTO contact_events (contact_id, name, at, props, key)
                     SELECT contact_id, name, at, props, key
                     FROM jsonb_to_recordset($1::jsonb) AS r(contact_id TEXT, name TEXT, at BIGINT, props JSONB, key TEXT)
                     ON CONFLICT (key) DO NOTHING",
                    &[&serde_json::Value::Array(events)],
                )?;
            }
            Ok(())
        })
    }

    fn contact_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn()?.query_one("SELECT COUNT(*) FROM contacts", &[])?.get::<_, i64>(0) as u64)
    }

    fn for_each_contact(&self, f: &mut dyn FnMut(ContactRecord)) -> Result<(), StoreError> {
        // Page by page, so `f` never runs while the connection is busy.
        let mut after: Option<ContactId> = None;
        loop {
            let page = self.contacts_page(after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some(last.id.clone());
            page.into_iter().for_each(&mut *f);
        }
    }

    fn contact(&self, id: &ContactId) -> Result<Option<ContactRecord>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT id, attrs, tags, consent, capabilities FROM contacts WHERE id = $1", &[&id.as_str()])?;
        row.as_ref().map(contact_row).transpose()
    }

    fn contact_exists(&self, id: &ContactId) -> Result<bool, StoreError> {
        Ok(self.conn()?.query_opt("SELECT 1 FROM contacts WHERE id = $1", &[&id.as_str()])?.is_some())
    }

    fn contacts_page(&self, after: Option<&ContactId>, limit: usize) -> Result<Vec<ContactRecord>, StoreError> {
        self.contacts_where(after, limit, None)
    }

    fn ensure_initial_balance(&mut self, micros: i64, now: i64) -> Result<(), StoreError> {
        self.conn()?.tx(|c| {
            // The marker's insert serialises concurrent workers: one credits.
            let first = c.execute(
                "INSERT INTO meta (key, value) VALUES ('balance_initialised', '1') ON CONFLICT (key) DO NOTHING",
                &[],
            )?;
            if first == 0 {
                return Ok(());
            }
            // A database where money was already added has a balance of its own.
            let used: bool = c.query_one("SELECT EXISTS (SELECT 1 FROM ledger)", &[])?.get(0);
            if !used {
                c.execute(
                    "INSERT INTO ledger (at, amount_micros, reason) VALUES ($1, $2, 'initial balance')",
                    &[&now, &micros],
                )?;
                move_balance(c, micros, Covered::NotRequired)?;
            }
            Ok(())
        })
    }

    fn events_for(&self, contacts: &[&ContactId]) -> Result<Vec<EventOf>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query(
            "SELECT contact_id, name, at, props FROM contact_events WHERE contact_id = ANY ($1)
             ORDER BY contact_id, name, at, id",
            &[&ids(contacts)],
        )?;
        rows.iter()
            .map(|r| {
                let contact: String = r.get(0);
                let props: serde_json::Value = r.get(3);
                let serde_json::Value::Object(props) = props else {
                    return Err(corrupt("contact_events", &contact, &props.to_string()));
                };
                Ok(EventOf { contact: ContactId(contact), event: ContactEvent { name: r.get(1), at: r.get(2), props } })
            })
            .collect()
    }

    fn sent_for(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<SentOf>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query(
            "SELECT contact_id, step, channel, sent_at, delivered_at, opened_at, clicked_at, entry FROM outbox
             WHERE campaign = $1 AND status = 'sent' AND contact_id = ANY ($2)
             ORDER BY contact_id, entry, step, version",
            &[&campaign, &ids(contacts)],
        )?;
        rows.iter()
            .map(|r| {
                let contact: String = r.get(0);
                let entry = entry_of(r.get(7), "outbox", &contact)?;
                Ok(SentOf {
                    contact: ContactId(contact),
                    entry,
                    message: SentMessage {
                        step: r.get(1),
                        channel: r.get(2),
                        sent_at: r.get::<_, Option<i64>>(3).unwrap_or(0),
                        delivered_at: r.get(4),
                        opened_at: r.get(5),
                        clicked_at: r.get(6),
                    },
                })
            })
            .collect()
    }

    fn sends_since(&self, contacts: &[&ContactId], since: i64) -> Result<Vec<RecordedSend>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query(
            "SELECT contact_id, channel, message, sent_at FROM outbox
             WHERE status = 'sent' AND sent_at >= $1 AND contact_id = ANY ($2)
             ORDER BY campaign, contact_id, entry, step, version",
            &[&since, &ids(contacts)],
        )?;
        Ok(rows
            .iter()
            .map(|r| RecordedSend {
                contact: ContactId(r.get(0)),
                channel: r.get(1),
                message: r.get(2),
                sent_at: r.get(3),
            })
            .collect())
    }

    fn admit_capped(
        &mut self,
        caps: &[crate::compile::program::FrequencyCap],
        sends: &[CapSend<'_>],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if sends.is_empty() {
            return Ok(Vec::new());
        }
        self.conn()?.tx(|c| {
            // Each contact's capped sends are counted under a lock of that
            // contact (a transaction-scoped advisory lock: the contact need
            // not have a row), taken in one order, so two workers admitting
            // sends to one contact count one after the other and never deadlock.
            let mut contacts: Vec<&str> = sends.iter().map(|s| s.contact.as_str()).collect();
            contacts.sort_unstable();
            contacts.dedup();
            c.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (
                   SELECT DISTINCT hashtextextended(u.c, 7) AS k FROM unnest($1::text[]) AS u(c) ORDER BY k) s",
                &[&contacts],
            )?;
            // No cap's window is longer than a year: older rows never count again.
            c.execute(
                "DELETE FROM capped_sends WHERE contact_id = ANY ($1) AND at <= $2",
                &[&contacts, &now.saturating_sub(LONGEST_CAP_WINDOW)],
            )?;
            let mut out = Vec::with_capacity(sends.len());
            for s in sends {
                let known = c
                    .query_opt(
                        "SELECT 1 FROM capped_sends WHERE contact_id = $1 AND key = $2",
                        &[&s.contact.as_str(), &s.key],
                    )?
                    .is_some();
                if known {
                    out.push(true);
                    continue;
                }
                let mut fits = true;
                for cap in caps.iter().filter(|cap| cap.channel.as_deref().is_none_or(|ch| ch == s.channel)) {
                    let n: i64 = c
                        .query_one(
                            "SELECT COUNT(*) FROM capped_sends WHERE contact_id = $1 AND at > $2
                               AND ($3::text IS NULL OR channel = $3)",
                            &[&s.contact.as_str(), &now.saturating_sub(cap.window_minutes), &cap.channel],
                        )?
                        .get(0);
                    if n >= i64::from(cap.count) {
                        fits = false;
                        break;
                    }
                }
                if fits {
                    c.execute(
                        "INSERT INTO capped_sends (contact_id, at, key, channel) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&s.contact.as_str(), &now, &s.key, &s.channel],
                    )?;
                }
                out.push(fits);
            }
            Ok(out)
        })
    }

    fn reenter(
        &mut self,
        campaign: &str,
        version: &str,
        entries: &[Enrollment],
        rule: crate::compile::program::Reentry,
        now: i64,
    ) -> Result<u64, StoreError> {
        use crate::compile::program::Reentry;
        let gap = match rule {
            Reentry::Once => return self.enroll(campaign, version, entries, now),
            Reentry::Always => None,
            Reentry::After { minutes } => Some(minutes),
        };
        // Entries in order, each seeing the ones before: one statement each.
        self.conn()?.tx(|c| {
            let mut n = 0;
            for e in entries {
                n += c.execute(
                    "INSERT INTO executions (campaign, contact_id, entry, version, step, state, wake_at, started_at, updated_at)
                     SELECT $1, $2, COALESCE(MAX(entry), 0) + 1, $3, $4, 'pending', $5, $5, $6
                     FROM executions WHERE campaign = $1 AND contact_id = $2
                     HAVING $7::bigint IS NULL OR COALESCE(MAX(started_at), $5 - $7) <= $5 - $7",
                    &[&campaign, &e.contact.as_str(), &version, &e.step.0, &e.wake_at, &now, &gap],
                )?;
            }
            Ok(n)
        })
    }

    fn latest_starts(
        &self,
        campaign: &str,
        contacts: &[&ContactId],
    ) -> Result<HashMap<ContactId, Option<i64>>, StoreError> {
        if contacts.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.conn()?.query(
            "SELECT contact_id, MAX(started_at) FROM executions WHERE campaign = $1 AND contact_id = ANY ($2) GROUP BY contact_id",
            &[&campaign, &ids(contacts)],
        )?;
        Ok(rows.iter().map(|r| (ContactId(r.get(0)), r.get(1))).collect())
    }

    fn enroll(&mut self, campaign: &str, version: &str, entries: &[Enrollment], now: i64) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let contacts: Vec<&str> = entries.iter().map(|e| e.contact.as_str()).collect();
        let steps: Vec<&str> = entries.iter().map(|e| e.step.0.as_str()).collect();
        let wakes: Vec<i64> = entries.iter().map(|e| e.wake_at).collect();
        // The execution starts at its first wake-up; entry 1, at most once.
        let n = self.conn()?.execute(
            "INSERT INTO executions (campaign, contact_id, version, step, state, wake_at, started_at, updated_at)
             SELECT $1, c, $2, s, 'pending', w, w, $3 FROM unnest($4::text[], $5::text[], $6::bigint[]) AS u(c, s, w)
             ON CONFLICT DO NOTHING",
            &[&campaign, &version, &now, &contacts, &steps, &wakes],
        )?;
        self.after_enrolling(n, EnrollEnd::Page)?;
        Ok(n)
    }

    fn enroll_audience(
        &mut self,
        program: &crate::compile::program::Program,
        step: &StepId,
        wake: i64,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        // An audience this store cannot say in SQL (`segment`: times,
        // events) is enrolled page by page with the engine's evaluator.
        let filter = match &program.audience {
            None => None,
            Some(a) => match segment::condition(program, a, 8) {
                Some(sql) => Some(sql),
                None => return Ok(None),
            },
        };
        let (campaign, version) = (program.campaign.as_str(), program.version.0.as_str());
        let plain = format!(
            "INSERT INTO executions (campaign, contact_id, version, step, state, wake_at, started_at, updated_at)
             SELECT $1, id, $2, $3, 'pending', $4, $4, $5 FROM contacts WHERE id > $6 AND id <= $7 AND {}",
            filter.as_ref().map_or("TRUE", |f| f.text.as_str())
        );
        let once = format!("{plain} ON CONFLICT DO NOTHING");
        let mut c = self.conn()?;
        let mut after = String::new();
        let mut enrolled = 0;
        loop {
            // Chunks in id order, each its own transaction, so no one
            // transaction holds the whole audience.
            let last: Option<String> = c
                .query_one(
                    "SELECT MAX(id) FROM (SELECT id FROM contacts WHERE id > $1 ORDER BY id LIMIT $2) chunk",
                    &[&after, &ENROLL_CHUNK],
                )?
                .get(0);
            let Some(last) = last else {
                drop(c);
                self.after_enrolling(enrolled, EnrollEnd::Whole)?;
                return Ok(Some(enrolled));
            };
            // The execution starts at its first wake-up.
            let mut params: Vec<&(dyn ::postgres::types::ToSql + Sync)> =
                vec![&campaign, &version, &step.0, &wake, &now, &after, &last];
            if let Some(f) = &filter {
                params.extend(f.refs());
            }
            // A chunk where this campaign has no execution yet (the common
            // case: a first start) is inserted without `ON CONFLICT`, a
            // third cheaper (measured); should another enroller race in
            // between, that insert fails whole and the chunk is done again
            // with it. Inside a caller's transaction a failed statement
            // would abort it, so there every chunk takes `ON CONFLICT`.
            let fresh = c.depth() == 0
                && !c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM executions WHERE campaign = $1 AND contact_id > $2 AND contact_id <= $3)",
                        &[&campaign, &after, &last],
                    )?
                    .get::<_, bool>(0);
            enrolled += match fresh {
                true => match c.execute(&plain, &params) {
                    Ok(n) => n,
                    Err(_) => c.execute(&once, &params)?,
                },
                false => c.execute(&once, &params)?,
            };
            after = last;
        }
    }

    fn audience(
        &self,
        audience: Audience<'_>,
        f: &mut dyn FnMut(DueContact) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        audience::members(self, audience, f)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.conn()?.open()
    }

    fn finish(&mut self, end: TxEnd) -> Result<(), StoreError> {
        self.conn()?.close(end)
    }

    fn auto_reload(&self) -> Result<Option<AutoReload>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT reload_threshold_micros, reload_amount_micros FROM account WHERE id = 1", &[])?;
        Ok(match row.map(|r| (r.get::<_, Option<i64>>(0), r.get::<_, Option<i64>>(1))) {
            Some((Some(threshold_micros), Some(amount_micros))) => Some(AutoReload { threshold_micros, amount_micros }),
            _ => None,
        })
    }

    fn set_auto_reload(&mut self, setting: Option<AutoReload>) -> Result<(), StoreError> {
        let (t, a) = setting.map_or((None, None), |s| (Some(s.threshold_micros), Some(s.amount_micros)));
        self.conn()?
            .execute(
                "UPDATE account SET reload_threshold_micros = $1, reload_amount_micros = $2 WHERE id = 1",
                &[&t, &a],
            )
            .map(|_| ())
    }

    fn probe_pending(&self, campaign: &str) -> Result<bool, StoreError> {
        let row = self.conn()?.query_opt("SELECT probe FROM campaigns WHERE name = $1", &[&campaign])?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    fn set_probe(&mut self, campaign: &str, probe: Probe) -> Result<(), StoreError> {
        self.conn()?
            .execute("UPDATE campaigns SET probe = $2 WHERE name = $1", &[&campaign, &(probe == Probe::Owed)])
            .map(|_| ())
    }

    fn breaker(&self, campaign: &str) -> Result<BreakerState, StoreError> {
        let row =
            self.conn()?.query_opt("SELECT consecutive, recent FROM breakers WHERE campaign = $1", &[&campaign])?;
        match row {
            Some(r) => breaker_of(campaign, r.get(0), r.get(1)),
            None => Ok(BreakerState::default()),
        }
    }

    fn rate_next_free(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()?
            .query_opt("SELECT next_free_ms FROM rate_limits WHERE campaign = $1", &[&campaign])?
            .map(|r| r.get(0)))
    }

    fn set_breaker(&mut self, campaign: &str, state: &BreakerState) -> Result<(), StoreError> {
        write_breaker(&mut *self.conn()?, campaign, state)
    }

    fn claim(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        fields: &[FieldDef],
        lease: &Lease,
    ) -> Result<Vec<Due>, StoreError> {
        claim::executions(&mut *self.conn()?, campaign, now, limit, fields, lease)
    }

    fn next_wake(&self, campaign: &str) -> Result<Option<i64>, StoreError> {
        let r = self.conn()?.query_one(
            "SELECT LEAST(
               (SELECT MIN(wake_at) FROM executions WHERE campaign = $1 AND state = 'pending'),
               (SELECT MIN(next_attempt_at) FROM outbox WHERE campaign = $1 AND status = 'pending'))",
            &[&campaign],
        )?;
        Ok(r.get(0))
    }

    fn commit(&mut self, campaign: &str, round: &Round, lease: &Lease, now: i64) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        c.tx(|c| round::commit(c, campaign, round, lease, now))?;
        c.round_committed()
    }

    fn renew_sends(
        &mut self,
        campaign: &str,
        rows: &[&OutboxNew],
        lease: &Lease,
    ) -> Result<HashSet<String>, StoreError> {
        claim::renew_sends(&mut *self.conn()?, campaign, rows, lease)
    }

    fn sends_in_flight(&self, campaign: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_one("SELECT COUNT(*) FROM outbox WHERE campaign = $1 AND status = 'pending'", &[&campaign])?
            .get(0);
        Ok(n as u64)
    }

    fn release_claim(&mut self) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        if c.held.is_some() && c.depth() == 1 {
            c.close(TxEnd::Rollback)?;
        }
        Ok(())
    }

    fn counts(&self, campaign: &str) -> Result<BTreeMap<ExecState, u64>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT state, COUNT(*) FROM executions WHERE campaign = $1 GROUP BY state", &[&campaign])?;
        let mut out: BTreeMap<ExecState, u64> = ExecState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in &rows {
            let s: String = r.get(0);
            let Some(state) = ExecState::parse(&s) else {
                let contact: String = self
                    .conn()?
                    .query_one(
                        "SELECT contact_id FROM executions WHERE campaign = $1 AND state = $2 LIMIT 1",
                        &[&campaign, &s],
                    )?
                    .get(0);
                return Err(corrupt("executions", &format!("{campaign}/{contact}"), &s));
            };
            out.insert(state, r.get::<_, i64>(1) as u64);
        }
        Ok(out)
    }

    fn step_counts(&self, campaign: &str) -> Result<BTreeMap<StepId, StepCounts>, StoreError> {
        let mut c = self.conn()?;
        let mut out: BTreeMap<StepId, StepCounts> = BTreeMap::new();
        let rows = c.query(
            "SELECT step, SUM(entered)::bigint, SUM(sent)::bigint, SUM(failed)::bigint, SUM(cost_micros)::bigint
             FROM step_stats WHERE campaign = $1 GROUP BY step",
            &[&campaign],
        )?;
        for r in &rows {
            out.insert(
                StepId(r.get(0)),
                StepCounts {
                    entered: r.get::<_, i64>(1) as u64,
                    sent: r.get::<_, i64>(2) as u64,
                    failed: r.get::<_, i64>(3) as u64,
                    cost_micros: r.get(4),
                    skipped: BTreeMap::new(),
                    held: BTreeMap::new(),
                },
            );
        }
        for (table, held) in [("step_skips", false), ("step_holds", true)] {
            let rows = c.query(
                &format!(
                    "SELECT step, reason, SUM(count)::bigint FROM {table} WHERE campaign = $1 GROUP BY step, reason"
                ),
                &[&campaign],
            )?;
            for r in &rows {
                let counts = out.entry(StepId(r.get(0))).or_default();
                let map = if held { &mut counts.held } else { &mut counts.skipped };
                map.insert(r.get(1), r.get::<_, i64>(2) as u64);
            }
        }
        Ok(out)
    }

    fn ab_counts(&self, campaign: &str) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT ab, variant, SUM(count)::bigint FROM ab_stats WHERE campaign = $1 GROUP BY ab, variant",
            &[&campaign],
        )?;
        Ok(rows.iter().map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64)).collect())
    }

    fn engagement_counts(&self, campaign: &str, by: i64) -> Result<BTreeMap<String, EngagementCounts>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT step, COUNT(*) FILTER (WHERE delivered_at <= $2), COUNT(*) FILTER (WHERE opened_at <= $2),
               COUNT(*) FILTER (WHERE clicked_at <= $2)
             FROM outbox WHERE campaign = $1 AND status = 'sent' GROUP BY step",
            &[&campaign, &by],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |i: usize| r.get::<_, i64>(i) as u64;
                (r.get(0), EngagementCounts { delivered: n(1), opened: n(2), clicked: n(3) })
            })
            .collect())
    }

    fn exit_counts(&self, campaign: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT reason, COUNT(*) FROM executions WHERE campaign = $1 AND state = 'completed' AND reason LIKE 'exit:%' GROUP BY reason",
            &[&campaign],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn starts(
        &self,
        campaign: &str,
        after: Option<(&ContactId, Entry)>,
        limit: usize,
    ) -> Result<Vec<Start>, StoreError> {
        let (after, entry) = after.map_or(("", 0), |(c, e)| (c.as_str(), e.0 as i32));
        let rows = self.conn()?.query(
            "SELECT contact_id, started_at, entry FROM executions WHERE campaign = $1 AND (contact_id, entry) > ($2, $3)
             ORDER BY contact_id, entry LIMIT $4",
            &[&campaign, &after, &entry, &(limit as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let contact: String = r.get(0);
                let entry = entry_of(r.get(2), "executions", &contact)?;
                Ok(Start { contact: ContactId(contact), started_at: r.get(1), entry })
            })
            .collect()
    }

    fn ab_assignments(&self, campaign: &str, contacts: &[&ContactId]) -> Result<Vec<AbAssignment>, StoreError> {
        if contacts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query(
            "SELECT contact_id, ab, variant, entry FROM ab_assignments WHERE campaign = $1 AND contact_id = ANY ($2)
             ORDER BY contact_id, entry, ab",
            &[&campaign, &ids(contacts)],
        )?;
        rows.iter()
            .map(|r| {
                let contact: String = r.get(0);
                let entry = entry_of(r.get(3), "ab_assignments", &contact)?;
                Ok(AbAssignment { contact: ContactId(contact), ab: r.get(1), variant: r.get(2), entry })
            })
            .collect()
    }

    fn outbox_pending(&mut self, campaign: &str, lease: &Lease) -> Result<Vec<OutboxNew>, StoreError> {
        claim::outbox_pending(&mut *self.conn()?, campaign, lease)
    }

    fn outbox_due(
        &mut self,
        campaign: &str,
        now: i64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(OutboxNew, u32)>, StoreError> {
        claim::outbox_due(&mut *self.conn()?, campaign, now, limit, lease)
    }

    fn waiting_at(&self, campaign: &str, version: &str, steps: &[StepId]) -> Result<u64, StoreError> {
        let steps: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT COUNT(*) FROM executions WHERE campaign = $1 AND version = $2 AND step = ANY ($3)
                   AND state IN ('pending', 'processing')",
                &[&campaign, &version, &steps],
            )?
            .get(0);
        Ok(n as u64)
    }

    fn migrate_executions(&mut self, migration: &Migration<'_>, now: i64) -> Result<(u64, u64), StoreError> {
        let Migration { campaign, from, to, kept } = *migration;
        let kept: Vec<&str> = kept.iter().map(|s| s.0.as_str()).collect();
        self.conn()?.tx(|c| {
            let moved = c.execute(
                "UPDATE executions SET version = $3, updated_at = $4 WHERE campaign = $1 AND version = $2
                   AND state IN ('pending', 'processing') AND step = ANY ($5)",
                &[&campaign, &from, &to, &now, &kept],
            )?;
            let skipped = c.execute(
                "UPDATE executions SET state = 'skipped', reason = 'step-removed', updated_at = $3
                 WHERE campaign = $1 AND version = $2 AND state IN ('pending', 'processing')",
                &[&campaign, &from, &now],
            )?;
            Ok((moved, skipped))
        })
    }

    fn requeue_processing(&mut self, campaign: &str, lease: &Lease) -> Result<u64, StoreError> {
        claim::requeue(&mut *self.conn()?, campaign, lease)
    }

    fn advance_clock(&mut self, from: i64, to: i64) -> Result<bool, StoreError> {
        claim::advance_clock(&mut *self.conn()?, from, to)
    }

    fn wake(&mut self, campaign: &str, contact: &ContactId, steps: Steps<'_>, at: i64) -> Result<u64, StoreError> {
        let steps: Option<Vec<&str>> = match steps {
            Steps::Any => None,
            Steps::Only([]) => return Ok(0),
            Steps::Only(list) => Some(list.iter().map(|s| s.0.as_str()).collect()),
        };
        // One range of the primary key: the contact's executions of the campaign.
        self.conn()?.execute(
            "UPDATE executions SET wake_at = $3 WHERE campaign = $1 AND contact_id = $2 AND state = 'pending'
               AND wake_at > $3 AND ($4::text[] IS NULL OR step = ANY ($4))",
            &[&campaign, &contact.as_str(), &at, &steps],
        )
    }

    fn exit(&mut self, campaign: &str, contact: &ContactId, reason: &str, at: i64) -> Result<u64, StoreError> {
        self.conn()?.execute(
            "UPDATE executions SET state = 'completed', reason = $3, wake_at = NULL, wait_since = NULL, updated_at = $4
             WHERE campaign = $1 AND contact_id = $2 AND state = 'pending' AND (started_at IS NULL OR started_at <= $4)",
            &[&campaign, &contact.as_str(), &reason, &at],
        )
    }

    fn enrolled(&self, campaign: &str, contacts: &[&ContactId]) -> Result<HashSet<ContactId>, StoreError> {
        if contacts.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = self.conn()?.query(
            "SELECT DISTINCT contact_id FROM executions WHERE campaign = $1 AND contact_id = ANY ($2)",
            &[&campaign, &ids(contacts)],
        )?;
        Ok(rows.iter().map(|r| ContactId(r.get(0))).collect())
    }
}
