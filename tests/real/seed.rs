//! The seed's story on the real thing: jane makes a key and a CSR with openssl, csrgate
//! approves it under the administrators example, kube-controller-manager's signer issues
//! the certificate, and the certificate authenticates jane to the same API server.

use std::path::Path;

use base64::Engine as _;

use crate::harness::{
    Controller, csr, issued, kubectl_ok, kubectl_stdin, manifest, openssl_request, plane, serial,
    wait_csr,
};
use crate::util::{condition, csrgate, run};

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// `kubectl create` of a client-certificate CSR as jane in platform-admins, as she would
/// with the admin's `--as`: (exit code, stdout, stderr).
fn create_as_jane(name: &str, pem: &str) -> (i32, String, String) {
    kubectl_stdin(
        &[
            "create",
            "--as",
            "jane",
            "--as-group",
            "platform-admins",
            "-f",
            "-",
        ],
        &manifest(name, pem, CLIENT, &["client auth"]).to_string(),
    )
}

/// `kubectl auth whoami` with `kubeconfig`: (username, groups).
fn whoami(kubeconfig: &Path) -> (String, Vec<String>) {
    let out = kubectl_ok(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "auth",
        "whoami",
        "-o",
        "json",
    ]);
    let review: serde_json::Value = serde_json::from_str(&out).unwrap();
    let user = &review["status"]["userInfo"];
    (
        user["username"].as_str().unwrap_or_default().to_owned(),
        user["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect(),
    )
}

#[test]
fn jane_is_approved_by_policy_signed_by_the_real_signer_and_authenticates_as_jane() {
    let _serial = serial();
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let controller = Controller::start(dir.path(), plane.kubeconfig(), &[]);

    let (key, pem) = openssl_request(dir.path(), "jane", "/CN=jane/O=platform-admins");
    let (code, stdout, stderr) = create_as_jane("jane", &pem);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        csr("jane")["spec"]["username"],
        "jane",
        "the API server records the requestor"
    );

    let decided = wait_csr("jane", 60, |c| condition(c).is_some() && issued(c));
    let (type_, reason, message) = condition(&decided).unwrap();
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved"),
        "{message}\n{}",
        controller.log_text()
    );
    assert_eq!(
        message,
        "csrgate: approved by CsrApprovalPolicy \"administrators\" (generation 1)"
    );

    let certificate = base64::engine::general_purpose::STANDARD
        .decode(decided["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let crt = dir.path().join("jane.crt");
    std::fs::write(&crt, certificate).unwrap();
    let kubeconfig = plane.write_kubeconfig("jane", &crt, &key).unwrap();
    let (user, groups) = whoami(&kubeconfig);
    assert_eq!(user, "jane");
    assert!(
        groups.iter().any(|g| g == "platform-admins")
            && groups.iter().any(|g| g == "system:authenticated"),
        "{groups:?}"
    );
}

#[test]
fn the_real_api_server_refuses_a_system_masters_client_request_before_csrgate_sees_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_, pem) = openssl_request(dir.path(), "jane-masters", "/CN=jane/O=system:masters");
    let (code, _, stderr) = create_as_jane("jane-masters", &pem);
    assert_ne!(code, 0, "CertificateSubjectRestriction must refuse it");
    assert!(stderr.contains("system:masters"), "{stderr}");
}

#[test]
fn csrgate_request_gets_jane_a_working_kubeconfig_from_the_real_signer() {
    let _serial = serial();
    let plane = plane();
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let _controller = Controller::start(dir.path(), plane.kubeconfig(), &[]);

    // jane submits through a kubeconfig that impersonates her, as `kubectl --as` does.
    let mut admin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plane.kubeconfig()).unwrap()).unwrap();
    admin["users"][0]["user"]["as"] = "jane".into();
    admin["users"][0]["user"]["as-groups"] = serde_json::json!(["platform-admins"]);
    let as_jane = dir.path().join("as-jane.kubeconfig");
    std::fs::write(&as_jane, admin.to_string()).unwrap();

    let out = dir.path().join("out");
    let (code, stdout, stderr) = run(csrgate()
        .args([
            "request",
            "--name",
            "jane",
            "--cn",
            "jane",
            "--org",
            "platform-admins",
            "--signer",
            "kubernetes.io/kube-apiserver-client",
            "--usages",
            "client auth",
            "--expiration",
            "24h",
            "--timeout",
            "90s",
            "--kubeconfig",
        ])
        .arg(&as_jane)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("approved (PolicyApproved"), "{stderr}");
    let (user, groups) = whoami(&out.join("jane.kubeconfig"));
    assert_eq!(user, "jane");
    assert!(groups.iter().any(|g| g == "platform-admins"), "{groups:?}");
}
