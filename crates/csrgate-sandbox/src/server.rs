//! The HTTP side: connection handling (so restarts can drop connections), the routes (an axum
//! [`Router`]), reading a resource request (target, caller, body) and fault injection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::faults::Faults;
use crate::handlers::{self, Call, Target, json_response};
use crate::identity;
use crate::query::Query;
use crate::registry;
use crate::sar::SarRule;
use crate::signer::Ca;
use crate::status::ApiError;
use crate::store::Store;
use crate::{admin, discovery, openapi};

/// The largest request body accepted, as the real API server's limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of a running sandbox.
pub struct App {
    /// The objects.
    pub store: Arc<Store>,
    /// Fault injection and the write log.
    pub faults: Faults,
    /// The CA that signs approved CSRs.
    pub ca: Ca,
    /// The admin bearer token.
    pub token: String,
    /// Non-`kubernetes.io` signers the sandbox plays.
    pub sign_signers: Vec<String>,
    /// SubjectAccessReview rules.
    pub sar_rules: Vec<SarRule>,
    /// Period of watch bookmarks.
    pub bookmark_interval: Duration,
    /// The bound address.
    pub addr: SocketAddr,
    /// Field ownership for server-side apply.
    pub managed: crate::managed::Managed,
}

/// A sandbox's state without a listener, for the routes' unit tests.
#[cfg(test)]
pub(crate) fn test_app() -> Arc<App> {
    let store = Arc::new(Store::new(100));
    Arc::new(App {
        faults: Faults::new(store.clone()),
        store,
        ca: Ca::generate().unwrap_or_else(|e| panic!("a test CA: {e}")),
        token: "test-token".into(),
        sign_signers: Vec::new(),
        sar_rules: Vec::new(),
        bookmark_interval: Duration::from_secs(10),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        managed: crate::managed::Managed::default(),
    })
}

/// Serve connections until `shutdown` changes; a `Faults::restart` drops every open connection.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = router(app.clone());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut drop_all = app.faults.connection_dropper();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = drop_all.changed() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Every route: discovery, OpenAPI, the resources (namespaced or not, with subresources), and the
/// admin endpoint under `/_sandbox/`. Injected faults apply to all but the admin endpoint.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/version", get(|| async { ok_json(&discovery::version()) }))
        .route("/healthz", get(healthy))
        .route("/readyz", get(healthy))
        .route("/livez", get(healthy))
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/api/{version}", get(openapi_document))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_document))
        .route("/api/{version}", get(resource_list))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(resource_list))
        .route("/api/{version}/{*rest}", resources())
        .route("/apis/{group}/{version}/{*rest}", resources())
        .fallback(|| async { ApiError::path_not_found() })
        .layer(middleware::from_fn_with_state(app.clone(), inject_faults));
    Router::new()
        .nest("/_sandbox", admin::router())
        .merge(api)
        .with_state(app)
}

/// The verbs on a resource URL, each read as a [`Resolved`] request; other methods get 405.
fn resources() -> MethodRouter<Arc<App>> {
    get(handlers::on_get)
        .post(handlers::on_post)
        .put(handlers::on_put)
        .patch(handlers::on_patch)
        .delete(handlers::on_delete)
        .fallback(|| async { ApiError::method_not_allowed() })
}

fn fault_status(code: u16) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(code, reason, format!("injected fault: {reason}"))
}

/// Delay or fail a request as [`Faults`] says, before it reaches its route.
async fn inject_faults(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let (fail, latency) = app.faults.check(req.method().as_str(), req.uri().path());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fail {
        Some(code) => fault_status(code).into_response(),
        None => next.run(req).await,
    }
}

fn ok_json(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

async fn healthy() -> Response {
    (StatusCode::OK, "ok").into_response()
}

async fn core_versions(State(app): State<Arc<App>>) -> Response {
    ok_json(&discovery::core_versions(&app.addr.to_string()))
}

async fn groups(State(app): State<Arc<App>>) -> Response {
    ok_json(&discovery::groups(&registry::served(&app.store)))
}

async fn openapi_index(State(app): State<Arc<App>>) -> Response {
    ok_json(&openapi::index(&registry::served(&app.store)))
}

/// The `group` (absent for the core group) and `version` path parameters of a route.
fn group_version(params: &RawPathParams) -> (&str, &str) {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v)
    };
    (get("group"), get("version"))
}

/// A document `make` builds for the served resources and the route's group/version, or 404.
fn document(
    app: &App,
    params: &RawPathParams,
    make: fn(&[Arc<registry::ResourceDef>], &str, &str) -> Option<Value>,
) -> Result<Response, ApiError> {
    let (group, version) = group_version(params);
    make(&registry::served(&app.store), group, version)
        .map(|d| ok_json(&d))
        .ok_or_else(ApiError::path_not_found)
}

async fn openapi_document(State(app): State<Arc<App>>, params: RawPathParams) -> Response {
    document(&app, &params, openapi::document).unwrap_or_else(IntoResponse::into_response)
}

async fn resource_list(State(app): State<Arc<App>>, params: RawPathParams) -> Response {
    document(&app, &params, discovery::resources).unwrap_or_else(IntoResponse::into_response)
}

async fn api_group(State(app): State<Arc<App>>, params: RawPathParams) -> Response {
    document(&app, &params, |defs, group, _| {
        discovery::api_group(defs, group)
    })
    .unwrap_or_else(IntoResponse::into_response)
}

/// A resource request, read: what the URL names, who asks, and the rest of the request.
pub struct Resolved {
    /// The resource, namespace, name and subresource the URL names.
    pub target: Target,
    /// The caller, query, headers and body.
    pub call: Call,
}

impl FromRequest<Arc<App>> for Resolved {
    type Rejection = ApiError;

    /// 404 for a URL naming no served resource, 401 for a caller without valid credentials, 413 for
    /// a body over [`MAX_BODY`], in that order (as kube-apiserver: routing, authentication, body).
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, app)
            .await
            .map_err(|_| ApiError::path_not_found())?;
        let (group, version) = group_version(&params);
        let rest = params
            .iter()
            .find(|(k, _)| *k == "rest")
            .map_or("", |(_, v)| v);
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let target = parse_target(&app.store, group, version, &segments)
            .ok_or_else(ApiError::path_not_found)?;
        let user = identity::authenticate(&parts.headers, &app.token)?;
        if parts
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY)
        {
            return Err(ApiError::too_large(MAX_BODY));
        }
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::too_large(MAX_BODY))?;
        let call = Call {
            query: Query::parse(parts.uri.query()),
            headers: parts.headers,
            body,
            user,
        };
        Ok(Resolved { target, call })
    }
}

/// The resource URL after `/api/<version>/` or `/apis/<group>/<version>/`: `[namespaces/<ns>/]<plural>
/// [/<name>[/<subresource>]]`. A namespace-looking prefix is read as one only when `<plural>` is a
/// namespaced resource, so `namespaces/<name>/status` stays the Namespace's status.
fn parse_target(store: &Store, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let owned = |s: &&str| s.to_string();
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(def) = registry::find(store, group, version, plural).filter(|d| d.namespaced)
    {
        if tail.len() > 2 {
            return None;
        }
        return Some(Target {
            def,
            namespace: Some((*ns).to_string()),
            name: tail.first().map(owned),
            sub: tail.get(1).map(owned),
        });
    }
    let [plural, tail @ ..] = rest else {
        return None;
    };
    let def = registry::find(store, group, version, plural)?;
    if tail.len() > 2 {
        return None;
    }
    if def.namespaced && !tail.is_empty() {
        return None;
    }
    Some(Target {
        def,
        namespace: None,
        name: tail.first().map(owned),
        sub: tail.get(1).map(owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_cluster_paths_parse() {
        let store = Store::new(10);
        let t = parse_target(
            &store,
            "coordination.k8s.io",
            "v1",
            &["namespaces", "kube-system", "leases", "l1"],
        );
        assert_eq!(
            t.as_ref()
                .map(|t| (t.def.kind.clone(), t.namespace.clone(), t.name.clone())),
            Some((
                "Lease".to_string(),
                Some("kube-system".into()),
                Some("l1".into())
            ))
        );
        let t = parse_target(
            &store,
            "certificates.k8s.io",
            "v1",
            &["certificatesigningrequests", "a", "approval"],
        );
        assert_eq!(t.map(|t| t.sub), Some(Some("approval".to_string())));
        let t = parse_target(&store, "", "v1", &["namespaces", "default"]);
        assert_eq!(
            t.map(|t| (t.def.kind.clone(), t.name)),
            Some(("Namespace".to_string(), Some("default".to_string())))
        );
        assert!(parse_target(&store, "", "v1", &["bogus"]).is_none());
    }
}
