//! The `CsrApprovalPolicy` custom resource (`csrgate.dev/v1alpha1`), and the few API-server
//! rules every csrgate crate must read the same way: a CSR's conditions ([`csr`]), the groups of
//! an authenticated user ([`user`]) and, with the `client` feature, clients, kubeconfigs and
//! waits ([`client`]).
//!
//! A platform team writes these objects (YAML kept in Git) to tell csrgate which
//! CertificateSigningRequests it may approve. The doc comments on the fields are what
//! `kubectl explain csrpolicy.spec` prints, so they are written for the policy author.
//!
//! The schema carries the structural checks the API server can make on its own
//! (`x-kubernetes-validations`, list-map keys for unique names, enums, sizes), so a malformed
//! policy is refused by `kubectl apply` rather than discovered by the controller.

#[cfg(feature = "client")]
pub mod client;
pub mod csr;
pub mod user;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The API group of csrgate's resources.
pub const GROUP: &str = "csrgate.dev";
/// The API version of [`CsrApprovalPolicy`].
pub const VERSION: &str = "v1alpha1";
/// The condition type that says whether a policy's expressions compiled.
pub const CONDITION_READY: &str = "Ready";
/// `Ready=True` reason: every expression of the current generation compiled.
pub const REASON_COMPILED: &str = "Compiled";
/// `Ready=False` reason: an expression did not compile or broke a limit.
pub const REASON_INVALID_EXPRESSION: &str = "InvalidExpression";

/// Rules that decide which CertificateSigningRequests csrgate approves or denies.
///
/// A policy covers the CSRs whose `spec.signerName` matches one of `signerNames`. It applies
/// to a covered CSR when all `matchConditions` are true, and then approves it when all
/// `validations` are true. Deny overrides: one failing Enforce policy with
/// `failureAction: Deny` denies the CSR whatever other policies say.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "csrgate.dev",
    version = "v1alpha1",
    kind = "CsrApprovalPolicy",
    plural = "csrapprovalpolicies",
    shortname = "csrpolicy",
    status = "CsrApprovalPolicyStatus",
    derive = "PartialEq",
    doc = "Rules that decide which CertificateSigningRequests csrgate approves or denies.",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Signers","type":"string","jsonPath":".spec.signerNames"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsrApprovalPolicySpec {
    /// Signer names this policy covers: exact (`kubernetes.io/kubelet-serving`) or every signer
    /// of a domain (`example.com/*`). Between 1 and 16 entries.
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 571)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(s, s.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/([^*]+|\\\\*)$'))")
            .message("each signer name must be <domain>/<path> or <domain>/*")
    )]
    pub signer_names: Vec<String>,

    /// `Enforce` (the default) writes the Approved or Denied condition; `Audit` evaluates and
    /// records the outcome (event, metric, log, `csrgate check`) but never writes a condition.
    /// Use Audit to roll a new policy out before it takes effect.
    #[serde(default)]
    pub mode: PolicyMode,

    /// What a failed validation does: `Deny` (the default) denies the CSR; `Ignore` gives no
    /// opinion, leaving the CSR to other policies or to a person.
    #[serde(default)]
    pub failure_action: FailureAction,

    /// What happens to a covered CSR that, once every policy is combined, no policy approved
    /// or denied: `Pending` (the default) leaves it for a person or another approver; `Deny`
    /// denies it with reason `NoPolicyApproved` and a message naming each covering policy and
    /// why it did not approve. Use `Deny` where csrgate is the only approver for a signer.
    /// Counts only while the policy is Ready and Enforce; an Audit policy records what its
    /// default would have done.
    #[serde(default)]
    pub default_action: DefaultAction,

    /// Named CEL expressions evaluated in order before the conditions; later ones and every
    /// other expression may read earlier ones as `variables.<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub variables: Vec<Variable>,

    /// CEL expressions that must all be true for the policy to apply to a CSR. A covered CSR
    /// for which one is false is left to other policies. At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub match_conditions: Vec<MatchCondition>,

    /// CEL expressions that must all be true for the policy to approve a CSR it applies to.
    /// Every failed validation is reported in the decision message. Between 1 and 64.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub validations: Vec<Validation>,
}

/// Whether a policy's outcome is written to the CSR.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum PolicyMode {
    /// Decide and write the Approved or Denied condition.
    #[default]
    Enforce,
    /// Decide and record (event, metric, log), never write a condition.
    Audit,
}

impl PolicyMode {
    /// The spelling used in the API and in `csrgate check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "Enforce",
            PolicyMode::Audit => "Audit",
        }
    }
}

/// What a failed validation means for the CSR.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum FailureAction {
    /// Deny the CSR.
    #[default]
    Deny,
    /// Give no opinion: the CSR stays pending unless another policy approves it.
    Ignore,
}

impl FailureAction {
    /// The spelling used in the API and in decision messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Deny => "Deny",
            FailureAction::Ignore => "Ignore",
        }
    }
}

/// What a covered CSR that no policy approved or denied becomes.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum DefaultAction {
    /// Leave it pending, for a person or another approver.
    #[default]
    Pending,
    /// Deny it, reason `NoPolicyApproved`.
    Deny,
}

impl DefaultAction {
    /// The spelling used in the API and in `csrgate check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Pending => "Pending",
            DefaultAction::Deny => "Deny",
        }
    }
}

/// A named CEL expression whose value other expressions read as `variables.<name>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Variable {
    /// The variable's name: a CEL identifier, unique in the policy.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    )]
    pub name: String,
    /// The CEL expression computing the value. At most 5 KiB.
    #[schemars(length(min = 1, max = 5120))]
    pub expression: String,
}

/// A CEL expression that must be true for the policy to apply.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchCondition {
    /// A name for the condition, unique in the policy, DNS-label-like (`is-node`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A CEL expression returning bool. At most 5 KiB.
    #[schemars(length(min = 1, max = 5120))]
    pub expression: String,
}

/// A CEL rule that must be true for the policy to approve.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validation {
    /// A name for the rule, unique in the policy, DNS-label-like (`cn-is-requestor`). It
    /// prefixes the rule's message in a denial.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A CEL expression returning bool; false fails the policy. At most 5 KiB.
    #[schemars(length(min = 1, max = 5120))]
    pub expression: String,
    /// The message reported when the rule fails: one line. Default:
    /// `failed validation "<name>": <expression>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.contains('\\n')").message("message must be one line"))]
    pub message: Option<String>,
    /// A CEL expression returning the message as a one-line string, evaluated when the rule
    /// fails; if it errors or returns something else, `message` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 5120))]
    pub message_expression: Option<String>,
}

/// What the controller last observed of this policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsrApprovalPolicyStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready=True` (reason `Compiled`) when every expression compiled; `Ready=False` (reason
    /// `InvalidExpression`) with the field path and error otherwise. While a covering Enforce
    /// policy is not Ready, its CSRs stay pending. `Authorized=False` (reason
    /// `ApproveForbidden`) when the API server's authorizer says csrgate may not `approve` a
    /// signer the policy names: its decisions for that signer would be refused (403), so those
    /// CSRs stay pending; `Authorized=True` (reason `ApprovePermitted`) otherwise. The
    /// authorizer is asked with a SelfSubjectAccessReview, at most once a minute per signer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Expressions that compiled but look wrong, with the field they are in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression_warnings: Vec<ExpressionWarning>,
}

/// A warning about one expression of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpressionWarning {
    /// The field path of the expression, e.g. `spec.validations[1].expression`.
    pub field_ref: String,
    /// What looks wrong.
    pub warning: String,
}

impl CsrApprovalPolicy {
    /// The `Ready` condition, if the controller has written one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_is_cluster_scoped_with_short_name_and_status() {
        let crd = CsrApprovalPolicy::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec!["csrpolicy".to_owned()])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Mode", "Signers", "Ready", "Age"]);
    }

    #[test]
    fn validation_names_are_list_map_keys_so_the_server_refuses_duplicates() {
        let json = serde_json::to_value(CsrApprovalPolicy::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for list in ["validations", "matchConditions", "variables"] {
            assert_eq!(
                spec["properties"][list]["x-kubernetes-list-type"], "map",
                "{list}"
            );
            assert_eq!(
                spec["properties"][list]["x-kubernetes-list-map-keys"][0],
                "name"
            );
        }
        assert_eq!(spec["properties"]["signerNames"]["maxItems"], 16);
        assert_eq!(spec["properties"]["signerNames"]["minItems"], 1);
        assert_eq!(spec["properties"]["validations"]["minItems"], 1);
    }

    #[test]
    fn every_schema_property_has_a_description() {
        fn walk(path: &str, node: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
                for (name, child) in props {
                    let child_path = format!("{path}.{name}");
                    if child.get("description").is_none() && path.starts_with(".spec") {
                        missing.push(child_path.clone());
                    }
                    walk(&child_path, child, missing);
                }
            }
            if let Some(items) = node.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let json = serde_json::to_value(CsrApprovalPolicy::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut missing = Vec::new();
        walk(".spec", spec, &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }

    #[test]
    fn unknown_spec_fields_are_refused() {
        let err = serde_json::from_value::<CsrApprovalPolicySpec>(serde_json::json!({
            "signerNames": ["a.io/b"],
            "validations": [{"name": "x", "expression": "true"}],
            "bogus": 1
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn mode_and_failure_action_default_to_enforce_and_deny() {
        let spec: CsrApprovalPolicySpec = serde_json::from_value(serde_json::json!({
            "signerNames": ["a.io/b"],
            "validations": [{"name": "x", "expression": "true"}]
        }))
        .unwrap();
        assert_eq!(spec.mode, PolicyMode::Enforce);
        assert_eq!(spec.failure_action, FailureAction::Deny);
        assert_eq!(spec.default_action, DefaultAction::Pending);
    }

    #[test]
    fn default_action_is_an_enum_in_the_schema_and_a_wrong_value_names_the_field() {
        let json = serde_json::to_value(CsrApprovalPolicy::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["defaultAction"]["enum"],
            serde_json::json!(["Pending", "Deny"])
        );
        let err = serde_json::from_value::<CsrApprovalPolicy>(serde_json::json!({
            "apiVersion": "csrgate.dev/v1alpha1",
            "kind": "CsrApprovalPolicy",
            "metadata": {"name": "p"},
            "spec": {
                "signerNames": ["a.io/b"],
                "defaultAction": "Approve",
                "validations": [{"name": "x", "expression": "true"}]
            }
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Approve`"),
            "{err}"
        );
    }
}
