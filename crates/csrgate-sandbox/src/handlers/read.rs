//! Reads: list (pages, selectors, Tables), watch, and get.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Target, check_verb, json_response, ns_key, selectors, wants_table};
use crate::events;
use crate::paging;
use crate::registry::store_key;
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::table;
use crate::watch::{self, WatchSpec};

pub(super) fn list(app: &App, target: &Target, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "list")?;
    let (labels, fields) = selectors(def, &call.query)?;
    let (items, rv) = app.store.list(store_key(def), target.namespace.as_deref());
    let items: Vec<Value> = items
        .iter()
        .map(|o| events::present(def, o))
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(def, o))
        .collect();
    let page = paging::page(items, rv, &call.query)?;
    let rv = page.resource_version.to_string();
    let mut body = if wants_table(call) {
        let include = call.query.get("includeObject") == Some("Object");
        table::table(
            def,
            def.printer_columns(),
            &page.items,
            Some(rv),
            true,
            include,
        )
    } else {
        json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": rv},
            "items": page.items,
        })
    };
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(token) = page.continue_token {
            metadata.insert("continue".into(), json!(token));
        }
        if let Some(remaining) = page.remaining_item_count {
            metadata.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub(super) fn watch_list(app: &Arc<App>, target: &Target, call: &Call) -> ApiResult<Response> {
    check_verb(&target.def, "watch")?;
    let (labels, fields) = selectors(&target.def, &call.query)?;
    let spec = WatchSpec {
        def: target.def.clone(),
        namespace: target.namespace.clone(),
        labels,
        fields,
        table: wants_table(call),
        include_object: call.query.get("includeObject") == Some("Object"),
    };
    watch::watch(app.clone(), spec, &call.query)
}

pub(super) fn get(app: &App, target: &Target, name: &str, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "get")?;
    if let Some(sub) = &target.sub
        && !def.has_subresource(sub)
    {
        return Err(ApiError::path_not_found());
    }
    let obj = app
        .store
        .get(store_key(def), ns_key(target), name)
        .map(|o| events::present(def, &o))
        .ok_or_else(|| ApiError::not_found(def, name))?;
    if wants_table(call) {
        let include = call.query.get("includeObject") == Some("Object");
        return Ok(json_response(
            StatusCode::OK,
            &table::table(def, def.printer_columns(), &[obj], None, true, include),
        ));
    }
    Ok(json_response(StatusCode::OK, &obj))
}
