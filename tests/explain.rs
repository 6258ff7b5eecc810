//! `csrgate explain` against `csrgate sandbox`: the recorded decision, the one csrgate makes
//! now, each validation, and what changed when they differ. The same on the real control
//! plane is in `tests/real/explain.rs`.

use crate::util::{Cluster, csrgate, run};

/// `csrgate explain NAME -o json` against the cluster; (exit code, parsed stdout, stderr).
fn explain(cluster: &Cluster, name: &str) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = run(csrgate()
        .args(["explain", name, "-o", "json", "--kubeconfig"])
        .arg(&cluster.kubeconfig));
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr,
    )
}

const POLICY: &str = "apiVersion: csrgate.dev/v1alpha1
kind: CsrApprovalPolicy
metadata: {name: jane-only}
spec:
  signerNames: [kubernetes.io/kube-apiserver-client]
  validations:
    - name: cn-is-requestor
      expression: x509.commonName == object.spec.username
      message: the CN must name the requestor
    - name: short-lived
      expression: object.spec.expirationSeconds <= LIMIT
      message: at most LIMIT seconds
";

fn apply_policy(cluster: &Cluster, limit: u32) {
    let path = cluster.dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY.replace("LIMIT", &limit.to_string())).unwrap();
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn explain_shows_the_recorded_decision_each_validation_and_what_changed_since() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"]);
    apply_policy(&cluster, 86_400);
    cluster.start_controller(&[]);
    cluster.kubectl_ok(&["create", "-f", "examples/csrs/jane.yaml", "--as", "jane"]);
    let (type_, reason, _) = cluster.wait_for_condition("jane", 20).unwrap();
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved")
    );

    let (code, first, stderr) = explain(&cluster, "jane");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["recorded"]["type"], "Approved", "{first:#}");
    assert_eq!(first["recorded"]["by"], "csrgate", "{first:#}");
    assert_eq!(first["now"]["decision"], "Approved", "{first:#}");
    assert_eq!(first["agrees"], true, "{first:#}");
    let validations = &first["policies"][0]["validations"];
    assert_eq!(validations[0]["name"], "cn-is-requestor");
    assert_eq!(validations[0]["result"], "true", "{first:#}");
    assert_eq!(validations[1]["result"], "true", "{first:#}");

    // A new generation that approves all the same: the same decision, only the message
    // (which names the generation) differs.
    apply_policy(&cluster, 86_401);
    let (_, same, _) = explain(&cluster, "jane");
    assert_eq!(same["agrees"], true, "{same:#}");
    let verdict = same["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("only its message differs")
            && verdict.contains("\"jane-only\" changed since (generation 1 then, 2 now)"),
        "{verdict}"
    );

    // jane's CSR asks for 24 h; the policy now allows an hour: the recorded approval stays,
    // csrgate would deny it now, and explain names the policy and both generations.
    apply_policy(&cluster, 3_600);
    let (code, now, stderr) = explain(&cluster, "jane");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(now["agrees"], false, "{now:#}");
    assert_eq!(now["now"]["decision"], "Denied", "{now:#}");
    assert_eq!(now["recorded"]["policies"][0]["name"], "jane-only");
    assert_eq!(now["recorded"]["policies"][0]["generation"], 1);
    assert_eq!(now["recorded"]["policies"][0]["currentGeneration"], 3);
    let failed = &now["policies"][0]["validations"][1];
    assert_eq!(failed["result"], "false", "{now:#}");
    assert_eq!(failed["message"], "at most 3600 seconds", "{now:#}");
    let verdict = now["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("DIFFERS")
            && verdict.contains("\"jane-only\" changed since (generation 1 then, 3 now)"),
        "{verdict}"
    );

    // The text form says the same in one screen.
    let (code, text, stderr) = run(csrgate()
        .args(["explain", "jane", "--kubeconfig"])
        .arg(&cluster.kubeconfig));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains("Recorded:   Approved (PolicyApproved) by csrgate"),
        "{text}"
    );
    assert!(text.contains("Now:        Denied (PolicyDenied)"), "{text}");
    assert!(
        text.contains("FAIL  short-lived: at most 3600 seconds"),
        "{text}"
    );
    assert!(text.lines().count() <= 25, "{text}");
}

#[test]
fn explain_says_when_a_person_decided() {
    let cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"]);
    apply_policy(&cluster, 3_600);
    cluster.kubectl_ok(&["create", "-f", "examples/csrs/jane.yaml", "--as", "jane"]);
    cluster.kubectl_ok(&["certificate", "approve", "jane"]);
    let (code, explained, stderr) = explain(&cluster, "jane");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(explained["recorded"]["by"], "other", "{explained:#}");
    assert_eq!(
        explained["recorded"]["reason"], "KubectlApprove",
        "{explained:#}"
    );
    let verdict = explained["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("by a person or another approver (reason KubectlApprove), not by csrgate")
            && verdict.contains("csrgate would decide Denied now"),
        "{verdict}"
    );
}

#[test]
fn explain_of_a_missing_csr_or_without_policies_is_one_line_and_exit_2() {
    let cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"]);
    cluster.kubectl_ok(&["create", "-f", "examples/csrs/jane.yaml", "--as", "jane"]);
    let (code, _, stderr) = explain(&cluster, "jane");
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "error: no CsrApprovalPolicy in the cluster: csrgate decides nothing there"
    );
    apply_policy(&cluster, 3_600);
    let (code, _, stderr) = explain(&cluster, "nobody");
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "error: CertificateSigningRequest \"nobody\" not found"
    );
}
