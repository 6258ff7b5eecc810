//! When a CSR comes due for a decision, as a stream of CSR names for the work queue
//! (`crate::queue`).
//!
//! A name is sent only once the CSR store holds the object, because a worker decides the
//! CSR as the store has it, and takes a name the store lacks for a CSR deleted meanwhile.
//! kube-runtime's reflector applies a list (the first one, and every relist) to its store
//! only when the whole list has arrived (`InitDone`); until then the store has the old
//! objects. So the names a list brings are held back until its `InitDone`, after the
//! reflector has applied it: a CSR created while the watch was relisting is decided, not
//! skipped as deleted.

use std::collections::HashMap;

use csrgate_policy::CompiledPolicy;
use futures::stream::{BoxStream, StreamExt};
use futures::{Stream, future};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::warn;

/// The names of the CSRs that come due, in the order they do: each CSR the watch applies
/// (`events`, already applied to the store: on every change at once, on a list at its end),
/// every cached CSR a policy covers when a policy changes (`policies_changed`; `policies`
/// gives the policies as they are then), and the CSRs a Node event (`nodes`) or the pending
/// cap (`resumed`) sends again. Watch errors are logged here; the watch's health reports them
/// too.
///
/// A CSR no policy covers is left alone when a policy changes: csrgate does nothing with it
/// (DESIGN.md, "The decision", step 1), and deciding every such CSR again on each of a burst
/// of policy changes kept the cores from the API server (1,000 policies over 10,000 pending
/// CSRs of a signer no policy covers).
pub fn due_csrs(
    events: impl Stream<Item = Result<watcher::Event<CertificateSigningRequest>, watcher::Error>>
    + Send
    + 'static,
    policies_changed: impl Stream<Item = ()> + Send + 'static,
    nodes: impl Stream<Item = ObjectRef<CertificateSigningRequest>> + Send + 'static,
    resumed: impl Stream<Item = ObjectRef<CertificateSigningRequest>> + Send + 'static,
    csrs: &Store<CertificateSigningRequest>,
    policies: impl Fn() -> Vec<CompiledPolicy> + Send + 'static,
) -> BoxStream<'static, String> {
    let csrs = csrs.clone();
    let every_covered = policies_changed.flat_map(move |()| {
        let policies = policies();
        // Signers are few and CSRs many: ask the policies once per signer.
        let mut covered: HashMap<String, bool> = HashMap::new();
        let names: Vec<String> = csrs
            .state()
            .iter()
            .filter(|csr| {
                let signer = &csr.spec.signer_name;
                if let Some(&known) = covered.get(signer) {
                    return known;
                }
                let covers = policies.iter().any(|policy| policy.covers(signer));
                covered.insert(signer.clone(), covers);
                covers
            })
            .map(|csr| csr.name_any())
            .collect();
        futures::stream::iter(names)
    });
    futures::stream::select_all([
        applied(events).boxed(),
        every_covered.boxed(),
        nodes.map(|csr| csr.name).boxed(),
        resumed.map(|csr| csr.name).boxed(),
    ])
    .boxed()
}

/// The names of the CSRs the watch applied: an `Apply` at once, a list's objects at its
/// `InitDone`. Deletions make nothing due.
fn applied(
    events: impl Stream<Item = Result<watcher::Event<CertificateSigningRequest>, watcher::Error>>,
) -> impl Stream<Item = String> {
    events
        .scan(Vec::new(), |listed: &mut Vec<String>, event| {
            let due = match event {
                Ok(watcher::Event::Apply(csr)) => vec![csr.name_any()],
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(csr)) => {
                    listed.push(csr.name_any());
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => std::mem::take(listed),
                Ok(watcher::Event::Delete(_)) => Vec::new(),
                Err(error) => {
                    warn!(%error, "CSR watch error");
                    Vec::new()
                }
            };
            future::ready(Some(futures::stream::iter(due)))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;

    use super::*;

    fn csr(name: &str) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.name = Some(name.to_owned());
        csr
    }

    /// Runs `events` through a reflector into a store, as the controller does, and returns
    /// each due name with whether the store held that CSR when the name came out.
    async fn due_with_store(
        events: Vec<watcher::Event<CertificateSigningRequest>>,
    ) -> Vec<(String, bool)> {
        let (store, writer) = reflector::store();
        let reflected =
            kube::runtime::reflector(writer, futures::stream::iter(events.into_iter().map(Ok)));
        let mut due = due_csrs(
            reflected,
            futures::stream::empty(),
            futures::stream::empty(),
            futures::stream::empty(),
            &store,
            Vec::new,
        );
        let mut seen = Vec::new();
        while let Some(name) = due.next().await {
            let cached = store.get(&ObjectRef::new(&name)).is_some();
            seen.push((name, cached));
        }
        seen
    }

    #[tokio::test]
    async fn a_listed_csr_is_due_once_the_store_holds_it() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let seen = due_with_store(vec![
            Init,
            InitApply(csr("a")),
            InitApply(csr("b")),
            InitDone,
            Apply(csr("c")),
            Delete(csr("a")),
            // A relist: `d` is new, created while the watch was away.
            Init,
            InitApply(csr("b")),
            InitApply(csr("c")),
            InitApply(csr("d")),
            InitDone,
        ])
        .await;
        let expected = [
            ("a", true),
            ("b", true),
            ("c", true),
            ("b", true),
            ("c", true),
            ("d", true),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c))
            .collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_policy_change_makes_every_covered_csr_due_and_triggers_pass_through() {
        let (store, mut writer) = reflector::store();
        for (name, signer) in [
            ("x", "example.com/covered"),
            ("y", "example.com/covered"),
            ("z", "example.com/uncovered"),
        ] {
            let mut csr = csr(name);
            csr.spec.signer_name = signer.to_owned();
            writer.apply_watcher_event(&watcher::Event::Apply(csr));
        }
        let policy: csrgate_api::CsrApprovalPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "csrgate.dev/v1alpha1", "kind": "CsrApprovalPolicy",
            "metadata": {"name": "p", "generation": 1},
            "spec": {"signerNames": ["example.com/covered"],
                     "validations": [{"name": "v", "expression": "true"}]},
        }))
        .expect("a policy");
        let engine = csrgate_policy::Engine::default();
        let compiled = engine.compile(&policy);
        let mut names: Vec<String> = due_csrs(
            futures::stream::empty(),
            futures::stream::iter([()]),
            futures::stream::iter([ObjectRef::new("from-node")]),
            futures::stream::iter([ObjectRef::new("resumed")]),
            &store,
            move || vec![compiled.clone()],
        )
        .collect()
        .await;
        names.sort();
        assert_eq!(names, ["from-node", "resumed", "x", "y"]);
    }
}
