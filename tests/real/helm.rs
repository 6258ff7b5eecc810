//! The Helm chart on the real control plane (issue #16): `helm install` creates its objects,
//! the real authorizer lets the chart's ServiceAccount do what the controller needs and not
//! more (approve only the signers of the `signers` value, leases only in the release
//! namespace, events only in `default`, no secrets, no CSR writes), the controller running as
//! that ServiceAccount with the chart's own arguments decides with no 403, and `helm
//! uninstall` removes what the chart made.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{
    Controller, approval_writes, create_as, kubectl, kubectl_ok, manifest, openssl_request, plane,
    serial, wait_csr,
};
use crate::util::run;

const RELEASE: &str = "csrgate-helm";
const NAMESPACE: &str = "csrgate-helm-test";
/// The chart's ServiceAccount: the release name, which already contains the chart's name.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:csrgate-helm-test:csrgate-helm";
/// The signers this release may approve for (`--set signers=...`).
const SIGNERS: [&str; 2] = ["kubernetes.io/kube-apiserver-client", "example.com/allowed"];

/// helm of `make helm`, on the control plane's admin kubeconfig, with its own config dirs.
fn helm(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let helm: PathBuf = csrgate_kube::Binaries::default_dir().join("helm");
    assert!(
        helm.is_file(),
        "{} is missing: run `make helm`",
        helm.display()
    );
    run(Command::new(helm)
        .args(args)
        .arg("--kubeconfig")
        .arg(plane().kubeconfig())
        .current_dir(crate::util::root())
        .env("HELM_CONFIG_HOME", dir.join("helm/config"))
        .env("HELM_CACHE_HOME", dir.join("helm/cache"))
        .env("HELM_DATA_HOME", dir.join("helm/data")))
}

/// The release, uninstalled (and its namespace deleted) when dropped, also when a test panics.
struct Release {
    dir: tempfile::TempDir,
}

impl Release {
    fn install() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A release left by an aborted run would make the install fail.
        let _ = helm(
            dir.path(),
            &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
        );
        let signers = format!("signers={{{}}}", SIGNERS.join(","));
        let (code, stdout, stderr) = helm(
            dir.path(),
            &[
                "install",
                RELEASE,
                "charts/csrgate",
                "--namespace",
                NAMESPACE,
                "--create-namespace",
                "--set",
                &signers,
            ],
        );
        assert_eq!(code, 0, "helm install:\n{stdout}{stderr}");
        assert!(stdout.contains("STATUS: deployed"), "{stdout}");
        Self { dir }
    }

    /// The objects the release made, from `helm get manifest`.
    fn objects(&self) -> Vec<Value> {
        let (code, stdout, stderr) = helm(
            self.dir.path(),
            &["get", "manifest", RELEASE, "-n", NAMESPACE],
        );
        assert_eq!(code, 0, "{stderr}");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&stdout).unwrap();
        documents.into_iter().filter(|d| !d.is_null()).collect()
    }

    fn uninstall(&self) -> (i32, String, String) {
        helm(
            self.dir.path(),
            &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"],
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.uninstall();
        let _ = kubectl(&["delete", "namespace", NAMESPACE, "--wait=false"]);
    }
}

/// `kubectl get` arguments for one object of a manifest.
fn get_args(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap().to_lowercase();
    let group = object["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .map(|(group, _)| format!(".{group}"))
        .unwrap_or_default();
    let mut args = vec![
        "get".to_owned(),
        format!("{kind}{group}"),
        object["metadata"]["name"].as_str().unwrap().to_owned(),
        "-o".to_owned(),
        "json".to_owned(),
    ];
    if let Some(namespace) = object["metadata"]["namespace"].as_str() {
        args.extend(["-n".to_owned(), namespace.to_owned()]);
    }
    args
}

/// What the authorizer answers a SubjectAccessReview for the chart's ServiceAccount.
fn allowed(dir: &Path, verb: &str, resource: &str, name: &str, namespace: &str) -> bool {
    let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
    let (resource, subresource) = resource.split_once(':').unwrap_or((resource, ""));
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": SERVICE_ACCOUNT,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:csrgate-helm-test",
                       "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                   "subresource": subresource, "name": name,
                                   "namespace": namespace},
        },
    });
    let file = dir.join("review.json");
    std::fs::write(&file, review.to_string()).unwrap();
    let answer: Value = serde_json::from_str(&kubectl_ok(&[
        "create",
        "-f",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]))
    .unwrap();
    answer["status"]["allowed"] == true
}

/// (verb, `group/resource[:subresource]`, name, namespace, allowed?)
const ACCESS: [(&str, &str, &str, &str, bool); 23] = [
    // What the controller does.
    (
        "watch",
        "certificates.k8s.io/certificatesigningrequests",
        "",
        "",
        true,
    ),
    (
        "get",
        "certificates.k8s.io/certificatesigningrequests",
        "x",
        "",
        true,
    ),
    (
        "update",
        "certificates.k8s.io/certificatesigningrequests:approval",
        "x",
        "",
        true,
    ),
    (
        "approve",
        "certificates.k8s.io/signers",
        "kubernetes.io/kube-apiserver-client",
        "",
        true,
    ),
    (
        "approve",
        "certificates.k8s.io/signers",
        "example.com/allowed",
        "",
        true,
    ),
    ("watch", "csrgate.dev/csrapprovalpolicies", "", "", true),
    (
        "patch",
        "csrgate.dev/csrapprovalpolicies:status",
        "p",
        "",
        true,
    ),
    ("list", "/nodes", "", "", true),
    (
        "create",
        "authorization.k8s.io/subjectaccessreviews",
        "",
        "",
        true,
    ),
    ("create", "coordination.k8s.io/leases", "", NAMESPACE, true),
    (
        "patch",
        "coordination.k8s.io/leases",
        "csrgate-controller",
        NAMESPACE,
        true,
    ),
    ("create", "events.k8s.io/events", "", "default", true),
    // What it must not.
    (
        "approve",
        "certificates.k8s.io/signers",
        "kubernetes.io/kubelet-serving",
        "",
        false,
    ),
    (
        "approve",
        "certificates.k8s.io/signers",
        "example.com/forbidden",
        "",
        false,
    ),
    (
        "sign",
        "certificates.k8s.io/signers",
        "kubernetes.io/kube-apiserver-client",
        "",
        false,
    ),
    (
        "update",
        "certificates.k8s.io/certificatesigningrequests:status",
        "x",
        "",
        false,
    ),
    (
        "delete",
        "certificates.k8s.io/certificatesigningrequests",
        "x",
        "",
        false,
    ),
    ("update", "csrgate.dev/csrapprovalpolicies", "p", "", false),
    (
        "patch",
        "coordination.k8s.io/leases",
        "another-lease",
        NAMESPACE,
        false,
    ),
    (
        "create",
        "coordination.k8s.io/leases",
        "",
        "kube-system",
        false,
    ),
    ("create", "events.k8s.io/events", "", NAMESPACE, false),
    ("get", "/secrets", "", NAMESPACE, false),
    ("update", "/nodes", "n", "", false),
];

/// A kubeconfig authenticating as the chart's ServiceAccount (`kubectl create token`).
fn service_account_kubeconfig(dir: &Path) -> PathBuf {
    let token = kubectl_ok(&["create", "token", RELEASE, "-n", NAMESPACE, "--duration=1h"]);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(plane().kubeconfig()).unwrap()).unwrap();
    config["users"][0]["user"] = json!({"token": token.trim()});
    let path = dir.join("chart-sa.kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Every object of the release's manifest exists in the cluster, labelled as Helm's.
fn assert_objects_exist(objects: &[Value]) {
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    for object in objects {
        let args = get_args(object);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let live: Value = serde_json::from_str(&kubectl_ok(&args)).unwrap();
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{args:?}"
        );
    }
}

/// Runs the controller as the chart's ServiceAccount, with the arguments of the installed
/// Deployment (and the namespace the downward API would give it), and checks that it approves
/// jane's CSR with no refused write.
fn assert_the_controller_decides_as_the_chart_account(dir: &Path) {
    let deployment: Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "deployment",
        RELEASE,
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]))
    .unwrap();
    let mut extra: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != "controller" && !a.starts_with("--metrics-addr"))
        .map(str::to_owned)
        .collect();
    assert!(extra.contains(&"--leader-elect".to_owned()), "{extra:?}");
    extra.push(format!("--lease-namespace={NAMESPACE}"));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let controller = Controller::start(dir, &service_account_kubeconfig(dir), &extra);
    controller.wait_for_role("leader", 60);
    let (_, pem) = openssl_request(dir, "jane", "/CN=jane/O=dev-team");
    let csr = manifest(
        "jane",
        &pem,
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
    );
    create_as(dir, &[csr], "jane", &["platform-admins"]);
    let decided = wait_csr("jane", 60, |c| c["status"]["conditions"].is_array());
    assert_eq!(
        decided["status"]["conditions"][0]["type"],
        "Approved",
        "{decided:#}\n{}",
        controller.log_text()
    );
    let writes: Vec<(String, String, u16)> = approval_writes()
        .into_iter()
        .filter(|(_, user, _)| user == SERVICE_ACCOUNT)
        .collect();
    assert!(
        writes
            .iter()
            .any(|(csr, _, code)| csr == "jane" && *code == 200)
            && writes.iter().all(|(_, _, code)| *code != 403),
        "{writes:?}"
    );
}

#[test]
fn helm_install_creates_the_chart_and_its_service_account_may_do_what_the_controller_needs_only() {
    let _serial = serial();
    let release = Release::install();
    let dir = release.dir.path();
    let objects = release.objects();
    assert_objects_exist(&objects);

    let wrong: Vec<String> = ACCESS
        .iter()
        .filter(|(verb, resource, name, namespace, expected)| {
            allowed(dir, verb, resource, name, namespace) != *expected
        })
        .map(|(verb, resource, name, namespace, expected)| {
            format!("{verb} {resource} {name:?} in {namespace:?}: expected allowed={expected}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the authorizer disagrees:\n{}",
        wrong.join("\n")
    );

    assert_the_controller_decides_as_the_chart_account(dir);

    // helm uninstall removes the cluster-scoped RBAC too (the CRD stays: Helm never deletes crds/).
    let (code, stdout, stderr) = release.uninstall();
    assert_eq!(code, 0, "{stdout}{stderr}");
    for object in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        let args = get_args(object);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, stderr) = kubectl(&args);
        assert!(
            code != 0 && stderr.contains("NotFound"),
            "{args:?}: {stderr}"
        );
    }
    kubectl_ok(&["get", "crd", "csrapprovalpolicies.csrgate.dev"]);
}

#[test]
fn a_value_of_the_wrong_type_fails_helm_install_with_the_schema_message_and_creates_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = helm(
        dir.path(),
        &[
            "install",
            "csrgate-wrong",
            "charts/csrgate",
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            "replicas=two",
        ],
    );
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("values don't meet the specifications of the schema")
            && stderr.contains("at '/replicas': got string, want integer"),
        "{stderr}"
    );
    let (code, _, stderr) = kubectl(&["get", "clusterrole", "csrgate-wrong-controller"]);
    assert!(code != 0 && stderr.contains("NotFound"), "{stderr}");
    let (_, releases, _) = helm(dir.path(), &["list", "--all-namespaces", "-q"]);
    assert!(!releases.contains("csrgate-wrong"), "{releases}");
}
