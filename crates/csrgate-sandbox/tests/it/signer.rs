//! The sandbox as the standard signer: certificates for approved CSRs, Failed where the real signer refuses.

use std::time::Duration;

use csrgate_sandbox::SandboxConfig;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::common::*;

async fn decide(api: &Api<CertificateSigningRequest>, name: &str, type_: &str) {
    let patch = json!({"status": {"conditions": [{"type": type_, "status": "True", "reason": "Test", "message": "test"}]}});
    api.patch_subresource(
        "approval",
        name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
}

async fn settled(api: &Api<CertificateSigningRequest>, name: &str) -> CertificateSigningRequest {
    for _ in 0..50 {
        let obj = api.get(name).await.unwrap();
        let status = obj.status.clone().unwrap_or_default();
        let failed = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed");
        if status.certificate.is_some() || failed {
            return obj;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.get(name).await.unwrap()
}

#[tokio::test]
async fn an_approved_client_csr_gets_a_certificate_with_its_key_subject_and_duration() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let key = rcgen::KeyPair::generate().unwrap();
    let mut obj = csr(
        "jane",
        "kubernetes.io/kube-apiserver-client",
        &["client auth", "digital signature"],
        &request_pem_with_key(&key, "jane", &["developers"], &[]),
    );
    obj.spec.expiration_seconds = Some(3600);
    create_csr(&env.client, &obj).await;
    decide(&api, "jane", "Approved").await;
    let issued = settled(&api, "jane").await;
    let pem = issued.status.unwrap().certificate.expect("a certificate").0;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert_eq!(cert.subject().to_string(), "CN=jane, O=developers");
    assert_eq!(
        &*cert.public_key().subject_public_key.data,
        key.public_key_raw()
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(
        lifetime,
        3600 + 300,
        "expirationSeconds plus the 5 minute backdate"
    );
    let ca = x509_parser::pem::parse_x509_pem(env.sandbox.ca_pem().as_bytes())
        .unwrap()
        .1;
    assert!(
        cert.verify_signature(Some(ca.parse_x509().unwrap().public_key()))
            .is_ok()
    );
    assert!(
        env.dir.path().join("kubeconfig.ca.crt").exists(),
        "the CA is written next to the kubeconfig"
    );
}

#[tokio::test]
async fn a_kubelet_serving_csr_without_system_nodes_fails_signer_validation() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("system:node:n1", &["developers"], &["n1.example"]);
    let obj = csr(
        "ks",
        "kubernetes.io/kubelet-serving",
        &["digital signature", "server auth"],
        &pem,
    );
    create_csr(&env.client, &obj).await;
    decide(&api, "ks", "Approved").await;
    let status = settled(&api, "ks").await.status.unwrap();
    assert!(status.certificate.is_none());
    let failed = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .expect("a Failed condition");
    assert_eq!(failed.reason.as_deref(), Some("SignerValidationFailure"));
    assert_eq!(
        failed.message.as_deref(),
        Some("subject organization is not system:nodes")
    );
}

#[tokio::test]
async fn a_good_kubelet_serving_csr_is_signed() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("system:node:n1", &["system:nodes"], &["n1.example"]);
    create_csr(
        &env.client,
        &csr(
            "ok",
            "kubernetes.io/kubelet-serving",
            &["digital signature", "server auth"],
            &pem,
        ),
    )
    .await;
    decide(&api, "ok", "Approved").await;
    assert!(
        settled(&api, "ok")
            .await
            .status
            .unwrap()
            .certificate
            .is_some()
    );
}

#[tokio::test]
async fn denied_csrs_and_unknown_signers_are_never_signed() {
    let env = start_with(SandboxConfig {
        sign_signers: vec!["example.com/mine".into()],
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("jane", &[], &[]);
    create_csr(
        &env.client,
        &csr(
            "denied",
            "kubernetes.io/kube-apiserver-client",
            &["client auth"],
            &pem,
        ),
    )
    .await;
    create_csr(
        &env.client,
        &csr("other", "example.com/theirs", &["client auth"], &pem),
    )
    .await;
    create_csr(
        &env.client,
        &csr("mine", "example.com/mine", &["client auth"], &pem),
    )
    .await;
    decide(&api, "denied", "Denied").await;
    decide(&api, "other", "Approved").await;
    decide(&api, "mine", "Approved").await;
    assert!(
        settled(&api, "mine")
            .await
            .status
            .unwrap()
            .certificate
            .is_some(),
        "configured signers are played"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        api.get("denied")
            .await
            .unwrap()
            .status
            .unwrap()
            .certificate
            .is_none()
    );
    assert!(
        api.get("other")
            .await
            .unwrap()
            .status
            .unwrap()
            .certificate
            .is_none()
    );
}
