//! Bursts of CSRs for the failover and fault tests: half of them approved, half denied by one
//! policy, so that "decided right" means the right half each.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{create_as, kubectl_ok, manifest, openssl_request};

/// The custom signer of the bursts; the admin's controller may approve for it.
pub const SIGNER: &str = "csrgate.dev/burst";

/// Applies the burst policy: CN `burst-ok` approves, anything else is denied.
pub fn apply_policy(dir: &Path) {
    let policy = serde_json::json!({
        "apiVersion": "csrgate.dev/v1alpha1",
        "kind": "CsrApprovalPolicy",
        "metadata": {"name": "burst"},
        "spec": {
            "signerNames": [SIGNER],
            "validations": [{"name": "cn-is-burst-ok",
                             "expression": "x509.commonName == \"burst-ok\"",
                             "message": "CN must be burst-ok"}],
        },
    });
    let file = dir.join("burst-policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// The manifests of `count` CSRs named `<prefix>-<i>`, even ones approvable, odd ones not,
/// and the decision each must get.
pub fn manifests(
    dir: &Path,
    prefix: &str,
    count: usize,
) -> (Vec<serde_json::Value>, BTreeMap<String, &'static str>) {
    let (_, ok) = openssl_request(dir, &format!("{prefix}-ok"), "/CN=burst-ok");
    let (_, bad) = openssl_request(dir, &format!("{prefix}-bad"), "/CN=burst-bad");
    let mut objects = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..count {
        let name = format!("{prefix}-{i:04}");
        let (pem, decision) = if i % 2 == 0 {
            (&ok, "Approved")
        } else {
            (&bad, "Denied")
        };
        objects.push(manifest(&name, pem, SIGNER, &["client auth"]));
        expected.insert(name, decision);
    }
    (objects, expected)
}

/// Creates the manifests as jane, in the background; join the handle to wait.
pub fn create_in_background(
    dir: &Path,
    objects: Vec<serde_json::Value>,
) -> std::thread::JoinHandle<()> {
    let dir = dir.to_owned();
    std::thread::spawn(move || create_as(&dir, &objects, "jane", &["platform-admins"]))
}
