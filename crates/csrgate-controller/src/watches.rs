//! Health of the watches behind the caches: a watch that keeps failing, or that makes no
//! progress because it watches from a resourceVersion the API server has not reached, makes
//! `/readyz` say not ready, and the second is relisted.
//!
//! kube-runtime's watcher retries a failed watch with backoff and relists after 410 Gone, but
//! says nothing to anyone while a watch keeps failing (401 after a credential rotation, 5xx
//! from an overloaded API server), so the controller reported ready while it could not see
//! new CSRs (issue #12). Worse, a watch from a resourceVersion ahead of the API server (etcd
//! restored from a backup, a new API server on other storage) is answered by kube-apiserver
//! 1.37 with an empty stream until the timeout and no error, and the watcher resumes from the
//! same resourceVersion forever; the sandbox does the same (docs/development.md,
//! "The sandbox, held against the real server"). That one is found by comparing the newest
//! resourceVersion the cache has seen with the collection's resourceVersion as a list returns
//! it, and cured by restarting the watcher, which lists again.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Failures in a row before a watch counts as failing: one failure is routine (a 410 Gone
/// relists at once; a closed connection is retried), three span about 5 s of kube-runtime's
/// default backoff (0.8 s, 1.6 s, 3.2 s).
const FAILURES_BEFORE_NOT_READY: u32 = 3;

/// How long after its last failure a failing watch counts as recovered though no event came
/// (a recovered watch on a quiet resource yields nothing): twice the default backoff's
/// longest wait (30 s), so a watch still failing fails again within it.
const RECOVERED_AFTER: Duration = Duration::from_secs(60);

/// How often the resourceVersion of each watched collection is compared with the cache's.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);

/// One watch's health, read by `/readyz`.
pub struct WatchHealth {
    /// The resource watched, for messages (`certificatesigningrequests`).
    name: &'static str,
    state: Mutex<State>,
    /// Restarts the watcher (a fresh list) when notified.
    restart: Arc<Notify>,
}

#[derive(Default)]
struct State {
    failures_in_a_row: u32,
    last_failure: Option<Instant>,
    last_error: String,
    /// The newest resourceVersion among the objects seen since the last list began.
    newest_seen: u64,
    /// Why the watch is known not to progress, until the relist completes.
    stale: Option<String>,
}

impl WatchHealth {
    /// A healthy watch of `name`.
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            state: Mutex::new(State::default()),
            restart: Arc::new(Notify::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the state is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows one item of the watch stream.
    pub fn observe<K: Resource>(&self, item: &Result<watcher::Event<K>, watcher::Error>) {
        let mut state = self.state();
        match item {
            Err(error) => {
                state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
                state.last_failure = Some(Instant::now());
                state.last_error = error.to_string();
                if state.failures_in_a_row == FAILURES_BEFORE_NOT_READY {
                    warn!(watch = self.name, %error, "the watch keeps failing: not ready until it recovers");
                }
            }
            Ok(event) => {
                if state.failures_in_a_row >= FAILURES_BEFORE_NOT_READY {
                    info!(watch = self.name, "the watch recovered");
                }
                state.failures_in_a_row = 0;
                match event {
                    watcher::Event::Init => state.newest_seen = 0,
                    watcher::Event::InitDone => {
                        if state.stale.take().is_some() {
                            info!(watch = self.name, "relisted; the watch progresses again");
                        }
                    }
                    watcher::Event::Apply(object)
                    | watcher::Event::InitApply(object)
                    | watcher::Event::Delete(object) => {
                        if let Some(version) =
                            numeric_version(object.meta().resource_version.as_deref())
                        {
                            state.newest_seen = state.newest_seen.max(version);
                        }
                    }
                }
            }
        }
    }

    /// The newest resourceVersion the cache has seen, to hand to
    /// [`check_progress`](Self::check_progress) with the answer of a list sent after it.
    pub fn newest_seen(&self) -> u64 {
        self.state().newest_seen
    }

    /// Compares the collection's resourceVersion, as a list returns it, with `seen_before`,
    /// the newest the cache had seen when that list was sent; a server behind that means the
    /// watch waits for a future that will not come, so the watcher is restarted. Returns
    /// whether it was.
    ///
    /// Not with what the cache has seen by the time the answer arrives: under load, the
    /// watch delivers newer events while the list is in flight, and a busy but healthy
    /// server looked behind (a relist of every CSR in the middle of a burst).
    pub fn check_progress(&self, collection_version: Option<&str>, seen_before: u64) -> bool {
        let Some(server) = numeric_version(collection_version) else {
            return false;
        };
        let mut state = self.state();
        if server >= seen_before {
            return false;
        }
        let why = format!(
            "the API server is at resourceVersion {server}, behind the {seen_before} the cache \
             had seen: the watch waits for a future that will not come; relisting"
        );
        warn!(watch = self.name, "{why}");
        state.stale = Some(why);
        self.restart.notify_one();
        true
    }

    /// Why this watch cannot be relied on now, or `None`.
    pub fn problem(&self) -> Option<String> {
        let state = self.state();
        if let Some(stale) = &state.stale {
            return Some(format!("{} watch: {stale}", self.name));
        }
        let failing = state.failures_in_a_row >= FAILURES_BEFORE_NOT_READY
            && state
                .last_failure
                .is_some_and(|at| at.elapsed() < RECOVERED_AFTER);
        failing.then(|| {
            format!(
                "{} watch failing ({} errors in a row): {}",
                self.name, state.failures_in_a_row, state.last_error
            )
        })
    }

    /// The watch stream `make` returns, made again (a fresh list) whenever
    /// [`check_progress`](Self::check_progress) finds it stuck.
    pub fn restartable<S, F>(&self, mut make: F) -> impl Stream<Item = S::Item> + Send + use<S, F>
    where
        F: FnMut() -> S + Send + 'static,
        S: Stream + Send + 'static,
    {
        let restart = Arc::clone(&self.restart);
        futures::stream::repeat(()).flat_map(move |()| {
            let restart = Arc::clone(&restart);
            make().take_until(async move { restart.notified().await })
        })
    }
}

/// Every [`PROBE_INTERVAL`], lists one object of the collection (metadata only) and hands its
/// resourceVersion to [`WatchHealth::check_progress`]. A failed list is not a verdict: the
/// watch's own errors say whether the API server is reachable.
pub async fn probe<K>(api: Api<K>, health: Arc<WatchHealth>)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let seen_before = health.newest_seen();
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(list) => {
                health.check_progress(list.metadata.resource_version.as_deref(), seen_before);
            }
            Err(error) => tracing::debug!(watch = health.name, %error, "progress probe failed"),
        }
    }
}

/// A resourceVersion as a number. They are opaque by the API conventions, but every
/// kube-apiserver on etcd (and the sandbox) uses etcd's revision, which only grows; any other
/// form is never compared.
fn numeric_version(version: Option<&str>) -> Option<u64> {
    version?.parse().ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;

    fn node(version: &str) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some("n".into());
        node.metadata.resource_version = Some(version.into());
        node
    }

    fn failure() -> Result<watcher::Event<Node>, watcher::Error> {
        Err(watcher::Error::NoResourceVersion)
    }

    #[test]
    fn one_or_two_failures_are_routine_three_in_a_row_are_not_ready_until_an_event() {
        let health = WatchHealth::new("nodes");
        health.observe(&failure());
        health.observe(&failure());
        assert_eq!(health.problem(), None);
        health.observe(&failure());
        let problem = health.problem().unwrap();
        assert!(
            problem.starts_with("nodes watch failing (3 errors in a row): "),
            "{problem}"
        );
        health.observe(&Ok(watcher::Event::Apply(node("5"))));
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn a_failing_watch_quiet_for_a_while_counts_as_recovered() {
        let health = WatchHealth::new("nodes");
        for _ in 0..3 {
            health.observe(&failure());
        }
        health.state().last_failure = Some(Instant::now() - RECOVERED_AFTER);
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn issue_12_a_server_behind_the_cache_means_a_watch_from_the_future_until_relisted() {
        let health = WatchHealth::new("nodes");
        health.observe(&Ok(watcher::Event::InitApply(node("1000"))));
        health.observe(&Ok(watcher::Event::<Node>::InitDone));
        let seen = health.newest_seen();
        assert!(
            !health.check_progress(Some("1200"), seen),
            "the server is ahead: fine"
        );
        assert!(!health.check_progress(Some("1000"), seen));
        assert!(!health.check_progress(Some("not-a-number"), seen));
        assert!(health.check_progress(Some("40"), seen));
        assert!(
            health
                .problem()
                .unwrap()
                .contains("resourceVersion 40, behind the 1000")
        );
        // The relist starts over from what the server has now.
        health.observe(&Ok(watcher::Event::<Node>::Init));
        health.observe(&Ok(watcher::Event::InitApply(node("39"))));
        assert!(
            health.problem().is_some(),
            "not ready until the relist is done"
        );
        health.observe(&Ok(watcher::Event::<Node>::InitDone));
        assert_eq!(health.problem(), None);
        assert!(!health.check_progress(Some("40"), health.newest_seen()));
    }

    #[test]
    fn a_list_answered_while_the_watch_moved_on_is_not_behind() {
        let health = WatchHealth::new("certificatesigningrequests");
        health.observe(&Ok(watcher::Event::InitApply(node("1000"))));
        health.observe(&Ok(watcher::Event::<Node>::InitDone));
        let seen_before = health.newest_seen();
        // While the probe's list is in flight, the watch delivers newer events ...
        health.observe(&Ok(watcher::Event::Apply(node("1500"))));
        // ... and the list's answer, from before them, is not a server behind the cache.
        assert!(!health.check_progress(Some("1200"), seen_before));
        assert_eq!(health.problem(), None);
    }

    #[tokio::test]
    async fn a_restart_makes_the_stream_again() {
        let health = WatchHealth::new("nodes");
        let mut made = 0;
        let stream = health.restartable(move || {
            made += 1;
            // Each stream yields which one it is, then waits forever.
            futures::stream::iter([made]).chain(futures::stream::pending())
        });
        futures::pin_mut!(stream);
        assert_eq!(stream.next().await, Some(1));
        health.restart.notify_one();
        assert_eq!(stream.next().await, Some(2));
    }
}
