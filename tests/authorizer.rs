//! Issue 13 part 3: the `authorizer` variable answered from RBAC manifests by
//! `csrgate check --rbac`, and what happens without them; and online on the sandbox, a
//! SubjectAccessReview that fails decides nothing until it works again. (On kube-apiserver:
//! `tests/real/authorizer.rs`.)

use crate::util::{Cluster, csrgate, http, run, write};

const KCM: &str = "examples/cookbook/kubelet-client-kcm.yaml";
const KUBEADM: &str = "examples/rbac/kubeadm-node-csr.yaml";
const RENEWAL: &str = "examples/csrs/worker-1-client.yaml";

/// `check --output json` of the KCM-rule policy over the renewal CSR, with `extra` arguments.
fn check(extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["check", "--policy", KCM, "--output", "json"];
    args.extend(extra);
    args.push(RENEWAL);
    let (code, stdout, stderr) = run(csrgate().args(&args));
    let parsed = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (code, parsed, stderr)
}

#[test]
fn rbac_manifests_approve_a_renewal_by_selfnodeclient_and_a_bootstrap_by_nodeclient() {
    let (code, out, stderr) = check(&["--rbac", KUBEADM]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["decision"], "Approved", "{out:#}");
    assert_eq!(out[0]["reason"], "PolicyApproved");
    let (_, out, _) = check(&[
        "--rbac",
        KUBEADM,
        "--as",
        "system:bootstrap:abcdef",
        "--as-group",
        "system:bootstrappers",
    ]);
    assert_eq!(out[0]["decision"], "Approved", "{out:#}");
}

#[test]
fn a_requestor_rbac_does_not_allow_is_left_pending_with_the_policys_message() {
    let (code, out, _) = check(&[
        "--rbac",
        KUBEADM,
        "--as",
        "system:node:worker-2",
        "--as-group",
        "system:nodes",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out[0]["decision"], "Pending", "{out:#}");
    let policy = &out[0]["policies"][0];
    assert_eq!(policy["verdict"], "Fail");
    assert_eq!(
        policy["failures"][0]["message"],
        "the requestor may create neither certificatesigningrequests/selfnodeclient (for its own node) nor certificatesigningrequests/nodeclient"
    );
}

#[test]
fn without_rbac_a_check_errors_and_never_approves() {
    let (code, out, _) = check(&[]);
    assert_eq!(code, 0);
    assert_eq!(out[0]["decision"], "Pending", "{out:#}");
    let message = out[0]["policies"][0]["failures"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("authorization check errored: no RBAC given (--rbac)"),
        "{message}"
    );
}

#[test]
fn rbac_from_a_directory_with_a_kubectl_list_and_a_role_binding_in_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - {name: may-read-team-a-config, expression: \"authorizer.group('').resource('configmaps').namespace('team-a').name('settings').check('get').allowed()\"}\n",
    );
    let rbac = dir.path().join("rbac");
    std::fs::create_dir(&rbac).unwrap();
    write(
        &rbac,
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: rbac.authorization.k8s.io/v1\n    kind: Role\n    metadata: {name: config-reader, namespace: team-a}\n    rules: [{apiGroups: [''], resources: [configmaps], resourceNames: [settings], verbs: [get]}]\n  - apiVersion: rbac.authorization.k8s.io/v1\n    kind: RoleBinding\n    metadata: {name: jane-reads, namespace: team-a}\n    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: config-reader}\n    subjects: [{kind: User, name: jane}]\n",
    );
    let decide = |user: &str| {
        let (code, stdout, stderr) = run(csrgate().args([
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--rbac",
            rbac.to_str().unwrap(),
            "--as",
            user,
            "--output",
            "json",
            "examples/csrs/jane.yaml",
        ]));
        assert_eq!(code, 0, "{stderr}");
        let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        out[0]["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(decide("jane"), "Approved");
    assert_eq!(decide("mallory"), "Denied");
}

#[test]
fn a_document_that_is_not_rbac_is_refused_naming_the_file() {
    let (code, _, stderr) = check(&["--rbac", RENEWAL]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{RENEWAL}: kind is \"CertificateSigningRequest\", expected Role, ClusterRole, RoleBinding or ClusterRoleBinding"
        )),
        "{stderr}"
    );
}

#[test]
fn a_check_with_a_computed_verb_makes_the_policy_invalid_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - {name: v, expression: \"authorizer.group('').resource('nodes').check(object.spec.username).allowed()\"}\n",
    );
    let (code, _, stderr) = run(csrgate().args([
        "check",
        "--policy",
        policy.to_str().unwrap(),
        "examples/csrs/jane.yaml",
    ]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "spec.validations[0].expression: authorizer check(): the verb must be a constant string"
        ),
        "{stderr}"
    );
}

#[test]
fn a_failed_subject_access_review_writes_nothing_and_the_csr_is_decided_once_it_works() {
    let mut cluster = Cluster::start_with(&[
        "--sar-rule",
        "allow,group=system:bootstrappers,verb=create,apiGroup=certificates.k8s.io,resource=certificatesigningrequests/nodeclient",
    ]);
    cluster.kubectl_ok(&["apply", "-f", KCM]);
    let (_, metrics) = cluster.start_controller(&[]);
    cluster.fault(
        "faults/fail",
        Some(r#"{"method":"POST","path_prefix":"/apis/authorization.k8s.io/v1/subjectaccessreviews","status":500,"count":2}"#),
    );
    cluster.kubectl_ok(&[
        "create",
        "-f",
        RENEWAL,
        "--as",
        "system:bootstrap:abcdef",
        "--as-group",
        "system:bootstrappers",
    ]);
    let (type_, reason, _) = cluster
        .wait_for_condition("worker-1-client", 60)
        .expect("decided once the reviews work");
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved")
    );
    let writes = cluster.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w["csr"] == "worker-1-client")
            .count(),
        1,
        "{writes:?}"
    );
    let (_, text) = http("GET", &format!("http://{metrics}/metrics"), None);
    assert!(
        text.contains(r#"csrgate_reconcile_errors_total{error="AccessReviewFailed"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"csrgate_api_errors_total{verb="create_subjectaccessreview"} 2"#),
        "{text}"
    );
}
