//! How decisions are printed: the `check --output json` shape of DESIGN.md, and a table.

use csrgate_policy::{Decision, Verdict};
use serde::Serialize;

/// One CSR's decision as `csrgate check --output json` prints it.
#[derive(Debug, Serialize)]
pub struct CsrReport<'a> {
    /// The CSR's name.
    pub csr: &'a str,
    /// `Approved`, `Denied` or `Pending`.
    pub decision: &'static str,
    /// The condition reason, or null when Pending.
    pub reason: Option<&'static str>,
    /// The condition message (or, when Pending, why nothing was decided).
    pub message: Option<&'a str>,
    /// Every covering policy's verdict.
    pub policies: Vec<PolicyJson<'a>>,
}

/// One policy's verdict.
#[derive(Debug, Serialize)]
pub struct PolicyJson<'a> {
    /// The policy's name.
    pub name: &'a str,
    /// `Enforce` or `Audit`.
    pub mode: &'static str,
    /// `Approve`, `Fail`, `NotApplicable` or `NotReady`.
    pub verdict: &'static str,
    /// The failed validations (empty unless `Fail`).
    pub failures: Vec<FailureJson<'a>>,
    /// For an Audit policy with `defaultAction: Deny`: the `NoPolicyApproved` denial its
    /// default would have written; absent otherwise.
    #[serde(rename = "defaultDenial", skip_serializing_if = "Option::is_none")]
    pub default_denial: Option<&'a str>,
}

/// One failed validation.
#[derive(Debug, Serialize)]
pub struct FailureJson<'a> {
    /// The validation's name.
    pub validation: String,
    /// Its message.
    pub message: &'a str,
}

impl<'a> CsrReport<'a> {
    /// The report of `decision` for the CSR named `csr`.
    pub fn new(csr: &'a str, decision: &'a Decision) -> Self {
        Self {
            csr,
            decision: decision.outcome().as_str(),
            reason: decision.reason(),
            message: Some(decision.message()),
            policies: decision
                .policies
                .iter()
                .map(|p| PolicyJson {
                    name: &p.name,
                    mode: p.mode.as_str(),
                    verdict: p.verdict.as_str(),
                    failures: match &p.verdict {
                        Verdict::Fail(failures) => failures
                            .iter()
                            .map(|f| FailureJson {
                                validation: f.source.to_string(),
                                message: &f.message,
                            })
                            .collect(),
                        _ => Vec::new(),
                    },
                    default_denial: p.default_denial.as_deref(),
                })
                .collect(),
        }
    }
}

/// A plain-text table, one row per CSR, columns padded to their widest cell.
pub fn table(reports: &[CsrReport<'_>]) -> String {
    let mut rows = vec![[
        "CSR".to_owned(),
        "DECISION".to_owned(),
        "REASON".to_owned(),
        "POLICIES".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for report in reports {
        let policies = report
            .policies
            .iter()
            .map(|p| {
                format!(
                    "{}={}{}{}",
                    p.name,
                    p.verdict,
                    if p.mode == "Audit" { "(audit)" } else { "" },
                    if p.default_denial.is_some() {
                        "(default would deny)"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        rows.push([
            report.csr.to_owned(),
            report.decision.to_owned(),
            report.reason.unwrap_or("-").to_owned(),
            if policies.is_empty() {
                "-".into()
            } else {
                policies
            },
            report.message.unwrap_or("-").to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            rows.iter()
                .map(|r| r[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if column < 4 {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[column] - cell.chars().count() + 2));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}
