//! CustomResourceDefinitions: the resources a stored CRD serves (one per served version, from its own
//! `openAPIV3Schema`, subresources and printer columns) and what the server fills in when one is created.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
    CustomResourceDefinitionVersion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::registry::{self, Behavior, CRD, CRUD, Generation, Model, ResourceDef};
use crate::status::{ApiError, ApiResult, Cause};
use crate::store::Store;

/// The OpenAPI schema name of a custom resource, as kube-apiserver builds it: the group's labels
/// reversed, the version and the kind (`example.com`, `v1`, `Widget` → `com.example.v1.Widget`).
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The resource one version of a CRD serves.
fn resource(
    crd: &CustomResourceDefinition,
    version: &CustomResourceDefinitionVersion,
) -> ResourceDef {
    let spec = &crd.spec;
    let names = &spec.names;
    let has_status = version
        .subresources
        .as_ref()
        .is_some_and(|s| s.status.is_some());
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let printer_columns = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    ResourceDef {
        group: spec.group.clone(),
        version: version.name.clone(),
        kind: names.kind.clone(),
        plural: names.plural.clone(),
        singular: names
            .singular
            .clone()
            .unwrap_or_else(|| names.kind.to_lowercase()),
        short_names: names.short_names.clone().unwrap_or_default(),
        namespaced: spec.scope == "Namespaced",
        verbs: CRUD,
        subresources: if has_status { &["status"] } else { &[] },
        behavior: Behavior::Custom,
        generation: if has_status {
            Generation::OnSpecChange
        } else {
            Generation::OnNonMetadataChange
        },
        store_key: registry::key_of(&spec.group, &names.plural),
        schema_name: schema_name(&spec.group, &version.name, &names.kind),
        model: Model::Custom {
            schema,
            printer_columns,
        },
    }
}

/// The resources a CRD serves: one per version with `served: true`.
pub fn resources(crd: &CustomResourceDefinition) -> Vec<ResourceDef> {
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| resource(crd, v))
        .collect()
}

/// Every resource the CRDs in `store` serve, in CRD name order. A stored CRD that no longer reads
/// as one (it was validated on the way in) serves nothing.
pub fn served(store: &Store) -> Vec<Arc<ResourceDef>> {
    let (crds, _) = store.list(registry::store_key(&CRD), None);
    crds.into_iter()
        .filter_map(|v| serde_json::from_value::<CustomResourceDefinition>(v).ok())
        .flat_map(|crd| resources(&crd))
        .map(Arc::new)
        .collect()
}

/// What kube-apiserver fills in on a new CRD: the defaulted names (`singular`, `listKind`) and a
/// status saying the names are accepted and the CRD established (apiextensions-apiserver's naming
/// and establishing controllers), so `kubectl wait --for condition=Established` returns.
pub fn prepare_for_create(crd: &mut CustomResourceDefinition) {
    let names = &mut crd.spec.names;
    names
        .singular
        .get_or_insert_with(|| names.kind.to_lowercase());
    names
        .list_kind
        .get_or_insert_with(|| format!("{}List", names.kind));
    let now = Some(Time(crate::now()));
    let condition = |type_: &str, reason: &str, message: &str| CustomResourceDefinitionCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: now.clone(),
        observed_generation: None,
    };
    crd.status = Some(CustomResourceDefinitionStatus {
        accepted_names: Some(crd.spec.names.clone()),
        conditions: Some(vec![
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition(
                "Established",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        ]),
        stored_versions: Some(
            crd.spec
                .versions
                .iter()
                .filter(|v| v.storage)
                .map(|v| v.name.clone())
                .collect(),
        ),
        observed_generation: None,
    });
}

/// [`prepare_for_create`] on a decoded CRD object.
///
/// # Errors
/// 500 when the object, already decoded through the CRD type, does not read back as one.
pub fn prepare_new(obj: Value) -> ApiResult<Value> {
    let mut crd: CustomResourceDefinition =
        serde_json::from_value(obj).map_err(|e| ApiError::internal(e.to_string()))?;
    prepare_for_create(&mut crd);
    serde_json::to_value(crd).map_err(|e| ApiError::internal(e.to_string()))
}

/// The causes against a CRD's name: it must be `<spec.names.plural>.<spec.group>`.
pub fn name_causes(name: &str, plural: &str, group: &str) -> Vec<Cause> {
    if name == format!("{plural}.{group}") {
        Vec::new()
    } else {
        vec![Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        )]
    }
}

/// Store a CRD given at start-up as a create through the API would: name checked, uid, creation
/// time and generation set, established.
///
/// # Errors
/// 422 for a name that is not `<plural>.<group>`, 409 when a CRD of that name is stored already.
pub fn store_new(store: &Store, crd: &CustomResourceDefinition) -> ApiResult<()> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let causes = name_causes(&name, &crd.spec.names.plural, &crd.spec.group);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&CRD, &name, &causes));
    }
    let mut crd = crd.clone();
    crd.metadata.uid = Some(crate::handlers::new_uid());
    crd.metadata.creation_timestamp = Some(Time(crate::now()));
    crd.metadata.generation = Some(1);
    crd.metadata.resource_version = None;
    prepare_for_create(&mut crd);
    let obj = serde_json::to_value(&crd).map_err(|e| ApiError::internal(e.to_string()))?;
    store
        .create(registry::store_key(&CRD), "", &name, obj)
        .map(|_| ())
        .map_err(|_| ApiError::already_exists(&CRD, &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v0", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn each_served_version_is_a_resource_with_the_crds_names_and_columns() {
        let defs = resources(&widget_crd());
        assert_eq!(defs.len(), 1, "v0 is not served");
        let def = &defs[0];
        assert_eq!(
            (def.kind.as_str(), def.singular.as_str(), def.namespaced),
            ("Widget", "widget", true)
        );
        assert_eq!(def.short_names, vec!["wd".to_string()]);
        assert!(def.has_subresource("status"));
        assert_eq!(def.generation, Generation::OnSpecChange);
        assert_eq!(def.schema_name, "com.example.v1.Widget");
        assert_eq!(def.printer_columns()[0]["jsonPath"], ".spec.size");
        assert_eq!(def.store_key, "example.com/widgets");
    }

    #[test]
    fn a_custom_resource_with_a_built_in_plural_gets_none_of_its_columns_or_field_selectors() {
        let mut crd = widget_crd();
        crd.spec.group = "toys.example.com".into();
        crd.spec.names.plural = "certificatesigningrequests".into();
        crd.spec.versions[0].additional_printer_columns = None;
        let def = &resources(&crd)[0];
        assert!(!def.is(&crate::registry::CSR));
        let table = crate::table::table(def, &[], &[], None, true, false);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Age"]);
        assert!(crate::query::Selector::fields("spec.signerName=x", def).is_err());
        assert!(crate::query::Selector::fields("spec.signerName=x", &crate::registry::CSR).is_ok());
    }

    #[test]
    fn without_a_status_subresource_any_non_metadata_change_bumps_the_generation() {
        let mut crd = widget_crd();
        crd.spec.versions[0].subresources = None;
        let def = &resources(&crd)[0];
        assert!(!def.has_subresource("status"));
        assert_eq!(def.generation, Generation::OnNonMetadataChange);
    }

    #[test]
    fn a_new_crd_is_established_with_defaulted_names() {
        let mut crd = widget_crd();
        prepare_for_create(&mut crd);
        assert_eq!(crd.spec.names.list_kind.as_deref(), Some("WidgetList"));
        let status = crd.status.unwrap_or_default();
        let types: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(types, ["NamesAccepted", "Established"]);
        assert_eq!(status.stored_versions, Some(vec!["v1".to_string()]));
    }
}
