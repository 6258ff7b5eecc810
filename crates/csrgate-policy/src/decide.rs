//! The decision for one pending CSR: DESIGN.md "The decision", step by step.
//!
//! The controller and `csrgate check` both call [`decide`], so what a pipeline tests is what
//! the cluster does. A bad request is a [`Decision`], not an error (as in cert-manager's
//! approver-policy): the caller never has to guess what an `Err` would mean.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

use csrgate_api::{FailureAction, PolicyMode};

use crate::compile::CompiledPolicy;
use crate::env::CsrScope;
use crate::evaluate::{Failure, Verdict, evaluate};
use crate::request::{RequestError, parse_request};

/// Condition reasons csrgate writes, and the event reasons it records.
pub mod reasons {
    /// An Enforce policy approved and none denied.
    pub const POLICY_APPROVED: &str = "PolicyApproved";
    /// An Enforce policy with `failureAction: Deny` failed.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// `spec.request` could not be read exactly.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// Event reason: an Audit policy's verdict, recorded without effect.
    pub const AUDIT_DECISION: &str = "AuditDecision";
    /// Event reason: a covering Enforce policy is not Ready, so the CSR is held.
    pub const POLICY_NOT_READY: &str = "PolicyNotReady";
}

/// Longest condition message written; longer ones are cut at a character boundary with a
/// marker, so a policy with many failing rules cannot produce an oversized object.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The outcome for one CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Outcome {
    /// Write an Approved condition.
    Approved,
    /// Write a Denied condition.
    Denied,
    /// Write nothing: leave the CSR to a person or another approver.
    Pending,
}

impl Outcome {
    /// The spelling used in `csrgate check` output, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "Approved",
            Outcome::Denied => "Denied",
            Outcome::Pending => "Pending",
        }
    }
}

/// Why a decision is [`Outcome::Pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingCause {
    /// No policy covers the CSR's signer.
    NoCoveringPolicy,
    /// A covering Enforce policy is not Ready.
    PolicyNotReady {
        /// The policy's name.
        policy: String,
        /// Why it is not Ready.
        message: String,
    },
    /// The request could not be parsed, and no covering Enforce policy denies on failure.
    InvalidRequest(RequestError),
    /// Policies applied but none approved and none denied.
    NoApproval,
}

/// One policy's part in a decision, as `csrgate check --output json` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    /// The policy's name.
    pub name: String,
    /// The generation evaluated.
    pub generation: i64,
    /// Enforce or Audit (as evaluated: `--dry-run` makes every policy Audit).
    pub mode: PolicyMode,
    /// Deny or Ignore.
    pub failure_action: FailureAction,
    /// What the policy said.
    pub verdict: Verdict,
}

/// The decision for one CSR, with every covering policy's verdict (Audit ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Approved, Denied or Pending.
    pub outcome: Outcome,
    /// The condition reason (a [`reasons`] constant); `None` when Pending.
    pub reason: Option<&'static str>,
    /// The condition message an auditor reads; for Pending, why nothing was decided.
    pub message: Option<String>,
    /// Why nothing was decided, when Pending.
    pub pending: Option<PendingCause>,
    /// The covering policies, sorted by name.
    pub policies: Vec<PolicyReport>,
}

/// Decides one pending CSR.
///
/// `policies` may hold any policies (covering or not, Ready or not, Enforce or Audit);
/// `node` is the Node named by a `system:node:<name>` requestor, if it exists. The request is
/// parsed and converted once, then offered to each covering policy in name order.
pub fn decide(
    policies: &[CompiledPolicy],
    csr: &CertificateSigningRequest,
    node: Option<&Node>,
) -> Decision {
    let signer = csr.spec.signer_name.as_str();
    let mut covering: Vec<&CompiledPolicy> = policies.iter().filter(|p| p.covers(signer)).collect();
    covering.sort_by(|a, b| a.name().cmp(b.name()));
    if covering.is_empty() {
        return pending(
            PendingCause::NoCoveringPolicy,
            format!("no CsrApprovalPolicy covers signer {signer}"),
            Vec::new(),
        );
    }

    let request = parse_request(&csr.spec.request.0);
    let reports: Vec<PolicyReport> = match &request {
        Ok(request) => {
            let scope = CsrScope::new(csr, request, node);
            covering
                .iter()
                .map(|policy| report(policy, evaluate(policy, &scope)))
                .collect()
        }
        Err(error) => covering
            .iter()
            .map(|policy| match policy.not_ready_message() {
                Some(message) => report(policy, Verdict::NotReady(message)),
                None => report(policy, request_failure(error)),
            })
            .collect(),
    };

    let is_held = |p: &&&CompiledPolicy| p.mode() == PolicyMode::Enforce && !p.is_ready();
    if let Some(held) = covering.iter().find(is_held) {
        let message = held.not_ready_message().unwrap_or_default();
        return pending(
            PendingCause::PolicyNotReady {
                policy: held.name().to_owned(),
                message: message.clone(),
            },
            format!(
                "csrgate: CsrApprovalPolicy {:?} (generation {}) is not Ready: {message}",
                held.name(),
                held.generation()
            ),
            reports,
        );
    }
    match request {
        Ok(_) => combine(reports),
        Err(error) => invalid_request(&covering, error, reports),
    }
}

fn request_failure(error: &RequestError) -> Verdict {
    Verdict::Fail(vec![Failure {
        validation: "request".into(),
        message: error.to_string(),
    }])
}

/// Step 6: deny overrides, then approve, else pending. Audit reports never count.
fn combine(reports: Vec<PolicyReport>) -> Decision {
    let enforced = || reports.iter().filter(|r| r.mode == PolicyMode::Enforce);
    let denials: Vec<String> = enforced()
        .filter(|r| r.failure_action == FailureAction::Deny)
        .filter_map(|r| match &r.verdict {
            Verdict::Fail(failures) => Some(format!(
                "denied by CsrApprovalPolicy {:?} (generation {}): {}",
                r.name,
                r.generation,
                failure_list(failures)
            )),
            _ => None,
        })
        .collect();
    if !denials.is_empty() {
        return decided(
            Outcome::Denied,
            reasons::POLICY_DENIED,
            format!("csrgate: {}", denials.join("; ")),
            reports,
        );
    }
    let approvals: Vec<String> = enforced()
        .filter(|r| r.verdict == Verdict::Approve)
        .map(|r| format!("CsrApprovalPolicy {:?} (generation {})", r.name, r.generation))
        .collect();
    if !approvals.is_empty() {
        return decided(
            Outcome::Approved,
            reasons::POLICY_APPROVED,
            format!("csrgate: approved by {}", approvals.join(", ")),
            reports,
        );
    }
    let message = if enforced().next().is_none() {
        "csrgate: only Audit policies cover this CSR".to_owned()
    } else {
        "csrgate: no covering Enforce policy approved or denied this CSR".to_owned()
    };
    pending(PendingCause::NoApproval, message, reports)
}

/// Step 3: deny when a covering Enforce policy denies on failure, else hold.
fn invalid_request(
    covering: &[&CompiledPolicy],
    error: RequestError,
    reports: Vec<PolicyReport>,
) -> Decision {
    let denies = covering
        .iter()
        .any(|p| p.mode() == PolicyMode::Enforce && p.failure_action() == FailureAction::Deny);
    if denies {
        decided(
            Outcome::Denied,
            reasons::INVALID_REQUEST,
            format!("csrgate: invalid request: {error}"),
            reports,
        )
    } else {
        let message = format!(
            "csrgate: invalid request, left pending (no covering Enforce policy has failureAction Deny): {error}"
        );
        pending(PendingCause::InvalidRequest(error), message, reports)
    }
}

fn failure_list(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.validation, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn report(policy: &CompiledPolicy, verdict: Verdict) -> PolicyReport {
    PolicyReport {
        name: policy.name().to_owned(),
        generation: policy.generation(),
        mode: policy.mode(),
        failure_action: policy.failure_action(),
        verdict,
    }
}

fn decided(
    outcome: Outcome,
    reason: &'static str,
    message: String,
    policies: Vec<PolicyReport>,
) -> Decision {
    Decision {
        outcome,
        reason: Some(reason),
        message: Some(truncate(message)),
        pending: None,
        policies,
    }
}

fn pending(cause: PendingCause, message: String, policies: Vec<PolicyReport>) -> Decision {
    Decision {
        outcome: Outcome::Pending,
        reason: None,
        message: Some(truncate(message)),
        pending: Some(cause),
        policies,
    }
}

fn truncate(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    const MARKER: &str = " ... (truncated)";
    let mut cut = MAX_MESSAGE_BYTES - MARKER.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(MARKER);
    message
}
