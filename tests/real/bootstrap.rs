//! Issue #13 part 2 on the real server: a kubelet joining with a bootstrap token
//! (`system:bootstrap:<id>`, group system:bootstrappers) gets a client certificate for a
//! name that is not yet a Node, and is denied the name of a Node that exists (a takeover),
//! under `examples/cookbook/kubelet-bootstrap-new-nodes-only.yaml` and its `subjectNode`.

use std::collections::BTreeMap;

use crate::harness::{
    Controller, TEST_LABEL, assert_decided_once, create_as, csr, issued, kubectl_ok, kubectl_stdin,
    manifest, openssl_request, plane, serial, wait_csr,
};

const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const EXISTING: &str = "issue-13-worker";

#[test]
fn issue_13_a_bootstrap_token_gets_a_new_nodes_name_but_not_an_existing_nodes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(&[
        "apply",
        "-f",
        "examples/cookbook/kubelet-bootstrap-new-nodes-only.yaml",
    ]);
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": EXISTING, "labels": {TEST_LABEL: "bootstrap"}},
    });
    let (code, _, stderr) = kubectl_stdin(&["create", "-f", "-"], &node.to_string());
    assert_eq!(code, 0, "{stderr}");
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);

    let (_, takeover) = openssl_request(
        dir.path(),
        "takeover",
        &format!("/CN=system:node:{EXISTING}/O=system:nodes"),
    );
    let (_, joining) = openssl_request(
        dir.path(),
        "joining",
        "/CN=system:node:issue-13-new-worker/O=system:nodes",
    );
    let usages = ["digital signature", "client auth"];
    let denied = "issue-13-bootstrap-takeover";
    let approved = "issue-13-bootstrap-new-node";
    create_as(
        dir.path(),
        &[
            manifest(denied, &takeover, SIGNER, &usages),
            manifest(approved, &joining, SIGNER, &usages),
        ],
        "system:bootstrap:abcdef",
        &["system:bootstrappers"],
    );
    let expected = BTreeMap::from([
        (approved.to_owned(), "Approved"),
        (denied.to_owned(), "Denied"),
    ]);
    assert_decided_once(&expected, 60);

    let refused = csr(denied);
    assert_eq!(refused["spec"]["username"], "system:bootstrap:abcdef");
    let condition = &refused["status"]["conditions"][0];
    assert_eq!(condition["reason"], "PolicyDenied", "{condition:#}");
    assert!(
        condition["message"].as_str().unwrap().contains(&format!(
            "not-yet-a-node: a Node named {EXISTING} already exists: a bootstrap token may not take over its identity"
        )),
        "{condition:#}\n{}",
        controller.log_text()
    );
    // kube-controller-manager signs what csrgate approved.
    let signed = wait_csr(approved, 60, issued);
    assert_eq!(
        signed["status"]["conditions"][0]["reason"],
        "PolicyApproved"
    );
}

/// A CSR whose policy waits for the Node its CN names (a matchCondition on `subjectNode`)
/// is decided when that Node appears: the Node watch re-queues the pending CSRs naming it.
#[test]
fn issue_13_a_csr_waiting_for_the_node_its_cn_names_is_decided_when_the_node_appears() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let signer = "csrgate.dev/issue-13-subject";
    let late = "issue-13-late-worker";
    let policy = serde_json::json!({
        "apiVersion": "csrgate.dev/v1alpha1",
        "kind": "CsrApprovalPolicy",
        "metadata": {"name": "wait-for-subject-node"},
        "spec": {
            "signerNames": [signer],
            "matchConditions": [{"name": "named-node-exists", "expression": "subjectNode != null"}],
            "validations": [{"name": "cn-names-it",
                             "expression": "x509.commonName == 'system:node:' + subjectNode.metadata.name"}],
        },
    });
    let (code, _, stderr) = kubectl_stdin(&["apply", "-f", "-"], &policy.to_string());
    assert_eq!(code, 0, "{stderr}");
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    let (_, pem) = openssl_request(
        dir.path(),
        "late",
        &format!("/CN=system:node:{late}/O=system:nodes"),
    );
    let name = "issue-13-waits-for-subject-node";
    create_as(
        dir.path(),
        &[manifest(name, &pem, signer, &["client auth"])],
        "jane",
        &["platform-admins"],
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        crate::harness::decisions(&csr(name)).is_empty(),
        "pending while no Node is named {late}:\n{}",
        controller.log_text()
    );
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": late, "labels": {TEST_LABEL: "bootstrap"}},
    });
    let (code, _, stderr) = kubectl_stdin(&["create", "-f", "-"], &node.to_string());
    assert_eq!(code, 0, "{stderr}");
    let expected = BTreeMap::from([(name.to_owned(), "Approved")]);
    assert_decided_once(&expected, 30);
}
