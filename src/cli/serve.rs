//! `flowc serve`: the REST API with the interpreter in the same process.

use super::worker::{ClockArg, Kept, WorkerFlags};
use super::{Fatal, Outcome};
use flowc::runtime::sqlite::OpenMode;
use flowc::service::runner::Until;
use flowc::service::{self, AppState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: super::DbArg,
    /// The address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// A file holding the bearer token (else FLOWC_API_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `real`: the wall clock; `virtual`: a clock that jumps to the next due time (tests, demos).
    #[arg(long, value_enum, default_value_t = ClockArg::Real)]
    clock: ClockArg,
    /// Virtual clock start, e.g. 2026-03-29T00:00:00Z.
    #[arg(long)]
    start: Option<String>,
    /// The interpreter this server embeds: the same flags as `flowc worker`.
    #[command(flatten)]
    worker: WorkerFlags,
}

fn token(a: &ServeArgs) -> Result<String, Fatal> {
    let t = match &a.token_file {
        Some(p) => flowc::files::read_text(p)
            .map_err(|e| Fatal(format!("cannot read the token file `{}`: {e}", p.display())))?,
        None => std::env::var("FLOWC_API_TOKEN").map_err(|_| {
            Fatal("set FLOWC_API_TOKEN or pass --token-file: the API never runs without a token".into())
        })?,
    };
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(Fatal("the API token must be at least 16 characters".into()));
    }
    Ok(t)
}

pub fn run(a: ServeArgs) -> Result<Outcome, Fatal> {
    let token = token(&a)?;
    let addr: std::net::SocketAddr = a
        .listen
        .parse()
        .map_err(|_| Fatal(format!("--listen: `{}` is not an address like 127.0.0.1:8080", a.listen)))?;
    let db = a.db.resolve(None)?;
    super::worker::named_campaigns_exist(&db, &a.worker, Until::Stopped)?;
    // A virtual clock stays in this process, unless other processes share
    // the database (PostgreSQL): then it is the database's.
    let clock = super::worker::clock(&db, a.clock, a.start.as_deref(), Kept::InProcess)?;
    let api_store = db.open(OpenMode::Handlers)?;
    let stop = Arc::new(AtomicBool::new(false));
    let api_store = service::store_thread::StoreThread::start(api_store)
        .map_err(|e| Fatal(format!("cannot start the store thread: {e}")))?;
    let state = Arc::new(AppState { store: api_store, token, clock: clock.clone(), stop: stop.clone() });
    let runners = super::worker::start(&db, &a.worker, &clock, Until::Stopped, super::worker::Host::Service, &stop)?;
    let shutdown_flag = stop.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fatal(e.to_string()))?;
    let served = rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| Fatal(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| Fatal(e.to_string()))?;
        errln!("flowc serve: listening on http://{local}");
        let app = service::router(state);
        service::serve(listener, app, shutdown(shutdown_flag)).await;
        Ok::<(), Fatal>(())
    });
    // Connections still open after the grace period are dropped with the runtime.
    rt.shutdown_background();
    stop.store(true, Ordering::SeqCst);
    // The runners finish their pass: every batch they started is committed.
    for r in runners {
        let _ = r.join();
    }
    service::flush_access_log();
    served?;
    errln!("flowc serve: stopped");
    Ok(Outcome::Ok)
}

/// Ctrl-C or SIGTERM: stop accepting, let requests in flight finish (for a
/// bounded time, `service::SHUTDOWN_GRACE`).
async fn shutdown(stop: Arc<AtomicBool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    stop.store(true, Ordering::SeqCst);
}
