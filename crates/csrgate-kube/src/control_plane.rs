//! Starting, watching and stopping etcd, kube-apiserver and kube-controller-manager.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::pki::{SERVICE_CLUSTER_IP_RANGE, write};
use crate::process::{self, tail};
use crate::{Binaries, Error, Pki, Result, kubeconfig};

/// How long one component may take to become ready before the start fails.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of a component's log quoted in a start error.
const TAIL_LINES: usize = 25;
/// Attempts with fresh ports when a component finds its port taken.
const PORT_ATTEMPTS: usize = 4;
/// The API server's audit policy: every write to a CSR's `approval` subresource, at level
/// Metadata (who, which CSR, the response code), nothing else. It is how the tests count the
/// decisions written on a server that keeps no write log of its own.
const AUDIT_POLICY: &str = r#"{
  "apiVersion": "audit.k8s.io/v1",
  "kind": "Policy",
  "omitStages": ["RequestReceived"],
  "rules": [
    {"level": "Metadata", "verbs": ["update", "patch"],
     "resources": [{"group": "certificates.k8s.io", "resources": ["certificatesigningrequests/approval"]}]},
    {"level": "None"}
  ]
}"#;

/// One process of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// etcd, the store.
    Etcd,
    /// kube-apiserver.
    KubeApiserver,
    /// kube-controller-manager, running only the CSR controllers.
    KubeControllerManager,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Self; 3] = [Self::Etcd, Self::KubeApiserver, Self::KubeControllerManager];

    /// The binary's name, used for its log and pid files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::KubeApiserver => "kube-apiserver",
            Self::KubeControllerManager => "kube-controller-manager",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the processes end with the one that started them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// They die with this process (tests); [`ControlPlane`]'s drop also stops them.
    Attached,
    /// They outlive this process (`make cluster-up`); their pids go to `<dir>/<name>.pid`
    /// for [`ControlPlane::down`].
    Detached,
}

/// Loopback ports of the components.
#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
}

impl Ports {
    fn free() -> Result<Self> {
        Ok(Self {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
        })
    }
}

/// How kube-controller-manager runs; [`Default`] is what the tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerManagerOptions {
    /// Its `--controllers`: by default `csrsigning`, `csrapproving` and `csrcleaner`.
    /// Benchmarks leave out `csrapproving` so that csrgate alone decides kubelet CSRs.
    pub controllers: Vec<String>,
    /// Its `--kube-api-qps` and `--kube-api-burst` (client-side rate limit of each
    /// controller's client); `None` keeps kube-controller-manager's defaults (20 and 30).
    pub api_qps_burst: Option<(u32, u32)>,
}

impl Default for ControllerManagerOptions {
    fn default() -> Self {
        Self {
            controllers: ["csrsigning", "csrapproving", "csrcleaner"]
                .map(str::to_owned)
                .to_vec(),
            api_qps_burst: None,
        }
    }
}

/// A running control plane: etcd, kube-apiserver with RBAC and the CSR admission plugins,
/// kube-controller-manager with the CSR controllers.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    binaries: Binaries,
    pki: Pki,
    kubeconfig: PathBuf,
    lifetime: Lifetime,
    controller_manager: ControllerManagerOptions,
    ports: Mutex<Ports>,
    children: Mutex<BTreeMap<Component, Child>>,
}

impl ControlPlane {
    /// Starts a control plane whose state (certificates, etcd data, kubeconfigs, logs) lives in
    /// `dir`, which is emptied first. Returns once `/readyz` answers `ok`, CSRs are served and
    /// kube-controller-manager holds its leader Lease.
    ///
    /// # Errors
    /// [`Error::BinaryMissing`] when `make kube` has not run; [`Error::Died`] or
    /// [`Error::NotReady`] with the last lines of the component's log when a process exits
    /// or does not become ready (a taken port is retried with fresh ports first).
    pub fn start(dir: &Path, binaries: Binaries, lifetime: Lifetime) -> Result<Self> {
        Self::start_with(dir, binaries, lifetime, ControllerManagerOptions::default())
    }

    /// [`ControlPlane::start`] with kube-controller-manager run as `controller_manager` says.
    ///
    /// # Errors
    /// As [`ControlPlane::start`].
    pub fn start_with(
        dir: &Path,
        binaries: Binaries,
        lifetime: Lifetime,
        controller_manager: ControllerManagerOptions,
    ) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
                action: "empty the state folder",
                path: dir.to_owned(),
                source,
            })?;
        }
        for sub in ["logs", "etcd"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|source| Error::Io {
                action: "create",
                path: dir.join(sub),
                source,
            })?;
        }
        let dir = std::fs::canonicalize(dir).map_err(|source| Error::Io {
            action: "resolve",
            path: dir.to_owned(),
            source,
        })?;
        let pki = Pki::generate(&dir.join("pki"))?;
        let plane = Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            binaries,
            pki,
            lifetime,
            controller_manager,
            ports: Mutex::new(Ports::free()?),
            children: Mutex::new(BTreeMap::new()),
        };
        for component in Component::ALL {
            plane.start_component(component)?;
        }
        Ok(plane)
    }

    /// The control plane of this test binary: started on first use under
    /// `target/kube-tests/<test binary name>`, shared by every test, stopped when the binary
    /// exits.
    ///
    /// # Panics
    /// When it cannot start; the message says why (binaries not built, a process that died
    /// with the end of its log).
    #[must_use]
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| {
            let binary = std::env::current_exe()
                .ok()
                .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "tests".to_owned());
            let dir = crate::repository_root()
                .join("target/kube-tests")
                .join(binary);
            let started = Binaries::locate()
                .and_then(|binaries| Self::start(&dir, binaries, Lifetime::Attached));
            match started {
                Ok(plane) => plane,
                Err(error) => panic!("the real control plane did not start: {}", chain(&error)),
            }
        })
    }

    /// The admin kubeconfig (user `kubernetes-admin` in `system:masters`).
    #[must_use]
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The state folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates and keys.
    #[must_use]
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The binaries in use (kubectl of the same release among them).
    #[must_use]
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    #[must_use]
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports().apiserver)
    }

    /// The log file of a component (appended to across restarts).
    #[must_use]
    pub fn log(&self, component: Component) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }

    /// The API server's audit log: one JSON event per line for every write to a CSR's
    /// `approval` subresource (`objectRef.name`, `user.username`, `responseStatus.code`).
    #[must_use]
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("logs").join("audit.log")
    }

    /// The audit events recorded so far (lines that do not parse are skipped: the last one
    /// may be half written).
    #[must_use]
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn audit_policy(&self) -> Result<PathBuf> {
        let path = self.dir.join("audit-policy.json");
        write(&path, AUDIT_POLICY)?;
        Ok(path)
    }

    /// kubectl of the same release with the admin kubeconfig.
    #[must_use]
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.binaries.kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Writes a kubeconfig for a user who authenticates with a client certificate and key
    /// (PEM files) issued by the cluster CA; returns its path in the state folder.
    ///
    /// # Errors
    /// As [`kubeconfig`], and [`Error::Io`] when it cannot be written.
    pub fn write_kubeconfig(&self, name: &str, cert: &Path, key: &Path) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write(
            &path,
            &kubeconfig(&self.server(), &self.pki.ca_cert, name, cert, key)?,
        )?;
        Ok(path)
    }

    /// The process id of a running component, to read its CPU time and memory from /proc.
    #[must_use]
    pub fn pid(&self, component: Component) -> Option<u32> {
        self.lock_children().get(&component).map(Child::id)
    }

    /// Stops a component with SIGKILL (etcd keeps its data folder).
    ///
    /// # Errors
    /// [`Error::Io`] when the signal cannot be sent.
    pub fn kill(&self, component: Component) -> Result<()> {
        let child = self.lock_children().remove(&component);
        if let Some(mut child) = child {
            child
                .kill()
                .map_err(|source| self.io("kill", component, source))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) a component.
    ///
    /// # Errors
    /// [`Error::Io`] when the signal cannot be sent.
    pub fn pause(&self, component: Component, paused: bool) -> Result<()> {
        let pid = self.lock_children().get(&component).map(Child::id);
        if let Some(pid) = pid {
            process::signal(pid, if paused { "STOP" } else { "CONT" })
                .map_err(|source| self.io("signal", component, source))?;
        }
        Ok(())
    }

    /// Starts a component (again) with the same ports, state and flags, and waits until it
    /// is ready; a port found taken is replaced by a fresh one.
    ///
    /// # Errors
    /// As [`ControlPlane::start`].
    pub fn start_component(&self, component: Component) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log_path = self.log(component);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|source| Error::Io {
                    action: "open",
                    path: log_path.clone(),
                    source,
                })?;
            let command = self.command(component)?;
            let child = process::spawn(command, &log, self.lifetime == Lifetime::Attached)
                .map_err(|source| Error::Spawn { component, source })?;
            if self.lifetime == Lifetime::Detached {
                let pid_path = self.dir.join(format!("{component}.pid"));
                std::fs::write(&pid_path, child.id().to_string()).map_err(|source| Error::Io {
                    action: "write",
                    path: pid_path,
                    source,
                })?;
            }
            self.lock_children().insert(component, child);
            match self.wait_ready(component) {
                Err(Error::Died { tail, .. })
                    if attempt < PORT_ATTEMPTS && tail.contains("address already in use") =>
                {
                    self.new_port(component)?;
                }
                other => return other,
            }
        }
    }

    /// Stops the processes a detached control plane in `dir` left running (SIGTERM, then
    /// SIGKILL after 10 s) and removes the folder.
    ///
    /// # Errors
    /// [`Error::NoState`] when `dir` holds no pid files; [`Error::Io`] when it cannot be
    /// removed.
    pub fn down(dir: &Path) -> Result<()> {
        let pids: Vec<u32> = Component::ALL
            .iter()
            .rev()
            .filter_map(|c| std::fs::read_to_string(dir.join(format!("{c}.pid"))).ok())
            .filter_map(|text| text.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return Err(Error::NoState(dir.to_owned()));
        }
        for &pid in &pids {
            let _ = process::signal(pid, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|&pid| process::signal(pid, "0").is_ok()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for &pid in &pids {
            let _ = process::signal(pid, "KILL");
        }
        std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
            action: "remove",
            path: dir.to_owned(),
            source,
        })
    }

    /// The command line of `component`, as kubeadm and envtest start it on one machine.
    fn command(&self, component: Component) -> Result<Command> {
        match component {
            Component::Etcd => Ok(self.etcd_command()),
            Component::KubeApiserver => self.apiserver_command(),
            Component::KubeControllerManager => self.controller_manager_command(),
        }
    }

    fn etcd_command(&self) -> Command {
        let ports = self.ports();
        let dir = &self.dir;
        let client = format!("http://127.0.0.1:{}", ports.etcd_client);
        let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
        let mut command = Command::new(&self.binaries.etcd);
        command
            .arg("--name=csrgate-test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=csrgate-test={peer}"))
            // A test cluster trades durability for speed, as controller-runtime's
            // envtest does; a SIGKILL of etcd is not among the faults tested.
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        command
    }

    fn apiserver_command(&self) -> Result<Command> {
        let ports = self.ports();
        let pki = &self.pki;
        let dir = &self.dir;
        // Written with each start: a retry after a taken port moves the server.
        let admin = kubeconfig(
            &self.server(),
            &pki.ca_cert,
            "kubernetes-admin",
            &pki.admin_cert,
            &pki.admin_key,
        )?;
        write(&self.kubeconfig, &admin)?;
        let mut command = Command::new(&self.binaries.kube_apiserver);
        command
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                ports.etcd_client
            ))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // The lease reconciler refuses a loopback address for the `kubernetes`
            // Service's endpoints; nothing here needs them.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={}", ports.apiserver))
            .arg(format!("--cert-dir={}", dir.join("apiserver").display()))
            .arg(format!("--tls-cert-file={}", pki.apiserver_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.apiserver_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!(
                "--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            .arg("--authorization-mode=Node,RBAC")
            // The CSR plugins are on by default; naming them keeps them on whatever
            // the release's defaults become. NodeRestriction is what kubeadm adds.
            .arg(
                "--enable-admission-plugins=NodeRestriction,CertificateApproval,\
                 CertificateSigning,CertificateSubjectRestriction",
            )
            .arg("--profiling=false")
            .arg(format!(
                "--audit-policy-file={}",
                self.audit_policy()?.display()
            ))
            .arg(format!("--audit-log-path={}", self.audit_log().display()))
            .arg("--audit-log-format=json");
        Ok(command)
    }

    fn controller_manager_command(&self) -> Result<Command> {
        let ports = self.ports();
        let pki = &self.pki;
        let dir = &self.dir;
        let kubeconfig_path = dir.join("controller-manager.kubeconfig");
        let text = kubeconfig(
            &self.server(),
            &pki.ca_cert,
            "system:kube-controller-manager",
            &pki.controller_manager_cert,
            &pki.controller_manager_key,
        )?;
        write(&kubeconfig_path, &text)?;
        let mut command = Command::new(&self.binaries.kube_controller_manager);
        command
            .arg(format!("--kubeconfig={}", kubeconfig_path.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                kubeconfig_path.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                kubeconfig_path.display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", ports.controller_manager))
            .arg(format!(
                "--cert-dir={}",
                dir.join("controller-manager").display()
            ))
            .arg(format!(
                "--controllers={}",
                self.controller_manager.controllers.join(",")
            ))
            .arg(format!(
                "--cluster-signing-cert-file={}",
                pki.ca_cert.display()
            ))
            .arg(format!(
                "--cluster-signing-key-file={}",
                pki.ca_key.display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
            // As kubeadm runs it: each controller acts as its own service account
            // (kube-system/certificate-controller for the CSR controllers).
            .arg("--use-service-account-credentials=true")
            .arg("--leader-elect=true");
        if let Some((qps, burst)) = self.controller_manager.api_qps_burst {
            command
                .arg(format!("--kube-api-qps={qps}"))
                .arg(format!("--kube-api-burst={burst}"));
        }
        Ok(command)
    }

    /// Polls until `component` answers as ready; fails early when its process exits.
    fn wait_ready(&self, component: Component) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status(component) {
                return Err(Error::Died {
                    component,
                    status,
                    log: self.log(component),
                    tail: tail(&self.log(component), TAIL_LINES),
                });
            }
            let last = match self.probe(component) {
                Ok(()) => return Ok(()),
                Err(answer) => answer,
            };
            if started.elapsed() > READY_TIMEOUT {
                return Err(Error::NotReady {
                    component,
                    seconds: READY_TIMEOUT.as_secs(),
                    last,
                    log: self.log(component),
                    tail: tail(&self.log(component), TAIL_LINES),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One readiness check: etcd accepts connections; kube-apiserver's `/readyz` says `ok`
    /// and CSRs are served; kube-controller-manager holds its leader Lease.
    fn probe(&self, component: Component) -> Result<(), String> {
        match component {
            Component::Etcd => {
                let address = format!("127.0.0.1:{}", self.ports().etcd_client);
                std::net::TcpStream::connect(&address)
                    .map(drop)
                    .map_err(|error| format!("connect {address}: {error}"))
            }
            Component::KubeApiserver => {
                let ready = self.kubectl_out(&["get", "--raw", "/readyz"])?;
                if ready.trim() != "ok" {
                    return Err(format!("/readyz: {ready}"));
                }
                self.kubectl_out(&[
                    "get",
                    "--raw",
                    "/apis/certificates.k8s.io/v1/certificatesigningrequests?limit=1",
                ])
                .map(drop)
            }
            Component::KubeControllerManager => {
                let holder = self.kubectl_out(&[
                    "get",
                    "lease",
                    "-n",
                    "kube-system",
                    "kube-controller-manager",
                    "-o",
                    "jsonpath={.spec.holderIdentity}",
                ])?;
                if holder.trim().is_empty() {
                    Err("the kube-system/kube-controller-manager Lease has no holder".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }

    fn kubectl_out(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .kubectl()
            .args(["--request-timeout=5s"])
            .args(args)
            .output()
            .map_err(|error| format!("run kubectl: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    fn exit_status(&self, component: Component) -> Option<String> {
        let mut children = self.lock_children();
        let child = children.get_mut(&component)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                children.remove(&component);
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(error) => Some(format!("unknown ({error})")),
        }
    }

    fn io(&self, action: &'static str, component: Component, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: self.log(component),
            source,
        }
    }

    /// Replaces the ports of one component, after it found one taken.
    fn new_port(&self, component: Component) -> Result<()> {
        let mut ports = self.lock_ports();
        match component {
            Component::Etcd => {
                ports.etcd_client = free_port()?;
                ports.etcd_peer = free_port()?;
            }
            Component::KubeApiserver => ports.apiserver = free_port()?,
            Component::KubeControllerManager => ports.controller_manager = free_port()?,
        }
        Ok(())
    }

    fn ports(&self) -> Ports {
        *self.lock_ports()
    }

    fn lock_ports(&self) -> std::sync::MutexGuard<'_, Ports> {
        self.ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, BTreeMap<Component, Child>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.lifetime == Lifetime::Attached {
            for (_, mut child) in std::mem::take(&mut *self.lock_children()).into_iter().rev() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A free loopback port (bound, then released; a start that loses the race retries).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| Error::Io {
            action: "bind a free port on",
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}

/// An error and its causes on one line each.
#[must_use]
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of stand-in binaries: etcd prints a line and exits 3.
    fn failing_binaries(dir: &Path) -> Binaries {
        use std::os::unix::fs::PermissionsExt as _;
        for name in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ] {
            let path = dir.join(name);
            std::fs::write(
                &path,
                "#!/bin/sh\necho \"$0: cannot start: disk on fire\" >&2\nexit 3\n",
            )
            .expect("write stand-in");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod stand-in");
        }
        Binaries::in_dir(dir).expect("stand-ins found")
    }

    #[test]
    fn missing_binaries_name_the_command_that_builds_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Binaries::in_dir(dir.path()).expect_err("nothing built");
        let text = error.to_string();
        assert!(text.starts_with("etcd not found at "), "{text}");
        assert!(text.contains("make kube"), "{text}");
    }

    #[test]
    fn a_component_that_dies_while_starting_fails_the_start_with_its_log() {
        let bin = tempfile::tempdir().expect("tempdir");
        let state = tempfile::tempdir().expect("tempdir");
        let error = ControlPlane::start(
            &state.path().join("cluster"),
            failing_binaries(bin.path()),
            Lifetime::Attached,
        )
        .expect_err("etcd exits");
        let text = error.to_string();
        assert!(
            text.starts_with("etcd exited while starting (exit status: 3)"),
            "{text}"
        );
        assert!(text.contains("cannot start: disk on fire"), "{text}");
        // The certificates were written before the processes started.
        assert!(state.path().join("cluster/pki/ca.crt").is_file());
    }
}
