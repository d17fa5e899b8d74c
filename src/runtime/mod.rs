//! The runtime: durable executions of compiled programs.
//!
//! `step` and `eval` are pure (program + facts + time → outcome); `engine`
//! drives them in batches against a `store::Store` and a
//! `provider::Provider`; `run` is the `flowc run` orchestration. The runtime
//! sees SQLite only through `sqlite::SqliteStore`.

pub mod alike;
pub mod caps;
pub mod clock;
pub mod contacts;
pub mod drive;
pub mod engine;
pub mod estimate;
pub mod eval;
pub mod exits;
pub mod facts;
pub mod ingest;
pub mod jsonb;
pub mod leave;
pub mod lifecycle;
pub mod outcomes;
pub mod postgres;
pub mod provider;
pub mod quiet;
pub mod rate;
pub mod reentry;
pub mod report;
pub mod run;
pub mod set;
pub mod sqlite;
pub mod stats;
pub mod step;
pub mod store;
pub mod wait;
pub mod wake;
