//! `csrgate sandbox`: run the local API server until SIGTERM or SIGINT.

use csrgate_api::CsrApprovalPolicy;
use csrgate_sandbox::{Sandbox, SandboxConfig, SarRule};
use kube::CustomResourceExt;

use super::{Error, Outcome};
use crate::cli::SandboxArgs;

/// Runs the sandbox.
///
/// # Errors
/// A SAR rule does not parse, the address cannot be bound, or the kubeconfig cannot be written.
pub fn run(args: &SandboxArgs) -> Result<Outcome, Error> {
    let sar_rules = args
        .sar_rules
        .iter()
        .map(|rule| {
            rule.parse::<SarRule>()
                .map_err(|e| format!("--sar-rule {rule:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = SandboxConfig {
        listen: args.listen,
        kubeconfig_out: Some(args.kubeconfig_out.clone()),
        sign_signers: args.sign.clone(),
        sar_rules,
        history_limit: args.history,
        // The sandbox knows no policies: it serves csrgate's CRD as a cluster would once applied.
        crds: vec![CsrApprovalPolicy::crd()],
        ..SandboxConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sandbox = Sandbox::start(config).await?;
        eprintln!(
            "csrgate sandbox listening on {} (kubeconfig: {})",
            sandbox.url(),
            args.kubeconfig_out.display()
        );
        tokio::select! {
            result = sandbox.wait() => result?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<_, Error>(Outcome::Success)
    })
}
