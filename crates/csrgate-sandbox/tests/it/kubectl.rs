//! The real client: kubectl against the sandbox. Skipped with a message when kubectl is not installed.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::common::*;

pub(crate) fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
        || std::process::Command::new(tool)
            .arg("version")
            .output()
            .is_ok()
}

pub(crate) async fn kubectl(env: &Env, args: &[&str]) -> Output {
    let kubeconfig = env.sandbox.kubeconfig_path().unwrap();
    let cache = env.dir.path().join("cache");
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .output()
        .await
        .expect("kubectl runs")
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_csr_yaml(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [client auth]\n"
        ),
    )
    .unwrap();
    path
}

macro_rules! require_kubectl {
    () => {
        if !$crate::kubectl::have("kubectl") {
            eprintln!("SKIPPED: kubectl is not on PATH (install kubernetes-client)");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_version_reports_the_sandbox_server() {
    require_kubectl!();
    let env = start().await;
    let out = kubectl(&env, &["version"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Server Version: v1.33.0"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_as_jane_lists_approves_and_cannot_deny_after() {
    require_kubectl!();
    let env = start().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = request_pem_with_key(&key, "jane", &["developers"], &[]);
    let file = write_csr_yaml(env.dir.path(), "jane", &pem);
    let file = file.to_str().unwrap();
    let out = kubectl(
        &env,
        &[
            "create",
            "-f",
            file,
            "--as",
            "jane",
            "--as-group",
            "developers",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(&env, &["get", "csr"]).await;
    let listing = text(&out);
    let header: Vec<&str> = listing
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{listing}"
    );
    assert!(
        listing.contains("jane") && listing.contains("24h") && listing.contains("Pending"),
        "{listing}"
    );
    let out = kubectl(&env, &["get", "csr", "jane", "-o", "yaml"]).await;
    assert!(text(&out).contains("username: jane"), "{}", text(&out));
    assert!(text(&out).contains("- developers"), "{}", text(&out));

    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env.sandbox.kubeconfig_path().unwrap())
        .arg("--cache-dir")
        .arg(env.dir.path().join("cache"))
        .args(["get", "csr", "-w", "--request-timeout=0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let out = kubectl(&env, &["certificate", "approve", "jane"]).await;
    assert!(out.status.success(), "{}", text(&out));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = watch.start_kill();
    let watched = watch.wait_with_output().await.unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout).to_string();
    assert!(
        watched.contains("Approved"),
        "kubectl get -w saw the approval: {watched}"
    );

    let out = kubectl(&env, &["certificate", "deny", "jane"]).await;
    assert!(
        !out.status.success(),
        "deny after approve must fail: {}",
        text(&out)
    );
    let writes = env.sandbox.faults().writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0]
            .user_agent
            .as_deref()
            .unwrap_or_default()
            .starts_with("kubectl"),
        "{writes:?}"
    );

    let mut cert = String::new();
    for _ in 0..40 {
        let out = kubectl(
            &env,
            &["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"],
        )
        .await;
        cert = String::from_utf8_lossy(&out.stdout).to_string();
        if !cert.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use base64::Engine;
    let pem_cert = base64::engine::general_purpose::STANDARD
        .decode(cert.trim())
        .unwrap();
    let cert_file = env.dir.path().join("jane.crt");
    std::fs::write(&cert_file, &pem_cert).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-pubkey", "-in"])
        .arg(&cert_file)
        .output()
        .await;
    let Ok(out) = out else {
        eprintln!("SKIPPED openssl check: openssl is not on PATH");
        return;
    };
    let shown = text(&out);
    assert!(
        shown.contains("CN = jane, O = developers") || shown.contains("CN=jane, O=developers"),
        "{shown}"
    );
    assert!(
        shown.contains(key.public_key_pem().trim()),
        "the certificate carries the CSR's key: {shown}"
    );

    let out = kubectl(&env, &["delete", "csr", "jane"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(&env, &["get", "csr", "jane"]).await;
    assert!(text(&out).contains("NotFound"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_crd_and_finds_policies_by_short_name() {
    require_kubectl!();
    let env = start().await;
    let crd = env.dir.path().join("crd.yaml");
    std::fs::write(
        &crd,
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: csrapprovalpolicies.csrgate.dev
spec:
  group: csrgate.dev
  names: {kind: CsrApprovalPolicy, plural: csrapprovalpolicies, singular: csrapprovalpolicy, shortNames: [csrpolicy]}
  scope: Cluster
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              signerNames: {type: array, items: {type: string}}
",
    )
    .unwrap();
    let out = kubectl(&env, &["apply", "-f", crd.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let policy = env.dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata:\n  name: p1\nspec:\n  signerNames: [kubernetes.io/kubelet-serving]\n",
    )
    .unwrap();
    let out = kubectl(&env, &["apply", "-f", policy.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(&env, &["get", "csrpolicy"]).await;
    assert!(text(&out).contains("p1"), "{}", text(&out));
    std::fs::write(
        &policy,
        "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata:\n  name: p1\nspec:\n  signerNames: [kubernetes.io/kubelet-serving]\n  bogus: 1\n",
    )
    .unwrap();
    let out = kubectl(&env, &["apply", "-f", policy.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("strict decoding error: unknown field \"spec.bogus\""),
        "{}",
        text(&out)
    );
    let out = kubectl(&env, &["delete", "csrpolicy", "p1"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_rejects_an_unknown_csr_field_on_the_server() {
    require_kubectl!();
    let env = start().await;
    let file = write_csr_yaml(env.dir.path(), "bogus", &request_pem("jane", &[], &[]));
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("  usages:", "  bogus: 1\n  usages:");
    std::fs::write(&file, yaml).unwrap();
    let out = kubectl(&env, &["create", "-f", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown field \"spec.bogus\""),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_example_policies_with_defaults_and_printer_columns() {
    require_kubectl!();
    let env = start().await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let out = kubectl(&env, &["apply", "-f", examples.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(&env, &["get", "csrpolicy", "kubelet-serving"]).await;
    let shown = text(&out);
    let header: Vec<&str> = shown
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "SIGNERS", "READY", "AGE"],
        "{shown}"
    );
    assert!(
        shown.contains("Enforce"),
        "mode defaults to Enforce: {shown}"
    );
    let out = kubectl(
        &env,
        &[
            "get",
            "csrpolicy",
            "kubelet-serving",
            "-o",
            "jsonpath={.spec.failureAction}",
        ],
    )
    .await;
    assert_eq!(text(&out), "Deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_and_label_update_a_csr() {
    require_kubectl!();
    let env = start().await;
    let file = write_csr_yaml(env.dir.path(), "applied", &request_pem("jane", &[], &[]));
    let out = kubectl(&env, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(text(&out).contains("created"), "{}", text(&out));
    let yaml = std::fs::read_to_string(&file).unwrap().replace(
        "  name: applied\n",
        "  name: applied\n  labels: {team: blue}\n",
    );
    std::fs::write(&file, yaml).unwrap();
    let out = kubectl(&env, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(text(&out).contains("configured"), "{}", text(&out));
    let out = kubectl(&env, &["label", "csr", "applied", "env=prod"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(
        &env,
        &["get", "csr", "-l", "team=blue,env=prod", "-o", "name"],
    )
    .await;
    assert_eq!(
        text(&out).trim(),
        "certificatesigningrequest.certificates.k8s.io/applied"
    );
}
