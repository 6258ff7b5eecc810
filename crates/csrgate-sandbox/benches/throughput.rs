//! Requests per second against a sandbox on loopback, through kube-rs: create, list, approval PUT.
//! Run with `cargo bench -p csrgate-sandbox --bench throughput` (SANDBOX_BENCH_N sets the request count).

use std::time::{Duration, Instant};

use csrgate_sandbox::{Sandbox, SandboxConfig};
use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::KubeConfigOptions;

const CONCURRENCY: usize = 16;

fn report(what: &str, n: usize, took: Duration) {
    println!(
        "{what:<14} {n:>6} requests in {:>7.3}s = {:>8.0} req/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

type Error = Box<dyn std::error::Error>;

/// A client of `sandbox` and a PEM request the CSRs share.
async fn setup(sandbox: &Sandbox) -> Result<(Api<CertificateSigningRequest>, String), Error> {
    let kubeconfig = sandbox.kubeconfig();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let api = Api::<CertificateSigningRequest>::all(kube::Client::try_from(config)?);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench");
    Ok((api, params.serialize_request(&key)?.pem()?))
}

fn csr(i: usize, pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(format!("bench-{i}")),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.as_bytes().to_vec()),
            signer_name: "example.com/bench".into(),
            usages: Some(vec!["client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

async fn create(
    api: &Api<CertificateSigningRequest>,
    pem: &str,
    n: usize,
) -> Vec<CertificateSigningRequest> {
    let started = Instant::now();
    let created: Vec<CertificateSigningRequest> = futures::stream::iter(0..n)
        .map(|i| {
            let (api, obj) = (api.clone(), csr(i, pem));
            async move { api.create(&PostParams::default(), &obj).await }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r.ok() })
        .collect()
        .await;
    report("create", created.len(), started.elapsed());
    created
}

/// How many of the requests' outcomes are successes.
async fn successes(outcomes: impl futures::Stream<Item = bool>) -> usize {
    outcomes
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await
}

async fn list(api: &Api<CertificateSigningRequest>, n: usize) {
    let lists = (n / 20).max(10);
    let started = Instant::now();
    let ok = futures::stream::iter(0..lists)
        .map(|_| {
            let api = api.clone();
            async move {
                api.list(&ListParams::default().labels("none!=x"))
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(CONCURRENCY);
    report(
        &format!("list ({n} items)"),
        successes(ok).await,
        started.elapsed(),
    );
}

async fn approve(api: &Api<CertificateSigningRequest>, created: Vec<CertificateSigningRequest>) {
    let started = Instant::now();
    let approved = futures::stream::iter(created)
        .map(|mut obj| {
            let api = api.clone();
            obj.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("Bench".into()),
                    ..CertificateSigningRequestCondition::default()
                }]),
                certificate: None,
            });
            async move {
                let name = obj.metadata.name.clone().unwrap_or_default();
                api.replace_subresource("approval", &name, &PostParams::default(), &obj)
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(CONCURRENCY);
    report("approval PUT", successes(approved).await, started.elapsed());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let n: usize = std::env::var("SANDBOX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let (api, pem) = setup(&sandbox).await?;
    let created = create(&api, &pem, n).await;
    list(&api, n).await;
    approve(&api, created).await;
    sandbox.shutdown().await;
    Ok(())
}
