//! Fault injection for tests and benchmarks: failed requests, latency, closed watches, compaction, restarts.
//!
//! The same operations are served over HTTP on the sandbox's own port, under `/_sandbox/` (no client of the
//! Kubernetes API uses that path; no authentication):
//!
//! | request | does |
//! | --- | --- |
//! | `POST /_sandbox/faults/fail` `{"method":"PUT","path_prefix":"/apis/...","status":500,"count":2}` | [`Faults::fail`] |
//! | `POST /_sandbox/faults/latency` `{"millis":200}` | [`Faults::set_latency`] |
//! | `POST /_sandbox/faults/clear` | [`Faults::clear`] |
//! | `POST /_sandbox/watches/close` | [`Faults::close_watches`] |
//! | `POST /_sandbox/compact` | [`Faults::compact`] |
//! | `POST /_sandbox/restart` | [`Faults::restart`] |
//! | `POST /_sandbox/snapshot` | [`Faults::snapshot`] |
//! | `POST /_sandbox/restore` | [`Faults::restore`] |
//! | `GET /_sandbox/writes` | [`Faults::writes`] as a JSON array |
//! | `GET /_sandbox/ca.crt` | the CA certificate (PEM) |

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::Store;

/// Fail the next `count` requests whose method and path match, with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    /// HTTP method to match (`PUT`), or `None` for any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix to match (`/apis/certificates.k8s.io/v1/certificatesigningrequests`).
    #[serde(default)]
    pub path_prefix: String,
    /// Status code to answer (a `Status` body with the matching reason).
    pub status: u16,
    /// How many matching requests fail.
    pub count: u32,
}

/// One approval-subresource write, so tests can check nothing was decided twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// CSR name.
    pub csr: String,
    /// Condition types that the write added (`Approved`, `Denied`, ...).
    pub added: Vec<String>,
    /// Every condition after the write: `{type, status, reason, message}`.
    pub conditions: Vec<serde_json::Value>,
    /// The caller's user name.
    pub user: String,
    /// The caller's `User-Agent`.
    pub user_agent: Option<String>,
    /// RFC 3339 time of the write.
    pub time: String,
    /// resourceVersion of the stored result.
    pub resource_version: String,
}

#[derive(Default)]
struct State {
    rules: Vec<FailRule>,
    latency: Duration,
    writes: Vec<WriteRecord>,
    snapshot: Option<crate::store::Snapshot>,
}

/// Handle for injecting faults into a running sandbox; the admin endpoint `/_sandbox/` does the same over HTTP.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    store: Arc<Store>,
    watches: Arc<watch::Sender<u64>>,
    connections: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            state: Arc::default(),
            store,
            watches: Arc::new(watch::channel(0).0),
            connections: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fail the next `rule.count` matching requests with `rule.status`.
    pub fn fail(&self, rule: FailRule) {
        self.lock().rules.push(rule);
    }

    /// Shorthand for [`Faults::fail`].
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, count: u32) {
        self.fail(FailRule {
            method: Some(method.to_string()),
            path_prefix: path_prefix.to_string(),
            status,
            count,
        });
    }

    /// Delay every request (admin endpoint excepted) by `latency`; zero removes the delay.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// End every open watch (cleanly, as a server-side timeout does).
    pub fn close_watches(&self) {
        self.watches.send_modify(|n| *n += 1);
    }

    /// Drop the event history: the next watch from an older resourceVersion gets 410 Gone, and open
    /// watches are closed so their clients have to resume.
    pub fn compact(&self) {
        self.store.compact();
        self.close_watches();
    }

    /// Remember every object and the resourceVersion, for [`Faults::restore`].
    pub fn snapshot(&self) {
        let snapshot = self.store.snapshot();
        self.lock().snapshot = Some(snapshot);
    }

    /// Put the objects and resourceVersion of the last [`Faults::snapshot`] back, as an etcd
    /// restored from a backup, and close open watches so their clients resume from the
    /// resourceVersion they saw, now ahead of the store. Without a snapshot, nothing happens.
    pub fn restore(&self) {
        let snapshot = self.lock().snapshot.clone();
        if let Some(snapshot) = snapshot {
            self.store.restore(&snapshot);
            self.close_watches();
        }
    }

    /// Drop every open connection (watches included); the data stays.
    pub fn restart(&self) {
        self.connections.send_modify(|n| *n += 1);
    }

    /// Remove every pending fail rule and the latency.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.latency = Duration::ZERO;
    }

    /// Every approval-subresource write so far, oldest first.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().writes.clone()
    }

    pub(crate) fn record_write(&self, record: WriteRecord) {
        self.lock().writes.push(record);
    }

    /// The status to fail this request with, consuming one count of the first matching rule; and the latency.
    pub(crate) fn check(&self, method: &str, path: &str) -> (Option<u16>, Duration) {
        let mut state = self.lock();
        let latency = state.latency;
        let hit = state.rules.iter_mut().find(|r| {
            r.count > 0
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
        });
        let status = hit.map(|r| {
            r.count -= 1;
            r.status
        });
        state.rules.retain(|r| r.count > 0);
        (status, latency)
    }

    pub(crate) fn watch_closer(&self) -> watch::Receiver<u64> {
        self.watches.subscribe()
    }

    pub(crate) fn connection_dropper(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fail_rule_is_used_up_after_count_matches() {
        let faults = Faults::new(Arc::new(Store::new(10)));
        faults.fail_next("PUT", "/apis/certificates.k8s.io", 500, 2);
        assert_eq!(faults.check("GET", "/apis/certificates.k8s.io/v1").0, None);
        assert_eq!(
            faults.check("PUT", "/apis/certificates.k8s.io/v1").0,
            Some(500)
        );
        assert_eq!(
            faults.check("put", "/apis/certificates.k8s.io/v1").0,
            Some(500)
        );
        assert_eq!(faults.check("PUT", "/apis/certificates.k8s.io/v1").0, None);
    }
}
