//! Reading a body: its media type, `apiVersion` and `kind`, and decoding through the resource's
//! model (a k8s-openapi type, or a CRD's schema) with unknown fields pruned or refused.

use serde_json::{Value, json};

use super::Call;
use crate::patch;
use crate::query::Query;
use crate::registry::{Behavior, Model, ResourceDef};
use crate::schema;
use crate::status::{ApiError, ApiResult};

pub(super) fn parse_body(call: &Call) -> ApiResult<Value> {
    let ct = call.header("content-type");
    let base = ct.split(';').next().unwrap_or_default().trim();
    match base {
        "" | "application/json" | "*/*" => patch::parse_body(&call.body, false),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            patch::parse_body(&call.body, true)
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode_csr(&call.body)
            .filter(|obj| obj["kind"] == "CertificateSigningRequest")
            .ok_or_else(|| ApiError::unsupported_media_type(base)),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Default and check `apiVersion`/`kind` of a body against the endpoint.
pub(super) fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let api_version = map
        .entry("apiVersion")
        .or_insert_with(|| json!(def.api_version()))
        .clone();
    let kind = map.entry("kind").or_insert_with(|| json!(def.kind)).clone();
    let (api_version, kind) = (
        api_version.as_str().unwrap_or_default(),
        kind.as_str().unwrap_or_default(),
    );
    if api_version != def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    if kind != def.kind {
        return Err(ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
            def.api_version()
        )));
    }
    if map
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: metadata must be an object",
            def.kind, def.version, def.kind
        )));
    }
    Ok(())
}

/// Decode the body through the resource's model, pruning unknown fields (400 under `fieldValidation=Strict`).
pub(super) fn decode(
    def: &ResourceDef,
    mut obj: Value,
    query: &Query,
) -> ApiResult<(Value, Vec<String>)> {
    check_type_meta(def, &mut obj)?;
    if def.behavior == Behavior::Csr {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("request").or_insert(json!(""));
            spec.entry("signerName").or_insert(json!(""));
        } else if obj.get("spec").is_none_or(Value::is_null) {
            obj["spec"] = json!({"request": "", "signerName": ""});
        }
    }
    let cannot = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            def.kind, def.version, def.kind
        ))
    };
    let mut unknown = Vec::new();
    let normalised = match &def.model {
        Model::Custom { schema, .. } => {
            let mut value = obj.clone();
            if !value.get("metadata").is_some_and(Value::is_object) {
                value["metadata"] = json!({});
            }
            schema::prune(&mut value, schema, "", &mut unknown);
            schema::apply_defaults(&mut value, schema);
            value
        }
        Model::Typed { normalise, .. } => {
            let normalised = normalise(&obj).map_err(|e| cannot(&e))?;
            schema::dropped_fields(&obj, &normalised, "", &mut unknown);
            normalised
        }
    };
    if !unknown.is_empty() && query.get("fieldValidation") == Some("Strict") {
        return Err(ApiError::bad_request(schema::strict_message(&unknown)));
    }
    if let Model::Custom { schema, .. } = &def.model {
        let mut causes = Vec::new();
        let mut checked = normalised.clone();
        if let Some(map) = checked.as_object_mut() {
            // The status is checked only where it is written, and a create drops it.
            map.remove("status");
        }
        schema::validate(&checked, schema, "", &mut causes);
        if !causes.is_empty() {
            let name = normalised
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(ApiError::invalid(def, name, &causes));
        }
    }
    Ok((normalised, unknown))
}
