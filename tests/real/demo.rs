//! `csrgate demo` both ways: every example is decided the same against the real control
//! plane as against the embedded sandbox, and the real cluster is left as it was found.

use std::collections::BTreeMap;

use crate::harness::{kubectl_ok, plane, serial};
use crate::util::{csrgate, run};

/// The demo's JSON rows by CSR name.
fn demo(extra: &[&str]) -> BTreeMap<String, serde_json::Value> {
    let (code, stdout, stderr) = run(csrgate().args(["demo", "-o", "json"]).args(extra));
    assert_eq!(code, 0, "csrgate demo {extra:?}:\n{stdout}{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    rows.into_iter()
        .map(|row| (row["csr"].as_str().unwrap().to_owned(), row))
        .collect()
}

#[test]
fn the_demo_decides_alike_on_the_sandbox_and_on_the_real_control_plane() {
    let _serial = serial();
    let kubeconfig = plane().kubeconfig().to_str().unwrap().to_owned();
    let sandbox = demo(&[]);
    let real = demo(&["--kubeconfig", &kubeconfig]);

    assert_eq!(
        sandbox.keys().collect::<Vec<_>>(),
        real.keys().collect::<Vec<_>>()
    );
    assert!(sandbox.len() >= 9, "{sandbox:#?}");
    for (name, on_sandbox) in &sandbox {
        let on_real = &real[name];
        assert_eq!(
            on_sandbox["decision"], on_real["decision"],
            "{name}: sandbox {on_sandbox:#} real {on_real:#}"
        );
        if on_sandbox["decision"] == "Refused" {
            // The refusal is the API server's own text; the sandbox words it its own way.
            continue;
        }
        assert_eq!(on_sandbox["reason"], on_real["reason"], "{name}");
        assert_eq!(on_sandbox["message"], on_real["message"], "{name}");
        let expected_certificate = match name.as_str() {
            // The sandbox also signs the custom signer csrgate.dev/workload-client; a real
            // cluster has no signer for it until one is installed.
            "payments-api" => "-",
            _ => on_sandbox["certificate"].as_str().unwrap(),
        };
        assert_eq!(
            on_real["certificate"], expected_certificate,
            "{name}: real {on_real:#}"
        );
    }
    assert_eq!(real["jane"]["decision"], "Approved");
    assert_eq!(real["jane"]["certificate"], "issued");
    assert_eq!(real["jane-masters"]["decision"], "Refused");

    // Left as found: nothing the demo labelled remains.
    let left = kubectl_ok(&[
        "get",
        "csr,csrapprovalpolicies,nodes",
        "-l",
        "app.kubernetes.io/managed-by=csrgate-demo",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "the demo left objects behind");
}

#[test]
fn the_demo_refuses_a_cluster_that_already_has_one_of_its_objects() {
    let _serial = serial();
    kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let kubeconfig = plane().kubeconfig().to_str().unwrap().to_owned();
    let (code, stdout, stderr) = run(csrgate().args(["demo", "--kubeconfig", &kubeconfig]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("already exist: CsrApprovalPolicy administrators"),
        "{stderr}"
    );
    // The existing policy is untouched.
    let policy = kubectl_ok(&["get", "csrapprovalpolicy", "administrators", "-o", "name"]);
    assert!(policy.contains("administrators"), "{policy}");
}
