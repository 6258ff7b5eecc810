//! Next to the built-in approver: kube-controller-manager's `csrapproving` approves kubelet
//! client CSRs of nodes allowed `selfnodeclient`; csrgate's kubelet-client policy covers the
//! same signer. They race, and no CSR ever carries both Approved and Denied, and csrgate never
//! writes after another approver decided.

use std::collections::BTreeMap;

use crate::harness::{
    Controller, approval_writes, assert_decided_once, create_as, create_labelled, kubectl_ok,
    manifest, openssl_request, plane, serial,
};

const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";

#[test]
fn csrgate_and_the_built_in_approver_never_both_decide_a_kubelet_client_csr() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // As kubeadm binds it: nodes may renew their own client certificate, which is what the
    // built-in approver checks with a SubjectAccessReview.
    create_labelled(dir.path(), "tests/real/fixtures/selfnodeclient.yaml");
    kubectl_ok(&["apply", "-f", "examples/policies/kubelet-client.yaml"]);
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);

    let mut expected = BTreeMap::new();
    for i in 0..20 {
        let node = format!("system:node:race-{i}");
        // Every other node asks for an extra organization: csrgate denies it, the built-in
        // approver does not approve it (it only ever approves).
        let subject = if i % 2 == 0 {
            format!("/O=system:nodes/CN={node}")
        } else {
            format!("/O=system:nodes/O=extra/CN={node}")
        };
        let name = format!("race-{i:02}");
        let (_, pem) = openssl_request(dir.path(), &name, &subject);
        let csr = manifest(
            &name,
            &pem,
            KUBELET_CLIENT,
            &["digital signature", "client auth"],
        );
        create_as(dir.path(), &[csr], &node, &["system:nodes"]);
        expected.insert(name, if i % 2 == 0 { "Approved" } else { "Denied" });
    }
    assert_decided_once(&expected, 90);

    let writes = approval_writes();
    let mut by_builtin = 0;
    for name in expected.keys() {
        let ok: Vec<&(String, String, u16)> = writes
            .iter()
            .filter(|(csr, _, code)| csr == name && *code < 300)
            .collect();
        assert_eq!(ok.len(), 1, "{name}: {ok:?}");
        if ok[0].1 != "kubernetes-admin" {
            assert_eq!(
                ok[0].1, "system:serviceaccount:kube-system:certificate-controller",
                "{name}"
            );
            by_builtin += 1;
        }
    }
    eprintln!("built-in approver decided {by_builtin} of 20, csrgate the rest");
    drop(controller);
}
