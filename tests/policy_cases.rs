//! Regressions of issue #12 (part 1 and part 4): the shared cases in `tests/cases/policy-*`,
//! decided by the real `csrgate check`, and policies that can never be true.
//!
//! What each case must give is the cases README's "must be" column: no crash, no abort, a
//! denial within a budget or a refusal at compile time, never an approval.

use std::time::{Duration, Instant};

use crate::util::{csrgate, run, write};

/// Runs `csrgate check --output json` on a case folder's policy and jane's CSR; returns
/// (exit code, parsed stdout or null, stderr, elapsed).
fn check_case(case: &str) -> (i32, serde_json::Value, String, Duration) {
    let started = Instant::now();
    let (code, stdout, stderr) = run(csrgate().args([
        "check",
        "--output",
        "json",
        "--policy",
        &format!("tests/cases/{case}/policy.yaml"),
        &format!("tests/cases/{case}/jane.yaml"),
    ]));
    let parsed = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (code, parsed, stderr, started.elapsed())
}

#[test]
fn issue_12_policy_panic_is_denied_with_the_panic_not_a_crash() {
    let (code, parsed, stderr, _) = check_case("policy-panic");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(parsed[0]["decision"], "Denied", "{parsed}");
    assert_eq!(parsed[0]["reason"], "PolicyDenied", "{parsed}");
    let message = parsed[0]["message"].as_str().unwrap();
    assert!(message.contains("a CEL function panicked"), "{message}");
}

#[test]
fn issue_12_policy_memory_is_refused_at_compile_time_naming_file_and_field() {
    let (code, _, stderr, elapsed) = check_case("policy-memory");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "tests/cases/policy-memory/policy.yaml: spec.validations[0].expression: estimated evaluation cost"
        ),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn issue_12_policy_slow_is_refused_at_compile_time_naming_file_and_field() {
    let (code, _, stderr, elapsed) = check_case("policy-slow");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "tests/cases/policy-slow/policy.yaml: spec.validations[0].expression: estimated evaluation cost"
        ),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn issue_12_policy_slow_sized_by_the_csr_is_denied_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: nested-range}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - name: v\n      expression: 'lists.range(object.spec.expirationSeconds / 20).all(a, lists.range(object.spec.expirationSeconds / 20).all(b, true))'\n",
    );
    let started = Instant::now();
    let (code, stdout, stderr) = run(csrgate().args([
        "check",
        "--output",
        "json",
        "--policy",
        policy.to_str().unwrap(),
        "tests/cases/policy-slow/jane.yaml",
    ]));
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Denied", "{parsed}");
    let message = parsed[0]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the limit of 1000000 units"),
        "{message}"
    );
    // The test binary may be a debug build: generous, but far below the minutes it took.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn issue_12_policy_overflow_is_denied_not_approved() {
    let (code, parsed, stderr, _) = check_case("policy-overflow");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(parsed[0]["decision"], "Denied", "{parsed}");
    let failures = parsed[0]["policies"][0]["failures"].as_array().unwrap();
    let names: Vec<&str> = failures
        .iter()
        .map(|f| f["validation"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sum-wraps-negative", "neg-wraps", "sum-under-limit"],
        "{parsed}"
    );
}

const POLICY: &str = "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  variables:\n    - {name: a, expression: 'object.spec.username'}\n  validations:\n    - {name: v, expression: 'EXPR'}\n";

#[test]
fn issue_12_references_that_never_resolve_are_refused_naming_the_field() {
    for (expression, expected) in [
        (
            "variables[\"a\"] == \"jane\"",
            "spec.validations[0].expression: variables can only be read as variables.<name>",
        ),
        (
            "object.spec.bogus == 1",
            "spec.validations[0].expression: object.spec has no field bogus",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let policy = write(dir.path(), "p.yaml", &POLICY.replace("EXPR", expression));
        let (code, _, stderr) = run(csrgate().args([
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "tests/cases/policy-panic/jane.yaml",
        ]));
        assert_eq!(code, 2, "{expression}: {stderr}");
        assert!(stderr.contains(expected), "{expression}: {stderr}");
    }
}

#[test]
fn issue_12_compile_warnings_are_printed_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &POLICY.replace("EXPR", "object.spec.request != \"\""),
    );
    let (code, stdout, stderr) = run(csrgate().args([
        "check",
        "--output",
        "json",
        "--policy",
        policy.to_str().unwrap(),
        "tests/cases/policy-panic/jane.yaml",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(serde_json::from_str::<serde_json::Value>(&stdout).is_ok());
    assert!(
        stderr.contains("warning: ")
            && stderr
                .contains("spec.validations[0].expression: object.spec.request is the base64 PEM"),
        "{stderr}"
    );
}
