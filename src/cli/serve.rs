//! `flowc serve`: the REST API with the interpreter in the same process.

use super::run::open_store;
use super::{Fatal, Outcome};
use flowc::runtime::provider::{Provider, SimConfig, Simulated};
use flowc::runtime::sqlite::OpenMode;
use flowc::service::{self, runner, webhook, AppState};
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
    /// Deliver through a webhook at this URL instead of the simulated provider.
    #[arg(long)]
    webhook: Option<String>,
    /// How long one webhook request may take, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    webhook_timeout_ms: u64,
    /// Seed of the simulated provider.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClockArg {
    Real,
    Virtual,
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
    let clock = match a.clock {
        ClockArg::Real => runner::SharedClock::real(),
        ClockArg::Virtual => {
            let start = match &a.start {
                Some(s) => flowc::runtime::facts::parse_datetime(s)
                    .ok_or_else(|| Fatal(format!("--start: `{s}` is not a datetime")))?,
                None => flowc::runtime::clock::real_now(),
            };
            runner::SharedClock::virtual_at(start)
        }
    };
    let db = a.db.resolve(None)?;
    // One process, two stores: they share the writer's lock.
    let api_store = open_store(&db, OpenMode::ReadWrite)?;
    let runner_store = open_store(&db, OpenMode::ReadWrite)?;
    let provider: Box<dyn Provider + Send> = match &a.webhook {
        Some(url) => Box::new(webhook::Webhook::new(webhook::WebhookConfig {
            url: url.clone(),
            timeout: std::time::Duration::from_millis(a.webhook_timeout_ms),
        })),
        None => Box::new(
            Simulated::open(&db, SimConfig { seed: a.seed, ..SimConfig::default() })
                .map_err(|e| Fatal(e.to_string()))?,
        ),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let api_store = service::store_thread::StoreThread::start(Box::new(api_store))
        .map_err(|e| Fatal(format!("cannot start the store thread: {e}")))?;
    let state = Arc::new(AppState { store: api_store, token, clock: clock.clone(), stop: stop.clone() });
    let runner_thread = {
        let (clock, stop) = (clock.clone(), stop.clone());
        std::thread::Builder::new()
            .name("flowc-runner".into())
            .spawn(move || runner::run(Box::new(runner_store), provider, clock, runner::RunnerConfig::default(), stop))
            .map_err(|e| Fatal(format!("cannot start the runner: {e}")))?
    };
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
    // The runner finishes its pass: every batch it started is committed.
    let _ = runner_thread.join();
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
