//! A local, in-memory Kubernetes API server for CSRs, policies, events, leases, nodes and
//! SubjectAccessReviews, faithful to the real kube-apiserver's rules for them, that kubectl and kube-rs
//! talk to. It also plays the standard signer, issuing certificates for approved CSRs from its own CA.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use csrgate_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).await?;
//! println!("listening on {}", sandbox.addr());
//! sandbox.faults().compact(); // the next watch from an old resourceVersion gets 410 Gone
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

mod csr;
mod discovery;
mod events;
mod faults;
mod handlers;
mod identity;
mod kubeconfig;
mod managed;
mod node;
mod openapi;
mod paging;
mod patch;
mod protobuf;
mod query;
mod registry;
mod sar;
mod schema;
mod server;
mod signer;
mod status;
mod store;
mod table;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use faults::{FailRule, Faults, WriteRecord};
pub use identity::ADMIN_USER;
pub use sar::{SarRule, SarRuleParseError};
pub use server::MAX_BODY;

/// Why the sandbox could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listen address failed.
    #[error("binding {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// Generating the CA failed.
    #[error("generating the sandbox CA")]
    Ca(#[source] signer::SignerError),
    /// Writing the kubeconfig or CA file failed.
    #[error("writing {0}")]
    WriteFile(PathBuf, #[source] std::io::Error),
    /// Reading or parsing the policy CRD file failed.
    #[error("reading the policy CRD {0}")]
    ReadCrd(PathBuf, #[source] Box<dyn std::error::Error + Send + Sync>),
    /// Accepting connections failed.
    #[error("serving connections")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("the server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks a free port (see [`Sandbox::addr`]).
    pub listen: SocketAddr,
    /// Where to write a kubeconfig for the admin user; the CA goes next to it as `<stem>.ca.crt`.
    pub kubeconfig_out: Option<PathBuf>,
    /// Signers besides `kubernetes.io/*` whose approved CSRs the sandbox signs (`--sign`).
    pub sign_signers: Vec<String>,
    /// How SubjectAccessReviews are answered; first match wins, `system:masters` is always allowed.
    pub sar_rules: Vec<SarRule>,
    /// Events kept for watches; a watch from an older resourceVersion gets 410 Gone.
    pub history_limit: usize,
    /// Period of watch bookmarks for clients that allow them.
    pub bookmark_interval: Duration,
    /// The admin bearer token; `None` generates one.
    pub token: Option<String>,
    /// A policy CRD file to serve instead of the built-in one (`crds/csrapprovalpolicies.csrgate.dev.yaml`
    /// of this repository, compiled in). The CRD is stored at start; its schema prunes and strictly validates
    /// policies and its printer columns shape `kubectl get csrpolicy`. A CRD applied later replaces it.
    pub policy_crd: Option<PathBuf>,
    /// Namespaces that exist from the start (besides `default` and `kube-system`).
    pub namespaces: Vec<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_out: None,
            sign_signers: Vec::new(),
            sar_rules: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            token: None,
            policy_crd: None,
            namespaces: Vec::new(),
        }
    }
}

/// A running sandbox. Dropping it stops the server without waiting (as [`Sandbox::shutdown`] does, but
/// without awaiting the server task); dropping a [`Sandbox::wait`] future does the same, so the CLI can
/// `select!` it against Ctrl-C.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    faults: Faults,
    token: String,
    ca_pem: String,
    kubeconfig_path: Option<PathBuf>,
    ca_path: Option<PathBuf>,
    stop: signal::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The policy CRD served from the start, as generated from the Rust types.
const POLICY_CRD: &str = include_str!("../../../crds/csrapprovalpolicies.csrgate.dev.yaml");

fn read_policy_crd(path: Option<&Path>) -> Result<Value> {
    let (text, origin) = match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Error::ReadCrd(path.to_path_buf(), Box::new(e)))?,
            path.to_path_buf(),
        ),
        None => (
            POLICY_CRD.to_string(),
            PathBuf::from("crds/csrapprovalpolicies.csrgate.dev.yaml"),
        ),
    };
    serde_saphyr::from_str(&text).map_err(|e| Error::ReadCrd(origin, Box::new(e)))
}

/// The CA file written next to a kubeconfig.
pub fn ca_path_for(kubeconfig: &Path) -> PathBuf {
    kubeconfig.with_extension("ca.crt")
}

fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    format!("sandbox-{:016x}", h.finish())
}

impl Sandbox {
    /// Bind, create the CA, write the kubeconfig and CA files, and start serving in the background.
    ///
    /// # Errors
    /// When the address cannot be bound, the CA not generated, a file not written or the policy CRD not read.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Bind(config.listen, e))?;
        let ca = signer::Ca::generate().map_err(Error::Ca)?;
        let token = config.token.clone().unwrap_or_else(token);
        let policy_crd = read_policy_crd(config.policy_crd.as_deref())?;
        let policy_schema_file = server::crd_schema(&policy_crd);
        let store = Arc::new(store::Store::new(config.history_limit));
        let mut namespaces = vec![
            "default".to_string(),
            "kube-system".to_string(),
            "kube-public".to_string(),
            "kube-node-lease".to_string(),
        ];
        namespaces.extend(config.namespaces.iter().cloned());
        for ns in namespaces {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": format!("ns-{ns}"), "creationTimestamp": now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            let _ = store.create(registry::store_key(&registry::NAMESPACE), "", &ns, obj);
        }
        let mut crd = (registry::CRD.normalise)(&policy_crd)
            .map_err(|e| Error::ReadCrd(PathBuf::from("policy CRD"), Box::new(e)))?;
        crd["metadata"]["uid"] = json!("csrgate-policy-crd");
        crd["metadata"]["creationTimestamp"] =
            json!(now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        crd["metadata"]["generation"] = json!(1);
        let crd_name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let _ = store.create(registry::store_key(&registry::CRD), "", &crd_name, crd);
        let faults = Faults::new(store.clone());
        let ca_pem = ca.pem().to_string();
        let (kubeconfig_path, ca_path) = match &config.kubeconfig_out {
            Some(path) => {
                let ca_path = ca_path_for(path);
                std::fs::write(path, kubeconfig::render(addr, &token))
                    .map_err(|e| Error::WriteFile(path.clone(), e))?;
                std::fs::write(&ca_path, &ca_pem)
                    .map_err(|e| Error::WriteFile(ca_path.clone(), e))?;
                (Some(path.clone()), Some(ca_path))
            }
            None => (None, None),
        };
        let app = Arc::new(server::App {
            store,
            faults: faults.clone(),
            ca,
            token: token.clone(),
            sign_signers: config.sign_signers.clone(),
            sar_rules: config.sar_rules.clone(),
            bookmark_interval: config.bookmark_interval,
            policy_schema_file,
            addr,
            managed: managed::Managed::default(),
        });
        let (stop, stopped) = signal::channel(false);
        let task = tokio::spawn(server::serve(listener, app, stopped));
        tracing::info!(%addr, "sandbox API server listening");
        Ok(Sandbox {
            addr,
            faults,
            token,
            ca_pem,
            kubeconfig_path,
            ca_path,
            stop,
            task,
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the server URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault-injection handle (the same operations as the `/_sandbox/` admin endpoint).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The admin bearer token (user `admin`, groups `system:masters`, `system:authenticated`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The kubeconfig text for the admin user, whether or not it was written to a file.
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(self.addr, &self.token)
    }

    /// Where the kubeconfig was written, if it was.
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig_path.as_deref()
    }

    /// The sandbox CA certificate (PEM) that issued certificates chain to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written, if it was.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Stop accepting, drop every connection and wait for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Run until the server stops (it only stops on an accept error); for the CLI.
    ///
    /// # Errors
    /// [`Error::Serve`] when accepting fails, [`Error::Join`] when the task panicked.
    pub async fn wait(self) -> Result<()> {
        let _keep = self.stop;
        self.task.await.map_err(Error::Join)?.map_err(Error::Serve)
    }
}

/// The current time as the Kubernetes types hold it (jiff's clock feature is not enabled by k8s-openapi).
pub(crate) fn now() -> k8s_openapi::jiff::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let nanos = i32::try_from(since.subsec_nanos()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(secs, nanos).unwrap_or_default()
}
