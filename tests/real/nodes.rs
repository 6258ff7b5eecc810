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
    kubectl_ok(&[
        "create",
        "-f",
        "examples/csrs/worker-1-serving.yaml",
        "--as",
        "system:node:worker-1",
        "--as-group",
        "system:nodes",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        decisions(&csr("worker-1-serving")).is_empty(),
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
        decisions(&csr("worker-1-serving")).is_empty(),
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
    let expected = BTreeMap::from([("worker-1-serving".to_owned(), "Approved")]);
    assert_decided_once(&expected, 60);
    let signed = wait_csr("worker-1-serving", 60, issued);
    assert_eq!(
        signed["status"]["conditions"][0]["reason"], "PolicyApproved",
        "{signed:#}"
    );
}
