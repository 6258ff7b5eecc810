//! Repeated runs and the machine's noise: a result file keeps every run of a measurement
//! (`runs`), states the median of each figure under the figure's own key (so readers of
//! single-run files keep working) and the range of the figures the report shows as
//! `<key>_min` / `<key>_max`.

use serde_json::{Map, Value, json};

/// The figures of a burst (`e2e`, `real`, KCM) that the report shows with their range.
pub const BURST_KEYS: &[&str] = &[
    "decisions_per_s",
    "p50_latency_ms",
    "p99_latency_ms",
    "max_latency_ms",
    "peak_rss_mib",
    "cpu_s",
];

/// The figures of a `scale` run that the report shows with their range.
pub const SCALE_KEYS: &[&str] = &[
    "rss_mib_cached",
    "rss_mib_policies",
    "peak_rss_mib_cached",
    "peak_rss_mib_policies",
    "policies_ready_ms",
    "policies_created_ms",
    "policies_created_floor_ms",
];

/// The median of `values` (the mean of the middle two for an even count), `NaN` for none.
/// NaNs sort last and so count as the largest values.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The smallest and largest of `values`, ignoring NaNs; `(NaN, NaN)` when none is a number.
pub fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((f64::NAN, f64::NAN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// One result out of `runs` (each a JSON object, in the order they ran): the first run's
/// fields, every numeric field that differs between runs replaced by its median, `<key>_min` and
/// `<key>_max` for each of `shown`, `repeats` (the number of runs) and `runs` itself.
/// A field missing from a run counts as `NaN` there.
pub fn aggregate(runs: Vec<Value>, shown: &[&str]) -> Value {
    let mut headline = runs
        .first()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let column = |key: &str| -> Vec<f64> {
        runs.iter()
            .map(|run| run.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN))
            .collect()
    };
    let numeric: Vec<String> = headline
        .iter()
        .filter(|(_, value)| value.is_number())
        .map(|(key, _)| key.clone())
        .collect();
    for key in numeric {
        // A count every run shares (N, nodes, policies) stays as it is, an integer.
        if runs.iter().all(|run| run.get(&key) == headline.get(&key)) {
            continue;
        }
        headline.insert(key.clone(), json!(median(&column(&key))));
    }
    for key in shown {
        let (min, max) = range(&column(key));
        headline.insert(format!("{key}_min"), json!(min));
        headline.insert(format!("{key}_max"), json!(max));
    }
    headline.insert("repeats".into(), json!(runs.len()));
    headline.insert("runs".into(), Value::Array(runs));
    Value::Object(headline)
}

/// The runs in a result: its `runs`, or the result itself when it has none (a file written
/// before results kept their runs).
pub fn of(result: &Value) -> Vec<&Value> {
    match result.get("runs").and_then(Value::as_array) {
        Some(runs) if !runs.is_empty() => runs.iter().collect(),
        _ => vec![result],
    }
}

/// How many runs a result holds.
pub fn count(result: &Value) -> usize {
    of(result).len()
}

/// `first[key] / second[key]` for each pair of runs made in the same repeat (run i of each,
/// which `csrgate-bench` interleaves), or the one ratio of the headlines when the counts
/// differ.
pub fn paired_ratios(first: &Value, second: &Value, key: &str) -> Vec<f64> {
    let get = |run: &Value| run.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let (a, b) = (of(first), of(second));
    if a.len() == b.len() {
        a.iter().zip(&b).map(|(x, y)| get(x) / get(y)).collect()
    } else {
        vec![get(first) / get(second)]
    }
}

/// `key`'s median as the headline, with `(min–max)` over the runs when there was more than
/// one: `"412 (398–430)"`. `precision` decimals.
pub fn cell(result: &Value, key: &str, precision: usize) -> String {
    let get = |key: &str| result.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let median = get(key);
    if count(result) < 2 {
        return format!("{median:.precision$}");
    }
    let values: Vec<f64> = of(result)
        .iter()
        .map(|run| run.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN))
        .collect();
    let (min, max) = range(&values);
    format!("{median:.precision$} ({min:.precision$}–{max:.precision$})")
}

/// A ratio's cell: `median (min–max)` of the paired ratios, the headline being the ratio of
/// the medians.
pub fn ratio_cell(first: &Value, second: &Value, key: &str) -> String {
    let get = |v: &Value| v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let headline = get(first) / get(second);
    let ratios = paired_ratios(first, second, key);
    if ratios.len() < 2 {
        return format!("{headline:.2}");
    }
    let (min, max) = range(&ratios);
    format!("{headline:.2} ({min:.2}–{max:.2})")
}

/// The summary keys `<name>`, `<name>_min` and `<name>_max` of a ratio: the ratio of the
/// medians and the range of the paired ratios.
pub fn ratio_keys(name: &str, pair: Option<(&Value, &Value)>, key: &str) -> Map<String, Value> {
    let mut map = Map::new();
    let get = |v: &Value| v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let (headline, (min, max)) = match pair {
        Some((a, b)) => (Some(get(a) / get(b)), range(&paired_ratios(a, b, key))),
        None => (None, (f64::NAN, f64::NAN)),
    };
    map.insert(name.to_owned(), json!(headline));
    map.insert(
        format!("{name}_min"),
        json!(headline.map(|_| min).filter(|v| !v.is_nan())),
    );
    map.insert(
        format!("{name}_max"),
        json!(headline.map(|_| max).filter(|v| !v.is_nan())),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_one_of_an_even_count_the_mean_of_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[40.0, 10.0, 30.0, 20.0]), 25.0);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_range_skips_values_that_are_not_numbers() {
        assert_eq!(range(&[5.0, f64::NAN, 2.0, 9.0]), (2.0, 9.0));
        let (lo, hi) = range(&[f64::NAN]);
        assert!(lo.is_nan() && hi.is_nan());
    }

    #[test]
    fn an_aggregate_states_the_medians_the_range_of_shown_keys_and_keeps_every_run() {
        let runs = vec![
            json!({"decider": "floor", "csrs": 10, "decisions_per_s": 300.0, "cpu_s": 1.0}),
            json!({"decider": "floor", "csrs": 10, "decisions_per_s": 100.0, "cpu_s": 4.0}),
            json!({"decider": "floor", "csrs": 10, "decisions_per_s": 200.0, "cpu_s": 2.0}),
        ];
        let result = aggregate(runs, &["decisions_per_s"]);
        assert_eq!(result["decider"], "floor");
        assert_eq!(result["csrs"], 10);
        assert_eq!(result["decisions_per_s"], 200.0);
        assert_eq!(result["decisions_per_s_min"], 100.0);
        assert_eq!(result["decisions_per_s_max"], 300.0);
        // Not shown: the median only.
        assert_eq!(result["cpu_s"], 2.0);
        assert!(result.get("cpu_s_min").is_none());
        assert_eq!(result["repeats"], 3);
        assert_eq!(result["runs"].as_array().map(Vec::len), Some(3));
        assert_eq!(result["runs"][1]["decisions_per_s"], 100.0);
        assert_eq!(cell(&result, "decisions_per_s", 0), "200 (100–300)");
    }

    #[test]
    fn a_result_of_one_run_or_without_runs_reads_as_its_own_single_run() {
        let old = json!({"decisions_per_s": 250.0});
        assert_eq!(count(&old), 1);
        assert_eq!(cell(&old, "decisions_per_s", 0), "250");
        let one = aggregate(vec![old.clone()], BURST_KEYS);
        assert_eq!(count(&one), 1);
        assert_eq!(one["decisions_per_s_min"], 250.0);
        assert_eq!(cell(&one, "decisions_per_s", 1), "250.0");
    }

    #[test]
    fn paired_ratios_divide_run_i_by_run_i_and_the_headline_is_the_ratio_of_medians() {
        let rate = |v: f64| json!({"decisions_per_s": v});
        let controller = aggregate(vec![rate(90.0), rate(60.0), rate(80.0)], BURST_KEYS);
        let floor = aggregate(vec![rate(100.0), rate(120.0), rate(80.0)], BURST_KEYS);
        assert_eq!(
            paired_ratios(&controller, &floor, "decisions_per_s"),
            vec![0.9, 0.5, 1.0]
        );
        let keys = ratio_keys(
            "floor_ratio",
            Some((&controller, &floor)),
            "decisions_per_s",
        );
        assert_eq!(keys["floor_ratio"], 0.8);
        assert_eq!(keys["floor_ratio_min"], 0.5);
        assert_eq!(keys["floor_ratio_max"], 1.0);
        assert_eq!(
            ratio_cell(&controller, &floor, "decisions_per_s"),
            "0.80 (0.50–1.00)"
        );
        // Unequal counts: no pairs, the one ratio of the headlines.
        let single = rate(100.0);
        assert_eq!(
            paired_ratios(&controller, &single, "decisions_per_s"),
            vec![0.8]
        );
        let none = ratio_keys("floor_ratio", None, "decisions_per_s");
        assert!(none["floor_ratio"].is_null() && none["floor_ratio_min"].is_null());
    }
}
