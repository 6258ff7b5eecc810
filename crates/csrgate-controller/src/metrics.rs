//! Prometheus metrics (OpenMetrics text on `/metrics`), with bounded labels only.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `csrgate_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The deciding policy (each policy named in the message counts once).
    pub policy: String,
    /// The CSR's signer.
    pub signer: String,
    /// Approved or Denied.
    pub decision: DecisionLabel,
}

/// Labels of `csrgate_audit_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    /// The Audit policy.
    pub policy: String,
    /// Its verdict.
    pub verdict: VerdictLabel,
}

/// A label set of one key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignerLabel {
    /// The signer name.
    pub signer: String,
}

/// A label set of one key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// The policy name.
    pub policy: String,
}

/// A label set of one key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    /// The API call that failed.
    pub verb: ApiCall,
}

/// A label set of one key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The error variant ([`crate::Error::metric_label`]).
    pub error: &'static str,
}

/// Label values that are a closed set: each enum below spells its values once, in `as_str`.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_values! {
    /// The `decision` label of `csrgate_decisions_total`: the condition written.
    DecisionLabel {
        /// An Approved condition.
        Approved => "Approved",
        /// A Denied condition.
        Denied => "Denied",
    }
}

label_values! {
    /// The `verdict` label of `csrgate_audit_decisions_total`: an Audit policy's verdict.
    VerdictLabel {
        /// Every validation held.
        Approve => "Approve",
        /// A validation failed.
        Fail => "Fail",
        /// A match condition was false.
        NotApplicable => "NotApplicable",
        /// The policy is not compiled, or an expression could not be evaluated.
        NotReady => "NotReady",
        /// Its `defaultAction: Deny` would have denied the CSR.
        DefaultDeny => "DefaultDeny",
    }
}

label_values! {
    /// The `verb` label of `csrgate_api_errors_total`: the API call that failed.
    ApiCall {
        /// Writing an Event.
        CreateEvent => "create_event",
        /// Creating a SubjectAccessReview (the `authorizer` variable).
        CreateSubjectAccessReview => "create_subjectaccessreview",
        /// Reading a CSR again after a conflict.
        GetCsr => "get_csr",
        /// Reading a Node before a decision that rests on it.
        GetNode => "get_node",
        /// Writing a policy's status.
        PatchPolicyStatus => "patch_policy_status",
        /// Writing the approval subresource.
        UpdateApproval => "update_approval",
    }
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Conditions written, per deciding policy, signer and decision.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Audit verdicts recorded.
    pub audit_decisions: Family<AuditLabels, Counter>,
    /// Seconds from the controller first seeing a CSR to its condition being written.
    pub decision_duration: Histogram,
    /// Pending CSRs per signer.
    pub pending_csrs: Family<SignerLabel, Gauge>,
    /// 1 when a policy is Ready, 0 when not.
    pub policy_ready: Family<PolicyLabel, Gauge>,
    /// Failed API calls per verb.
    pub api_errors: Family<VerbLabel, Counter>,
    /// Approval writes the API server refused with 403, per signer: csrgate's RBAC lacks
    /// `approve` on that signer.
    pub approvals_forbidden: Family<SignerLabel, Counter>,
    /// Reconcile failures per error variant.
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    /// 1 while a signer has more pending CSRs than `--max-pending-per-signer` and approvals
    /// of it are held, 0 once they resume.
    pub max_pending_exceeded: Family<SignerLabel, Gauge>,
    /// Approvals held because the signer was over the cap, once per CSR.
    pub approvals_held: Family<SignerLabel, Counter>,
    /// Serializes gauge-family rebuilds (pending CSRs, policy readiness) between the periodic
    /// task and reconcilers.
    pub pending_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("csrgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let audit_decisions = Family::<AuditLabels, Counter>::default();
        let decision_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let pending_csrs = Family::<SignerLabel, Gauge>::default();
        let policy_ready = Family::<PolicyLabel, Gauge>::default();
        let api_errors = Family::<VerbLabel, Counter>::default();
        let approvals_forbidden = Family::<SignerLabel, Counter>::default();
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        let max_pending_exceeded = Family::<SignerLabel, Gauge>::default();
        let approvals_held = Family::<SignerLabel, Counter>::default();
        registry.register(
            "decisions",
            "Approval conditions written",
            decisions.clone(),
        );
        registry.register(
            "audit_decisions",
            "Audit policy verdicts recorded",
            audit_decisions.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Seconds from first seeing a CSR to writing its condition",
            decision_duration.clone(),
        );
        registry.register(
            "pending_csrs",
            "CSRs without an Approved, Denied or Failed condition",
            pending_csrs.clone(),
        );
        registry.register(
            "policy_ready",
            "1 when the policy compiled, 0 when not",
            policy_ready.clone(),
        );
        registry.register(
            "api_errors",
            "Failed Kubernetes API calls",
            api_errors.clone(),
        );
        registry.register(
            "approvals_forbidden",
            "Approval writes refused by the API server with 403 (no approve on the signer)",
            approvals_forbidden.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error",
            reconcile_errors.clone(),
        );
        registry.register(
            "max_pending_exceeded",
            "1 while the signer has more pending CSRs than --max-pending-per-signer and its approvals are held",
            max_pending_exceeded.clone(),
        );
        registry.register(
            "approvals_held",
            "CSRs whose approval was held because their signer was over --max-pending-per-signer",
            approvals_held.clone(),
        );
        Self {
            registry,
            decisions,
            audit_decisions,
            decision_duration,
            pending_csrs,
            policy_ready,
            api_errors,
            approvals_forbidden,
            reconcile_errors,
            max_pending_exceeded,
            approvals_held,
            pending_lock: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a failed API call.
    pub fn api_error(&self, verb: ApiCall) {
        self.api_errors.get_or_create(&VerbLabel { verb }).inc();
    }
}
