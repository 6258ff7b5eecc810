//! The command line, as typed (clap derive).

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// `csrgate --version`: the release and the git commit it was built from (crates/csrgate/build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CSRGATE_GIT_COMMIT"),
    ")"
);

/// The file name kubectl runs for `kubectl csrgate ...`: a `kubectl-<name>` executable on PATH
/// is the plugin `kubectl <name>` (kubectl's plugin mechanism; `kubectl plugin list` shows it).
pub const KUBECTL_PLUGIN: &str = "kubectl-csrgate";

/// Parses the command line. Started as [`KUBECTL_PLUGIN`] (a symlink or a copy of the binary),
/// usage and help say `kubectl csrgate` instead of `csrgate`.
#[must_use]
pub fn parse() -> Cli {
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| Some(path.file_stem()?.to_string_lossy().into_owned()));
    let mut command = Cli::command();
    if invoked_as.as_deref() == Some(KUBECTL_PLUGIN) {
        command = command.bin_name("kubectl csrgate");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// Approve or deny Kubernetes CertificateSigningRequests by CsrApprovalPolicy.
///
/// Platform teams write CsrApprovalPolicy objects with CEL rules over the requestor, groups,
/// usages, expirationSeconds, signer and the parsed X.509 request; csrgate decides each
/// pending CSR and records why. `check` and `test` run the same decision offline, so a
/// pipeline can test policies before they merge.
#[derive(Debug, Parser)]
#[command(name = "csrgate", version = VERSION, about, long_about)]
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
    /// Run the operator: decide pending CSRs and write Approved or Denied conditions.
    Controller(ControllerArgs),
    /// The main job, no cluster needed: a sandbox API server, the controller and the example
    /// policies; submits example CSRs as different users and prints each decision.
    ///
    /// With --kubeconfig it runs against that cluster instead (kind, a real one): the
    /// objects it creates carry the label `app.kubernetes.io/managed-by=csrgate-demo` and are
    /// deleted at the end; it refuses to start when one of them already exists.
    Demo(DemoArgs),
    /// Run a local Kubernetes API server for CSRs, policies, events, leases and nodes, in
    /// memory, that kubectl and the controller talk to; it also plays the standard signer.
    Sandbox(SandboxArgs),
    /// For a person: make a key and a CSR, submit it, wait for the decision and the
    /// certificate, and write `<name>.key`, `<name>.crt` and `<name>.kubeconfig`.
    ///
    /// The kubeconfig's user needs `create`, `list` and `watch` on certificatesigningrequests
    /// (the wait watches the one CSR, as `kubectl wait` does).
    ///
    /// Exit status: 0 when the certificate was issued for the generated key and written;
    /// 1 when the CSR was Denied or Failed (the reason and message are printed); 2 on any
    /// other error (unreadable kubeconfig, refused create, timeout, a certificate for another
    /// key).
    // Boxed: by far the largest variant (clippy::large_enum_variant).
    Request(Box<RequestArgs>),
    /// Print a shell completion script, e.g. `source <(csrgate completion bash)`, or
    /// `csrgate completion zsh > "${fpath[1]}/_csrgate"`, or
    /// `csrgate completion fish > ~/.config/fish/completions/csrgate.fish`.
    Completion(CompletionArgs),
    /// Print the manual page (roff) of csrgate, or with --dir write one page per command
    /// (csrgate.1, csrgate-check.1, ...) into DIR: `csrgate man | man -l -`.
    Man(ManArgs),
    /// For an auditor: why a CSR was (or would be) approved or denied.
    ///
    /// Reads the CSR, every CsrApprovalPolicy and the requestor's Node from the cluster and
    /// shows the policies that cover the CSR, whether each applies, each validation's result
    /// and message, the decision csrgate would make now (with the controller's engine) and
    /// the decision recorded on the CSR, with a line saying whether they differ and which
    /// policy changed since. Policies reading `authorizer` are answered with
    /// SubjectAccessReviews of the requestor, as the controller answers them (your identity
    /// needs `create` on subjectaccessreviews). Exit status: 0 when explained; 2 when the CSR
    /// does not exist, the cluster has no policies, or the cluster cannot be read.
    Explain(ExplainArgs),
}

/// Arguments of `csrgate completion`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `csrgate man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write csrgate.1 and a page per command into this directory (created if missing)
    /// instead of printing csrgate.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Arguments of `csrgate explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The CertificateSigningRequest's name.
    #[arg(value_name = "CSR_NAME")]
    pub name: String,
    /// The kubeconfig to use; without it, KUBECONFIG, then ~/.kube/config, then in-cluster.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ExplainOutput::Text)]
    pub output: ExplainOutput,
}

/// Arguments of `csrgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run against this cluster instead of an embedded sandbox. The CRD must be installed;
    /// its user needs to create and delete CsrApprovalPolicies, Nodes and CSRs, to
    /// impersonate the example requestors and to approve CSRs (cluster-admin does); and the
    /// requestors who are not nodes (jane, mallory, system:serviceaccount:payments:api) must
    /// be allowed to create CSRs, which RBAC grants no one by default (nodes get it from the
    /// Node authorizer): on a test cluster, `kubectl apply -f
    /// examples/rbac/csr-requesters.yaml`. Without it their requests show as Refused.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubeconfig, the context to use instead of the current one.
    #[arg(long, value_name = "CONTEXT", requires = "kubeconfig")]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = DemoOutput::Table)]
    pub output: DemoOutput,
}

/// How `csrgate demo` prints its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoOutput {
    /// One row per CSR with the message wrapped beneath it, within 100 columns.
    Table,
    /// One row per CSR with every column (requestor, signer) and the message unwrapped.
    Wide,
    /// One JSON array, for pipelines.
    Json,
}

/// Arguments of `csrgate sandbox`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on (plain HTTP); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Where to write an admin kubeconfig naming the real address (the CA goes next to it).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: PathBuf,
    /// Also sign approved CSRs of this signer (besides kubernetes.io/*). Repeat for several.
    #[arg(long = "sign", value_name = "SIGNER")]
    pub sign: Vec<String>,
    /// A SubjectAccessReview rule, e.g. `allow,user=jane,verb=approve,resource=signers`;
    /// items: user=, group= (one of the subject's groups), verb=, apiGroup=, resource= (with
    /// `/subresource`, e.g. `certificatesigningrequests/selfnodeclient`), name=. Repeat for
    /// several; the first match wins; system:masters is always allowed, anything else that
    /// no rule allows is denied.
    #[arg(long = "sar-rule", value_name = "RULE")]
    pub sar_rules: Vec<String>,
    /// Watch events kept; a watch from an older resourceVersion gets 410 Gone.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub history: usize,
}

/// Arguments of `csrgate controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// The kubeconfig to use; without it, KUBECONFIG, then the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of the current one.
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Elect a leader among replicas through a Lease; only the leader writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "csrgate-system",
        env = "POD_NAMESPACE"
    )]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, value_name = "NAME", default_value = "csrgate-controller")]
    pub lease_name: String,
    /// Seconds a lease lasts unrenewed; a standby takes over within this time.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub lease_duration: u64,
    /// Treat every policy as Audit: decide and record (events, metrics, logs), never write.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not watch Nodes: the `node` variable is then always null, and policies that read
    /// `subjectNode` are not Ready (every name would look new).
    #[arg(long)]
    pub no_node_watch: bool,
    /// How many CSRs are decided at once (1 to 256); the others wait their turn, first
    /// come, first served. Each decision in flight may hold a thread while it waits for a
    /// SubjectAccessReview; evaluation itself takes at most one CPU per core.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(csrgate_controller::MAX_CONCURRENCY)))]
    pub concurrency: u16,
    /// Hold approvals of a signer while it has more than N pending CSRs (no Approved,
    /// Denied or Failed condition), as OpenShift's cluster-machine-approver does with
    /// maxPending: a flood (a leaked bootstrap token, a crash-looping kubelet) is not
    /// approved at the rate it arrives. Held CSRs stay pending, never denied for it; one
    /// Warning event (reason MaxPendingExceeded) and csrgate_max_pending_exceeded{signer}=1
    /// say so; they are decided as soon as the count falls to N or fewer. At least 1;
    /// default: no cap.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_pending_per_signer: Option<i64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `csrgate check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A policy file or directory (searched recursively for *.yaml / *.yml; multi-document
    /// YAML is fine). Repeat for several.
    #[arg(long = "policy", value_name = "PATH", required = true)]
    pub policies: Vec<PathBuf>,
    /// A file of Node manifests, used for the `node` variable (the Node of a
    /// `system:node:<name>` requestor) and `subjectNode` (the Node a `system:node:<name>` CN
    /// names). Without it both are null, so a rule that a Node must not exist yet passes.
    /// Repeat for several.
    #[arg(long = "node", value_name = "FILE")]
    pub nodes: Vec<PathBuf>,
    /// RBAC manifests (Role, ClusterRole, RoleBinding, ClusterRoleBinding; a file or
    /// directory, multi-document YAML and `kubectl get -o yaml` lists are fine) answering the
    /// `authorizer` variable's checks of each CSR's requestor, as kube-apiserver's RBAC
    /// authorizer would. Without it every such check errors ("no RBAC given (--rbac)"), which
    /// never approves. Repeat for several.
    #[arg(long = "rbac", value_name = "PATH")]
    pub rbac: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Evaluate as if USER had created the CSRs (replaces spec.username).
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Evaluate as if the creator were in GROUP (replaces spec.groups; system:authenticated is
    /// added, as the API server records it for every authenticated user). Repeat for several.
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

/// How `explain` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainOutput {
    /// One screen of text, for an auditor.
    Text,
    /// One JSON object (`recorded`, `now`, `policies`, `verdict`, `agrees`, ...).
    Json,
}

/// Arguments of `csrgate request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// Base name of the files written (`<name>.key`, `<name>.crt`, `<name>.kubeconfig`) and
    /// of the CertificateSigningRequest (`<name>`, or `<name>-<unix time>-<tag>` with --renew).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Subject common name (CN); for client certificates, the user name.
    #[arg(long, value_name = "CN")]
    pub cn: String,
    /// Subject organization (O); for client certificates, a group.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// The signer, e.g. kubernetes.io/kube-apiserver-client.
    #[arg(long, value_name = "SIGNER")]
    pub signer: String,
    /// Key usages, comma-separated or repeated, e.g. "client auth" or
    /// "digital signature,server auth".
    #[arg(long, value_name = "USAGE", value_delimiter = ',', required = true)]
    pub usages: Vec<String>,
    /// Requested lifetime (spec.expirationSeconds), e.g. 24h, 90m, 7d; at least 10m.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub expiration: std::time::Duration,
    /// Directory the files are written to (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The kubeconfig whose current context submits the CSR (its user is the requestor);
    /// without it, KUBECONFIG, then ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of the current one; its cluster is also the one
    /// the written kubeconfig names.
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Create the CSR as USER, as `kubectl --as` does (impersonation: the kubeconfig's user
    /// needs `impersonate` on users); USER is then the CSR's requestor.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// With --as, a group of the impersonated requestor. Repeat for several.
    #[arg(long = "as-group", value_name = "GROUP", requires = "as_user")]
    pub as_groups: Vec<String>,
    /// Kind of key to generate.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// A DNS name for the subjectAltName extension. Repeat for several.
    #[arg(long = "dns", value_name = "NAME")]
    pub dns_names: Vec<String>,
    /// An IP address for the subjectAltName extension. Repeat for several.
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// A URI (e.g. a SPIFFE ID) for the subjectAltName extension. Repeat for several.
    #[arg(long = "uri", value_name = "URI")]
    pub uris: Vec<String>,
    /// How long to wait for the decision and the certificate, e.g. 5m, 30s.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Renew: `<out>/<name>.crt` must exist; a new key and CSR (named `<name>-<unix time>-<tag>`)
    /// are made, and the files are replaced only once the new certificate is verified.
    #[arg(long)]
    pub renew: bool,
}

/// The kind of key `csrgate request` generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256, signed with SHA-256 (the default).
    EcdsaP256,
    /// ECDSA on NIST P-384, signed with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a 2048-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA with a 4096-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa4096,
}

/// A duration as people type it: `90s`, `10m`, `24h`, `7d`, or combined (`1h30m`); a bare
/// number is seconds.
///
/// # Errors
/// Text that is not such a duration, or one that overflows.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("invalid duration {text:?} (use e.g. 90s, 10m, 24h, 7d, 1h30m)");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let value: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    Ok(std::time::Duration::from_secs(total))
}
