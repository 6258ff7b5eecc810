//! `csrgate check`: the controller's decision, offline, for CSR manifests.

use std::collections::HashMap;
use std::io::Write;

use csrgate_policy::{CompiledPolicy, Engine, Inputs, NodeNames, Nodes};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

use super::{Error, Outcome};
use crate::cli::{CheckArgs, OutputFormat};
use crate::load::{self, Loaded};
use crate::report::{self, CsrReport};

/// A policy that did not compile, named by file.
#[derive(Debug, thiserror::Error)]
#[error("{}", .lines.join("\n"))]
pub struct InvalidPolicies {
    /// One `file: field: error` line per problem.
    pub lines: Vec<String>,
}

/// Compiles every loaded policy with `engine`.
///
/// # Errors
/// Any policy that is not Ready, with one line per error naming file and field.
pub fn compile_all(
    engine: &Engine,
    policies: &[Loaded<csrgate_api::CsrApprovalPolicy>],
) -> Result<Vec<CompiledPolicy>, InvalidPolicies> {
    let mut compiled = Vec::new();
    let mut lines = Vec::new();
    let mut names: HashMap<&str, &load::Source> = HashMap::new();
    for policy in policies {
        let name = policy.value.metadata.name.as_deref().unwrap_or("");
        if let Some(first) = names.insert(name, &policy.source) {
            lines.push(format!(
                "{}: metadata.name: policy {name:?} is also defined in {first}",
                policy.source
            ));
        }
        let one = engine.compile(&policy.value);
        lines.extend(
            one.errors()
                .iter()
                .map(|e| format!("{}: {e}", policy.source)),
        );
        compiled.push(one);
    }
    if lines.is_empty() {
        Ok(compiled)
    } else {
        Err(InvalidPolicies { lines })
    }
}

/// Nodes by name, for the `node` and `subjectNode` variables, trimmed as the controller
/// caches them.
pub fn nodes_by_name(nodes: Vec<Loaded<Node>>) -> HashMap<String, Node> {
    nodes
        .into_iter()
        .filter_map(|n| {
            let mut node = n.value;
            csrgate_policy::node_for_policies(&mut node);
            Some((node.metadata.name.clone()?, node))
        })
        .collect()
}

/// The Nodes a CSR's policies can read: its requestor's (`node`) and the one its CN names
/// (`subjectNode`), from the `--node` files.
pub fn nodes_for<'a>(
    engine: &Engine,
    csr: &CertificateSigningRequest,
    nodes: &'a HashMap<String, Node>,
) -> Nodes<'a> {
    NodeNames::of(engine, csr).find(|name| nodes.get(name))
}

/// What the decisions will lack because an input was not given: without `--node`, `node`
/// and `subjectNode` are null (so "no such Node yet" holds for every name); without
/// `--rbac`, every `authorizer` check errors. One line each, naming the policies concerned.
fn missing_inputs(args: &CheckArgs, policies: &[CompiledPolicy]) -> Vec<String> {
    let names = |reads: fn(&CompiledPolicy) -> bool| {
        policies
            .iter()
            .filter(|p| reads(p))
            .map(|p| format!("{:?}", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    let nodes = names(|p| p.reads_node() || p.reads_subject_node());
    if args.nodes.is_empty() && !nodes.is_empty() {
        lines.push(format!(
            "no --node given: `node` and `subjectNode` are null for every CSR, as if no Node existed (policies {nodes})"
        ));
    }
    let rbac = names(CompiledPolicy::reads_authorizer);
    if args.rbac.is_empty() && !rbac.is_empty() {
        lines.push(format!(
            "no --rbac given: every `authorizer` check errors (policies {rbac})"
        ));
    }
    lines
}

/// Runs `csrgate check`.
///
/// # Errors
/// Unreadable input or invalid policies.
pub fn run(args: &CheckArgs) -> Result<Outcome, Error> {
    let engine = Engine::new();
    let loaded = load::policies(&args.policies)?;
    let policies = compile_all(&engine, &loaded)?;
    // Warnings go to stderr, so `--output json` stays one JSON document on stdout.
    let mut stderr = std::io::stderr().lock();
    for (policy, compiled) in loaded.iter().zip(&policies) {
        for warning in compiled.warnings() {
            writeln!(
                stderr,
                "warning: {}: {}: {}",
                policy.source, warning.field_ref, warning.warning
            )?;
        }
    }
    for line in missing_inputs(args, &policies) {
        writeln!(stderr, "warning: {line}")?;
    }
    drop(stderr);
    let nodes = nodes_by_name(load::nodes(&args.nodes)?);
    let authorizer = load::authorizer(&args.rbac, "no RBAC given (--rbac)")?;
    let mut csrs = load::csrs(&args.csrs)?;
    for csr in &mut csrs {
        if let Some(user) = &args.as_user {
            csr.value.spec.username = Some(user.clone());
        }
        if !args.as_groups.is_empty() {
            // As the API server records them (and as `csrgate test` reads a case's groups).
            csr.value.spec.groups = Some(csrgate_api::user::authenticated_groups(&args.as_groups));
        }
    }
    let decisions: Vec<_> = csrs
        .iter()
        .map(|csr| {
            let inputs = Inputs {
                nodes: nodes_for(&engine, &csr.value, &nodes),
                authorizer: Some(authorizer.clone()),
            };
            engine.decide(&policies, &csr.value, &inputs)
        })
        .collect();
    let reports: Vec<CsrReport<'_>> = csrs
        .iter()
        .zip(&decisions)
        .map(|(csr, decision)| {
            CsrReport::new(csr.value.metadata.name.as_deref().unwrap_or(""), decision)
        })
        .collect();
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&reports)? + "\n",
        OutputFormat::Table => report::table(&reports),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Outcome::Success)
}
