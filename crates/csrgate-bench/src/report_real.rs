//! The report's part for the real control plane (`csrgate-bench real`): the controller
//! against the API floor on kube-apiserver, and csrgate against kube-controller-manager's
//! approver, with their summary keys.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::Result;
use crate::runs;

/// The results of `csrgate-bench real` for each N: (N, first decider, second decider).
pub struct RealResults {
    /// Controller and floor, jane's CSRs.
    pub e2e: Vec<(usize, Value, Value)>,
    /// csrgate and kube-controller-manager, kubelet client CSRs.
    pub kcm: Vec<(usize, Value, Value)>,
    /// `csrgate-bench scale` on the real control plane, glibc build.
    pub scale: Value,
    /// The same with the image's static musl build, when it was run (`--csrgate-musl`).
    pub scale_musl: Option<Value>,
}

/// Reads `real-e2e-{controller,floor}-<N>.json`, `kcm-{csrgate,kcm}-<N>.json`,
/// `scale-real.json` and, when present, `scale-real-musl.json` (its goals are then missed as
/// not measured).
///
/// # Errors
/// A missing or unreadable file, named.
pub fn read(results: &Path, real_csrs: &[usize], kcm_csrs: &[usize]) -> Result<RealResults> {
    let json = |name: String| super::report::read_json(&results.join(name));
    let pairs = |sizes: &[usize], first: &str, second: &str| {
        sizes
            .iter()
            .map(|&n| {
                Ok((
                    n,
                    json(format!("{first}-{n}.json"))?,
                    json(format!("{second}-{n}.json"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()
    };
    Ok(RealResults {
        e2e: pairs(real_csrs, "real-e2e-controller", "real-e2e-floor")?,
        kcm: pairs(kcm_csrs, "kcm-csrgate", "kcm-kcm")?,
        scale: json("scale-real.json".to_owned())?,
        scale_musl: if results.join("scale-real-musl.json").exists() {
            Some(json("scale-real-musl.json".to_owned())?)
        } else {
            None
        },
    })
}

fn number(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// The summary keys of issue #15: `real_floor_ratio_10k`, `real_p99_ms_10k`,
/// `real_floor_p99_ms_10k`, `kcm_ratio_10k`, `kcm_p99_ms_10k` (KCM's p99; csrgate's in
/// `kcm_csrgate_p99_ms_10k`), `policies_1k_ready_ms_real`,
/// `rss_mib_10k_{glibc,musl}` and `rss_mib_10k_1k_policies_{glibc,musl}` (MiB, on
/// kube-apiserver; `null` for a build not measured), and every run under `real_e2e`, `kcm`,
/// `scale_real` and `scale_real_musl`. Figures are medians over the runs; a ratio is the
/// ratio of the medians, with `<key>_min`/`<key>_max` over the runs paired by repeat.
pub fn summary(results: &RealResults) -> serde_json::Map<String, Value> {
    let e2e_10k = results.e2e.iter().find(|(n, ..)| *n == 10_000);
    let kcm_10k = results.kcm.iter().find(|(n, ..)| *n == 10_000);
    let pairs = |pairs: &[(usize, Value, Value)], first: &str, second: &str| {
        pairs
            .iter()
            .map(|(n, a, b)| {
                let mut entry = json!({"csrs": n, first: a, second: b});
                if let Value::Object(map) = &mut entry {
                    map.extend(runs::ratio_keys("ratio", Some((a, b)), "decisions_per_s"));
                }
                entry
            })
            .collect::<Vec<_>>()
    };
    let mut map = serde_json::Map::new();
    // Ratios of the medians; `_min`/`_max` range over the runs paired by repeat.
    map.extend(runs::ratio_keys(
        "real_floor_ratio_10k",
        e2e_10k.map(|(_, c, f)| (c, f)),
        "decisions_per_s",
    ));
    map.extend(runs::ratio_keys(
        "kcm_ratio_10k",
        kcm_10k.map(|(_, c, k)| (c, k)),
        "decisions_per_s",
    ));
    map.insert(
        "real_p99_ms_10k".into(),
        json!(e2e_10k.map(|(_, c, _)| number(c, "p99_latency_ms"))),
    );
    map.insert(
        "real_floor_p99_ms_10k".into(),
        json!(e2e_10k.map(|(_, _, f)| number(f, "p99_latency_ms"))),
    );
    map.insert(
        "kcm_p99_ms_10k".into(),
        json!(kcm_10k.map(|(_, _, k)| number(k, "p99_latency_ms"))),
    );
    // KCM's p99 is the key; csrgate's own p99 in the same comparison beside it.
    map.insert(
        "kcm_csrgate_p99_ms_10k".into(),
        json!(kcm_10k.map(|(_, c, _)| number(c, "p99_latency_ms"))),
    );
    map.insert(
        "real_e2e".into(),
        json!(pairs(&results.e2e, "controller", "floor")),
    );
    map.insert("kcm".into(), json!(pairs(&results.kcm, "csrgate", "kcm")));
    map.insert(
        "policies_1k_ready_ms_real".into(),
        json!(number(&results.scale, "policies_ready_ms")),
    );
    map.insert("scale_real".into(), results.scale.clone());
    for (build, scale) in [
        ("glibc", Some(&results.scale)),
        ("musl", results.scale_musl.as_ref()),
    ] {
        map.insert(
            format!("rss_mib_10k_{build}"),
            json!(scale.map(|s| number(s, "rss_mib_cached"))),
        );
        map.insert(
            format!("rss_mib_10k_1k_policies_{build}"),
            json!(scale.map(|s| number(s, "rss_mib_policies"))),
        );
    }
    map.insert(
        "scale_real_musl".into(),
        results.scale_musl.clone().unwrap_or(Value::Null),
    );
    map
}

/// The report's goal rows for the real control plane: (goal, measured, met).
pub fn goals(summary: &Value) -> Vec<(String, String, bool)> {
    let get = |key: &str| summary.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    vec![
        (
            "on kube-apiserver: controller / API floor throughput ≥ 0.8 at 10,000 CSRs".to_owned(),
            crate::report::ratio_goal_cell(summary, "real_floor_ratio_10k", 0.8, ""),
            get("real_floor_ratio_10k") >= 0.8,
        ),
        (
            "on kube-apiserver: csrgate decides kubelet client CSRs at least as fast as kube-controller-manager's approver (10,000 CSRs)"
                .to_owned(),
            crate::report::ratio_goal_cell(summary, "kcm_ratio_10k", 1.0, "×"),
            get("kcm_ratio_10k") >= 1.0,
        ),
        (
            "on kube-apiserver: 1,000 policies Ready (create → watch → compile → status) in < 1 s"
                .to_owned(),
            format!(
                "{} ms",
                runs::cell(&summary["scale_real"], "policies_ready_ms", 0)
            ),
            get("policies_1k_ready_ms_real") < 1000.0,
        ),
        (
            "on kube-apiserver, the image's static musl build: RSS ≤ 64 MiB with 10,000 pending CSRs and 5,000 Nodes cached"
                .to_owned(),
            mib(&summary["scale_real_musl"], "rss_mib_cached"),
            get("rss_mib_10k_musl") <= 64.0,
        ),
        (
            "on kube-apiserver, the image's static musl build: RSS ≤ 80 MiB with 1,000 policies loaded as well"
                .to_owned(),
            mib(&summary["scale_real_musl"], "rss_mib_policies"),
            get("rss_mib_10k_1k_policies_musl") <= 80.0,
        ),
    ]
}

/// A scale result's figure in MiB with its range, or why there is none.
fn mib(scale: &Value, key: &str) -> String {
    if scale.get(key).and_then(Value::as_f64).is_none() {
        "not measured (no `--csrgate-musl`)".to_owned()
    } else {
        format!("{} MiB", runs::cell(scale, key, 1))
    }
}

/// The header of a table of bursts; `{ratio}` is the last column's title.
pub const BURST_HEADER: &str = "| N | decider | runs | decisions/s | p50 ms | p99 ms | max ms | peak RSS MiB | CPU s | {ratio} |\n\
     | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

/// One table row per decider: each figure as `median (min–max)` over its runs.
pub fn row(md: &mut String, n: usize, name: &str, result: &Value, ratio: &str) {
    let _ = writeln!(
        md,
        "| {n} | {name} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
        runs::count(result),
        runs::cell(result, "decisions_per_s", 0),
        runs::cell(result, "p50_latency_ms", 0),
        runs::cell(result, "p99_latency_ms", 0),
        runs::cell(result, "max_latency_ms", 0),
        runs::cell(result, "peak_rss_mib", 1),
        runs::cell(result, "cpu_s", 2),
    );
}

/// A table of (N, first decider, second decider) runs: per N the second (the reference),
/// then the first with its throughput ratio to the second.
fn table(
    md: &mut String,
    runs: &[(usize, Value, Value)],
    (first, second): (&str, &str),
    ratio: &str,
) {
    let _ = writeln!(md, "{}", BURST_HEADER.replace("{ratio}", ratio));
    for (n, a, b) in runs {
        row(md, *n, second, b, "");
        row(md, *n, first, a, &runs::ratio_cell(a, b, "decisions_per_s"));
    }
}

/// The two sections of the report.
pub fn markdown(md: &mut String, results: &RealResults) {
    let _ = writeln!(
        md,
        "\n## End to end on kube-apiserver, and the API floor (`csrgate-bench real`)\n"
    );
    let _ = writeln!(
        md,
        "A fresh control plane per run (etcd, kube-apiserver and kube-controller-manager v1.37.2 \
         from `make kube`, on this machine's loopback, sharing its cores with the decider); \
         jane's client CSRs, otherwise as the sandbox table below.\n"
    );
    table(
        md,
        &results.e2e,
        ("controller", "floor"),
        "controller / floor",
    );
    let _ = writeln!(
        md,
        "\n## Kubelet client CSRs: csrgate against kube-controller-manager's approver\n"
    );
    let _ = writeln!(
        md,
        "N kubelet client CSRs, each created by its own node identity (`system:node:bench-<i>` in \
         `system:nodes`, a P-256 key, CN and O as a kubelet sends them), on a fresh control plane \
         each: decided once by KCM's `csrapproving` (a SubjectAccessReview for `selfnodeclient`, \
         then the approval), once by csrgate with KCM's approver off and `{}`. KCM's \
         `csrsigning` runs in both. CPU is the decider's: for KCM, its whole process (approver \
         and signer); KCM's CPU in the csrgate run (`kcm_cpu_s` in the results) is the signer's \
         share. KCM's client QPS: {}.\n",
        results
            .kcm
            .first()
            .and_then(|(_, c, _)| c["policy"].as_str())
            .unwrap_or("-"),
        results
            .kcm
            .first()
            .map_or("-".to_owned(), |(_, _, k)| k["kcm_api_qps"].to_string())
    );
    table(
        md,
        &results.kcm,
        ("csrgate", "kube-controller-manager"),
        "csrgate / KCM",
    );
    scale(md, results);
}

/// The scale runs on kube-apiserver, one row per build.
fn scale(md: &mut String, results: &RealResults) {
    let scale = &results.scale;
    let _ = writeln!(
        md,
        "\n### Scale on kube-apiserver (`csrgate-bench scale`, as on the sandbox below)\n\n\
         The controller over {} pending CSRs and {} Nodes, then {} policies created through the \
         API, on a fresh control plane per build. The static musl build is the image's \
         (`x86_64-unknown-linux-musl`, musl's allocator, built as the Dockerfile builds it).\n\n\
         | build | runs | RSS, CSRs and Nodes cached (MiB) | RSS, policies as well (MiB) | policies Ready after the first create (ms) | policies created (ms) | the same creates, no controller running (ms) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        scale["csrs"], scale["nodes"], scale["policies"],
    );
    let builds = [
        ("glibc (`cargo build --release`)", Some(scale)),
        ("static musl (the image)", results.scale_musl.as_ref()),
    ];
    for (build, run) in builds {
        let Some(run) = run else {
            let _ = writeln!(md, "| {build} | 0 | not measured | | | | |");
            continue;
        };
        let _ = writeln!(
            md,
            "| {build} | {} | {} | {} | {} | {} | {} |",
            runs::count(run),
            runs::cell(run, "rss_mib_cached", 1),
            runs::cell(run, "rss_mib_policies", 1),
            runs::cell(run, "policies_ready_ms", 0),
            runs::cell(run, "policies_created_ms", 0),
            runs::cell(run, "policies_created_floor_ms", 0),
        );
    }
}
