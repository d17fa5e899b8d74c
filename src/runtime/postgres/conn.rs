//! The PostgreSQL store's connection: statements prepared once and kept,
//! transactions that nest as savepoints (`Store::begin`, `Conn::tx`), the
//! claim a transaction holds (row locks, see `claim.rs`), and the client's
//! errors as `StoreError`s. A connection the server closed is opened again
//! at the next statement outside a transaction.

use crate::runtime::store::{StoreError, TxEnd};
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement};
use std::collections::HashMap;

/// A statement's parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Executions the open transaction has claimed: it holds their row locks
/// (`FOR UPDATE`), which are the claim. They end with the transaction.
pub(super) struct Held {
    pub campaign: String,
    pub worker: String,
    pub keys: Vec<(String, i32)>,
}

/// The connection with its prepared statements and open transaction depth.
pub(super) struct Conn {
    client: Client,
    config: Config,
    statements: HashMap<String, Statement>,
    /// 0 outside a transaction; each `tx`/`begin` inside one adds a savepoint.
    depth: u32,
    /// A statement failed inside the open transaction and no savepoint has
    /// been rolled back to since: PostgreSQL refuses everything until the
    /// rollback, and a COMMIT would silently roll back, so it is refused.
    aborted: bool,
    /// The claim of the outermost transaction, if it made one.
    pub(super) held: Option<Held>,
    /// The claim's round is committed inside a savepoint: the outer
    /// transaction commits as that savepoint is released.
    owed: bool,
}

pub(super) fn classify(e: ::postgres::Error) -> StoreError {
    use ::postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
            return StoreError::Other(format!(
                "the database refused a transaction that raced another worker's ({}); try again",
                db.message()
            ));
        }
        if *code == SqlState::LOCK_NOT_AVAILABLE {
            return StoreError::Locked(db.message().to_string());
        }
        return StoreError::Other(format!("{}: {}", db.severity(), db.message()));
    }
    if e.is_closed() {
        return StoreError::Other("the connection to PostgreSQL was closed".into());
    }
    StoreError::Other(why(&e))
}

/// What went wrong, in the server's words when it gave any ("database
/// \"x\" does not exist"), else with the cause ("Connection refused"):
/// the client's own text alone says only "db error" or "error connecting
/// to server".
pub(super) fn why(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl Conn {
    pub(super) fn new(client: Client, config: Config) -> Conn {
        Conn { client, config, statements: HashMap::new(), depth: 0, aborted: false, held: None, owed: false }
    }

    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    fn failed(&mut self, e: ::postgres::Error) -> StoreError {
        use ::postgres::error::SqlState;
        let gone = e.is_closed()
            || e.code().is_some_and(|c| {
                *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
                    || *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
            });
        if gone {
            // The server ended the session, and the transaction with it.
            self.depth = 0;
            self.aborted = false;
            self.owed = false;
            if let Some(held) = self.held.take() {
                // A claim held past its lease (idle_in_transaction_session_timeout,
                // set to the lease by `claim`): its locks are gone, another
                // worker may hold the executions now; nothing of it was written.
                return StoreError::LeaseLost(held.worker);
            }
        } else if self.depth > 0 {
            self.aborted = true;
        }
        classify(e)
    }

    /// Opens the connection again when the server closed it, between transactions.
    fn live(&mut self) -> Result<(), StoreError> {
        if self.depth == 0 && self.client.is_closed() {
            self.client = self
                .config
                .connect(NoTls)
                .map_err(|e| StoreError::Other(format!("cannot connect to PostgreSQL again: {e}")))?;
            self.statements.clear();
        }
        Ok(())
    }

    /// The prepared statement for `sql`, prepared on first use.
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        self.live()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(|e| self.failed(e))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(super) fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.client.query(&s, params).map_err(|e| self.failed(e))
    }

    pub(super) fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        let s = self.statement(sql)?;
        self.client.query_one(&s, params).map_err(|e| self.failed(e))
    }

    pub(super) fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params).map_err(|e| self.failed(e))
    }

    pub(super) fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        self.client.execute(&s, params).map_err(|e| self.failed(e))
    }

    /// Statements without parameters (schema, transaction control).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.live()?;
        self.client.batch_execute(sql).map_err(|e| self.failed(e))
    }

    /// The claim's round is written (inside the claim's transaction, or a
    /// savepoint of it): the transaction commits now, or as soon as the
    /// savepoints around the round are released, which ends the claim.
    pub(super) fn round_committed(&mut self) -> Result<(), StoreError> {
        if self.held.is_none() {
            return Ok(());
        }
        if self.depth == 1 {
            self.close(TxEnd::Commit)
        } else {
            self.owed = true;
            Ok(())
        }
    }

    pub(super) fn open(&mut self) -> Result<(), StoreError> {
        if self.depth == 0 {
            self.aborted = false;
            self.batch("BEGIN")?;
        } else {
            self.batch(&format!("SAVEPOINT flowc_{}", self.depth))?;
        }
        self.depth += 1;
        Ok(())
    }

    pub(super) fn close(&mut self, end: TxEnd) -> Result<(), StoreError> {
        if self.depth == 0 {
            // Nothing open (a failed COMMIT already ended it): nothing to end.
            return match end {
                TxEnd::Commit => Err(StoreError::Other("no open transaction to commit".into())),
                TxEnd::Rollback => Ok(()),
            };
        }
        self.depth -= 1;
        let outer = self.depth == 0;
        if outer {
            self.held = None;
        }
        if end == TxEnd::Rollback {
            self.owed = false;
        }
        match (end, outer) {
            (TxEnd::Commit, true) if self.aborted => {
                self.aborted = false;
                self.owed = false;
                self.batch("ROLLBACK")?;
                Err(StoreError::Other(
                    "a statement of the transaction failed earlier; nothing of it was written".into(),
                ))
            }
            (TxEnd::Commit, true) => {
                let r = self.batch("COMMIT");
                self.aborted = false;
                self.owed = false;
                r
            }
            (TxEnd::Rollback, true) => {
                self.aborted = false;
                self.batch("ROLLBACK")
            }
            (TxEnd::Commit, false) => {
                self.batch(&format!("RELEASE SAVEPOINT flowc_{}", self.depth))?;
                if self.depth == 1 && self.owed {
                    self.owed = false;
                    return self.close(TxEnd::Commit);
                }
                Ok(())
            }
            (TxEnd::Rollback, false) => {
                let sp = format!("ROLLBACK TO SAVEPOINT flowc_{0}; RELEASE SAVEPOINT flowc_{0}", self.depth);
                // Back at the savepoint the transaction is usable again.
                let r = self.client.batch_execute(&sp).map_err(classify);
                if r.is_ok() {
                    self.aborted = false;
                }
                r
            }
        }
    }

    /// Runs `f` as one transaction (a savepoint inside an open one): all of
    /// it is written or none.
    pub(super) fn tx<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.open()?;
        match f(self) {
            Ok(v) => {
                self.close(TxEnd::Commit)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.close(TxEnd::Rollback);
                Err(e)
            }
        }
    }
}
