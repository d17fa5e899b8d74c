//! `flowc serve`: the REST API on tokio (axum) with the interpreter running
//! in the same process.
//!
//! Handlers only validate, read and enroll; the runner thread steps the
//! executions of every RUNNING campaign on the clock. Both reach SQLite
//! through their own `SqliteStore` (WAL lets them read and write side by side).

mod api;
mod openapi;
pub mod runner;
pub mod webhook;

use crate::runtime::sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub use api::router;

/// Largest request body accepted (413 past it).
pub const MAX_BODY: usize = 256 * 1024;
/// Most contacts one trigger request may enroll.
pub const MAX_TRIGGER_CONTACTS: usize = 10_000;

pub struct ServiceConfig {
    pub db: PathBuf,
    pub token: String,
    pub runner: runner::RunnerConfig,
}

/// What the handlers share.
pub struct AppState {
    pub store: Mutex<SqliteStore>,
    pub token: String,
    pub clock: runner::SharedClock,
    pub stop: Arc<AtomicBool>,
}

/// Compares tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}
