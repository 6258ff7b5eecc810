//! The shared control plane, one test at a time, and `csrgate controller` processes on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use csrgate_kube::ControlPlane;

use crate::util::{csrgate, free_port, http, root, run};

/// The control plane, with the CsrApprovalPolicy CRD applied and established.
pub fn plane() -> &'static ControlPlane {
    static READY: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    READY.get_or_init(|| {
        kubectl_ok(&["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"]);
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
    guard
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
    csr["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
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

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
