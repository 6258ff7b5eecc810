//! Updates and patches: the object to store for a write through the main resource or a
//! subresource (what each may change, resourceVersion preconditions, generation), and storing it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::create::create;
use super::decode::{decode, parse_body};
use super::meta::{has_finalizers, object_meta, set_object_meta};
use super::signing::{csr_from, csr_to, record_approval, sign};
use super::{
    Call, Target, check_sub, check_verb, json_response, manager, ns_key, store_error,
    warning_headers,
};
use crate::csr::{self, UpdatePath};
use crate::events;
use crate::patch::{self, PatchKind};
use crate::registry::{Behavior, Generation, ResourceDef, store_key};
use crate::server::{App, Resolved};
use crate::status::{ApiError, ApiResult};

/// The status a write through `sub` leaves: the main resource keeps the current status when status
/// is a subresource; a subresource write takes the body's status and nothing else.
fn merge_status(def: &ResourceDef, current: &Value, body: Value, sub: Option<&str>) -> Value {
    let (mut next, status) = match sub {
        None if def.has_subresource("status") => (body, current.get("status").cloned()),
        None => return body,
        Some(_) => (current.clone(), body.get("status").cloned()),
    };
    if let Some(map) = next.as_object_mut() {
        match status {
            Some(s) => map.insert("status".into(), s),
            None => map.remove("status"),
        };
    }
    next
}

/// The object to store for a write of `body` over `current` through `sub`, with its rules applied.
///
/// # Errors
/// 409 for a stale resourceVersion (before any validation, as kube-apiserver's generic store checks
/// it before `BeforeUpdate`, apiserver/pkg/registry/generic/registry/store.go); 422 from the CSR rules.
pub(super) fn next_state(
    def: &ResourceDef,
    current: &Value,
    body: Value,
    sub: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let given_rv = object_meta(&body)?
        .resource_version
        .filter(|rv| !rv.is_empty());
    let current_meta = object_meta(current)?;
    if given_rv.is_some() && given_rv != current_meta.resource_version {
        return Err(ApiError::conflict(def, name));
    }
    let mut next = merge_status(def, current, body, sub);
    let mut meta = match sub {
        None => object_meta(&next)?,
        Some(_) => current_meta.clone(),
    };
    // What only the server sets is kept from the stored object.
    meta.uid.clone_from(&current_meta.uid);
    meta.creation_timestamp
        .clone_from(&current_meta.creation_timestamp);
    meta.generation = current_meta.generation;
    meta.deletion_timestamp
        .clone_from(&current_meta.deletion_timestamp);
    meta.namespace.clone_from(&current_meta.namespace);
    meta.name.clone_from(&current_meta.name);
    meta.managed_fields = None;
    meta.resource_version = given_rv.or(current_meta.resource_version);
    if generation_moves(def.generation, current, &next) {
        meta.generation = Some(current_meta.generation.unwrap_or(0) + 1);
    }
    set_object_meta(&mut next, &meta)?;
    if def.behavior == Behavior::Csr {
        let old = csr_from(current)?;
        let mut csr = csr_from(&next)?;
        let path = match sub {
            None => UpdatePath::Main,
            Some("approval") => UpdatePath::Approval,
            Some(_) => UpdatePath::Status,
        };
        csr::prepare_for_update(&mut csr, &old, path);
        let causes = csr::validate(&csr, Some(&old), path);
        if !causes.is_empty() {
            return Err(ApiError::invalid(def, name, &causes));
        }
        next = csr_to(&csr)?;
    }
    Ok(next)
}

/// Whether a write of `next` over `current` bumps `metadata.generation`.
fn generation_moves(rule: Generation, current: &Value, next: &Value) -> bool {
    let without_metadata = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
        }
        v
    };
    match rule {
        Generation::Absent => false,
        Generation::OnSpecChange => next.get("spec") != current.get("spec"),
        Generation::OnNonMetadataChange => without_metadata(next) != without_metadata(current),
    }
}

/// Store `body` over the current object through the target's path; `applied` is the body of a
/// server-side apply, whose fields the manager then owns.
fn write(
    app: &Arc<App>,
    target: &Target,
    name: &str,
    body: Value,
    call: &Call,
    applied: Option<&Value>,
) -> ApiResult<Value> {
    let def = &target.def;
    let sub = target.sub.as_deref();
    let ns = ns_key(target).to_string();
    let mut before = Value::Null;
    let outcome = app.store.update(store_key(def), &ns, name, |current| {
        let current = &events::present(def, current);
        before = current.clone();
        next_state(def, current, body, sub, name).map(Some)
    })?;
    let stored = outcome.map_err(|e| store_error(def, name, e))?;
    let meta = object_meta(&stored)?;
    if meta.deletion_timestamp.is_some() && !has_finalizers(&meta) {
        // The last finalizer is gone: the pending deletion completes.
        let gone = app
            .store
            .delete(store_key(def), &ns, name, meta.resource_version.as_deref())
            .map_err(|e| store_error(def, name, e))?;
        app.managed.forget(&gone);
        return Ok(gone);
    }
    app.managed
        .record(Some(&before), &stored, &manager(call), applied);
    if def.behavior == Behavior::Csr {
        if sub == Some("approval") {
            record_approval(app, name, &before, &stored, call);
        }
        let app = app.clone();
        let name = name.to_string();
        tokio::spawn(async move { sign(&app, &name) });
    }
    Ok(stored)
}

/// The resource of a write through `verb`, once the verb and the subresource are known served.
fn writable<'a>(target: &'a Target, verb: &str) -> ApiResult<&'a ResourceDef> {
    check_verb(&target.def, verb)?;
    check_sub(&target.def, target.sub.as_deref())?;
    Ok(&target.def)
}

/// 400 unless the body names the object the URL names.
fn check_name(meta: &ObjectMeta, name: &str) -> ApiResult<()> {
    let body_name = meta.name.as_deref().unwrap_or_default();
    if body_name == name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )))
    }
}

/// `PUT` on an object or its subresource.
pub(super) fn update(app: &Arc<App>, request: &Resolved, name: &str) -> ApiResult<Response> {
    let (target, call) = (&request.target, &request.call);
    let def = writable(target, "update")?;
    let (obj, unknown) = decode(def, parse_body(call)?, &call.query)?;
    check_name(&object_meta(&obj)?, name)?;
    let stored = write(app, target, name, obj, call, None)?;
    Ok(warning_headers(
        json_response(StatusCode::OK, &stored),
        &unknown,
    ))
}

/// A server-side apply of an object that does not exist creates it, as kube-apiserver does.
fn apply_creates(app: &Arc<App>, target: &Target, call: &Call) -> ApiResult<Response> {
    let body = patch::parse_body(&call.body, true)?;
    let create_call = Call {
        query: call.query.clone(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
        user: call.user.clone(),
    };
    let collection = Target {
        name: None,
        ..target.clone()
    };
    create(app, &collection, &create_call)
}

/// The body of a server-side apply, refused (409) when it changes fields another manager owns,
/// unless `force`; `None` for the other patch kinds.
fn applied_body(
    app: &App,
    def: &ResourceDef,
    name: &str,
    current: &Value,
    kind: PatchKind,
    call: &Call,
) -> ApiResult<Option<Value>> {
    if kind != PatchKind::Apply {
        return Ok(None);
    }
    let body = patch::parse_body(&call.body, true)?;
    if !call.query.flag("force")
        && let Some(conflict) =
            app.managed
                .apply_conflicts(def, name, current, &body, &manager(call))
    {
        return Err(conflict);
    }
    Ok(Some(body))
}

/// `PATCH` on an object or its subresource; a conflict with a concurrent write is retried (up to 5
/// times) unless the patch itself names a resourceVersion.
pub(super) fn patch_object(app: &Arc<App>, request: &Resolved, name: &str) -> ApiResult<Response> {
    let (target, call) = (&request.target, &request.call);
    let (def, sub) = (writable(target, "patch")?, target.sub.as_deref());
    let kind = PatchKind::from_content_type(call.header("content-type"))?;
    if kind == PatchKind::Apply && call.query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let ns = ns_key(target).to_string();
    for _ in 0..5 {
        let Some(current) = app
            .store
            .get(store_key(def), &ns, name)
            .map(|o| events::present(def, &o))
        else {
            if kind == PatchKind::Apply && sub.is_none() {
                return apply_creates(app, target, call);
            }
            return Err(ApiError::not_found(def, name));
        };
        let applied = applied_body(app, def, name, &current, kind, call)?;
        let patched = patch::apply(kind, &current, &call.body)?;
        let (obj, unknown) = decode(def, patched, &call.query)?;
        let meta = object_meta(&obj)?;
        check_name(&meta, name)?;
        // A resourceVersion the patch sets is a precondition; otherwise a conflict is retried.
        let precondition = meta.resource_version != object_meta(&current)?.resource_version;
        match write(app, target, name, obj, call, applied.as_ref()) {
            Err(e) if e.reason == "Conflict" && !precondition => continue,
            Err(e) => return Err(e),
            Ok(stored) => {
                return Ok(warning_headers(
                    json_response(StatusCode::OK, &stored),
                    &unknown,
                ));
            }
        }
    }
    Err(ApiError::conflict(def, name))
}
