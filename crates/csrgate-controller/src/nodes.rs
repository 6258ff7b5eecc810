//! Which pending CSRs each Node requested or names, so that a change of the Node decides
//! them again.
//!
//! A kubelet serving CSR can arrive before its Node's addresses are written; a policy that
//! waits for them (a matchCondition on `node`) leaves the CSR pending, and nothing about the
//! CSR changes when the Node does. Issue #12: without this index such a CSR stayed pending
//! forever. The CSR watch keeps the index; every change of a Node, once the Node store holds
//! it ([`node_triggers`]), looks its name up and re-queues the CSRs found (DESIGN.md, "The
//! decision": pending CSRs of a node are decided again when its Node appears or changes).
//! Issue #13: a CSR is also indexed under the Node its CN names (`subjectNode`), so that a
//! bootstrap request for a name decides again when a Node of that name appears.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use csrgate_policy::{Engine, NodeNames};
use futures::{Stream, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::csr::is_terminal;

/// Pending CSRs by the name of the Node that requested them (`system:node:<name>`), and by
/// the name of the Node their CN names.
#[derive(Clone, Default)]
pub struct PendingByNode {
    index: Arc<Mutex<Index>>,
    /// Reads the CN of a request (`subjectNode`); the decisions' engine, so a request is
    /// parsed once for both.
    engine: Arc<Engine>,
}

#[derive(Default)]
struct Index {
    /// Node name → names of its pending CSRs.
    by_node: HashMap<String, HashSet<String>>,
    /// During a list of the CSR watch, the indexed CSRs it listed pending so far; at its end,
    /// every other name leaves the index (deleted while the watch was down: no Delete came).
    listed: Option<HashSet<String>>,
}

impl PendingByNode {
    /// An empty index reading requests with `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            index: Arc::default(),
            engine,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows one event of the CSR watch, after the CSR store has applied it.
    ///
    /// A list (the first, and every relist) prunes the index only at its `InitDone`, against
    /// the names it delivered: until then kube-runtime's reflector store still holds the old
    /// list, and pruning against it dropped the CSRs the list brought, so a Node that changed
    /// later no longer decided them again.
    pub fn observe(&self, event: &watcher::Event<CertificateSigningRequest>) {
        match event {
            watcher::Event::Apply(csr) => self.set(csr, !is_terminal(csr), false),
            watcher::Event::InitApply(csr) => self.set(csr, !is_terminal(csr), true),
            watcher::Event::Delete(csr) => self.set(csr, false, false),
            watcher::Event::Init => self.lock().listed = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let mut index = self.lock();
                if let Some(listed) = index.listed.take() {
                    index.by_node.retain(|_, names| {
                        names.retain(|name| listed.contains(name));
                        !names.is_empty()
                    });
                }
            }
        }
    }

    fn set(&self, csr: &CertificateSigningRequest, pending: bool, listed: bool) {
        let nodes = NodeNames::of(&self.engine, csr);
        let mut nodes = nodes.distinct().peekable();
        if nodes.peek().is_none() {
            return;
        }
        let name = csr.name_any();
        let mut index = self.lock();
        for node in nodes {
            if pending {
                index
                    .by_node
                    .entry(node.to_owned())
                    .or_default()
                    .insert(name.clone());
            } else if let Some(names) = index.by_node.get_mut(node) {
                names.remove(&name);
                if names.is_empty() {
                    index.by_node.remove(node);
                }
            }
        }
        if pending
            && listed
            && let Some(listed) = index.listed.as_mut()
        {
            listed.insert(name);
        }
    }

    /// The pending CSRs `node` requested or whose CN names it, of those the CSR store holds
    /// pending now.
    ///
    /// Indexed names the store lacks stay indexed: during a list, the store still has the
    /// old objects, and the list's end makes its CSRs due anyway (`crate::due`); names
    /// deleted while the watch was down leave at that end too ([`Self::observe`]).
    pub fn requested_by(
        &self,
        node: &str,
        store: &Store<CertificateSigningRequest>,
    ) -> Vec<ObjectRef<CertificateSigningRequest>> {
        let index = self.lock();
        let Some(names) = index.by_node.get(node) else {
            return Vec::new();
        };
        names
            .iter()
            .map(|name| ObjectRef::new(name))
            .filter(|csr| store.get(csr).is_some_and(|csr| !is_terminal(&csr)))
            .collect()
    }
}

/// The pending CSRs each event of the Node watch (`events`, already applied to the Node
/// store `nodes`) makes due again, looked up in `index` against the CSR store `csrs`: those
/// of the Node an `Apply` or `Delete` names at once; at the `InitDone` of a list (the first,
/// and every relist), those of every Node it listed and of every Node the store held before
/// it (a Node deleted while the watch was down sends no Delete).
///
/// Not at a list's `InitApply`: kube-runtime's reflector applies a list to its store only
/// at `InitDone`, so a CSR sent earlier was decided against the old Node (or none), stayed
/// pending, and nothing sent it again.
pub fn node_triggers<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    nodes: Store<K>,
    index: PendingByNode,
    csrs: Store<CertificateSigningRequest>,
) -> impl Stream<Item = ObjectRef<CertificateSigningRequest>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    events
        .scan(
            BTreeSet::new(),
            move |listed: &mut BTreeSet<String>, event| {
                let changed: Vec<String> = match event {
                    Ok(watcher::Event::Apply(node) | watcher::Event::Delete(node)) => {
                        vec![node.name_any()]
                    }
                    // The store still holds the Nodes from before this list.
                    Ok(watcher::Event::Init) => {
                        *listed = nodes.state().iter().map(|node| node.name_any()).collect();
                        Vec::new()
                    }
                    Ok(watcher::Event::InitApply(node)) => {
                        listed.insert(node.name_any());
                        Vec::new()
                    }
                    Ok(watcher::Event::InitDone) => std::mem::take(listed).into_iter().collect(),
                    Err(_) => Vec::new(),
                };
                let due: Vec<_> = changed
                    .iter()
                    .flat_map(|node| index.requested_by(node, &csrs))
                    .collect();
                futures::future::ready(Some(futures::stream::iter(due)))
            },
        )
        .flatten()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };
    use k8s_openapi::api::core::v1::Node;
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

    /// Applies each event to the CSR store and then to the index, in the controller's order.
    fn follow(
        writer: &mut reflector::store::Writer<CertificateSigningRequest>,
        index: &PendingByNode,
        events: impl IntoIterator<Item = watcher::Event<CertificateSigningRequest>>,
    ) {
        for event in events {
            writer.apply_watcher_event(&event);
            index.observe(&event);
        }
    }

    #[test]
    fn a_relist_drops_the_csrs_it_no_longer_lists() {
        let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        follow(
            &mut writer,
            &index,
            [
                watcher::Event::Apply(csr("gone", "system:node:n1")),
                watcher::Event::Apply(csr("kept", "system:node:n1")),
                watcher::Event::Apply(csr("other", "system:node:n2")),
            ],
        );
        // Deleted while the watch was down: the relist names the others only.
        follow(
            &mut writer,
            &index,
            [
                watcher::Event::Init,
                watcher::Event::InitApply(csr("kept", "system:node:n1")),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(names(index.requested_by("n1", &store)), ["kept"]);
        assert!(index.requested_by("n2", &store).is_empty());
        let indexed = index.lock().by_node.clone();
        assert_eq!(
            indexed,
            HashMap::from([("n1".to_owned(), HashSet::from(["kept".to_owned()]))])
        );
    }

    #[test]
    fn a_csr_listed_while_its_node_changes_is_still_found_when_the_node_changes_again() {
        let (store, mut writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        // A relist under way: the store still has the old list, without `new`.
        follow(
            &mut writer,
            &index,
            [
                watcher::Event::Init,
                watcher::Event::InitApply(csr("new", "system:node:n1")),
            ],
        );
        // The Node changes meanwhile; the list's end decides `new` (see `crate::due`), so
        // nothing needs to be sent now, but `new` must stay indexed.
        assert!(index.requested_by("n1", &store).is_empty());
        follow(&mut writer, &index, [watcher::Event::InitDone]);
        // The Node changes again: `new`, still pending, is decided again.
        assert_eq!(names(index.requested_by("n1", &store)), ["new"]);
    }

    /// Runs the Node `events` through a reflector, as the controller does, with the CSRs of
    /// `pending` (name, requestor) indexed and cached; returns each CSR a trigger sent, with
    /// the names of the Nodes the Node store held when it was sent.
    async fn triggers(
        pending: &[(&str, &str)],
        events: Vec<watcher::Event<Node>>,
    ) -> Vec<(String, Vec<String>)> {
        let (csrs, mut csr_writer) = reflector::store::<CertificateSigningRequest>();
        let index = PendingByNode::default();
        for (name, username) in pending {
            follow(
                &mut csr_writer,
                &index,
                [watcher::Event::Apply(csr(name, username))],
            );
        }
        let (nodes, node_writer) = reflector::store::<Node>();
        let reflected = kube::runtime::reflector(
            node_writer,
            futures::stream::iter(events.into_iter().map(Ok)),
        );
        let mut sent = node_triggers(reflected, nodes.clone(), index, csrs).boxed();
        let mut seen = Vec::new();
        while let Some(csr) = sent.next().await {
            let mut held: Vec<String> = nodes.state().iter().map(|n| n.name_any()).collect();
            held.sort();
            seen.push((csr.name, held));
        }
        seen
    }

    fn node(name: &str) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_owned());
        node
    }

    #[tokio::test]
    async fn a_node_trigger_is_sent_once_the_node_store_holds_the_node() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let seen = triggers(
            &[("a", "system:node:n1"), ("b", "system:node:n2")],
            vec![
                Init,
                InitApply(node("n1")),
                InitDone,
                Apply(node("n2")),
                Delete(node("n2")),
                // A relist: `n2` appeared again while the watch was away, `n1` is gone.
                Init,
                InitApply(node("n2")),
                InitDone,
            ],
        )
        .await;
        let held = |nodes: &[&str]| nodes.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            [
                ("a".to_owned(), held(&["n1"])),
                ("b".to_owned(), held(&["n1", "n2"])),
                ("b".to_owned(), held(&["n1"])),
                // At the relist's end: the Nodes it listed, and the Nodes it dropped.
                ("a".to_owned(), held(&["n2"])),
                ("b".to_owned(), held(&["n2"])),
            ]
        );
    }
}
