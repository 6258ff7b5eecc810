//! The [`Engine`]: the state a policy engine keeps between decisions (parsed requests,
//! regular expressions, field-path identifiers), owned by whoever decides, never global.
//!
//! The controller owns one engine for the process and `csrgate check`/`test`/`explain` one
//! per run; tests make a fresh one each, so no test sees another's state. Every cache is
//! bounded, and what a policy brings (its constant regular expressions, its field-path
//! identifiers) is owned by its [`CompiledPolicy`] and dropped with it, as cert-manager
//! approver-policy drops a policy's validation cache with the policy.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use csrgate_api::CsrApprovalPolicy;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::authorizer::Authorizer;
use crate::compile::CompiledPolicy;
use crate::decide::{Decision, Nodes};
use crate::paths::PathTable;
use crate::patterns::DynamicPatterns;
use crate::request::{RequestCache, SharedRequest};

/// Compiles policies and decides CSRs with them, keeping bounded caches between decisions.
///
/// Cheap to share: every method takes `&self` and the caches lock briefly, so one engine
/// serves any number of threads (the controller's blocking pool). A policy decides only
/// with the engine that compiled it; given one compiled by another engine, [`decide`]
/// treats it as not Ready (it holds the CSRs it covers when Enforce), never as another
/// policy's fields.
///
/// The caches:
/// - parsed requests by exact bytes, at most [`crate::request::REQUEST_CACHE_ENTRIES`]
///   entries and [`crate::request::REQUEST_CACHE_BYTES`] bytes;
/// - regular expressions computed at evaluation time, at most
///   [`crate::DYNAMIC_PATTERN_ENTRIES`] and [`crate::DYNAMIC_PATTERN_BYTES`] bytes of
///   pattern (constant patterns belong to their policy);
/// - the identifiers of the field paths the live policies read, bounded by those policies.
///
/// [`decide`]: Engine::decide
#[derive(Debug)]
pub struct Engine {
    /// Tells this engine's policies from another's.
    id: u64,
    requests: RequestCache,
    patterns: Arc<DynamicPatterns>,
    paths: PathTable,
}

/// What a decision may read besides the policies and the CSR.
#[derive(Clone, Default)]
pub struct Inputs<'a> {
    /// The requestor's Node (`node`) and the Node the request's CN names (`subjectNode`),
    /// each when it exists; absent ones are null.
    pub nodes: Nodes<'a>,
    /// Answers the `authorizer` variable's checks of the CSR's requestor; `None`: every check
    /// errors ("no authorizer is configured"). Answers are cached for one decision only, and
    /// at most [`crate::MAX_AUTHORIZATION_CHECKS`] distinct checks are asked.
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("nodes", &self.nodes)
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine with empty caches.
    pub fn new() -> Self {
        // Only tells engines apart; no state is shared through it.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests: RequestCache::default(),
            patterns: Arc::default(),
            paths: PathTable::default(),
        }
    }

    /// Compiles every expression of the policy's current spec for this engine.
    ///
    /// Never fails: an invalid policy is returned not Ready, with its
    /// [`errors`](CompiledPolicy::errors), because a covering policy that is not Ready must
    /// still hold its CSRs pending. Runs the CEL parser on a thread of its own with a large
    /// stack, and can take milliseconds: callers on an async runtime compile on a blocking
    /// thread.
    pub fn compile(&self, policy: &CsrApprovalPolicy) -> CompiledPolicy {
        CompiledPolicy::compile(self, policy)
    }

    /// Decides one pending CSR (DESIGN.md, "The decision").
    ///
    /// `policies` may hold any policies (covering or not, Ready or not, Enforce or Audit);
    /// the request is parsed and converted once, then offered to each covering policy in
    /// name order. Every expression runs under the budget of [`crate::PER_CALL_LIMIT`] and
    /// [`crate::RUNTIME_COST_BUDGET`], so a decision can take up to about a second per
    /// policy: callers on an async runtime run it on a blocking thread.
    pub fn decide(
        &self,
        policies: &[CompiledPolicy],
        csr: &CertificateSigningRequest,
        inputs: &Inputs<'_>,
    ) -> Decision {
        let policies: Cow<'_, [CompiledPolicy]> = if policies.iter().all(|p| p.compiled_by(self.id))
        {
            Cow::Borrowed(policies)
        } else {
            Cow::Owned(
                policies
                    .iter()
                    .map(|p| p.clone().for_engine(self.id))
                    .collect(),
            )
        };
        crate::decide::decide(self, &policies, csr, inputs)
    }

    /// [`crate::parse_request`] of `pem`, remembered by exact bytes.
    pub fn parse_request(&self, pem: &[u8]) -> SharedRequest {
        self.requests.parse(pem)
    }

    /// The Node name a request's subject names (`subjectNode`): its CN when that is
    /// `system:node:<name>`, as bootstrap and kubelet client requests carry it. `None` when
    /// the CN is not a node's, or when the request cannot be read (the decision then denies
    /// or holds it as an invalid request, so no Node is needed).
    pub fn subject_node_name(&self, csr: &CertificateSigningRequest) -> Option<String> {
        let request = self.parse_request(&csr.spec.request.0);
        let request = request.as_ref().as_ref().ok()?;
        crate::env::node_name(&request.common_name).map(str::to_owned)
    }

    /// Forgets every parsed request, so the next decision parses and verifies each again
    /// (benchmarks measure a first sighting so).
    pub fn forget_requests(&self) {
        self.requests.clear();
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn paths(&self) -> &PathTable {
        &self.paths
    }

    pub(crate) fn patterns(&self) -> &Arc<DynamicPatterns> {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{CsrBuilder, policy};
    use crate::{Outcome, PendingCause};

    const ADMINS: &str = "signerNames: [kubernetes.io/kube-apiserver-client]\nvalidations:\n  - {name: cn, expression: 'x509.commonName == object.spec.username'}\n";

    #[test]
    fn a_policy_compiled_by_another_engine_holds_instead_of_deciding() {
        let (mine, other) = (Engine::new(), Engine::new());
        let csr = CsrBuilder::new().build();
        let compiled = other.compile(&policy("admins", ADMINS));
        assert_eq!(
            other
                .decide(std::slice::from_ref(&compiled), &csr, &Inputs::default())
                .outcome(),
            Outcome::Approved
        );
        let decision = mine.decide(&[compiled], &csr, &Inputs::default());
        assert_eq!(decision.outcome(), Outcome::Pending);
        assert!(
            matches!(decision.pending(), Some(PendingCause::PolicyNotReady { message, .. })
                if message.contains("another csrgate_policy::Engine")),
            "{decision:?}"
        );
    }

    #[test]
    fn a_dropped_policy_takes_its_paths_and_patterns_with_it() {
        let engine = Engine::new();
        let spec = |i: usize| {
            format!(
                "signerNames: [example.com/x]\nvalidations:\n  - {{name: v, expression: 'object.metadata.labels.l{i} == \"a\" && x509.commonName.matches(\"^c{i}$\")'}}\n"
            )
        };
        for i in 0..500 {
            let compiled = engine.compile(&policy("p", &spec(i)));
            assert!(compiled.is_ready(), "{:?}", compiled.errors());
            let rules = compiled.rules().unwrap();
            assert_eq!(rules.patterns.constant.len(), 1, "compiled with the policy");
        }
        assert!(
            engine.paths().len() < 200,
            "{} path entries kept for one live policy at a time",
            engine.paths().len()
        );
        assert_eq!(
            engine.patterns().len(),
            0,
            "constant patterns are the policy's"
        );
    }

    #[test]
    fn the_request_cache_answers_from_memory_until_forgotten() {
        let engine = Engine::new();
        let csr = CsrBuilder::new().build();
        let first = engine.parse_request(&csr.spec.request.0);
        assert!(Arc::ptr_eq(
            &first,
            &engine.parse_request(&csr.spec.request.0)
        ));
        engine.forget_requests();
        assert!(!Arc::ptr_eq(
            &first,
            &engine.parse_request(&csr.spec.request.0)
        ));
    }
}
