//! An object's `metadata`, read and written as k8s-openapi's typed `ObjectMeta` (fields it does not
//! know are dropped, as kube-apiserver drops them).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::status::{ApiError, ApiResult};

/// The `metadata` of `obj` (absent reads as empty).
///
/// # Errors
/// 400 when it is not an `ObjectMeta` (not an object, or a field of the wrong type).
pub(super) fn object_meta(obj: &Value) -> ApiResult<ObjectMeta> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(ObjectMeta::default()),
        Some(meta) => serde_json::from_value(meta.clone())
            .map_err(|e| ApiError::bad_request(format!("metadata: {e}"))),
    }
}

/// Replace the `metadata` of `obj` with `meta`.
///
/// # Errors
/// 400 when `obj` is not a JSON object.
pub(super) fn set_object_meta(obj: &mut Value, meta: &ObjectMeta) -> ApiResult<()> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request must be a JSON object"))?;
    let meta = serde_json::to_value(meta).map_err(|e| ApiError::internal(e.to_string()))?;
    map.insert(
        "metadata".into(),
        if meta.is_null() { json!({}) } else { meta },
    );
    Ok(())
}

/// Whether the object still has finalizers (so a delete only marks it).
pub(super) fn has_finalizers(meta: &ObjectMeta) -> bool {
    meta.finalizers.as_ref().is_some_and(|f| !f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_the_typed_struct_and_bad_metadata_is_a_bad_request() {
        let mut obj =
            json!({"kind": "X", "metadata": {"name": "a", "labels": {"k": "v"}, "bogus": 1}});
        let mut meta = object_meta(&obj).unwrap_or_default();
        assert_eq!(meta.name.as_deref(), Some("a"));
        meta.generation = Some(2);
        set_object_meta(&mut obj, &meta).unwrap_or_default();
        assert_eq!(
            obj,
            json!({"kind": "X", "metadata": {"name": "a", "labels": {"k": "v"}, "generation": 2}})
        );
        let err = object_meta(&json!({"metadata": {"labels": 5}})).err();
        assert_eq!(err.map(|e| e.code), Some(400));
        assert!(!has_finalizers(&ObjectMeta::default()));
    }
}
