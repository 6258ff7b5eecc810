//! The Helm chart (charts/csrgate): `helm lint` passes; with default values it renders the
//! same RBAC rules, bindings, controller arguments and security context as `kubectl kustomize
//! deploy/` (compared as parsed objects, so that the two installs never drift); values change
//! what they say; a value of the wrong type fails with the schema's message; the chart's CRD is
//! the generated one. helm and kubectl are those `make helm` and `make kube` build.
//! The install into the real control plane is tests/real/helm.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::{repo, run};

/// The binary `make kube` / `make helm` built into target/kube/bin (or `CSRGATE_KUBE_BIN`).
pub fn kube_bin(name: &str) -> PathBuf {
    let path = csrgate_kube::Binaries::default_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make kube helm`",
        path.display()
    );
    path
}

/// `helm ARGS`, from the repository root: (exit code, stdout, stderr).
pub fn helm(args: &[&str]) -> (i32, String, String) {
    run(Command::new(kube_bin("helm"))
        .args(args)
        .current_dir(repo(""))
        // No helm configuration or cache of the machine's user is read or written.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("csrgate-helm/config"),
        )
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("csrgate-helm/cache"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("csrgate-helm/data"),
        ))
}

/// Parses multi-document YAML into its objects (empty documents dropped).
pub fn objects(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// `helm template csrgate charts/csrgate -n csrgate-system` with extra arguments.
fn template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "csrgate",
        "charts/csrgate",
        "--namespace",
        "csrgate-system",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = helm(&args);
    assert_eq!(code, 0, "helm {args:?} failed:\n{stderr}");
    objects(&stdout)
}

/// `kubectl kustomize DIR` with the kubectl of `make kube`.
fn kustomize(dir: &str) -> Vec<Value> {
    let (code, stdout, stderr) = run(Command::new(kube_bin("kubectl"))
        .arg("kustomize")
        .arg(repo(dir)));
    assert_eq!(code, 0, "kubectl kustomize {dir} failed:\n{stderr}");
    objects(&stdout)
}

/// `Kind namespace/name` of an object.
fn key(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The objects of `kinds`, by [`key`], each reduced by `part`.
fn by_key(
    objects: &[Value],
    kinds: &[&str],
    part: impl Fn(&Value) -> Value,
) -> BTreeMap<String, Value> {
    objects
        .iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or_default()))
        .map(|o| (key(o), part(o)))
        .collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// What the controller is and may do, from a rendered install: the rules of every Role and
/// ClusterRole, the role and subjects of every binding, and the Deployment's Pod settings
/// that matter (arguments, environment, probes, ports, resources, security contexts, ...).
fn contract(objects: &[Value]) -> Value {
    let roles = by_key(objects, &["Role", "ClusterRole"], |o| o["rules"].clone());
    let bindings = by_key(
        objects,
        &["RoleBinding", "ClusterRoleBinding"],
        |o| json!({"roleRef": o["roleRef"], "subjects": o["subjects"]}),
    );
    let deployment = one(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    json!({
        "roles": roles,
        "bindings": bindings,
        "replicas": deployment["spec"]["replicas"],
        "strategy": deployment["spec"]["strategy"],
        "serviceAccountName": pod["serviceAccountName"],
        "automountServiceAccountToken": pod["automountServiceAccountToken"],
        "terminationGracePeriodSeconds": pod["terminationGracePeriodSeconds"],
        "podSecurityContext": pod["securityContext"],
        "containers": pod["containers"].as_array().map(Vec::len),
        "image": container["image"],
        "args": container["args"],
        "env": container["env"],
        "ports": container["ports"],
        "livenessProbe": container["livenessProbe"],
        "readinessProbe": container["readinessProbe"],
        "resources": container["resources"],
        "securityContext": container["securityContext"],
        "serviceAccounts": by_key(objects, &["ServiceAccount"], |_| Value::Null),
        "servicePorts": one(objects, "Service")["spec"]["ports"],
        "pdb": one(objects, "PodDisruptionBudget")["spec"]["minAvailable"],
    })
}

/// The differences between two contracts, one line per top-level field.
fn differences(chart: &Value, deploy: &Value) -> Vec<String> {
    let (Some(chart), Some(deploy)) = (chart.as_object(), deploy.as_object()) else {
        return vec!["not objects".to_owned()];
    };
    deploy
        .iter()
        .filter(|(field, value)| chart.get(*field) != Some(value))
        .map(|(field, value)| {
            format!(
                "{field}:\n  deploy/: {value}\n  chart:   {}",
                chart.get(field).unwrap_or(&Value::Null)
            )
        })
        .collect()
}

#[test]
fn helm_lint_passes_on_the_chart() {
    let (code, stdout, stderr) = helm(&["lint", "--strict", "charts/csrgate"]);
    assert_eq!(code, 0, "helm lint:\n{stdout}{stderr}");
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    // And with every optional object and switch turned the other way.
    let (code, stdout, stderr) = helm(&[
        "lint",
        "--strict",
        "charts/csrgate",
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
        "--set",
        "leaderElection.enabled=false,replicas=1,nodeWatch=false,dryRun=true,podDisruptionBudget.enabled=false",
        "--set",
        "image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    assert_eq!(code, 0, "helm lint with options:\n{stdout}{stderr}");
}

#[test]
fn the_chart_with_defaults_renders_the_rbac_args_and_security_context_of_deploy() {
    let chart = template(&[]);
    let deploy = kustomize("deploy");
    let differ = differences(&contract(&chart), &contract(&deploy));
    assert!(
        differ.is_empty(),
        "the chart and deploy/ differ (change both, or explain why):\n{}",
        differ.join("\n")
    );
    // The chart installs into the release namespace, which Helm creates: every namespaced
    // object but the events Role (and its binding) is there.
    for object in &chart {
        let namespace = object["metadata"]["namespace"].as_str();
        let events = object["metadata"]["name"] == "csrgate-events";
        match object["kind"].as_str().unwrap() {
            "ClusterRole" | "ClusterRoleBinding" => assert_eq!(namespace, None, "{}", key(object)),
            _ if events => assert_eq!(namespace, Some("default"), "{}", key(object)),
            _ => assert_eq!(namespace, Some("csrgate-system"), "{}", key(object)),
        }
    }
}

#[test]
fn the_comparison_with_deploy_catches_a_changed_rule_argument_or_security_setting() {
    let deploy = contract(&kustomize("deploy"));
    for (what, pointer, value) in [
        (
            "a verb added to the CSR rule",
            "/roles/ClusterRole ~1csrgate-controller/0/verbs",
            json!(["get", "list", "watch", "delete"]),
        ),
        (
            "another signer",
            "/roles/ClusterRole ~1csrgate-approve-signers/0/resourceNames/0",
            json!("example.com/other"),
        ),
        ("an argument dropped", "/args/1", json!("--lease-name=x")),
        (
            "a writable root filesystem",
            "/securityContext/readOnlyRootFilesystem",
            json!(false),
        ),
        (
            "a binding to another account",
            "/bindings/ClusterRoleBinding ~1csrgate-controller/subjects/0/name",
            json!("default"),
        ),
    ] {
        let mut changed = deploy.clone();
        *changed
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} not in {deploy:#}")) = value;
        assert!(
            !differences(&changed, &deploy).is_empty(),
            "the comparison missed {what}"
        );
    }
}

#[test]
fn the_signers_value_is_the_only_approve_rule_and_its_resource_names() {
    let objects = template(&[
        "--set",
        "signers={example.com/payments,example.com/*}",
        "--set",
        "nodeWatch=false",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "replicas=1",
        "--set",
        "maxPendingPerSigner=50",
        "--set",
        "extraArgs={--concurrency=4}",
    ]);
    let approve: Vec<&Value> = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|o| o["rules"].as_array().unwrap())
        .filter(|r| r["verbs"].as_array().unwrap().contains(&json!("approve")))
        .collect();
    assert_eq!(
        approve,
        [
            &json!({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                 "verbs": ["approve"], "resourceNames": ["example.com/payments", "example.com/*"]})
        ]
    );
    // nodeWatch=false: no rule on nodes, and the controller is told not to watch them.
    let resources: Vec<&Value> = objects
        .iter()
        .filter_map(|o| o["rules"].as_array())
        .flatten()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .collect();
    assert!(!resources.contains(&&json!("nodes")), "{resources:?}");
    // No leader election: no Lease rights, no lease flags.
    assert!(!resources.contains(&&json!("leases")), "{resources:?}");
    let container = &one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "controller",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--no-node-watch",
            "--max-pending-per-signer=50",
            "--concurrency=4"
        ])
    );
    assert_eq!(one(&objects, "Deployment")["spec"]["replicas"], 1);
}

/// Two combinations the schema cannot refuse alone: several replicas without leader election
/// (every replica would write) fails to render; one replica renders no PodDisruptionBudget
/// (minAvailable 1 of 1 would block every drain).
#[test]
fn unsafe_combinations_of_values_fail_or_drop_the_budget() {
    let (code, stdout, stderr) = helm(&[
        "template",
        "csrgate",
        "charts/csrgate",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert_ne!(code, 0, "rendered:\n{stdout}");
    assert!(
        stderr.contains("replicas > 1 needs leaderElection.enabled"),
        "{stderr}"
    );
    let single = template(&["--set", "replicas=1"]);
    assert!(
        !single.iter().any(|o| o["kind"] == "PodDisruptionBudget"),
        "a budget for one replica"
    );
    assert_eq!(
        one(&template(&[]), "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

#[test]
fn a_value_of_the_wrong_type_fails_with_the_schema_message() {
    for (set, message) in [
        ("replicas=two", "at '/replicas': got string, want integer"),
        (
            "serviceMonitor.enabled=yes",
            "at '/serviceMonitor/enabled': got string, want boolean",
        ),
        ("replica=2", "additional properties 'replica' not allowed"),
        ("signers=null", "missing property 'signers'"),
        (
            "signers={no-slash}",
            "at '/signers/0': 'no-slash' does not match pattern",
        ),
        ("logFormat=xml", "at '/logFormat'"),
        (
            "maxPendingPerSigner=0",
            "at '/maxPendingPerSigner': minimum: got 0, want 1",
        ),
    ] {
        let (code, stdout, stderr) = helm(&["template", "csrgate", "charts/csrgate", "--set", set]);
        assert_ne!(code, 0, "--set {set} rendered:\n{stdout}");
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(message),
            "--set {set}: expected {message:?} in:\n{stderr}"
        );
        assert!(stdout.is_empty(), "--set {set} printed objects:\n{stdout}");
    }
}

#[test]
fn the_chart_crd_is_the_generated_crd() {
    let generated = std::fs::read(repo("crds/csrapprovalpolicies.csrgate.dev.yaml")).unwrap();
    let chart = std::fs::read(repo(
        "charts/csrgate/crds/csrapprovalpolicies.csrgate.dev.yaml",
    ))
    .unwrap();
    assert!(
        generated == chart,
        "charts/csrgate/crds/ differs from crds/: run `make crd`"
    );
    // helm installs crds/ itself, before the templates; it never renders it as a template.
    let (code, stdout, stderr) = helm(&["template", "csrgate", "charts/csrgate", "--include-crds"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        objects(&stdout)
            .iter()
            .any(|o| o["kind"] == "CustomResourceDefinition"
                && o["metadata"]["name"] == "csrapprovalpolicies.csrgate.dev")
    );
}

#[test]
fn the_monitoring_values_render_the_monitoring_overlay_objects() {
    let chart = template(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
    ]);
    let overlay = kustomize("deploy/overlays/monitoring");
    assert_eq!(
        one(&chart, "PrometheusRule")["spec"],
        one(&overlay, "PrometheusRule")["spec"],
        "the alert rules of the chart and of deploy/overlays/monitoring"
    );
    // The same ServiceMonitor, except that the chart's selector also names the release (two
    // releases in one namespace must not scrape each other).
    let mut monitor = one(&chart, "ServiceMonitor")["spec"].clone();
    let selector = monitor["selector"]["matchLabels"].as_object_mut().unwrap();
    assert_eq!(
        selector.remove("app.kubernetes.io/instance"),
        Some(json!("csrgate"))
    );
    assert_eq!(monitor, one(&overlay, "ServiceMonitor")["spec"]);
    let dashboard =
        std::fs::read_to_string(repo("charts/csrgate/dashboards/csrgate.json")).unwrap();
    let config_map = chart
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("a dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["csrgate.json"]
            .as_str()
            .map(str::trim_end),
        Some(dashboard.trim_end())
    );
    // Off by default: the chart needs no Prometheus Operator CRDs.
    let defaults = template(&[]);
    assert!(defaults.iter().all(|o| !matches!(
        o["kind"].as_str(),
        Some("ServiceMonitor" | "PrometheusRule" | "ConfigMap")
    )));
}
