//! Resource requests: the verbs (`on_get` ... `on_delete`, routed by [`crate::server::router`]) and
//! what they share. Reads, decoding, create, update and patch, delete, and the CSR signer each have a
//! file of their own.

mod create;
mod decode;
mod delete;
mod meta;
mod read;
mod signing;
#[cfg(test)]
mod tests;
mod update;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::identity::UserInfo;
use crate::managed;
use crate::query::{Query, Selector};
use crate::registry::ResourceDef;
use crate::server::{App, Resolved};
use crate::status::{ApiError, ApiResult};
use crate::store::StoreError;
use crate::table;

pub(crate) use create::new_uid;

/// A parsed resource URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub def: Arc<ResourceDef>,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// Subresource from the URL.
    pub sub: Option<String>,
}

/// Everything a handler needs from the request.
pub struct Call {
    /// Query parameters.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Authenticated caller.
    pub user: UserInfo,
}

impl Call {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

pub(super) fn now() -> String {
    crate::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn store_error(def: &ResourceDef, name: &str, err: StoreError) -> ApiError {
    match err {
        StoreError::AlreadyExists => ApiError::already_exists(def, name),
        StoreError::NotFound => ApiError::not_found(def, name),
        StoreError::Conflict => ApiError::conflict(def, name),
    }
}

/// `GET`: a watch or list of the collection, or one object (or its subresource).
pub async fn on_get(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match &target.name {
        None if call.query.flag("watch") => read::watch_list(&app, &target, &call),
        None => read::list(&app, &target, &call),
        Some(name) => read::get(&app, &target, name, &call),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST` on a collection: create.
pub async fn on_post(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match (&target.name, &target.sub) {
        (None, None) => create::create(&app, &target, &call),
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT` on an object or its subresource: update.
pub async fn on_put(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let result = match &request.target.name {
        Some(name) => update::update(&app, &request, name),
        None => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PATCH` on an object or its subresource (JSON, merge, strategic merge or apply).
pub async fn on_patch(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let result = match &request.target.name {
        Some(name) => update::patch_object(&app, &request, name),
        None => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE` on an object, or on a collection (deletecollection).
pub async fn on_delete(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match (&target.name, &target.sub) {
        (Some(name), None) => delete::delete(&app, &target, name, &call),
        (None, None) => delete::delete_collection(&app, &target, &call),
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn check_verb(def: &ResourceDef, verb: &str) -> ApiResult<()> {
    if def.verbs.contains(&verb) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

pub(super) fn ns_key(target: &Target) -> &str {
    target.namespace.as_deref().unwrap_or_default()
}

pub(super) fn selectors(def: &ResourceDef, query: &Query) -> ApiResult<(Selector, Selector)> {
    let labels = Selector::labels(query.get("labelSelector").unwrap_or_default())?;
    let fields = Selector::fields(query.get("fieldSelector").unwrap_or_default(), def)?;
    Ok((labels, fields))
}

pub(super) fn wants_table(call: &Call) -> bool {
    table::wants_table(call.header("accept"))
}

pub(super) fn check_sub(def: &ResourceDef, sub: Option<&str>) -> ApiResult<()> {
    match sub {
        Some(s) if !def.has_subresource(s) => Err(ApiError::path_not_found()),
        _ => Ok(()),
    }
}

pub(super) fn warning_headers(mut response: Response, unknown: &[String]) -> Response {
    for field in unknown {
        if let Ok(v) = format!("299 - \"unknown field \\\"{field}\\\"\"").parse() {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// The field manager of a call.
pub(super) fn manager(call: &Call) -> String {
    managed::manager_name(
        call.query.get("fieldManager"),
        call.headers.get("user-agent").and_then(|v| v.to_str().ok()),
    )
}
