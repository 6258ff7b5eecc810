//! Which pending CSRs each Node requested or names, so that a change of the Node decides
//! them again.
//!
//! A kubelet serving CSR can arrive before its Node's addresses are written; a policy that
//! waits for them (a matchCondition on `node`) leaves the CSR pending, and nothing about the
//! CSR changes when the Node does. Issue #12: without this index such a CSR stayed pending
//! forever. The CSR watch keeps the index; every Node event looks its name up and re-queues
//! the CSRs found (DESIGN.md, "The decision": pending CSRs of a node are decided again when
//! its Node appears or changes). Issue #13: a CSR is also indexed under the Node its CN
//! names (`subjectNode`), so that a bootstrap request for a name decides again when a Node of
//! that name appears.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use csrgate_policy::{Engine, NodeNames};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::csr::is_terminal;

/// Pending CSRs by the name of the Node that requested them (`system:node:<name>`), and by
/// the name of the Node their CN names.
#[derive(Clone, Default)]
pub struct PendingByNode {
    csrs: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    /// Reads the CN of a request (`subjectNode`); the decisions' engine, so a request is
    /// parsed once for both.
    engine: Arc<Engine>,
}

impl PendingByNode {
    /// An empty index reading requests with `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            csrs: Arc::default(),
            engine,
        }
    }

    /// Follows one event of the CSR watch.
    pub fn observe(&self, event: &watcher::Event<CertificateSigningRequest>) {
        match event {
            watcher::Event::Apply(csr) | watcher::Event::InitApply(csr) => {
                self.set(csr, !is_terminal(csr));
            }
            watcher::Event::Delete(csr) => self.set(csr, false),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn set(&self, csr: &CertificateSigningRequest, pending: bool) {
        for node in NodeNames::of(&self.engine, csr).distinct() {
            self.set_for(node, csr, pending);
        }
    }

    fn set_for(&self, node: &str, csr: &CertificateSigningRequest, pending: bool) {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        let mut csrs = self.csrs.lock().unwrap_or_else(PoisonError::into_inner);
        if pending {
            csrs.entry(node.to_owned())
                .or_default()
                .insert(csr.name_any());
        } else if let Some(names) = csrs.get_mut(node) {
            names.remove(&csr.name_any());
            if names.is_empty() {
                csrs.remove(node);
            }
        }
    }

    /// The pending CSRs `node` requested or whose CN names it, as the CSR store holds them now. Names the store
    /// no longer holds pending (deleted while the watch was down, so no Delete event came)
    /// are dropped here.
    pub fn requested_by(
        &self,
        node: &str,
        store: &Store<CertificateSigningRequest>,
    ) -> Vec<ObjectRef<CertificateSigningRequest>> {
        let mut csrs = self.csrs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(names) = csrs.get_mut(node) else {
            return Vec::new();
        };
        names.retain(|name| {
            store
                .get(&ObjectRef::new(name))
                .is_some_and(|csr| !is_terminal(&csr))
        });
        let refs = names.iter().map(|name| ObjectRef::new(name)).collect();
        if names.is_empty() {
            csrs.remove(node);
        }
        refs
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };
    use kube::runtime::reflector;

    use super::*;

    fn csr(name: &str, username: &str) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.name = Some(name.to_owned());
        csr.spec.username = Some(username.to_owned());
        csr
    }

    fn approved(mut csr: CertificateSigningRequest) -> CertificateSigningRequest {
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            certificate: None,
        });
        csr
    }

    fn names(refs: Vec<ObjectRef<CertificateSigningRequest>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn a_node_finds_its_pending_csrs_and_only_while_they_are_pending() {
        let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        let events = [
            watcher::Event::Apply(csr("a", "system:node:n1")),
            watcher::Event::Apply(csr("b", "system:node:n1")),
            watcher::Event::Apply(csr("c", "system:node:n2")),
            watcher::Event::Apply(csr("d", "jane")),
        ];
        for event in &events {
            writer.apply_watcher_event(event);
            index.observe(event);
        }
        assert_eq!(names(index.requested_by("n1", &store)), ["a", "b"]);
        assert_eq!(names(index.requested_by("n2", &store)), ["c"]);
        assert!(index.requested_by("jane", &store).is_empty());

        for event in [
            watcher::Event::Apply(approved(csr("a", "system:node:n1"))),
            watcher::Event::Delete(csr("c", "system:node:n2")),
        ] {
            writer.apply_watcher_event(&event);
            index.observe(&event);
        }
        assert_eq!(names(index.requested_by("n1", &store)), ["b"]);
        assert!(index.requested_by("n2", &store).is_empty());
    }

    #[test]
    fn issue_13_a_csr_is_found_by_the_node_its_cn_names() {
        let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        let mut bootstrap = csr("bootstrap", "system:bootstrap:abcdef");
        let request = include_str!("../../csrgate-policy/testdata/worker-1-client.csr");
        bootstrap.spec.request = k8s_openapi::ByteString(request.as_bytes().to_vec());
        let event = watcher::Event::Apply(bootstrap);
        writer.apply_watcher_event(&event);
        index.observe(&event);
        assert_eq!(names(index.requested_by("worker-1", &store)), ["bootstrap"]);
        assert!(index.requested_by("abcdef", &store).is_empty());
    }

    #[test]
    fn names_the_store_no_longer_holds_are_dropped() {
        let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        // Indexed, but deleted while the watch was down: the relist never names it.
        index.observe(&watcher::Event::Apply(csr("gone", "system:node:n1")));
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert!(index.requested_by("n1", &store).is_empty());
        assert!(index.csrs.lock().unwrap().is_empty());
    }
}
