//! Engine benchmarks: parse a request, build the per-CSR scope, decide over 10 policies of
//! about three realistic validations each (one with `matches`), and compile a policy.
//!
//! Run with `make bench` (or `cargo bench -p csrgate-policy --bench decide`); criterion
//! prints the median of each and keeps reports under `target/criterion`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use csrgate_api::CsrApprovalPolicy;
use csrgate_policy::{CompiledPolicy, CsrScope, decide, parse_request};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

const REQUEST: &[u8] = include_bytes!("../testdata/worker-1-serving.csr");

fn csr() -> CertificateSigningRequest {
    let mut csr = CertificateSigningRequest::default();
    csr.metadata.name = Some("csr-worker-1".into());
    csr.spec.signer_name = "kubernetes.io/kubelet-serving".into();
    csr.spec.request = ByteString(REQUEST.to_vec());
    csr.spec.usages = Some(vec!["digital signature".into(), "server auth".into()]);
    csr.spec.username = Some("system:node:worker-1".into());
    csr.spec.groups = Some(vec!["system:nodes".into(), "system:authenticated".into()]);
    csr.spec.expiration_seconds = Some(86400);
    csr
}

/// Policy `i` of ten, all covering kubelet-serving, each with three validations; the
/// first also uses `matches`.
fn policy(i: usize) -> CsrApprovalPolicy {
    let yaml = format!(
        r#"
apiVersion: csrgate.dev/v1alpha1
kind: CsrApprovalPolicy
metadata: {{name: policy-{i}, generation: 1}}
spec:
  signerNames: ["kubernetes.io/kubelet-serving"]
  matchConditions:
    - name: is-node
      expression: 'object.spec.username.startsWith("system:node:") && "system:nodes" in object.spec.groups'
  validations:
    - name: cn-is-requestor
      expression: 'x509.commonName == object.spec.username && x509.commonName.matches("^system:node:[a-z0-9.-]+$")'
    - name: organization
      expression: 'x509.organizations == ["system:nodes"]'
    - name: sans
      expression: 'x509.dnsNames.all(n, n.endsWith(".cluster.internal") || n == "worker-1") && x509.ipAddresses.all(ip, ip.startsWith("10.") || ip.startsWith("fd00:"))'
"#
    );
    serde_saphyr::from_str(&yaml).expect("benchmark policy parses")
}

fn benches(c: &mut Criterion) {
    let csr = csr();
    let policies: Vec<CompiledPolicy> = (0..10)
        .map(|i| CompiledPolicy::compile(&policy(i)))
        .collect();
    assert!(policies.iter().all(CompiledPolicy::is_ready));
    let one = policy(0);
    let parsed = parse_request(REQUEST).expect("benchmark request parses");
    assert_eq!(
        decide(&policies, &csr, None).outcome,
        csrgate_policy::Outcome::Approved
    );

    c.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST)))
    });
    c.bench_function("csr_scope", |b| {
        b.iter(|| CsrScope::new(black_box(&csr), &parsed, None, &policies))
    });
    // The whole decision for a CSR seen for the first time: parse (with signature
    // verification), scope, ten policies.
    c.bench_function("decide_10_policies", |b| {
        b.iter(|| {
            csrgate_policy::clear_request_cache();
            decide(black_box(&policies), black_box(&csr), None)
        })
    });
    // The same CSR decided again (policy change, conflict retry, resync): the verified
    // request comes from the cache.
    c.bench_function("decide_10_policies_seen_before", |b| {
        b.iter(|| decide(black_box(&policies), black_box(&csr), None))
    });
    c.bench_function("decide_1_policy", |b| {
        b.iter(|| {
            csrgate_policy::clear_request_cache();
            decide(black_box(&policies[..1]), black_box(&csr), None)
        })
    });
    c.bench_function("compile_policy", |b| {
        b.iter(|| CompiledPolicy::compile(black_box(&one)))
    });
}

criterion_group!(engine, benches);
criterion_main!(engine);
