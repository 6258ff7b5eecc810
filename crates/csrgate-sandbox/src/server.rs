//! The HTTP side: connection handling (so restarts can drop connections), routing of paths to handlers,
//! authentication, fault injection and the admin endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::faults::{FailRule, Faults};
use crate::handlers::{self, Call, Target, json_response};
use crate::identity;
use crate::query::Query;
use crate::registry;
use crate::sar::SarRule;
use crate::signer::Ca;
use crate::status::ApiError;
use crate::store::Store;
use crate::{discovery, openapi};

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

/// Serve connections until `shutdown` changes; a `Faults::restart` drops every open connection.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = Router::new().fallback(entry).with_state(app.clone());
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

async fn entry(State(app): State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_sandbox/") {
        let method = req.method().clone();
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .unwrap_or_default();
        return admin(&app, &method, rest, &body).unwrap_or_else(IntoResponse::into_response);
    }
    let (fail, latency) = app.faults.check(req.method().as_str(), &path);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = fail {
        return fault_status(code).into_response();
    }
    route(app, req, path)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn ok_json(value: &Value) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

async fn route(app: Arc<App>, req: Request, path: String) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let served = || registry::served(&app.store);
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["version"] => return ok_json(&discovery::version()),
        ["healthz" | "readyz" | "livez"] => return Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => return ok_json(&discovery::core_versions(&app.addr.to_string())),
        ["apis"] => return ok_json(&discovery::groups(&served())),
        ["openapi", "v3"] => return ok_json(&openapi::index(&served())),
        ["openapi", "v3", "api", v] => {
            return openapi::document(&served(), "", v)
                .map_or_else(|| Err(ApiError::path_not_found()), |d| ok_json(&d));
        }
        ["openapi", "v3", "apis", g, v] => {
            return openapi::document(&served(), g, v)
                .map_or_else(|| Err(ApiError::path_not_found()), |d| ok_json(&d));
        }
        ["api", v] => {
            return discovery::resources(&served(), "", v)
                .map_or_else(|| Err(ApiError::path_not_found()), |d| ok_json(&d));
        }
        ["apis", g] => {
            return discovery::api_group(&served(), g)
                .map_or_else(|| Err(ApiError::path_not_found()), |d| ok_json(&d));
        }
        ["apis", g, v] => {
            return discovery::resources(&served(), g, v)
                .map_or_else(|| Err(ApiError::path_not_found()), |d| ok_json(&d));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let target =
        parse_target(&app.store, group, version, rest).ok_or_else(ApiError::path_not_found)?;
    let user = identity::authenticate(req.headers(), &app.token)?;
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let headers = req.headers().clone();
    if headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return Err(ApiError::too_large(MAX_BODY));
    }
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))?;
    let call = Call {
        method,
        query,
        headers,
        body,
        user,
    };
    Ok(handlers::handle(app, target, call).await)
}

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

fn admin(app: &App, method: &Method, rest: &str, body: &Bytes) -> Result<Response, ApiError> {
    let parse = || -> Result<Value, ApiError> {
        if body.is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    };
    let done = || ok_json(&json!({"ok": true}));
    match (method.as_str(), rest.trim_end_matches('/')) {
        ("POST", "faults/fail") => {
            let rule: FailRule = serde_json::from_value(parse()?)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            app.faults.fail(rule);
            done()
        }
        ("POST", "faults/latency") => {
            let ms = parse()?.get("millis").and_then(Value::as_u64).unwrap_or(0);
            app.faults.set_latency(Duration::from_millis(ms));
            done()
        }
        ("POST", "faults/clear") => {
            app.faults.clear();
            done()
        }
        ("POST", "watches/close") => {
            app.faults.close_watches();
            done()
        }
        ("POST", "compact") => {
            app.faults.compact();
            done()
        }
        ("POST", "restart") => {
            app.faults.restart();
            done()
        }
        ("POST", "snapshot") => {
            app.faults.snapshot();
            done()
        }
        ("POST", "restore") => {
            app.faults.restore();
            done()
        }
        ("GET", "writes") => ok_json(
            &serde_json::to_value(app.faults.writes())
                .map_err(|e| ApiError::internal(e.to_string()))?,
        ),
        ("GET", "ca.crt") => Ok((
            StatusCode::OK,
            [("content-type", "application/x-pem-file")],
            app.ca.pem().to_string(),
        )
            .into_response()),
        _ => Err(ApiError::path_not_found()),
    }
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
