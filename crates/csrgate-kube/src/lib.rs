//! A real Kubernetes control plane on 127.0.0.1 for csrgate's tests and benchmarks.
//!
//! etcd, kube-apiserver and kube-controller-manager, built from their Go modules by
//! `make kube` (the Go module in `tools/kube/`), started with the flags a real cluster runs
//! for CertificateSigningRequests: TLS from a generated CA, `--authorization-mode=Node,RBAC`,
//! the CSR admission plugins, a service-account issuer, and kube-controller-manager running
//! only the CSR controllers (`csrsigning` with the cluster CA, `csrapproving`, `csrcleaner`).
//!
//! Two ways to run it:
//! - [`ControlPlane::shared`]: one control plane per test binary, started on first use and
//!   shared by its tests (isolate by object names). Its processes carry a parent-death signal,
//!   so they stop when the test binary exits, also after a panic.
//! - the `csrgate-kube up` / `down` commands behind `make cluster-up` / `make cluster-down`,
//!   whose processes outlive the command.
//!
//! Not shipped: nothing in the product depends on this crate.

mod binaries;
mod control_plane;
mod pki;
mod process;

pub use binaries::Binaries;
pub use control_plane::{Component, ControlPlane, ControllerManagerOptions, Lifetime, chain};
pub use pki::{Pki, kubeconfig};

/// Why the control plane could not be built, started or driven.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary that `make kube` builds is missing.
    #[error(
        "{binary} not found at {path}: build the control plane with `make kube` (needs Go 1.26 and the Go module proxy)"
    )]
    BinaryMissing {
        /// Which binary.
        binary: &'static str,
        /// Where it was looked for.
        path: std::path::PathBuf,
    },
    /// A file or directory of the state folder could not be written or read.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("start {component}")]
    Spawn {
        /// Which component.
        component: Component,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while starting; the last lines of its log are attached.
    #[error("{component} exited while starting ({status}); last lines of {log}:\n{tail}")]
    Died {
        /// Which component.
        component: Component,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: std::path::PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A component did not become ready in time.
    #[error("{component} not ready after {seconds} s: {last}; last lines of {log}:\n{tail}")]
    NotReady {
        /// Which component.
        component: Component,
        /// How long was waited.
        seconds: u64,
        /// The last readiness answer.
        last: String,
        /// Its log file.
        log: std::path::PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A certificate or key could not be generated.
    #[error("generate {what}")]
    Pki {
        /// Which certificate or key.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A kubeconfig could not be written.
    #[error("serialize kubeconfig")]
    Kubeconfig(#[source] serde_json::Error),
    /// The state folder of `down` holds no running control plane.
    #[error("no control plane state in {0} (was `make cluster-up` run?)")]
    NoState(std::path::PathBuf),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository root, from this crate's manifest directory.
#[must_use]
pub fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
