//! `csrgate demo`: the main job runs from the embedded examples and exits 0.

use crate::util::{Cluster, csrgate, kubeconfig_with_unreachable_current_context, run};

#[test]
fn demo_decides_every_example_as_the_story_says() {
    let (code, stdout, stderr) = run(csrgate().arg("demo"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let row = |csr: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == csr))
            .unwrap_or_else(|| panic!("no row for {csr}:\n{stdout}"))
            .to_owned()
    };
    for (csr, decision) in [
        ("jane", "Approved"),
        ("jane-as-admin", "Denied"),
        ("jane-masters", "Refused"),
        ("jane-forged", "Refused"),
        ("mallory", "Pending"),
        ("worker-1-serving", "Approved"),
        ("worker-1-spoofing", "Denied"),
        ("worker-1-client", "Approved"),
        ("payments-api", "Approved"),
    ] {
        let line = row(csr);
        assert!(line.contains(&format!(" {decision} ")), "{csr}: {line}");
        if decision == "Approved" {
            assert!(
                line.ends_with(" issued"),
                "{csr} approved but no certificate: {line}"
            );
        }
    }
}

/// Issue #16: the default table is readable in a 100-column terminal, and no message is cut:
/// each is wrapped beneath its row, whole as `-o json` and `-o wide` give it.
#[test]
fn the_demo_table_fits_100_columns_and_keeps_every_message_whole() {
    let (code, table, stderr) = run(csrgate().arg("demo"));
    assert_eq!(code, 0, "{table}{stderr}");
    let (code, json, stderr) = run(csrgate().args(["demo", "-o", "json"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, wide, stderr) = run(csrgate().args(["demo", "-o", "wide"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 9, "{json}");

    for line in table.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    // The lines of the table after the header: a row, then its message's wrapped lines.
    let lines: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("CASE "))
        .skip(1)
        .collect();
    for row in &rows {
        let (csr, message) = (
            row["csr"].as_str().unwrap(),
            row["message"].as_str().unwrap(),
        );
        let at = lines
            .iter()
            .position(|l| !l.starts_with(' ') && l.split_whitespace().any(|w| w == csr))
            .unwrap_or_else(|| panic!("no row for {csr}:\n{table}"));
        let wrapped: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("    "))
            .map(|l| l.trim())
            .collect();
        assert_eq!(wrapped.join(" "), message, "{csr}:\n{table}");
        // -o wide: requestor, signer and the whole message on the row itself.
        let wide_row = wide
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == csr))
            .unwrap();
        for field in ["requestor", "signer", "message"] {
            assert!(
                wide_row.contains(row[field].as_str().unwrap()),
                "{csr}: no {field} in {wide_row}"
            );
        }
    }
    assert!(
        wide.contains("REQUESTOR") && wide.contains("SIGNER"),
        "{wide}"
    );
    assert!(
        wide.lines().any(|l| l.chars().count() > 100),
        "-o wide is the unwrapped table"
    );
}

#[test]
fn demo_with_context_runs_on_that_context_of_the_kubeconfig() {
    let cluster = Cluster::start();
    let (kubeconfig, context) = kubeconfig_with_unreachable_current_context(&cluster);
    let kubeconfig = kubeconfig.to_str().unwrap();
    let (code, stdout, stderr) =
        run(csrgate().args(["demo", "-o", "json", "--kubeconfig", kubeconfig]));
    assert_eq!(
        code, 2,
        "the current context leads nowhere:\n{stdout}{stderr}"
    );

    let (code, stdout, stderr) = run(csrgate().args([
        "demo",
        "-o",
        "json",
        "--kubeconfig",
        kubeconfig,
        "--context",
        &context,
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("context {context}")), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let jane = rows.iter().find(|r| r["csr"] == "jane").unwrap();
    assert_eq!(jane["decision"], "Approved", "{jane:#}");

    let (code, _, stderr) =
        run(csrgate().args(["demo", "--kubeconfig", kubeconfig, "--context", "nosuch"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("no context \"nosuch\""), "{stderr}");
}
