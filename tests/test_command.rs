//! `csrgate test`: suites pass on the examples, and a mismatch exits 1 with a diff.

use crate::util::{csrgate, run, write};

#[test]
fn every_example_suite_passes() {
    let (code, stdout, stderr) = run(csrgate().args(["test", "examples/tests"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = stdout.lines().last().unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    assert!(!stdout.contains("FAIL"));
}

#[test]
fn a_mismatch_exits_1_with_a_diff_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let examples = crate::util::repo("examples");
    let suite = write(
        dir.path(),
        "wrong.test.yaml",
        &format!(
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrPolicyTest\nmetadata: {{name: wrong}}\npolicies: [{0}/policies/administrators.yaml]\ncases:\n  - name: expects-approval-of-an-escalation\n    csr: {0}/csrs/jane-masters.yaml\n    expect: {{decision: Approved, reason: PolicyApproved}}\n  - name: right\n    csr: {0}/csrs/jane.yaml\n    expect: {{decision: Approved, reason: PolicyApproved}}\n",
            examples.display()
        ),
    );
    let (code, stdout, _) = run(csrgate().arg("test").arg(&suite));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  wrong/expects-approval-of-an-escalation"),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - decision: Approved\n      + decision: Denied\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - reason: PolicyApproved\n      + reason: PolicyDenied\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ok    wrong/right"));
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn a_suite_with_an_unknown_field_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write(
        dir.path(),
        "bad.test.yaml",
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrPolicyTest\nmetadata: {name: bad}\npolicies: []\ncases:\n  - name: x\n    expcet: {decision: Approved}\n",
    );
    let (code, _, stderr) = run(csrgate().arg("test").arg(&suite));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cases[0].expcet: unknown field `expcet`"),
        "{stderr}"
    );
}
