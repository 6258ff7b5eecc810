//! `csrgate explain CSR_NAME`: for an auditor, why a certificate was (or would be) issued.
//!
//! It reads the CSR, every CsrApprovalPolicy, the requestor's Node and the Node the CN names
//! from the cluster and decides with the engine the controller uses
//! ([`csrgate_policy::Engine::decide`], the `authorizer` variable answered by
//! SubjectAccessReviews as the controller answers it), so what it says csrgate would decide
//! now is what the controller decides; beside that it shows the decision recorded on the CSR
//! and names what changed when the two differ.

use std::io::Write;

use csrgate_api::CsrApprovalPolicy;
use csrgate_policy::{
    CompiledPolicy, Decision, Engine, Inputs, NodeNames, Nodes, Verdict, reasons,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;

use super::{Error, Outcome};
use crate::cli::{ExplainArgs, ExplainOutput};
use crate::report::CsrReport;

/// What `explain` could not do; each is one line, and the command exits 2.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The kubeconfig could not be read or used.
    #[error("cannot use the kubeconfig {0}")]
    Kubeconfig(String, #[source] Box<dyn std::error::Error + Send + Sync>),
    /// No CSR of that name.
    #[error("CertificateSigningRequest {0:?} not found")]
    CsrNotFound(String),
    /// No CsrApprovalPolicy at all: nothing to explain with.
    #[error("no CsrApprovalPolicy in the cluster: csrgate decides nothing there")]
    NoPolicies,
    /// An API call failed.
    #[error("cannot read {what} from the cluster")]
    Api {
        /// What was being read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Runs `csrgate explain`.
///
/// # Errors
/// [`ExplainError`]: unreadable kubeconfig, unknown CSR, no policies, an API failure.
pub fn run(args: &ExplainArgs) -> Result<Outcome, Error> {
    // Multi-thread: the `authorizer` variable's SubjectAccessReviews wait from this thread
    // while a worker drives the I/O (see `csrgate_controller::AccessReviews`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(ExplainError::Runtime)?;
    let engine = Engine::new();
    let (cluster, client) = runtime.block_on(read_cluster(&engine, args))?;
    let compiled: Vec<CompiledPolicy> = cluster
        .policies
        .iter()
        .map(|policy| engine.compile(policy))
        .collect();
    let reviews = csrgate_controller::AccessReviews::new(
        client,
        runtime.handle().clone(),
        std::sync::Arc::new(csrgate_controller::Metrics::default()),
    );
    let nodes = Nodes {
        requestor: cluster.node.as_ref(),
        subject: cluster.subject_node.as_ref(),
    };
    let inputs = Inputs {
        nodes,
        authorizer: Some(std::sync::Arc::new(reviews)),
    };
    let decision = engine.decide(&compiled, &cluster.csr, &inputs);
    let explanation = Explanation::new(&cluster, &decision);
    let text = match args.output {
        ExplainOutput::Json => serde_json::to_string_pretty(&explanation)? + "\n",
        ExplainOutput::Text => explanation.text(),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Outcome::Success)
}

/// What `explain` reads from the cluster.
struct Cluster {
    csr: CertificateSigningRequest,
    policies: Vec<CsrApprovalPolicy>,
    /// The Node of a `system:node:<name>` requestor, trimmed as the controller caches it.
    node: Option<Node>,
    /// The Node the request's CN names (`system:node:<name>`), trimmed the same way.
    subject_node: Option<Node>,
}

/// The cluster's CSR, policies and Node, and the client that read them.
async fn read_cluster(
    engine: &Engine,
    args: &ExplainArgs,
) -> Result<(Cluster, kube::Client), ExplainError> {
    let client = client(args).await?;
    let api = |what: &str| {
        let what = what.to_owned();
        move |source| ExplainError::Api { what, source }
    };
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = csrs
        .get_opt(&args.name)
        .await
        .map_err(api("the CSR"))?
        .ok_or_else(|| ExplainError::CsrNotFound(args.name.clone()))?;
    let policies: Api<CsrApprovalPolicy> = Api::all(client.clone());
    let policies = policies
        .list(&ListParams::default())
        .await
        .map_err(api("CsrApprovalPolicies"))?
        .items;
    if policies.is_empty() {
        return Err(ExplainError::NoPolicies);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let names = NodeNames::of(engine, &csr);
    let node = read_node(&nodes, names.requestor.as_deref()).await?;
    let subject_node = if names.subject == names.requestor {
        node.clone()
    } else {
        read_node(&nodes, names.subject.as_deref()).await?
    };
    let cluster = Cluster {
        csr,
        policies,
        node,
        subject_node,
    };
    Ok((cluster, client))
}

/// The Node of that name, trimmed as the controller caches it; `None` for no name or no Node.
async fn read_node(nodes: &Api<Node>, name: Option<&str>) -> Result<Option<Node>, ExplainError> {
    let Some(name) = name else {
        return Ok(None);
    };
    let mut node = nodes
        .get_opt(name)
        .await
        .map_err(|source| ExplainError::Api {
            what: format!("Node {name:?}"),
            source,
        })?;
    if let Some(node) = &mut node {
        csrgate_policy::node_for_policies(node);
    }
    Ok(node)
}

/// A client from `--kubeconfig` (else KUBECONFIG, else ~/.kube/config, else in-cluster)
/// and `--context`.
async fn client(args: &ExplainArgs) -> Result<kube::Client, ExplainError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let source = args
        .kubeconfig
        .as_ref()
        .map_or_else(|| "(default)".to_owned(), |p| p.display().to_string());
    let fail =
        |e: Box<dyn std::error::Error + Send + Sync>| ExplainError::Kubeconfig(source.clone(), e);
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| fail(e.into()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| fail(e.into()))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(e.into()))?,
        None => kube::Config::infer().await.map_err(|e| fail(e.into()))?,
    };
    kube::Client::try_from(config).map_err(|e| fail(e.into()))
}

/// Everything `explain` shows, and its `-o json` shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Explanation<'a> {
    csr: &'a str,
    signer_name: &'a str,
    username: Option<&'a str>,
    groups: &'a [String],
    /// Whether `status.certificate` holds an issued certificate.
    certificate_issued: bool,
    /// The Approved, Denied or Failed condition on the CSR, if any.
    recorded: Option<Recorded<'a>>,
    /// What csrgate decides now, in `csrgate check --output json`'s shape.
    now: CsrReport<'a>,
    /// Each covering policy, with each of its validations.
    policies: Vec<PolicyExplanation<'a>>,
    /// One sentence comparing `recorded` with `now`.
    verdict: String,
    /// Whether the decision now is the recorded one (false when nothing is recorded).
    agrees: bool,
}

/// A decision recorded on the CSR.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Recorded<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    last_update_time: Option<String>,
    /// `csrgate`, or `other` (a person with `kubectl certificate approve`, another approver).
    by: &'static str,
    /// The policies its message names, with the generation then and now.
    policies: Vec<NamedGeneration>,
}

/// A policy named in a recorded message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NamedGeneration {
    name: String,
    /// The generation the message names.
    generation: i64,
    /// The policy's generation now; null when it was deleted since.
    current_generation: Option<i64>,
}

/// One covering policy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyExplanation<'a> {
    name: &'a str,
    generation: i64,
    mode: &'static str,
    /// `Approve`, `Fail`, `NotApplicable` or `NotReady`.
    verdict: &'static str,
    /// False when a matchCondition is false.
    applies: bool,
    /// The matchCondition that was false, when one was.
    unmatched: Option<&'a str>,
    /// Why it is not Ready, when it is not.
    not_ready: Option<&'a str>,
    validations: Vec<ValidationResult<'a>>,
}

/// One validation's result.
#[derive(Debug, Serialize)]
struct ValidationResult<'a> {
    name: &'a str,
    /// `true`, `false`, `error` or `notEvaluated` (the policy does not apply or is not Ready).
    result: &'static str,
    message: Option<&'a str>,
}

impl<'a> Explanation<'a> {
    fn new(cluster: &'a Cluster, decision: &'a Decision) -> Self {
        let csr = &cluster.csr;
        let name = csr.metadata.name.as_deref().unwrap_or("");
        let recorded =
            csrgate_api::csr::final_condition(csr).map(|c| Recorded::new(c, &cluster.policies));
        let now = CsrReport::new(name, decision);
        let (verdict, agrees) = compare(recorded.as_ref(), &now);
        let policies = decision
            .policies
            .iter()
            .filter_map(|report| {
                let policy = cluster
                    .policies
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(report.name.as_str()))?;
                Some(PolicyExplanation::new(policy, report))
            })
            .collect();
        Self {
            csr: name,
            signer_name: &csr.spec.signer_name,
            username: csr.spec.username.as_deref(),
            groups: csr.spec.groups.as_deref().unwrap_or_default(),
            certificate_issued: csrgate_api::csr::certificate(csr).is_some(),
            recorded,
            now,
            policies,
            verdict,
            agrees,
        }
    }
}

impl<'a> Recorded<'a> {
    fn new(
        condition: &'a CertificateSigningRequestCondition,
        policies: &[CsrApprovalPolicy],
    ) -> Self {
        let reason = condition.reason.as_deref();
        let message = condition.message.as_deref();
        let by_csrgate = reason.is_some_and(|r| reasons::CONDITIONS.contains(&r))
            && message.is_some_and(|m| m.starts_with("csrgate: "));
        let named = message.map(named_generations).unwrap_or_default();
        Self {
            type_: &condition.type_,
            reason,
            message,
            last_update_time: condition.last_update_time.as_ref().map(|t| t.0.to_string()),
            by: if by_csrgate { "csrgate" } else { "other" },
            policies: named
                .into_iter()
                .map(|(name, generation)| {
                    let current_generation = policies
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                        .and_then(|p| p.metadata.generation);
                    NamedGeneration {
                        name,
                        generation,
                        current_generation,
                    }
                })
                .collect(),
        }
    }
}

/// The `CsrApprovalPolicy "<name>" (generation <g>)` mentions of a message csrgate wrote
/// (DESIGN.md, "The decision", step 6), in order, each once.
fn named_generations(message: &str) -> Vec<(String, i64)> {
    const PREFIX: &str = "CsrApprovalPolicy ";
    let mut found: Vec<(String, i64)> = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find(PREFIX) {
        rest = &rest[start + PREFIX.len()..];
        // Names are written with Rust's `{:?}`: a quoted string without escapes, as
        // Kubernetes object names hold none.
        let Some(quoted) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = quoted.find('"') else { break };
        let name = &quoted[..end];
        let after = &quoted[end + 1..];
        let generation = after
            .strip_prefix(" (generation ")
            .and_then(|g| g.split(')').next())
            .and_then(|g| g.parse::<i64>().ok());
        if let Some(generation) = generation
            && !found.iter().any(|(n, g)| n == name && *g == generation)
        {
            found.push((name.to_owned(), generation));
        }
        rest = after;
    }
    found
}

/// One sentence on how the recorded decision compares with the one csrgate makes now.
fn compare(recorded: Option<&Recorded<'_>>, now: &CsrReport<'_>) -> (String, bool) {
    let Some(recorded) = recorded else {
        let text = match now.decision {
            "Pending" => "Not decided yet; csrgate would leave it pending.".to_owned(),
            decision => format!(
                "Not decided yet; csrgate would decide {decision} ({}) now.",
                now.reason.unwrap_or("-")
            ),
        };
        return (text, false);
    };
    if recorded.by == "other" {
        let text = format!(
            "{} by a person or another approver (reason {}), not by csrgate; csrgate would decide {} now.",
            recorded.type_,
            recorded.reason.unwrap_or("none"),
            now.decision
        );
        return (text, recorded.type_ == now.decision);
    }
    let changed = changed_policies(recorded);
    // The decision is its condition type and reason; the message names policy generations,
    // so an edit of any policy it names (an Audit one too) changes it without changing what
    // was decided.
    if recorded.type_ == now.decision && recorded.reason == now.reason {
        let text = if recorded.message == now.message {
            "The decision csrgate makes now is the one recorded.".to_owned()
        } else {
            format!(
                "The decision csrgate makes now is the one recorded ({}, {}); only its message differs: {}.",
                recorded.type_,
                recorded.reason.unwrap_or("-"),
                changed.unwrap_or_else(|| "an input changed since".to_owned())
            )
        };
        return (text, true);
    }
    let why = changed.unwrap_or_else(|| {
        "no policy it names changed; an input did: a Node the policies read (the requestor's, or \
         the one the CN names, which may have been created since), or the requestor's RBAC"
            .to_owned()
    });
    let text = format!(
        "DIFFERS: recorded {} ({}), csrgate would decide {} ({}) now: {why}.",
        recorded.type_,
        recorded.reason.unwrap_or("-"),
        now.decision,
        now.reason.unwrap_or("-")
    );
    (text, false)
}

/// The policies the recorded message names that changed or were deleted since, as one
/// sentence; `None` when none did.
fn changed_policies(recorded: &Recorded<'_>) -> Option<String> {
    let changed: Vec<String> = recorded
        .policies
        .iter()
        .filter(|p| p.current_generation != Some(p.generation))
        .map(|p| match p.current_generation {
            Some(now) => format!(
                "CsrApprovalPolicy {:?} changed since (generation {} then, {now} now)",
                p.name, p.generation
            ),
            None => format!("CsrApprovalPolicy {:?} was deleted since", p.name),
        })
        .collect();
    (!changed.is_empty()).then(|| changed.join("; "))
}

impl<'a> PolicyExplanation<'a> {
    fn new(policy: &'a CsrApprovalPolicy, report: &'a csrgate_policy::PolicyReport) -> Self {
        let failures = match &report.verdict {
            Verdict::Fail(failures) => failures.as_slice(),
            _ => &[],
        };
        let evaluated = matches!(report.verdict, Verdict::Approve | Verdict::Fail(_));
        let validations = policy
            .spec
            .validations
            .iter()
            .map(|v| {
                let failure = failures
                    .iter()
                    .find(|f| f.source.validation() == Some(v.name.as_str()));
                let result = match failure {
                    _ if !evaluated => "notEvaluated",
                    None => "true",
                    Some(f) if f.message.starts_with("expression could not be evaluated") => {
                        "error"
                    }
                    Some(_) => "false",
                };
                ValidationResult {
                    name: &v.name,
                    result,
                    message: failure.map(|f| f.message.as_str()),
                }
            })
            .collect();
        Self {
            name: &report.name,
            generation: report.generation,
            mode: report.mode.as_str(),
            verdict: report.verdict.as_str(),
            applies: report.verdict != Verdict::NotApplicable,
            unmatched: report.unmatched.as_deref(),
            not_ready: match &report.verdict {
                Verdict::NotReady(why) => Some(why),
                _ => None,
            },
            validations,
        }
    }
}

impl Explanation<'_> {
    /// The one-screen text form.
    fn text(&self) -> String {
        let mut out = format!(
            "CSR:        {}\nSigner:     {}\nRequestor:  {} (groups: {})\n",
            self.csr,
            self.signer_name,
            self.username.unwrap_or("-"),
            if self.groups.is_empty() {
                "-".to_owned()
            } else {
                self.groups.join(", ")
            }
        );
        match &self.recorded {
            Some(r) => out.push_str(&format!(
                "Recorded:   {} ({}) by {}{}\n            {}\n",
                r.type_,
                r.reason.unwrap_or("-"),
                if r.by == "csrgate" {
                    "csrgate"
                } else {
                    "a person or another approver"
                },
                r.last_update_time
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                r.message.unwrap_or("-")
            )),
            None => out.push_str("Recorded:   nothing yet (pending)\n"),
        }
        out.push_str(&format!(
            "Now:        {}{}\n            {}\nCertificate: {}\n\n",
            self.now.decision,
            self.now
                .reason
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            self.now.message.unwrap_or("-"),
            if self.certificate_issued {
                "issued"
            } else {
                "not issued"
            }
        ));
        out.push_str(&self.policies_text());
        out.push('\n');
        out.push_str(&self.verdict);
        out.push('\n');
        out
    }

    fn policies_text(&self) -> String {
        if self.policies.is_empty() {
            return format!("No CsrApprovalPolicy covers signer {}.\n", self.signer_name);
        }
        let mut out = String::from("Policies covering the signer:\n");
        for policy in &self.policies {
            out.push_str(&format!(
                "  {} (generation {}, {}): {}{}\n",
                policy.name,
                policy.generation,
                if policy.mode == "Audit" {
                    "Audit: recorded, never decides"
                } else {
                    policy.mode
                },
                policy.verdict,
                policy
                    .not_ready
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            ));
            if !policy.applies {
                match policy.unmatched {
                    Some(name) => out.push_str(&format!(
                        "    does not apply: matchCondition {name:?} is false\n"
                    )),
                    None => out.push_str("    does not apply: a matchCondition is false\n"),
                }
                continue;
            }
            for v in &policy.validations {
                let mark = match v.result {
                    "true" => "pass",
                    "false" => "FAIL",
                    "error" => "ERROR",
                    _ => "-",
                };
                out.push_str(&format!("    {mark:<5} {}", v.name));
                if let Some(message) = v.message {
                    out.push_str(&format!(": {message}"));
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_generations_reads_every_policy_of_a_csrgate_message_once() {
        let message = "csrgate: denied by CsrApprovalPolicy \"a\" (generation 3): v: no; \
                       denied by CsrApprovalPolicy \"b-2\" (generation 12): w: \"quoted\" CsrApprovalPolicy";
        assert_eq!(
            named_generations(message),
            [("a".to_owned(), 3), ("b-2".to_owned(), 12)]
        );
        assert!(
            named_generations("This CSR was approved by kubectl certificate approve.").is_empty()
        );
    }
}
