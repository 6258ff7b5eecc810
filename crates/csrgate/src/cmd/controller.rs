//! `csrgate controller`: build the client and run the operator until SIGTERM or SIGINT.

use csrgate_controller::telemetry::{self, LogFormat};
use csrgate_controller::{Config, Error as ControllerError};
use std::num::NonZeroUsize;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Error, Outcome};
use crate::cli::{self, ControllerArgs};

/// Runs the operator.
///
/// # Errors
/// A flag is out of range, the kubeconfig cannot be read, the client cannot be built, the
/// metrics address cannot be bound, or leader election fails.
pub fn run(args: &ControllerArgs) -> Result<Outcome, Error> {
    let max_pending_per_signer = max_pending(args.max_pending_per_signer)?;
    telemetry::init(match args.log_format {
        cli::LogFormat::Text => LogFormat::Text,
        cli::LogFormat::Json => LogFormat::Json,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client(args).await?;
        // The Downward API's pod name (deploy/base/deployment.yaml): the event instance and
        // the lease identity.
        let pod_name = std::env::var("POD_NAME").ok();
        let identity = pod_name.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "csrgate".into()),
                std::process::id()
            )
        });
        let config = Config {
            metrics_addr: args.metrics_addr,
            leader_election: args
                .leader_elect
                .then(|| csrgate_controller::LeaseSettings {
                    namespace: args.lease_namespace.clone(),
                    name: args.lease_name.clone(),
                    identity,
                    duration_seconds: args.lease_duration,
                }),
            dry_run: args.dry_run,
            watch_nodes: !args.no_node_watch,
            concurrency: args.concurrency,
            max_pending_per_signer,
            reporter: "csrgate".into(),
            instance: pod_name,
        };
        csrgate_controller::run(client, config, shutdown_signal(), |addr| {
            tracing::info!(%addr, "metrics and health endpoints listening");
        })
        .await?;
        Ok::<_, Error>(Outcome::Success)
    })
}

/// `--max-pending-per-signer` as the controller takes it.
///
/// # Errors
/// The value is 0 or below: a cap that holds every approval is a mistake, not a setting.
fn max_pending(value: Option<i64>) -> Result<Option<NonZeroUsize>, Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    usize::try_from(value)
        .ok()
        .and_then(NonZeroUsize::new)
        .map(Some)
        .ok_or_else(|| {
            format!("--max-pending-per-signer: must be at least 1, got {value} (leave it out for no cap)")
                .into()
        })
}

async fn client(args: &ControllerArgs) -> Result<kube::Client, ControllerError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(ControllerError::KubeconfigFailed)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(ControllerError::KubeconfigFailed)?
        }
        // A context names a kubeconfig entry: KUBECONFIG or ~/.kube/config, never in-cluster.
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(ControllerError::KubeconfigFailed)?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| ControllerError::ClientFailed(kube::Error::InferConfig(e)))?,
    };
    kube::Client::try_from(config).map_err(ControllerError::ClientFailed)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight decisions");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_of_zero_or_below_is_an_error_naming_the_flag() {
        for value in [0, -3] {
            let error = max_pending(Some(value)).unwrap_err().to_string();
            assert!(
                error.starts_with("--max-pending-per-signer: must be at least 1"),
                "{error}"
            );
        }
        assert_eq!(max_pending(Some(5)).unwrap(), NonZeroUsize::new(5));
        assert_eq!(max_pending(None).unwrap(), None);
    }
}
