//! PATCH bodies: JSON merge patch, JSON patch, strategic merge (as merge) and server-side apply (as merge).

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// The patch type named by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`; applied as a merge patch with the `$` directives dropped.
    Strategic,
    /// `application/apply-patch+yaml`; server-side apply, approximated by a merge that creates when absent.
    Apply,
}

impl PatchKind {
    /// The patch kind for a Content-Type.
    ///
    /// # Errors
    /// 415 UnsupportedMediaType for any other type.
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Parse a JSON or YAML body into a value.
///
/// # Errors
/// 400 BadRequest with the parser's message.
pub fn parse_body(body: &[u8], yaml: bool) -> ApiResult<Value> {
    if yaml {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("yaml: invalid UTF-8: {e}")))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// Apply a patch body to `current` and return the patched object.
///
/// # Errors
/// 400 for a body that does not parse, 422 for a JSON patch that does not apply.
pub fn apply(kind: PatchKind, current: &Value, body: &[u8]) -> ApiResult<Value> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
        }
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            let mut patch = parse_body(body, kind == PatchKind::Apply)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the patch body must be a JSON object",
                ));
            }
            if kind == PatchKind::Strategic {
                strip_directives(&mut patch);
            }
            json_patch::merge(&mut doc, &patch);
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_directives_are_ignored() {
        let current = json!({"a": {"b": 1, "c": 2}});
        let patched = apply(
            PatchKind::Strategic,
            &current,
            br#"{"a":{"b":3,"$retainKeys":["b"]}}"#,
        );
        assert_eq!(patched, Ok(json!({"a": {"b": 3, "c": 2}})));
    }

    #[test]
    fn a_json_patch_on_a_missing_path_is_unprocessable() {
        let patched = apply(
            PatchKind::Json,
            &json!({}),
            br#"[{"op":"replace","path":"/x/y","value":1}]"#,
        );
        assert_eq!(patched.err().map(|e| e.code), Some(422));
    }

    #[test]
    fn an_unknown_patch_type_is_unsupported() {
        assert_eq!(
            PatchKind::from_content_type("text/plain")
                .err()
                .map(|e| e.code),
            Some(415)
        );
    }
}
