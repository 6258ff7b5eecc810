//! Deletes: one object (with `DeleteOptions` preconditions, and graceful deletion while finalizers
//! remain) and deletecollection.

use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Time};
use serde_json::{Value, json};

use super::meta::{has_finalizers, object_meta, set_object_meta};
use super::{Call, Target, check_verb, json_response, ns_key, selectors, store_error};
use crate::events;
use crate::patch;
use crate::registry::{self, Behavior, store_key};
use crate::server::App;
use crate::status::{self, ApiError, ApiResult};

/// The `DeleteOptions` of a delete; no body means none.
fn options(call: &Call) -> ApiResult<DeleteOptions> {
    if call.body.is_empty() {
        return Ok(DeleteOptions::default());
    }
    serde_json::from_value(patch::parse_body(&call.body, false)?)
        .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))
}

/// `DELETE` on an object: 409 when a precondition (uid, resourceVersion) does not hold; an object with
/// finalizers is only marked (`deletionTimestamp`) and goes when its last finalizer is removed.
pub(super) fn delete(app: &App, target: &Target, name: &str, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "delete")?;
    let preconditions = options(call)?.preconditions.unwrap_or_default();
    let rv = preconditions.resource_version.as_deref();
    let ns = ns_key(target);
    let current = app
        .store
        .get(store_key(def), ns, name)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    let meta = object_meta(&current)?;
    if preconditions.uid.is_some() && preconditions.uid != meta.uid {
        return Err(ApiError::conflict(def, name));
    }
    if has_finalizers(&meta) {
        // Graceful deletion: mark the object and wait for its finalizers to be removed.
        if rv.is_some_and(|rv| meta.resource_version.as_deref() != Some(rv)) {
            return Err(ApiError::conflict(def, name));
        }
        let outcome = app
            .store
            .update::<ApiError>(store_key(def), ns, name, |cur| {
                let mut meta = object_meta(cur)?;
                if meta.deletion_timestamp.is_some() {
                    return Ok(None);
                }
                meta.deletion_timestamp = Some(Time(crate::now()));
                meta.deletion_grace_period_seconds = Some(0);
                let mut next = cur.clone();
                set_object_meta(&mut next, &meta)?;
                Ok(Some(next))
            })?;
        let marked = outcome.map_err(|e| store_error(def, name, e))?;
        return Ok(json_response(StatusCode::OK, &marked));
    }
    let gone = app
        .store
        .delete(store_key(def), ns, name, rv)
        .map_err(|e| store_error(def, name, e))?;
    app.managed.forget(&gone);
    if def.behavior == Behavior::Crd {
        delete_custom_resources(app, &gone);
    }
    let uid = object_meta(&gone)?.uid.unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &status::success(def, name, &uid),
    ))
}

/// The objects of a deleted CRD go with it, as apiextensions-apiserver's
/// `customresourcecleanup` finalizer removes them before the CRD itself.
fn delete_custom_resources(app: &App, crd: &Value) {
    let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(crd.clone()) else {
        return;
    };
    let key = registry::key_of(&crd.spec.group, &crd.spec.names.plural);
    let (objects, _) = app.store.list(&key, None);
    for obj in objects {
        let Ok(meta) = object_meta(&obj) else {
            continue;
        };
        let (ns, name) = (
            meta.namespace.unwrap_or_default(),
            meta.name.unwrap_or_default(),
        );
        if let Ok(gone) = app.store.delete(&key, &ns, &name, None) {
            app.managed.forget(&gone);
        }
    }
}

/// `DELETE` on a collection: every object the selectors match, returned as a list.
pub(super) fn delete_collection(app: &App, target: &Target, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "deletecollection")?;
    let (labels, fields) = selectors(def, &call.query)?;
    let (items, _) = app.store.list(store_key(def), target.namespace.as_deref());
    let mut deleted = Vec::new();
    for item in items
        .iter()
        .map(|o| events::present(def, o))
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(def, o))
    {
        let meta = object_meta(&item)?;
        let ns = meta.namespace.unwrap_or_default();
        let name = meta.name.unwrap_or_default();
        if let Ok(gone) = app.store.delete(store_key(def), &ns, &name, None) {
            app.managed.forget(&gone);
            deleted.push(gone);
        }
    }
    let list = json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": app.store.current_rv().to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}
