//! `flowc serve`: the REST API on tokio (axum) with the interpreter running
//! in the same process.
//!
//! Handlers only validate, read and enroll; the runner thread steps the
//! executions of every RUNNING campaign on the clock. Each has its own
//! store, any `Store` (`flowc serve` opens two `SqliteStore` connections:
//! WAL lets them read and write side by side). The handlers' store lives on
//! its own thread (`store_thread`), which writes concurrent API triggers in
//! one transaction.

mod api;
mod console;
mod openapi;
pub mod runner;
pub mod store_thread;
pub mod webhook;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use api::router;

/// Largest request body accepted (413 past it).
pub const MAX_BODY: usize = 256 * 1024;
/// Longest path and query accepted (414 past it).
pub const MAX_URI: usize = 8 * 1024;
/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection stays open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's body (408 past it).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// After a stop signal, how long requests in flight may take to finish
/// before the remaining connections are closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Most contacts one trigger request may enroll.
pub const MAX_TRIGGER_CONTACTS: usize = 10_000;

pub struct ServiceConfig {
    pub db: PathBuf,
    pub token: String,
    pub runner: runner::RunnerConfig,
}

/// What the handlers share.
pub struct AppState {
    /// The handlers' own connection, any `Store` (the runner has another),
    /// on a thread of its own: every handler's store work runs there.
    pub store: store_thread::StoreThread,
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

/// Serves `app` on `listener` until `stop` completes, then stops accepting,
/// lets requests in flight finish for up to `SHUTDOWN_GRACE` and closes
/// whatever is still open. Each connection has `HEADER_READ_TIMEOUT` to
/// send its headers (and to stay idle between requests), so a client that
/// sends half a request cannot hold the server.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, stop: impl std::future::Future<Output = ()>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Running out of file descriptors passes; back off instead of spinning.
                        log(format_args!("flowc serve: accept: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    // A client that goes away mid-request is its own problem, not the server's.
                    let _ = conn.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        log(format_args!(
            "flowc serve: closing the connections still open {} s after the stop signal",
            SHUTDOWN_GRACE.as_secs()
        ));
    }
}

/// One line on standard error. A closed stderr drops the line rather than
/// panicking a request (as `eprintln!` would): the service keeps serving.
fn log(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// The access log's lines not yet written.
static ACCESS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
/// Held while lines taken from `ACCESS` are written, so that a flush waits
/// for a batch another thread is writing and lines keep their order.
static ACCESS_WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// The thread that writes them (`None`: it could not be started).
static ACCESS_THREAD: std::sync::OnceLock<Option<std::thread::Thread>> = std::sync::OnceLock::new();
/// How long a line may wait to be written.
const ACCESS_EVERY: Duration = Duration::from_millis(10);
/// Past this much waiting, the request that adds a line writes them all.
const ACCESS_MOST: usize = 64 * 1024;

/// One access-log line on standard error, written within `ACCESS_EVERY`
/// by a thread of its own, many lines in one write: a write to a file or a
/// pipe for every request took a quarter of the handlers' threads' time.
/// A process killed outright loses at most those last milliseconds of
/// lines; `flowc serve` writes the rest before it says it stopped.
fn access_log(args: std::fmt::Arguments) {
    use std::io::Write;
    let thread = ACCESS_THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("flowc-log".into())
            .spawn(|| loop {
                // Asleep until a line comes, then gathers lines for a while.
                std::thread::park();
                std::thread::sleep(ACCESS_EVERY);
                flush_access_log();
            })
            .ok()
            .map(|t| t.thread().clone())
    });
    let Some(thread) = thread else {
        // Without the thread, each request writes its own line.
        return log(args);
    };
    // A poisoned buffer is still bytes of whole lines: each is added by one call.
    let mut lines = ACCESS.lock().unwrap_or_else(|p| p.into_inner());
    let first = lines.is_empty();
    let _ = writeln!(lines, "{args}");
    let full = lines.len() >= ACCESS_MOST;
    drop(lines);
    if full {
        flush_access_log();
    } else if first {
        thread.unpark();
    }
}

/// Writes the access log's waiting lines now, after any batch another
/// thread is writing (a closed stderr drops them).
pub fn flush_access_log() {
    use std::io::Write;
    let _writing = ACCESS_WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let lines = std::mem::take(&mut *ACCESS.lock().unwrap_or_else(|p| p.into_inner()));
    if !lines.is_empty() {
        let _ = std::io::stderr().lock().write_all(&lines);
    }
}
