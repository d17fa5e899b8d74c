//! The handlers' store on a thread of its own. Every handler's store work
//! runs there, one job at a time, never on the async runtime's threads.
//! Jobs that may share a transaction (API triggers) and queue up while the
//! thread is busy are written together in one transaction: group commit.
//! Each is answered after that commit, so a success always means committed,
//! and a failed commit fails every job of its group.

use crate::runtime::store::{Store, TxEnd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio::sync::{mpsc, oneshot};

/// Most jobs written in one transaction.
pub const MAX_GROUP: usize = 256;

/// Jobs waiting for the thread; past it, a handler waits (asynchronously)
/// for room.
const QUEUE: usize = 4096;

/// The sending end; the thread ends when it is dropped, after the jobs
/// already queued.
pub struct StoreThread {
    jobs: mpsc::Sender<Job>,
}

/// Why a job of a group was not done.
#[derive(Debug)]
pub enum Refusal<E> {
    /// Refused before writing anything: the rest of its group goes on.
    Refused(E),
    /// Failed, perhaps after writing: the group is rolled back, and
    /// written again without it.
    Failed(E),
}

/// What the caller of a grouped job gets when it was not done.
#[derive(Debug)]
pub enum NotDone<E> {
    /// Its own refusal or failure.
    Own(E),
    /// The group's transaction could not be opened or committed: nothing of
    /// the job was written.
    Commit(String),
    /// The store thread is gone (stopped, or a job panicked on it).
    Gone,
}

/// The store thread is gone.
#[derive(Debug)]
pub struct Gone;

/// Work on the store that answers its caller itself.
type Work = Box<dyn FnOnce(&mut dyn Store) + Send>;

enum Job {
    /// Runs alone, outside any group's transaction.
    Alone(Work),
    Grouped(Box<dyn Member>),
}

/// A job of a group, with its answer held until the group's commit.
trait Member: Send {
    /// Runs the job inside the group's transaction (again, when another
    /// member failed the first time).
    fn run(&mut self, store: &mut dyn Store) -> Ran;
    /// Sends the answer: what `run` gave, if the group is `Committed`.
    fn answer(self: Box<Self>, end: End);
}

enum Ran {
    Done,
    Refused,
    Failed,
}

enum End {
    Committed,
    /// Not committed, for this reason (a member's own failure ignores it).
    Failed(String),
}

struct Pending<T, E, F> {
    work: F,
    result: Option<Result<T, Refusal<E>>>,
    reply: oneshot::Sender<Result<T, NotDone<E>>>,
}

impl<T, E, F> Member for Pending<T, E, F>
where
    T: Send,
    E: Send,
    F: FnMut(&mut dyn Store) -> Result<T, Refusal<E>> + Send,
{
    fn run(&mut self, store: &mut dyn Store) -> Ran {
        let result = (self.work)(store);
        let ran = match &result {
            Ok(_) => Ran::Done,
            Err(Refusal::Refused(_)) => Ran::Refused,
            Err(Refusal::Failed(_)) => Ran::Failed,
        };
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, end: End) {
        let answer = match (self.result, end) {
            (Some(Err(Refusal::Refused(e) | Refusal::Failed(e))), _) => Err(NotDone::Own(e)),
            (Some(Ok(v)), End::Committed) => Ok(v),
            (_, End::Failed(why)) => Err(NotDone::Commit(why)),
            (None, End::Committed) => Err(NotDone::Commit("the job was not run".into())),
        };
        // A caller that went away (its connection closed) needs no answer.
        let _ = self.reply.send(answer);
    }
}

impl StoreThread {
    /// Starts the thread that owns `store`.
    pub fn start(store: Box<dyn Store + Send>) -> std::io::Result<StoreThread> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new().name("flowc-store".into()).spawn(move || serve(store, queue))?;
        Ok(StoreThread { jobs })
    }

    /// Jobs waiting for the thread (not counting the one it runs).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Runs `f` on the store alone, outside any group: reads, and writes
    /// that make their own transaction.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Gone>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Alone(Box::new(move |s: &mut dyn Store| {
            let _ = reply.send(f(s));
        }));
        self.jobs.send(job).await.map_err(|_| Gone)?;
        answer.await.map_err(|_| Gone)
    }

    /// Runs `f` inside a group's transaction and answers after the group
    /// committed. `f` may run more than once (when another job of its group
    /// failed), each time in a fresh transaction; it reports a refusal
    /// before writing as `Refused`, anything later as `Failed`.
    pub async fn grouped<T, E, F>(&self, f: F) -> Result<T, NotDone<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnMut(&mut dyn Store) -> Result<T, Refusal<E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Grouped(Box::new(Pending { work: f, result: None, reply }));
        self.jobs.send(job).await.map_err(|_| NotDone::Gone)?;
        answer.await.unwrap_or(Err(NotDone::Gone))
    }
}

/// The thread: one job at a time; a grouped job takes the grouped jobs
/// queued behind it (up to `MAX_GROUP`) into its transaction. There is no
/// timer: a group is what queued while the one before was written, so an
/// idle service answers at once and a busy one writes bigger groups.
fn serve(mut store: Box<dyn Store + Send>, mut queue: mpsc::Receiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let Some(job) = next.take().or_else(|| queue.blocking_recv()) else { return };
        let store = store.as_mut();
        let ran = catch_unwind(AssertUnwindSafe(|| match job {
            Job::Alone(f) => f(store),
            Job::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match queue.try_recv() {
                        Ok(Job::Grouped(m)) => group.push(m),
                        // Jobs run in the order they came: this one after the group.
                        Ok(alone) => {
                            next = Some(alone);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                write_group(store, group);
            }
        }));
        if ran.is_err() {
            // A bug in a job: its callers (their answers dropped) get an
            // error; whatever it left open is rolled back, and the thread
            // serves on.
            let _ = store.finish(TxEnd::Rollback);
        }
    }
}

/// Writes a group in one transaction and answers its members. A member that
/// fails is answered with its failure and the rest written again without it.
fn write_group(store: &mut dyn Store, mut group: Vec<Box<dyn Member>>) {
    while !group.is_empty() {
        if let Err(e) = store.begin() {
            let why = e.to_string();
            group.into_iter().for_each(|m| m.answer(End::Failed(why.clone())));
            return;
        }
        let failed = group.iter_mut().position(|m| matches!(m.run(store), Ran::Failed));
        if let Some(i) = failed {
            let _ = store.finish(TxEnd::Rollback);
            group.remove(i).answer(End::Failed("rolled back".into()));
            continue;
        }
        match store.finish(TxEnd::Commit) {
            Ok(()) => group.into_iter().for_each(|m| m.answer(End::Committed)),
            Err(e) => {
                // A commit that failed leaves the transaction open.
                let _ = store.finish(TxEnd::Rollback);
                let why = e.to_string();
                group.into_iter().for_each(|m| m.answer(End::Failed(why.clone())));
            }
        }
        return;
    }
}
