//! Kubernetes `Status` error bodies (metav1.Status) with the codes and reasons the real API server uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::ResourceDef;

/// One field error, as `field.Error` renders it into `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// The field path, e.g. `spec.usages[0]`.
    pub field: String,
    /// The rendered message without the field path.
    pub message: String,
}

impl Cause {
    /// `field.Invalid`: a value that breaks a rule.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {detail}"),
        }
    }

    /// `field.Required`: a value that must be present.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    /// `field.NotSupported`: a value outside an enumeration.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {value:?}: supported values: {list}"),
        }
    }

    /// `field.Duplicate`: a repeated value.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value:?}"),
        }
    }

    /// `field.Forbidden`: a change that is not allowed.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// `field.TooLong`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field.TooMany`: a list longer than allowed.
    pub fn too_many(field: impl Into<String>, got: usize, max: usize) -> Self {
        Self {
            reason: "FieldValueTooMany",
            field: field.into(),
            message: format!("Too many: {got}: must have at most {max} items"),
        }
    }

    fn rendered(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// An API error answered as a `Status` object; every handler failure ends here.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `Invalid`, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the real server fills it.
    pub details: Option<Value>,
}

/// Result of a request handler step.
pub type ApiResult<T> = Result<T, ApiError>;

fn qualified(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        def.plural.to_string()
    } else {
        format!("{}.{}", def.plural, def.group)
    }
}

fn details(def: &ResourceDef, name: &str) -> Value {
    json!({"name": name, "group": def.group, "kind": def.plural})
}

impl ApiError {
    /// A bare error with a code, reason and message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for a named object.
    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self {
            details: Some(details(def, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", qualified(def)),
            )
        }
    }

    /// 404 for a path no resource serves.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self {
            details: Some(details(def, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", qualified(def)),
            )
        }
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self {
            details: Some(details(def, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    qualified(def)
                ),
            )
        }
    }

    /// 422 Invalid with field causes.
    pub fn invalid(def: &ResourceDef, name: &str, causes: &[Cause]) -> Self {
        let list = if causes.len() == 1 {
            causes[0].rendered()
        } else {
            format!(
                "[{}]",
                causes
                    .iter()
                    .map(Cause::rendered)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let group_kind = if def.group.is_empty() {
            def.kind.to_string()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self {
            details: Some(
                json!({"name": name, "group": def.group, "kind": def.kind, "causes": causes}),
            ),
            ..Self::new(
                422,
                "Invalid",
                format!("{group_kind} {name:?} is invalid: {list}"),
            )
        }
    }

    /// 403 Forbidden from an admission plugin or authorization.
    pub fn forbidden(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(def, name)),
            ..Self::new(
                403,
                "Forbidden",
                format!("{} {name:?} is forbidden: {why}", qualified(def)),
            )
        }
    }

    /// 405 MethodNotAllowed for a verb a resource does not support.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 410 Gone (reason Expired) for a watch or list from a compacted resourceVersion.
    pub fn gone(rv: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType for an unknown patch type or body format.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )
    }

    /// 401 Unauthorized when no known credential was presented.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// A success `Status`, as DELETE answers for objects removed at once.
pub fn success(def: &ResourceDef, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": def.group, "kind": def.plural, "uid": uid},
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [("content-type", "application/json")],
            self.to_status().to_string(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::CSR;

    #[test]
    fn invalid_with_two_causes_lists_both_in_brackets() {
        let err = ApiError::invalid(
            &CSR,
            "x",
            &[
                Cause::required("spec.usages", ""),
                Cause::duplicate("spec.usages[1]", "a"),
            ],
        );
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "CertificateSigningRequest.certificates.k8s.io \"x\" is invalid: [spec.usages: Required value, spec.usages[1]: Duplicate value: \"a\"]"
        );
        assert_eq!(
            err.to_status()["details"]["causes"][1]["reason"],
            "FieldValueDuplicate"
        );
    }
}
