//! Least privilege, checked by the real authorizer: the controller runs as the
//! ServiceAccount of `deploy/` with exactly the RBAC `kubectl kustomize deploy/` renders.
//! With it the examples decide with no 403; a policy for a signer the ClusterRole does not
//! name is refused by the API server, and csrgate says so and backs off.

use std::time::{Duration, Instant};

use crate::harness::{
    Controller, create_labelled, csr, issued, kubectl_ok, plane, serial, wait_csr,
};
use crate::util::{condition, http};

/// The kinds of `deploy/` that give the controller its identity and rights.
const IDENTITY_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Applies the identity and RBAC objects of `kubectl kustomize deploy/` and returns a
/// kubeconfig authenticating as the ServiceAccount with a token from `kubectl create token`.
fn service_account_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let rendered = kubectl_ok(&["kustomize", "deploy/"]);
    let objects: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let identity: Vec<serde_json::Value> = objects
        .into_iter()
        .filter(|o| IDENTITY_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        identity.iter().any(|o| o["kind"] == "ClusterRole"),
        "deploy/ renders no ClusterRole"
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": identity});
    let file = dir.join("identity.json");
    std::fs::write(&file, list.to_string()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);

    let token = kubectl_ok(&[
        "create",
        "token",
        "csrgate",
        "-n",
        "csrgate-system",
        "--duration=2h",
    ]);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plane().kubeconfig()).unwrap()).unwrap();
    config["users"][0]["name"] = "csrgate".into();
    config["users"][0]["user"] = serde_json::json!({"token": token.trim()});
    config["contexts"][0]["context"]["user"] = "csrgate".into();
    let path = dir.join("csrgate.kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Whether `user` may `verb` the resource, as the API server's authorizer answers a
/// SubjectAccessReview.
fn may(
    dir: &std::path::Path,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "name": name},
        },
    });
    let file = dir.join("review.json");
    std::fs::write(&file, review.to_string()).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "create",
        "-f",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]))
    .unwrap();
    answer["status"]["allowed"] == true
}

/// The value of one metric series in an OpenMetrics text, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn with_the_shipped_rbac_the_examples_decide_and_a_signer_outside_it_is_reported_and_backed_off() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(dir.path());
    // The ServiceAccount can do what the controller needs, and no more, as the authorizer
    // answers a SubjectAccessReview (`kubectl auth can-i` cannot name the group of
    // `signers`, which discovery does not list).
    let sa = "system:serviceaccount:csrgate-system:csrgate";
    assert!(may(
        dir.path(),
        sa,
        "watch",
        "certificates.k8s.io",
        "certificatesigningrequests",
        ""
    ));
    assert!(may(
        dir.path(),
        sa,
        "approve",
        "certificates.k8s.io",
        "signers",
        "kubernetes.io/kube-apiserver-client"
    ));
    assert!(!may(
        dir.path(),
        sa,
        "approve",
        "certificates.k8s.io",
        "signers",
        "example.com/forbidden"
    ));
    assert!(!may(
        dir.path(),
        sa,
        "delete",
        "certificates.k8s.io",
        "certificatesigningrequests",
        ""
    ));
    assert!(!may(dir.path(), sa, "get", "", "secrets", ""));

    for policy in ["administrators", "kubelet-serving", "kubelet-client"] {
        kubectl_ok(&["apply", "-f", &format!("examples/policies/{policy}.yaml")]);
    }
    let forbidden_policy = serde_json::json!({
        "apiVersion": "csrgate.dev/v1alpha1",
        "kind": "CsrApprovalPolicy",
        "metadata": {"name": "outside-rbac"},
        "spec": {
            "signerNames": ["example.com/forbidden"],
            "validations": [{"name": "cn-is-requestor",
                             "expression": "x509.commonName == object.spec.username"}],
        },
    });
    let file = dir.path().join("forbidden-policy.json");
    std::fs::write(&file, forbidden_policy.to_string()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    create_labelled(dir.path(), "examples/nodes/worker-1.yaml");

    let controller = Controller::start(
        dir.path(),
        &kubeconfig,
        &["--leader-elect", "--lease-namespace", "csrgate-system"],
    );

    let create_as = |file: &str, user: &str, group: &str| {
        kubectl_ok(&["create", "--as", user, "--as-group", group, "-f", file]);
    };
    create_as("examples/csrs/jane.yaml", "jane", "platform-admins");
    create_as(
        "examples/csrs/worker-1-serving.yaml",
        "system:node:worker-1",
        "system:nodes",
    );
    create_as(
        "examples/csrs/worker-1-client.yaml",
        "system:node:worker-1",
        "system:nodes",
    );
    // jane's request again, for the signer the ClusterRole does not name.
    let mut jane: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(crate::util::repo("examples/csrs/jane.yaml")).unwrap(),
    )
    .unwrap();
    jane["metadata"]["name"] = "jane-outside-rbac".into();
    jane["spec"]["signerName"] = "example.com/forbidden".into();
    let file = dir.path().join("jane-forbidden.json");
    std::fs::write(&file, jane.to_string()).unwrap();
    create_as(file.to_str().unwrap(), "jane", "platform-admins");
    let created = Instant::now();

    for name in ["jane", "worker-1-serving", "worker-1-client"] {
        let decided = wait_csr(name, 60, |c| condition(c).is_some() && issued(c));
        let (type_, reason, message) = condition(&decided).unwrap();
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Approved", "PolicyApproved"),
            "{name}: {message}\n{}",
            controller.log_text()
        );
    }

    // The signer outside the RBAC: pending, and said where a person looks.
    let events = || -> Vec<serde_json::Value> {
        let out = kubectl_ok(&["get", "events.events.k8s.io", "-n", "default", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        let found = events().into_iter().find(|e| {
            e["reason"] == "ApprovalForbidden" && e["regarding"]["name"] == "jane-outside-rbac"
        });
        if let Some(event) = found {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no ApprovalForbidden event:\n{}",
            controller.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(event["type"], "Warning");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("example.com/forbidden"),
        "{event:#}"
    );
    let policy: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "csrapprovalpolicy",
        "outside-rbac",
        "-o",
        "json",
    ]))
    .unwrap();
    let authorized = policy["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Authorized")
        .cloned()
        .unwrap_or_else(|| panic!("no Authorized condition: {policy:#}"));
    assert_eq!(authorized["status"], "False", "{authorized:#}");
    assert_eq!(authorized["reason"], "ApproveForbidden");

    // Let the retries run, then count them: a backoff, not a loop.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(created.elapsed()));
    let metrics = http(
        "GET",
        &format!("http://{}/metrics", controller.metrics),
        None,
    )
    .1;
    let refused = metric(
        &metrics,
        "csrgate_approvals_forbidden_total{signer=\"example.com/forbidden\"}",
    );
    assert!(
        (1.0..=5.0).contains(&refused),
        "{refused} refused writes in 15 s:\n{metrics}"
    );
    assert!(condition(&csr("jane-outside-rbac")).is_none());
    let log = controller.log_text();
    assert_eq!(
        log.matches("refused the approval write (403)").count(),
        1,
        "one log line per CSR:\n{log}"
    );

    // Apart from that signer, not one call was refused or failed.
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("csrgate_api_errors_total{"))
        .filter(|l| !l.contains("verb=\"update_approval\""))
        .collect();
    assert!(failed.is_empty(), "{failed:?}\n{log}");
    let forbidden_lines: Vec<&str> = log
        .lines()
        // A status code, not digits anywhere: timestamps such as `49.454031Z` contain "403".
        .filter(|l| {
            l.contains(" 403") || l.contains("(403") || l.to_ascii_lowercase().contains("forbidden")
        })
        .filter(|l| !l.contains("example.com/forbidden") && !l.contains("jane-outside-rbac"))
        .collect();
    assert!(forbidden_lines.is_empty(), "{forbidden_lines:#?}");
    assert!(
        metric(
            &metrics,
            "csrgate_approvals_forbidden_total{signer=\"kubernetes.io/kube-apiserver-client\"}"
        ) == 0.0
    );
}
