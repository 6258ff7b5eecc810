//! A small run of `csrgate-bench e2e --kubeconfig` against the real control plane, so that
//! the benchmark's cluster path does not rot (`make bench` runs the big ones).

// Tests fail loudly: a panic with the value is the report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use csrgate_kube::ControlPlane;

fn kubectl(plane: &ControlPlane, args: &[&str]) {
    let output = plane
        .kubectl()
        .current_dir(csrgate_kube::repository_root())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `csrgate-bench ARGS [--kubeconfig K] --csrgate <the csrgate built beside it> --out OUT`
/// from the repository root and asserts it succeeded, with its output as the message.
fn bench_ok(args: &[&str], kubeconfig: Option<&Path>, out: &Path) {
    let bench = Path::new(env!("CARGO_BIN_EXE_csrgate-bench"));
    let csrgate = bench.with_file_name("csrgate");
    assert!(
        csrgate.is_file(),
        "{} is not built: run `cargo build -p csrgate` first",
        csrgate.display()
    );
    let mut command = Command::new(bench);
    command
        .current_dir(csrgate_kube::repository_root())
        .args(args);
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    let output = command
        .arg("--csrgate")
        .arg(&csrgate)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The shared control plane with the CRD established and CSR creation granted to every
/// authenticated user (what the benchmarks' requestors need).
fn prepared_plane() -> &'static ControlPlane {
    let plane = ControlPlane::shared();
    kubectl(
        plane,
        &["apply", "-f", "crds/csrapprovalpolicies.csrgate.dev.yaml"],
    );
    kubectl(plane, &["apply", "-f", "examples/rbac/csr-requesters.yaml"]);
    kubectl(
        plane,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/csrapprovalpolicies.csrgate.dev",
        ],
    );
    plane
}

#[test]
fn e2e_with_a_kubeconfig_decides_a_burst_on_the_real_control_plane_both_ways() {
    let plane = prepared_plane();
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "e2e",
            "--csrs",
            "200",
            "--deciders",
            "floor,controller",
            "--repeats",
            "2",
        ],
        Some(plane.kubeconfig()),
        out.path(),
    );
    for decider in ["floor", "controller"] {
        let result: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join(format!("e2e-{decider}-200.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(result["decided"], 200, "{decider}: {result:#}");
        // Both runs kept; the headline is their median, between their min and max.
        let runs = result["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{decider}: {result:#}");
        assert!(runs.iter().all(|run| run["decided"] == 200), "{result:#}");
        let rate = |key: &str| result[key].as_f64().unwrap();
        assert!(rate("decisions_per_s") > 0.0);
        assert!(
            rate("decisions_per_s_min") <= rate("decisions_per_s")
                && rate("decisions_per_s") <= rate("decisions_per_s_max"),
            "{result:#}"
        );
    }
    // The bursts cleaned up after themselves.
    let left = plane
        .kubectl()
        .args(["get", "csr", "-l", "csrgate.dev/bench", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

/// `csrgate-bench real`, small and twice, as `make bench` runs it: the controller against
/// the floor, and the comparison with kube-controller-manager's approver; each decider alone
/// on a fresh control plane decides every CSR, in each repeat.
#[test]
fn real_compares_csrgate_with_the_floor_and_the_built_in_approver_in_repeats() {
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "real",
            "--csrs",
            "100",
            "--kcm-csrs",
            "100",
            "--kcm-qps",
            "200",
            "--no-scale",
            "--repeats",
            "2",
        ],
        None,
        out.path(),
    );
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.path().join(file)).unwrap()).unwrap()
    };
    for file in [
        "real-e2e-floor-100.json",
        "real-e2e-controller-100.json",
        "kcm-kcm-100.json",
        "kcm-csrgate-100.json",
    ] {
        let result = read(file);
        let runs = result["runs"].as_array().expect("every run kept");
        assert_eq!(runs.len(), 2, "{file}: {result:#}");
        assert!(
            runs.iter().all(|run| run["decided"] == 100),
            "{file}: {result:#}"
        );
    }
    for decider in ["kcm", "csrgate"] {
        let result = read(&format!("kcm-{decider}-100.json"));
        assert_eq!(result["decided"], 100, "{decider}: {result:#}");
        assert_eq!(result["kcm_api_qps"], 200, "{decider}: {result:#}");
        // Both deciders did work; in the csrgate run KCM still signs.
        assert!(result["cpu_s"].as_f64().unwrap() > 0.0, "{result:#}");
        assert!(result["kcm_cpu_s"].as_f64().unwrap() > 0.0, "{result:#}");
    }
}

/// `csrgate-bench scale --kubeconfig`, small, on the real control plane: the controller
/// caches the pending CSRs and Nodes, and every policy becomes Ready.
#[test]
fn scale_with_a_kubeconfig_runs_on_the_real_control_plane() {
    let plane = prepared_plane();
    let out = tempfile::tempdir().unwrap();
    bench_ok(
        &[
            "scale",
            "--csrs",
            "30",
            "--nodes",
            "20",
            "--policies",
            "25",
            "--result",
            "s.json",
        ],
        Some(plane.kubeconfig()),
        out.path(),
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("s.json")).unwrap()).unwrap();
    assert_eq!(result["policies"], 25, "{result:#}");
    assert!(
        result["policies_ready_ms"].as_f64().unwrap() > 0.0,
        "{result:#}"
    );
    assert!(
        result["rss_mib_cached"].as_f64().unwrap() > 1.0,
        "{result:#}"
    );
}
