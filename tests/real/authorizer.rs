//! Issue 13 part 3 on the real control plane: kube-controller-manager's kubelet client rule
//! as a csrgate policy (`examples/cookbook/kubelet-client-kcm.yaml`), its `authorizer` checks
//! answered by SubjectAccessReviews against the cluster's real default RBAC plus kubeadm's
//! bindings, decides as kube-controller-manager's own `csrapproving` decides; and
//! `csrgate check --rbac` over the same RBAC objects, read back with `kubectl get -o yaml`,
//! decides the same offline, and `csrgate explain` (asking the same reviews) agrees.
//!
//! kube-controller-manager's approver also watches this cluster, so the two are run apart:
//! the built-in one decides CSRs of the kubelet client signer with no csrgate running; csrgate
//! decides the same requests sent to a signer of its own (the policy with only its
//! `signerNames` changed), which the built-in approver ignores, so an Approved there, with
//! reason `PolicyApproved`, can only be csrgate's.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{
    Controller, all_csrs, create_as, create_labelled, decisions, kubectl_ok, manifest,
    openssl_request, plane, serial,
};
use crate::util::{csrgate, run, write};

const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// A signer the built-in approver does not know.
const TEST_SIGNER: &str = "csrgate.dev/kubelet-client-kcm-test";
const POLICY: &str = "examples/cookbook/kubelet-client-kcm.yaml";

/// (case, requestor, groups, subject, what kube-controller-manager does with it).
const CASES: [(&str, &str, &[&str], &str, &str); 5] = [
    (
        "renewal",
        "system:node:kcm-1",
        &["system:nodes"],
        "/O=system:nodes/CN=system:node:kcm-1",
        "Approved",
    ),
    (
        "bootstrap",
        "system:bootstrap:abcdef",
        &["system:bootstrappers"],
        "/O=system:nodes/CN=system:node:kcm-2",
        "Approved",
    ),
    // A node outside the system:nodes group: recognized, but not bound to selfnodeclient.
    // (A node asking for another node's CN is refused by kube-apiserver on create.)
    (
        "not-in-nodes-group",
        "system:node:kcm-3",
        &["kcm-test"],
        "/O=system:nodes/CN=system:node:kcm-3",
        "Pending",
    ),
    (
        "no-binding",
        "jane",
        &["developers"],
        "/O=system:nodes/CN=system:node:kcm-5",
        "Pending",
    ),
    (
        "extra-org",
        "system:bootstrap:abcdef",
        &["system:bootstrappers"],
        "/O=system:nodes/O=extra/CN=system:node:kcm-6",
        "Pending",
    ),
];

/// Creates one CSR per case for `signer`, named `<prefix>-<case>`, each as its requestor.
fn create_cases(dir: &std::path::Path, prefix: &str, signer: &str) {
    for (case, user, groups, subject, _) in CASES {
        let name = format!("{prefix}-{case}");
        let (_, pem) = openssl_request(dir, &name, subject);
        let csr = manifest(&name, &pem, signer, &["digital signature", "client auth"]);
        create_as(dir, &[csr], user, groups);
    }
}

/// Waits until every case expected Approved is, then a little more, and returns each CSR's
/// outcome (`Approved`, `Denied`, `Pending`) and Approved reason, by case.
fn outcomes(prefix: &str) -> BTreeMap<&'static str, (String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut settled_since = None;
    loop {
        let csrs = all_csrs();
        let got: BTreeMap<&str, (String, String)> = CASES
            .iter()
            .map(|(case, ..)| {
                let csr = &csrs[&format!("{prefix}-{case}")];
                let outcome = decisions(csr)
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "Pending".to_owned());
                let reason = csr["status"]["conditions"][0]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (*case, (outcome, reason))
            })
            .collect();
        let approved = CASES
            .iter()
            .filter(|c| c.4 == "Approved")
            .all(|(case, ..)| got[case].0 == "Approved");
        if approved {
            // Give the approver time to (wrongly) decide the others too.
            let since = *settled_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                return got;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{prefix}: not decided in time: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn issue_13_the_kcm_rule_policy_decides_as_kube_controller_manager_online_and_offline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    create_labelled(
        dir.path(),
        "tests/real/fixtures/kubeadm-node-csr-bindings.yaml",
    );

    // kube-controller-manager alone, on its own signer.
    create_cases(dir.path(), "builtin", KUBELET_CLIENT);
    let builtin = outcomes("builtin");
    for (case, .., expected) in CASES {
        assert_eq!(builtin[case].0, expected, "kube-controller-manager, {case}");
        if expected == "Approved" {
            assert_eq!(builtin[case].1, "AutoApproved", "{case}");
        }
    }

    // csrgate alone, the same rule on a signer of its own.
    let policy = std::fs::read_to_string(crate::util::repo(POLICY))
        .unwrap()
        .replace(KUBELET_CLIENT, TEST_SIGNER);
    assert!(policy.contains(TEST_SIGNER));
    let policy_file = write(dir.path(), "kcm-test-signer.yaml", &policy);
    kubectl_ok(&["apply", "-f", policy_file.to_str().unwrap()]);
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    create_cases(dir.path(), "csrgate", TEST_SIGNER);
    let online = outcomes("csrgate");
    for (case, .., expected) in CASES {
        assert_eq!(online[case].0, expected, "csrgate, {case}");
        if expected == "Approved" {
            assert_eq!(online[case].1, "PolicyApproved", "{case}");
        }
    }
    let metrics = crate::util::http(
        "GET",
        &format!("http://{}/metrics", controller.metrics),
        None,
    )
    .1;
    assert!(
        !metrics.contains("AccessReviewFailed") && !metrics.contains("create_subjectaccessreview"),
        "{metrics}"
    );
    drop(controller);

    // `csrgate explain` asks the same SubjectAccessReviews and agrees with what was decided.
    for (case, .., expected) in CASES {
        let name = format!("csrgate-{case}");
        let (code, stdout, stderr) = run(csrgate()
            .args(["explain", &name, "-o", "json", "--kubeconfig"])
            .arg(plane().kubeconfig()));
        assert_eq!(code, 0, "{stderr}");
        let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(explained["now"]["decision"], expected, "{explained:#}");
        assert!(!stdout.contains("errored"), "{explained:#}");
    }

    // Offline: the same RBAC objects as the cluster serves them.
    let roles = kubectl_ok(&[
        "get",
        "clusterrole",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "-o",
        "yaml",
    ]);
    let bindings = kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "-l",
        crate::harness::TEST_LABEL,
        "-o",
        "yaml",
    ]);
    let roles = write(dir.path(), "roles.yaml", &roles);
    let bindings = write(dir.path(), "bindings.yaml", &bindings);
    for (prefix, policy, expected) in [
        ("builtin", crate::util::repo(POLICY), &builtin),
        ("csrgate", policy_file.clone(), &online),
    ] {
        let names: Vec<String> = CASES.iter().map(|c| format!("{prefix}-{}", c.0)).collect();
        let mut args = vec!["get", "csr", "-o", "yaml"];
        args.extend(names.iter().map(String::as_str));
        let csrs = write(
            dir.path(),
            &format!("{prefix}-csrs.yaml"),
            &kubectl_ok(&args),
        );
        let (code, stdout, stderr) = run(csrgate().args([
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--rbac",
            roles.to_str().unwrap(),
            "--rbac",
            bindings.to_str().unwrap(),
            "--output",
            "json",
            csrs.to_str().unwrap(),
        ]));
        assert_eq!(code, 0, "{stderr}");
        let offline: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        assert_eq!(offline.len(), CASES.len(), "{stdout}");
        for (case, ..) in CASES {
            let name = format!("{prefix}-{case}");
            let report = offline.iter().find(|r| r["csr"] == name.as_str()).unwrap();
            assert_eq!(
                report["decision"], expected[case].0,
                "offline {name}: {report:#}"
            );
        }
    }
}
