//! The table of resources the sandbox serves: names, scope, verbs and how bodies are decoded.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How a resource's objects are decoded and what extra rules apply to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// CertificateSigningRequests: identity, validation, approval and signing rules.
    Csr,
    /// CsrApprovalPolicies: stored JSON, generation bumped on spec change.
    Policy,
    /// CustomResourceDefinitions: stored and otherwise ignored.
    Crd,
    /// SubjectAccessReviews: answered, never stored.
    Sar,
    /// Namespaces: names are DNS labels.
    Namespace,
    /// Nodes: the not-ready taint added on create (TaintNodesByCondition).
    Node,
    /// Everything else: stored as given (after typed decoding).
    Plain,
}

/// One served resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name (URL segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs of the main resource.
    pub verbs: &'static [&'static str],
    /// Subresources served (`status`, `approval`).
    pub subresources: &'static [&'static str],
    /// Rules beyond plain storage.
    pub behavior: Behavior,
    /// Schema name in the OpenAPI components (k8s-openapi / schemars name).
    pub schema_name: &'static str,
    /// Decode and re-encode a body through the typed model; unknown fields vanish.
    pub normalise: fn(&Value) -> Result<Value, serde_json::Error>,
}

impl ResourceDef {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a stored object carries `metadata.generation` bumped on spec change.
    pub fn has_generation(&self) -> bool {
        matches!(self.behavior, Behavior::Policy | Behavior::Crd) || self.plural == "nodes"
    }

    /// Whether `sub` is one of this resource's subresources.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(value.clone())?;
    serde_json::to_value(typed)
}

fn untyped(value: &Value) -> Result<Value, serde_json::Error> {
    Ok(value.clone())
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// certificates.k8s.io/v1 CertificateSigningRequest.
pub static CSR: ResourceDef = ResourceDef {
    group: "certificates.k8s.io",
    version: "v1",
    kind: "CertificateSigningRequest",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    short_names: &["csr"],
    namespaced: false,
    verbs: CRUD,
    subresources: &["approval", "status"],
    behavior: Behavior::Csr,
    schema_name: "io.k8s.api.certificates.v1.CertificateSigningRequest",
    normalise: typed::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>,
};

/// csrgate.dev/v1alpha1 CsrApprovalPolicy.
pub static POLICY: ResourceDef = ResourceDef {
    group: "csrgate.dev",
    version: "v1alpha1",
    kind: "CsrApprovalPolicy",
    plural: "csrapprovalpolicies",
    singular: "csrapprovalpolicy",
    short_names: &["csrpolicy"],
    namespaced: false,
    verbs: CRUD,
    subresources: &["status"],
    behavior: Behavior::Policy,
    schema_name: "dev.csrgate.v1alpha1.CsrApprovalPolicy",
    normalise: untyped,
};

/// apiextensions.k8s.io/v1 CustomResourceDefinition.
pub static CRD: ResourceDef = ResourceDef {
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    short_names: &["crd", "crds"],
    namespaced: false,
    verbs: CRUD,
    subresources: &["status"],
    behavior: Behavior::Crd,
    schema_name: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    normalise: typed::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
};

/// events.k8s.io/v1 Event.
pub static EVENT: ResourceDef = ResourceDef {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    namespaced: true,
    verbs: CRUD,
    subresources: &[],
    behavior: Behavior::Plain,
    schema_name: "io.k8s.api.events.v1.Event",
    normalise: typed::<k8s_openapi::api::events::v1::Event>,
};

/// core v1 Event.
pub static CORE_EVENT: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    namespaced: true,
    verbs: CRUD,
    subresources: &[],
    behavior: Behavior::Plain,
    schema_name: "io.k8s.api.core.v1.Event",
    normalise: typed::<k8s_openapi::api::core::v1::Event>,
};

/// coordination.k8s.io/v1 Lease.
pub static LEASE: ResourceDef = ResourceDef {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    short_names: &[],
    namespaced: true,
    verbs: CRUD,
    subresources: &[],
    behavior: Behavior::Plain,
    schema_name: "io.k8s.api.coordination.v1.Lease",
    normalise: typed::<k8s_openapi::api::coordination::v1::Lease>,
};

/// core v1 Node.
pub static NODE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    short_names: &["no"],
    namespaced: false,
    verbs: CRUD,
    subresources: &["status"],
    behavior: Behavior::Node,
    schema_name: "io.k8s.api.core.v1.Node",
    normalise: typed::<k8s_openapi::api::core::v1::Node>,
};

/// core v1 Namespace.
pub static NAMESPACE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    short_names: &["ns"],
    namespaced: false,
    verbs: &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ],
    subresources: &["status"],
    behavior: Behavior::Namespace,
    schema_name: "io.k8s.api.core.v1.Namespace",
    normalise: typed::<k8s_openapi::api::core::v1::Namespace>,
};

/// authorization.k8s.io/v1 SubjectAccessReview.
pub static SAR: ResourceDef = ResourceDef {
    group: "authorization.k8s.io",
    version: "v1",
    kind: "SubjectAccessReview",
    plural: "subjectaccessreviews",
    singular: "subjectaccessreview",
    short_names: &[],
    namespaced: false,
    verbs: &["create"],
    subresources: &[],
    behavior: Behavior::Sar,
    schema_name: "io.k8s.api.authorization.v1.SubjectAccessReview",
    normalise: typed::<k8s_openapi::api::authorization::v1::SubjectAccessReview>,
};

/// Every served resource.
pub static ALL: &[&ResourceDef] = &[
    &CSR,
    &POLICY,
    &CRD,
    &EVENT,
    &CORE_EVENT,
    &LEASE,
    &NODE,
    &NAMESPACE,
    &SAR,
];

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    ALL.iter()
        .copied()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// The group/versions served, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for d in ALL {
        if !out.contains(&(d.group, d.version)) {
            out.push((d.group, d.version));
        }
    }
    out
}

/// The store key of a resource (`group/plural`), shared by one resource's versions.
pub fn store_key(def: &ResourceDef) -> &'static str {
    match def.plural {
        "certificatesigningrequests" => "certificates.k8s.io/certificatesigningrequests",
        "csrapprovalpolicies" => "csrgate.dev/csrapprovalpolicies",
        "customresourcedefinitions" => "apiextensions.k8s.io/customresourcedefinitions",
        "events" => "core/events",
        "leases" => "coordination.k8s.io/leases",
        "nodes" => "core/nodes",
        "namespaces" => "core/namespaces",
        _ => "authorization.k8s.io/subjectaccessreviews",
    }
}
