//! The CSR work queue: CSRs are decided first come, first served, `workers` at a time.
//!
//! kube-runtime's `Controller` (5.0) runs at most `concurrency` reconciles; when they are
//! all busy, the requests that come due meanwhile wait in its scheduler's `pending` set, a
//! `HashSet`, and each freed slot takes the first of them in hash order
//! (`Scheduler::poll_pop_queue_message`, `kube-runtime/src/scheduler.rs`). A CSR whose
//! name hashes late is passed over by every newer CSR that hashes earlier, and waits until
//! the set empties, at the end of a burst: in a burst of 10,000 CSRs on kube-apiserver,
//! most CSRs waited tens of milliseconds for their reconcile to start and the slowest 31 s
//! (BENCHMARKS.md, "The tail"). So CSRs are not run through a `Controller`: each CSR that
//! comes due (`crate::due`) goes to this queue, which keeps arrival order.
//!
//! The semantics are those of client-go's workqueue, which kube-controller-manager's own
//! CSR approver uses: a name queued twice is queued once; a name that comes due while it
//! is being decided is queued again, at the back, when that decision ends, so one CSR is
//! never decided twice at once; a retry after a failure goes to the back after its delay.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::error;

/// How long a CSR whose decision panicked waits before it is tried again.
const AFTER_PANIC: Duration = Duration::from_secs(5);

/// A first-in, first-out queue of CSR names with per-name deduplication.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    /// Woken when a name is queued or the queue is closed.
    ready: Notify,
}

#[derive(Default)]
struct State {
    /// Due names, oldest first.
    queue: VecDeque<String>,
    /// The names in `queue`.
    queued: HashSet<String>,
    /// Names a worker holds.
    active: HashSet<String>,
    /// Active names that came due again meanwhile.
    dirty: HashSet<String>,
    closed: bool,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain sets; go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `name` at the back, unless it is already queued; a name being decided is
    /// queued again when its decision ends. Nothing is queued once the queue is closed.
    pub fn add(&self, name: &str) {
        let mut state = self.lock();
        if state.closed || state.queued.contains(name) {
            return;
        }
        if state.active.contains(name) {
            state.dirty.insert(name.to_owned());
            return;
        }
        state.queued.insert(name.to_owned());
        state.queue.push_back(name.to_owned());
        drop(state);
        self.ready.notify_one();
    }

    /// Queues `name` after `delay` (a retry), on a task of its own.
    pub fn add_after(self: &Arc<Self>, name: String, delay: Duration) {
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&name);
        });
    }

    /// Waits for the oldest due name and hands it to the caller, who must call
    /// [`WorkQueue::done`] with it; `None` once the queue is closed.
    pub async fn next(&self) -> Option<String> {
        loop {
            // Registered before the state is read, so a wake-up in between is not lost.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if let Some(name) = state.queue.pop_front() {
                    state.queued.remove(&name);
                    state.active.insert(name.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Pass the wake-up on: one `notify_one` may stand for several adds.
                        self.ready.notify_one();
                    }
                    return Some(name);
                }
            }
            notified.await;
        }
    }

    /// Ends the decision of `name`; if it came due meanwhile, it is queued again.
    pub fn done(&self, name: &str) {
        let mut state = self.lock();
        state.active.remove(name);
        if state.dirty.remove(name) {
            drop(state);
            self.add(name);
        }
    }

    /// Stops handing out names: waiting workers return, queued names are dropped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
    }

    /// How many names are waiting (not those being decided).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

/// Runs `workers` workers until `queue` is closed, each taking the oldest due name and
/// running `work` on it; `work` returns the delay after which to try that name again, if
/// it failed. Returns when every worker has finished the name in hand. Dropping the
/// returned future aborts the workers.
pub async fn serve<F, Fut>(queue: Arc<WorkQueue>, workers: usize, work: F)
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Duration>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = Arc::clone(&queue);
        let work = work.clone();
        tasks.spawn(async move {
            while let Some(name) = queue.next().await {
                // A panic while deciding must neither end this worker nor leave the name
                // held as being decided (every later add would only mark it dirty): the
                // CSR is tried again after a pause, as after a failure.
                let retry = AssertUnwindSafe(work(name.clone()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        error!(csr = %name, "deciding the CSR panicked; it is tried again");
                        Some(AFTER_PANIC)
                    });
                queue.done(&name);
                if let Some(delay) = retry {
                    queue.add_after(name, delay);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take(queue: &WorkQueue) -> String {
        tokio::time::timeout(Duration::from_secs(5), queue.next())
            .await
            .expect("a name was due")
            .expect("the queue is open")
    }

    #[tokio::test]
    async fn names_are_handed_out_in_the_order_they_came_due() {
        let queue = WorkQueue::default();
        // Names whose hashes are in no particular order: the queue must not care.
        let names: Vec<String> = (0..1000)
            .map(|i| format!("csr-{}", (i * 7919) % 1000))
            .collect();
        for name in &names {
            queue.add(name);
        }
        let mut order = Vec::new();
        for _ in 0..names.len() {
            let name = take(&queue).await;
            queue.done(&name);
            order.push(name);
        }
        assert_eq!(order, names);
    }

    #[tokio::test]
    async fn a_name_queued_twice_is_handed_out_once_and_keeps_its_place() {
        let queue = WorkQueue::default();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        assert_eq!(take(&queue).await, "a");
        assert_eq!(take(&queue).await, "b");
    }

    #[tokio::test]
    async fn a_name_due_again_while_decided_is_queued_behind_the_others_when_done() {
        let queue = WorkQueue::default();
        queue.add("a");
        assert_eq!(take(&queue).await, "a");
        // Due again while a worker holds it: not handed to a second worker ...
        queue.add("a");
        queue.add("b");
        assert_eq!(take(&queue).await, "b");
        assert_eq!(queue.len(), 0);
        // ... but queued again, behind what came due meanwhile, once it is done.
        queue.add("c");
        queue.done("a");
        assert_eq!(take(&queue).await, "c");
        assert_eq!(take(&queue).await, "a");
    }

    #[tokio::test]
    async fn closing_wakes_waiting_workers_and_drops_what_is_queued() {
        let queue = Arc::new(WorkQueue::default());
        let waiting = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(waiting.await.unwrap(), None);
        queue.add("late");
        assert_eq!(queue.next().await, None);
    }

    /// Queues `names`, serves them with one worker running `work(name, first)` (`first`:
    /// whether this is the name's first decision) for `run` of paused time, then closes the
    /// queue; returns the names in the order they were decided.
    async fn served<F>(names: &[&str], run: Duration, work: F) -> Vec<String>
    where
        F: Fn(&str, bool) -> Option<Duration> + Clone + Send + Sync + 'static,
    {
        tokio::time::pause();
        let queue = Arc::new(WorkQueue::default());
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        for name in names {
            queue.add(name);
        }
        let served = tokio::spawn(serve(Arc::clone(&queue), 1, {
            let log = Arc::clone(&log);
            move |name: String| {
                let (log, work) = (Arc::clone(&log), work.clone());
                async move {
                    let first = {
                        let mut log = log.lock().unwrap();
                        log.push(name.clone());
                        log.iter().filter(|n| **n == name).count() == 1
                    };
                    work(&name, first)
                }
            }
        }));
        tokio::time::sleep(run).await;
        queue.close();
        served.await.unwrap();
        log.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn workers_decide_in_arrival_order_and_retry_failures_after_their_delay() {
        let names: Vec<String> = (0..50).map(|i| format!("csr-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // csr-3 fails once and is retried a second later.
        let log = served(&names, Duration::from_secs(2), |name, first| {
            (name == "csr-3" && first).then_some(Duration::from_secs(1))
        })
        .await;
        let mut expected: Vec<&str> = names.clone();
        expected.push("csr-3");
        assert_eq!(log, expected);
    }

    #[tokio::test]
    async fn a_panic_while_deciding_keeps_the_worker_and_tries_the_csr_again() {
        let log = served(
            &["panics-once", "after"],
            AFTER_PANIC + Duration::from_secs(1),
            |name, first| {
                assert!(!(name == "panics-once" && first), "a bug while deciding");
                None
            },
        )
        .await;
        assert_eq!(log, ["panics-once", "after", "panics-once"]);
    }
}
