//! `deploy/`: the kustomize install renders offline with kubectl's built-in kustomize, and the
//! rendered objects keep the promises of docs/security.md: least-privilege RBAC (no wildcard,
//! no secrets, `approve` only for named signers, approval only by `update`, leases only in
//! csrgate-system), a hardened two-replica leader-elected Deployment, and the generated CRD.
//!
//! Each property is a function returning the violations it finds, so the last tests can show
//! that every check fails on a manifest that breaks it.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::{repo, run};

/// The signers the default install may approve for (those of the example policies).
const SIGNERS: [&str; 3] = [
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/kube-apiserver-client-kubelet",
];

/// Renders a kustomization directory (relative to the repository root) into its objects, or
/// `None`, with a message, when kubectl is not installed.
fn render(dir: &str) -> Option<Vec<Value>> {
    if let Err(error) = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::NotFound,
            "kubectl: {error}"
        );
        eprintln!("SKIPPED: kubectl is not on PATH, so `kubectl kustomize {dir}` cannot run");
        return None;
    }
    let (code, stdout, stderr) = run(Command::new("kubectl").arg("kustomize").arg(repo(dir)));
    assert_eq!(code, 0, "kubectl kustomize {dir} failed:\n{stderr}");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    Some(documents.into_iter().filter(|d| !d.is_null()).collect())
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// The one object of this kind and name.
fn object<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == kind_ && name(o) == name_)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind_} {name_}, found {found:?}"
    );
    found[0]
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One RBAC rule with the Role or ClusterRole that holds it.
struct Rule<'a> {
    /// `Role/<namespace>/<name>` or `ClusterRole/<name>`, for messages.
    owner: String,
    /// `Role` or `ClusterRole`.
    kind: &'a str,
    /// The Role's namespace; empty for a ClusterRole.
    namespace: &'a str,
    rule: &'a Value,
}

impl<'a> Rule<'a> {
    fn list(&self, field: &str) -> Vec<&'a str> {
        strings(&self.rule[field])
    }

    fn mentions_resource(&self, resource: &str) -> bool {
        self.list("resources").contains(&resource)
    }
}

fn rules(objects: &[Value]) -> Vec<Rule<'_>> {
    objects
        .iter()
        .filter(|o| matches!(kind(o), "Role" | "ClusterRole"))
        .flat_map(|o| {
            let owner = if kind(o) == "Role" {
                format!("Role/{}/{}", namespace(o), name(o))
            } else {
                format!("ClusterRole/{}", name(o))
            };
            o["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |rule| Rule {
                    owner: owner.clone(),
                    kind: kind(o),
                    namespace: namespace(o),
                    rule,
                })
        })
        .collect()
}

/// Wildcards, secrets, non-resource URLs and the verbs that hand out more rights.
fn broad_rule_violations(objects: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules(objects) {
        for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
            if rule.list(field).iter().any(|v| v.contains('*')) {
                found.push(format!(
                    "{}: wildcard in {field}: {}",
                    rule.owner, rule.rule
                ));
            }
        }
        if rule
            .list("resources")
            .iter()
            .any(|r| *r == "secrets" || r.starts_with("secrets/"))
        {
            found.push(format!("{}: a rule on secrets: {}", rule.owner, rule.rule));
        }
        if !rule.rule["nonResourceURLs"].is_null() {
            found.push(format!("{}: nonResourceURLs: {}", rule.owner, rule.rule));
        }
        for verb in [
            "escalate",
            "bind",
            "impersonate",
            "delete",
            "deletecollection",
        ] {
            if rule.list("verbs").contains(&verb) {
                found.push(format!("{}: verb {verb}: {}", rule.owner, rule.rule));
            }
        }
    }
    found
}

/// `approve` on signers without resourceNames (any signer), or on anything but signers.
fn approve_violations(objects: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules(objects) {
        if !rule.list("verbs").contains(&"approve") {
            continue;
        }
        if rule.list("resources") != ["signers"]
            || rule.list("apiGroups") != ["certificates.k8s.io"]
        {
            found.push(format!(
                "{}: approve on something other than certificates.k8s.io signers: {}",
                rule.owner, rule.rule
            ));
        }
        if rule.list("resourceNames").is_empty() {
            found.push(format!(
                "{}: approve on signers without resourceNames allows every signer: {}",
                rule.owner, rule.rule
            ));
        }
    }
    found
}

/// The approval subresource only with `update`, and no write to CSRs or their status.
fn approval_violations(objects: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules(objects) {
        let verbs = rule.list("verbs");
        if rule.mentions_resource("certificatesigningrequests/approval") && verbs != ["update"] {
            found.push(format!(
                "{}: certificatesigningrequests/approval must be exactly [update], is {verbs:?}",
                rule.owner
            ));
        }
        if rule.mentions_resource("certificatesigningrequests/approval")
            && rule.list("resources").len() != 1
        {
            found.push(format!(
                "{}: the approval rule grants other resources too: {}",
                rule.owner, rule.rule
            ));
        }
        if rule.mentions_resource("certificatesigningrequests/status") {
            found.push(format!(
                "{}: certificatesigningrequests/status is the signer's, not csrgate's",
                rule.owner
            ));
        }
        if rule.mentions_resource("certificatesigningrequests")
            && verbs
                .iter()
                .any(|v| !matches!(*v, "get" | "list" | "watch"))
        {
            found.push(format!(
                "{}: CSRs themselves are read-only for csrgate, not {verbs:?}",
                rule.owner
            ));
        }
    }
    found
}

/// Leases only through a Role in csrgate-system; events only through a Role in `default`.
fn namespace_violations(objects: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for rule in rules(objects) {
        if rule.mentions_resource("leases")
            && (rule.kind != "Role" || rule.namespace != "csrgate-system")
        {
            found.push(format!(
                "{}: leases must only be granted by a Role in csrgate-system",
                rule.owner
            ));
        }
        if rule.mentions_resource("events") && (rule.kind != "Role" || rule.namespace != "default")
        {
            found.push(format!(
                "{}: events must only be granted by a Role in default",
                rule.owner
            ));
        }
    }
    found
}

/// Bindings: csrgate's own roles, to csrgate's service account only.
fn binding_violations(objects: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for binding in objects
        .iter()
        .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
    {
        let role = binding["roleRef"]["name"].as_str().unwrap_or_default();
        if !role.starts_with("csrgate-") {
            found.push(format!(
                "{} {}: binds {role}, not a csrgate role",
                kind(binding),
                name(binding)
            ));
        }
        let expected =
            json!([{"kind": "ServiceAccount", "name": "csrgate", "namespace": "csrgate-system"}]);
        if binding["subjects"] != expected {
            found.push(format!(
                "{} {}: subjects {} are not just csrgate's service account",
                kind(binding),
                name(binding),
                binding["subjects"]
            ));
        }
    }
    found
}

/// Everything the issue asks of the Deployment.
fn deployment_violations(deployment: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            found.push(what.to_owned());
        }
    };
    let pod = &deployment["spec"]["template"]["spec"];
    check(deployment["spec"]["replicas"] == 2, "replicas must be 2");
    check(
        pod["serviceAccountName"] == "csrgate",
        "serviceAccountName must be csrgate",
    );
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    check(containers.len() == 1, "one container");
    let Some(container) = containers.first() else {
        return found;
    };
    let args = strings(&container["args"]);
    check(
        args.first() == Some(&"controller"),
        "args start with controller",
    );
    check(
        args.contains(&"--leader-elect"),
        "args contain --leader-elect",
    );
    for (variable, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from_downward_api = container["env"].as_array().is_some_and(|env| {
            env.iter()
                .any(|e| e["name"] == variable && e["valueFrom"]["fieldRef"]["fieldPath"] == field)
        });
        check(
            from_downward_api,
            &format!("env {variable} from the downward API ({field})"),
        );
    }
    let metrics_port = container["ports"].as_array().and_then(|ports| {
        ports
            .iter()
            .find(|p| p["containerPort"] == 8080)
            .map(|p| p["name"].clone())
    });
    check(metrics_port.is_some(), "container port 8080");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        check(get["path"] == path, &format!("{probe} on {path}"));
        let port = &get["port"];
        check(
            *port == 8080 || Some(port) == metrics_port.as_ref(),
            &format!("{probe} on the metrics port"),
        );
    }
    for (section, field) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        check(
            container["resources"][section][field].is_string(),
            &format!("resources.{section}.{field}"),
        );
    }
    let security = &container["securityContext"];
    let pod_security = &pod["securityContext"];
    check(
        security["runAsNonRoot"] == true
            || (pod_security["runAsNonRoot"] == true && security["runAsNonRoot"].is_null()),
        "runAsNonRoot",
    );
    check(
        security["readOnlyRootFilesystem"] == true,
        "readOnlyRootFilesystem",
    );
    check(
        security["allowPrivilegeEscalation"] == false,
        "allowPrivilegeEscalation false",
    );
    check(security["privileged"] != true, "not privileged");
    check(
        strings(&security["capabilities"]["drop"]) == ["ALL"],
        "capabilities drop [ALL]",
    );
    check(
        security["capabilities"]["add"].is_null(),
        "no capabilities added",
    );
    let seccomp = |s: &Value| s["seccompProfile"]["type"].clone();
    check(
        seccomp(security) == "RuntimeDefault"
            || (seccomp(pod_security) == "RuntimeDefault" && seccomp(security).is_null()),
        "seccompProfile RuntimeDefault",
    );
    check(pod["hostNetwork"] != true, "no hostNetwork");
    found
}

fn assert_none(violations: &[String]) {
    assert!(
        violations.is_empty(),
        "violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_default_install_renders_offline_with_every_object_it_needs() {
    let Some(objects) = render("deploy") else {
        return;
    };
    object(&objects, "Namespace", "csrgate-system");
    object(
        &objects,
        "CustomResourceDefinition",
        "csrapprovalpolicies.csrgate.dev",
    );
    for (kind_, name_) in [
        ("ServiceAccount", "csrgate"),
        ("Deployment", "csrgate"),
        ("Service", "csrgate-metrics"),
        ("PodDisruptionBudget", "csrgate"),
        ("Role", "csrgate-leader-election"),
        ("RoleBinding", "csrgate-leader-election"),
    ] {
        assert_eq!(
            namespace(object(&objects, kind_, name_)),
            "csrgate-system",
            "{kind_} {name_}"
        );
    }
    for name_ in ["csrgate-controller", "csrgate-approve-signers"] {
        object(&objects, "ClusterRole", name_);
        object(&objects, "ClusterRoleBinding", name_);
    }
    assert_eq!(
        namespace(object(&objects, "Role", "csrgate-events")),
        "default"
    );
    // The optional monitoring objects are not part of the default install.
    assert!(
        objects.iter().all(|o| kind(o) != "ServiceMonitor"),
        "ServiceMonitor in the default install"
    );
    let pdb = object(&objects, "PodDisruptionBudget", "csrgate");
    let deployment = object(&objects, "Deployment", "csrgate");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let service = object(&objects, "Service", "csrgate-metrics");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn no_rbac_rule_has_a_wildcard_or_mentions_secrets() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert!(!rules(&objects).is_empty(), "no RBAC rules rendered");
    assert_none(&broad_rule_violations(&objects));
}

#[test]
fn approve_on_signers_is_limited_to_the_configured_signer_names() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert_none(&approve_violations(&objects));
    let approving: Vec<Rule<'_>> = rules(&objects)
        .into_iter()
        .filter(|r| r.list("verbs").contains(&"approve"))
        .collect();
    assert_eq!(approving.len(), 1, "one approve rule");
    let names: BTreeSet<&str> = approving[0].list("resourceNames").into_iter().collect();
    assert_eq!(names, SIGNERS.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(approving[0].list("verbs"), ["approve"]);
}

#[test]
fn the_approval_subresource_is_written_by_update_only_and_csrs_are_read_only() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert_none(&approval_violations(&objects));
    assert!(
        rules(&objects)
            .iter()
            .any(|r| r.mentions_resource("certificatesigningrequests/approval")),
        "no rule grants the approval subresource"
    );
}

#[test]
fn leases_are_granted_only_in_csrgate_system_and_events_only_in_default() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert_none(&namespace_violations(&objects));
    let lease_verbs: BTreeSet<&str> = rules(&objects)
        .iter()
        .filter(|r| r.mentions_resource("leases"))
        .flat_map(|r| r.list("verbs"))
        .collect();
    assert_eq!(
        lease_verbs,
        BTreeSet::from(["create", "get", "patch"]),
        "what kube-lease-manager calls"
    );
    let event_verbs: BTreeSet<&str> = rules(&objects)
        .iter()
        .filter(|r| r.mentions_resource("events"))
        .flat_map(|r| r.list("verbs"))
        .collect();
    assert_eq!(event_verbs, BTreeSet::from(["create", "patch"]));
}

#[test]
fn subject_access_reviews_may_be_created_for_the_authorizer_variable_and_nothing_more() {
    let Some(objects) = render("deploy") else {
        return;
    };
    let verbs: Vec<&str> = rules(&objects)
        .iter()
        .filter(|r| r.mentions_resource("subjectaccessreviews"))
        .flat_map(|r| r.list("verbs"))
        .collect();
    assert_eq!(verbs, ["create"]);
}

#[test]
fn every_binding_gives_csrgate_roles_to_the_csrgate_service_account_only() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert_none(&binding_violations(&objects));
}

#[test]
fn every_rbac_rule_in_the_source_is_commented_with_why() {
    let source = std::fs::read_to_string(repo("deploy/base/rbac.yaml")).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let mut rules_seen = 0;
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules_seen += 1;
            let previous = lines[..index]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .copied()
                .unwrap_or_default();
            assert!(
                previous.trim_start().starts_with('#'),
                "deploy/base/rbac.yaml line {}: rule without a comment saying why",
                index + 1
            );
        }
    }
    assert!(rules_seen >= 8, "only {rules_seen} rules found");
}

#[test]
fn the_deployment_runs_two_leader_elected_hardened_replicas_with_probes_and_resources() {
    let Some(objects) = render("deploy") else {
        return;
    };
    assert_none(&deployment_violations(object(
        &objects,
        "Deployment",
        "csrgate",
    )));
}

#[test]
fn the_rendered_crd_equals_the_generated_crd() {
    let Some(objects) = render("deploy") else {
        return;
    };
    let generated: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo("crds/csrapprovalpolicies.csrgate.dev.yaml")).unwrap(),
    )
    .unwrap();
    let rendered = object(
        &objects,
        "CustomResourceDefinition",
        "csrapprovalpolicies.csrgate.dev",
    );
    assert!(
        *rendered == generated,
        "deploy/base/crds/ differs from crds/csrapprovalpolicies.csrgate.dev.yaml: run `make deploy-crd`"
    );
}

#[test]
fn the_monitoring_overlay_adds_a_servicemonitor_that_scrapes_the_metrics_service() {
    let Some(objects) = render("deploy/overlays/monitoring") else {
        return;
    };
    let monitor = object(&objects, "ServiceMonitor", "csrgate");
    let service = object(&objects, "Service", "csrgate-metrics");
    assert_eq!(namespace(monitor), "csrgate-system");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (label, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "the ServiceMonitor selects label {label}"
        );
    }
    let port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == *port),
        "the Service has no port named {port}"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let alerts: Vec<&str> =
        object(&objects, "PrometheusRule", "csrgate")["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["alert"].as_str())
            .collect();
    for alert in [
        "CsrgatePendingCsrsGrowing",
        "CsrgatePolicyNotReady",
        "CsrgateApiErrors",
        "CsrgateReconcileErrors",
        "CsrgateMaxPendingExceeded",
    ] {
        assert!(alerts.contains(&alert), "{alert} missing from {alerts:?}");
    }
    // The overlay changes nothing else: the same RBAC checks hold.
    assert_none(&broad_rule_violations(&objects));
}

#[test]
fn the_extra_signer_example_adds_one_signer_and_keeps_rbac_least_privilege() {
    let Some(objects) = render("deploy/examples/extra-signer") else {
        return;
    };
    let role = object(&objects, "ClusterRole", "csrgate-approve-signers");
    let names: BTreeSet<&str> = strings(&role["rules"][0]["resourceNames"])
        .into_iter()
        .collect();
    let mut expected: BTreeSet<&str> = SIGNERS.into_iter().collect();
    expected.insert("csrgate.dev/workload-client");
    assert_eq!(names, expected);
    assert_none(&broad_rule_violations(&objects));
    assert_none(&approve_violations(&objects));
}

/// One of the property checks above.
type Check = fn(&[Value]) -> Vec<String>;

/// A rendered install with one change applied to the object of `kind_` named `name_`.
fn mutated(objects: &[Value], kind_: &str, name_: &str, change: impl Fn(&mut Value)) -> Vec<Value> {
    let mut copy = objects.to_vec();
    let target = copy
        .iter_mut()
        .find(|o| kind(o) == kind_ && name(o) == name_)
        .unwrap();
    change(target);
    copy
}

#[test]
fn the_rbac_checks_fail_on_wildcards_secrets_unbounded_approve_and_misplaced_leases() {
    let Some(objects) = render("deploy") else {
        return;
    };
    let controller =
        |change: fn(&mut Value)| mutated(&objects, "ClusterRole", "csrgate-controller", change);
    let cases: Vec<(&str, Vec<Value>, Check)> = vec![
        (
            "a wildcard verb",
            controller(|r| r["rules"][0]["verbs"] = json!(["*"])),
            broad_rule_violations,
        ),
        (
            "a wildcard API group",
            controller(|r| r["rules"][2]["apiGroups"] = json!(["*"])),
            broad_rule_violations,
        ),
        (
            "a secrets rule",
            controller(|r| {
                r["rules"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
            }),
            broad_rule_violations,
        ),
        (
            "approve without resourceNames",
            mutated(&objects, "ClusterRole", "csrgate-approve-signers", |r| {
                r["rules"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("resourceNames");
            }),
            approve_violations,
        ),
        (
            "patch on the approval subresource",
            controller(|r| r["rules"][1]["verbs"] = json!(["update", "patch"])),
            approval_violations,
        ),
        (
            "leases in a ClusterRole",
            controller(|r| {
                r["rules"].as_array_mut().unwrap().push(json!({
                    "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]
                }));
            }),
            namespace_violations,
        ),
        (
            "the lease Role in another namespace",
            mutated(&objects, "Role", "csrgate-leader-election", |r| {
                r["metadata"]["namespace"] = json!("kube-system");
            }),
            namespace_violations,
        ),
        (
            "a binding to cluster-admin",
            mutated(&objects, "ClusterRoleBinding", "csrgate-controller", |b| {
                b["roleRef"]["name"] = json!("cluster-admin");
            }),
            binding_violations,
        ),
    ];
    for (what, broken, check) in cases {
        assert!(!check(&broken).is_empty(), "the check missed {what}");
    }
}

#[test]
fn the_deployment_check_fails_on_each_missing_setting() {
    let Some(objects) = render("deploy") else {
        return;
    };
    let deployment = object(&objects, "Deployment", "csrgate");
    let container = "/spec/template/spec/containers/0";
    for (what, pointer, value) in [
        ("one replica", "/spec/replicas".to_owned(), json!(1)),
        (
            "no --leader-elect",
            format!("{container}/args"),
            json!(["controller"]),
        ),
        (
            "a liveness probe elsewhere",
            format!("{container}/livenessProbe/httpGet/path"),
            json!("/"),
        ),
        (
            "a readiness probe on /healthz",
            format!("{container}/readinessProbe/httpGet/path"),
            json!("/healthz"),
        ),
        (
            "root allowed",
            format!("{container}/securityContext/runAsNonRoot"),
            json!(false),
        ),
        (
            "a writable root",
            format!("{container}/securityContext/readOnlyRootFilesystem"),
            json!(false),
        ),
        (
            "escalation allowed",
            format!("{container}/securityContext/allowPrivilegeEscalation"),
            json!(true),
        ),
        (
            "capabilities kept",
            format!("{container}/securityContext/capabilities/drop"),
            json!([]),
        ),
        (
            "seccomp unconfined",
            format!("{container}/securityContext/seccompProfile/type"),
            json!("Unconfined"),
        ),
        (
            "no limits",
            format!("{container}/resources/limits"),
            json!({}),
        ),
        (
            "no requests",
            format!("{container}/resources/requests"),
            json!({}),
        ),
        (
            "POD_NAME not from the downward API",
            format!("{container}/env/0/valueFrom/fieldRef/fieldPath"),
            json!("spec.nodeName"),
        ),
    ] {
        let mut broken = deployment.clone();
        *broken
            .pointer_mut(&pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(
            !deployment_violations(&broken).is_empty(),
            "the Deployment check missed {what}"
        );
    }
}
