//! The `/_sandbox/` admin endpoint: the fault-injection operations of [`crate::Faults`] over HTTP, the
//! write log and the CA certificate, for tests that drive a `csrgate sandbox` process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::faults::{FailRule, Faults};
use crate::handlers::json_response;
use crate::server::App;
use crate::status::ApiError;

/// The body of `POST /_sandbox/faults/latency`.
#[derive(Debug, Deserialize)]
struct Latency {
    /// Added to every request, in milliseconds.
    #[serde(default)]
    millis: u64,
}

/// Read a JSON body; an empty one reads as `{}`.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn done() -> Response {
    json_response(StatusCode::OK, &json!({"ok": true}))
}

/// A route that runs one [`Faults`] operation and answers `{"ok": true}`.
fn operation(op: fn(&Faults)) -> axum::routing::MethodRouter<Arc<App>> {
    post(move |State(app): State<Arc<App>>| async move {
        op(&app.faults);
        done()
    })
}

async fn fail(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ApiError> {
    let rule: FailRule = parse(&body)?;
    app.faults.fail(rule);
    Ok(done())
}

async fn latency(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ApiError> {
    let latency: Latency = parse(&body)?;
    app.faults
        .set_latency(Duration::from_millis(latency.millis));
    Ok(done())
}

async fn writes(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let writes =
        serde_json::to_value(app.faults.writes()).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &writes))
}

async fn ca(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-pem-file")],
        app.ca.pem().to_string(),
    )
        .into_response()
}

/// The admin routes, to be nested under `/_sandbox`; anything else there is a 404 Status.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/faults/fail", post(fail))
        .route("/faults/latency", post(latency))
        .route("/faults/clear", operation(Faults::clear))
        .route("/watches/close", operation(Faults::close_watches))
        .route("/compact", operation(Faults::compact))
        .route("/restart", operation(Faults::restart))
        .route("/snapshot", operation(Faults::snapshot))
        .route("/restore", operation(Faults::restore))
        .route("/writes", get(writes))
        .route("/ca.crt", get(ca))
        .fallback(|| async { ApiError::path_not_found() })
}
