//! Bad input: a Status with the real code, never a panic, and nothing stored.

use serde_json::Value;

use crate::common::*;

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

async fn count(env: &Env) -> usize {
    let (_, list) = raw(&env.sandbox, "GET", CSRS, "application/json", vec![]).await;
    list["items"].as_array().map_or(0, Vec::len)
}

fn status(body: &Value) -> (&str, u64) {
    (
        body["reason"].as_str().unwrap_or_default(),
        body["code"].as_u64().unwrap_or(0),
    )
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests_and_store_nothing() {
    let env = start().await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/json", b"{not json".to_vec(), 400, "BadRequest"),
        ("application/yaml", b"a: [unclosed".to_vec(), 400, "BadRequest"),
        ("application/json", br#"{"apiVersion":"v1","kind":"CertificateSigningRequest","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("application/json", br#"{"apiVersion":"certificates.k8s.io/v1","kind":"Pod","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("application/json", br#"{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{}}"#.to_vec(), 422, "Invalid"),
        ("application/json", br#"{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"x"},"spec":{"usages":7}}"#.to_vec(), 400, "BadRequest"),
        ("text/plain", b"hello".to_vec(), 415, "UnsupportedMediaType"),
        ("application/json", vec![b' '; 3 * 1024 * 1024 + 10], 413, "RequestEntityTooLarge"),
    ];
    for (content_type, body, code, reason) in cases {
        let (got, body) = raw(&env.sandbox, "POST", CSRS, content_type, body).await;
        assert_eq!(got, code, "{content_type}: {body}");
        assert_eq!(status(&body), (reason, u64::from(code)), "{body}");
        assert_eq!(body["kind"], "Status");
    }
    assert_eq!(count(&env).await, 0);
}

#[tokio::test]
async fn unknown_paths_and_verbs_get_status_errors() {
    let env = start().await;
    let (code, body) = raw(
        &env.sandbox,
        "GET",
        "/apis/nope.example/v1/things",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, status(&body)), (404, ("NotFound", 404)));
    let (code, body) = raw(
        &env.sandbox,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews/x",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!((code, status(&body)), (405, ("MethodNotAllowed", 405)));
    let (code, body) = raw(
        &env.sandbox,
        "GET",
        &format!("{CSRS}?watch=true&resourceVersion=abc"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, status(&body)), (400, ("BadRequest", 400)));
}

#[tokio::test]
async fn a_bad_patch_leaves_the_object_unchanged() {
    let env = start().await;
    create_csr(&env.client, &client_csr("p")).await;
    let path = format!("{CSRS}/p");
    let (_, before) = raw(&env.sandbox, "GET", &path, "application/json", vec![]).await;
    let (code, body) = raw(
        &env.sandbox,
        "PATCH",
        &path,
        "application/json-patch+json",
        br#"[{"op":"replace","path":"/nope/x","value":1}]"#.to_vec(),
    )
    .await;
    assert_eq!((code, status(&body)), (422, ("Invalid", 422)));
    let (code, _) = raw(
        &env.sandbox,
        "PATCH",
        &path,
        "application/merge-patch+json",
        b"[1,2]".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    let (code, body) = raw(
        &env.sandbox,
        "PATCH",
        &path,
        "application/merge-patch+json",
        br#"{"metadata":{"name":"other"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (_, after) = raw(&env.sandbox, "GET", &path, "application/json", vec![]).await;
    assert_eq!(before, after);
}
