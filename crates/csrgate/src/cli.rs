//! The command line, as typed (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Approve or deny Kubernetes CertificateSigningRequests by CsrApprovalPolicy.
///
/// Platform teams write CsrApprovalPolicy objects with CEL rules over the requestor, groups,
/// usages, expirationSeconds, signer and the parsed X.509 request; csrgate decides each
/// pending CSR and records why. `check` and `test` run the same decision offline, so a
/// pipeline can test policies before they merge.
#[derive(Debug, Parser)]
#[command(name = "csrgate", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide CSR manifests offline against policies, exactly as the controller would.
    ///
    /// Exit status: 0 when every CSR was evaluated (whatever the decision), 2 when an input
    /// cannot be read or a policy is invalid.
    Check(CheckArgs),
    /// Run policy test suites (CsrPolicyTest YAML): exit 1 on any mismatch.
    Test(TestArgs),
    /// Print the CsrApprovalPolicy CustomResourceDefinition as YAML.
    Crd,
}

/// Arguments of `csrgate check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A policy file or directory (searched recursively for *.yaml / *.yml; multi-document
    /// YAML is fine). Repeat for several.
    #[arg(long = "policy", value_name = "PATH", required = true)]
    pub policies: Vec<PathBuf>,
    /// A file of Node manifests, used for the `node` variable of `system:node:<name>`
    /// requestors. Repeat for several.
    #[arg(long = "node", value_name = "FILE")]
    pub nodes: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Evaluate as if USER had created the CSRs (replaces spec.username).
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Evaluate as if the creator were in GROUP (replaces spec.groups). Repeat for several.
    #[arg(long = "as-group", value_name = "GROUP")]
    pub as_groups: Vec<String>,
    /// CertificateSigningRequest manifests, as `kubectl get csr NAME -o yaml` prints them.
    #[arg(value_name = "CSR_FILE", required = true)]
    pub csrs: Vec<PathBuf>,
}

/// Arguments of `csrgate test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test suite files, or directories holding them (every YAML document of kind
    /// CsrPolicyTest is run; other documents are skipped).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

/// How `check` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One row per CSR, for people.
    Table,
    /// One JSON array, for pipelines.
    Json,
}
