//! Kubernetes RBAC evaluated from manifests, answering the `authorizer` variable offline.
//!
//! `csrgate check --rbac` and `csrgate test` suites decide with the RBAC objects kept in Git
//! (Role, ClusterRole, RoleBinding, ClusterRoleBinding) instead of a cluster. The rules
//! follow Kubernetes' RBAC authorizer (plugin/pkg/auth/authorizer/rbac/rbac.go and
//! pkg/apis/rbac/v1/evaluation_helpers.go):
//!
//! - ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant their Role
//!   or ClusterRole in their own namespace only (a namespaced check);
//! - a subject applies to a `User` by name, to a `Group` the requestor is in, to a
//!   `ServiceAccount` whose username `system:serviceaccount:<namespace>:<name>` is the
//!   requestor (namespace defaulted to the RoleBinding's);
//! - a rule allows when `verbs`, `apiGroups`, `resources` and `resourceNames` all match:
//!   `*` matches any verb, group or resource, a resource is matched as `resource` or
//!   `resource/subresource` (or `*/subresource`), empty `resourceNames` match any name;
//!   non-resource requests match `nonResourceURLs` exactly, by `*`, or by a `prefix*`;
//! - an aggregated ClusterRole (`aggregationRule`) also has the rules of every ClusterRole
//!   its label selectors select, as Kubernetes' aggregation controller fills them in;
//! - a requestor in `system:masters` is allowed everything, as kube-apiserver allows it
//!   before any authorizer runs.
//!
//! RBAC only ever allows: a request no rule allows gets "no opinion" (`allowed: false`,
//! reason empty), as the API server's SubjectAccessReview reports for RBAC. A binding to a
//! role that is not among the manifests is skipped, and the reason says so.

use std::collections::BTreeMap;

use k8s_openapi::api::authorization::v1::{SubjectAccessReviewSpec, SubjectAccessReviewStatus};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::authorizer::Authorizer;

/// The group kube-apiserver allows everything (`user.SystemPrivilegedGroup`).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// One RBAC object, as read from a manifest.
#[derive(Debug, Clone)]
pub enum RbacObject {
    /// A namespaced Role.
    Role(Role),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A namespaced RoleBinding.
    RoleBinding(RoleBinding),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
}

/// An [`Authorizer`] that answers from RBAC manifests, as kube-apiserver's RBAC authorizer
/// answers from the objects it watches.
#[derive(Debug, Clone, Default)]
pub struct RbacAuthorizer {
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: BTreeMap<String, ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl RbacAuthorizer {
    /// An authorizer over `objects`; a later object of the same kind, namespace and name
    /// replaces an earlier one, as a later `kubectl apply` would.
    pub fn new(objects: impl IntoIterator<Item = RbacObject>) -> Self {
        let mut rbac = Self::default();
        for object in objects {
            match object {
                RbacObject::Role(role) => {
                    let key = (
                        role.metadata.namespace.clone().unwrap_or_default(),
                        role.metadata.name.clone().unwrap_or_default(),
                    );
                    rbac.roles.insert(key, role.rules.unwrap_or_default());
                }
                RbacObject::ClusterRole(role) => {
                    let name = role.metadata.name.clone().unwrap_or_default();
                    rbac.cluster_roles.insert(name, role);
                }
                RbacObject::RoleBinding(binding) => rbac.role_bindings.push(binding),
                RbacObject::ClusterRoleBinding(binding) => {
                    rbac.cluster_role_bindings.push(binding);
                }
            }
        }
        rbac
    }

    /// How many objects it holds, of every kind.
    pub fn len(&self) -> usize {
        self.roles.len()
            + self.cluster_roles.len()
            + self.role_bindings.len()
            + self.cluster_role_bindings.len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rules of a ClusterRole, with those aggregated into it; `None` when unknown.
    fn cluster_role_rules(&self, name: &str) -> Option<Vec<&PolicyRule>> {
        let role = self.cluster_roles.get(name)?;
        let mut rules: Vec<&PolicyRule> = role.rules.iter().flatten().collect();
        let selectors = role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.as_deref())
            .unwrap_or_default();
        for (other_name, other) in &self.cluster_roles {
            let labels = other.metadata.labels.clone().unwrap_or_default();
            if other_name != name && selectors.iter().any(|s| selects(s, &labels)) {
                rules.extend(other.rules.iter().flatten());
            }
        }
        Some(rules)
    }

    fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Option<Vec<&PolicyRule>> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules(&role_ref.name),
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), role_ref.name.clone()))
                .map(|rules| rules.iter().collect()),
            _ => None,
        }
    }
}

impl Authorizer for RbacAuthorizer {
    fn review(&self, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
        let user = spec.user.as_deref().unwrap_or_default();
        let groups = spec.groups.as_deref().unwrap_or_default();
        if groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return status(true, String::new());
        }
        let request = Request::of(spec);
        let namespace = request.namespace();
        let mut missing = Vec::new();
        for binding in &self.cluster_role_bindings {
            let Some(subject) = applying_subject(binding.subjects.as_deref(), user, groups, "")
            else {
                continue;
            };
            match self.role_rules(&binding.role_ref, "") {
                Some(rules) if rules.iter().any(|r| request.allowed_by(r)) => {
                    return status(
                        true,
                        format!(
                            "RBAC: allowed by ClusterRoleBinding {:?} of {} {:?} to {}",
                            binding.metadata.name.as_deref().unwrap_or_default(),
                            binding.role_ref.kind,
                            binding.role_ref.name,
                            describe(subject, "")
                        ),
                    );
                }
                Some(_) => {}
                None => missing.push(describe_ref(&binding.role_ref, "")),
            }
        }
        if !namespace.is_empty() {
            for binding in self
                .role_bindings
                .iter()
                .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
            {
                let Some(subject) =
                    applying_subject(binding.subjects.as_deref(), user, groups, namespace)
                else {
                    continue;
                };
                match self.role_rules(&binding.role_ref, namespace) {
                    Some(rules) if rules.iter().any(|r| request.allowed_by(r)) => {
                        return status(
                            true,
                            format!(
                                "RBAC: allowed by RoleBinding \"{}/{namespace}\" of {} {:?} to {}",
                                binding.metadata.name.as_deref().unwrap_or_default(),
                                binding.role_ref.kind,
                                binding.role_ref.name,
                                describe(subject, namespace)
                            ),
                        );
                    }
                    Some(_) => {}
                    None => missing.push(describe_ref(&binding.role_ref, namespace)),
                }
            }
        }
        let reason = if missing.is_empty() {
            String::new()
        } else {
            format!("RBAC: {} not found", missing.join(", "))
        };
        status(false, reason)
    }
}

fn status(allowed: bool, reason: String) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed,
        denied: None,
        reason: (!reason.is_empty()).then_some(reason),
        evaluation_error: None,
    }
}

fn describe_ref(role_ref: &RoleRef, namespace: &str) -> String {
    match role_ref.kind.as_str() {
        "Role" => format!("role {:?} in namespace {namespace:?}", role_ref.name),
        _ => format!("clusterrole {:?}", role_ref.name),
    }
}

/// How the API server names a subject in a reason.
fn describe(subject: &Subject, binding_namespace: &str) -> String {
    if subject.kind == "ServiceAccount" {
        let namespace = subject
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_namespace);
        format!("{} \"{}/{namespace}\"", subject.kind, subject.name)
    } else {
        format!("{} {:?}", subject.kind, subject.name)
    }
}

/// The first subject of a binding that names the requestor.
fn applying_subject<'a>(
    subjects: Option<&'a [Subject]>,
    user: &str,
    groups: &[String],
    namespace: &str,
) -> Option<&'a Subject> {
    subjects?
        .iter()
        .find(|subject| match subject.kind.as_str() {
            "User" => subject.name == user,
            "Group" => groups.contains(&subject.name),
            "ServiceAccount" => {
                let namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(namespace);
                !namespace.is_empty()
                    && user == format!("system:serviceaccount:{namespace}:{}", subject.name)
            }
            _ => false,
        })
}

/// What a review asks, flattened.
enum Request<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: &'a str,
        namespace: &'a str,
        name: &'a str,
    },
    Path {
        verb: &'a str,
        path: &'a str,
    },
}

impl<'a> Request<'a> {
    fn of(spec: &'a SubjectAccessReviewSpec) -> Self {
        let s = |v: &'a Option<String>| v.as_deref().unwrap_or_default();
        match (&spec.resource_attributes, &spec.non_resource_attributes) {
            (Some(r), _) => Request::Resource {
                verb: s(&r.verb),
                group: s(&r.group),
                resource: s(&r.resource),
                subresource: s(&r.subresource),
                namespace: s(&r.namespace),
                name: s(&r.name),
            },
            (None, Some(n)) => Request::Path {
                verb: s(&n.verb),
                path: s(&n.path),
            },
            (None, None) => Request::Path { verb: "", path: "" },
        }
    }

    fn namespace(&self) -> &'a str {
        match self {
            Request::Resource { namespace, .. } => namespace,
            Request::Path { .. } => "",
        }
    }

    /// `RuleAllows` of Kubernetes' RBAC authorizer.
    fn allowed_by(&self, rule: &PolicyRule) -> bool {
        let any = |list: &Option<Vec<String>>, wanted: &str| {
            list.iter()
                .flatten()
                .any(|item| item == "*" || item == wanted)
        };
        match *self {
            Request::Resource {
                verb,
                group,
                resource,
                subresource,
                name,
                ..
            } => {
                let combined = if subresource.is_empty() {
                    resource.to_owned()
                } else {
                    format!("{resource}/{subresource}")
                };
                rule.verbs.iter().any(|v| v == "*" || v == verb)
                    && any(&rule.api_groups, group)
                    && rule.resources.iter().flatten().any(|r| {
                        r == "*"
                            || *r == combined
                            || (!subresource.is_empty()
                                && r.strip_prefix("*/") == Some(subresource))
                    })
                    && rule
                        .resource_names
                        .as_deref()
                        .is_none_or(|names| names.is_empty() || names.iter().any(|n| n == name))
            }
            Request::Path { verb, path } => {
                rule.verbs.iter().any(|v| v == "*" || v == verb)
                    && rule.non_resource_urls.iter().flatten().any(|url| {
                        url == "*"
                            || url == path
                            || url
                                .strip_suffix('*')
                                .is_some_and(|prefix| path.starts_with(prefix))
                    })
            }
        }
    }
}

/// Whether a label selector selects these labels (`matchLabels` and `matchExpressions`
/// with `In`, `NotIn`, `Exists`, `DoesNotExist`). An empty selector selects nothing here,
/// as an aggregation rule with an empty selector aggregates nothing.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.as_ref();
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if match_labels.is_none_or(BTreeMap::is_empty) && expressions.is_empty() {
        return false;
    }
    let labels_match = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_match
        && expressions.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes};

    use super::*;

    fn objects(yaml: &str) -> RbacAuthorizer {
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).unwrap();
        RbacAuthorizer::new(
            documents
                .into_iter()
                .map(|d| match d["kind"].as_str().unwrap() {
                    "Role" => RbacObject::Role(serde_json::from_value(d).unwrap()),
                    "ClusterRole" => RbacObject::ClusterRole(serde_json::from_value(d).unwrap()),
                    "RoleBinding" => RbacObject::RoleBinding(serde_json::from_value(d).unwrap()),
                    "ClusterRoleBinding" => {
                        RbacObject::ClusterRoleBinding(serde_json::from_value(d).unwrap())
                    }
                    other => panic!("{other}"),
                }),
        )
    }

    const KUBEADM: &str = r#"
kind: ClusterRole
metadata: {name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"}
rules:
  - {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/nodeclient], verbs: [create]}
---
kind: ClusterRole
metadata: {name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"}
rules:
  - {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/selfnodeclient], verbs: [create]}
---
kind: ClusterRoleBinding
metadata: {name: kubeadm:node-autoapprove-bootstrap}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:bootstrappers"}]
---
kind: ClusterRoleBinding
metadata: {name: kubeadm:node-autoapprove-certificate-rotation}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}]
---
kind: Role
metadata: {name: pod-reader, namespace: team-a}
rules:
  - {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list]}
  - {apiGroups: [""], resources: [configmaps], resourceNames: [settings], verbs: ["*"]}
---
kind: RoleBinding
metadata: {name: readers, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
  - {kind: ServiceAccount, name: builder}
  - {kind: User, name: jane}
---
kind: ClusterRole
metadata: {name: aggregate-view}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {example.com/aggregate-to-view: "true"}}]
---
kind: ClusterRole
metadata: {name: widgets-view, labels: {example.com/aggregate-to-view: "true"}}
rules:
  - {apiGroups: [example.com], resources: ["*/status"], verbs: [get]}
  - {nonResourceURLs: ["/healthz", "/metrics/*"], verbs: [get]}
---
kind: ClusterRoleBinding
metadata: {name: viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aggregate-view}
subjects: [{kind: User, name: viewer}]
---
kind: ClusterRoleBinding
metadata: {name: dangling}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone}
subjects: [{kind: User, name: viewer}]
"#;

    fn user(name: &str, groups: &[&str]) -> SubjectAccessReviewSpec {
        SubjectAccessReviewSpec {
            user: Some(name.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            ..SubjectAccessReviewSpec::default()
        }
    }

    fn resource(
        who: SubjectAccessReviewSpec,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> SubjectAccessReviewSpec {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        SubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: some(verb),
                group: Some(group.to_owned()),
                version: Some("*".into()),
                resource: some(resource),
                subresource: some(subresource),
                namespace: some(namespace),
                name: some(name),
                ..ResourceAttributes::default()
            }),
            ..who
        }
    }

    fn csr(who: SubjectAccessReviewSpec, subresource: &str) -> SubjectAccessReviewSpec {
        resource(
            who,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            subresource,
            "",
            "",
        )
    }

    #[test]
    fn kubeadm_bindings_allow_bootstrappers_nodeclient_and_nodes_selfnodeclient_only() {
        let rbac = objects(KUBEADM);
        let bootstrap = user("system:bootstrap:abcdef", &["system:bootstrappers"]);
        let node = user("system:node:worker-1", &["system:nodes"]);
        let answer = rbac.review(&csr(bootstrap.clone(), "nodeclient"));
        assert!(answer.allowed);
        assert_eq!(
            answer.reason.as_deref(),
            Some(
                "RBAC: allowed by ClusterRoleBinding \"kubeadm:node-autoapprove-bootstrap\" of ClusterRole \"system:certificates.k8s.io:certificatesigningrequests:nodeclient\" to Group \"system:bootstrappers\""
            )
        );
        assert!(!rbac.review(&csr(bootstrap, "selfnodeclient")).allowed);
        assert!(rbac.review(&csr(node.clone(), "selfnodeclient")).allowed);
        assert!(!rbac.review(&csr(node.clone(), "nodeclient")).allowed);
        // The subresource is part of the resource: the bare resource is not granted.
        assert!(!rbac.review(&csr(node, "")).allowed);
    }

    #[test]
    fn role_bindings_grant_in_their_namespace_only_with_names_and_default_sa_namespace() {
        let rbac = objects(KUBEADM);
        let jane = user("jane", &[]);
        let get = |who: &SubjectAccessReviewSpec, res: &str, sub: &str, ns: &str, name: &str| {
            rbac.review(&resource(who.clone(), "get", "", res, sub, ns, name))
                .allowed
        };
        assert!(get(&jane, "pods", "", "team-a", ""));
        assert!(get(&jane, "pods", "log", "team-a", "web"));
        assert!(!get(&jane, "pods", "exec", "team-a", "web"));
        assert!(!get(&jane, "pods", "", "team-b", ""));
        assert!(!get(&jane, "pods", "", "", ""));
        assert!(get(&jane, "configmaps", "", "team-a", "settings"));
        assert!(!get(&jane, "configmaps", "", "team-a", "other"));
        assert!(!get(&jane, "configmaps", "", "team-a", ""));
        let builder = user("system:serviceaccount:team-a:builder", &[]);
        let answer = rbac.review(&resource(builder, "list", "", "pods", "", "team-a", ""));
        assert_eq!(
            answer.reason.as_deref(),
            Some(
                "RBAC: allowed by RoleBinding \"readers/team-a\" of Role \"pod-reader\" to ServiceAccount \"builder/team-a\""
            )
        );
        let other = user("system:serviceaccount:team-b:builder", &[]);
        assert!(!get(&other, "pods", "", "team-a", ""));
    }

    #[test]
    fn aggregated_roles_wildcard_subresources_and_non_resource_urls() {
        let rbac = objects(KUBEADM);
        let viewer = user("viewer", &[]);
        let get = |res: &str, sub: &str| {
            rbac.review(&resource(
                viewer.clone(),
                "get",
                "example.com",
                res,
                sub,
                "",
                "",
            ))
        };
        assert!(get("widgets", "status").allowed);
        assert!(!get("widgets", "").allowed);
        assert!(!get("widgets", "scale").allowed);
        let path = |p: &str, verb: &str| {
            rbac.review(&SubjectAccessReviewSpec {
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(p.into()),
                    verb: Some(verb.into()),
                }),
                ..viewer.clone()
            })
            .allowed
        };
        assert!(path("/healthz", "get"));
        assert!(path("/metrics/cadvisor", "get"));
        assert!(!path("/healthz/etcd", "get"));
        assert!(!path("/healthz", "post"));
        // The binding to a ClusterRole that is not among the manifests is named.
        let denied = get("widgets", "");
        assert_eq!(
            denied.reason.as_deref(),
            Some("RBAC: clusterrole \"gone\" not found")
        );
    }

    #[test]
    fn system_masters_is_allowed_everything_and_strangers_nothing() {
        let rbac = RbacAuthorizer::default();
        assert!(
            rbac.review(&csr(user("admin", &[PRIVILEGED_GROUP]), "nodeclient"))
                .allowed
        );
        let answer = rbac.review(&csr(
            user("mallory", &["system:authenticated"]),
            "nodeclient",
        ));
        assert!(!answer.allowed);
        assert_eq!(answer.reason, None);
        assert_eq!(answer.evaluation_error, None);
    }
}
