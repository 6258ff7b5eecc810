//! The csrgate policy engine: parse a CSR's request, compile `CsrApprovalPolicy` rules into
//! CEL programs, evaluate them, and combine the verdicts into one decision.
//!
//! The engine is pure (no I/O, no async, no Kubernetes client) so that the controller and
//! the offline `csrgate check` / `csrgate test` commands call the very same
//! [`Engine::decide`]: what a GitOps pipeline tests before merging is what the cluster will do.
//! The [`Engine`] is a value its caller owns (the controller one per process, the CLI one per
//! run), holding the bounded caches kept between decisions; nothing is global but immutable
//! tables (the CEL root context, the Kubernetes schemas).
//!
//! Policies are compiled once per generation ([`Engine::compile`]); a CSR's request
//! is parsed and turned into CEL values once, then shared by every covering policy. A request
//! that cannot be read exactly is never approved: it is denied with reason `InvalidRequest`
//! (or left pending when no covering policy denies on failure).
//!
//! Every expression is evaluated under a budget, as Kubernetes bounds CEL: at most
//! [`PER_CALL_LIMIT`] cost units per expression and [`RUNTIME_COST_BUDGET`] per policy and
//! CSR, strings of at most [`MAX_STRING_BYTES`]. Going over, an integer overflow, or a panic
//! inside a CEL library function is an evaluation error of that expression: a failure,
//! never an approval. [`Engine::decide`] can therefore take up to about a second per policy; callers
//! on an async runtime run it on a blocking thread.
//!
//! ```
//! use csrgate_api::CsrApprovalPolicy;
//! use csrgate_policy::{Engine, Inputs, Outcome, reasons};
//! use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
//!
//! let policy: CsrApprovalPolicy = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "csrgate.dev/v1alpha1",
//!     "kind": "CsrApprovalPolicy",
//!     "metadata": {"name": "admins", "generation": 1},
//!     "spec": {
//!         "signerNames": ["kubernetes.io/kube-apiserver-client"],
//!         "validations": [{"name": "cn-is-requestor",
//!                          "expression": "x509.commonName == object.spec.username"}]
//!     }
//! }))?;
//! let engine = Engine::new();
//! let compiled = engine.compile(&policy);
//! assert!(compiled.is_ready());
//!
//! // A request that is not a PEM certificate request is denied, never approved.
//! let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "jane"},
//!     "spec": {"signerName": "kubernetes.io/kube-apiserver-client",
//!              "request": "bm90IGEgQ1NS", "usages": ["client auth"], "username": "jane"}
//! }))?;
//! let decision = engine.decide(&[compiled], &csr, &Inputs::default());
//! assert_eq!(decision.outcome(), Outcome::Denied);
//! assert_eq!(decision.reason(), Some(reasons::INVALID_REQUEST));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod authorizer;
mod budget;
mod compile;
mod decide;
mod engine;
mod env;
mod evaluate;
mod functions;
mod node_fields;
mod node_names;
mod paths;
mod patterns;
mod pick;
pub mod rbac;
pub mod request;

#[cfg(test)]
mod fixtures;

pub use authorizer::{
    AUTHORIZER, Authorizer, CHECK_COST, MAX_AUTHORIZATION_CHECKS, Unavailable, review_error,
};
pub use budget::{EXPRESSION_DEADLINE, MAX_STRING_BYTES, PER_CALL_LIMIT, RUNTIME_COST_BUDGET};
pub use compile::{
    CompileError, CompiledPolicy, MAX_AST_DEPTH, MAX_AST_NODES, MAX_COMPREHENSION_NESTING,
    MAX_EXPRESSION_BYTES,
};
pub use decide::{
    Decision, MAX_MESSAGE_BYTES, Nodes, Outcome, PendingCause, PolicyReport, Ruling, reasons,
};
pub use engine::{Engine, Inputs};
pub use env::{CsrScope, NODE_USER_PREFIX, node_name};
pub use evaluate::{Failure, FailureSource, Verdict, evaluate};
pub use node_fields::{UNCACHED_NODE_FIELDS, deserialize_node_for_policies, node_for_policies};
pub use node_names::NodeNames;
pub use patterns::{DYNAMIC_PATTERN_BYTES, DYNAMIC_PATTERN_ENTRIES, REGEX_SIZE_LIMIT};
pub use request::{
    Curve, KeyAlgorithm, ParsedRequest, PublicKeyInfo, RequestError, SharedRequest, parse_request,
};
