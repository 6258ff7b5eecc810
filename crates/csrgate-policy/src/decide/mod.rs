//! The decision for one pending CSR: DESIGN.md "The decision", step by step.
//!
//! The controller and `csrgate check` both call [`crate::Engine::decide`], so what a pipeline tests is what
//! the cluster does. A bad request is a [`Decision`], not an error (as in cert-manager's
//! approver-policy): the caller never has to guess what an `Err` would mean.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

use csrgate_api::{DefaultAction, FailureAction, PolicyMode};

use crate::authorizer::{Reviews, Unavailable};
use crate::compile::CompiledPolicy;
use crate::engine::{Engine, Inputs};
use crate::env::CsrScope;
use crate::evaluate::{Failure, FailureSource, Verdict, evaluate_with_unmatched};
use crate::request::RequestError;

/// Condition reasons csrgate writes, and the event reasons it records.
pub mod reasons {
    /// An Enforce policy approved and none denied.
    pub const POLICY_APPROVED: &str = "PolicyApproved";
    /// An Enforce policy with `failureAction: Deny` failed.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// No policy approved or denied, and a covering Ready Enforce policy has
    /// `defaultAction: Deny`.
    pub const NO_POLICY_APPROVED: &str = "NoPolicyApproved";
    /// `spec.request` could not be read exactly.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// Event reason: an Audit policy's verdict, recorded without effect.
    pub const AUDIT_DECISION: &str = "AuditDecision";
    /// Event reason: a covering Enforce policy is not Ready, so the CSR is held.
    pub const POLICY_NOT_READY: &str = "PolicyNotReady";
    /// Every reason csrgate writes on a CSR's Approved or Denied condition; a condition with
    /// another reason was written by someone else (`kubectl certificate approve`, another
    /// approver).
    pub const CONDITIONS: [&str; 4] = [
        POLICY_APPROVED,
        POLICY_DENIED,
        NO_POLICY_APPROVED,
        INVALID_REQUEST,
    ];
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

/// Why a decision is [`Ruling::Pending`].
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
    /// Pending or Deny.
    pub default_action: DefaultAction,
    /// What the policy said.
    pub verdict: Verdict,
    /// The matchCondition that was false, when the verdict is NotApplicable.
    pub unmatched: Option<String>,
    /// For an Audit policy with `defaultAction: Deny`: the `NoPolicyApproved` message its
    /// default would have written were it Enforce, when it would have denied the CSR.
    pub default_denial: Option<String>,
}

/// The Nodes a decision can read: the requestor's (`node`) and the one the request's CN
/// names (`subjectNode`), each when it exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nodes<'a> {
    /// The Node named by a `system:node:<name>` requestor.
    pub requestor: Option<&'a Node>,
    /// The Node named by a `system:node:<name>` CN (see [`crate::Engine::subject_node_name`]).
    pub subject: Option<&'a Node>,
}

/// What csrgate concludes for one CSR (DESIGN.md, "The decision": `Approved | Denied |
/// Pending`), each with what it carries, so a reason cannot come without a condition nor a
/// pending cause with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// Write an Approved condition.
    Approved {
        /// The condition reason, a [`reasons`] constant.
        reason: &'static str,
        /// The condition message an auditor reads, at most [`MAX_MESSAGE_BYTES`].
        message: String,
    },
    /// Write a Denied condition.
    Denied {
        /// The condition reason, a [`reasons`] constant.
        reason: &'static str,
        /// The condition message an auditor reads, at most [`MAX_MESSAGE_BYTES`].
        message: String,
    },
    /// Write nothing: leave the CSR to a person or another approver.
    Pending {
        /// Why nothing was decided.
        cause: PendingCause,
        /// Why nothing was decided, for events and `csrgate check`, at most
        /// [`MAX_MESSAGE_BYTES`].
        message: String,
    },
}

/// The decision for one CSR, with every covering policy's verdict (Audit ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Approved, Denied or Pending, with its reason, message or cause.
    pub ruling: Ruling,
    /// The covering policies, sorted by name.
    pub policies: Vec<PolicyReport>,
}

impl Decision {
    /// Approved, Denied or Pending, without what each carries.
    pub fn outcome(&self) -> Outcome {
        match self.ruling {
            Ruling::Approved { .. } => Outcome::Approved,
            Ruling::Denied { .. } => Outcome::Denied,
            Ruling::Pending { .. } => Outcome::Pending,
        }
    }

    /// The condition reason (a [`reasons`] constant); `None` when Pending.
    pub fn reason(&self) -> Option<&'static str> {
        match self.ruling {
            Ruling::Approved { reason, .. } | Ruling::Denied { reason, .. } => Some(reason),
            Ruling::Pending { .. } => None,
        }
    }

    /// The condition message an auditor reads; for Pending, why nothing was decided.
    pub fn message(&self) -> &str {
        match &self.ruling {
            Ruling::Approved { message, .. }
            | Ruling::Denied { message, .. }
            | Ruling::Pending { message, .. } => message,
        }
    }

    /// Why nothing was decided, when Pending.
    pub fn pending(&self) -> Option<&PendingCause> {
        match &self.ruling {
            Ruling::Pending { cause, .. } => Some(cause),
            Ruling::Approved { .. } | Ruling::Denied { .. } => None,
        }
    }
}

/// Decides one pending CSR: see [`crate::Engine::decide`]; `policies` were compiled by
/// `engine`.
pub(crate) fn decide(
    engine: &Engine,
    policies: &[CompiledPolicy],
    csr: &CertificateSigningRequest,
    inputs: &Inputs<'_>,
) -> Decision {
    let nodes = inputs.nodes;
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

    let request = engine.parse_request(&csr.spec.request.0);
    let reports: Vec<PolicyReport> = match request.as_ref() {
        Ok(request) => {
            let mut scope = CsrScope::new(
                csr,
                request,
                nodes.requestor,
                nodes.subject,
                covering.iter().copied(),
            );
            let authorizer = inputs
                .authorizer
                .clone()
                .unwrap_or_else(|| Arc::new(Unavailable::new("no authorizer is configured")));
            scope.bind_authorizer(&Arc::new(Reviews::new(authorizer, csr)));
            covering
                .iter()
                .map(|policy| {
                    let (verdict, unmatched) = evaluate_with_unmatched(policy, &scope);
                    PolicyReport {
                        unmatched,
                        ..report(policy, verdict)
                    }
                })
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
    match request.as_ref() {
        Ok(_) => combine(reports),
        Err(error) => invalid_request(&covering, error.clone(), reports),
    }
}

fn request_failure(error: &RequestError) -> Verdict {
    Verdict::Fail(vec![Failure {
        source: FailureSource::Request,
        message: error.to_string(),
    }])
}

/// Step 6: deny overrides, then approve, then a `defaultAction: Deny`, else pending. Audit
/// reports never count; an Audit policy's default is recorded on its report.
fn combine(mut reports: Vec<PolicyReport>) -> Decision {
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
        return denied(
            reasons::POLICY_DENIED,
            format!("csrgate: {}", denials.join("; ")),
            reports,
        );
    }
    let approvals: Vec<String> = enforced()
        .filter(|r| r.verdict == Verdict::Approve)
        .map(|r| {
            format!(
                "CsrApprovalPolicy {:?} (generation {})",
                r.name, r.generation
            )
        })
        .collect();
    if !approvals.is_empty() {
        return approved(
            reasons::POLICY_APPROVED,
            format!("csrgate: approved by {}", approvals.join(", ")),
            reports,
        );
    }
    if let Some(message) = default_denial(&reports, |r| r.mode == PolicyMode::Enforce) {
        return denied(reasons::NO_POLICY_APPROVED, message, reports);
    }
    let message = if enforced().next().is_none() {
        "csrgate: only Audit policies cover this CSR".to_owned()
    } else {
        "csrgate: no covering Enforce policy approved or denied this CSR".to_owned()
    };
    record_audit_defaults(&mut reports);
    pending(PendingCause::NoApproval, message, reports)
}

/// The `NoPolicyApproved` message when a policy counted as Enforce by `is_enforced` has
/// `defaultAction: Deny` (the caller knows none approved or denied); `None` otherwise.
///
/// Every covering policy is named with why it did not approve, so an auditor can tell a
/// matchCondition that excluded the CSR from a validation that failed under
/// `failureAction: Ignore`.
fn default_denial(
    reports: &[PolicyReport],
    is_enforced: impl Fn(&PolicyReport) -> bool,
) -> Option<String> {
    let defaults: Vec<String> = reports
        .iter()
        .filter(|r| is_enforced(r) && r.default_action == DefaultAction::Deny)
        .map(|r| format!("{:?} (generation {})", r.name, r.generation))
        .collect();
    if defaults.is_empty() {
        return None;
    }
    let reasons: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "CsrApprovalPolicy {:?} (generation {}): {}",
                r.name,
                r.generation,
                why_not_approved(r, is_enforced(r))
            )
        })
        .collect();
    Some(format!(
        "csrgate: no CsrApprovalPolicy approved this CSR and defaultAction is Deny in CsrApprovalPolicy {}: {}",
        defaults.join(", "),
        reasons.join("; ")
    ))
}

/// Why one covering policy did not approve, for [`default_denial`].
fn why_not_approved(report: &PolicyReport, enforced: bool) -> String {
    let verdict = match &report.verdict {
        Verdict::NotApplicable => match &report.unmatched {
            Some(name) => format!("matchCondition {name:?} is false"),
            None => "a matchCondition is false".to_owned(),
        },
        Verdict::Fail(failures) => format!(
            "failed with failureAction {}: {}",
            report.failure_action.as_str(),
            failure_list(failures)
        ),
        Verdict::Approve => "approves".to_owned(),
        Verdict::NotReady(message) => format!("not Ready: {message}"),
    };
    if enforced {
        verdict
    } else {
        format!("Audit, so it does not count; its verdict: {verdict}")
    }
}

/// For each Ready Audit policy with `defaultAction: Deny` that would neither approve nor deny
/// on its own, the denial its default would write were it Enforce (the CSR stays pending
/// under the Enforce policies, or this is not called).
fn record_audit_defaults(reports: &mut [PolicyReport]) {
    let would_default: Vec<usize> = (0..reports.len())
        .filter(|&i| {
            let r = &reports[i];
            r.mode == PolicyMode::Audit
                && r.default_action == DefaultAction::Deny
                && match &r.verdict {
                    Verdict::NotApplicable => true,
                    Verdict::Fail(_) => r.failure_action == FailureAction::Ignore,
                    Verdict::Approve | Verdict::NotReady(_) => false,
                }
        })
        .collect();
    for i in would_default {
        let name = reports[i].name.clone();
        reports[i].default_denial =
            default_denial(reports, |r| r.mode == PolicyMode::Enforce || r.name == name);
    }
}

/// Step 3: deny when a covering Enforce policy denies on failure, else hold.
fn invalid_request(
    covering: &[&CompiledPolicy],
    error: RequestError,
    reports: Vec<PolicyReport>,
) -> Decision {
    // A `defaultAction: Deny` policy denies too: nothing will ever approve this request.
    let denies = covering.iter().any(|p| {
        p.mode() == PolicyMode::Enforce
            && (p.failure_action() == FailureAction::Deny
                || p.default_action() == DefaultAction::Deny)
    });
    if denies {
        denied(
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
        .map(|f| format!("{}: {}", f.source, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn report(policy: &CompiledPolicy, verdict: Verdict) -> PolicyReport {
    PolicyReport {
        name: policy.name().to_owned(),
        generation: policy.generation(),
        mode: policy.mode(),
        failure_action: policy.failure_action(),
        default_action: policy.default_action(),
        verdict,
        unmatched: None,
        default_denial: None,
    }
}

fn approved(reason: &'static str, message: String, policies: Vec<PolicyReport>) -> Decision {
    let message = truncate(message);
    let ruling = Ruling::Approved { reason, message };
    Decision { ruling, policies }
}

fn denied(reason: &'static str, message: String, policies: Vec<PolicyReport>) -> Decision {
    let message = truncate(message);
    let ruling = Ruling::Denied { reason, message };
    Decision { ruling, policies }
}

fn pending(cause: PendingCause, message: String, policies: Vec<PolicyReport>) -> Decision {
    let ruling = Ruling::Pending {
        cause,
        message: truncate(message),
    };
    Decision { ruling, policies }
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

#[cfg(test)]
mod tests;
