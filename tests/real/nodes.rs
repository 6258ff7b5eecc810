//! Issue #12 part 2 on the real server: a kubelet serving CSR that arrives before its Node,
//! and then before the Node's addresses, stays pending under the cookbook's wait-for-node
//! policy, and is approved, once, when the kubelet writes the addresses (a Node update
//! re-runs the pending CSRs of that node); kube-controller-manager then signs it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{
    Controller, TEST_LABEL, assert_decided_once, csr, decisions, issued, kubectl_ok, kubectl_stdin,
    plane, serial, wait_csr,
};

/// The CSR's name, unique in the shared control plane's audit log.
const CSR: &str = "issue-12-worker-1-serving";

#[test]
fn issue_12_a_serving_csr_waits_for_its_node_and_is_approved_once_it_has_addresses() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(&[
        "apply",
        "-f",
        "examples/cookbook/kubelet-serving-wait-for-node.yaml",
    ]);
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    // worker-1's serving request under a name of its own: the audit log is shared by every
    // test of this binary, and the demo test submits `worker-1-serving` too.
    let text =
        std::fs::read_to_string(crate::util::repo("examples/csrs/worker-1-serving.yaml")).unwrap();
    let mut manifest: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    manifest["metadata"]["name"] = serde_json::json!(CSR);
    let (code, _, stderr) = kubectl_stdin(
        &[
            "create",
            "-f",
            "-",
            "--as",
            "system:node:worker-1",
            "--as-group",
            "system:nodes",
        ],
        &manifest.to_string(),
    );
    assert_eq!(code, 0, "{stderr}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        decisions(&csr(CSR)).is_empty(),
        "pending while there is no Node:\n{}",
        controller.log_text()
    );
    // The Node as a person or a kubelet first creates it: no addresses.
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "worker-1", "labels": {TEST_LABEL: "nodes"}},
    });
    let (code, _, stderr) = kubectl_stdin(&["create", "-f", "-"], &node.to_string());
    assert_eq!(code, 0, "{stderr}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        decisions(&csr(CSR)).is_empty(),
        "pending (not denied) while the Node has no addresses:\n{}",
        controller.log_text()
    );
    kubectl_ok(&[
        "patch",
        "node",
        "worker-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.11"},{"type":"Hostname","address":"worker-1"},{"type":"InternalDNS","address":"worker-1.cluster.internal"}]}}"#,
    ]);
    let expected = BTreeMap::from([(CSR.to_owned(), "Approved")]);
    assert_decided_once(&expected, 60);
    let signed = wait_csr(CSR, 60, issued);
    assert_eq!(
        signed["status"]["conditions"][0]["reason"], "PolicyApproved",
        "{signed:#}"
    );
}
