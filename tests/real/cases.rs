//! The team's shared cases (`tests/cases/`, see its README) on the real server: each case's
//! policy (and Node) applied, each CSR created by its requestor, decided by the controller,
//! and compared with what `csrgate check` decides offline for the same files. What
//! kube-apiserver refuses to store never reaches a policy, so it is asserted refused.
//!
//! Offline tests of the same cases are in `tests/check.rs` and `tests/policy_cases.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Controller, TEST_LABEL, csr, kubectl_ok, kubectl_stdin, plane, serial};
use crate::util::{csrgate, repo, run};

/// A decision as `csrgate check --output json` and the CSR's condition both state it:
/// (`Approved` | `Denied` | `Pending`, reason).
type Decided = (String, Option<String>);

/// One shared case: its folder, its policy files, its Node, its CSR files (relative to the
/// repository root).
struct Case<'a> {
    policies: &'a [&'a str],
    node: Option<&'a str>,
    csrs: &'a [&'a str],
}

impl Case<'_> {
    /// What `csrgate check` decides, by CSR name.
    fn offline(&self) -> BTreeMap<String, Decided> {
        let mut command = csrgate();
        command.args(["check", "--output", "json"]);
        for policy in self.policies {
            command.args(["--policy", policy]);
        }
        if let Some(node) = self.node {
            command.args(["--node", node]);
        }
        command.args(self.csrs);
        let (code, stdout, stderr) = run(&mut command);
        assert_eq!(code, 0, "csrgate check: {stderr}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        rows.iter()
            .map(|row| {
                let decided = (
                    row["decision"].as_str().unwrap().to_owned(),
                    row["reason"].as_str().map(str::to_owned),
                );
                (row["csr"].as_str().unwrap().to_owned(), decided)
            })
            .collect()
    }

    /// Applies the policies and the Node, starts a controller and creates each CSR as its
    /// requestor; returns the controller and, by CSR name, whether the server stored it
    /// (else its refusal).
    fn apply(&self, dir: &Path) -> (Controller, BTreeMap<String, Result<(), String>>) {
        for policy in self.policies {
            kubectl_ok(&["apply", "-f", policy]);
        }
        if let Some(node) = self.node {
            create_node(node);
        }
        let controller = Controller::start(dir, plane().kubeconfig(), &[]);
        controller.wait_for_role("leader", 30);
        let created = self
            .csrs
            .iter()
            .map(|file| {
                let manifest = read_yaml(file);
                let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
                (name, create_as_requestor(&manifest))
            })
            .collect();
        (controller, created)
    }
}

fn read_yaml(file: &str) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(repo(file)).unwrap()).unwrap()
}

/// Creates the case's Node, labelled for cleanup; its addresses are status, which a
/// kubelet writes through the status subresource, so they are written the same way.
fn create_node(file: &str) {
    let mut node = read_yaml(file);
    node["metadata"]["labels"][TEST_LABEL] = "cases".into();
    let status = node["status"].take();
    let name = node["metadata"]["name"].as_str().unwrap().to_owned();
    let (code, _, stderr) = kubectl_stdin(&["create", "-f", "-"], &node.to_string());
    assert_eq!(code, 0, "{stderr}");
    if !status.is_null() {
        let patch = serde_json::json!({ "status": status }).to_string();
        kubectl_ok(&[
            "patch",
            "node",
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }
}

/// Creates the CSR as the user and groups its manifest names, as that requestor would.
fn create_as_requestor(manifest: &serde_json::Value) -> Result<(), String> {
    let user = manifest["spec"]["username"].as_str().unwrap();
    let groups: Vec<String> = manifest["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["create", "-f", "-", "--as", user];
    // The API server adds system:authenticated itself; kubectl need not send it.
    let groups = csrgate_api::user::impersonated_groups(&groups);
    for group in &groups {
        args.extend(["--as-group", group]);
    }
    let (code, stdout, stderr) = kubectl_stdin(&args, &manifest.to_string());
    if code == 0 {
        Ok(())
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

/// The CSR's decision as its conditions state it, or Pending.
fn online(name: &str) -> Decided {
    let csr = csr(name);
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| matches!(c["type"].as_str(), Some("Approved" | "Denied")))
        .map_or(("Pending".to_owned(), None), |c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["reason"].as_str().map(str::to_owned),
            )
        })
}

/// Waits until every stored CSR expected to be decided has a condition, then a little
/// longer for those expected to stay pending; asserts each online decision equals the
/// offline one, and that at most one Approved or Denied condition was written.
fn assert_same_online(
    offline: &BTreeMap<String, Decided>,
    stored: &[&String],
    controller: &Controller,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided = |name: &&&String| offline[**name].0 != "Pending";
    while stored
        .iter()
        .filter(decided)
        .any(|name| online(name).0 == "Pending")
    {
        assert!(
            Instant::now() < deadline,
            "undecided after 30 s:\n{}",
            controller.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    if stored.iter().any(|name| offline[*name].0 == "Pending") {
        // Nothing can prove a CSR will never be decided; 3 s is many decision times.
        std::thread::sleep(Duration::from_secs(3));
    }
    for name in stored {
        assert_eq!(
            online(name),
            offline[*name],
            "{name}: online and offline disagree:\n{:#}\n{}",
            csr(name),
            controller.log_text()
        );
        let conditions = csr(name)["status"]["conditions"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(conditions <= 1, "{name}: {:#}", csr(name));
    }
}

/// Runs a case whose every CSR the server stores; returns the offline decisions.
fn run_case(case: &Case<'_>) -> BTreeMap<String, Decided> {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let offline = case.offline();
    let (controller, created) = case.apply(dir.path());
    for (name, result) in &created {
        assert!(result.is_ok(), "{name} refused: {result:?}");
    }
    let stored: Vec<&String> = created.keys().collect();
    assert_same_online(&offline, &stored, &controller);
    offline
}

#[test]
fn cases_dns_uppercase_online_as_offline() {
    let offline = run_case(&Case {
        policies: &["tests/cases/dns-uppercase/policy.yaml"],
        node: Some("tests/cases/dns-uppercase/node.yaml"),
        csrs: &[
            "tests/cases/dns-uppercase/worker-1-plain.yaml",
            "tests/cases/dns-uppercase/worker-1-upper-svc.yaml",
        ],
    });
    assert_eq!(offline["worker-1-upper-svc"].0, "Denied");
    assert_eq!(offline["worker-1-plain"].0, "Approved");
}

#[test]
fn cases_ipv6_node_online_as_offline() {
    let offline = run_case(&Case {
        policies: &["examples/policies/kubelet-serving.yaml"],
        node: Some("tests/cases/ipv6-node/node.yaml"),
        csrs: &["tests/cases/ipv6-node/worker-6-dualstack.yaml"],
    });
    assert_eq!(offline["worker-6-dualstack"].0, "Approved");
}

#[test]
fn cases_policy_panic_and_overflow_are_denied_online_as_offline() {
    for case in ["policy-panic", "policy-overflow"] {
        let policy = format!("tests/cases/{case}/policy.yaml");
        let jane = format!("tests/cases/{case}/jane.yaml");
        let offline = run_case(&Case {
            policies: &[&policy],
            node: None,
            csrs: &[&jane],
        });
        assert_eq!(
            offline["jane"],
            ("Denied".to_owned(), Some("PolicyDenied".to_owned())),
            "{case}"
        );
    }
}

/// Offline these policies are refused (`csrgate check` exits 2); online the policy is
/// Ready=False naming the field, and the CSR it covers stays pending (step 2 of the decision).
#[test]
fn cases_policy_memory_and_slow_are_not_ready_and_hold_the_csr_online() {
    for case in ["policy-memory", "policy-slow"] {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let policy = format!("tests/cases/{case}/policy.yaml");
        let jane = format!("tests/cases/{case}/jane.yaml");
        let (code, _, stderr) = run(csrgate().args(["check", "--policy", &policy, &jane]));
        assert_eq!(code, 2, "{case}: {stderr}");
        let case_files = Case {
            policies: &[&policy],
            node: None,
            csrs: &[&jane],
        };
        let (controller, created) = case_files.apply(dir.path());
        assert!(created["jane"].is_ok(), "{case}: {:?}", created["jane"]);
        let name = read_yaml(&policy)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = loop {
            let status = kubectl_ok(&[
                "get",
                "csrapprovalpolicy",
                &name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")]}",
            ]);
            if !status.is_empty() {
                break serde_json::from_str::<serde_json::Value>(&status).unwrap();
            }
            assert!(Instant::now() < deadline, "{case}: no Ready condition");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(ready["status"], "False", "{case}: {ready}");
        let message = ready["message"].as_str().unwrap();
        assert!(
            message.contains("spec.validations[0].expression")
                && message.contains("estimated evaluation cost"),
            "{case}: {message}"
        );
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            online("jane"),
            ("Pending".to_owned(), None),
            "{case}: {}",
            controller.log_text()
        );
    }
}

/// A dNSName with raw UTF-8 is not an IA5String: kube-apiserver refuses to store it (Go's
/// request parser rejects it), so no policy ever sees it; `csrgate check` denies it, so a
/// pipeline given the same file fails closed. The `xn--` control is approved both ways.
#[test]
fn cases_utf8_dnsname_is_refused_by_the_server_and_denied_offline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        policies: &["tests/cases/utf8-dnsname/policy.yaml"],
        node: None,
        csrs: &[
            "tests/cases/utf8-dnsname/web-idn-alabel.yaml",
            "tests/cases/utf8-dnsname/web-idn-utf8.yaml",
        ],
    };
    let offline = case.offline();
    assert_eq!(
        offline["web-idn-utf8"],
        ("Denied".to_owned(), Some("InvalidRequest".to_owned()))
    );
    let (controller, created) = case.apply(dir.path());
    let refusal = created["web-idn-utf8"].as_ref().unwrap_err();
    assert!(refusal.contains("spec.request"), "{refusal}");
    let alabel = String::from("web-idn-alabel");
    assert!(created[&alabel].is_ok(), "{:?}", created[&alabel]);
    assert_same_online(&offline, &[&alabel], &controller);
}

/// An IPv4-mapped IPv6 SAN (`::ffff:10.96.0.1`): kube-apiserver v1.37 stores the request, so
/// it reaches the policies, and the controller denies it as `csrgate check` does: the policy
/// sees `10.96.0.1`, as Go and TLS clients read the address, not the IPv6 text.
#[test]
fn cases_ipv4_mapped_is_stored_and_denied_online_as_offline() {
    let offline = run_case(&Case {
        policies: &["tests/cases/ipv4-mapped/policy.yaml"],
        node: None,
        csrs: &[
            "tests/cases/ipv4-mapped/ip-plain.yaml",
            "tests/cases/ipv4-mapped/ip-v4mapped.yaml",
        ],
    });
    assert_eq!(
        offline["ip-v4mapped"],
        ("Denied".to_owned(), Some("PolicyDenied".to_owned()))
    );
}
