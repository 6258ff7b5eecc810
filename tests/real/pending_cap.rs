//! Issue #13 part 4 on the real server: with `--max-pending-per-signer 3`, a burst of CSRs
//! above the cap has its approvals held (denials go on), said once in an event and a
//! metric; when CSRs leave and the count falls to the cap, the held ones are approved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::burst::{self, SIGNER};
use crate::harness::{
    Controller, all_csrs, assert_decided_once, create_as, decisions, kubectl_ok, manifest,
    openssl_request, plane, serial,
};
use crate::util::http;

#[test]
fn issue_13_a_burst_above_the_cap_is_held_and_resumes_when_the_count_falls() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let (_, ok) = openssl_request(dir.path(), "cap-ok", "/CN=burst-ok");
    let (_, bad) = openssl_request(dir.path(), "cap-bad", "/CN=burst-bad");
    let held: Vec<String> = (0..8).map(|i| format!("issue-13-cap-ok-{i}")).collect();
    let denied: Vec<String> = (0..2).map(|i| format!("issue-13-cap-bad-{i}")).collect();
    let mut objects: Vec<serde_json::Value> = held
        .iter()
        .map(|name| manifest(name, &ok, SIGNER, &["client auth"]))
        .collect();
    objects.extend(
        denied
            .iter()
            .map(|name| manifest(name, &bad, SIGNER, &["client auth"])),
    );
    // The burst is there before the controller starts: 10 pending, the cap is 3.
    create_as(dir.path(), &objects, "jane", &["platform-admins"]);
    let controller = Controller::start(
        dir.path(),
        plane().kubeconfig(),
        &["--max-pending-per-signer", "3"],
    );

    // Denials are never held.
    let expected_denied: BTreeMap<String, &str> =
        denied.iter().map(|n| (n.clone(), "Denied")).collect();
    assert_decided_once(&expected_denied, 60);
    let metric = |value: u8| format!("csrgate_max_pending_exceeded{{signer=\"{SIGNER}\"}} {value}");
    let metrics = || {
        http(
            "GET",
            &format!("http://{}/metrics", controller.metrics),
            None,
        )
        .1
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics().contains(&metric(1)) {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            metrics(),
            controller.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let csrs = all_csrs();
    for name in &held {
        assert!(
            decisions(&csrs[name]).is_empty(),
            "{name} approved above the cap:\n{}",
            controller.log_text()
        );
    }
    assert!(
        metrics().contains(&format!(
            "csrgate_approvals_held_total{{signer=\"{SIGNER}\"}} 8"
        )),
        "{}",
        metrics()
    );
    let events: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "-o",
        "json",
    ]))
    .unwrap();
    let said: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "MaxPendingExceeded")
        .collect();
    assert_eq!(said.len(), 1, "said once: {said:#?}");
    assert_eq!(said[0]["type"], "Warning");
    assert!(
        said[0]["note"].as_str().unwrap().contains(&format!(
            "CSRs of signer \"{SIGNER}\" are pending, more than --max-pending-per-signer=3"
        )),
        "{:#}",
        said[0]
    );

    // Five leave: 3 pending, at the cap. The three held ones are approved, each once.
    let mut delete = vec!["delete", "csr"];
    delete.extend(held[..5].iter().map(String::as_str));
    kubectl_ok(&delete);
    let expected: BTreeMap<String, &str> =
        held[5..].iter().map(|n| (n.clone(), "Approved")).collect();
    assert_decided_once(&expected, 30);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics().contains(&metric(0)) {
        assert!(Instant::now() < deadline, "{}", metrics());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        controller
            .log_text()
            .contains("pending CSRs back under the cap"),
        "{}",
        controller.log_text()
    );
}
