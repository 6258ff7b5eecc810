//! Engine benchmarks: parse a request (P-256, and P-384), build the per-CSR scope, decide over
//! 1, 10 and 100 distinct policies of four realistic expressions each (one using `matches`), a
//! lone `matches()` rule, and compile one policy and 1,000 policies.
//!
//! Run with `make bench` (everything, with the side-by-side report) or
//! `cargo bench -p csrgate-policy --bench decide`; criterion prints the median of each and
//! keeps its estimates under `target/criterion`.
//!
//! Before measuring, it writes `target/bench/cel-fixture.json`: the CEL values csrgate
//! evaluates (`object`, `x509`, `node`) and the expressions of the ten-policy decision, so
//! the peer engines in `bench/peers/` evaluate exactly the same rules over the same values.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use csrgate_api::CsrApprovalPolicy;
use csrgate_policy::{CompiledPolicy, CsrScope, Decision, Engine, Inputs, Outcome, parse_request};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

const REQUEST: &[u8] = include_bytes!("../testdata/worker-1-serving.csr");
/// A P-384 ECDSA request, signed ecdsa-with-SHA256 (openssl's default).
const REQUEST_P384: &[u8] = include_bytes!("../testdata/jane-p384.csr");

/// Policy `i`'s matchCondition and three validations. Every policy's text is distinct (each
/// names its own retired node), so no engine, csrgate included, can share a result between
/// policies; `decide_10_identical_policies_seen_before` measures the sharing csrgate does
/// when policies repeat an expression.
fn rules(i: usize) -> [(&'static str, String); 4] {
    [
        (
            "is-node",
            format!(
                r#"object.spec.username.startsWith("system:node:") && "system:nodes" in object.spec.groups && object.spec.username != "system:node:retired-{i}""#
            ),
        ),
        (
            "cn-is-requestor",
            format!(
                r#"x509.commonName == object.spec.username && x509.commonName.matches("^system:node:[a-z0-9.-]+$") && x509.commonName != "system:node:retired-{i}""#
            ),
        ),
        (
            "organization",
            format!(
                r#"x509.organizations == ["system:nodes"] && !("retired-{i}" in x509.organizationalUnits)"#
            ),
        ),
        (
            "sans",
            format!(
                r#"x509.dnsNames.all(n, n.endsWith(".cluster.internal") || n == "worker-1" || n == "retired-{i}") && x509.ipAddresses.all(ip, ip.startsWith("10.") || ip.startsWith("fd00:"))"#
            ),
        ),
    ]
}
/// The lone `matches()` rule: a SPIFFE-style check that cannot be written without a regex.
const MATCHES_RULE: &str =
    r#"x509.dnsNames.all(n, n.matches("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9-]+)*$"))"#;

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

fn single_quoted(expression: &str) -> String {
    format!("'{}'", expression.replace('\'', "''"))
}

/// Policy `i`: all cover kubelet-serving, with one matchCondition and three validations;
/// `identical` gives every policy policy 0's rules.
fn policy(i: usize, identical: bool) -> CsrApprovalPolicy {
    let [matcher, validations @ ..] = rules(if identical { 0 } else { i });
    let mut yaml = format!(
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\n\
         metadata: {{name: policy-{i:04}, generation: 1}}\n\
         spec:\n  signerNames: [\"kubernetes.io/kubelet-serving\"]\n  matchConditions:\n\
         \x20   - name: {}\n      expression: {}\n  validations:\n",
        matcher.0,
        single_quoted(&matcher.1)
    );
    for (name, expression) in validations {
        yaml.push_str(&format!(
            "    - name: {name}\n      expression: {}\n",
            single_quoted(&expression)
        ));
    }
    serde_saphyr::from_str(&yaml).expect("benchmark policy parses")
}

fn policy_with_rule(name: &str, expression: &str) -> CsrApprovalPolicy {
    let yaml = format!(
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\n\
         metadata: {{name: {name}, generation: 1}}\n\
         spec:\n  signerNames: [\"kubernetes.io/kubelet-serving\"]\n  validations:\n\
         \x20   - name: rule\n      expression: {}\n",
        single_quoted(expression)
    );
    serde_saphyr::from_str(&yaml).expect("benchmark policy parses")
}

fn out_dir() -> PathBuf {
    std::env::var_os("CSRGATE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"))
}

/// What the peer engines need to evaluate the ten-policy decision: the CEL values and the
/// expressions, as plain JSON.
fn write_peer_fixture(csr: &CertificateSigningRequest) {
    let parsed = parse_request(REQUEST).expect("benchmark request parses");
    let policies: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let [matcher, validations @ ..] = rules(i);
            serde_json::json!({
                "name": format!("policy-{i:04}"),
                "matchConditions": [matcher.1],
                "validations": validations.iter().map(|(_, e)| e).collect::<Vec<_>>(),
            })
        })
        .collect();
    let fixture = serde_json::json!({
        "activation": {
            "object": serde_json::to_value(csr).expect("CSR serializes"),
            "x509": serde_json::to_value(&parsed).expect("request serializes"),
            "node": null,
        },
        "policies": policies,
        "matchesRule": MATCHES_RULE,
    });
    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("bench output directory");
    std::fs::write(
        dir.join("cel-fixture.json"),
        serde_json::to_string_pretty(&fixture).expect("fixture serializes"),
    )
    .expect("fixture written");
}

fn benches(c: &mut Criterion) {
    let engine = Engine::new();
    let decide = |policies: &[CompiledPolicy], csr: &CertificateSigningRequest| -> Decision {
        engine.decide(policies, csr, &Inputs::default())
    };
    let csr = csr();
    write_peer_fixture(&csr);
    let policies: Vec<CompiledPolicy> = (0..100)
        .map(|i| engine.compile(&policy(i, false)))
        .collect();
    let identical: Vec<CompiledPolicy> =
        (0..10).map(|i| engine.compile(&policy(i, true))).collect();
    assert!(
        policies
            .iter()
            .chain(&identical)
            .all(CompiledPolicy::is_ready)
    );
    let one = policy(0, false);
    let parsed = parse_request(REQUEST).expect("benchmark request parses");
    assert_eq!(decide(&identical, &csr).outcome(), Outcome::Approved);
    for count in [1, 10, 100] {
        let decision = decide(&policies[..count], &csr);
        assert_eq!(
            decision.outcome(),
            Outcome::Approved,
            "{:?}",
            decision.message()
        );
    }
    let matches_policy = [engine.compile(&policy_with_rule("matches", MATCHES_RULE))];
    assert_eq!(decide(&matches_policy, &csr).outcome(), Outcome::Approved);

    c.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST)))
    });
    // A P-384 request: about 13x the time of a P-256 one here (ring's P-384 arithmetic).
    assert!(parse_request(REQUEST_P384).is_ok());
    c.bench_function("parse_request_p384", |b| {
        b.iter(|| parse_request(black_box(REQUEST_P384)))
    });
    c.bench_function("csr_scope", |b| {
        b.iter(|| CsrScope::new(black_box(&csr), &parsed, None, None, &policies[..10]))
    });
    // The whole decision for a CSR seen for the first time: parse (with signature
    // verification), scope, then the policies.
    for count in [1, 10, 100] {
        c.bench_function(&format!("decide_{count}_policies"), |b| {
            b.iter(|| {
                engine.forget_requests();
                decide(black_box(&policies[..count]), black_box(&csr))
            })
        });
    }
    // The same CSR decided again (policy change, conflict retry, resync): the verified
    // request comes from the cache.
    c.bench_function("decide_10_policies_seen_before", |b| {
        b.iter(|| decide(black_box(&policies[..10]), black_box(&csr)))
    });
    // Ten policies repeating one set of rules (a shared matchCondition is common): csrgate
    // evaluates an expression that reads no `variables` once per CSR, however many policies
    // hold it.
    c.bench_function("decide_10_identical_policies_seen_before", |b| {
        b.iter(|| decide(black_box(&identical), black_box(&csr)))
    });
    c.bench_function("matches_rule_seen_before", |b| {
        b.iter(|| decide(black_box(&matches_policy), black_box(&csr)))
    });
    c.bench_function("compile_policy", |b| {
        b.iter(|| engine.compile(black_box(&one)))
    });
    let thousand: Vec<CsrApprovalPolicy> = (0..1000).map(|i| policy(i, false)).collect();
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    group.bench_function("compile_1000_policies", |b| {
        b.iter_batched(
            || thousand.clone(),
            |policies| {
                policies
                    .iter()
                    .map(|p| engine.compile(p))
                    .collect::<Vec<_>>()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
