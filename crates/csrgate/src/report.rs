//! How decisions are printed: the `check --output json` shape of DESIGN.md, and the one
//! plain-text table printer (`check`, `demo`).

use std::fmt::Write as _;

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

/// A column of a plain-text table: its header and how to read one row's cell.
pub struct Column<R> {
    /// The header, upper case as kubectl prints them.
    pub header: &'static str,
    /// The cell of one row.
    pub cell: fn(&R) -> String,
}

/// The lines of a plain-text table, the header first: every column but the last padded to
/// its widest cell (header included, counted in characters) and followed by two spaces, the
/// last as it is (kubectl's `get` layout).
pub fn table_lines<R>(columns: &[Column<R>], rows: &[R]) -> Vec<String> {
    let cells: Vec<Vec<String>> =
        std::iter::once(columns.iter().map(|c| c.header.to_owned()).collect())
            .chain(
                rows.iter()
                    .map(|row| columns.iter().map(|c| (c.cell)(row)).collect()),
            )
            .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:width$}  ", width = widths[column]);
                }
            }
            line
        })
        .collect()
}

/// The columns of `check`'s table.
fn check_columns<'a>() -> [Column<CsrReport<'a>>; 5] {
    [
        Column {
            header: "CSR",
            cell: |r| r.csr.to_owned(),
        },
        Column {
            header: "DECISION",
            cell: |r| r.decision.to_owned(),
        },
        Column {
            header: "REASON",
            cell: |r| r.reason.unwrap_or("-").to_owned(),
        },
        Column {
            header: "POLICIES",
            cell: policies_cell,
        },
        Column {
            header: "MESSAGE",
            cell: |r| r.message.unwrap_or("-").to_owned(),
        },
    ]
}

/// Every covering policy as `name=Verdict`, marked `(audit)` and `(default would deny)`.
fn policies_cell(report: &CsrReport<'_>) -> String {
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
    if policies.is_empty() {
        "-".into()
    } else {
        policies
    }
}

/// A plain-text table, one row per CSR, columns padded to their widest cell.
pub fn table(reports: &[CsrReport<'_>]) -> String {
    let mut out = String::new();
    for line in table_lines(&check_columns(), reports) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
