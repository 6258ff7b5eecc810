//! The table of resources the sandbox serves: the built-in ones, typed through k8s-openapi, and those
//! the CustomResourceDefinitions stored in it define (see [`crate::crd`]), looked up by URL segments.

use std::sync::{Arc, LazyLock};

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::store::Store;

/// How a resource's objects are decoded and what extra rules apply to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// CertificateSigningRequests: identity, validation, approval and signing rules.
    Csr,
    /// Custom resources: stored JSON, pruned, defaulted and validated by their CRD's schema.
    Custom,
    /// CustomResourceDefinitions: each one served resources of its own.
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

/// When `metadata.generation` is set and bumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Never set.
    Absent,
    /// 1 on create, bumped when `spec` changes (CRDs, Nodes, custom resources with a status subresource).
    OnSpecChange,
    /// 1 on create, bumped when anything but `metadata` changes (custom resources without a status
    /// subresource, apiextensions-apiserver's `customResourceStrategy.PrepareForUpdate`).
    OnNonMetadataChange,
}

/// Where a resource's schema comes from.
#[derive(Debug, Clone)]
pub enum Model {
    /// A k8s-openapi type.
    Typed {
        /// Decode and re-encode a body through the type; unknown fields vanish.
        normalise: fn(&Value) -> Result<Value, serde_json::Error>,
        /// Add the type's OpenAPI schemas (and those it refers to) to a components map.
        schemas: fn(&mut Map<String, Value>),
    },
    /// A CRD version.
    Custom {
        /// Its `openAPIV3Schema` (structural: prunes, defaults and validates).
        schema: Value,
        /// Its `additionalPrinterColumns`, for `kubectl get`.
        printer_columns: Vec<Value>,
    },
}

/// One served resource.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs of the main resource.
    pub verbs: &'static [&'static str],
    /// Subresources served (`status`, `approval`).
    pub subresources: &'static [&'static str],
    /// Rules beyond plain storage.
    pub behavior: Behavior,
    /// Whether `metadata.generation` is kept.
    pub generation: Generation,
    /// The store key (`group/plural`, `core/plural` for the core group), shared by one resource's
    /// versions and by resources stored as another (events.k8s.io Events are core Events).
    pub store_key: String,
    /// Schema name in the OpenAPI components (k8s-openapi name, or the reversed group for a CRD).
    pub schema_name: String,
    /// Where the schema comes from.
    pub model: Model,
}

impl ResourceDef {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `sub` is one of this resource's subresources.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// The CRD's printer columns (empty for built-in resources, which have their own).
    pub fn printer_columns(&self) -> &[Value] {
        match &self.model {
            Model::Custom {
                printer_columns, ..
            } => printer_columns,
            Model::Typed { .. } => &[],
        }
    }
}

fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(value.clone())?;
    serde_json::to_value(typed)
}

fn schemas_of<T: JsonSchema>(components: &mut Map<String, Value>) {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let _ = generator.subschema_for::<T>();
    for (name, schema) in generator.take_definitions(true) {
        components.insert(name, schema);
    }
}

/// Every verb of a full resource.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The names of a built-in resource.
struct Names {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
}

fn builtin<T: DeserializeOwned + Serialize + JsonSchema>(
    names: Names,
    subresources: &'static [&'static str],
    behavior: Behavior,
    schema_name: &str,
) -> Arc<ResourceDef> {
    Arc::new(ResourceDef {
        group: names.group.into(),
        version: names.version.into(),
        kind: names.kind.into(),
        plural: names.plural.into(),
        singular: names.kind.to_lowercase(),
        short_names: names.short_names.iter().map(|s| (*s).to_string()).collect(),
        namespaced: names.namespaced,
        verbs: CRUD,
        subresources,
        behavior,
        generation: Generation::Absent,
        store_key: key_of(names.group, names.plural),
        schema_name: schema_name.into(),
        model: Model::Typed {
            normalise: typed::<T>,
            schemas: schemas_of::<T>,
        },
    })
}

/// A shared, lazily built resource definition.
pub type Def = LazyLock<Arc<ResourceDef>>;

/// certificates.k8s.io/v1 CertificateSigningRequest.
pub static CSR: Def = LazyLock::new(|| {
    builtin::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(
        Names {
            group: "certificates.k8s.io",
            version: "v1",
            kind: "CertificateSigningRequest",
            plural: "certificatesigningrequests",
            short_names: &["csr"],
            namespaced: false,
        },
        &["approval", "status"],
        Behavior::Csr,
        "io.k8s.api.certificates.v1.CertificateSigningRequest",
    )
});

/// apiextensions.k8s.io/v1 CustomResourceDefinition.
pub static CRD: Def = LazyLock::new(|| {
    let mut def = builtin::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >(
        Names {
            group: "apiextensions.k8s.io",
            version: "v1",
            kind: "CustomResourceDefinition",
            plural: "customresourcedefinitions",
            short_names: &["crd", "crds"],
            namespaced: false,
        },
        &["status"],
        Behavior::Crd,
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    );
    Arc::make_mut(&mut def).generation = Generation::OnSpecChange;
    def
});

/// events.k8s.io/v1 Event.
pub static EVENT: Def = LazyLock::new(|| {
    let mut def = builtin::<k8s_openapi::api::events::v1::Event>(
        Names {
            group: "events.k8s.io",
            version: "v1",
            kind: "Event",
            plural: "events",
            short_names: &["ev"],
            namespaced: true,
        },
        &[],
        Behavior::Plain,
        "io.k8s.api.events.v1.Event",
    );
    // One Event store, two API shapes, as in the real server (see `events::present`).
    Arc::make_mut(&mut def).store_key = key_of("", "events");
    def
});

/// core v1 Event.
pub static CORE_EVENT: Def = LazyLock::new(|| {
    builtin::<k8s_openapi::api::core::v1::Event>(
        Names {
            group: "",
            version: "v1",
            kind: "Event",
            plural: "events",
            short_names: &["ev"],
            namespaced: true,
        },
        &[],
        Behavior::Plain,
        "io.k8s.api.core.v1.Event",
    )
});

/// coordination.k8s.io/v1 Lease.
pub static LEASE: Def = LazyLock::new(|| {
    builtin::<k8s_openapi::api::coordination::v1::Lease>(
        Names {
            group: "coordination.k8s.io",
            version: "v1",
            kind: "Lease",
            plural: "leases",
            short_names: &[],
            namespaced: true,
        },
        &[],
        Behavior::Plain,
        "io.k8s.api.coordination.v1.Lease",
    )
});

/// core v1 Node.
pub static NODE: Def = LazyLock::new(|| {
    let mut def = builtin::<k8s_openapi::api::core::v1::Node>(
        Names {
            group: "",
            version: "v1",
            kind: "Node",
            plural: "nodes",
            short_names: &["no"],
            namespaced: false,
        },
        &["status"],
        Behavior::Node,
        "io.k8s.api.core.v1.Node",
    );
    Arc::make_mut(&mut def).generation = Generation::OnSpecChange;
    def
});

/// core v1 Namespace.
pub static NAMESPACE: Def = LazyLock::new(|| {
    let mut def = builtin::<k8s_openapi::api::core::v1::Namespace>(
        Names {
            group: "",
            version: "v1",
            kind: "Namespace",
            plural: "namespaces",
            short_names: &["ns"],
            namespaced: false,
        },
        &["status"],
        Behavior::Namespace,
        "io.k8s.api.core.v1.Namespace",
    );
    Arc::make_mut(&mut def).verbs = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    def
});

/// authorization.k8s.io/v1 SubjectAccessReview.
pub static SAR: Def = LazyLock::new(|| {
    let mut def = builtin::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(
        Names {
            group: "authorization.k8s.io",
            version: "v1",
            kind: "SubjectAccessReview",
            plural: "subjectaccessreviews",
            short_names: &[],
            namespaced: false,
        },
        &[],
        Behavior::Sar,
        "io.k8s.api.authorization.v1.SubjectAccessReview",
    );
    Arc::make_mut(&mut def).verbs = &["create"];
    def
});

/// Every built-in resource, in discovery order.
static BUILTINS: LazyLock<Vec<Arc<ResourceDef>>> = LazyLock::new(|| {
    [
        &CSR,
        &CRD,
        &EVENT,
        &CORE_EVENT,
        &LEASE,
        &NODE,
        &NAMESPACE,
        &SAR,
    ]
    .into_iter()
    .map(|d| Arc::clone(d))
    .collect()
});

/// Every served resource: the built-in ones, then each served version of each stored CRD.
pub fn served(store: &Store) -> Vec<Arc<ResourceDef>> {
    let mut all = BUILTINS.clone();
    all.extend(crate::crd::served(store));
    all
}

/// The resource served at `group/version/plural`: a built-in one, else one a stored CRD defines.
pub fn find(store: &Store, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
    let matches = |d: &ResourceDef| d.group == group && d.version == version && d.plural == plural;
    BUILTINS
        .iter()
        .find(|d| matches(d))
        .cloned()
        .or_else(|| crate::crd::served(store).into_iter().find(|d| matches(d)))
}

/// The group/versions of `defs`, in their order, each once.
pub fn group_versions(defs: &[Arc<ResourceDef>]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for d in defs {
        if !out.contains(&(d.group.as_str(), d.version.as_str())) {
            out.push((&d.group, &d.version));
        }
    }
    out
}

/// A store key: `group/plural`, `core/plural` for the core group.
pub fn key_of(group: &str, plural: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{plural}")
}

/// The store key of a resource.
pub fn store_key(def: &ResourceDef) -> &str {
    &def.store_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_name_the_group_and_plural() {
        assert_eq!(
            store_key(&CSR),
            "certificates.k8s.io/certificatesigningrequests"
        );
        assert_eq!(store_key(&CORE_EVENT), store_key(&EVENT));
        assert_eq!(store_key(&NODE), "core/nodes");
    }

    #[test]
    fn a_built_in_resource_is_found_without_any_crd() {
        let store = Store::new(10);
        let found = find(&store, "coordination.k8s.io", "v1", "leases");
        assert_eq!(found.map(|d| d.kind.clone()), Some("Lease".to_string()));
        assert!(find(&store, "example.com", "v1", "widgets").is_none());
    }
}
