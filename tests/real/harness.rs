//! The shared control plane, one test at a time, and `csrgate controller` processes on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use csrgate_kube::ControlPlane;

use crate::util::{csrgate, free_port, http, root, run};

/// The control plane, with the CsrApprovalPolicy CRD applied and established, and every
/// authenticated user allowed to create CSRs (`examples/rbac/csr-requesters.yaml`).
pub fn plane() -> &'static ControlPlane {
    static READY: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    READY.get_or_init(|| {
        kubectl_ok(&["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"]);
        kubectl_ok(&["apply", "-f", "examples/rbac/csr-requesters.yaml"]);
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/csrapprovalpolicies.csrgate.dev",
        ]);
    });
    plane
}

/// Holds the control plane for one test: controllers of two tests running at once would
/// decide each other's CSRs. Every policy and CSR of earlier tests is deleted first.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    plane();
    kubectl_ok(&["delete", "csrapprovalpolicies", "--all", "--wait=true"]);
    kubectl_ok(&["delete", "csr", "--all", "--wait=true"]);
    kubectl_ok(&[
        "delete",
        "nodes,clusterrolebindings",
        "-l",
        TEST_LABEL,
        "--wait=true",
    ]);
    guard
}

/// The label of cluster objects a test creates beside policies and CSRs (Nodes, bindings),
/// which [`serial`] deletes before the next test.
pub const TEST_LABEL: &str = "csrgate.dev/test";

/// Creates the objects of a manifest file (relative to the repository root), labelled with
/// [`TEST_LABEL`] so that the next test starts without them.
pub fn create_labelled(dir: &Path, file: &str) {
    let text = std::fs::read_to_string(crate::util::repo(file)).unwrap();
    let mut objects: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    objects.retain(|o| !o.is_null());
    for object in &mut objects {
        object["metadata"]["labels"][TEST_LABEL] = "true".into();
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let path = dir.join(format!("labelled-{}.json", free_port()));
    std::fs::write(&path, list.to_string()).unwrap();
    kubectl_ok(&["create", "-f", path.to_str().unwrap()]);
}

/// kubectl of the control plane's release with the admin kubeconfig, run from the
/// repository root; (exit code, stdout, stderr).
pub fn kubectl(args: &[&str]) -> (i32, String, String) {
    run(plane_kubectl().args(args))
}

/// [`kubectl`], asserting success; returns stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = kubectl(args);
    assert_eq!(code, 0, "kubectl {args:?} failed:\n{stdout}{stderr}");
    stdout
}

/// kubectl with stdin, asserting success; returns stdout.
pub fn kubectl_stdin(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = plane_kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn plane_kubectl() -> Command {
    let mut command = ControlPlane::shared().kubectl();
    command.current_dir(root());
    command
}

/// The CSR as JSON.
pub fn csr(name: &str) -> serde_json::Value {
    serde_json::from_str(&kubectl_ok(&["get", "csr", name, "-o", "json"])).unwrap()
}

/// Waits until `done` holds for the CSR; returns it, or panics with it after `seconds`.
pub fn wait_csr(
    name: &str,
    seconds: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let csr = csr(name);
        if done(&csr) {
            return csr;
        }
        assert!(
            Instant::now() < deadline,
            "CSR {name} not as expected after {seconds} s:\n{csr:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the CSR carries the issued certificate.
pub fn issued(csr: &serde_json::Value) -> bool {
    csrgate_api::csr::certificate(&crate::util::typed_csr(csr)).is_some()
}

/// A `csrgate controller` process on the control plane; killed when dropped.
pub struct Controller {
    child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
    /// Its metrics address.
    pub metrics: String,
}

impl Controller {
    /// Starts the controller with `kubeconfig` and `extra` arguments, logging into `dir`;
    /// returns once `/healthz` answers.
    pub fn start(dir: &Path, kubeconfig: &Path, extra: &[&str]) -> Self {
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!(
            "controller-{}.log",
            metrics.replace([':', '.'], "-")
        ));
        let child = csrgate()
            .args(["controller", "--metrics-addr", &metrics, "--kubeconfig"])
            .arg(kubeconfig)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let controller = Self {
            child,
            log,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(
            "GET",
            &format!("http://{}/healthz", controller.metrics),
            None,
        )
        .0 != 200
        {
            assert!(
                Instant::now() < deadline,
                "controller did not serve /healthz:\n{}",
                controller.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        controller
    }

    /// What `/readyz` says: `ok: leader, synced`, `ok: standby`, or why it is not ready.
    pub fn readyz(&self) -> String {
        http("GET", &format!("http://{}/readyz", self.metrics), None).1
    }

    /// Waits until `/readyz` answers `ok: <role>` (`leader`, `standby`); panics with the
    /// log after `seconds`. ("not ready: ... leader election pending" names no role.)
    pub fn wait_for_role(&self, role: &str, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let expected = format!("ok: {role}");
        while !self.readyz().starts_with(&expected) {
            assert!(
                Instant::now() < deadline,
                "no {role} within {seconds} s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pauses (`SIGSTOP`) or resumes (`SIGCONT`) the process, as a stalled node or a long
    /// garbage-collection pause would.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let (code, _, stderr) = run(Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string()));
        assert_eq!(code, 0, "kill {signal}: {stderr}");
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

/// A copy of the admin kubeconfig that acts as `user` in `groups` (impersonation; with
/// `system:masters` it keeps every right), so that the audit log tells controllers apart.
pub fn kubeconfig_as(dir: &Path, user: &str, groups: &[&str]) -> PathBuf {
    let path = dir.join(format!("{user}.kubeconfig"));
    crate::util::write_kubeconfig_as(plane().kubeconfig(), &path, user, groups);
    path
}

/// The successful writes to CSRs' `approval` subresource the API server audited, as
/// (CSR, the user acting, which is the impersonated user when there is one).
pub fn approval_writers() -> Vec<(String, String)> {
    plane()
        .audit_events()
        .into_iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| e["objectRef"]["subresource"] == "approval")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_u64()
                .is_some_and(|c| c < 300)
        })
        .map(|e| {
            let user = e["impersonatedUser"]["username"]
                .as_str()
                .or_else(|| e["user"]["username"].as_str())
                .unwrap_or_default()
                .to_owned();
            (
                e["objectRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                user,
            )
        })
        .collect()
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str]) {
    let (code, _, stderr) = run(Command::new("openssl").args(args));
    assert_eq!(code, 0, "openssl {args:?}: {stderr}");
}

/// A P-256 key and a PEM CSR for `subject`, made with openssl as a person would; returns
/// (key path, CSR PEM).
pub fn openssl_request(dir: &Path, name: &str, subject: &str) -> (PathBuf, String) {
    let pem = openssl_request_with_key(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        subject,
    );
    (dir.join(format!("{name}.key")), pem)
}

/// A PEM CSR for `subject` whose key openssl makes with `key` (`genpkey` arguments); the key
/// is `<dir>/<name>.key`.
pub fn openssl_request_with_key(dir: &Path, name: &str, key: &[&str], subject: &str) -> String {
    let key_path = dir.join(format!("{name}.key"));
    let request = dir.join(format!("{name}.csr"));
    let key_path = key_path.to_str().unwrap();
    openssl(&[&["genpkey"], key, &["-out", key_path]].concat());
    openssl(&[
        "req",
        "-new",
        "-key",
        key_path,
        "-subj",
        subject,
        "-out",
        request.to_str().unwrap(),
    ]);
    std::fs::read_to_string(request).unwrap()
}

/// A CertificateSigningRequest manifest (24 h lifetime).
pub fn manifest(name: &str, pem: &str, signer: &str, usages: &[&str]) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer,
            "usages": usages,
            "expirationSeconds": 86_400,
        },
    })
}

/// Creates the objects as one kubectl call (a List, created item by item in order), as
/// `user` in `groups`.
pub fn create_as(dir: &Path, objects: &[serde_json::Value], user: &str, groups: &[&str]) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let file = dir.join(format!("list-{}.json", free_port()));
    std::fs::write(&file, list.to_string()).unwrap();
    let mut args = vec!["create", "-f", file.to_str().unwrap(), "--as", user];
    for group in groups {
        args.extend(["--as-group", group]);
    }
    kubectl_ok(&args);
}

/// Every CSR as JSON, by name.
pub fn all_csrs() -> std::collections::BTreeMap<String, serde_json::Value> {
    let list: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&["get", "csr", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|csr| {
            (
                csr["metadata"]["name"].as_str().unwrap().to_owned(),
                csr.clone(),
            )
        })
        .collect()
}

/// The Approved and Denied conditions of a CSR, in order.
pub fn decisions(csr: &serde_json::Value) -> Vec<String> {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str())
        .filter(|t| matches!(*t, "Approved" | "Denied"))
        .map(str::to_owned)
        .collect()
}

/// The writes to CSRs' `approval` subresource the API server audited: (CSR, user, code).
pub fn approval_writes() -> Vec<(String, String, u16)> {
    plane()
        .audit_events()
        .into_iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| e["objectRef"]["subresource"] == "approval")
        .map(|e| {
            (
                e["objectRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["responseStatus"]["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until every CSR of `expected` (name to `Approved`/`Denied`) has a decision, then
/// asserts each got exactly the expected one, one condition only, and at most one audited
/// successful approval write (a write in flight when the API server was killed may miss
/// its audit line, never gain a second).
pub fn assert_decided_once(expected: &std::collections::BTreeMap<String, &str>, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let csrs = loop {
        let csrs = all_csrs();
        let undecided = expected
            .keys()
            .filter(|name| csrs.get(*name).is_none_or(|c| decisions(c).is_empty()))
            .count();
        if undecided == 0 {
            break csrs;
        }
        assert!(
            Instant::now() < deadline,
            "{undecided} of {} CSRs undecided after {seconds} s",
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let writes = approval_writes();
    for (name, decision) in expected {
        assert_eq!(
            decisions(&csrs[name]),
            [*decision],
            "{name}: {:#}",
            csrs[name]
        );
        let ok = writes
            .iter()
            .filter(|(csr, _, code)| csr == name && *code < 300)
            .count();
        assert!(ok <= 1, "{name}: {ok} successful approval writes");
    }
}
