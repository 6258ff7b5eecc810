//! Leader election with kube-lease-manager: only the replica holding the Lease runs the
//! controllers, and it confirms the Lease before each approval write, so only one replica
//! ever writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

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

impl LeaseSettings {
    /// How long before its expiry kube-lease-manager renews the lease: a third of it, at
    /// least a second.
    fn grace_seconds(&self) -> u64 {
        (self.duration_seconds / 3).max(1)
    }

    /// How long before the lease's expiry this replica stops writing: half the renewal
    /// grace, so a write that is confirmed lands while the lease still holds, and a renewal
    /// (due a whole grace before expiry) is seen before the margin is reached.
    fn write_margin(&self) -> Duration {
        Duration::from_millis(self.grace_seconds() * 500)
    }
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
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_parameters(LeaseParams::new(
            &settings.identity,
            settings.duration_seconds,
            settings.grace_seconds(),
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

/// Confirms, immediately before an irreversible write, that this replica still holds the
/// lease, and says when it does not so that the controllers stop.
///
/// kube-lease-manager's receiver only changes after its own task has read the Lease, which
/// it does once per renewal period. A leader that was stalled (paused, starved of CPU, cut
/// off from the API server) past its lease's expiry wakes up with the receiver still saying
/// "leader", and its queued reconciles run before the renewal task finds out: in issue #12 an
/// old leader went on writing for 22 s after the standby took the lease. So a write needs a
/// lease known to hold for [`LeaseSettings::write_margin`] more: its expiry (renewTime +
/// leaseDurationSeconds, by the wall clock, as kube-lease-manager and client-go's
/// leaderelection judge it) is read from the Lease itself, and read again only when the
/// known expiry is near, about once per renewal.
pub struct LeaseCheck {
    api: Api<Lease>,
    settings: LeaseSettings,
    leading: watch::Receiver<bool>,
    /// When the lease was last seen to expire while held by this replica.
    held_until: Mutex<Option<SystemTime>>,
    /// Set once the lease is known lost; `run` stops the controllers on it.
    lost: watch::Sender<bool>,
}

impl LeaseCheck {
    /// A check for the lease of `settings`, with the election's receiver.
    pub fn new(
        client: kube::Client,
        settings: LeaseSettings,
        leading: watch::Receiver<bool>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            leading,
            held_until: Mutex::new(None),
            lost: watch::Sender::new(false),
        }
    }

    /// Completes once the lease is known lost (by a check, not by the election's receiver,
    /// which `run` watches too).
    pub async fn lost(&self) {
        let mut lost = self.lost.subscribe();
        // The sender lives as long as `self`; an error means it is gone, and so is the lease.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Ok when this replica holds the lease for long enough to write now.
    ///
    /// Needs `get` on `coordination.k8s.io` leases (the election needs it too).
    ///
    /// # Errors
    /// [`Error::LostLeadership`] when another replica holds the lease or it has expired (the
    /// controllers are stopped); [`Error::LeaseReadFailed`] when the Lease cannot be read, and
    /// [`Error::LeaseUnconfirmed`] when this replica holds it but its renewal is overdue: in
    /// both the write is not made and the CSR stays pending, to be retried.
    pub async fn confirm(&self) -> Result<()> {
        if !*self.leading.borrow() {
            return Err(self.lose("the election says another replica leads"));
        }
        let margin = self.settings.write_margin();
        let mut held_until = self.held_until.lock().await;
        if held_until.is_some_and(|until| SystemTime::now() + margin < until) {
            return Ok(());
        }
        let lease =
            self.api
                .get(&self.settings.name)
                .await
                .map_err(|source| Error::LeaseReadFailed {
                    lease: self.settings.name.clone(),
                    source,
                })?;
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            *held_until = None;
            return Err(self.lose(&format!(
                "the lease is held by {}",
                spec.holder_identity.as_deref().unwrap_or("nobody")
            )));
        }
        let until = spec.renew_time.map(|renewed| {
            SystemTime::from(renewed.0)
                + Duration::from_secs(
                    spec.lease_duration_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(self.settings.duration_seconds),
                )
        });
        *held_until = until;
        match until {
            Some(until) if SystemTime::now() + margin < until => Ok(()),
            Some(until) if SystemTime::now() >= until => {
                Err(self.lose("the lease expired before it was renewed"))
            }
            _ => Err(Error::LeaseUnconfirmed {
                lease: self.settings.name.clone(),
            }),
        }
    }

    fn lose(&self, why: &str) -> Error {
        if !self.lost.send_replace(true) {
            warn!(identity = %self.settings.identity, why, "lost the leader lease: stopping before any further write");
        }
        Error::LostLeadership
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            namespace: "default".into(),
            name: "csrgate".into(),
            identity: "me".into(),
            duration_seconds: 15,
        }
    }

    /// A Lease held by `holder`, renewed `age` ago, for 15 s.
    fn lease(holder: &str, age: Duration) -> serde_json::Value {
        let renewed = k8s_openapi::jiff::Timestamp::try_from(SystemTime::now() - age).unwrap();
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "csrgate", "namespace": "default"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 15,
                "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            },
        })
    }

    /// A check whose API server answers the Lease read with `status` and `body`; the
    /// election's receiver says "leader".
    async fn check(status: u16, body: serde_json::Value) -> (LeaseCheck, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/csrgate",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = body.to_string();
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let (sender, leading) = watch::channel(true);
        // The election's sender lives as long as the test.
        std::mem::forget(sender);
        (LeaseCheck::new(client, settings(), leading), calls)
    }

    #[tokio::test]
    async fn a_lease_held_and_fresh_is_confirmed_and_read_once_per_renewal() {
        let (check, calls) = check(200, lease("me", Duration::from_secs(1))).await;
        check.confirm().await.unwrap();
        check.confirm().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn issue_12_a_lease_held_by_another_stops_the_writes_and_the_controllers() {
        let (check, _) = check(200, lease("other", Duration::from_secs(1))).await;
        assert!(matches!(check.confirm().await, Err(Error::LostLeadership)));
        tokio::time::timeout(Duration::from_secs(1), check.lost())
            .await
            .expect("lost() completes");
    }

    #[tokio::test]
    async fn issue_12_a_lease_of_ours_that_expired_while_we_were_stalled_is_lost() {
        let (check, _) = check(200, lease("me", Duration::from_secs(30))).await;
        assert!(matches!(check.confirm().await, Err(Error::LostLeadership)));
    }

    #[tokio::test]
    async fn a_lease_of_ours_within_the_margin_of_expiry_is_not_written_under() {
        // Renewed 14 s ago for 15 s: 1 s left, under the 2.5 s margin; not lost yet.
        let (check, _) = check(200, lease("me", Duration::from_secs(14))).await;
        assert!(matches!(
            check.confirm().await,
            Err(Error::LeaseUnconfirmed { .. })
        ));
        assert!(!*check.lost.borrow());
    }

    #[tokio::test]
    async fn an_unreadable_lease_means_no_write_but_not_a_lost_lease() {
        let (check, _) = check(500, serde_json::json!({})).await;
        assert!(matches!(
            check.confirm().await,
            Err(Error::LeaseReadFailed { .. })
        ));
        assert!(!*check.lost.borrow());
    }
}
