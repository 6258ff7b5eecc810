//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// The `csrgate` binary under test, run from the repository root.
pub fn csrgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_csrgate"));
    command.current_dir(root());
    command
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run csrgate");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// Compares against a golden file; `CSRGATE_BLESS=1` rewrites it.
pub fn assert_golden(name: &str, got: &str) {
    let path = repo(&format!("tests/golden/{name}"));
    if std::env::var_os("CSRGATE_BLESS").is_some() {
        std::fs::write(&path, got).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    pretty_assertions::assert_eq!(
        expected,
        got,
        "golden file {name} differs (CSRGATE_BLESS=1 to update)"
    );
}

/// A `csrgate sandbox` process with its own kubeconfig, and controllers started against it.
/// Every child process is killed when this is dropped.
pub struct Cluster {
    /// The temporary directory holding the kubeconfig.
    pub dir: tempfile::TempDir,
    /// The kubeconfig path.
    pub kubeconfig: PathBuf,
    /// The sandbox's base URL.
    pub url: String,
    sandbox: std::process::Child,
    controllers: Vec<std::process::Child>,
}

impl Cluster {
    /// Starts a sandbox on a free loopback port and waits for its kubeconfig.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Cluster::start`] with extra `csrgate sandbox` arguments (`--sar-rule ...`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let sandbox = csrgate()
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--sign",
                "csrgate.dev/workload-client",
            ])
            .args(extra)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && let Some(line) = text.lines().find(|l| l.trim_start().starts_with("server:"))
            {
                break line
                    .trim_start()
                    .trim_start_matches("server:")
                    .trim()
                    .to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sandbox did not write its kubeconfig"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Self {
            dir,
            kubeconfig,
            url,
            sandbox,
            controllers: Vec::new(),
        }
    }

    /// Starts `csrgate controller` with extra arguments; returns its index and metrics address.
    pub fn start_controller(&mut self, extra: &[&str]) -> (usize, String) {
        let kubeconfig = self.kubeconfig.clone();
        self.start_controller_with(&kubeconfig, extra)
    }

    /// Starts `csrgate controller` acting as `user` (the admin impersonating it), so that the
    /// sandbox's write log tells controllers apart; returns its index and metrics address.
    pub fn start_controller_as(&mut self, user: &str, extra: &[&str]) -> (usize, String) {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let mut config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        for entry in config["users"].as_array_mut().unwrap() {
            entry["user"]["as"] = serde_json::json!(user);
        }
        let kubeconfig = self.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&kubeconfig, config.to_string()).unwrap();
        self.start_controller_with(&kubeconfig, extra)
    }

    /// Pauses (`SIGSTOP`) or resumes (`SIGCONT`) controller `index`.
    pub fn pause_controller(&self, index: usize, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let (code, _, stderr) = run(Command::new("kill")
            .arg(signal)
            .arg(self.controllers[index].id().to_string()));
        assert_eq!(code, 0, "kill {signal}: {stderr}");
    }

    /// Whether controller `index` has exited, and how.
    pub fn controller_exited(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        self.controllers[index].try_wait().unwrap()
    }

    fn start_controller_with(&mut self, kubeconfig: &Path, extra: &[&str]) -> (usize, String) {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("controller-{}.log", self.controllers.len())),
        )
        .unwrap();
        let child = csrgate()
            .args(["controller", "--metrics-addr", &metrics, "--kubeconfig"])
            .arg(kubeconfig)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.controllers.push(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while http("GET", &format!("http://{metrics}/healthz"), None).0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "controller did not serve /healthz"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (self.controllers.len() - 1, metrics)
    }

    /// The log of controller `index`.
    pub fn controller_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("controller-{index}.log")))
            .unwrap_or_default()
    }

    /// Kills controller `index` with SIGKILL.
    pub fn kill_controller(&mut self, index: usize) {
        let _ = self.controllers[index].kill();
        let _ = self.controllers[index].wait();
    }

    /// Runs kubectl against the sandbox; returns (exit code, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        run(Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(root()))
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.kubectl(args);
        assert_eq!(code, 0, "kubectl {args:?} failed:\n{stdout}{stderr}");
        stdout
    }

    /// The CSR as JSON.
    pub fn csr(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.kubectl_ok(&["get", "csr", name, "-o", "json"])).unwrap()
    }

    /// Waits until the CSR has a condition of one of `types`; returns (type, reason, message).
    pub fn wait_for_condition(&self, name: &str, seconds: u64) -> Option<(String, String, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            if let Some(found) = condition(&self.csr(name)) {
                return Some(found);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The sandbox's log of approval writes.
    pub fn writes(&self) -> Vec<serde_json::Value> {
        let (status, body) = http("GET", &format!("{}/_sandbox/writes", self.url), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Calls the sandbox's fault-injection endpoint.
    pub fn fault(&self, path: &str, body: Option<&str>) {
        let (status, text) = http("POST", &format!("{}/_sandbox/{path}", self.url), body);
        assert!(status < 300, "fault {path}: {status} {text}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.controllers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.sandbox.kill();
        let _ = self.sandbox.wait();
    }
}

/// The CSR as the API type (kubectl's JSON of it).
pub fn typed_csr(
    csr: &serde_json::Value,
) -> k8s_openapi::api::certificates::v1::CertificateSigningRequest {
    serde_json::from_value(csr.clone()).unwrap()
}

/// The first true Approved/Denied/Failed condition of a CSR (the rule every crate uses,
/// `csrgate_api::csr::final_condition`): (type, reason, message).
pub fn condition(csr: &serde_json::Value) -> Option<(String, String, String)> {
    let csr = typed_csr(csr);
    csrgate_api::csr::final_condition(&csr).map(|c| {
        (
            c.type_.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 client for loopback test endpoints: (status, body); status 0 when the
/// connection fails.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// A copy of the sandbox's admin kubeconfig with a second context, `nowhere`, made current,
/// whose cluster refuses connections; returns the file and the name of the sandbox's context.
/// A command that honours `--context <that name>` reaches the sandbox; one that does not fails.
pub fn kubeconfig_with_unreachable_current_context(cluster: &Cluster) -> (PathBuf, String) {
    use kube::config::{Cluster as ClusterInfo, Context, NamedCluster, NamedContext};
    let mut config = csrgate_api::client::read(&cluster.kubeconfig).unwrap();
    let context = config.contexts[0].clone();
    config.clusters.push(NamedCluster {
        name: "nowhere".into(),
        cluster: Some(ClusterInfo {
            server: Some("http://127.0.0.1:9".into()),
            ..ClusterInfo::default()
        }),
        other: Default::default(),
    });
    config.contexts.push(NamedContext {
        name: "nowhere".into(),
        context: Some(Context {
            cluster: "nowhere".into(),
            user: context.context.as_ref().unwrap().user.clone(),
            ..Context::default()
        }),
        other: Default::default(),
    });
    config.current_context = Some("nowhere".into());
    let path = cluster.dir.path().join("two-contexts.kubeconfig");
    csrgate_api::client::write(&path, &config).unwrap();
    (path, context.name)
}

/// Writes to `to` a copy of the kubeconfig `from` whose users act as `user` in `groups`
/// (`as`/`as-groups`, which kube-rs and kubectl send as impersonation headers).
pub fn write_kubeconfig_as(from: &Path, to: &Path, user: &str, groups: &[&str]) {
    use csrgate_api::client::{Impersonate, impersonating, read, write};
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let acting = impersonating(read(from).unwrap(), Impersonate::new(user, &groups));
    write(to, &acting).unwrap();
}
