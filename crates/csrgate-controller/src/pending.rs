//! The per-signer cap on pending CSRs (`--max-pending-per-signer`): above it, approvals of
//! that signer are held; they resume, and the held CSRs are decided again, when it falls.
//!
//! A flood of CSRs (a leaked bootstrap token, a crash-looping kubelet) should not be approved
//! at the rate it arrives (issue #13). As OpenShift's cluster-machine-approver does with its
//! `maxPending`, csrgate then stops approving, and never denies because of the cap: a
//! denial still shrinks the flood, an approval is what the flood is after. The counts
//! follow the CSR watch, so a held CSR is re-queued by the event that brings its signer back
//! under the cap, not by a resync.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::Metrics;
use crate::csr::is_terminal;
use crate::metrics::SignerLabel;

/// The pending CSRs of each signer, as the CSR watch shows them, and the approvals held.
#[derive(Clone)]
pub struct PendingCap {
    limit: Option<NonZeroUsize>,
    state: Arc<Mutex<State>>,
    resume: UnboundedSender<ObjectRef<CertificateSigningRequest>>,
    synced: watch::Sender<bool>,
    /// For `csrgate_max_pending_exceeded{signer}`, set here as holds start and end.
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    /// Pending CSRs: name → signer.
    pending: HashMap<String, String>,
    /// Pending CSRs per signer.
    counts: HashMap<String, usize>,
    /// During a relist, the pending CSRs seen so far; swapped in at its end.
    relist: Option<HashMap<String, String>>,
    /// Per signer over the cap: the CSRs whose approval is held.
    held: HashMap<String, HashSet<String>>,
}

/// A held approval: the CSR stays pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The signer's pending CSRs now.
    pub pending: usize,
    /// The cap.
    pub limit: usize,
    /// Whether this is the first hold since the signer went over the cap: say so then.
    pub first: bool,
    /// Whether this CSR was not held before.
    pub newly_held: bool,
}

impl PendingCap {
    /// A cap of `limit` pending CSRs per signer (`None`: no cap), and the stream of held CSRs
    /// to decide again when their signer falls back under it.
    pub fn new(
        limit: Option<NonZeroUsize>,
        metrics: Arc<Metrics>,
    ) -> (
        Self,
        UnboundedReceiver<ObjectRef<CertificateSigningRequest>>,
    ) {
        let (resume, resumed) = unbounded();
        let cap = Self {
            limit,
            state: Arc::default(),
            resume,
            synced: watch::Sender::new(false),
            metrics,
        };
        (cap, resumed)
    }

    /// Follows one event of the CSR watch; re-queues the held CSRs of every signer it brings
    /// back to the cap or under.
    pub fn observe(&self, event: &watcher::Event<CertificateSigningRequest>) {
        if self.limit.is_none() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(csr) => state.set(csr, !is_terminal(csr)),
            watcher::Event::Delete(csr) => state.set(csr, false),
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(csr) => {
                if !is_terminal(csr)
                    && let Some(relist) = state.relist.as_mut()
                {
                    relist.insert(csr.name_any(), csr.spec.signer_name.clone());
                }
            }
            watcher::Event::InitDone => {
                if let Some(pending) = state.relist.take() {
                    state.replace(pending);
                }
                self.synced.send_replace(true);
            }
        }
        self.resume_under_cap(&mut state);
    }

    /// Whether the approval of `csr` must be held: its signer has more pending CSRs than the
    /// cap. Waits for the first full list of CSRs, so that a count is never taken from half a
    /// list. `None` (approve) when there is no cap.
    pub async fn hold(&self, csr: &CertificateSigningRequest) -> Option<Hold> {
        let limit = self.limit?.get();
        let mut synced = self.synced.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = synced.wait_for(|synced| *synced).await;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let signer = &csr.spec.signer_name;
        let pending = state.counts.get(signer).copied().unwrap_or(0);
        if pending <= limit {
            return None;
        }
        let held = state.held.entry(signer.clone()).or_default();
        let first = held.is_empty();
        if first {
            self.metrics
                .max_pending_exceeded
                .get_or_create(&SignerLabel {
                    signer: signer.clone(),
                })
                .set(1);
        }
        let newly_held = held.insert(csr.name_any());
        Some(Hold {
            pending,
            limit,
            first,
            newly_held,
        })
    }

    /// Whether the signer is over the cap with approvals held.
    #[cfg(test)]
    pub fn is_holding(&self, signer: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.held.get(signer).is_some_and(|held| !held.is_empty())
    }

    fn resume_under_cap(&self, state: &mut State) {
        let Some(limit) = self.limit else {
            return;
        };
        let under: Vec<String> = state
            .held
            .keys()
            .filter(|signer| state.counts.get(*signer).copied().unwrap_or(0) <= limit.get())
            .cloned()
            .collect();
        for signer in under {
            let names = state.held.remove(&signer).unwrap_or_default();
            self.metrics
                .max_pending_exceeded
                .get_or_create(&SignerLabel {
                    signer: signer.clone(),
                })
                .set(0);
            tracing::info!(%signer, held = names.len(), limit = limit.get(), "pending CSRs back under the cap: deciding the held CSRs again");
            for name in names {
                // Closed only when the CSR controller has stopped; nothing left to do.
                let _ = self.resume.unbounded_send(ObjectRef::new(&name));
            }
        }
    }
}

impl State {
    fn set(&mut self, csr: &CertificateSigningRequest, pending: bool) {
        let name = csr.name_any();
        if let Some(signer) = self.pending.remove(&name) {
            self.count(&signer, false);
        }
        if pending {
            let signer = csr.spec.signer_name.clone();
            self.count(&signer, true);
            self.pending.insert(name, signer);
        }
    }

    fn replace(&mut self, pending: HashMap<String, String>) {
        self.counts.clear();
        for signer in pending.values() {
            *self.counts.entry(signer.clone()).or_default() += 1;
        }
        self.pending = pending;
    }

    fn count(&mut self, signer: &str, up: bool) {
        let count = self.counts.entry(signer.to_owned()).or_default();
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(signer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

    fn csr(name: &str, signer: &str) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.name = Some(name.to_owned());
        csr.spec.signer_name = signer.to_owned();
        csr
    }

    fn listed(cap: &PendingCap, csrs: &[CertificateSigningRequest]) {
        cap.observe(&watcher::Event::Init);
        for csr in csrs {
            cap.observe(&watcher::Event::InitApply(csr.clone()));
        }
        cap.observe(&watcher::Event::InitDone);
    }

    #[tokio::test]
    async fn issue_13_above_the_cap_approvals_are_held_and_resume_when_the_count_falls() {
        let (cap, mut resumed) = PendingCap::new(NonZeroUsize::new(2), Arc::default());
        let csrs: Vec<_> = (0..4).map(|i| csr(&format!("c{i}"), CLIENT)).collect();
        listed(&cap, &csrs);
        cap.observe(&watcher::Event::Apply(csr("other", "example.com/x")));

        let first = cap.hold(&csrs[0]).await.unwrap();
        assert_eq!(
            first,
            Hold {
                pending: 4,
                limit: 2,
                first: true,
                newly_held: true
            }
        );
        let again = cap.hold(&csrs[0]).await.unwrap();
        assert!(!again.first && !again.newly_held);
        assert!(!cap.hold(&csrs[1]).await.unwrap().first);
        assert_eq!(cap.hold(&csr("other", "example.com/x")).await, None);
        assert!(cap.is_holding(CLIENT));
        assert!(cap.metrics.encode().contains(
            r#"csrgate_max_pending_exceeded{signer="kubernetes.io/kube-apiserver-client"} 1"#
        ));

        // Two leave (one deleted, one denied by a person): 2 pending, at the cap.
        cap.observe(&watcher::Event::Delete(csrs[2].clone()));
        let mut denied = csrs[3].clone();
        denied.status = Some(
            k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus {
                conditions: Some(vec![
                    k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                        type_: "Denied".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                ]),
                certificate: None,
            },
        );
        cap.observe(&watcher::Event::Apply(denied));
        let mut names = vec![
            resumed.next().await.unwrap().name,
            resumed.next().await.unwrap().name,
        ];
        names.sort();
        assert_eq!(names, ["c0", "c1"]);
        assert!(!cap.is_holding(CLIENT));
        assert!(cap.metrics.encode().contains(
            r#"csrgate_max_pending_exceeded{signer="kubernetes.io/kube-apiserver-client"} 0"#
        ));
        assert_eq!(cap.hold(&csrs[0]).await, None);
    }

    #[tokio::test]
    async fn a_relist_replaces_the_counts_so_csrs_deleted_meanwhile_stop_counting() {
        let (cap, _resumed) = PendingCap::new(NonZeroUsize::new(1), Arc::default());
        listed(&cap, &[csr("a", CLIENT), csr("b", CLIENT)]);
        assert!(cap.hold(&csr("a", CLIENT)).await.is_some());
        // The watch expired; "b" was deleted while it was down, so no Delete came.
        listed(&cap, &[csr("a", CLIENT)]);
        assert_eq!(cap.hold(&csr("a", CLIENT)).await, None);
    }

    #[tokio::test]
    async fn without_a_cap_nothing_is_held_or_waited_for() {
        let (cap, _resumed) = PendingCap::new(None, Arc::default());
        assert_eq!(cap.hold(&csr("a", CLIENT)).await, None);
    }
}
