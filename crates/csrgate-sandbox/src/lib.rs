//! A local, in-memory Kubernetes API server for CSRs, events, leases, nodes, SubjectAccessReviews and
//! the custom resources of any CustomResourceDefinition applied to it (or passed in
//! [`SandboxConfig::crds`]), faithful to the real kube-apiserver's rules for them, that kubectl and
//! kube-rs talk to. It also plays the standard signer, issuing certificates for approved CSRs from its
//! own CA.
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

mod admin;
mod crd;
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

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;
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
    /// A CRD of [`SandboxConfig::crds`] could not be stored (its name is not `<plural>.<group>`,
    /// or two have one name).
    #[error("storing the CustomResourceDefinition {name:?}: {message}")]
    Crd {
        /// `metadata.name` of the CRD.
        name: String,
        /// What kube-apiserver would have answered.
        message: String,
    },
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
    /// CustomResourceDefinitions stored at start, as if created through the API: each one's resources
    /// are served, its schema prunes, defaults and (with `fieldValidation=Strict`) strictly validates
    /// them, and its printer columns shape `kubectl get`. CRDs applied later through the API are served
    /// the same way.
    pub crds: Vec<CustomResourceDefinition>,
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
            crds: Vec::new(),
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
    /// When the address cannot be bound, the CA not generated, a file not written or a CRD not stored.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Bind(config.listen, e))?;
        let ca = signer::Ca::generate().map_err(Error::Ca)?;
        let token = config.token.clone().unwrap_or_else(token);
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
        for crd in &config.crds {
            crd::store_new(&store, crd).map_err(|e| Error::Crd {
                name: crd.metadata.name.clone().unwrap_or_default(),
                message: e.message,
            })?;
        }
        let faults = Faults::new(store.clone());
        let ca_pem = ca.pem().to_string();
        let (kubeconfig_path, ca_path) = match &config.kubeconfig_out {
            Some(path) => {
                let ca_path = ca_path_for(path);
                kubeconfig::write(path, addr, &token)
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

    /// The kubeconfig of the admin user, whether or not it was written to a file.
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        kubeconfig::kubeconfig(self.addr, &self.token)
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
