//! The Grafana dashboard (deploy/components/grafana-dashboard/csrgate.json, and the same file in
//! the chart): every PromQL query parses, and every metric it reads is one that `csrgate
//! controller` really serves on /metrics, read from a running controller, not from a list kept
//! by hand. A renamed metric or a typo in a query fails here instead of drawing an empty panel.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use crate::controller::create_as;
use crate::util::{Cluster, http, repo};

const DASHBOARD: &str = "deploy/components/grafana-dashboard/csrgate.json";
const CHART_DASHBOARD: &str = "charts/csrgate/dashboards/csrgate.json";

/// Grafana's interval variables, replaced by a duration so that the query parses as PromQL.
const GRAFANA_INTERVALS: [&str; 3] = ["$__rate_interval", "$__interval", "$__range"];

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap()
}

/// Every `expr` of the dashboard, wherever it sits (panels, rows' nested panels).
fn queries(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => queries(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| queries(item, found)),
        _ => {}
    }
}

/// What a query reads: the metric name of every selector, and every label it names (in
/// matchers and in `by (...)` / `without (...)`).
#[derive(Default)]
struct Reads {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

impl Reads {
    fn add(&mut self, selector: &VectorSelector) {
        let mut name = selector.name.clone();
        for matcher in &selector.matchers.matchers {
            if matcher.name == "__name__" {
                name = Some(matcher.value.clone());
            } else {
                self.labels.insert(matcher.name.clone());
            }
        }
        self.metrics
            .insert(name.unwrap_or_else(|| "<selector without a metric name>".to_owned()));
    }
}

impl ExprVisitor for Reads {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(selector) => self.add(selector),
            Expr::MatrixSelector(matrix) => self.add(&matrix.vs),
            Expr::Aggregate(aggregate) => {
                if let Some(modifier) = &aggregate.modifier {
                    self.labels.extend(modifier.labels().labels.iter().cloned());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// What a query reads, or the parse error with the query.
fn reads(query: &str) -> Result<Reads, String> {
    let promql = GRAFANA_INTERVALS
        .iter()
        .fold(query.to_owned(), |q, variable| q.replace(variable, "5m"));
    let expr = parser::parse(&promql).map_err(|e| format!("{query}: {e}"))?;
    let mut reads = Reads::default();
    walk_expr(&mut reads, &expr)?;
    Ok(reads)
}

/// The metric names a query reads.
fn metric_names(query: &str) -> Result<BTreeSet<String>, String> {
    reads(query).map(|r| r.metrics)
}

/// The label names of each series in an OpenMetrics exposition's samples.
fn series_labels(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once(['{', ' ']) else {
            continue;
        };
        let set = labels.entry(name.to_owned()).or_default();
        if line.as_bytes().get(name.len()) == Some(&b'{') {
            let inside = rest.rsplit_once('}').map_or("", |(inside, _)| inside);
            set.extend(
                inside
                    .split("\",")
                    .filter_map(|pair| pair.split_once('=').map(|(label, _)| label.to_owned())),
            );
        }
    }
    labels
}

/// The series names an OpenMetrics exposition offers, from its `# TYPE` lines (which
/// prometheus-client writes for every registered metric, also before its first sample): a
/// counter `x` is queried as `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    let mut series = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            _ => &[""],
        };
        series.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    series
}

/// What is wrong with the queries against an exposition: a query that does not parse, a metric
/// it does not export, a label that none of the query's metrics carries.
fn problems(queries: &[String], exposition: &str) -> Vec<String> {
    let exported = exported_series(exposition);
    let labels = series_labels(exposition);
    let mut found = Vec::new();
    for query in queries {
        let reads = match reads(query) {
            Ok(reads) => reads,
            Err(error) => {
                found.push(format!("does not parse: {error}"));
                continue;
            }
        };
        for name in reads.metrics.iter().filter(|n| !exported.contains(*n)) {
            found.push(format!("{query}: {name} is not exported"));
        }
        let carried: BTreeSet<&String> = reads
            .metrics
            .iter()
            .filter_map(|m| labels.get(m))
            .flatten()
            .collect();
        for label in reads.labels.iter().filter(|l| !carried.contains(l)) {
            found.push(format!("{query}: no metric it reads has the label {label}"));
        }
    }
    found
}

/// What a controller on a sandbox serves on /metrics once every metric `wanted` has a sample
/// (prometheus-client writes a family only after its first sample), or after 30 s. It is
/// made to decide the example CSRs (decisions, latency, Audit verdicts, policy readiness),
/// to keep one pending (no policy covers its signer), and to meet a 500 and a 403 on approval
/// writes (API errors, reconcile errors, forbidden approvals).
fn served_metrics(wanted: &BTreeSet<String>) -> String {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/"]);
    let (_, metrics) = cluster.start_controller(&[]);
    let approval = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    for (csr, status) in [("jane", 500), ("jane-as-admin", 403)] {
        cluster.fault(
            "faults/fail",
            Some(&format!(
                r#"{{"method":"PUT","path_prefix":"{approval}/{csr}/approval","status":{status},"count":1}}"#
            )),
        );
    }
    for csr in ["jane", "jane-as-admin", "breakglass-sam", "worker-1-client"] {
        let (code, _, stderr) = create_as(&cluster, &format!("examples/csrs/{csr}.yaml"));
        assert_eq!(code, 0, "create {csr}: {stderr}");
    }
    let uncovered = std::fs::read_to_string(repo("examples/csrs/jane.yaml"))
        .unwrap()
        .replace("name: jane", "name: nobody-covers")
        .replace(
            "kubernetes.io/kube-apiserver-client",
            "example.com/uncovered",
        );
    let path = crate::util::write(cluster.dir.path(), "uncovered.yaml", &uncovered);
    cluster.kubectl_ok(&["create", "-f", path.to_str().unwrap()]);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, text) = http("GET", &format!("http://{metrics}/metrics"), None);
        assert_eq!(status, 200, "GET /metrics: {text}");
        let missing = wanted.difference(&exported_series(&text)).count();
        if missing == 0 || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn every_dashboard_query_reads_only_metrics_the_controller_serves() {
    let mut found = Vec::new();
    queries(&dashboard(), &mut found);
    assert!(found.len() >= 9, "only {} queries: {found:?}", found.len());
    let read: BTreeSet<String> = found
        .iter()
        .flat_map(|q| metric_names(q).unwrap_or_default())
        .collect();
    let exposition = served_metrics(&read);
    let unknown = problems(&found, &exposition);
    assert!(
        unknown.is_empty(),
        "{}\n/metrics served:\n{exposition}",
        unknown.join("\n")
    );

    // What the issue asks the dashboard to show, each by the metric that measures it.
    for metric in [
        "csrgate_decisions_total",
        "csrgate_decision_duration_seconds_bucket",
        "csrgate_pending_csrs",
        "csrgate_policy_ready",
        "csrgate_api_errors_total",
    ] {
        assert!(read.contains(metric), "no panel reads {metric}");
    }
    assert!(
        found.iter().any(|q| q.contains("histogram_quantile(0.99")),
        "no latency quantile"
    );
}

#[test]
fn the_check_refuses_an_unknown_metric_a_missing_suffix_a_wrong_label_and_a_broken_query() {
    let exposition = "# HELP csrgate_decisions Approval conditions written.\n\
         # TYPE csrgate_decisions counter\n\
         csrgate_decisions_total{policy=\"a\",signer=\"example.com/x\",decision=\"Approved\"} 1\n\
         # TYPE csrgate_pending_csrs gauge\n\
         csrgate_pending_csrs{signer=\"example.com/x\"} 2\n\
         # EOF\n";
    let good = [
        "sum by (signer, decision) (rate(csrgate_decisions_total[$__rate_interval]))",
        "max by (signer) (csrgate_pending_csrs{signer=~\"example.com/.*\"})",
    ]
    .map(str::to_owned);
    assert_eq!(problems(&good, exposition), Vec::<String>::new());
    for bad in [
        "rate(csrgate_decisions[5m])",
        "csrgate_pending_csr",
        "sum(csrgate_decisions_total) / sum(csrgate_made_up)",
        "{__name__=\"csrgate_nope\"}",
        "sum by (signer (csrgate_pending_csrs)",
        "sum by (sginer) (csrgate_pending_csrs)",
        "csrgate_pending_csrs{policy=\"a\"}",
    ] {
        assert!(
            !problems(&[bad.to_owned()], exposition).is_empty(),
            "the check accepted {bad}"
        );
    }
}

#[test]
fn the_chart_ships_the_same_dashboard_as_the_monitoring_overlay() {
    let overlay = std::fs::read(repo(DASHBOARD)).unwrap();
    let chart = std::fs::read(repo(CHART_DASHBOARD)).unwrap();
    assert!(
        overlay == chart,
        "{CHART_DASHBOARD} differs from {DASHBOARD}: copy it"
    );
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "csrgate");
    // Every panel reads the data source chosen in the dashboard's variable, not a fixed one.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource")
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }
}
