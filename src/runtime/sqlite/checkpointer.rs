//! Copies the write-ahead log back into the database file on a thread of
//! its own, so that a writer's commit does not.
//!
//! SQLite's default copies the log back (a checkpoint: up to a thousand
//! pages written to the database file and two `fsync`s) inside the commit
//! that grew the log past a thousand pages. Under `flowc serve` that commit
//! is a group of API triggers waiting for their answers: one group in
//! twenty waited some 20 ms for it, a third of the store thread's time. A
//! process that writes a database runs one checkpointer per file, started
//! once its first writer opened it and stopped with the last
//! (`WriterLock`).
//!
//! Its checkpoints are PASSIVE: they never wait for, or make wait, a
//! writer or a reader. A PASSIVE checkpoint cannot start the log over,
//! which a writer does at its next transaction once every page was copied
//! back; under a steady stream of commits that moment may not come, so the
//! writers keep their own checkpoint at a higher mark
//! (`WRITER_CHECKPOINT_PAGES`): by then the checkpointer has copied almost
//! everything, the writer copies the rest and the log starts over.

use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A writer's own checkpoint mark, in pages (of the log): 16 MiB at 4 KiB
/// pages, four times SQLite's default.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 4096;

/// How often the thread looks at the log while it grows. A checkpoint that
/// finds nothing new to copy reads the log's index and writes nothing.
const EVERY: Duration = Duration::from_millis(25);
/// How seldom it looks once the log stopped growing: the interval doubles
/// up to this, so an idle process does not wake forty times a second (a
/// burst meanwhile past the writers' own mark is theirs to copy).
const IDLE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `db`; `None` when no thread can be started (the
    /// writers' own checkpoints still keep the log short).
    pub(super) fn start(db: PathBuf) -> Option<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("flowc-checkpoint".into()).spawn(move || run(&db, &flag)).ok()?;
        Some(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(db: &std::path::Path, stop: &AtomicBool) {
    let mut conn: Option<Connection> = None;
    let mut every = EVERY;
    // The log's size and how much of it was copied back, at the last look.
    let mut last: Option<(i64, i64)> = None;
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(every);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Never creates the file: one removed meanwhile is left removed.
        if conn.is_none() && db.is_file() {
            conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .ok()
                // Never waits for a lock: the next look comes soon, and its
                // close (the process's last writer gone) happens under the
                // writers' registry, which must not be held for long.
                .filter(|c| c.busy_timeout(Duration::ZERO).is_ok());
        }
        let Some(c) = &conn else { continue };
        // Errors (a database not in WAL mode yet, a lock held) are the
        // writers' to report: their own checkpoint still runs.
        let now = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).ok();
        every = if now.is_some() && now == last { (every * 2).min(IDLE_EVERY) } else { EVERY };
        last = now;
    }
}
