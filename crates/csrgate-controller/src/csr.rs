//! The CSR reconciler: guard terminal states, decide with the engine, then make one
//! `approval` write computed beforehand.
//!
//! The write is a PUT of the CSR as read, with its resourceVersion, plus one condition: if
//! anyone changed the CSR since (another approver, a person), the API server answers 409 and
//! the CSR is re-read and decided again. A CSR that already has Approved, Denied or Failed is
//! never written, so no CSR is decided twice.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csrgate_api::{CsrApprovalPolicy, PolicyMode};
use csrgate_policy::{
    CompiledPolicy, Decision, Inputs, NodeNames, Nodes, Outcome, PendingCause, PolicyReport,
    Verdict, reasons,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{Span, debug, info, instrument, warn};

use crate::access_reviews::AccessReviews;
use crate::cache::PolicyCache;
use crate::cached_node::CachedNode;
use crate::evaluations::{EvaluationSlots, HeldSlot};
use crate::events::{EventType, Publisher};
use crate::metrics::{
    AuditLabels, DecisionLabel, DecisionLabels, ErrorLabel, SignerLabel, VerdictLabel,
};
use crate::pending::{Hold, PendingCap};
use crate::{Error, Metrics, Result};

/// How many conflicting writes in a row before giving up until the next event.
const MAX_WRITE_ATTEMPTS: usize = 5;

/// Shared handles of the CSR reconciler.
pub struct CsrContext {
    /// The client for approval writes.
    pub client: kube::Client,
    /// Publishes decision events.
    pub events: Publisher,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Compiled policies.
    pub cache: PolicyCache,
    /// The policy reflector's store.
    pub policies: Store<CsrApprovalPolicy>,
    /// The Node store, when the `node` variable is enabled.
    pub nodes: Option<Store<CachedNode>>,
    /// Every policy is treated as Audit.
    pub dry_run: bool,
    /// Under leader election, confirms the lease before each approval write.
    pub lease: Option<Arc<crate::leader::LeaseCheck>>,
    /// Slots for evaluating on the blocking pool, shared fairly between signers.
    pub evaluations: Arc<EvaluationSlots>,
    /// The per-signer cap on pending CSRs, above which approvals are held.
    pub cap: PendingCap,
    /// When each pending CSR was first seen, for the decision-duration histogram; also
    /// remembers which holds and audit verdicts were already reported, so events are not
    /// repeated on every re-evaluation.
    pub seen: Mutex<HashMap<String, Seen>>,
}

/// What was already said about one pending CSR (an event and a log line), so that it is
/// said once, not on every re-evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reported {
    /// The approval write was refused (403).
    Forbidden,
    /// The request cannot be read.
    InvalidRequest,
    /// A covering Enforce policy, by name, is not Ready and holds the CSR.
    Held(String),
    /// An Audit policy's verdict at one generation: (name, generation).
    Audit(String, i64),
}

/// What the controller remembers of one pending CSR.
pub struct Seen {
    first: Instant,
    reported: Vec<Reported>,
    /// Failed reconciles in a row, for the retry backoff.
    failures: u32,
}

/// Whether a CSR already has a terminal condition (Approved, Denied or Failed, status True):
/// [`csrgate_api::csr::is_decided`], the one rule every crate uses.
pub use csrgate_api::csr::is_decided as is_terminal;

/// Decides one CSR and writes the outcome.
#[instrument(skip(csr, ctx), fields(
    csr = %csr.name_any(),
    signer = %csr.spec.signer_name,
    requestor = csr.spec.username.as_deref().unwrap_or(""),
    decision = tracing::field::Empty,
    reason = tracing::field::Empty,
))]
pub async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<CsrContext>,
) -> Result<Action> {
    if is_terminal(&csr) {
        forget(&ctx, &csr.name_any());
        return Ok(Action::await_change());
    }
    let name = csr.name_any();
    debug!("reconcile started");
    remember(&ctx, &name);
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let mut current = (*csr).clone();
    for _attempt in 0..MAX_WRITE_ATTEMPTS {
        let decision = evaluate(&ctx, &current).await?;
        report_once(&ctx, &current, &decision).await;
        let Some(condition) = condition_for(&decision) else {
            debug!(message = decision.message(), "left pending");
            return Ok(Action::await_change());
        };
        if held_by_cap(&ctx, &current, &decision).await {
            return Ok(Action::await_change());
        }
        let mut body = current.clone();
        body.status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(condition);
        // The decision may have taken long (evaluation has a budget of seconds, and slots
        // are queued): confirm the lease now, not when the reconcile started.
        if let Some(lease) = &ctx.lease {
            lease.confirm().await?;
        }
        match api
            .replace_subresource("approval", &name, &PostParams::default(), &body)
            .await
        {
            Ok(_) => {
                written(&ctx, &current, &decision).await;
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!("CSR changed since it was read; reading it again");
                let read = api.get_opt(&name).await.map_err(|source| {
                    ctx.metrics.api_error(crate::metrics::ApiCall::GetCsr);
                    Error::CsrReadFailed {
                        csr: name.clone(),
                        source,
                    }
                })?;
                // Deleted since the write was refused: as after a 404 on the write.
                let Some(read) = read.filter(|csr| !is_terminal(csr)) else {
                    forget(&ctx, &name);
                    return Ok(Action::await_change());
                };
                current = read;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                forget(&ctx, &name);
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                forbidden(&ctx, &current, &status.message).await;
                return Err(Error::ApprovalForbidden {
                    csr: name,
                    signer: current.spec.signer_name.clone(),
                    message: status.message,
                });
            }
            Err(source) => {
                ctx.metrics
                    .api_error(crate::metrics::ApiCall::UpdateApproval);
                return Err(Error::ApprovalWriteFailed { csr: name, source });
            }
        }
    }
    Err(Error::TooManyConflicts {
        csr: name,
        attempts: MAX_WRITE_ATTEMPTS,
    })
}

/// Decides one CSR; a decision to write that rests on a cached Node (`node`, or
/// `subjectNode`) is confirmed with a fresh read of it first, and taken again when the Node
/// changed.
///
/// The Node cache can lag its API server by the watch delay, or by a whole relist after an
/// expired watch; Approved and Denied are final, so they must not rest on a Node the cache
/// has not caught up with (DESIGN.md, "The decision"; issue #12). Only decisions to write,
/// naming a Node (requestor or CN), with a covering Enforce policy that reads that variable,
/// pay the read.
///
/// # Errors
/// The evaluation task panicked or was cancelled, or the Node could not be read (the CSR
/// stays pending and is retried).
async fn evaluate(ctx: &CsrContext, csr: &CertificateSigningRequest) -> Result<Decision> {
    let policies = ctx.cache.snapshot(&ctx.policies, ctx.dry_run);
    let names = ctx
        .nodes
        .as_ref()
        .map(|_| NodeNames::of(ctx.cache.engine(), csr))
        .unwrap_or_default();
    let requesting_node = names.requestor.as_deref();
    let subject_node = names.subject;
    let cached_node = |name: Option<&str>| {
        ctx.nodes
            .as_ref()
            .and_then(|nodes| nodes.get(&ObjectRef::new(name?)))
    };
    let cached = (
        cached_node(requesting_node),
        cached_node(subject_node.as_deref()),
    );
    let decision = evaluate_with(ctx, csr, policies.clone(), cached.clone()).await?;
    if decision.outcome() == Outcome::Pending {
        return Ok(decision);
    }
    let signer = &csr.spec.signer_name;
    let mut fresh = cached.clone();
    let mut changed = false;
    if let Some(node) = requesting_node
        && reads(&policies, signer, CompiledPolicy::reads_node)
    {
        let read = read_node(ctx, csr, node).await?;
        changed |= read.as_ref() != cached.0.as_deref();
        fresh.0 = read.map(Arc::new);
    }
    if let Some(node) = subject_node.as_deref()
        && reads(&policies, signer, CompiledPolicy::reads_subject_node)
    {
        let read = read_node(ctx, csr, node).await?;
        changed |= read.as_ref() != cached.1.as_deref();
        fresh.1 = read.map(Arc::new);
    }
    if !changed {
        return Ok(decision);
    }
    info!("a Node changed since it was cached; deciding again with the Node as read");
    evaluate_with(ctx, csr, policies, fresh).await
}

/// Whether a covering Enforce policy reads a Node variable (`read` says which): only then
/// can a changed Node change the written decision (Audit policies never write).
fn reads(policies: &[CompiledPolicy], signer: &str, read: fn(&CompiledPolicy) -> bool) -> bool {
    policies
        .iter()
        .any(|p| p.mode() == PolicyMode::Enforce && p.covers(signer) && read(p))
}

/// The Node as its API server has it now, trimmed as the cache trims it; `None` when it
/// does not exist.
///
/// # Errors
/// The read failed.
async fn read_node(
    ctx: &CsrContext,
    csr: &CertificateSigningRequest,
    node: &str,
) -> Result<Option<CachedNode>> {
    Api::<CachedNode>::all(ctx.client.clone())
        .get_opt(node)
        .await
        .map_err(|source| {
            ctx.metrics.api_error(crate::metrics::ApiCall::GetNode);
            Error::NodeReadFailed {
                csr: csr.name_any(),
                node: node.to_owned(),
                source,
            }
        })
}

/// Decides one CSR with the requestor's Node and the Node its CN names on the blocking pool,
/// in one of [`CsrContext::evaluations`]' slots (see `crate::evaluations` for why), the
/// `authorizer` variable answered by SubjectAccessReviews.
///
/// # Errors
/// The evaluation task panicked or was cancelled, or a SubjectAccessReview failed.
async fn evaluate_with(
    ctx: &CsrContext,
    csr: &CertificateSigningRequest,
    policies: Vec<csrgate_policy::CompiledPolicy>,
    (node, subject_node): (Option<Arc<CachedNode>>, Option<Arc<CachedNode>>),
) -> Result<Decision> {
    let name = csr.name_any();
    let slot =
        Arc::new(HeldSlot::acquire(Arc::clone(&ctx.evaluations), &csr.spec.signer_name).await);
    debug!("evaluation slot acquired");
    let csr = csr.clone();
    let reviews = Arc::new(
        AccessReviews::new(
            ctx.client.clone(),
            tokio::runtime::Handle::current(),
            Arc::clone(&ctx.metrics),
        )
        .releasing(Arc::clone(&slot)),
    );
    let authorizer: Arc<dyn csrgate_policy::Authorizer> = reviews.clone();
    let engine = Arc::clone(ctx.cache.engine());
    let decision = tokio::task::spawn_blocking(move || {
        let nodes = Nodes {
            requestor: node.as_deref().map(Deref::deref),
            subject: subject_node.as_deref().map(Deref::deref),
        };
        let inputs = Inputs {
            nodes,
            authorizer: Some(authorizer),
        };
        let decision = engine.decide(&policies, &csr, &inputs);
        // The reviews hold the slot too, until this function returns: give it back now.
        slot.release();
        decision
    })
    .await
    .map_err(|source| Error::EvaluationFailed {
        csr: name.clone(),
        source,
    })?;
    debug!(outcome = decision.outcome().as_str(), "evaluation done");
    // A decision resting on a failed review is neither written nor final (see
    // `crate::access_reviews`).
    match reviews.failure() {
        Some(message) => Err(Error::AccessReviewFailed { csr: name, message }),
        None => Ok(decision),
    }
}

/// The condition to write, or `None` to leave the CSR pending.
pub fn condition_for(decision: &Decision) -> Option<CertificateSigningRequestCondition> {
    let type_ = match decision.outcome() {
        Outcome::Approved => "Approved",
        Outcome::Denied => "Denied",
        Outcome::Pending => return None,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    Some(CertificateSigningRequestCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: decision.reason().map(str::to_owned),
        message: Some(decision.message().to_owned()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    })
}

/// After a successful write: the log line, the event, the metrics.
async fn written(ctx: &CsrContext, csr: &CertificateSigningRequest, decision: &Decision) {
    let name = csr.name_any();
    let reason = decision.reason().unwrap_or("");
    let span = Span::current();
    span.record("decision", decision.outcome().as_str());
    span.record("reason", reason);
    let deciding: Vec<&str> = deciding_policies(decision);
    info!(policies = ?deciding, message = decision.message(), "decision written");
    if let Some(seen) = ctx.seen.lock().ok().and_then(|mut seen| seen.remove(&name)) {
        ctx.metrics
            .decision_duration
            .observe(seen.first.elapsed().as_secs_f64());
    }
    // Written decisions are Approved or Denied; Pending writes nothing (see `condition_for`).
    let label = if decision.outcome() == Outcome::Approved {
        DecisionLabel::Approved
    } else {
        DecisionLabel::Denied
    };
    let policy_labels: Vec<String> = if deciding.is_empty() {
        vec![String::new()]
    } else {
        deciding.iter().map(|p| (*p).to_owned()).collect()
    };
    for policy in policy_labels {
        ctx.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                policy,
                signer: csr.spec.signer_name.clone(),
                decision: label,
            })
            .inc();
    }
    let type_ = if decision.outcome() == Outcome::Approved {
        EventType::Normal
    } else {
        EventType::Warning
    };
    ctx.events
        .publish(
            &ctx.metrics,
            csr,
            type_,
            reason,
            decision.outcome().as_str(),
            decision.message().to_owned(),
        )
        .await;
}

/// The Enforce policies the decision names: the denying ones, or the approving ones.
fn deciding_policies(decision: &Decision) -> Vec<&str> {
    decision
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Enforce)
        .filter(|p| match decision.outcome() {
            Outcome::Approved => p.verdict == Verdict::Approve,
            Outcome::Denied => matches!(p.verdict, Verdict::Fail(_)),
            Outcome::Pending => false,
        })
        .map(|p| p.name.as_str())
        .collect()
}

/// After the API server refused the approval write (403): the authorizer, not the policy,
/// stopped it, so the CSR stays pending. Said once per CSR where a person looks (a Warning
/// event on the CSR and one log line); counted every time.
async fn forbidden(ctx: &CsrContext, csr: &CertificateSigningRequest, message: &str) {
    let signer = &csr.spec.signer_name;
    ctx.metrics
        .api_error(crate::metrics::ApiCall::UpdateApproval);
    ctx.metrics
        .approvals_forbidden
        .get_or_create(&crate::metrics::SignerLabel {
            signer: signer.clone(),
        })
        .inc();
    if !first_time(ctx, &csr.name_any(), Reported::Forbidden) {
        return;
    }
    warn!(%signer, %message, "the API server refused the approval write (403): csrgate may not approve for this signer; the CSR stays pending and is retried with backoff");
    ctx.events
        .publish(
            &ctx.metrics,
            csr,
            EventType::Warning,
            REASON_APPROVAL_FORBIDDEN,
            "Approve",
            format!(
                "csrgate: the API server refused to record the decision (403 Forbidden): {message}; \
                 grant csrgate \"approve\" on certificates.k8s.io signers named {signer:?} \
                 (or \"<domain>/*\") for it to decide this signer; the CSR stays pending"
            ),
        )
        .await;
}

/// The event reason when an approval is held because its signer is over the cap.
pub const REASON_MAX_PENDING_EXCEEDED: &str = "MaxPendingExceeded";

/// Whether an approval must wait because its signer is over `--max-pending-per-signer`;
/// reported by [`held`] when it must. Denials are never held.
async fn held_by_cap(
    ctx: &CsrContext,
    csr: &CertificateSigningRequest,
    decision: &Decision,
) -> bool {
    if decision.outcome() != Outcome::Approved {
        return false;
    }
    let Some(hold) = ctx.cap.hold(csr).await else {
        return false;
    };
    held(ctx, csr, &hold).await;
    true
}

/// After holding an approval because the signer is over `--max-pending-per-signer`: the CSR
/// stays pending (never denied for it) and is decided again when the count falls (see
/// `crate::pending`). Said once per episode (an event on the first CSR held, one log line),
/// counted once per CSR.
async fn held(ctx: &CsrContext, csr: &CertificateSigningRequest, hold: &Hold) {
    let signer = SignerLabel {
        signer: csr.spec.signer_name.clone(),
    };
    if hold.newly_held {
        ctx.metrics.approvals_held.get_or_create(&signer).inc();
    }
    debug!(
        pending = hold.pending,
        limit = hold.limit,
        "approval held: signer over the cap"
    );
    if !hold.first {
        return;
    }
    let message = format!(
        "csrgate: {} CSRs of signer {:?} are pending, more than --max-pending-per-signer={}: \
         approvals for this signer are held (denials go on) until the count falls to {} or \
         fewer; this CSR stays pending until then",
        hold.pending, signer.signer, hold.limit, hold.limit
    );
    warn!(signer = %signer.signer, pending = hold.pending, limit = hold.limit, "too many pending CSRs for this signer: holding its approvals");
    ctx.events
        .publish(
            &ctx.metrics,
            csr,
            EventType::Warning,
            REASON_MAX_PENDING_EXCEEDED,
            "Approve",
            message,
        )
        .await;
}

/// The event reason when the API server refuses csrgate's approval write.
pub const REASON_APPROVAL_FORBIDDEN: &str = "ApprovalForbidden";

/// The `csrgate_audit_decisions_total` label of a verdict.
fn verdict_label(verdict: &Verdict) -> VerdictLabel {
    match verdict {
        Verdict::Approve => VerdictLabel::Approve,
        Verdict::Fail(_) => VerdictLabel::Fail,
        Verdict::NotApplicable => VerdictLabel::NotApplicable,
        Verdict::NotReady(_) => VerdictLabel::NotReady,
    }
}

/// Audit verdicts and holds, reported once per CSR and policy generation.
async fn report_once(ctx: &CsrContext, csr: &CertificateSigningRequest, decision: &Decision) {
    let name = csr.name_any();
    let mut to_report: Vec<(EventType, &'static str, String)> = Vec::new();
    for report in decision
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Audit)
    {
        if !first_time(
            ctx,
            &name,
            Reported::Audit(report.name.clone(), report.generation),
        ) {
            continue;
        }
        to_report.push(audit_event(ctx, report));
    }
    match decision.pending() {
        Some(PendingCause::PolicyNotReady { policy, .. })
            if first_time(ctx, &name, Reported::Held(policy.clone())) =>
        {
            warn!(%policy, "held: a covering Enforce policy is not Ready");
            to_report.push((
                EventType::Warning,
                reasons::POLICY_NOT_READY,
                decision.message().to_owned(),
            ));
        }
        Some(PendingCause::InvalidRequest(_))
            if first_time(ctx, &name, Reported::InvalidRequest) =>
        {
            to_report.push((
                EventType::Warning,
                reasons::INVALID_REQUEST,
                decision.message().to_owned(),
            ));
        }
        _ => {}
    }
    for (type_, reason, note) in to_report {
        ctx.events
            .publish(&ctx.metrics, csr, type_, reason, "Evaluate", note)
            .await;
    }
}

/// Counts an Audit policy's verdict (and what its `defaultAction: Deny` would have done, as
/// a verdict of its own) and returns the Normal event that says it.
fn audit_event(ctx: &CsrContext, report: &PolicyReport) -> (EventType, &'static str, String) {
    ctx.metrics
        .audit_decisions
        .get_or_create(&AuditLabels {
            policy: report.name.clone(),
            verdict: verdict_label(&report.verdict),
        })
        .inc();
    let detail = match &report.verdict {
        Verdict::Fail(failures) => format!(
            ": {}",
            failures
                .iter()
                .map(|f| format!("{}: {}", f.source, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Verdict::NotReady(message) => format!(": {message}"),
        _ => String::new(),
    };
    // What its `defaultAction: Deny` would have done, recorded as a verdict of its own.
    let detail = match &report.default_denial {
        Some(denial) => {
            ctx.metrics
                .audit_decisions
                .get_or_create(&AuditLabels {
                    policy: report.name.clone(),
                    verdict: VerdictLabel::DefaultDeny,
                })
                .inc();
            format!("{detail}; its defaultAction Deny would deny the CSR: {denial}")
        }
        None => detail,
    };
    debug!(policy = %report.name, verdict = report.verdict.as_str(), default_denial = report.default_denial.is_some(), "audit verdict");
    (
        EventType::Normal,
        reasons::AUDIT_DECISION,
        format!(
            "csrgate: Audit CsrApprovalPolicy {:?} (generation {}) would {}{detail}",
            report.name,
            report.generation,
            match report.verdict {
                Verdict::Approve => "approve",
                Verdict::Fail(_) => "fail",
                Verdict::NotApplicable => "not apply",
                Verdict::NotReady(_) => "not be Ready",
            }
        ),
    )
}

fn remember(ctx: &CsrContext, name: &str) {
    if let Ok(mut seen) = ctx.seen.lock() {
        seen_entry(&mut seen, name);
    }
}

fn seen_entry<'a>(seen: &'a mut HashMap<String, Seen>, name: &str) -> &'a mut Seen {
    seen.entry(name.to_owned()).or_insert_with(|| Seen {
        first: Instant::now(),
        reported: Vec::new(),
        failures: 0,
    })
}

fn forget(ctx: &CsrContext, name: &str) {
    if let Ok(mut seen) = ctx.seen.lock() {
        seen.remove(name);
    }
}

fn first_time(ctx: &CsrContext, name: &str, key: Reported) -> bool {
    let Ok(mut seen) = ctx.seen.lock() else {
        return true;
    };
    let entry = seen_entry(&mut seen, name);
    if entry.reported.contains(&key) {
        false
    } else {
        entry.reported.push(key);
        true
    }
}

/// Logs and counts a failed CSR reconcile, and returns when to retry it: a backoff per CSR
/// (2 s, doubling up to 5 min) so that an error that persists, such as a 403 on the
/// approval write, is retried rarely instead of in a loop. A refused write was already
/// logged once.
pub fn retry_after(csr: &CertificateSigningRequest, error: &Error, ctx: &CsrContext) -> Duration {
    let name = csr.name_any();
    if matches!(error, Error::ApprovalForbidden { .. }) {
        debug!(csr = %name, %error, "CSR reconcile failed");
    } else {
        warn!(csr = %name, %error, "CSR reconcile failed");
    }
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabel {
            error: error.metric_label(),
        })
        .inc();
    let failures = ctx.seen.lock().map_or(0, |mut seen| {
        let entry = seen_entry(&mut seen, &name);
        entry.failures = entry.failures.saturating_add(1);
        entry.failures
    });
    retry_delay(failures)
}

/// The delay before retry number `failures` (from 1): 2 s, doubling, at most 5 min.
pub fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(2);
    const LONGEST: Duration = Duration::from_secs(300);
    FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(LONGEST)
}

/// Sets `csrgate_pending_csrs{signer}` from the CSR store.
pub fn count_pending(metrics: &Metrics, store: &Store<CertificateSigningRequest>) {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for csr in store.state() {
        if !is_terminal(&csr) {
            *counts.entry(csr.spec.signer_name.clone()).or_default() += 1;
        }
    }
    let _guard = metrics.pending_lock.lock();
    metrics.pending_csrs.clear();
    for (signer, count) in counts {
        metrics
            .pending_csrs
            .get_or_create(&crate::metrics::SignerLabel { signer })
            .set(count);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::fixtures::{ApiServerVerifier, mock_client, status};
    use csrgate_policy::Ruling;

    /// The kubelet serving request of `examples/csrs/worker-1-serving.yaml` (CN
    /// system:node:worker-1, DNS worker-1 and worker-1.cluster.internal, IP 10.0.0.11), as
    /// worker-1 asked for it.
    fn worker_1_serving() -> CertificateSigningRequest {
        let manifest = include_str!("../../../examples/csrs/worker-1-serving.yaml");
        let request = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("request: "))
            .unwrap();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1-serving"},
            "spec": {
                "request": request,
                "signerName": "kubernetes.io/kubelet-serving",
                "usages": ["digital signature", "server auth"],
                "username": "system:node:worker-1",
                "groups": ["system:nodes", "system:authenticated"],
            },
        }))
        .unwrap()
    }

    fn node(addresses: bool) -> Node {
        let mut node =
            serde_json::json!({"metadata": {"name": "worker-1", "resourceVersion": "1"}});
        if addresses {
            node["metadata"]["resourceVersion"] = "2".into();
            node["status"] = serde_json::json!({"addresses": [
                {"type": "InternalIP", "address": "10.0.0.11"},
                {"type": "Hostname", "address": "worker-1"},
                {"type": "InternalDNS", "address": "worker-1.cluster.internal"},
            ]});
        }
        serde_json::from_value(node).unwrap()
    }

    /// A policy approving when every SAN is an address of the Node (denying otherwise).
    fn policy(expression: &str) -> CsrApprovalPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "csrgate.dev/v1alpha1",
            "kind": "CsrApprovalPolicy",
            "metadata": {"name": "serving", "uid": "u1", "generation": 1},
            "spec": {
                "signerNames": ["kubernetes.io/kubelet-serving"],
                "validations": [{"name": "rule", "expression": expression}],
            },
        }))
        .unwrap()
    }

    const SANS_ARE_THE_NODES: &str = "node != null && has(node.status) && has(node.status.addresses) \
        && x509.ipAddresses.all(ip, node.status.addresses.exists(a, a.address == ip))";

    /// An API server that answers `GET /api/v1/nodes/worker-1` with `status` and `node`, and
    /// counts the calls.
    async fn api_server(status: u16, node: Node) -> (kube::Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/api/v1/nodes/worker-1",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::to_string(&node).unwrap();
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
        let config = kube::Config::new(url.parse().unwrap());
        (kube::Client::try_from(config).unwrap(), calls)
    }

    async fn context(client: kube::Client, policy: &CsrApprovalPolicy, cached: Node) -> CsrContext {
        let (policies, mut policy_writer) = reflector::store::<CsrApprovalPolicy>();
        policy_writer.apply_watcher_event(&watcher::Event::Apply(policy.clone()));
        let cache = PolicyCache::default();
        let compiled = cache.engine().compile(policy);
        cache.insert(policy, compiled);
        let (nodes, mut node_writer) = reflector::store::<CachedNode>();
        node_writer.apply_watcher_event(&watcher::Event::Apply(CachedNode(cached)));
        CsrContext {
            client: client.clone(),
            events: Publisher::new(client, "csrgate".into(), None),
            metrics: Arc::new(Metrics::default()),
            cache,
            policies,
            nodes: Some(nodes),
            dry_run: false,
            lease: None,
            evaluations: Arc::new(EvaluationSlots::new(2)),
            cap: PendingCap::new(None, Arc::default()).0,
            seen: Mutex::new(HashMap::new()),
        }
    }

    #[tokio::test]
    async fn issue_12_a_decision_on_a_stale_node_is_taken_again_with_the_node_as_read() {
        let (client, calls) = api_server(200, node(true)).await;
        let ctx = context(client, &policy(SANS_ARE_THE_NODES), node(false)).await;
        let decision = evaluate(&ctx, &worker_1_serving()).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Approved,
            "{:?}",
            decision.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_decision_on_a_current_node_is_confirmed_with_one_read() {
        let (client, calls) = api_server(200, node(true)).await;
        let ctx = context(client, &policy(SANS_ARE_THE_NODES), node(true)).await;
        let decision = evaluate(&ctx, &worker_1_serving()).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Approved,
            "{:?}",
            decision.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn issue_13_an_approval_resting_on_no_subject_node_is_confirmed_and_taken_again() {
        // The cache has no worker-1 yet (it holds another Node); the API server has it.
        let (client, calls) = api_server(200, node(true)).await;
        let mut other = node(false);
        other.metadata.name = Some("worker-2".into());
        let mut bootstrap = policy("subjectNode == null");
        bootstrap.spec.signer_names = vec!["kubernetes.io/kube-apiserver-client-kubelet".into()];
        let ctx = context(client, &bootstrap, other).await;
        let request = include_str!("../../csrgate-policy/testdata/worker-1-client.csr");
        let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bootstrap"},
            "spec": {
                "request": k8s_openapi::ByteString(request.as_bytes().to_vec()),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["client auth"],
                "username": "system:bootstrap:abcdef",
                "groups": ["system:bootstrappers"],
            },
        }))
        .unwrap();
        let decision = evaluate(&ctx, &csr).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Denied,
            "{:?}",
            decision.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn when_the_node_cannot_be_read_nothing_is_decided() {
        let (client, calls) = api_server(500, node(true)).await;
        let ctx = context(client, &policy(SANS_ARE_THE_NODES), node(true)).await;
        let error = evaluate(&ctx, &worker_1_serving()).await.unwrap_err();
        assert!(matches!(error, Error::NodeReadFailed { .. }), "{error}");
        assert!(calls.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_policy_that_does_not_read_node_costs_no_read() {
        let (client, calls) = api_server(200, node(true)).await;
        let ctx = context(
            client,
            &policy("x509.commonName == object.spec.username"),
            node(false),
        )
        .await;
        let decision = evaluate(&ctx, &worker_1_serving()).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Approved,
            "{:?}",
            decision.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_pending_decision_costs_no_read() {
        let (client, calls) = api_server(200, node(true)).await;
        let mut pending = policy(SANS_ARE_THE_NODES);
        pending.spec.failure_action = csrgate_api::FailureAction::Ignore;
        let ctx = context(client, &pending, node(false)).await;
        let decision = evaluate(&ctx, &worker_1_serving()).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Pending,
            "{:?}",
            decision.message()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn metric_labels_spell_verdicts_and_decisions_as_check_does() {
        for verdict in [
            Verdict::Approve,
            Verdict::Fail(Vec::new()),
            Verdict::NotApplicable,
            Verdict::NotReady(String::new()),
        ] {
            assert_eq!(verdict_label(&verdict).as_str(), verdict.as_str());
        }
        assert_eq!(DecisionLabel::Approved.as_str(), Outcome::Approved.as_str());
        assert_eq!(DecisionLabel::Denied.as_str(), Outcome::Denied.as_str());
    }

    const CSR_PATH: &str =
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/worker-1-serving";
    const APPROVAL_PATH: &str =
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/worker-1-serving/approval";
    /// A policy approving worker-1-serving without reading its Node.
    const CN_IS_REQUESTOR: &str = "x509.commonName == object.spec.username";

    /// `reconcile` of worker-1-serving on a mocked API server, which `serve` drives; the
    /// reconcile's result and whether the CSR is still remembered as pending.
    async fn reconcile_mocked<F>(
        serve: impl FnOnce(ApiServerVerifier) -> F,
    ) -> (Result<Action>, bool)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (client, verifier) = mock_client();
        let ctx = Arc::new(context(client, &policy(CN_IS_REQUESTOR), node(true)).await);
        let server = tokio::spawn(serve(verifier));
        let result = tokio::time::timeout(
            Duration::from_secs(1),
            reconcile(Arc::new(worker_1_serving()), Arc::clone(&ctx)),
        )
        .await
        .expect("reconcile finished");
        let remembered = ctx.seen.lock().unwrap().contains_key("worker-1-serving");
        drop(ctx);
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .expect("every expected request came")
            .unwrap();
        (result, remembered)
    }

    /// worker-1-serving as the API server returns it, at `resource_version`, with a true
    /// condition of `decided` when given.
    fn as_stored(resource_version: &str, decided: Option<&str>) -> serde_json::Value {
        let mut csr = serde_json::to_value(worker_1_serving()).unwrap();
        csr["metadata"]["resourceVersion"] = resource_version.into();
        if let Some(type_) = decided {
            csr["status"] = serde_json::json!({"conditions": [
                {"type": type_, "status": "True", "reason": "ByPerson", "message": "kubectl"},
            ]});
        }
        csr
    }

    #[tokio::test]
    async fn a_conflict_reads_the_csr_again_and_writes_nothing_when_someone_else_decided() {
        let (result, remembered) = reconcile_mocked(|mut server| async move {
            server
                .expect("PUT", APPROVAL_PATH, 409, status(409, "Conflict"))
                .await;
            server
                .expect("GET", CSR_PATH, 200, as_stored("7", Some("Denied")))
                .await;
            server.done().await;
        })
        .await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(!remembered, "a decided CSR is forgotten");
    }

    #[tokio::test]
    async fn a_conflict_is_retried_on_the_csr_as_read_again() {
        let (result, remembered) = reconcile_mocked(|mut server| async move {
            server
                .expect("PUT", APPROVAL_PATH, 409, status(409, "Conflict"))
                .await;
            server
                .expect("GET", CSR_PATH, 200, as_stored("7", None))
                .await;
            let written = server
                .expect("PUT", APPROVAL_PATH, 200, as_stored("8", Some("Approved")))
                .await;
            assert_eq!(written["metadata"]["resourceVersion"], "7", "{written:#}");
            assert_eq!(
                written["status"]["conditions"][0]["type"], "Approved",
                "{written:#}"
            );
            assert_eq!(
                written["status"]["conditions"][0]["reason"], "PolicyApproved",
                "{written:#}"
            );
            server
                .expect(
                    "POST",
                    "/apis/events.k8s.io/v1/namespaces/default/events",
                    201,
                    serde_json::json!({}),
                )
                .await;
            server.done().await;
        })
        .await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(!remembered, "a written CSR is forgotten");
    }

    #[tokio::test]
    async fn a_csr_deleted_before_the_approval_write_is_forgotten_without_error() {
        let (result, remembered) = reconcile_mocked(|mut server| async move {
            server
                .expect("PUT", APPROVAL_PATH, 404, status(404, "NotFound"))
                .await;
            server.done().await;
        })
        .await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(!remembered, "a deleted CSR is forgotten");
    }

    #[tokio::test]
    async fn a_csr_deleted_between_a_conflict_and_the_read_again_is_forgotten_without_error() {
        let (result, remembered) = reconcile_mocked(|mut server| async move {
            server
                .expect("PUT", APPROVAL_PATH, 409, status(409, "Conflict"))
                .await;
            server
                .expect("GET", CSR_PATH, 404, status(404, "NotFound"))
                .await;
            server.done().await;
        })
        .await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(!remembered, "a deleted CSR is forgotten");
    }

    const KUBELET_CLIENT_RULE: &str = "authorizer.group('certificates.k8s.io').resource('certificatesigningrequests').subresource('selfnodeclient').check('create').allowed()";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_13_a_decision_on_an_allowed_subject_access_review_is_made() {
        let (client, bodies) = crate::access_reviews::tests::api_server(201, true).await;
        let ctx = context(client, &policy(KUBELET_CLIENT_RULE), node(true)).await;
        let decision = evaluate(&ctx, &worker_1_serving()).await.unwrap();
        assert_eq!(
            decision.outcome(),
            Outcome::Approved,
            "{:?}",
            decision.message()
        );
        assert_eq!(bodies.lock().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issue_13_a_failed_subject_access_review_decides_nothing() {
        let (client, bodies) = crate::access_reviews::tests::api_server(500, true).await;
        // failureAction Deny: without the guard the failed review would deny for good.
        let mut denying = policy(KUBELET_CLIENT_RULE);
        denying.spec.failure_action = csrgate_api::FailureAction::Deny;
        let ctx = context(client, &denying, node(true)).await;
        let error = evaluate(&ctx, &worker_1_serving()).await.unwrap_err();
        assert!(
            matches!(&error, Error::AccessReviewFailed { message, .. } if message.starts_with("SubjectAccessReview failed")),
            "{error}"
        );
        assert_eq!(error.metric_label(), "AccessReviewFailed");
        assert!(!bodies.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_decisions_of_one_signer_wait_for_their_reviews_at_once() {
        // The server answers only once two reviews wait; one signer holds one of the two
        // slots, so this passes only if a decision gives its slot back while it waits.
        let client = crate::access_reviews::tests::api_server_answering_pairs().await;
        let ctx = Arc::new(context(client, &policy(KUBELET_CLIENT_RULE), node(true)).await);
        let decide =
            |ctx: Arc<CsrContext>| async move { evaluate(&ctx, &worker_1_serving()).await };
        let both = futures::future::join(
            tokio::spawn(decide(Arc::clone(&ctx))),
            tokio::spawn(decide(Arc::clone(&ctx))),
        );
        let (first, second) = tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("both reviews were asked at once");
        for decision in [first.unwrap().unwrap(), second.unwrap().unwrap()] {
            assert_eq!(
                decision.outcome(),
                Outcome::Approved,
                "{:?}",
                decision.message()
            );
        }
    }

    fn with_condition(type_: &str, status: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(
                k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus {
                    conditions: Some(vec![CertificateSigningRequestCondition {
                        type_: type_.into(),
                        status: status.into(),
                        ..Default::default()
                    }]),
                    certificate: None,
                },
            ),
            ..Default::default()
        }
    }

    #[test]
    fn approved_denied_and_failed_csrs_are_terminal() {
        for type_ in ["Approved", "Denied", "Failed"] {
            assert!(is_terminal(&with_condition(type_, "True")), "{type_}");
        }
        assert!(!is_terminal(&with_condition("Approved", "False")));
        assert!(!is_terminal(&CertificateSigningRequest::default()));
    }

    #[test]
    fn retries_back_off_from_two_seconds_to_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn pending_decisions_write_no_condition() {
        let decision = Decision {
            ruling: Ruling::Pending {
                cause: PendingCause::NoApproval,
                message: "x".into(),
            },
            policies: Vec::new(),
        };
        assert!(condition_for(&decision).is_none());
    }

    #[test]
    fn a_denial_becomes_a_denied_condition_with_reason_and_message() {
        let decision = Decision {
            ruling: Ruling::Denied {
                reason: reasons::POLICY_DENIED,
                message: "csrgate: denied by ...".into(),
            },
            policies: Vec::new(),
        };
        let condition = condition_for(&decision).unwrap();
        assert_eq!(condition.type_, "Denied");
        assert_eq!(condition.status, "True");
        assert_eq!(condition.reason.as_deref(), Some("PolicyDenied"));
        assert_eq!(condition.message.as_deref(), Some("csrgate: denied by ..."));
    }
}
