//! Fault injection through the Rust API and the admin endpoint.

use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams};

use crate::common::*;

#[tokio::test]
async fn the_next_matching_requests_fail_with_the_injected_status() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    env.sandbox.faults().fail_next(
        "GET",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        500,
        2,
    );
    for _ in 0..2 {
        let (code, reason, _) = api_error(api.list(&ListParams::default()).await);
        assert_eq!((code, reason.as_str()), (500, "InternalError"));
    }
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "the rule is used up"
    );
}

#[tokio::test]
async fn the_admin_endpoint_injects_faults_and_reports_writes() {
    let env = start().await;
    let (code, _) = raw(
        &env.sandbox,
        "POST",
        "/_sandbox/faults/fail",
        "application/json",
        br#"{"method":"POST","path_prefix":"/apis/certificates.k8s.io","status":500,"count":1}"#
            .to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let (code, _, _) = api_error(api.create(&Default::default(), &client_csr("f")).await);
    assert_eq!(code, 500);
    assert!(
        api.create(&Default::default(), &client_csr("f"))
            .await
            .is_ok()
    );
    let (code, writes) = raw(
        &env.sandbox,
        "GET",
        "/_sandbox/writes",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, writes), (200, serde_json::json!([])));
}

#[tokio::test]
async fn latency_delays_requests() {
    let env = start().await;
    env.sandbox.faults().set_latency(Duration::from_millis(300));
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    env.sandbox.faults().clear();
}

#[tokio::test]
async fn data_survives_a_restart_that_drops_connections() {
    let env = start().await;
    create_csr(&env.client, &client_csr("kept")).await;
    env.sandbox.faults().restart();
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let mut got = api.get("kept").await;
    if got.is_err() {
        // A pooled connection may be the one that was dropped; the next request reconnects.
        got = api.get("kept").await;
    }
    assert_eq!(got.unwrap().metadata.name.as_deref(), Some("kept"));
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let env = start().await;
    let addr = env.sandbox.addr();
    env.sandbox.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "shutdown closes the listener"
    );
    let env = start().await;
    let addr = env.sandbox.addr();
    drop(env);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "dropping the sandbox stops it"
    );
}
