//! The policy reconciler: compile each CsrApprovalPolicy once per generation, keep its status
//! (`observedGeneration`, the `Ready` condition, `expressionWarnings`), write it only when it
//! changes, and tell the CSR controller to re-decide.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use csrgate_api::{
    CONDITION_READY, CsrApprovalPolicy, CsrApprovalPolicyStatus, REASON_COMPILED,
    REASON_INVALID_EXPRESSION,
};
use csrgate_policy::{CompiledPolicy, Engine};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, instrument, warn};

use crate::authorization::{Authorization, CONDITION_AUTHORIZED, SignerReviews};
use crate::cache::PolicyCache;
use crate::events::{EventType, Publisher};
use crate::metrics::PolicyLabel;
use crate::{Error, Metrics, Result};

/// Shared handles of the policy reconciler.
pub struct PolicyContext {
    /// The client for status writes.
    pub client: kube::Client,
    /// Where compiled policies go.
    pub cache: PolicyCache,
    /// Publishes compile-error events.
    pub events: Publisher,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes the CSR controller to re-decide every pending CSR.
    pub changed: mpsc::Sender<()>,
    /// The authorizer's answers on which signers csrgate may approve for.
    pub reviews: SignerReviews,
    /// Whether Nodes are watched; without, a policy reading `subjectNode` is not Ready.
    pub watch_nodes: bool,
}

/// Why a policy reading `subjectNode` is refused when the Node watch is off.
pub const SUBJECT_NODE_WITHOUT_WATCH: &str = "csrgate controller runs with --no-node-watch, so no Node can be looked up and subjectNode would always be null (every name would look new); run it with the Node watch, or remove subjectNode from the policy";

/// Compiles a policy for this controller: as [`Engine::compile`], and, when Nodes
/// are not watched, a policy reading `subjectNode` is not Ready, with an error naming each
/// expression that reads it (issue #13: a null `subjectNode` would approve takeovers).
pub fn compile(engine: &Engine, policy: &CsrApprovalPolicy, watch_nodes: bool) -> CompiledPolicy {
    let compiled = engine.compile(policy);
    if watch_nodes {
        compiled
    } else {
        compiled.without_subject_node(SUBJECT_NODE_WITHOUT_WATCH)
    }
}

/// How soon a policy whose signers csrgate may not approve for is checked again, so that
/// fixing the RBAC clears its `Authorized=False` without a policy change.
const FORBIDDEN_RECHECK: Duration = Duration::from_secs(60);

/// Compiles that may run at once: one per CPU, the most that can make progress.
///
/// Without a bound, a burst of policies (1,000 created at once) started one blocking-pool
/// thread per reconcile (tokio allows 512), each starting the compiler's own large-stack
/// thread: 92 threads at the peak, against 12 with the bound. More threads than CPUs only
/// take turns; RSS did not measurably change either way (issue 15, bench/NOTES.md).
static COMPILE_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
});

/// [`compile`] on the blocking pool, at most [`COMPILE_SLOTS`] at a time: compiling parses
/// and checks every expression (milliseconds for a large policy), which must not hold a
/// runtime worker. Should the task fail, the policy stays not compiled, which holds the CSRs
/// it covers.
pub async fn compile_blocking(
    engine: Arc<Engine>,
    policy: Arc<CsrApprovalPolicy>,
    watch_nodes: bool,
) -> CompiledPolicy {
    // The semaphore is never closed, so acquiring fails never; fail closed all the same.
    let Ok(_slot) = COMPILE_SLOTS.acquire().await else {
        return CompiledPolicy::not_compiled(&policy);
    };
    let task_policy = Arc::clone(&policy);
    tokio::task::spawn_blocking(move || compile(&engine, &task_policy, watch_nodes))
        .await
        .unwrap_or_else(|_| CompiledPolicy::not_compiled(&policy))
}

/// Compiles the policy if its generation is new, then writes its status if it differs.
#[instrument(skip(policy, ctx), fields(policy = %policy.name_any(), generation = policy.metadata.generation))]
pub async fn reconcile(policy: Arc<CsrApprovalPolicy>, ctx: Arc<PolicyContext>) -> Result<Action> {
    let compiled = match ctx.cache.get(&policy) {
        Some(compiled) => compiled,
        None => {
            let compiled = compile_blocking(
                Arc::clone(ctx.cache.engine()),
                Arc::clone(&policy),
                ctx.watch_nodes,
            )
            .await;
            ctx.cache.insert(&policy, compiled.clone());
            if compiled.is_ready() {
                info!("compiled");
            } else {
                let message = compiled.not_ready_message().unwrap_or_default();
                warn!(%message, "policy is not Ready");
                ctx.events
                    .publish(
                        &ctx.metrics,
                        policy.as_ref(),
                        EventType::Warning,
                        REASON_INVALID_EXPRESSION,
                        "Compile",
                        message,
                    )
                    .await;
            }
            // Ignore a full channel: a wake-up is already queued.
            let _ = ctx.changed.try_send(());
            compiled
        }
    };
    ctx.metrics
        .policy_ready
        .get_or_create(&PolicyLabel {
            policy: policy.name_any(),
        })
        .set(i64::from(compiled.is_ready()));

    // Asked only of Ready policies: an invalid one decides nothing anyway. An API server
    // that cannot answer (the sandbox has no SelfSubjectAccessReview) gets no condition.
    let authorization = if compiled.is_ready() {
        match ctx
            .reviews
            .review(&ctx.client, &policy.spec.signer_names)
            .await
        {
            Ok(authorization) => Some(authorization),
            Err(error) => {
                debug!(%error, "could not ask the authorizer about this policy's signers");
                None
            }
        }
    } else {
        None
    };
    let desired = desired_status(&policy, &compiled, authorization.as_ref());
    if policy.status.as_ref() != Some(&desired) {
        let api: Api<CsrApprovalPolicy> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({ "status": desired });
        api.patch_status(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| {
            ctx.metrics
                .api_error(crate::metrics::ApiCall::PatchPolicyStatus);
            Error::PolicyStatusWriteFailed {
                policy: policy.name_any(),
                source,
            }
        })?;
    }
    Ok(match authorization {
        Some(Authorization::Forbidden(_)) => Action::requeue(FORBIDDEN_RECHECK),
        _ => Action::await_change(),
    })
}

/// The status the policy should have; the transition time is kept while the Ready status
/// does not change, so an unchanged policy compares equal and is not written.
pub fn desired_status(
    policy: &CsrApprovalPolicy,
    compiled: &CompiledPolicy,
    authorization: Option<&Authorization>,
) -> CsrApprovalPolicyStatus {
    let (status, reason, message) = if compiled.is_ready() {
        (
            "True",
            REASON_COMPILED,
            format!(
                "compiled {} expressions of generation {}",
                policy.spec.variables.len()
                    + policy.spec.match_conditions.len()
                    + policy.spec.validations.len()
                    + policy
                        .spec
                        .validations
                        .iter()
                        .filter(|v| v.message_expression.is_some())
                        .count(),
                compiled.generation()
            ),
        )
    } else {
        (
            "False",
            REASON_INVALID_EXPRESSION,
            compiled.not_ready_message().unwrap_or_default(),
        )
    };
    let mut conditions = vec![condition(policy, CONDITION_READY, status, reason, message)];
    if let Some(authorization) = authorization {
        let (status, reason, message) = authorization.condition();
        conditions.push(condition(
            policy,
            CONDITION_AUTHORIZED,
            status,
            reason,
            message,
        ));
    }
    CsrApprovalPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions,
        expression_warnings: compiled.warnings().to_vec(),
    }
}

/// One condition; its transition time is kept while its status does not change.
fn condition(
    policy: &CsrApprovalPolicy,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> Condition {
    let previous = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: policy.metadata.generation,
        last_transition_time,
    }
}

/// Rebuilds `csrgate_policy_ready` from the store, so deleted policies lose their series
/// (a deleted policy that was not Ready must not keep an alert firing).
pub fn set_ready_gauges(
    metrics: &Metrics,
    cache: &PolicyCache,
    store: &kube::runtime::reflector::Store<CsrApprovalPolicy>,
) {
    let _guard = metrics.pending_lock.lock();
    metrics.policy_ready.clear();
    for policy in store.state() {
        let ready = cache.get(&policy).is_some_and(|c| c.is_ready());
        metrics
            .policy_ready
            .get_or_create(&PolicyLabel {
                policy: policy.name_any(),
            })
            .set(i64::from(ready));
    }
}

/// Logs and counts a failed policy reconcile, then retries shortly.
pub fn error_policy(
    _policy: Arc<CsrApprovalPolicy>,
    error: &Error,
    ctx: Arc<PolicyContext>,
) -> Action {
    warn!(%error, "policy reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabel {
            error: error.metric_label(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(expression: &str) -> CsrApprovalPolicy {
        let mut policy = CsrApprovalPolicy::new(
            "p",
            serde_json::from_value(serde_json::json!({
                "signerNames": ["example.com/x"],
                "validations": [{"name": "v", "expression": expression}]
            }))
            .unwrap(),
        );
        policy.metadata.generation = Some(3);
        policy
    }

    #[test]
    fn issue_13_a_policy_reading_subject_node_is_not_ready_without_the_node_watch() {
        let p = policy("subjectNode == null");
        assert!(compile(&Engine::new(), &p, true).is_ready());
        let status = desired_status(&p, &compile(&Engine::new(), &p, false), None);
        let ready = &status.conditions[0];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, REASON_INVALID_EXPRESSION);
        assert!(
            ready.message.starts_with(
                "spec.validations[0].expression: subjectNode is not available: csrgate controller runs with --no-node-watch"
            ),
            "{}",
            ready.message
        );
        assert!(compile(&Engine::new(), &policy("node == null"), false).is_ready());
    }

    #[test]
    fn a_compiled_policy_is_ready_at_its_generation() {
        let p = policy("true");
        let status = desired_status(&p, &Engine::new().compile(&p), None);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[0].reason, "Compiled");
    }

    #[test]
    fn an_invalid_policy_is_not_ready_with_the_field_path() {
        let p = policy("x509v == 1");
        let status = desired_status(&p, &Engine::new().compile(&p), None);
        assert_eq!(status.conditions[0].status, "False");
        assert_eq!(status.conditions[0].reason, "InvalidExpression");
        assert!(
            status.conditions[0]
                .message
                .starts_with("spec.validations[0].expression: unknown identifier x509v")
        );
    }

    #[test]
    fn a_policy_for_a_signer_csrgate_may_not_approve_for_says_so_beside_ready() {
        let p = policy("true");
        let forbidden = Authorization::Forbidden(vec![("example.com/x".into(), String::new())]);
        let status = desired_status(&p, &Engine::new().compile(&p), Some(&forbidden));
        assert_eq!(status.conditions[0].type_, "Ready");
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[1].type_, "Authorized");
        assert_eq!(status.conditions[1].status, "False");
        assert_eq!(status.conditions[1].reason, "ApproveForbidden");
    }

    #[test]
    fn an_unchanged_policy_produces_an_equal_status_so_nothing_is_written() {
        let mut p = policy("true");
        let first = desired_status(&p, &Engine::new().compile(&p), None);
        p.status = Some(first.clone());
        assert_eq!(desired_status(&p, &Engine::new().compile(&p), None), first);
    }
}
