//! The routes and handlers through the axum Router, one request at a time (`tower`'s `oneshot`):
//! status codes, `Status` bodies and what the server sets in metadata.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::faults::FailRule;
use crate::server::{router, test_app};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
const NODES: &str = "/api/v1/nodes";

/// Send one request to a router over `app`; (status, body as JSON, or Null).
async fn send(
    app: &std::sync::Arc<crate::server::App>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send_with(app, method, uri, body, "application/json").await
}

async fn send_with(
    app: &std::sync::Arc<crate::server::App>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    content_type: &str,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router(app.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A sandbox state with the `default` namespace, created through the API.
async fn with_default_namespace() -> std::sync::Arc<crate::server::App> {
    let app = test_app();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    let (code, _) = send(&app, "POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, StatusCode::CREATED);
    app
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
        "spec": {"holderIdentity": "a"}})
}

#[tokio::test]
async fn a_create_sets_server_metadata_and_a_get_reads_it_back() {
    let app = with_default_namespace().await;
    let (code, created) = send(&app, "POST", LEASES, Some(lease("l1"))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert!(
        meta["uid"].as_str().is_some_and(|u| u.len() == 36),
        "{meta}"
    );
    assert!(meta["creationTimestamp"].is_string(), "{meta}");
    assert!(
        meta.get("generation").is_none(),
        "Leases have no generation"
    );
    let (code, got) = send(&app, "GET", &format!("{LEASES}/l1"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);
    let (code, again) = send(&app, "POST", LEASES, Some(lease("l1"))).await;
    assert_eq!(
        (code, again["reason"].as_str()),
        (StatusCode::CONFLICT, Some("AlreadyExists"))
    );
}

#[tokio::test]
async fn generate_name_gets_a_suffix_and_no_name_is_invalid() {
    let app = with_default_namespace().await;
    let (code, _) = send(
        &app,
        "POST",
        LEASES.replace("default", "nowhere").as_str(),
        Some(lease("l")),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "a namespace that does not exist"
    );
    let mut body = lease("");
    body["metadata"] = json!({"generateName": "l-"});
    let (code, created) = send(&app, "POST", LEASES, Some(body)).await;
    assert_eq!(code, StatusCode::CREATED);
    let name = created["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("l-") && name.len() == 7, "{name}");
    let mut body = lease("");
    body["metadata"] = json!({});
    let (code, status) = send(&app, "POST", LEASES, Some(body)).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn verbs_a_url_does_not_take_are_405_and_unknown_urls_404_as_status_objects() {
    let app = test_app();
    let (code, status) = send(&app, "PUT", LEASES, Some(lease("l1"))).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status["kind"], "Status");
    let (code, _) = send(&app, "POST", &format!("{NODES}/n1/status"), Some(json!({}))).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    let (code, _) = send(&app, "OPTIONS", NODES, None).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    for path in [
        "/apis/example.com/v1/widgets",
        "/api/v1/nodes/n1/bogus/extra",
        "/nothing",
        "/_sandbox/nothing",
    ] {
        let (code, status) = send(&app, "GET", path, None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(status["reason"], "NotFound", "{path}");
    }
}

#[tokio::test]
async fn a_wrong_token_is_401_and_an_oversized_body_413() {
    let app = test_app();
    let request = Request::builder()
        .uri(NODES)
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    let response = router(app.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let request = Request::builder()
        .method("POST")
        .uri(NODES)
        .header("content-length", (crate::MAX_BODY + 1).to_string())
        .body(Body::from(vec![b' '; crate::MAX_BODY + 1]))
        .unwrap();
    let response = router(app).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn node_generation_moves_on_spec_changes_and_a_stale_resource_version_conflicts() {
    let app = test_app();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let (code, created) = send(&app, "POST", NODES, Some(node)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(created["metadata"]["generation"], 1);
    let path = format!("{NODES}/n1");
    let merge = "application/merge-patch+json";
    let labels = json!({"metadata": {"labels": {"a": "b"}}});
    let (_, labelled) = send_with(&app, "PATCH", &path, Some(labels), merge).await;
    assert_eq!(labelled["metadata"]["generation"], 1);
    let spec = json!({"spec": {"unschedulable": true}});
    let (_, changed) = send_with(&app, "PATCH", &path, Some(spec), merge).await;
    assert_eq!(changed["metadata"]["generation"], 2);
    let mut stale = changed.clone();
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let (code, status) = send(&app, "PUT", &path, Some(stale)).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );
    let mut renamed = changed.clone();
    renamed["metadata"]["uid"] = json!("forged");
    let (code, kept) = send(&app, "PUT", &path, Some(renamed)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        kept["metadata"]["uid"], created["metadata"]["uid"],
        "the uid is the server's"
    );
}

#[tokio::test]
async fn a_delete_checks_its_uid_precondition_and_finalizers_only_mark_the_object() {
    let app = test_app();
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "finalizers": ["example.com/keep"]}});
    let (_, created) = send(&app, "POST", NODES, Some(node)).await;
    let path = format!("{NODES}/n1");
    let wrong = json!({"preconditions": {"uid": "not-it"}});
    let (code, _) = send(&app, "DELETE", &path, Some(wrong)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, marked) = send(&app, "DELETE", &path, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let release = json!({"metadata": {"finalizers": null}});
    let merge = "application/merge-patch+json";
    let (code, _) = send_with(&app, "PATCH", &path, Some(release), merge).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = send(&app, "GET", &path, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "gone with its last finalizer");
    let (code, _) = send(&app, "DELETE", &path, Some(json!({"preconditions": 5}))).await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "bad DeleteOptions: {created}"
    );
}

#[tokio::test]
async fn a_crd_created_through_the_api_is_established_and_serves_its_resource() {
    let app = test_app();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}});
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, created) = send(&app, "POST", path, Some(crd.clone())).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"]["conditions"][1]["type"], "Established");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3, "extra": 1}, "status": {"phase": "x"}});
    let widgets = "/apis/example.com/v1/widgets";
    let (code, w) = send(&app, "POST", widgets, Some(widget.clone())).await;
    assert_eq!(code, StatusCode::CREATED, "{w}");
    assert_eq!(w["spec"], json!({"size": 3}), "unknown fields are pruned");
    assert!(
        w.get("status").is_none(),
        "a create drops the status subresource's field"
    );
    assert_eq!(w["metadata"]["generation"], 1);
    let (code, status) = send(
        &app,
        "POST",
        &format!("{widgets}?fieldValidation=Strict"),
        Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w2"}, "spec": {"extra": 1}})),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.extra\""
    );
    let (code, list) = send(&app, "GET", "/apis/example.com/v1", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["resources"][1]["name"], "widgets/status");
    let (code, _) = send(&app, "DELETE", &format!("{path}/widgets.example.com"), None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = send(&app, "GET", widgets, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "no longer served");
    let (code, _) = send(&app, "POST", path, Some(crd)).await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, list) = send(&app, "GET", widgets, None).await;
    assert_eq!(list["items"], json!([]), "the widgets went with their CRD");
}

#[tokio::test]
async fn an_injected_fault_answers_before_the_route_but_not_on_the_admin_endpoint() {
    let app = test_app();
    app.faults.fail(FailRule {
        method: None,
        path_prefix: "/".into(),
        status: 503,
        count: 1,
    });
    let (code, ok) = send(&app, "POST", "/_sandbox/compact", None).await;
    assert_eq!((code, ok), (StatusCode::OK, json!({"ok": true})));
    let (code, status) = send(&app, "GET", NODES, None).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status["message"], "injected fault: ServiceUnavailable");
    let (code, _) = send(&app, "GET", NODES, None).await;
    assert_eq!(code, StatusCode::OK, "one request only");
}
