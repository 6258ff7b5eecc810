//! Test-only: the API server mocked at the HTTP edge (tower-test's mock pair, as
//! controller-rs's fixtures.rs), for narrow call sequences such as one approval write.

use http::{Request, Response};
use kube::client::Body;
use tower_test::mock::{Handle, pair};

/// The server end of a mocked client: each [`ApiServerVerifier::expect`] takes the next
/// request, asserts it and answers it.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// A client whose every request reaches the returned verifier.
pub fn mock_client() -> (kube::Client, ApiServerVerifier) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, "default"),
        ApiServerVerifier(handle),
    )
}

impl ApiServerVerifier {
    /// Waits for the next request, asserts its method and path (query left out), answers
    /// `status` with `body` (JSON), and returns the request body (JSON, `null` when empty).
    ///
    /// # Panics
    /// When no request comes, or it is another one: the test fails with what came.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (request, respond) = self
            .0
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {path}, the client was dropped"));
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            (method, path),
            "unexpected request {}",
            request.uri()
        );
        let sent = request.into_body().collect_bytes().await.unwrap();
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string().into_bytes()))
            .unwrap();
        respond.send_response(response);
        if sent.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&sent).unwrap()
        }
    }

    /// Asserts that no request is left: every client is dropped with nothing more sent.
    pub async fn done(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// A `metav1.Status` body as the API server sends with an error `code` and `reason`.
pub fn status(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": format!("mocked {reason}"),
        "reason": reason,
        "code": code,
    })
}
