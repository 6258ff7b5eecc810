//! `csrgate explain` on the real server: a CSR csrgate approved and kube-controller-manager
//! signed, explained before and after its policy changed, and one a person approved.

use crate::harness::{Controller, csr, issued, kubectl_ok, plane, serial, wait_csr};
use crate::util::{csrgate, run};

fn explain(name: &str) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = run(csrgate()
        .args(["explain", name, "-o", "json", "--kubeconfig"])
        .arg(plane().kubeconfig()));
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr,
    )
}

fn apply_policy(dir: &std::path::Path, limit: u32) {
    let path = dir.join(format!("policy-{limit}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {{name: explain-jane}}\nspec:\n  signerNames: [kubernetes.io/kube-apiserver-client]\n  validations:\n    - name: cn-is-requestor\n      expression: x509.commonName == object.spec.username\n    - name: short-lived\n      expression: object.spec.expirationSeconds <= {limit}\n      message: at most {limit} seconds\n"
        ),
    )
    .unwrap();
    kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn explain_reads_the_real_server_and_names_what_changed_and_who_decided() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    apply_policy(dir.path(), 86_400);
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    kubectl_ok(&["create", "-f", "examples/csrs/jane.yaml", "--as", "jane"]);
    wait_csr("jane", 30, issued);

    let (code, first, stderr) = explain("jane");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["recorded"]["by"], "csrgate", "{first:#}");
    assert_eq!(first["certificateIssued"], true, "{first:#}");
    assert_eq!(
        first["agrees"],
        true,
        "{first:#}\n{}",
        controller.log_text()
    );
    // The real server overwrites spec.username and groups with who created the CSR.
    assert_eq!(first["username"], "jane");

    apply_policy(dir.path(), 3_600);
    let (_, now, _) = explain("jane");
    assert_eq!(now["now"]["decision"], "Denied", "{now:#}");
    assert_eq!(now["agrees"], false, "{now:#}");
    let verdict = now["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("\"explain-jane\" changed since (generation 1 then, 2 now)"),
        "{verdict}"
    );

    // A CSR a person approves before csrgate can: stop the controller first.
    drop(controller);
    let manifest = std::fs::read_to_string(crate::util::repo("examples/csrs/jane.yaml"))
        .unwrap()
        .replace("name: jane\n", "name: jane-by-hand\n");
    let path = dir.path().join("jane-by-hand.yaml");
    std::fs::write(&path, manifest).unwrap();
    kubectl_ok(&["create", "-f", path.to_str().unwrap(), "--as", "jane"]);
    kubectl_ok(&["certificate", "approve", "jane-by-hand"]);
    let (code, by_hand, stderr) = explain("jane-by-hand");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(by_hand["recorded"]["by"], "other", "{by_hand:#}");
    assert_eq!(
        by_hand["recorded"]["reason"], "KubectlApprove",
        "{by_hand:#}"
    );
    assert_eq!(
        csr("jane-by-hand")["status"]["conditions"][0]["type"],
        "Approved"
    );

    let (code, _, stderr) = explain("no-such-csr");
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "error: CertificateSigningRequest \"no-such-csr\" not found"
    );
}
