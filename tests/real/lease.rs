//! Issue #12 part 3: an old leader writes nothing after the standby took the Lease. Two
//! `--leader-elect` controllers acting as different users (so the audit log tells them
//! apart); the leader is paused with SIGSTOP until the standby leads, the new leader is
//! paused in turn so that CSRs created now stay pending, and the old leader is resumed with
//! those CSRs in its watch and its lease long expired. It must write none of them and stop;
//! the new leader, resumed, decides each once.
//!
//! In the first test the old leader's lease manager reads the Lease at once on resuming and
//! learns it lost it, usually before any CSR reaches a write; the second takes that away (the
//! old leader's right to read the Lease is revoked while it is paused), so that its
//! kube-lease-manager keeps saying "leader" and only the check before each write stands
//! between it and a write: that test fails without the check.

use std::time::{Duration, Instant};

use crate::burst;
use crate::harness::{
    Controller, TEST_LABEL, approval_writers, assert_decided_once, create_as, kubeconfig_as,
    kubectl_ok, kubectl_stdin, serial,
};

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
    let mut old = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-old-leader", &["system:masters"]),
        &args,
    );
    old.wait_for_role("leader", 60);
    let new = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-new-leader", &["system:masters"]),
        &args,
    );
    new.wait_for_role("standby", 30);

    // The old leader decides, so its caches are warm and it writes as it should.
    let (warm, warm_expected) = burst::manifests(dir.path(), "lease-warm", 2);
    create_as(dir.path(), &warm, "jane", &["platform-admins"]);
    assert_decided_once(&warm_expected, 60);

    old.pause(true);
    let paused = Instant::now();
    new.wait_for_role("leader", 60);
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

/// What the old leader may do in the second test: everything the controller needs, with the
/// Lease only through a RoleBinding that the test deletes.
fn old_leader_rbac() -> serde_json::Value {
    let labels = serde_json::json!({TEST_LABEL: "lease"});
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "csrgate-test-old-leader", "labels": labels},
         "rules": [{"apiGroups": ["", "certificates.k8s.io", "csrgate.dev", "events.k8s.io", "authorization.k8s.io"],
                    "resources": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "csrgate-test-old-leader", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csrgate-test-old-leader"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "csrgate-old-leader"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "csrgate-test-old-leader-lease", "namespace": "default", "labels": labels},
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "csrgate-test-old-leader-lease", "namespace": "default", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "csrgate-test-old-leader-lease"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "csrgate-old-leader"}]},
    ]})
}

#[test]
fn issue_12_an_old_leader_that_cannot_read_the_lease_after_the_takeover_writes_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let (code, _, stderr) = kubectl_stdin(&["apply", "-f", "-"], &old_leader_rbac().to_string());
    assert_eq!(code, 0, "{stderr}");
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        "csrgate-lease-test-2",
        "--lease-duration",
        "15",
    ];
    let old = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-old-leader", &[]),
        &args,
    );
    old.wait_for_role("leader", 60);
    let new = Controller::start(
        dir.path(),
        &kubeconfig_as(dir.path(), "csrgate-new-leader", &["system:masters"]),
        &args,
    );
    new.wait_for_role("standby", 30);
    let (warm, warm_expected) = burst::manifests(dir.path(), "lease2-warm", 2);
    create_as(dir.path(), &warm, "jane", &["platform-admins"]);
    assert_decided_once(&warm_expected, 60);

    old.pause(true);
    new.wait_for_role("leader", 60);
    new.pause(true);
    kubectl_ok(&[
        "delete",
        "rolebinding",
        "-n",
        "default",
        "csrgate-test-old-leader-lease",
    ]);
    let (objects, expected) = burst::manifests(dir.path(), "lease2", 20);
    create_as(dir.path(), &objects, "jane", &["platform-admins"]);
    old.pause(false);
    std::thread::sleep(Duration::from_secs(4));
    new.pause(false);
    assert_decided_once(&expected, 60);

    let by_old: Vec<(String, String)> = approval_writers()
        .into_iter()
        .filter(|(csr, user)| expected.contains_key(csr) && user == "csrgate-old-leader")
        .collect();
    let log = old.log_text();
    drop(old);
    kubectl_ok(&[
        "delete",
        "clusterrole,clusterrolebinding,role",
        "-A",
        "-l",
        TEST_LABEL,
    ]);
    assert!(
        by_old.is_empty(),
        "the old leader wrote after the takeover: {by_old:?}\n{log}"
    );
    assert!(
        log.contains("reading the leader Lease"),
        "the old leader tried and was stopped by the lease check:\n{log}"
    );
}
