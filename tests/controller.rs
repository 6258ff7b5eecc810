//! `csrgate controller` against `csrgate sandbox`, driven with real kubectl.

use std::collections::HashMap;

use crate::util::{Cluster, condition, csrgate, http, run};

const DEMO_SIGNER: &str = "example.com/demo";

/// The requestor of an example manifest: (username, groups without system:authenticated).
pub(crate) fn requestor(manifest: &str) -> (String, Vec<String>) {
    let value: serde_json::Value = serde_saphyr::from_str(manifest).unwrap();
    let user = value["spec"]["username"].as_str().unwrap().to_owned();
    let groups: Vec<String> = value["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    (user, csrgate_api::user::impersonated_groups(&groups))
}

/// Creates a CSR from a manifest as its requestor; returns kubectl's (code, stdout, stderr).
pub(crate) fn create_as(cluster: &Cluster, path: &str) -> (i32, String, String) {
    let manifest = std::fs::read_to_string(crate::util::repo(path)).unwrap();
    let (user, groups) = requestor(&manifest);
    let mut args = vec![
        "create".to_owned(),
        "-f".to_owned(),
        path.to_owned(),
        "--as".to_owned(),
        user,
    ];
    for group in groups {
        args.push("--as-group".into());
        args.push(group);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.kubectl(&args)
}

/// A CSR manifest for the demo signer, reusing jane's request.
fn demo_csr(cluster: &Cluster, name: &str) -> String {
    let jane = std::fs::read_to_string(crate::util::repo("examples/csrs/jane.yaml")).unwrap();
    let manifest = jane
        .replace("name: jane\n", &format!("name: {name}\n"))
        .replace("kubernetes.io/kube-apiserver-client", DEMO_SIGNER);
    let path = cluster.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, manifest).unwrap();
    path.display().to_string()
}

fn demo_policy(cluster: &Cluster, name: &str, failure_action: &str, expression: &str) -> String {
    let path = cluster.dir.path().join(format!("{name}-policy.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata:\n  name: {name}\nspec:\n  signerNames: [{DEMO_SIGNER}]\n  failureAction: {failure_action}\n  validations:\n    - name: requestor\n      expression: {}\n      message: not the expected requestor\n",
            serde_json::to_string(expression).unwrap()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn example_policies_decide_example_csrs_online_exactly_as_offline() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/"]);
    cluster.kubectl_ok(&["apply", "-f", "examples/nodes/worker-1.yaml"]);
    cluster.start_controller(&[]);

    let files: Vec<String> = std::fs::read_dir(crate::util::repo("examples/csrs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .map(|f| format!("examples/csrs/{f}"))
        .collect();
    let (code, stdout, stderr) = run(csrgate()
        .args([
            "check",
            "--policy",
            "examples/policies",
            "--node",
            "examples/nodes/worker-1.yaml",
            "--output",
            "json",
        ])
        .args(&files));
    assert_eq!(code, 0, "{stderr}");
    let offline: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let offline: HashMap<String, serde_json::Value> = offline
        .into_iter()
        .map(|r| (r["csr"].as_str().unwrap().to_owned(), r))
        .collect();

    let mut created = Vec::new();
    for file in &files {
        let name = file
            .trim_start_matches("examples/csrs/")
            .trim_end_matches(".yaml")
            .to_owned();
        let (code, _, stderr) = create_as(&cluster, file);
        if name == "jane-masters" {
            // The API server's CertificateSubjectRestriction admission refuses it first.
            assert_ne!(
                code, 0,
                "system:masters CSR for kube-apiserver-client must be refused"
            );
            assert!(stderr.contains("system:masters"), "{stderr}");
            continue;
        }
        if name == "jane-forged" {
            // The API server checks the self-signature on create, as csrgate does offline.
            assert_ne!(code, 0, "a forged request must be refused on create");
            assert!(stderr.contains("spec.request"), "{stderr}");
            assert_eq!(offline[&name]["reason"], "InvalidRequest");
            continue;
        }
        assert_eq!(code, 0, "{file}: {stderr}");
        created.push(name);
    }
    for name in created
        .iter()
        .filter(|n| offline[*n]["decision"] != "Pending")
    {
        let (type_, reason, message) = cluster
            .wait_for_condition(name, 30)
            .unwrap_or_else(|| panic!("{name} was not decided"));
        assert_eq!(type_, offline[name]["decision"].as_str().unwrap(), "{name}");
        assert_eq!(reason, offline[name]["reason"].as_str().unwrap(), "{name}");
        assert_eq!(
            message,
            offline[name]["message"].as_str().unwrap(),
            "{name}"
        );
    }
    for name in created
        .iter()
        .filter(|n| offline[*n]["decision"] == "Pending")
    {
        assert_eq!(
            condition(&cluster.csr(name)),
            None,
            "{name} should stay pending"
        );
    }
    let writes = cluster.writes();
    for name in &created {
        let count = writes.iter().filter(|w| w["csr"] == name.as_str()).count();
        let expected = usize::from(offline[name]["decision"] != "Pending");
        assert_eq!(count, expected, "{name}: approval writes");
    }
    // The sandbox's signer issued the approved ones.
    let jane = cluster.csr("jane");
    assert!(
        jane["status"]["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
}

#[test]
fn kubectl_shows_decisions_reasons_and_ready_policies() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    cluster.start_controller(&[]);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    assert_eq!(create_as(&cluster, "examples/csrs/jane-as-admin.yaml").0, 0);
    cluster.wait_for_condition("jane", 30).unwrap();
    cluster.wait_for_condition("jane-as-admin", 30).unwrap();
    let table = cluster.kubectl_ok(&["get", "csr"]);
    let jane = table.lines().find(|l| l.starts_with("jane ")).unwrap();
    assert!(jane.contains("Approved"), "{table}");
    let admin = table
        .lines()
        .find(|l| l.starts_with("jane-as-admin "))
        .unwrap();
    assert!(admin.contains("Denied"), "{table}");
    let reason = cluster.kubectl_ok(&[
        "get",
        "csr",
        "jane-as-admin",
        "-o",
        "jsonpath={.status.conditions[0].reason}",
    ]);
    assert_eq!(reason, "PolicyDenied");
    let ready = cluster.kubectl_ok(&[
        "get",
        "csrpolicy",
        "administrators",
        "-o",
        "jsonpath={.status.conditions[0].status}",
    ]);
    assert_eq!(ready, "True");
    let policies = cluster.kubectl_ok(&["get", "csrpolicy"]);
    assert!(
        policies.lines().nth(1).unwrap().contains("True"),
        "{policies}"
    );
    // The decision is also an event an auditor can list.
    let events = cluster.kubectl_ok(&["get", "events.events.k8s.io", "-A", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let denied = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["regarding"]["name"] == "jane-as-admin" && e["reason"] == "PolicyDenied")
        .expect("a PolicyDenied event on the CSR");
    assert!(denied["note"].as_str().unwrap().contains("cn-is-requestor"));
    // And `kubectl describe` shows it.
    let described = cluster.kubectl_ok(&["describe", "csr", "jane-as-admin"]);
    assert!(described.contains("PolicyDenied"), "{described}");
}

#[test]
fn a_policy_changed_from_failing_to_passing_approves_a_pending_csr() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Ignore", "object.spec.username == 'bob'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    cluster.start_controller(&[]);
    let csr = demo_csr(&cluster, "demo-1");
    cluster.kubectl_ok(&["create", "-f", &csr, "--as", "jane"]);
    assert_eq!(
        cluster.wait_for_condition("demo-1", 2),
        None,
        "Ignore must leave it pending"
    );
    let policy = demo_policy(&cluster, "demo", "Ignore", "object.spec.username == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    let (type_, reason, message) = cluster
        .wait_for_condition("demo-1", 30)
        .expect("approved after the change");
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved")
    );
    assert_eq!(
        message,
        "csrgate: approved by CsrApprovalPolicy \"demo\" (generation 2)"
    );
}

#[test]
fn an_invalid_policy_is_not_ready_and_holds_its_csrs_until_fixed() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "x509v.commonName == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    let (index, _) = cluster.start_controller(&[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = cluster.kubectl_ok(&["get", "csrpolicy", "demo", "-o", "jsonpath={.status.conditions[0].status}/{.status.conditions[0].reason}/{.status.conditions[0].message}"]);
        if status.starts_with("False/") {
            assert!(status.starts_with("False/InvalidExpression/spec.validations[0].expression: unknown identifier x509v"), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "policy never became Ready=False: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let csr = demo_csr(&cluster, "held");
    cluster.kubectl_ok(&["create", "-f", &csr, "--as", "jane"]);
    assert_eq!(
        cluster.wait_for_condition("held", 2),
        None,
        "held while the policy is invalid"
    );
    assert!(
        cluster.controller_log(index).contains("held"),
        "{}",
        cluster.controller_log(index)
    );
    let fixed = demo_policy(&cluster, "demo", "Deny", "x509.commonName == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &fixed]);
    let (type_, _, _) = cluster
        .wait_for_condition("held", 30)
        .expect("released after the fix");
    assert_eq!(type_, "Approved");
}

#[test]
fn metrics_and_health_endpoints_answer_as_documented() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let (_, metrics) = cluster.start_controller(&[]);
    assert_eq!(
        http("GET", &format!("http://{metrics}/healthz"), None).0,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http("GET", &format!("http://{metrics}/readyz"), None).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    cluster.wait_for_condition("jane", 30).unwrap();
    let (status, text) = http("GET", &format!("http://{metrics}/metrics"), None);
    assert_eq!(status, 200);
    assert!(text.contains(r#"csrgate_decisions_total{policy="administrators",signer="kubernetes.io/kube-apiserver-client",decision="Approved"} 1"#), "{text}");
    assert!(
        text.contains(r#"csrgate_policy_ready{policy="administrators"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("csrgate_decision_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
}

#[test]
fn server_errors_on_approval_writes_are_retried_and_the_csr_is_decided_once() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    cluster.start_controller(&[]);
    cluster.fault(
        "faults/fail",
        Some(r#"{"method":"PUT","path_prefix":"/apis/certificates.k8s.io/v1/certificatesigningrequests/jane/approval","status":500,"count":3}"#),
    );
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    let (type_, _, _) = cluster
        .wait_for_condition("jane", 60)
        .expect("decided despite 500s");
    assert_eq!(type_, "Approved");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let writes = cluster.writes();
    assert_eq!(
        writes.iter().filter(|w| w["csr"] == "jane").count(),
        1,
        "{writes:?}"
    );
}

#[test]
fn a_controller_killed_mid_run_and_restarted_decides_everything_exactly_once() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "object.spec.username == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    let names: Vec<String> = (0..20).map(|i| format!("burst-{i}")).collect();
    let mut manifest = String::new();
    for name in &names {
        manifest.push_str(&std::fs::read_to_string(demo_csr(&cluster, name)).unwrap());
        manifest.push_str("---\n");
    }
    let path = cluster.dir.path().join("burst.yaml");
    std::fs::write(&path, manifest).unwrap();
    // Slow the API down so the kill lands mid-run.
    cluster.fault("faults/latency", Some(r#"{"millis":40}"#));
    cluster.kubectl_ok(&["create", "-f", path.to_str().unwrap(), "--as", "jane"]);
    let (first, _) = cluster.start_controller(&[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.writes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no decision before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cluster.kill_controller(first);
    cluster.fault("faults/clear", None);
    cluster.start_controller(&[]);
    for name in &names {
        let (type_, _, _) = cluster
            .wait_for_condition(name, 60)
            .unwrap_or_else(|| panic!("{name} not decided"));
        assert_eq!(type_, "Approved", "{name}");
    }
    let writes = cluster.writes();
    for name in &names {
        assert_eq!(
            writes.iter().filter(|w| w["csr"] == name.as_str()).count(),
            1,
            "{name} written once"
        );
    }
}

#[test]
fn with_leader_election_a_standby_takes_over_when_the_leader_dies() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-duration",
        "3",
    ];
    let (a, metrics_a) = cluster.start_controller(&args);
    let (b, metrics_b) = cluster.start_controller(&args);
    let role = |metrics: &str| http("GET", &format!("http://{metrics}/readyz"), None).1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (leader, standby, standby_metrics) = loop {
        let (ra, rb) = (role(&metrics_a), role(&metrics_b));
        assert!(
            !(ra.contains("ok: leader") && rb.contains("ok: leader")),
            "two leaders: {ra} / {rb}"
        );
        if ra.contains("ok: leader") && rb.contains("ok: standby") {
            break (a, b, metrics_b.clone());
        }
        if rb.contains("ok: leader") && ra.contains("ok: standby") {
            break (b, a, metrics_a.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader elected: {ra} / {rb}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    cluster.kill_controller(leader);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    let (type_, _, _) = cluster
        .wait_for_condition("jane", 30)
        .expect("the standby took over");
    assert_eq!(type_, "Approved");
    assert!(role(&standby_metrics).contains("ok: leader"));
    let _ = standby;
    assert_eq!(
        cluster
            .writes()
            .iter()
            .filter(|w| w["csr"] == "jane")
            .count(),
        1
    );
}

/// Creates `count` demo CSRs named `{prefix}-{i}` as jane in one kubectl call.
fn create_burst(cluster: &Cluster, prefix: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let mut manifest = String::new();
    for name in &names {
        manifest.push_str(&std::fs::read_to_string(demo_csr(cluster, name)).unwrap());
        manifest.push_str("---\n");
    }
    let path = cluster.dir.path().join(format!("{prefix}.yaml"));
    std::fs::write(&path, manifest).unwrap();
    cluster.kubectl_ok(&["create", "-f", path.to_str().unwrap(), "--as", "jane"]);
    names
}

/// Every CSR ends Approved, with exactly one approval write each.
fn assert_all_approved_once(cluster: &Cluster, names: &[String]) {
    for name in names {
        let (type_, _, _) = cluster
            .wait_for_condition(name, 60)
            .unwrap_or_else(|| panic!("{name} not decided"));
        assert_eq!(type_, "Approved", "{name}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let writes = cluster.writes();
    for name in names {
        assert_eq!(
            writes.iter().filter(|w| w["csr"] == name.as_str()).count(),
            1,
            "{name} written once"
        );
    }
}

#[test]
fn watches_closed_every_second_and_410_gone_lose_nothing() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "object.spec.username == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    cluster.start_controller(&[]);
    let mut names = Vec::new();
    for round in 0..4 {
        names.extend(create_burst(&cluster, &format!("round{round}"), 5));
        // Close every watch; every other round also compact, so the re-watch gets 410 Gone
        // and the controller must relist.
        if round % 2 == 1 {
            cluster.fault("compact", None);
        }
        cluster.fault("watches/close", None);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_all_approved_once(&cluster, &names);
}

#[test]
fn conflicts_from_a_concurrent_writer_are_re_read_and_decided_once() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "object.spec.username == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    cluster.fault("faults/latency", Some(r#"{"millis":30}"#));
    let names = create_burst(&cluster, "contended", 8);
    cluster.start_controller(&[]);
    // Another writer keeps changing the CSRs (and their resourceVersions) while the
    // controller decides, so its approval PUTs meet 409 Conflict.
    for i in 0..6 {
        for name in &names {
            let _ = cluster.kubectl(&[
                "label",
                "csr",
                name,
                &format!("touched=t{i}"),
                "--overwrite",
            ]);
        }
    }
    cluster.fault("faults/clear", None);
    assert_all_approved_once(&cluster, &names);
}

#[test]
fn a_sandbox_restart_mid_run_loses_nothing() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "object.spec.username == 'jane'");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    cluster.fault("faults/latency", Some(r#"{"millis":30}"#));
    let mut names = create_burst(&cluster, "before", 10);
    cluster.start_controller(&[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.writes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no decision before the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cluster.fault("restart", None);
    cluster.fault("faults/clear", None);
    names.extend(create_burst(&cluster, "after", 5));
    assert_all_approved_once(&cluster, &names);
}

#[test]
fn dry_run_records_audit_decisions_and_writes_nothing() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    cluster.start_controller(&["--dry-run"]);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let described = cluster.kubectl_ok(&["describe", "csr", "jane"]);
        if described.contains("AuditDecision") {
            assert!(described.contains("would approve"), "{described}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no AuditDecision event:\n{described}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(condition(&cluster.csr("jane")), None);
    assert!(cluster.writes().is_empty());
}

/// Issue #12: a policy that spends its whole evaluation budget on every CSR (about 2 s each
/// in a debug build) delays only its own signer's CSRs: another signer's CSR is decided at
/// once, and `/healthz` answers, while a burst of them is evaluated.
#[test]
fn issue_12_a_slow_policy_delays_only_its_own_signers_csrs() {
    let mut cluster = Cluster::start();
    let rules: String = (0..10)
        .map(|k| {
            format!(
                "    - name: r{k}\n      expression: 'lists.range(object.spec.expirationSeconds).all(a, lists.range(object.spec.expirationSeconds).all(b, b >= -{k}))'\n"
            )
        })
        .collect();
    let slow = cluster.dir.path().join("slow-policy.yaml");
    std::fs::write(
        &slow,
        format!(
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata:\n  name: slow\nspec:\n  signerNames: [{DEMO_SIGNER}]\n  validations:\n{rules}"
        ),
    )
    .unwrap();
    cluster.kubectl_ok(&["apply", "-f", slow.to_str().unwrap()]);
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let (_, metrics) = cluster.start_controller(&[]);
    let slow_csrs = create_burst(&cluster, "slow", 8);
    std::thread::sleep(std::time::Duration::from_millis(500));

    let started = std::time::Instant::now();
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    let (type_, _, _) = cluster
        .wait_for_condition("jane", 30)
        .expect("jane decided");
    let jane_took = started.elapsed();
    assert_eq!(type_, "Approved");
    let probe = std::time::Instant::now();
    assert_eq!(
        http("GET", &format!("http://{metrics}/healthz"), None).0,
        200
    );
    let probe_took = probe.elapsed();
    let still_pending = slow_csrs
        .iter()
        .filter(|name| condition(&cluster.csr(name)).is_none())
        .count();
    assert!(
        jane_took < std::time::Duration::from_secs(5),
        "jane took {jane_took:?}"
    );
    assert!(
        probe_took < std::time::Duration::from_secs(1),
        "/healthz took {probe_took:?}"
    );
    // The slow signer's CSRs were still being decided when jane's was written.
    assert!(still_pending > 0, "every slow CSR was already decided");

    let (type_, _, message) = cluster
        .wait_for_condition(&slow_csrs[7], 120)
        .expect("the last slow CSR decided");
    assert_eq!(type_, "Denied");
    assert!(
        message.contains("exceeds the limit of 1000000 units per expression"),
        "{message}"
    );
}

/// Issue #12: a kubelet serving CSR that arrives before its Node (and then before the Node's
/// addresses) stays pending under the cookbook's wait-for-node policy, and is decided, once,
/// when the Node gets its addresses: a Node update re-runs the pending CSRs of that node.
#[test]
fn issue_12_a_serving_csr_waits_for_its_node_and_is_approved_once_when_the_node_has_addresses() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        "examples/cookbook/kubelet-serving-wait-for-node.yaml",
    ]);
    cluster.start_controller(&[]);
    assert_eq!(
        create_as(&cluster, "examples/csrs/worker-1-serving.yaml").0,
        0
    );
    assert_eq!(
        cluster.wait_for_condition("worker-1-serving", 2),
        None,
        "pending while there is no Node"
    );
    // The Node as first created, without any status.
    let node = cluster.dir.path().join("worker-1-bare.yaml");
    std::fs::write(
        &node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n",
    )
    .unwrap();
    cluster.kubectl_ok(&["create", "-f", node.to_str().unwrap()]);
    assert_eq!(
        cluster.wait_for_condition("worker-1-serving", 2),
        None,
        "pending (not denied) while the Node has no status"
    );
    // The kubelet writes its addresses through the status subresource.
    cluster.kubectl_ok(&[
        "patch",
        "node",
        "worker-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.11"},{"type":"Hostname","address":"worker-1"},{"type":"InternalDNS","address":"worker-1.cluster.internal"}]}}"#,
    ]);
    let (type_, reason, _) = cluster
        .wait_for_condition("worker-1-serving", 30)
        .expect("decided once the Node has addresses");
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved")
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let writes = cluster.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w["csr"] == "worker-1-serving")
            .count(),
        1,
        "{writes:?}"
    );
    let conditions = cluster.csr("worker-1-serving")["status"]["conditions"].clone();
    assert_eq!(conditions.as_array().map(Vec::len), Some(1), "{conditions}");
}

/// Issue #12: an old leader must not write after the standby took the Lease, even when it
/// cannot learn that it lost it. The leader is paused until the standby leads; the new leader
/// is paused so that a CSR created now stays pending; the old leader is resumed while every
/// request to the Lease fails (500), so kube-lease-manager's receiver keeps saying "leader".
/// It must write nothing (the write waits for a confirmed lease), and stop once the Lease
/// can be read again; the new leader then decides the CSR, once.
#[test]
fn issue_12_an_old_leader_that_cannot_read_the_lease_writes_nothing() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    // 10 s: the new leader, paused right after it took the lease, holds it for the whole
    // window in which the old one is resumed.
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        "csrgate-issue-12",
        "--lease-duration",
        "10",
    ];
    let role = |metrics: &str| http("GET", &format!("http://{metrics}/readyz"), None).1;
    let wait_for = |metrics: &str, text: &str, seconds: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while !role(metrics).contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "{metrics}: no {text} within {seconds} s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let (old, old_metrics) = cluster.start_controller_as("csrgate-old-leader", &args);
    wait_for(&old_metrics, "ok: leader", 30);
    let (new, new_metrics) = cluster.start_controller_as("csrgate-new-leader", &args);
    wait_for(&new_metrics, "ok: standby", 30);

    cluster.pause_controller(old, true);
    wait_for(&new_metrics, "ok: leader", 30);
    cluster.pause_controller(new, true);
    cluster.fault(
        "faults/fail",
        Some(r#"{"path_prefix":"/apis/coordination.k8s.io/v1/namespaces/default/leases/csrgate-issue-12","status":500,"count":100000}"#),
    );
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    cluster.pause_controller(old, false);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let early: Vec<serde_json::Value> = cluster.writes();
    cluster.fault("faults/clear", None);
    cluster.pause_controller(new, false);
    assert!(
        early.iter().all(|w| w["user"] != "csrgate-old-leader"),
        "the old leader wrote while it could not confirm the lease: {early:?}\n{}",
        cluster.controller_log(old)
    );

    let (type_, _, _) = cluster
        .wait_for_condition("jane", 30)
        .expect("the new leader decides");
    assert_eq!(type_, "Approved");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let writes: Vec<serde_json::Value> = cluster
        .writes()
        .into_iter()
        .filter(|w| w["csr"] == "jane")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["user"], "csrgate-new-leader", "{writes:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = cluster.controller_exited(old) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old leader did not stop:\n{}",
            cluster.controller_log(old)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!status.success(), "{status:?}");
    assert!(
        cluster
            .controller_log(old)
            .contains("lost the leader lease"),
        "{}",
        cluster.controller_log(old)
    );
}

/// Issue #12: a leader whose CSR watch keeps failing reports not ready on `/readyz`, naming
/// the watch and the error, and ready again once the watch works; nothing is lost meanwhile.
#[test]
fn issue_12_readyz_says_not_ready_while_the_csr_watch_keeps_failing() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let (_, metrics) = cluster.start_controller(&[]);
    let readyz = || http("GET", &format!("http://{metrics}/readyz"), None);
    let wait_for = |status: u16, seconds: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let (code, body) = readyz();
            if code == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz still {code} {body} after {seconds} s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for(200, 30);
    cluster.fault(
        "faults/fail",
        Some(r#"{"method":"GET","path_prefix":"/apis/certificates.k8s.io/v1/certificatesigningrequests","status":500,"count":100000}"#),
    );
    cluster.fault("watches/close", None);
    let body = wait_for(503, 30);
    assert!(
        body.contains("certificatesigningrequests watch failing"),
        "{body}"
    );
    cluster.fault("faults/clear", None);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    let (type_, _, _) = cluster
        .wait_for_condition("jane", 60)
        .expect("decided once the watch works again");
    assert_eq!(type_, "Approved");
    wait_for(200, 30);
    assert_eq!(
        cluster
            .writes()
            .iter()
            .filter(|w| w["csr"] == "jane")
            .count(),
        1
    );
}

/// Issue #12: after the API server's storage goes back in time (here the sandbox restored
/// from a snapshot, as etcd from a backup), the controller's watch resumes from a
/// resourceVersion the server has not reached and gets nothing, without an error. The
/// progress probe finds the server behind the cache and the controller relists, so a CSR
/// created after the restore is decided, once.
#[test]
fn issue_12_a_watch_left_ahead_of_a_restored_server_is_relisted() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let (index, _) = cluster.start_controller(&[]);
    assert_eq!(create_as(&cluster, "examples/csrs/jane-as-admin.yaml").0, 0);
    cluster
        .wait_for_condition("jane-as-admin", 30)
        .expect("decided before the snapshot");
    cluster.fault("snapshot", None);
    // Later resourceVersions the controller sees, then loses with the restore.
    for name in ["later-1", "later-2", "later-3"] {
        let csr = demo_csr(&cluster, name);
        cluster.kubectl_ok(&["create", "-f", &csr, "--as", "jane"]);
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    cluster.fault("restore", None);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    // The probe runs every 30 s.
    let (type_, _, _) = cluster
        .wait_for_condition("jane", 75)
        .unwrap_or_else(|| panic!("never decided:\n{}", cluster.controller_log(index)));
    assert_eq!(type_, "Approved");
    assert!(
        cluster.controller_log(index).contains("relisting"),
        "{}",
        cluster.controller_log(index)
    );
    let conditions = cluster.csr("jane")["status"]["conditions"].clone();
    assert_eq!(conditions.as_array().map(Vec::len), Some(1), "{conditions}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        cluster
            .writes()
            .iter()
            .filter(|w| w["csr"] == "jane")
            .count(),
        1
    );
}

/// Issue #13: with the Node watch off, a policy reading `subjectNode` is not Ready, naming
/// the field (a null `subjectNode` would make every name look new), and holds its CSRs.
#[test]
fn issue_13_a_policy_reading_subject_node_is_not_ready_without_the_node_watch() {
    let mut cluster = Cluster::start();
    let policy = demo_policy(&cluster, "demo", "Deny", "subjectNode == null");
    cluster.kubectl_ok(&["apply", "-f", &policy]);
    cluster.start_controller(&["--no-node-watch"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = cluster.kubectl_ok(&["get", "csrpolicy", "demo", "-o", "jsonpath={.status.conditions[0].status}/{.status.conditions[0].reason}/{.status.conditions[0].message}"]);
        if status.starts_with("False/") {
            assert!(
                status.starts_with("False/InvalidExpression/spec.validations[0].expression: subjectNode is not available: csrgate controller runs with --no-node-watch"),
                "{status}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "policy never became Ready=False: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let csr = demo_csr(&cluster, "held");
    cluster.kubectl_ok(&["create", "-f", &csr, "--as", "jane"]);
    assert_eq!(cluster.wait_for_condition("held", 2), None);
}

/// Issue #13: a cap of 0 or below is a start-up error naming the flag.
#[test]
fn issue_13_a_pending_cap_of_zero_or_below_is_a_start_up_error() {
    for value in ["0", "-1"] {
        let (code, _, stderr) = run(csrgate().args([
            "controller",
            "--kubeconfig",
            "/nonexistent",
            "--max-pending-per-signer",
            value,
        ]));
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "error: --max-pending-per-signer: must be at least 1, got {value} (leave it out for no cap)"
            )
        );
    }
}

/// A policy that is not Ready holds the CSRs it covers; deleting it must release them at
/// once (a deletion reaches no policy reconciler, so it wakes the CSRs itself), not at the
/// next restart or resync.
#[test]
fn deleting_a_policy_that_is_not_ready_decides_the_csrs_it_held() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let broken = cluster.dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: broken}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - {name: v, expression: 'x509v.commonName == \"\"'}\n",
    )
    .unwrap();
    cluster.kubectl_ok(&["apply", "-f", broken.to_str().unwrap()]);
    let (index, _) = cluster.start_controller(&[]);
    assert_eq!(create_as(&cluster, "examples/csrs/jane.yaml").0, 0);
    assert!(
        cluster.wait_for_condition("jane", 3).is_none(),
        "held while `broken` is not Ready:\n{}",
        cluster.controller_log(index)
    );
    cluster.kubectl_ok(&["delete", "csrapprovalpolicy", "broken"]);
    let decided = cluster.wait_for_condition("jane", 10);
    assert_eq!(
        decided.as_ref().map(|(t, r, _)| (t.as_str(), r.as_str())),
        Some(("Approved", "PolicyApproved")),
        "{}",
        cluster.controller_log(index)
    );
}
