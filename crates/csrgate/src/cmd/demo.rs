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

use serde::Serialize;

use super::{Error, Outcome};
use crate::cli::{DemoArgs, DemoOutput};

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

/// The label on everything the demo creates, so that a cluster it was given is left as it
/// was found (Kubernetes' recommended label for the tool managing an object).
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "csrgate-demo");

/// How long the demo waits for decisions and certificates.
const DEADLINE: Duration = Duration::from_secs(30);

/// One decided example, as printed.
#[derive(Debug, Serialize)]
struct Row {
    /// What the example shows.
    case: String,
    /// The CSR's name.
    csr: String,
    /// Who submitted it.
    requestor: String,
    /// Its signerName.
    signer: String,
    /// `Approved`, `Denied`, `Failed`, `Pending`, or `Refused` (by the API server at create).
    decision: String,
    /// The condition's reason, `-` when none.
    reason: String,
    /// The condition's message, or the API server's refusal.
    message: String,
    /// `issued`, `-`, or `signer failed: <reason>`.
    certificate: String,
}

/// Runs the demo, on an embedded sandbox or on the cluster of `--kubeconfig`.
///
/// # Errors
/// The sandbox or the controller cannot start, an example does not parse, or (with a
/// cluster) an object the demo would create already exists.
pub fn run(args: &DemoArgs) -> Result<Outcome, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> Result<Outcome, Error> {
    let json = args.output == DemoOutput::Json;
    // Progress goes where it does not mix with JSON.
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let dir = tempfile::tempdir()?;
    let (sandbox, kubeconfig) = match &args.kubeconfig {
        Some(path) => (
            None,
            with_context(path, args.context.as_deref(), dir.path())?,
        ),
        None => {
            let kubeconfig = dir.path().join("kubeconfig");
            let sandbox = csrgate_sandbox::Sandbox::start(csrgate_sandbox::SandboxConfig {
                kubeconfig_out: Some(kubeconfig.clone()),
                sign_signers: vec!["csrgate.dev/workload-client".into()],
                crds: vec![<CsrApprovalPolicy as kube::CustomResourceExt>::crd()],
                ..csrgate_sandbox::SandboxConfig::default()
            })
            .await?;
            say(format!("sandbox API server: {}", sandbox.url()));
            (Some(sandbox), kubeconfig)
        }
    };
    let admin = client_as(&kubeconfig, None).await?;
    let examples = Examples::parse()?;
    if args.kubeconfig.is_some() {
        examples.refuse_existing(&admin).await?;
        let source = args.kubeconfig.as_deref().unwrap_or(&kubeconfig);
        match &args.context {
            Some(context) => say(format!(
                "cluster of {}, context {context}",
                source.display()
            )),
            None => say(format!("cluster of {}", source.display())),
        }
    }
    let rows = examples.run(&admin, &kubeconfig, &say).await;
    if args.kubeconfig.is_some() {
        let removed = remove_labelled(&admin).await;
        match &removed {
            Ok(count) => say(format!("removed the {count} objects the demo created")),
            Err(error) => eprintln!("warning: could not remove every demo object: {error}"),
        }
    }
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    let rows = rows?;
    match args.output {
        DemoOutput::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        DemoOutput::Wide => print!("{}", wide_table(&rows)),
        DemoOutput::Table => print!("{}", table(&rows)),
    }
    Ok(Outcome::Success)
}

/// The example objects, parsed and labelled.
struct Examples {
    policies: Vec<CsrApprovalPolicy>,
    node: Node,
    csrs: Vec<(&'static str, CertificateSigningRequest)>,
}

impl Examples {
    fn parse() -> Result<Self, Error> {
        let label = |meta: &mut kube::api::ObjectMeta| {
            meta.labels
                .get_or_insert_with(Default::default)
                .insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
        };
        let mut policies = Vec::new();
        for yaml in POLICIES {
            let mut policy: CsrApprovalPolicy = serde_saphyr::from_str(yaml)?;
            label(&mut policy.metadata);
            policies.push(policy);
        }
        let mut node: Node = serde_saphyr::from_str(NODE)?;
        label(&mut node.metadata);
        let mut csrs = Vec::new();
        for (story, yaml) in CSRS {
            let mut csr: CertificateSigningRequest = serde_saphyr::from_str(yaml)?;
            label(&mut csr.metadata);
            csrs.push((story, csr));
        }
        Ok(Self {
            policies,
            node,
            csrs,
        })
    }

    /// Fails when an object of the same name exists: the demo never touches objects it did
    /// not create.
    async fn refuse_existing(&self, client: &kube::Client) -> Result<(), Error> {
        let policies: Api<CsrApprovalPolicy> = Api::all(client.clone());
        let nodes: Api<Node> = Api::all(client.clone());
        let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
        let mut existing = Vec::new();
        for policy in &self.policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            if policies.get_opt(&name).await?.is_some() {
                existing.push(format!("CsrApprovalPolicy {name}"));
            }
        }
        let node = self.node.metadata.name.clone().unwrap_or_default();
        if nodes.get_opt(&node).await?.is_some() {
            existing.push(format!("Node {node}"));
        }
        for (_, csr) in &self.csrs {
            let name = csr.metadata.name.clone().unwrap_or_default();
            if csrs.get_opt(&name).await?.is_some() {
                existing.push(format!("CertificateSigningRequest {name}"));
            }
        }
        if existing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the demo would create objects that already exist: {} (delete them, or those labelled {}={})",
                existing.join(", "),
                MANAGED_BY.0,
                MANAGED_BY.1
            )
            .into())
        }
    }

    async fn run(
        &self,
        admin: &kube::Client,
        kubeconfig: &std::path::Path,
        say: &dyn Fn(String),
    ) -> Result<Vec<Row>, Error> {
        let policies: Api<CsrApprovalPolicy> = Api::all(admin.clone());
        for policy in &self.policies {
            policies.create(&PostParams::default(), policy).await?;
        }
        Api::<Node>::all(admin.clone())
            .create(&PostParams::default(), &self.node)
            .await?;
        say(format!(
            "applied {} example policies and Node worker-1",
            self.policies.len()
        ));

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = csrgate_controller::Config {
            metrics_addr: "127.0.0.1:0".parse()?,
            leader_election: None,
            dry_run: false,
            watch_nodes: true,
            concurrency: 8,
            max_pending_per_signer: None,
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
        let rows = self.submit_and_wait(admin, kubeconfig).await;
        let _ = stop.send(());
        match controller.await {
            Ok(result) => result?,
            Err(error) => return Err(error.into()),
        }
        rows
    }

    async fn submit_and_wait(
        &self,
        admin: &kube::Client,
        kubeconfig: &std::path::Path,
    ) -> Result<Vec<Row>, Error> {
        let mut submitted = Vec::new();
        for (story, csr) in &self.csrs {
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
            let client = client_as(kubeconfig, Some((user.clone(), groups))).await?;
            let created = Api::<CertificateSigningRequest>::all(client)
                .create(&PostParams::default(), csr)
                .await;
            let refused = created.err().map(|e| match e {
                kube::Error::Api(status) => short_refusal(status.message),
                other => other.to_string(),
            });
            submitted.push((story, name, user, csr.spec.signer_name.clone(), refused));
        }

        let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
        let deadline = Instant::now() + DEADLINE;
        let mut rows = Vec::new();
        for (story, name, user, signer, refused) in submitted {
            let row = |decision: &str, reason: String, message: String, certificate: String| Row {
                case: (*story).to_owned(),
                csr: name.clone(),
                requestor: user.clone(),
                signer: signer.clone(),
                decision: decision.to_owned(),
                reason,
                message,
                certificate,
            };
            if let Some(message) = refused {
                rows.push(row("Refused", "(API server)".into(), message, "-".into()));
                continue;
            }
            let expect_decision = name != "mallory";
            let csr = loop {
                let csr = csrs.get(&name).await?;
                let settled =
                    !expect_decision || condition(&csr, &["Approved", "Denied"]).is_some();
                let signed = csr
                    .status
                    .as_ref()
                    .and_then(|s| s.certificate.as_ref())
                    .is_some()
                    || condition(&csr, &["Failed"]).is_some();
                let approved = condition(&csr, &["Approved"]).is_some();
                if (settled && (!approved || signed)) || Instant::now() > deadline {
                    break csr;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let (decision, reason, message) = condition(&csr, &["Approved", "Denied"])
                .unwrap_or_else(|| {
                    (
                        "Pending".into(),
                        "-".into(),
                        "no policy decided: left for a person".into(),
                    )
                });
            let certificate = match (
                csr.status.as_ref().and_then(|s| s.certificate.as_ref()),
                condition(&csr, &["Failed"]),
            ) {
                (Some(_), _) => "issued".to_owned(),
                (None, Some((_, reason, _))) => format!("signer failed: {reason}"),
                (None, None) => "-".to_owned(),
            };
            rows.push(row(&decision, reason, message, certificate));
        }
        Ok(rows)
    }
}

/// Deletes every object carrying [`MANAGED_BY`]; returns how many.
async fn remove_labelled(client: &kube::Client) -> Result<usize, Error> {
    let selector =
        kube::api::ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let delete = kube::api::DeleteParams::default();
    let mut count = 0;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    for csr in csrs.list(&selector).await? {
        csrs.delete(&csr.metadata.name.unwrap_or_default(), &delete)
            .await?;
        count += 1;
    }
    let policies: Api<CsrApprovalPolicy> = Api::all(client.clone());
    for policy in policies.list(&selector).await? {
        policies
            .delete(&policy.metadata.name.unwrap_or_default(), &delete)
            .await?;
        count += 1;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&selector).await? {
        nodes
            .delete(&node.metadata.name.unwrap_or_default(), &delete)
            .await?;
        count += 1;
    }
    Ok(count)
}

/// `path`, or with `context` a copy of it in `dir` whose current context is `context`, so that
/// every client the demo makes (the admin, each requestor) uses that context.
///
/// # Errors
/// The kubeconfig cannot be read or written, or has no such context.
fn with_context(
    path: &std::path::Path,
    context: Option<&str>,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, Error> {
    let Some(context) = context else {
        return Ok(path.to_owned());
    };
    // read_from makes the file paths in it absolute, so the copy works from `dir`.
    let mut kubeconfig = Kubeconfig::read_from(path)?;
    if !kubeconfig.contexts.iter().any(|c| c.name == context) {
        return Err(format!("kubeconfig {}: no context {context:?}", path.display()).into());
    }
    kubeconfig.current_context = Some(context.to_owned());
    let copy = dir.join("kubeconfig");
    std::fs::write(&copy, serde_json::to_string(&kubeconfig)?)?;
    Ok(copy)
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

/// The first condition of one of `types`: (type, reason, message).
fn condition(csr: &CertificateSigningRequest, types: &[&str]) -> Option<(String, String, String)> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            types.contains(&c.type_.as_str()).then(|| {
                (
                    c.type_.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
        })
}

/// The width `table` keeps within: a terminal of 100 columns.
const TABLE_WIDTH: usize = 100;

/// Columns padded to their widest cell (requestor and signer left out), each row followed by
/// its message, indented and wrapped at word boundaries within [`TABLE_WIDTH`] columns.
fn table(rows: &[Row]) -> String {
    const HEADER: [&str; 5] = ["CASE", "CSR", "DECISION", "REASON", "CERTIFICATE"];
    const INDENT: &str = "    ";
    let cells = |row: &Row| -> [String; 5] {
        [
            row.case.clone(),
            row.csr.clone(),
            row.decision.clone(),
            row.reason.clone(),
            row.certificate.clone(),
        ]
    };
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| {
            rows.iter()
                .map(|r| cells(r)[c].chars().count())
                .chain([HEADER[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            let _ = write!(text, "{cell:width$}  ", width = widths[column]);
        }
        text.trim_end().to_owned()
    };
    let wrap = textwrap::Options::new(TABLE_WIDTH)
        .initial_indent(INDENT)
        .subsequent_indent(INDENT);
    let mut out = format!("\n{}\n", line(&HEADER.map(str::to_owned)));
    for row in rows {
        out.push_str(&line(&cells(row)));
        out.push('\n');
        for wrapped in textwrap::wrap(&row.message, &wrap) {
            out.push_str(&wrapped);
            out.push('\n');
        }
    }
    out
}

/// Every column padded to its widest cell, the message last and unpadded (`-o wide`).
fn wide_table(rows: &[Row]) -> String {
    const HEADER: [&str; 8] = [
        "CASE",
        "CSR",
        "REQUESTOR",
        "SIGNER",
        "DECISION",
        "REASON",
        "CERTIFICATE",
        "MESSAGE",
    ];
    let cells = |row: &Row| -> [String; 8] {
        [
            row.case.clone(),
            row.csr.clone(),
            row.requestor.clone(),
            row.signer.clone(),
            row.decision.clone(),
            row.reason.clone(),
            row.certificate.clone(),
            row.message.clone(),
        ]
    };
    let all: Vec<[String; 8]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(rows.iter().map(cells))
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::from("\n");
    for row in &all {
        for (column, text) in row.iter().enumerate() {
            if column + 1 == row.len() {
                out.push_str(text);
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
