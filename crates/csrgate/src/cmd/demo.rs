//! `csrgate demo`: the main job on the embedded examples, no cluster needed.
//!
//! Starts the sandbox API server and the controller in this process, applies the example
//! policies and a Node, submits the example CSRs as their requestors (a new administrator,
//! a node, a spoofing node, an escalation attempt, a forged request, someone the policies do
//! not cover), waits for the decisions and prints them.

use std::time::Duration;

use csrgate_api::CsrApprovalPolicy;
use csrgate_api::client::{Impersonate, client, conditions};
use csrgate_api::csr::{self, ConditionType};
use csrgate_api::user::impersonated_groups;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use kube::runtime::wait::{Condition as _, await_condition};

use serde::Serialize;

use super::{Error, Outcome};
use crate::cli::{DemoArgs, DemoOutput};
use crate::report::{Column, table_lines};

/// The example policies, embedded so the demo runs from anywhere.
const POLICIES: [&str; 5] = [
    include_str!("../../../../examples/policies/administrators.yaml"),
    include_str!("../../../../examples/policies/kubelet-serving.yaml"),
    include_str!("../../../../examples/policies/kubelet-client.yaml"),
    include_str!("../../../../examples/policies/workload-spiffe.yaml"),
    include_str!("../../../../examples/policies/lifetime-rollout-audit.yaml"),
];
const NODE: &str = include_str!("../../../../examples/nodes/worker-1.yaml");
/// One example CSR, submitted as the requestor its manifest names.
struct Example {
    /// What the example shows (the table's CASE column).
    story: &'static str,
    /// The manifest.
    yaml: &'static str,
    /// Whether a policy decides it, so that the demo waits for the decision; no policy covers
    /// the others, which stay Pending.
    decided: bool,
}

/// The example CSRs.
const CSRS: [Example; 9] = [
    Example {
        story: "a new administrator",
        yaml: include_str!("../../../../examples/csrs/jane.yaml"),
        decided: true,
    },
    Example {
        story: "an administrator asking for another name",
        yaml: include_str!("../../../../examples/csrs/jane-as-admin.yaml"),
        decided: true,
    },
    Example {
        story: "escalation to system:masters",
        yaml: include_str!("../../../../examples/csrs/jane-masters.yaml"),
        decided: true,
    },
    Example {
        story: "a forged signature",
        yaml: include_str!("../../../../examples/csrs/jane-forged.yaml"),
        decided: true,
    },
    Example {
        story: "someone no policy covers",
        yaml: include_str!("../../../../examples/csrs/mallory.yaml"),
        decided: false,
    },
    Example {
        story: "a node's serving certificate",
        yaml: include_str!("../../../../examples/csrs/worker-1-serving.yaml"),
        decided: true,
    },
    Example {
        story: "a node spoofing a service name",
        yaml: include_str!("../../../../examples/csrs/worker-1-spoofing.yaml"),
        decided: true,
    },
    Example {
        story: "a node renewing its client certificate",
        yaml: include_str!("../../../../examples/csrs/worker-1-client.yaml"),
        decided: true,
    },
    Example {
        story: "a workload's SPIFFE certificate",
        yaml: include_str!("../../../../examples/csrs/payments-api.yaml"),
        decided: true,
    },
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
    let admin = client(&kubeconfig, None).await?;
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
    csrs: Vec<(&'static Example, CertificateSigningRequest)>,
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
        for example in &CSRS {
            let mut csr: CertificateSigningRequest = serde_saphyr::from_str(example.yaml)?;
            label(&mut csr.metadata);
            csrs.push((example, csr));
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
            instance: None,
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
        for (example, csr) in &self.csrs {
            let user = csr.spec.username.clone().unwrap_or_default();
            let groups = impersonated_groups(csr.spec.groups.as_deref().unwrap_or_default());
            let acting = Impersonate::new(&user, &groups);
            let created =
                Api::<CertificateSigningRequest>::all(client(kubeconfig, Some(acting)).await?)
                    .create(&PostParams::default(), csr)
                    .await;
            let refused = created.err().map(|e| match e {
                kube::Error::Api(status) => short_refusal(status.message),
                other => other.to_string(),
            });
            submitted.push((example, csr, refused));
        }

        let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut rows = Vec::new();
        for (example, submitted, refused) in submitted {
            let name = submitted.metadata.name.clone().unwrap_or_default();
            let row = Row::new(example.story, submitted);
            let row = match refused {
                Some(message) => row.refused(message),
                None => row.read(&settled(&csrs, &name, example.decided, deadline).await?),
            };
            rows.push(row);
        }
        Ok(rows)
    }
}

/// The CSR once it is settled: decided (when `decided`, i.e. a policy covers it) and, when
/// approved, issued or failed by the signer; or as it is at `deadline`.
async fn settled(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    decided: bool,
    deadline: tokio::time::Instant,
) -> Result<CertificateSigningRequest, Error> {
    if decided {
        let signed =
            conditions::is_csr_issued().or(conditions::has_csr_condition(ConditionType::Failed));
        let done = conditions::has_csr_decision().and(
            conditions::has_csr_condition(ConditionType::Approved)
                .not()
                .or(signed),
        );
        let waited =
            tokio::time::timeout_at(deadline, await_condition(csrs.clone(), name, done)).await;
        // At the deadline the CSR is reported as it is (the table shows what is missing).
        if let Ok(found) = waited
            && let Some(csr) = found?
        {
            return Ok(csr);
        }
    }
    Ok(csrs.get(name).await?)
}

impl Row {
    /// The row of the example `story`, as submitted.
    fn new(story: &str, csr: &CertificateSigningRequest) -> Self {
        Self {
            case: story.to_owned(),
            csr: csr.metadata.name.clone().unwrap_or_default(),
            requestor: csr.spec.username.clone().unwrap_or_default(),
            signer: csr.spec.signer_name.clone(),
            decision: String::new(),
            reason: String::new(),
            message: String::new(),
            certificate: "-".to_owned(),
        }
    }

    /// The API server refused to create the CSR, with `message`.
    fn refused(self, message: String) -> Self {
        Self {
            decision: "Refused".to_owned(),
            reason: "(API server)".to_owned(),
            message,
            ..self
        }
    }

    /// The decision and certificate of `csr` as read back.
    fn read(self, csr: &CertificateSigningRequest) -> Self {
        let (decision, reason, message) = match csr::decision(csr) {
            Some(c) => (
                c.type_.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ),
            None => (
                "Pending".into(),
                "-".into(),
                "no policy decided: left for a person".into(),
            ),
        };
        let failed = csr::true_condition(csr, &[ConditionType::Failed]);
        let certificate = match (csr::certificate(csr), failed) {
            (Some(_), _) => "issued".to_owned(),
            (None, Some(c)) => {
                format!("signer failed: {}", c.reason.as_deref().unwrap_or_default())
            }
            (None, None) => "-".to_owned(),
        };
        Self {
            decision,
            reason,
            message,
            certificate,
            ..self
        }
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

/// The width `table` keeps within: a terminal of 100 columns.
const TABLE_WIDTH: usize = 100;

/// A column of the demo's tables.
const fn column(header: &'static str, cell: fn(&Row) -> String) -> Column<Row> {
    Column { header, cell }
}

/// The default table's columns (requestor, signer and message left out).
const COLUMNS: [Column<Row>; 5] = [
    column("CASE", |r| r.case.clone()),
    column("CSR", |r| r.csr.clone()),
    column("DECISION", |r| r.decision.clone()),
    column("REASON", |r| r.reason.clone()),
    column("CERTIFICATE", |r| r.certificate.clone()),
];

/// `-o wide`: every field, the message last.
const WIDE_COLUMNS: [Column<Row>; 8] = [
    column("CASE", |r| r.case.clone()),
    column("CSR", |r| r.csr.clone()),
    column("REQUESTOR", |r| r.requestor.clone()),
    column("SIGNER", |r| r.signer.clone()),
    column("DECISION", |r| r.decision.clone()),
    column("REASON", |r| r.reason.clone()),
    column("CERTIFICATE", |r| r.certificate.clone()),
    column("MESSAGE", |r| r.message.clone()),
];

/// [`COLUMNS`], each row followed by its message, indented and wrapped at word boundaries
/// within [`TABLE_WIDTH`] columns.
fn table(rows: &[Row]) -> String {
    const INDENT: &str = "    ";
    let wrap = textwrap::Options::new(TABLE_WIDTH)
        .initial_indent(INDENT)
        .subsequent_indent(INDENT);
    let lines = table_lines(&COLUMNS, rows);
    let mut out = String::from("\n");
    for (line, row) in lines
        .iter()
        .zip(std::iter::once(None).chain(rows.iter().map(Some)))
    {
        out.push_str(line.trim_end());
        out.push('\n');
        for wrapped in row
            .map(|r| textwrap::wrap(&r.message, &wrap))
            .unwrap_or_default()
        {
            out.push_str(&wrapped);
            out.push('\n');
        }
    }
    out
}

/// [`WIDE_COLUMNS`], unwrapped.
fn wide_table(rows: &[Row]) -> String {
    let mut out = String::from("\n");
    for line in table_lines(&WIDE_COLUMNS, rows) {
        out.push_str(&line);
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
