//! `/metrics`, `/healthz` and `/readyz` on the metrics address (axum).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::watches::WatchHealth;
use crate::{Error, Metrics, Result};

/// What `/readyz` reports on.
#[derive(Default)]
pub struct Readiness {
    /// The policy (and Node) stores have synced and the controllers run.
    pub synced: AtomicBool,
    /// Leader election has said whether this replica leads or stands by.
    pub role_known: AtomicBool,
    /// This replica leads (or leader election is off).
    pub leader: AtomicBool,
    /// The watches a leader's caches rest on; any with a problem makes it not ready.
    pub watches: RwLock<Vec<Arc<WatchHealth>>>,
}

impl Readiness {
    /// What keeps the watches from being relied on, one line each; empty when none.
    fn watch_problems(&self) -> Vec<String> {
        self.watches
            .read()
            .map(|watches| watches.iter().filter_map(|w| w.problem()).collect())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Binds the address now (so a bad address fails at start) and serves until the future ends.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::MetricsServerFailed { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::MetricsServerFailed { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(Shared { metrics, readiness });
    let server = async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    };
    Ok((bound, server))
}

async fn metrics_handler(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn ready_handler(State(shared): State<Shared>) -> impl IntoResponse {
    let readiness = &shared.readiness;
    let role_known = readiness.role_known.load(Ordering::Relaxed);
    let leader = readiness.leader.load(Ordering::Relaxed);
    let synced = readiness.synced.load(Ordering::Relaxed);
    // A standby is ready: it is healthy and waiting for the lease. A leader is ready once its
    // stores have synced, and while every watch behind them works (issue #12: a leader whose
    // watches failed went on reporting ready while it saw no new CSRs).
    if role_known && leader && synced {
        let problems = readiness.watch_problems();
        if !problems.is_empty() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}", problems.join("; ")),
            );
        }
    }
    if role_known && (!leader || synced) {
        (
            StatusCode::OK,
            if leader {
                "ok: leader, synced"
            } else {
                "ok: standby"
            }
            .to_owned(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: stores not synced or leader election pending".to_owned(),
        )
    }
}
