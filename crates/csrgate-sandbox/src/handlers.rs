//! Resource requests: get, list, create, update, patch, delete, and the CSR subresources.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::csr::{self, UpdatePath};
use crate::events;
use crate::faults::WriteRecord;
use crate::identity::UserInfo;
use crate::managed;
use crate::paging;
use crate::patch::{self, PatchKind};
use crate::query::{Query, Selector};
use crate::registry::{self, Behavior, Generation, Model, ResourceDef, store_key};
use crate::schema;
use crate::server::{App, Resolved};
use crate::signer;
use crate::status::{self, ApiError, ApiResult, Cause};
use crate::store::StoreError;
use crate::table;
use crate::watch::{self, WatchSpec};

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

fn now() -> String {
    crate::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random RFC 4122 version 4 UUID, as `metadata.uid`.
pub(crate) fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i128(crate::now().as_nanosecond());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uid = new_uid();
    uid.bytes()
        .filter(u8::is_ascii_hexdigit)
        .take(5)
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn store_error(def: &ResourceDef, name: &str, err: StoreError) -> ApiError {
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
        None if call.query.flag("watch") => watch_list(&app, &target, &call),
        None => list(&app, &target, &call),
        Some(name) => get(&app, &target, name, &call),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST` on a collection: create.
pub async fn on_post(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match (&target.name, &target.sub) {
        (None, None) => create(&app, &target, &call),
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT` on an object or its subresource: update.
pub async fn on_put(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match &target.name {
        Some(name) => update(&app, &target, name, target.sub.as_deref(), &call),
        None => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PATCH` on an object or its subresource (JSON, merge, strategic merge or apply).
pub async fn on_patch(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match &target.name {
        Some(name) => patch_object(&app, &target, name, target.sub.as_deref(), &call),
        None => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE` on an object, or on a collection (deletecollection).
pub async fn on_delete(State(app): State<Arc<App>>, request: Resolved) -> Response {
    let Resolved { target, call } = request;
    let result = match (&target.name, &target.sub) {
        (Some(name), None) => delete(&app, &target, name, &call),
        (None, None) => delete_collection(&app, &target, &call),
        _ => Err(ApiError::method_not_allowed()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn check_verb(def: &ResourceDef, verb: &str) -> ApiResult<()> {
    if def.verbs.contains(&verb) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn ns_key(target: &Target) -> &str {
    target.namespace.as_deref().unwrap_or_default()
}

fn selectors(def: &ResourceDef, query: &Query) -> ApiResult<(Selector, Selector)> {
    let labels = Selector::labels(query.get("labelSelector").unwrap_or_default())?;
    let fields = Selector::fields(query.get("fieldSelector").unwrap_or_default(), def)?;
    Ok((labels, fields))
}

fn wants_table(call: &Call) -> bool {
    table::wants_table(call.header("accept"))
}

fn list(app: &App, target: &Target, call: &Call) -> ApiResult<Response> {
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

fn watch_list(app: &Arc<App>, target: &Target, call: &Call) -> ApiResult<Response> {
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

fn get(app: &App, target: &Target, name: &str, call: &Call) -> ApiResult<Response> {
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

fn parse_body(call: &Call) -> ApiResult<Value> {
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
fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
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
fn decode(def: &ResourceDef, mut obj: Value, query: &Query) -> ApiResult<(Value, Vec<String>)> {
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

fn warning_headers(mut response: Response, unknown: &[String]) -> Response {
    for field in unknown {
        if let Ok(v) = format!("299 - \"unknown field \\\"{field}\\\"\"").parse() {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn validate_name(def: &ResourceDef, name: &str, obj: &Value) -> Vec<Cause> {
    let field = "metadata.name";
    let value = json!(name);
    match def.behavior {
        Behavior::Csr => {
            if name == "." || name == ".." {
                vec![Cause::invalid(
                    field,
                    &value,
                    &format!("may not be '{name}'"),
                )]
            } else if name.contains('/') || name.contains('%') {
                let bad = if name.contains('/') { "/" } else { "%" };
                vec![Cause::invalid(
                    field,
                    &value,
                    &format!("may not contain '{bad}'"),
                )]
            } else {
                vec![]
            }
        }
        Behavior::Namespace if name.contains('.') || !is_dns_subdomain(name) || name.len() > 63 => {
            vec![Cause::invalid(
                field,
                &value,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            )]
        }
        Behavior::Crd => crate::crd::name_causes(
            name,
            obj.pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            obj.pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        _ if !is_dns_subdomain(name) => vec![Cause::invalid(
            field,
            &value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
        _ => vec![],
    }
}

fn csr_from(value: &Value) -> ApiResult<CertificateSigningRequest> {
    serde_json::from_value(value.clone()).map_err(|e| ApiError::internal(e.to_string()))
}

fn csr_to(csr: &CertificateSigningRequest) -> ApiResult<Value> {
    serde_json::to_value(csr).map_err(|e| ApiError::internal(e.to_string()))
}

fn create(app: &Arc<App>, target: &Target, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "create")?;
    if def.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let (mut obj, unknown) = decode(def, parse_body(call)?, &call.query)?;
    if def.behavior == Behavior::Sar {
        let answer = crate::sar::review(obj, &app.sar_rules);
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let ns = target.namespace.clone().unwrap_or_default();
    if def.namespaced
        && app
            .store
            .get(store_key(&registry::NAMESPACE), "", &ns)
            .is_none()
    {
        return Err(ApiError::not_found(&registry::NAMESPACE, &ns));
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    if def.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = match meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n.to_string(),
        None => match meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(prefix) => format!("{prefix}{}", random_suffix()),
            None => {
                return Err(ApiError::invalid(
                    def,
                    "",
                    &[Cause::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
        },
    };
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("deletionTimestamp");
    meta.remove("managedFields");
    if def.generation != Generation::Absent {
        meta.insert("generation".into(), json!(1));
    }
    let mut causes = validate_name(def, &name, &obj);
    if matches!(def.behavior, Behavior::Custom | Behavior::Crd)
        && def.has_subresource("status")
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    if def.behavior == Behavior::Crd {
        obj = crate::crd::prepare_new(obj)?;
    }
    if def.behavior == Behavior::Csr {
        let mut csr = csr_from(&obj)?;
        csr::prepare_for_create(&mut csr, &call.user);
        causes.extend(csr::validate(&csr, None, UpdatePath::Main));
        if !causes.is_empty() {
            return Err(ApiError::invalid(def, &name, &causes));
        }
        if let Some(why) = csr::subject_restriction(&csr) {
            return Err(ApiError::forbidden(def, &name, &why));
        }
        obj = csr_to(&csr)?;
    } else if !causes.is_empty() {
        return Err(ApiError::invalid(def, &name, &causes));
    }
    if def.behavior == Behavior::Node {
        crate::node::taint_new_node(&mut obj);
    }
    if call.query.get("dryRun") == Some("All") {
        return Ok(warning_headers(
            json_response(StatusCode::CREATED, &obj),
            &unknown,
        ));
    }
    let stored = app
        .store
        .create(store_key(def), &ns, &name, obj)
        .map_err(|e| store_error(def, &name, e))?;
    app.managed.record(None, &stored, &manager(call), None);
    Ok(warning_headers(
        json_response(StatusCode::CREATED, &stored),
        &unknown,
    ))
}

fn check_sub(def: &ResourceDef, sub: Option<&str>) -> ApiResult<()> {
    match sub {
        Some(s) if !def.has_subresource(s) => Err(ApiError::path_not_found()),
        _ => Ok(()),
    }
}

/// The object to store for a write of `body` over `current` through `sub`, with its rules applied.
fn next_state(
    def: &ResourceDef,
    current: &Value,
    body: Value,
    sub: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let mut next = match sub {
        None => {
            let mut next = body;
            if def.has_subresource("status") {
                match current.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            next
        }
        Some(_) => {
            let mut next = current.clone();
            if let Some(rv) = body.pointer("/metadata/resourceVersion") {
                next["metadata"]["resourceVersion"] = rv.clone();
            } else if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            match body.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next
        }
    };
    let rv_given = next
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty());
    // A stale resourceVersion is a 409 before any validation, as kube-apiserver's generic
    // store checks it before `BeforeUpdate` (apiserver/pkg/registry/generic/registry/store.go).
    if rv_given
        && next.pointer("/metadata/resourceVersion") != current.pointer("/metadata/resourceVersion")
    {
        return Err(ApiError::conflict(def, name));
    }
    let meta = next
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for key in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "namespace",
        "name",
    ] {
        match current.pointer(&format!("/metadata/{key}")) {
            Some(v) => meta.insert(key.into(), v.clone()),
            None => meta.remove(key),
        };
    }
    meta.remove("managedFields");
    if !rv_given && let Some(rv) = current.pointer("/metadata/resourceVersion") {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    if generation_moves(def.generation, current, &next) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        next["metadata"]["generation"] = json!(generation);
    }
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

/// The field manager of a call.
fn manager(call: &Call) -> String {
    managed::manager_name(
        call.query.get("fieldManager"),
        call.headers.get("user-agent").and_then(|v| v.to_str().ok()),
    )
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
    if stored.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&stored) {
        // The last finalizer is gone: the pending deletion completes.
        let rv = stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let gone = app
            .store
            .delete(store_key(def), &ns, name, rv)
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

fn record_approval(app: &App, name: &str, before: &Value, stored: &Value, call: &Call) {
    let conditions: Vec<Value> = stored
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c["type"], "status": c["status"], "reason": c["reason"], "message": c["message"]}))
        .collect();
    let before = before
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let added = conditions
        .iter()
        .filter(|c| !before.iter().any(|b| b["type"] == c["type"]))
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect();
    app.faults.record_write(WriteRecord {
        csr: name.to_string(),
        added,
        conditions,
        user: call.user.username.clone(),
        user_agent: call
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        time: now(),
        resource_version: stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    });
}

/// Play the signer for one CSR: issue a certificate, or add `Failed` where the real signer refuses.
pub fn sign(app: &App, name: &str) {
    let result = app
        .store
        .update::<ApiError>(store_key(&registry::CSR), "", name, |current| {
            let mut csr = csr_from(current)?;
            let approved = csr::has_condition(&csr, "Approved");
            let done = csr::has_condition(&csr, "Denied")
                || csr::has_condition(&csr, "Failed")
                || csr
                    .status
                    .as_ref()
                    .is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
            if !approved || done || !signer::signs(&csr.spec.signer_name, &app.sign_signers) {
                return Ok(None);
            }
            let refusal = signer::refusal(&csr);
            let request = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
            let usages = csr.spec.usages.clone().unwrap_or_default();
            let expiration = csr.spec.expiration_seconds;
            let status = csr.status.get_or_insert_with(Default::default);
            let failed = |message: String| CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(message),
                last_update_time: Some(Time(crate::now())),
                last_transition_time: Some(Time(crate::now())),
            };
            match refusal {
                Some(why) => status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(failed(why)),
                None => match app.ca.issue(&request, &usages, expiration) {
                    Ok(pem) => status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes())),
                    Err(e) => {
                        let why = match std::error::Error::source(&e) {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        };
                        status
                            .conditions
                            .get_or_insert_with(Vec::new)
                            .push(failed(why));
                    }
                },
            }
            let mut next = csr_to(&csr)?;
            if let Some(m) = next["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(Some(next))
        });
    if let Err(e) = result {
        tracing::warn!(csr = name, error = %e.message, "signing failed");
    }
}

fn update(
    app: &Arc<App>,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    call: &Call,
) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "update")?;
    check_sub(def, sub)?;
    let (obj, unknown) = decode(def, parse_body(call)?, &call.query)?;
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let stored = write(app, target, name, obj, call, None)?;
    Ok(warning_headers(
        json_response(StatusCode::OK, &stored),
        &unknown,
    ))
}

fn patch_object(
    app: &Arc<App>,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    call: &Call,
) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "patch")?;
    check_sub(def, sub)?;
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
                let body = patch::parse_body(&call.body, true)?;
                let create_call = Call {
                    query: call.query.clone(),
                    headers: HeaderMap::new(),
                    body: Bytes::from(body.to_string()),
                    user: call.user.clone(),
                };
                let created = create(
                    app,
                    &Target {
                        name: None,
                        ..target.clone()
                    },
                    &create_call,
                )?;
                return Ok(created);
            }
            return Err(ApiError::not_found(def, name));
        };
        let applied = if kind == PatchKind::Apply {
            let body = patch::parse_body(&call.body, true)?;
            if !call.query.flag("force")
                && let Some(conflict) =
                    app.managed
                        .apply_conflicts(def, name, &current, &body, &manager(call))
            {
                return Err(conflict);
            }
            Some(body)
        } else {
            None
        };
        let patched = patch::apply(kind, &current, &call.body)?;
        let (obj, unknown) = decode(def, patched, &call.query)?;
        if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )));
        }
        let precondition = obj.pointer("/metadata/resourceVersion")
            != current.pointer("/metadata/resourceVersion");
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

fn delete(app: &App, target: &Target, name: &str, call: &Call) -> ApiResult<Response> {
    let def = &target.def;
    check_verb(def, "delete")?;
    let options: Value = if call.body.is_empty() {
        Value::Null
    } else {
        patch::parse_body(&call.body, false)?
    };
    let rv = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str);
    let ns = ns_key(target);
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
    {
        let current = app
            .store
            .get(store_key(def), ns, name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
            return Err(ApiError::conflict(def, name));
        }
    }
    let current = app
        .store
        .get(store_key(def), ns, name)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    if has_finalizers(&current) {
        // Graceful deletion: mark the object and wait for its finalizers to be removed.
        if rv.is_some_and(|rv| {
            current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(rv)
        }) {
            return Err(ApiError::conflict(def, name));
        }
        let outcome = app
            .store
            .update::<ApiError>(store_key(def), ns, name, |cur| {
                if cur.pointer("/metadata/deletionTimestamp").is_some() {
                    return Ok(None);
                }
                let mut next = cur.clone();
                next["metadata"]["deletionTimestamp"] = json!(now());
                next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
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
    let uid = gone
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &status::success(def, name, uid),
    ))
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn delete_collection(app: &App, target: &Target, call: &Call) -> ApiResult<Response> {
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
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Ok(gone) = app.store.delete(store_key(def), ns, name, None) {
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
