//! `csrgate test`: run policy test suites so a pipeline can test policies before merging.
//!
//! A suite is a YAML document of kind `CsrPolicyTest` naming policy files, optional Node
//! files, and cases: a CSR (a manifest, or a PEM request plus the fields the API server would
//! fill in) and the decision and reason expected, and optionally RBAC manifests (`rbac:`)
//! answering the `authorizer` variable. Paths are relative to the suite file.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use csrgate_policy::{Engine, Inputs};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde::Deserialize;

use super::check::{compile_all, nodes_by_name, nodes_for};
use super::{Error, Outcome};
use crate::cli::TestArgs;
use crate::load::{self, LoadError, Loaded, Source};

/// The kind of a test suite document.
pub const SUITE_KIND: &str = "CsrPolicyTest";

/// A test suite.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Suite {
    #[allow(dead_code)] // checked by kind before deserializing; kept so the field is allowed
    api_version: Option<String>,
    #[allow(dead_code)] // as above
    kind: String,
    metadata: SuiteMetadata,
    /// Policy files or directories, relative to the suite.
    policies: Vec<PathBuf>,
    /// Node manifest files, relative to the suite.
    #[serde(default)]
    nodes: Vec<PathBuf>,
    /// RBAC manifest files or directories, relative to the suite, answering the
    /// `authorizer` variable (as `csrgate check --rbac`).
    #[serde(default)]
    rbac: Vec<PathBuf>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteMetadata {
    name: String,
}

/// One case: a CSR and what must be decided for it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    /// A CertificateSigningRequest manifest file.
    csr: Option<PathBuf>,
    /// A PEM certificate request file (used instead of `csr`).
    request: Option<PathBuf>,
    signer_name: Option<String>,
    usages: Option<Vec<String>>,
    expiration_seconds: Option<i32>,
    /// The requestor (what the API server puts in spec.username).
    username: Option<String>,
    groups: Option<Vec<String>>,
    expect: Expect,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    decision: ExpectedDecision,
    #[serde(default)]
    reason: Option<String>,
    /// Substrings the message must contain.
    #[serde(default)]
    message_contains: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
enum ExpectedDecision {
    Approved,
    Denied,
    Pending,
}

impl ExpectedDecision {
    fn as_str(self) -> &'static str {
        match self {
            ExpectedDecision::Approved => "Approved",
            ExpectedDecision::Denied => "Denied",
            ExpectedDecision::Pending => "Pending",
        }
    }
}

/// Runs `csrgate test`.
///
/// # Errors
/// A suite, policy, CSR or Node file that cannot be read, or an invalid policy.
pub fn run(args: &TestArgs) -> Result<Outcome, Error> {
    let mut suites = Vec::new();
    for file in load::yaml_files(&args.paths)? {
        for document in load::documents(&file)? {
            if load::kind_of(&document.value) == SUITE_KIND {
                suites.push(load::typed::<Suite>(document)?);
            }
        }
    }
    if suites.is_empty() {
        return Err(format!("no {SUITE_KIND} documents found in the given paths").into());
    }
    let mut out = String::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for suite in &suites {
        for result in run_suite(suite)? {
            match result.mismatch {
                None => {
                    passed += 1;
                    let _ = writeln!(out, "ok    {}/{}", suite.value.metadata.name, result.case);
                }
                Some(diff) => {
                    failed += 1;
                    let _ = writeln!(
                        out,
                        "FAIL  {}/{} ({})\n{diff}",
                        suite.value.metadata.name, result.case, suite.source
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Mismatch
    })
}

struct CaseResult {
    case: String,
    mismatch: Option<String>,
}

fn run_suite(suite: &Loaded<Suite>) -> Result<Vec<CaseResult>, Error> {
    let base = suite.source.path.parent().unwrap_or(Path::new("."));
    let relative = |paths: &[PathBuf]| paths.iter().map(|p| base.join(p)).collect::<Vec<_>>();
    let engine = Engine::new();
    let policies = compile_all(&engine, &load::policies(&relative(&suite.value.policies))?)?;
    let nodes = nodes_by_name(load::nodes(&relative(&suite.value.nodes))?);
    let authorizer = load::authorizer(
        &relative(&suite.value.rbac),
        "no RBAC given (rbac: in the suite)",
    )?;
    let mut results = Vec::new();
    for (i, case) in suite.value.cases.iter().enumerate() {
        let csr = case_csr(case, base, &suite.source, i)?;
        let inputs = Inputs {
            nodes: nodes_for(&engine, &csr, &nodes),
            authorizer: Some(authorizer.clone()),
        };
        let decision = engine.decide(&policies, &csr, &inputs);
        results.push(CaseResult {
            case: case.name.clone(),
            mismatch: compare(&case.expect, &decision),
        });
    }
    Ok(results)
}

/// The CSR a case describes, as the API server would store it.
fn case_csr(
    case: &Case,
    base: &Path,
    suite: &Source,
    index: usize,
) -> Result<CertificateSigningRequest, Error> {
    let field_error = |field: &str, message: &str| LoadError::Field {
        document: suite.clone(),
        field: format!("cases[{index}].{field}"),
        message: message.to_owned(),
    };
    let mut csr = match (&case.csr, &case.request) {
        (Some(path), None) => {
            let mut loaded = load::csrs(&[base.join(path)])?;
            if loaded.len() != 1 {
                return Err(field_error(
                    "csr",
                    "the file must hold exactly one CertificateSigningRequest",
                )
                .into());
            }
            loaded.remove(0).value
        }
        (None, Some(path)) => {
            let pem = std::fs::read(base.join(path)).map_err(|source| LoadError::Read {
                path: base.join(path),
                source,
            })?;
            let mut csr = CertificateSigningRequest::default();
            csr.metadata.name = Some(case.name.clone());
            csr.spec.request = ByteString(pem);
            csr.spec.usages = Some(vec!["client auth".into()]);
            csr
        }
        _ => {
            return Err(field_error(
                "csr",
                "set exactly one of csr (a manifest) or request (a PEM file)",
            )
            .into());
        }
    };
    if let Some(signer) = &case.signer_name {
        csr.spec.signer_name.clone_from(signer);
    }
    if csr.spec.signer_name.is_empty() {
        return Err(field_error("signerName", "is required with request").into());
    }
    if let Some(usages) = &case.usages {
        csr.spec.usages = Some(usages.clone());
    }
    if case.expiration_seconds.is_some() {
        csr.spec.expiration_seconds = case.expiration_seconds;
    }
    if let Some(user) = &case.username {
        csr.spec.username = Some(user.clone());
    }
    if let Some(groups) = &case.groups {
        // As the API server records them: with system:authenticated.
        csr.spec.groups = Some(csrgate_api::user::authenticated_groups(groups));
    }
    Ok(csr)
}

/// `None` when the decision is as expected, else a `-expected/+got` diff.
fn compare(expect: &Expect, decision: &csrgate_policy::Decision) -> Option<String> {
    let got_decision = decision.outcome().as_str();
    let got_reason = decision.reason();
    let message = decision.message();
    let missing: Vec<&String> = expect
        .message_contains
        .iter()
        .filter(|s| !message.contains(s.as_str()))
        .collect();
    let reason_ok = expect.reason.as_deref() == got_reason
        || (expect.reason.is_none() && expect.decision == ExpectedDecision::Pending);
    if expect.decision.as_str() == got_decision && reason_ok && missing.is_empty() {
        return None;
    }
    let mut diff = String::new();
    let mut line = |same: bool, field: &str, expected: &str, got: &str| {
        if same {
            let _ = writeln!(diff, "        {field}: {got}");
        } else {
            let _ = writeln!(diff, "      - {field}: {expected}");
            let _ = writeln!(diff, "      + {field}: {got}");
        }
    };
    line(
        expect.decision.as_str() == got_decision,
        "decision",
        expect.decision.as_str(),
        got_decision,
    );
    line(
        reason_ok,
        "reason",
        expect.reason.as_deref().unwrap_or("null"),
        got_reason.unwrap_or("null"),
    );
    for substring in missing {
        let _ = writeln!(diff, "      - message containing: {substring}");
    }
    let _ = write!(diff, "        message: {message}");
    Some(diff)
}
