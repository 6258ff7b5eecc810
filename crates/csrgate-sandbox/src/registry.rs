//! The table of resources the sandbox serves: the built-in ones, typed through k8s-openapi, and those
//! the CustomResourceDefinitions stored in it define (see [`crate::crd`]), looked up by URL segments.

use std::sync::{Arc, LazyLock};

use k8s_openapi::api::{authorization, certificates, coordination, core, events};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
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
    /// Whether `self` is the built-in `other` (or another version of it): compared by group and
    /// plural, so that a custom resource with a built-in's plural in another group is not taken
    /// for it.
    pub fn is(&self, other: &ResourceDef) -> bool {
        self.store_key == other.store_key
    }

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

/// A built-in resource, named as k8s-openapi names `T` (group, version, kind, plural, scope) and
/// its OpenAPI schema as schemars names it; `singular` is the lower-case kind, as for every built-in.
fn builtin<T>(
    short_names: &[&str],
    subresources: &'static [&'static str],
    behavior: Behavior,
) -> Arc<ResourceDef>
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + JsonSchema,
    T::Scope: 'static,
{
    let namespaced = std::any::TypeId::of::<T::Scope>()
        == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    Arc::new(ResourceDef {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        kind: T::KIND.into(),
        plural: T::URL_PATH_SEGMENT.into(),
        singular: T::KIND.to_lowercase(),
        short_names: short_names.iter().map(|s| (*s).to_string()).collect(),
        namespaced,
        verbs: CRUD,
        subresources,
        behavior,
        generation: Generation::Absent,
        store_key: key_of(T::GROUP, T::URL_PATH_SEGMENT),
        schema_name: T::schema_name().into_owned(),
        model: Model::Typed {
            normalise: typed::<T>,
            schemas: schemas_of::<T>,
        },
    })
}

/// `def` with `edit` applied, for the built-ins that differ from the defaults.
fn with(mut def: Arc<ResourceDef>, edit: impl FnOnce(&mut ResourceDef)) -> Arc<ResourceDef> {
    edit(Arc::make_mut(&mut def));
    def
}

/// A shared, lazily built resource definition.
pub type Def = LazyLock<Arc<ResourceDef>>;

/// certificates.k8s.io/v1 CertificateSigningRequest.
pub static CSR: Def = LazyLock::new(|| {
    builtin::<certificates::v1::CertificateSigningRequest>(
        &["csr"],
        &["approval", "status"],
        Behavior::Csr,
    )
});

/// apiextensions.k8s.io/v1 CustomResourceDefinition.
pub static CRD: Def = LazyLock::new(|| {
    let def = builtin::<apiextensions::v1::CustomResourceDefinition>(
        &["crd", "crds"],
        &["status"],
        Behavior::Crd,
    );
    with(def, |d| d.generation = Generation::OnSpecChange)
});

/// events.k8s.io/v1 Event, stored as core Events (one store, two API shapes, as in the real
/// server; see `events::present`).
pub static EVENT: Def = LazyLock::new(|| {
    let def = builtin::<events::v1::Event>(&["ev"], &[], Behavior::Plain);
    with(def, |d| d.store_key = key_of("", "events"))
});

/// core v1 Event.
pub static CORE_EVENT: Def =
    LazyLock::new(|| builtin::<core::v1::Event>(&["ev"], &[], Behavior::Plain));

/// coordination.k8s.io/v1 Lease.
pub static LEASE: Def =
    LazyLock::new(|| builtin::<coordination::v1::Lease>(&[], &[], Behavior::Plain));

/// core v1 Node.
pub static NODE: Def = LazyLock::new(|| {
    let def = builtin::<core::v1::Node>(&["no"], &["status"], Behavior::Node);
    with(def, |d| d.generation = Generation::OnSpecChange)
});

/// core v1 Namespace (no deletecollection, as in the real server).
pub static NAMESPACE: Def = LazyLock::new(|| {
    let def = builtin::<core::v1::Namespace>(&["ns"], &["status"], Behavior::Namespace);
    with(def, |d| {
        d.verbs = &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
    })
});

/// authorization.k8s.io/v1 SubjectAccessReview: create only.
pub static SAR: Def = LazyLock::new(|| {
    let def = builtin::<authorization::v1::SubjectAccessReview>(&[], &[], Behavior::Sar);
    with(def, |d| d.verbs = &["create"])
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

/// The resources of `defs` in one group/version.
pub fn in_group_version<'a>(
    defs: &'a [Arc<ResourceDef>],
    group: &str,
    version: &str,
) -> Vec<&'a ResourceDef> {
    defs.iter()
        .map(|d| &**d)
        .filter(|d| d.group == group && d.version == version)
        .collect()
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
    fn built_in_names_come_from_k8s_openapi_and_schemars() {
        assert_eq!(
            (
                CSR.group.as_str(),
                CSR.plural.as_str(),
                CSR.singular.as_str()
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                "certificatesigningrequest"
            )
        );
        assert_eq!(
            CSR.schema_name,
            "io.k8s.api.certificates.v1.CertificateSigningRequest"
        );
        assert!(LEASE.namespaced && !NODE.namespaced);
        assert_eq!(CORE_EVENT.api_version(), "v1");
    }

    #[test]
    fn a_built_in_resource_is_found_without_any_crd() {
        let store = Store::new(10);
        let found = find(&store, "coordination.k8s.io", "v1", "leases");
        assert_eq!(found.map(|d| d.kind.clone()), Some("Lease".to_string()));
        assert!(find(&store, "example.com", "v1", "widgets").is_none());
    }
}
