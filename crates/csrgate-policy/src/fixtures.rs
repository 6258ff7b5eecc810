//! Test-only builders: policies from YAML, CSRs from `testdata/`.

use csrgate_api::CsrApprovalPolicy;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

use std::sync::Arc;

use crate::{Authorizer, CompiledPolicy, Decision, Engine, Inputs, Nodes};

thread_local! {
    /// The engine of the running test: libtest runs each test on a thread of its own, so
    /// every test gets a fresh one and shares no state with another.
    static ENGINE: Engine = Engine::new();
}

/// Runs `f` with the running test's engine.
pub fn with_engine<T>(f: impl FnOnce(&Engine) -> T) -> T {
    ENGINE.with(f)
}

/// Decides with the running test's engine, `node` as the requestor's Node.
pub fn decide(
    policies: &[CompiledPolicy],
    csr: &CertificateSigningRequest,
    node: Option<&Node>,
) -> Decision {
    let nodes = Nodes {
        requestor: node,
        subject: None,
    };
    decide_with(policies, csr, nodes, None)
}

/// Decides with the running test's engine, both Nodes and an authorizer.
pub fn decide_with(
    policies: &[CompiledPolicy],
    csr: &CertificateSigningRequest,
    nodes: Nodes<'_>,
    authorizer: Option<Arc<dyn Authorizer>>,
) -> Decision {
    with_engine(|engine| engine.decide(policies, csr, &Inputs { nodes, authorizer }))
}

/// Compiles with the running test's engine.
pub fn compile(policy: &CsrApprovalPolicy) -> CompiledPolicy {
    with_engine(|engine| engine.compile(policy))
}

/// A policy from the YAML of its spec, named and at generation 1.
pub fn policy(name: &str, spec_yaml: &str) -> CsrApprovalPolicy {
    let spec = serde_saphyr::from_str(spec_yaml).unwrap_or_else(|e| panic!("{spec_yaml}: {e}"));
    let mut policy = CsrApprovalPolicy::new(name, spec);
    policy.metadata.generation = Some(1);
    policy
}

/// A compiled policy that must be Ready.
pub fn ready(name: &str, spec_yaml: &str) -> CompiledPolicy {
    let compiled = compile(&policy(name, spec_yaml));
    assert!(compiled.is_ready(), "{name}: {:?}", compiled.errors());
    compiled
}

/// The compile errors of a policy, as `field: message` lines.
pub fn errors(spec_yaml: &str) -> Vec<String> {
    compile(&policy("p", spec_yaml))
        .errors()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// `validations:` list entries for `expressions`, named `v0`, `v1`, ... in order (YAML flow
/// entries, each expression quoted as a JSON string).
pub fn validations(expressions: &[&str]) -> String {
    expressions
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "  - {{name: v{i}, expression: {}}}\n",
                serde_json::to_string(e).unwrap()
            )
        })
        .collect()
}

pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A CSR builder whose default is jane's valid client request; setters change one thing.
pub struct CsrBuilder(CertificateSigningRequest);

impl CsrBuilder {
    pub fn new() -> Self {
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.name = Some("jane".into());
        csr.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
        csr.spec.request = ByteString(testdata("jane.csr"));
        csr.spec.usages = Some(vec!["client auth".into()]);
        csr.spec.username = Some("jane".into());
        csr.spec.groups = Some(vec!["developers".into(), "system:authenticated".into()]);
        csr.spec.expiration_seconds = Some(86400);
        Self(csr)
    }
    pub fn request(mut self, file: &str) -> Self {
        self.0.spec.request = ByteString(testdata(file));
        self
    }
    pub fn raw_request(mut self, bytes: &[u8]) -> Self {
        self.0.spec.request = ByteString(bytes.to_vec());
        self
    }
    pub fn signer(mut self, signer: &str) -> Self {
        self.0.spec.signer_name = signer.into();
        self
    }
    pub fn username(mut self, user: &str) -> Self {
        self.0.spec.username = Some(user.into());
        self
    }
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.0.spec.groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        self
    }
    pub fn expiration(mut self, seconds: Option<i32>) -> Self {
        self.0.spec.expiration_seconds = seconds;
        self
    }
    pub fn build(self) -> CertificateSigningRequest {
        self.0
    }
}

/// A Node with the given addresses.
pub fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "status": {"addresses": addresses.iter().map(|(t, a)| serde_json::json!({"type": t, "address": a})).collect::<Vec<_>>()}
    }))
    .unwrap_or_else(|e| panic!("node: {e}"))
}
