//! Shared helpers: a sandbox per test, a kube-rs client for it, test CSRs made with rcgen.

use csrgate_sandbox::{Sandbox, SandboxConfig};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// A running sandbox, a client for it, and the temp dir holding its kubeconfig.
pub struct Env {
    pub sandbox: Sandbox,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

/// A sandbox serving csrgate's policy CRD (`crds/` of this repository), as `csrgate sandbox` does.
pub async fn start() -> Env {
    start_with(SandboxConfig {
        crds: vec![policy_crd()],
        ..SandboxConfig::default()
    })
    .await
}

/// csrgate's CsrApprovalPolicy CRD, read from the file `make crd` generates.
pub fn policy_crd() -> CustomResourceDefinition {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/csrapprovalpolicies.csrgate.dev.yaml");
    let text = std::fs::read_to_string(&path).expect("the policy CRD file is readable");
    serde_saphyr::from_str(&text).expect("the policy CRD parses")
}

pub async fn start_with(mut config: SandboxConfig) -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    config.kubeconfig_out = Some(dir.path().join("kubeconfig"));
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let client = client_for(&sandbox, None).await;
    Env {
        sandbox,
        client,
        dir,
    }
}

/// A client for the sandbox, impersonating `user` (with group `developers`) when given.
pub async fn client_for(sandbox: &Sandbox, user: Option<&str>) -> Client {
    let kubeconfig = sandbox.kubeconfig();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    if let Some(user) = user {
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(vec!["developers".to_string()]);
    }
    Client::try_from(config).expect("client")
}

/// A PEM CSR with this CN, organizations and DNS SANs.
pub fn request_pem(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    request_pem_with_key(&key, cn, orgs, dns)
}

pub fn request_pem_with_key(key: &KeyPair, cn: &str, orgs: &[&str], dns: &[&str]) -> String {
    let mut params = CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
}

pub fn csr(name: &str, signer: &str, usages: &[&str], pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.as_bytes().to_vec()),
            signer_name: signer.to_string(),
            usages: Some(usages.iter().map(|s| s.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// A valid client-certificate CSR for `jane`.
pub fn client_csr(name: &str) -> CertificateSigningRequest {
    csr(
        name,
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
        &request_pem("jane", &["developers"], &[]),
    )
}

pub async fn create_csr(
    client: &Client,
    obj: &CertificateSigningRequest,
) -> CertificateSigningRequest {
    Api::<CertificateSigningRequest>::all(client.clone())
        .create(&PostParams::default(), obj)
        .await
        .expect("create csr")
}

/// The (code, reason, message) of an API error.
pub fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request to the sandbox: (status code, body as JSON).
pub async fn raw(
    sandbox: &Sandbox,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sandbox.addr())
        .await
        .expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sandbox.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let _ = stream.write_all(&body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // Bodies are sent with Content-Length here (no chunking) except for watches, which these tests avoid.
    (
        code,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
