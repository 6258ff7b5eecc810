//! Leader election with kube-lease-manager: only the replica holding the Lease runs the
//! controllers, so only one replica ever writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tracing::info;

use crate::health::Readiness;
use crate::{Error, Result};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name, or host and pid).
    pub identity: String,
    /// Seconds a lease lasts without renewal; a standby takes over within this.
    pub duration_seconds: u64,
}

/// Starts competing for the lease; the receiver says whether this replica leads.
///
/// # Errors
/// The Lease cannot be created or read.
pub async fn elect(
    client: kube::Client,
    settings: &LeaseSettings,
    readiness: Arc<Readiness>,
) -> Result<watch::Receiver<bool>> {
    let grace = (settings.duration_seconds / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_parameters(LeaseParams::new(
            &settings.identity,
            settings.duration_seconds,
            grace,
        ))
        .build()
        .await
        .map_err(Error::LeaderElectionFailed)?;
    let (mut receiver, _task) = manager.watch().await;
    let leading = *receiver.borrow_and_update();
    readiness.leader.store(leading, Ordering::Relaxed);
    readiness.role_known.store(true, Ordering::Relaxed);
    info!(identity = %settings.identity, leading, "joined leader election");
    Ok(receiver)
}
