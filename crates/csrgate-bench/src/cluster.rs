//! The pieces every measurement shares: a `csrgate sandbox` process, clients for it, and
//! reading a process's memory and CPU from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csrgate_api::client::Impersonate;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::{Error, Result};

/// The CSR every burst submits, renamed: jane's client certificate request from the examples.
pub const JANE: &str = include_str!("../../../examples/csrs/jane.yaml");

/// The policy the controller decides bursts with: three rules of the kind a platform team
/// writes for client certificates.
pub const POLICY: &str = r#"
apiVersion: csrgate.dev/v1alpha1
kind: CsrApprovalPolicy
metadata: {name: bench}
spec:
  signerNames: [kubernetes.io/kube-apiserver-client]
  validations:
    - {name: cn-is-requestor, expression: 'x509.commonName == object.spec.username'}
    - {name: no-system-groups, expression: '!x509.organizations.exists(o, o.startsWith("system:"))'}
    - {name: bounded, expression: 'has(object.spec.expirationSeconds) && object.spec.expirationSeconds <= 86400'}
"#;

/// jane's CSR from the examples, the template every burst renames.
pub fn jane_csr() -> Result<CertificateSigningRequest> {
    serde_saphyr::from_str(JANE).map_err(|e| Error::Data {
        what: "examples/csrs/jane.yaml".into(),
        message: e.to_string(),
    })
}

/// Creates `count` objects, object `i` made by `make(i)`, 16 requests at a time (the
/// benchmarks' creators); the first failure stops it, naming `what` was being created.
pub async fn create_all<K>(
    api: &kube::Api<K>,
    count: usize,
    what: &str,
    make: impl Fn(usize) -> Result<K>,
) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter((0..count).map(make))
        .map(|object| async move {
            api.create(&kube::api::PostParams::default(), &object?)
                .await
                .map_err(|source| Error::Kube {
                    what: format!("creating {what}"),
                    source,
                })
        })
        .buffer_unordered(CREATORS)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
}

/// The directory named by `CSRGATE_BENCH_TRACE`, where per-CSR traces and the children's
/// logs go; `None` when unset.
pub fn trace_dir() -> Option<PathBuf> {
    std::env::var_os("CSRGATE_BENCH_TRACE").map(PathBuf::from)
}

/// Concurrent creators in every burst.
pub const CREATORS: usize = 16;

/// A child process killed (and reaped) when dropped, so a failed run leaves nothing behind.
pub struct Process(pub Child);

impl Process {
    /// Starts `program` with `args`, its output discarded.
    ///
    /// With `CSRGATE_BENCH_TRACE=<dir>` set, the child logs at `RUST_LOG` as given to the
    /// bench (not `warn`) and its stderr is appended to `<dir>/<program file name>.log`,
    /// for per-CSR traces (see `docs/development.md`, "Tracing a burst").
    pub fn spawn(program: &Path, args: &[&str], what: &str) -> Result<Self> {
        let mut command = Command::new(program);
        command.args(args).stdout(Stdio::null());
        match trace_dir() {
            Some(dir) => {
                let name = program.file_name().map_or_else(
                    || "child".to_owned(),
                    |name| name.to_string_lossy().into_owned(),
                );
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{name}.log")))
                    .map_err(|source| Error::Io {
                        what: format!("opening the trace log of {what}"),
                        source,
                    })?;
                command.stderr(log);
            }
            None => {
                command.env("RUST_LOG", "warn").stderr(Stdio::null());
            }
        }
        command.spawn().map(Self).map_err(|source| Error::Io {
            what: format!("starting {what} ({})", program.display()),
            source,
        })
    }

    /// Peak and current resident memory and CPU seconds so far.
    pub fn usage(&self) -> Usage {
        Usage::of(self.0.id())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Current resident set (VmRSS), MiB.
    pub rss_mib: f64,
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
}

impl Usage {
    /// What /proc says about process `pid` now (zeros when it cannot be read).
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| -> f64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name (in parentheses): utime is the 12th, stime the 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> f64 {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Self {
            peak_rss_mib: kib("VmHWM:") / 1024.0,
            rss_mib: kib("VmRSS:") / 1024.0,
            cpu_s: (ticks(11) + ticks(12)) / clock_ticks_per_second(),
        }
    }
}

/// `sysconf(_SC_CLK_TCK)`; 100 on every Linux this runs on, and there is no safe way to ask
/// without a libc binding.
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// A running `csrgate sandbox` and the kubeconfig it wrote.
pub struct Sandbox {
    /// The sandbox process, killed when this is dropped.
    _process: Process,
    /// Its kubeconfig (admin user; impersonate others with [`Sandbox::client_as`]).
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// Starts the sandbox on a free loopback port and waits until it answers.
    pub async fn start(csrgate: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            what: "creating a temporary directory".into(),
            source,
        })?;
        let kubeconfig = dir.path().join("kubeconfig");
        let kubeconfig_arg = kubeconfig.display().to_string();
        let process = Process::spawn(
            csrgate,
            &[
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--history",
                "1000000",
                "--kubeconfig-out",
                &kubeconfig_arg,
            ],
            "csrgate sandbox",
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            if Instant::now() > deadline {
                return Err(Error::Incomplete(
                    "the sandbox wrote no kubeconfig in 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sandbox = Self {
            _process: process,
            kubeconfig,
            _dir: dir,
        };
        let client = sandbox.client_as(None).await?;
        while client.apiserver_version().await.is_err() {
            if Instant::now() > deadline {
                return Err(Error::Incomplete("the sandbox never answered".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sandbox)
    }

    /// A client for the sandbox, impersonating `user` (in `platform-admins`) when given.
    pub async fn client_as(&self, user: Option<&str>) -> Result<kube::Client> {
        client(&self.kubeconfig, user).await
    }
}

/// A client from a kubeconfig file, impersonating `user` (in `platform-admins`) when given.
pub async fn client(kubeconfig: &Path, user: Option<&str>) -> Result<kube::Client> {
    let groups = ["platform-admins".to_owned()];
    let acting = user.map(|user| Impersonate::new(user, &groups));
    csrgate_api::client::client(kubeconfig, acting)
        .await
        .map_err(|e| Error::Data {
            what: format!("a client from {}", kubeconfig.display()),
            // The whole chain: the cause is what the reader needs.
            message: std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": "),
        })
}

/// Whether the CSR has a true Approved, Denied or Failed condition.
pub use csrgate_api::csr::is_decided;

/// A loopback port nobody listens on now.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            what: "finding a free port".into(),
            source,
        })
}

/// `GET http://addr/path`: the status line's code and the body, or `None` when nothing answers.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Waits until `GET http://addr/readyz` answers 200.
pub async fn wait_ready(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(http_get(addr, "/readyz").await, Some((200, _))) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Incomplete(format!(
        "http://{addr}/readyz did not answer 200 in {} s",
        timeout.as_secs()
    )))
}

/// The `csrgate controller` process the benchmarks measure: release binary, as many
/// concurrent reconciles as the floor client has writes in flight, no leader election.
pub fn start_controller(
    csrgate: &Path,
    kubeconfig: &Path,
    metrics: &str,
    watch_nodes: bool,
) -> Result<Process> {
    let kubeconfig = kubeconfig.display().to_string();
    let mut args = vec![
        "controller",
        "--metrics-addr",
        metrics,
        "--concurrency",
        crate::floor::CONCURRENCY_ARG,
        "--kubeconfig",
        &kubeconfig,
    ];
    if !watch_nodes {
        args.push("--no-node-watch");
    }
    Process::spawn(csrgate, &args, "csrgate controller")
}
