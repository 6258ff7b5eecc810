//! OpenAPI v3: the index and one document per group/version, with real schemas and the `fieldValidation`
//! parameter on `patch`, so kubectl leaves validation to the server.

use std::hash::{Hash, Hasher};

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::registry::{self, Model, ResourceDef};

fn hash_of(text: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016X}", h.finish())
}

fn add_schemas(def: &ResourceDef, components: &mut Map<String, Value>) {
    match &def.model {
        Model::Typed { schemas, .. } => schemas(components),
        Model::Custom { schema, .. } => {
            let mut schema = schema.clone();
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props
                    .entry("apiVersion")
                    .or_insert(json!({"type": "string"}));
                props.entry("kind").or_insert(json!({"type": "string"}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
            components.insert(def.schema_name.clone(), schema);
        }
    }
    if let Some(schema) = components
        .get_mut(&def.schema_name)
        .and_then(Value::as_object_mut)
    {
        schema.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": def.group, "version": def.version, "kind": def.kind}]),
        );
    }
}

fn param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(def: &ResourceDef, action: &str, schema_ref: &Value, extra_params: &[Value]) -> Value {
    let mut parameters = vec![param(
        "dryRun",
        "When present, indicates that modifications should not be persisted.",
    )];
    parameters.extend_from_slice(extra_params);
    json!({
        "operationId": format!("{action}{}", def.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": def.group, "version": def.version, "kind": def.kind},
    })
}

/// The paths of one resource: its collection (list, and create when allowed) and its items (get,
/// put, patch with `fieldValidation`, delete) under `base` (`/api/v1`, `/apis/<group>/<version>`).
fn add_paths(def: &ResourceDef, base: &str, paths: &mut Map<String, Value>) {
    let schema_ref = json!({"$ref": format!("#/components/schemas/{}", def.schema_name)});
    let scope = if def.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let validation = param(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
    );
    let manager = param(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    );
    let writes = [validation, manager];
    let collection = format!("{base}{scope}/{}", def.plural);
    let mut ops = Map::new();
    ops.insert("get".into(), operation(def, "list", &schema_ref, &[]));
    if def.verbs.contains(&"create") {
        ops.insert("post".into(), operation(def, "post", &schema_ref, &writes));
    }
    paths.insert(collection.clone(), Value::Object(ops));
    if def.verbs.contains(&"get") {
        let mut item = Map::new();
        item.insert("get".into(), operation(def, "get", &schema_ref, &[]));
        item.insert("put".into(), operation(def, "put", &schema_ref, &writes));
        let mut patch_params = writes.to_vec();
        patch_params.push(param(
            "force",
            "Force is going to \"force\" Apply requests.",
        ));
        item.insert(
            "patch".into(),
            operation(def, "patch", &schema_ref, &patch_params),
        );
        item.insert("delete".into(), operation(def, "delete", &schema_ref, &[]));
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));
    }
}

/// The OpenAPI v3 document of one group/version, if one of `defs` is in it.
pub fn document(defs: &[Arc<ResourceDef>], group: &str, version: &str) -> Option<Value> {
    let defs = registry::in_group_version(defs, group, version);
    if defs.is_empty() {
        return None;
    }
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut components = Map::new();
    let mut paths = Map::new();
    for def in defs {
        add_schemas(def, &mut components);
        add_paths(def, &base, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": components},
    }))
}

/// The `/openapi/v3` index, pointing at each group/version document with a hash of its content.
pub fn index(defs: &[Arc<ResourceDef>]) -> Value {
    let mut paths = Map::new();
    for (g, v) in registry::group_versions(defs) {
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let text = document(defs, g, v)
            .map(|d| d.to_string())
            .unwrap_or_default();
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash_of(&text))}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csr_document_has_a_patch_operation_with_field_validation() {
        let defs = registry::served(&crate::store::Store::new(10));
        let doc = document(&defs, "certificates.k8s.io", "v1").unwrap_or_default();
        let patch = &doc["paths"]["/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"]
            ["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "CertificateSigningRequest"
        );
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        let schema =
            &doc["components"]["schemas"]["io.k8s.api.certificates.v1.CertificateSigningRequest"];
        assert!(schema["properties"]["spec"].is_object(), "{schema}");
    }
}
