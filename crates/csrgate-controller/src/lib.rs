//! The csrgate operator: watches CertificateSigningRequests and CsrApprovalPolicies, decides
//! each pending CSR with `csrgate_policy::Engine::decide`, and writes the Approved or Denied
//! condition through the `approval` subresource.
//!
//! [`run`] wires the parts: a policy controller that compiles each policy once per generation
//! and keeps its status, a CSR controller that decides (re-run for every pending CSR when a
//! policy changes, and for the pending CSRs of a node when its Node changes), an optional Node
//! reflector for the `node` variable, leader election (the lease confirmed before each
//! approval write), and the metrics and health endpoints (`/readyz` also says whether the
//! watches work).

mod access_reviews;
mod authorization;
mod cache;
mod cached_node;
mod controller;
mod csr;
mod due;
mod evaluations;
mod events;
#[cfg(test)]
mod fixtures;
mod health;
mod leader;
mod metrics;
mod nodes;
mod pending;
mod policy;
mod queue;
pub mod telemetry;
mod watches;

pub use access_reviews::AccessReviews;
pub use controller::{Config, LeaseSettings, MAX_CONCURRENCY, run};
pub use metrics::Metrics;

/// What can go wrong while reconciling; each variant is a step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the Approved or Denied condition failed.
    #[error("writing the approval condition of CSR {csr} failed")]
    ApprovalWriteFailed {
        /// The CSR.
        csr: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The API server refused the approval write (403): csrgate's identity may not approve
    /// for the CSR's signer.
    #[error(
        "the API server refused the approval write of CSR {csr} for signer {signer}: {message}"
    )]
    ApprovalForbidden {
        /// The CSR.
        csr: String,
        /// Its signer.
        signer: String,
        /// The API server's message.
        message: String,
    },
    /// Re-reading a CSR after a conflict failed.
    #[error("re-reading CSR {csr} failed")]
    CsrReadFailed {
        /// The CSR.
        csr: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The CSR kept changing under every write attempt.
    #[error("CSR {csr} changed under {attempts} approval writes in a row")]
    TooManyConflicts {
        /// The CSR.
        csr: String,
        /// How many writes conflicted.
        attempts: usize,
    },
    /// Deciding a CSR off the async runtime failed: the evaluation task was cancelled or
    /// panicked outside the CEL evaluation (which catches its own panics).
    #[error("deciding CSR {csr} failed")]
    EvaluationFailed {
        /// The CSR.
        csr: String,
        /// Why the task did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Writing a policy's status failed.
    #[error("writing the status of CsrApprovalPolicy {policy} failed")]
    PolicyStatusWriteFailed {
        /// The policy.
        policy: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Serializing an object for the API failed (a bug).
    #[error("serializing {what} failed")]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Building the Kubernetes client failed.
    #[error("building the Kubernetes client failed")]
    ClientFailed(#[source] kube::Error),
    /// Reading the kubeconfig failed.
    #[error("reading the kubeconfig failed")]
    KubeconfigFailed(#[source] kube::config::KubeconfigError),
    /// The metrics and health server could not start.
    #[error("the metrics server could not listen on {addr}")]
    MetricsServerFailed {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Leader election failed.
    #[error("leader election failed")]
    LeaderElectionFailed(#[source] kube_lease_manager::LeaseManagerError),
    /// This replica was the leader and lost the lease; it stops so it never writes as a follower.
    #[error("lost the leader lease")]
    LostLeadership,
    /// Reading the leader Lease before an approval write failed; the write is not made.
    #[error("reading the leader Lease {lease} before an approval write failed")]
    LeaseReadFailed {
        /// The Lease.
        lease: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// This replica holds the leader Lease but its renewal is overdue, so it cannot say that
    /// the lease still holds when a write lands; the write is not made.
    #[error("the leader Lease {lease} is held but not renewed in time; not writing")]
    LeaseUnconfirmed {
        /// The Lease.
        lease: String,
    },
    /// Reading a Node before an approval write that depends on it failed; the write is not
    /// made.
    #[error("reading Node {node} before deciding CSR {csr} failed")]
    NodeReadFailed {
        /// The CSR.
        csr: String,
        /// The Node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A SubjectAccessReview for the `authorizer` variable failed while deciding; nothing is
    /// written for that decision.
    #[error("a SubjectAccessReview for CSR {csr} failed: {message}")]
    AccessReviewFailed {
        /// The CSR.
        csr: String,
        /// The first failure.
        message: String,
    },
}

impl Error {
    /// A bounded label for the error metric: the variant alone, never the object name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ApprovalWriteFailed { .. } => "ApprovalWriteFailed",
            Error::ApprovalForbidden { .. } => "ApprovalForbidden",
            Error::CsrReadFailed { .. } => "CsrReadFailed",
            Error::TooManyConflicts { .. } => "TooManyConflicts",
            Error::EvaluationFailed { .. } => "EvaluationFailed",
            Error::PolicyStatusWriteFailed { .. } => "PolicyStatusWriteFailed",
            Error::Serialize { .. } => "Serialize",
            Error::ClientFailed(_) => "ClientFailed",
            Error::KubeconfigFailed(_) => "KubeconfigFailed",
            Error::MetricsServerFailed { .. } => "MetricsServerFailed",
            Error::LeaderElectionFailed(_) => "LeaderElectionFailed",
            Error::LostLeadership => "LostLeadership",
            Error::LeaseReadFailed { .. } => "LeaseReadFailed",
            Error::LeaseUnconfirmed { .. } => "LeaseUnconfirmed",
            Error::NodeReadFailed { .. } => "NodeReadFailed",
            Error::AccessReviewFailed { .. } => "AccessReviewFailed",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
