//! `csrgate check`: offline decisions, output formats, exit codes and input errors.

use base64::Engine as _;

use crate::util::{assert_golden, csrgate, run, write};

const POLICY: &str = "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - {name: v, expression: 'EXPR'}\n";

#[test]
fn json_output_of_the_examples_matches_the_golden_file() {
    let (code, stdout, stderr) = run(csrgate().args([
        "check",
        "--policy",
        "examples/policies",
        "--node",
        "examples/nodes/worker-1.yaml",
        "--output",
        "json",
        "examples/csrs/jane.yaml",
        "examples/csrs/jane-masters.yaml",
        "examples/csrs/jane-forged.yaml",
        "examples/csrs/mallory.yaml",
        "examples/csrs/worker-1-serving.yaml",
        "examples/csrs/worker-1-spoofing.yaml",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 6);
    assert_golden("check-examples.json", &stdout);
}

#[test]
fn table_output_has_one_row_per_csr() {
    let (code, stdout, _) = run(csrgate().args([
        "check",
        "--policy",
        "examples/policies",
        "examples/csrs/jane.yaml",
        "examples/csrs/jane-as-admin.yaml",
    ]));
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("CSR "));
    assert!(
        lines[1].starts_with("jane ") && lines[1].contains("Approved"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("Denied") && lines[2].contains("cn-is-requestor"),
        "{stdout}"
    );
}

#[test]
fn as_and_as_group_replace_the_requestor() {
    let (code, stdout, _) = run(csrgate().args([
        "check",
        "--policy",
        "examples/policies",
        "--output",
        "json",
        "--as",
        "bob",
        "--as-group",
        "platform-admins",
        "examples/csrs/jane.yaml",
    ]));
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Denied");
    assert!(
        parsed[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not match the requestor bob")
    );
}

#[test]
fn an_invalid_policy_exits_2_naming_file_field_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "bad.yaml",
        &POLICY.replace("EXPR", "x509v.commonName == \"a\""),
    );
    let (code, stdout, stderr) = run(csrgate()
        .args(["check", "--policy"])
        .arg(&policy)
        .arg("examples/csrs/jane.yaml"));
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {}: spec.validations[0].expression: unknown identifier x509v (known: object, x509, node, subjectNode, variables, authorizer)",
            policy.display()
        )
    );
}

#[test]
fn bad_inputs_exit_2_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_field = write(
        dir.path(),
        "unknown.yaml",
        &POLICY
            .replace("EXPR", "true")
            .replace("validations:", "bogus: 1\n  validations:"),
    );
    let not_yaml = write(dir.path(), "broken.yaml", "spec: [unclosed\n");
    let not_a_csr = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let good = write(dir.path(), "good.yaml", &POLICY.replace("EXPR", "true"));
    let cases: Vec<(Vec<std::ffi::OsString>, String)> = vec![
        (
            vec![
                "--policy".into(),
                unknown_field.clone().into(),
                "examples/csrs/jane.yaml".into(),
            ],
            format!(
                "{}: spec.bogus: unknown field `bogus`",
                unknown_field.display()
            ),
        ),
        (
            vec![
                "--policy".into(),
                not_yaml.clone().into(),
                "examples/csrs/jane.yaml".into(),
            ],
            format!("{}: not valid YAML", not_yaml.display()),
        ),
        (
            vec![
                "--policy".into(),
                good.clone().into(),
                not_a_csr.clone().into(),
            ],
            format!(
                "{}: kind is \"ConfigMap\", expected CertificateSigningRequest",
                not_a_csr.display()
            ),
        ),
        (
            vec![
                "--policy".into(),
                good.into(),
                "examples/csrs/does-not-exist.yaml".into(),
            ],
            "examples/csrs/does-not-exist.yaml: cannot read".to_owned(),
        ),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run(csrgate().arg("check").args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {expected}")),
            "{args:?}:\n{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_csr_whose_request_is_not_a_certificate_request_is_denied_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.yaml", &POLICY.replace("EXPR", "true"));
    let cert_pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    let csr = write(
        dir.path(),
        "csr.yaml",
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: cert}}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n  username: jane\n",
            base64::engine::general_purpose::STANDARD.encode(cert_pem.as_bytes())
        ),
    );
    let (code, stdout, stderr) = run(csrgate()
        .args(["check", "--output", "json", "--policy"])
        .arg(&policy)
        .arg(&csr));
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Denied");
    assert_eq!(parsed[0]["reason"], "InvalidRequest");
    assert_eq!(
        parsed[0]["message"],
        "csrgate: invalid request: PEM block is \"CERTIFICATE\", not \"CERTIFICATE REQUEST\""
    );
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let (code, stdout, _) = run(csrgate().arg("crd"));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        std::fs::read_to_string(crate::util::repo(
            "crds/csrapprovalpolicies.csrgate.dev.yaml"
        ))
        .unwrap()
    );
}

/// The decision `csrgate check --output json` prints for one CSR: (decision, reason, message).
fn check_case(policy: &str, node: Option<&str>, csr: &str) -> (String, String, String) {
    let mut command = csrgate();
    command.args(["check", "--policy", policy, "--output", "json"]);
    if let Some(node) = node {
        command.args(["--node", node]);
    }
    let (code, stdout, stderr) = run(command.arg(csr));
    assert_eq!(code, 0, "{csr}: {stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let field = |name: &str| parsed[0][name].as_str().unwrap_or_default().to_owned();
    (field("decision"), field("reason"), field("message"))
}

/// Issue #11, case dns-uppercase: a SAN in upper case is the API server's name to every TLS
/// client, so a deny-list written in lower case must catch it.
#[test]
fn issue_11_an_upper_case_dns_san_is_compared_as_tls_compares_it() {
    let case = "tests/cases/dns-uppercase";
    let policy = format!("{case}/policy.yaml");
    let node = format!("{case}/node.yaml");
    let (decision, reason, message) = check_case(
        &policy,
        Some(&node),
        &format!("{case}/worker-1-upper-svc.yaml"),
    );
    assert_eq!(
        (decision.as_str(), reason.as_str()),
        ("Denied", "PolicyDenied"),
        "{message}"
    );
    assert!(message.contains("kubernetes.default.svc"), "{message}");
    let (decision, _, message) =
        check_case(&policy, Some(&node), &format!("{case}/worker-1-plain.yaml"));
    assert_eq!(decision, "Approved", "{message}");
}

/// Issue #11, case ipv4-mapped: `::ffff:10.96.0.1` is `10.96.0.1` to Go clients.
#[test]
fn issue_11_an_ipv4_mapped_san_is_shown_as_ipv4() {
    let case = "tests/cases/ipv4-mapped";
    let policy = format!("{case}/policy.yaml");
    for csr in ["ip-v4mapped", "ip-plain"] {
        let (decision, reason, message) = check_case(&policy, None, &format!("{case}/{csr}.yaml"));
        assert_eq!(
            (decision.as_str(), reason.as_str()),
            ("Denied", "PolicyDenied"),
            "{csr}: {message}"
        );
    }
}

/// Issue #11, case utf8-dnsname: raw UTF-8 in a dNSName is not an IA5String; the request is
/// invalid, and the message names the SAN.
#[test]
fn issue_11_a_dns_san_with_raw_utf8_is_an_invalid_request() {
    let case = "tests/cases/utf8-dnsname";
    let policy = format!("{case}/policy.yaml");
    let (decision, reason, message) =
        check_case(&policy, None, &format!("{case}/web-idn-utf8.yaml"));
    assert_eq!(
        (decision.as_str(), reason.as_str()),
        ("Denied", "InvalidRequest"),
        "{message}"
    );
    assert!(
        message.contains("dNSName") && message.contains("non-ASCII"),
        "{message}"
    );
    let (decision, _, message) = check_case(&policy, None, &format!("{case}/web-idn-alabel.yaml"));
    assert_eq!(decision, "Approved", "{message}");
}

/// Issue #11, case ipv6-node: the Node spells its address `fd00:10:0:0:0:0:0:b`, the request
/// `fd00:10::b`; the kubelet-serving example compares addresses by value and approves.
#[test]
fn issue_11_the_kubelet_serving_example_compares_node_ips_by_value() {
    let case = "tests/cases/ipv6-node";
    let (decision, reason, message) = check_case(
        "examples/policies/kubelet-serving.yaml",
        Some(&format!("{case}/node.yaml")),
        &format!("{case}/worker-6-dualstack.yaml"),
    );
    assert_eq!(
        (decision.as_str(), reason.as_str()),
        ("Approved", "PolicyApproved"),
        "{message}"
    );
}

/// Issue #11, case utf8-dnsname, online: the sandbox refuses to create the request with raw
/// UTF-8 in a dNSName, as kube-apiserver does (Go's parser), and creates its `xn--` twin.
#[test]
fn issue_11_the_sandbox_refuses_to_create_a_raw_utf8_dns_name_as_kube_apiserver_does() {
    let cluster = crate::util::Cluster::start();
    let case = crate::util::repo("tests/cases/utf8-dnsname");
    let utf8 = case.join("web-idn-utf8.yaml");
    let (code, stdout, stderr) = cluster.kubectl(&["create", "-f", utf8.to_str().unwrap()]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains("spec.request") && stderr.contains("x509: SAN dNSName is malformed"),
        "{stderr}"
    );
    let alabel = case.join("web-idn-alabel.yaml");
    cluster.kubectl_ok(&["create", "-f", alabel.to_str().unwrap()]);
}

/// Issue #13 part 1: `defaultAction: Deny` denies what no policy approved, with reason
/// NoPolicyApproved; as an Audit policy it only records what its default would have done.
#[test]
fn issue_13_default_action_deny_is_shown_and_an_audit_default_is_recorded_per_policy() {
    let (decision, reason, message) = check_case(
        "examples/cookbook/access-default-deny.yaml",
        None,
        "examples/csrs/jane.yaml",
    );
    // jane's request is for another signer: no policy covers it, nothing is decided.
    assert_eq!((decision.as_str(), reason.as_str()), ("Pending", ""));
    assert!(message.contains("no CsrApprovalPolicy covers"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    let audit = std::fs::read_to_string(crate::util::repo(
        "examples/cookbook/access-default-deny.yaml",
    ))
    .unwrap()
    .replace(
        "  defaultAction: Deny\n",
        "  defaultAction: Deny\n  mode: Audit\n",
    );
    let policy = write(dir.path(), "audit.yaml", &audit);
    let (code, stdout, stderr) = run(csrgate()
        .args([
            "check",
            "--output",
            "json",
            "--as",
            "mallory",
            "--as-group",
            "developers",
            "--policy",
        ])
        .arg(&policy)
        .arg("examples/csrs/oncall-sam.yaml"));
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Pending");
    let audit_report = &parsed[0]["policies"][1];
    assert_eq!(audit_report["name"], "sre-access-default-deny");
    assert_eq!(audit_report["mode"], "Audit");
    let recorded = audit_report["defaultDenial"].as_str().unwrap();
    assert!(
        recorded.contains(r#"CsrApprovalPolicy "sre-access-default-deny" (generation 1): matchCondition "is-sre" is false"#),
        "{recorded}"
    );
    assert!(parsed[0]["policies"][0].get("defaultDenial").is_none());

    let (code, table, _) = run(csrgate()
        .args([
            "check",
            "--as",
            "mallory",
            "--as-group",
            "developers",
            "--policy",
        ])
        .arg(&policy)
        .arg("examples/csrs/oncall-sam.yaml"));
    assert_eq!(code, 0);
    assert!(
        table.contains("sre-access-default-deny=NotApplicable(audit)(default would deny)"),
        "{table}"
    );
}

/// Issue #13: a wrong `defaultAction` is refused naming the field.
#[test]
fn issue_13_a_wrong_default_action_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &POLICY
            .replace("EXPR", "true")
            .replace("validations:", "defaultAction: Approve\n  validations:"),
    );
    let (code, _, stderr) = run(csrgate()
        .args(["check", "--policy"])
        .arg(&policy)
        .arg("examples/csrs/jane.yaml"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: {}: spec.defaultAction: unknown variant `Approve`, expected `Pending` or `Deny`",
            policy.display()
        )),
        "{stderr}"
    );
}

/// Issue #13 part 2: `--node` serves `subjectNode` too: a bootstrap token asking for an
/// existing Node's name is denied, for a new name approved.
#[test]
fn issue_13_node_files_serve_subject_node_for_bootstrap_requests() {
    let policy = "examples/cookbook/kubelet-bootstrap-new-nodes-only.yaml";
    let (decision, _, message) = check_case(
        policy,
        Some("examples/nodes/worker-1.yaml"),
        "examples/tests/csrs/worker-7-bootstrap.yaml",
    );
    assert_eq!(decision, "Approved", "{message}");
    let (code, stdout, stderr) = run(csrgate()
        .args(["check", "--output", "json", "--policy", policy])
        .args(["--node", "examples/nodes/worker-1.yaml"])
        .args([
            "--as",
            "system:bootstrap:abcdef",
            "--as-group",
            "system:bootstrappers",
        ])
        .arg("examples/csrs/worker-1-client.yaml"));
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Denied");
    assert!(
        parsed[0]["message"]
            .as_str()
            .unwrap()
            .contains("a Node named worker-1 already exists")
    );
    // Without the Node file the name looks new.
    let (decision, _, _) = check_case(policy, None, "examples/tests/csrs/worker-7-bootstrap.yaml");
    assert_eq!(decision, "Approved");
}

/// Without `--node` or `--rbac`, a policy reading Nodes or asking the authorizer decides on
/// null Nodes and errored checks: `check` says so on stderr, naming the policies, so that an
/// offline "Approved" for a takeover of an existing Node is not taken at face value.
#[test]
fn check_warns_when_a_policy_reads_an_input_that_was_not_given() {
    let (code, _, stderr) = run(csrgate().args([
        "check",
        "--output",
        "json",
        "--policy",
        "examples/cookbook/kubelet-bootstrap-new-nodes-only.yaml",
        "--policy",
        "examples/cookbook/kubelet-client-kcm.yaml",
        "examples/tests/csrs/worker-7-bootstrap.yaml",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: no --node given: `node` and `subjectNode` are null for every CSR, as if no Node existed (policies \"kubelet-bootstrap-new-nodes-only\")"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: no --rbac given: every `authorizer` check errors (policies \"kubelet-client-kcm\")"
        ),
        "{stderr}"
    );
    let (_, _, quiet) = run(csrgate().args([
        "check",
        "--policy",
        "examples/cookbook/kubelet-bootstrap-new-nodes-only.yaml",
        "--node",
        "examples/nodes/worker-1.yaml",
        "examples/tests/csrs/worker-7-bootstrap.yaml",
    ]));
    assert!(!quiet.contains("warning"), "{quiet}");
}

/// `--as-group` records the groups as the API server would (with `system:authenticated`), so
/// `check` and a `csrgate test` case with the same groups decide alike.
#[test]
fn as_group_records_the_authenticated_group_as_the_api_server_and_test_do() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        &POLICY.replace(
            "EXPR",
            r#"object.spec.groups == ["dev", "system:authenticated"]"#,
        ),
    );
    let (code, stdout, stderr) = run(csrgate()
        .args([
            "check",
            "--output",
            "json",
            "--as",
            "jane",
            "--as-group",
            "dev",
            "--policy",
        ])
        .arg(&policy)
        .arg("examples/csrs/jane.yaml"));
    assert_eq!(code, 0, "{stderr}");
    let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed[0]["decision"], "Approved", "{parsed}");
}
