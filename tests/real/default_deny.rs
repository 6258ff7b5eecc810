//! Issue #13 part 1 on the real server: with csrgate the only approver of a signer
//! (`examples/cookbook/access-default-deny.yaml`, `defaultAction: Deny`), a CSR no policy
//! approves is denied once with reason NoPolicyApproved, naming why each policy did not
//! approve; one the policy approves is approved as before.

use std::collections::BTreeMap;

use crate::harness::{
    Controller, assert_decided_once, create_as, csr, kubectl_ok, manifest, openssl_request, plane,
    serial,
};

const SIGNER: &str = "access.example.com/kube-admin";

#[test]
fn issue_13_default_action_deny_denies_a_csr_no_policy_approved_with_no_policy_approved() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(&["apply", "-f", "examples/cookbook/access-default-deny.yaml"]);
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);

    let (_, sam) = openssl_request(dir.path(), "sam", "/CN=sam/O=sre");
    let (_, mallory) = openssl_request(dir.path(), "mallory", "/CN=mallory/O=developers");
    let approved = "issue-13-default-deny-sam";
    let denied = "issue-13-default-deny-mallory";
    create_as(
        dir.path(),
        &[manifest(approved, &sam, SIGNER, &["client auth"])],
        "sam",
        &["sre"],
    );
    create_as(
        dir.path(),
        &[manifest(denied, &mallory, SIGNER, &["client auth"])],
        "mallory",
        &["developers"],
    );
    let expected = BTreeMap::from([
        (approved.to_owned(), "Approved"),
        (denied.to_owned(), "Denied"),
    ]);
    assert_decided_once(&expected, 60);

    let condition = &csr(denied)["status"]["conditions"][0];
    assert_eq!(
        condition["reason"],
        "NoPolicyApproved",
        "{condition:#}\n{}",
        controller.log_text()
    );
    assert_eq!(
        condition["message"],
        r#"csrgate: no CsrApprovalPolicy approved this CSR and defaultAction is Deny in CsrApprovalPolicy "sre-access-default-deny" (generation 1): CsrApprovalPolicy "contractor-access" (generation 1): matchCondition "is-contractor" is false; CsrApprovalPolicy "sre-access-default-deny" (generation 1): matchCondition "is-sre" is false"#
    );
    assert_eq!(
        csr(approved)["status"]["conditions"][0]["reason"],
        "PolicyApproved"
    );
}
