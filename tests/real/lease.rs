//! Issue #12 part 3: an old leader writes nothing after the standby took the Lease. Two
//! `--leader-elect` controllers acting as different users (so the audit log tells them
//! apart); the leader is paused with SIGSTOP until the standby leads, the new leader is
//! paused in turn so that CSRs created now stay pending, and the old leader is resumed with
//! those CSRs in its watch and its lease long expired. It must write none of them and stop;
//! the new leader, resumed, decides each once.

use std::time::{Duration, Instant};

use crate::burst;
use crate::harness::{
    Controller, approval_writers, assert_decided_once, create_as, kubeconfig_as, serial,
};
use crate::util::http;

fn role(controller: &Controller) -> String {
    http(
        "GET",
        &format!("http://{}/readyz", controller.metrics),
        None,
    )
    .1
}

fn wait_for_role(controller: &Controller, role_text: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !role(controller).contains(role_text) {
        assert!(
            Instant::now() < deadline,
            "no {role_text} within {seconds} s:\n{}",
            controller.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_12_an_old_leader_resumed_after_the_takeover_writes_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    // 15 s: the new leader renews 10 s after it took the lease, which leaves it paused long
    // enough for the old one to be resumed and caught writing, with margin on a busy machine.
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        "csrgate-lease-test",
        "--lease-duration",
        "15",
    ];
    let old = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-old-leader"),
        &args,
    );
    let mut old = old;
    wait_for_role(&old, "leader", 60);
    let new = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-new-leader"),
        &args,
    );
    wait_for_role(&new, "standby", 30);

    // The old leader decides, so its caches are warm and it writes as it should.
    let (warm, warm_expected) = burst::manifests(dir.path(), "lease-warm", 2);
    create_as(dir.path(), &warm, "jane", &["platform-admins"]);
    assert_decided_once(&warm_expected, 60);

    old.pause(true);
    let paused = Instant::now();
    wait_for_role(&new, "leader", 60);
    let takeover = paused.elapsed();
    new.pause(true);

    let (objects, expected) = burst::manifests(dir.path(), "lease", 20);
    create_as(dir.path(), &objects, "jane", &["platform-admins"]);
    old.pause(false);
    // The old leader, its lease expired and held by another, must stop without writing.
    let deadline = Instant::now() + Duration::from_secs(5);
    while old.exited().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    new.pause(false);
    assert_decided_once(&expected, 60);

    let writers = approval_writers();
    let burst_writes: Vec<&(String, String)> = writers
        .iter()
        .filter(|(csr, _)| expected.contains_key(csr))
        .collect();
    let by_old: Vec<&&(String, String)> = burst_writes
        .iter()
        .filter(|(_, user)| user == "csrgate-old-leader")
        .collect();
    assert!(
        by_old.is_empty(),
        "the old leader wrote after the takeover: {by_old:?}\n{}",
        old.log_text()
    );
    assert_eq!(
        burst_writes.len(),
        expected.len(),
        "one write per CSR, by the new leader: {burst_writes:?}"
    );
    assert!(
        warm_expected.keys().all(|csr| writers
            .iter()
            .any(|(c, user)| c == csr && user == "csrgate-old-leader")),
        "the old leader wrote the warm-up CSRs before it was paused: {writers:?}"
    );
    let status = old.exited();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the old leader stops when it finds the lease lost: {status:?}\n{}",
        old.log_text()
    );
    assert!(
        old.log_text().contains("lost the leader lease"),
        "{}",
        old.log_text()
    );
    eprintln!(
        "lease: the standby led {:.1} s after the leader was paused (lease 15 s); the old \
         leader, resumed, wrote none of {} CSRs and exited with {status:?}",
        takeover.as_secs_f64(),
        expected.len()
    );
}
