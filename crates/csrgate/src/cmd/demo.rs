//! `csrgate demo`: the main job on the embedded examples, no cluster needed.
//!
//! Starts the sandbox API server and the controller in this process, applies the example
//! policies and a Node, submits the example CSRs as their requestors (a new administrator,
//! a node, a spoofing node, an escalation attempt, a forged request, someone the policies do
//! not cover), waits for the decisions and prints them.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use csrgate_api::CsrApprovalPolicy;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Error, Outcome};

/// The example policies, embedded so the demo runs from anywhere.
const POLICIES: [&str; 5] = [
    include_str!("../../../../examples/policies/administrators.yaml"),
    include_str!("../../../../examples/policies/kubelet-serving.yaml"),
    include_str!("../../../../examples/policies/kubelet-client.yaml"),
    include_str!("../../../../examples/policies/workload-spiffe.yaml"),
    include_str!("../../../../examples/policies/lifetime-rollout-audit.yaml"),
];
const NODE: &str = include_str!("../../../../examples/nodes/worker-1.yaml");
/// The example CSRs, each submitted as the requestor its manifest names.
const CSRS: [(&str, &str); 9] = [
    (
        "a new administrator",
        include_str!("../../../../examples/csrs/jane.yaml"),
    ),
    (
        "an administrator asking for another name",
        include_str!("../../../../examples/csrs/jane-as-admin.yaml"),
    ),
    (
        "escalation to system:masters",
        include_str!("../../../../examples/csrs/jane-masters.yaml"),
    ),
    (
        "a forged signature",
        include_str!("../../../../examples/csrs/jane-forged.yaml"),
    ),
    (
        "someone no policy covers",
        include_str!("../../../../examples/csrs/mallory.yaml"),
    ),
    (
        "a node's serving certificate",
        include_str!("../../../../examples/csrs/worker-1-serving.yaml"),
    ),
    (
        "a node spoofing a service name",
        include_str!("../../../../examples/csrs/worker-1-spoofing.yaml"),
    ),
    (
        "a node renewing its client certificate",
        include_str!("../../../../examples/csrs/worker-1-client.yaml"),
    ),
    (
        "a workload's SPIFFE certificate",
        include_str!("../../../../examples/csrs/payments-api.yaml"),
    ),
];

/// Runs the demo.
///
/// # Errors
/// The sandbox or the controller cannot start, or an example does not parse.
pub fn run() -> Result<Outcome, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo())
}

async fn demo() -> Result<Outcome, Error> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = csrgate_sandbox::Sandbox::start(csrgate_sandbox::SandboxConfig {
        kubeconfig_out: Some(kubeconfig.clone()),
        sign_signers: vec!["csrgate.dev/workload-client".into()],
        ..csrgate_sandbox::SandboxConfig::default()
    })
    .await?;
    println!("sandbox API server: {}", sandbox.url());
    let admin = client_as(&kubeconfig, None).await?;

    let policies: Api<CsrApprovalPolicy> = Api::all(admin.clone());
    for yaml in POLICIES {
        let policy: CsrApprovalPolicy = serde_saphyr::from_str(yaml)?;
        policies.create(&PostParams::default(), &policy).await?;
    }
    let node: Node = serde_saphyr::from_str(NODE)?;
    Api::<Node>::all(admin.clone())
        .create(&PostParams::default(), &node)
        .await?;
    println!(
        "applied {} example policies and Node worker-1",
        POLICIES.len()
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = csrgate_controller::Config {
        metrics_addr: "127.0.0.1:0".parse()?,
        leader_election: None,
        dry_run: false,
        watch_nodes: true,
        concurrency: 8,
        reporter: "csrgate".into(),
    };
    let controller = tokio::spawn(csrgate_controller::run(
        admin.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
        |_| {},
    ));

    let mut submitted = Vec::new();
    for (story, yaml) in CSRS {
        let csr: CertificateSigningRequest = serde_saphyr::from_str(yaml)?;
        let name = csr.metadata.name.clone().unwrap_or_default();
        let user = csr.spec.username.clone().unwrap_or_default();
        let groups: Vec<String> = csr
            .spec
            .groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|g| g != "system:authenticated")
            .collect();
        let client = client_as(&kubeconfig, Some((user.clone(), groups))).await?;
        let created = Api::<CertificateSigningRequest>::all(client)
            .create(&PostParams::default(), &csr)
            .await;
        let refused = created.err().map(|e| match e {
            kube::Error::Api(status) => short_refusal(status.message),
            other => other.to_string(),
        });
        submitted.push((story, name, user, csr.spec.signer_name.clone(), refused));
    }

    let csrs: Api<CertificateSigningRequest> = Api::all(admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rows = Vec::new();
    for (story, name, user, signer, refused) in &submitted {
        if let Some(message) = refused {
            rows.push([
                (*story).to_owned(),
                name.clone(),
                user.clone(),
                signer.clone(),
                "Refused".into(),
                "(API server)".into(),
                message.clone(),
                "-".into(),
            ]);
            continue;
        }
        let expect_decision = *name != "mallory";
        let csr = loop {
            let csr = csrs.get(name).await?;
            let settled = !expect_decision || condition(&csr).is_some();
            let issued = csr
                .status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some();
            let approved = condition(&csr).is_some_and(|(t, _, _)| t == "Approved");
            if (settled && (!approved || issued)) || Instant::now() > deadline {
                break csr;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (decision, reason, message) = condition(&csr).unwrap_or_else(|| {
            (
                "Pending".into(),
                "-".into(),
                "no policy decided: left for a person".into(),
            )
        });
        let certificate = csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .map_or("-".to_owned(), |_| "issued".to_owned());
        rows.push([
            story.to_string(),
            name.clone(),
            user.clone(),
            signer.clone(),
            decision,
            reason,
            message,
            certificate,
        ]);
    }
    let _ = stop.send(());
    match controller.await {
        Ok(result) => result?,
        Err(error) => return Err(error.into()),
    }
    sandbox.shutdown().await;
    print!("{}", table(&rows));
    Ok(Outcome::Success)
}

async fn client_as(
    kubeconfig: &std::path::Path,
    impersonate: Option<(String, Vec<String>)>,
) -> Result<kube::Client, Error> {
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    if let Some((user, groups)) = impersonate {
        config.auth_info.impersonate = Some(user);
        config.auth_info.impersonate_groups = Some(groups);
    }
    Ok(kube::Client::try_from(config)?)
}

fn condition(csr: &CertificateSigningRequest) -> Option<(String, String, String)> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed").then(|| {
                (
                    c.type_.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
        })
}

/// Columns padded to their widest cell, the message last and unpadded.
fn table(rows: &[[String; 8]]) -> String {
    const HEADER: [&str; 8] = [
        "CASE",
        "CSR",
        "REQUESTOR",
        "SIGNER",
        "DECISION",
        "REASON",
        "MESSAGE",
        "CERTIFICATE",
    ];
    // Printed order: everything but the message, then the message.
    const ORDER: [usize; 8] = [0, 1, 2, 3, 4, 5, 7, 6];
    let cell = |row: &[String; 8], column: usize| -> String { row[column].clone() };
    let header: [String; 8] = HEADER.map(str::to_owned);
    let all: Vec<&[String; 8]> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| {
            all.iter()
                .map(|r| cell(r, c).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::from("\n");
    for row in all {
        for (i, &column) in ORDER.iter().enumerate() {
            let text = cell(row, column);
            if i + 1 == ORDER.len() {
                out.push_str(&text);
            } else {
                let _ = write!(out, "{text:width$}  ", width = widths[column]);
            }
        }
        out.push('\n');
    }
    out
}

/// An API server refusal without the echoed PEM, which says nothing to a reader.
fn short_refusal(message: String) -> String {
    match message.split_once("Invalid value: \"-----BEGIN") {
        Some((head, tail)) => match tail.split_once("\": ") {
            Some((_, reason)) => format!("{head}{reason}"),
            None => head.to_owned(),
        },
        None => message,
    }
}
