//! Faults on the real thing: kube-apiserver restarted mid-burst (etcd keeps the data), etcd
//! paused with SIGSTOP for a few seconds, the controller SIGKILLed and restarted. Every CSR
//! ends decided exactly once and right; nothing is lost.

use std::time::{Duration, Instant};

use csrgate_kube::Component;

use crate::burst;
use crate::harness::{Controller, all_csrs, assert_decided_once, decisions, plane, serial};
use crate::util::http;

/// Waits until at least `count` CSRs carry a decision.
fn wait_decided(count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while all_csrs()
        .values()
        .filter(|c| !decisions(c).is_empty())
        .count()
        < count
    {
        assert!(Instant::now() < deadline, "fewer than {count} decided");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_kube_apiserver_restart_mid_burst_loses_and_repeats_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    let (objects, expected) = burst::manifests(dir.path(), "apiserver-restart", 200);
    let (first, second) = objects.split_at(100);
    burst::create_in_background(dir.path(), first.to_vec())
        .join()
        .unwrap();
    wait_decided(20);
    plane().kill(Component::KubeApiserver).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    plane().start_component(Component::KubeApiserver).unwrap();
    burst::create_in_background(dir.path(), second.to_vec())
        .join()
        .unwrap();
    assert_decided_once(&expected, 180);
    drop(controller);
}

#[test]
fn etcd_paused_for_five_seconds_mid_burst_loses_and_repeats_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let _controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    let (objects, expected) = burst::manifests(dir.path(), "etcd-pause", 200);
    let creating = burst::create_in_background(dir.path(), objects);
    wait_decided(20);
    plane().pause(Component::Etcd, true).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    plane().pause(Component::Etcd, false).unwrap();
    creating.join().unwrap();
    assert_decided_once(&expected, 180);
}

#[test]
fn a_controller_killed_and_restarted_mid_burst_loses_and_repeats_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    let (objects, expected) = burst::manifests(dir.path(), "controller-kill", 200);
    let creating = burst::create_in_background(dir.path(), objects);
    wait_decided(20);
    drop(controller);
    std::thread::sleep(Duration::from_secs(1));
    let _restarted = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    creating.join().unwrap();
    assert_decided_once(&expected, 180);
}

/// Issue #12: while kube-apiserver is down the leader's watches keep failing, and `/readyz`
/// says not ready, naming a watch; once it is back the CSRs created meanwhile are decided
/// once, and the leader is ready again (at the next event of each watch, or 60 s after its
/// last failure).
#[test]
fn issue_12_readyz_is_not_ready_while_kube_apiserver_is_down_and_ready_after() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let controller = Controller::start(dir.path(), plane().kubeconfig(), &[]);
    let readyz = || {
        http(
            "GET",
            &format!("http://{}/readyz", controller.metrics),
            None,
        )
    };
    let wait_for = |status: u16, seconds: u64| {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let (code, body) = readyz();
            if code == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {code} {body} after {seconds} s:\n{}",
                controller.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(200, 60);
    plane().kill(Component::KubeApiserver).unwrap();
    let body = wait_for(503, 60);
    plane().start_component(Component::KubeApiserver).unwrap();
    assert!(body.contains(" watch failing ("), "{body}");
    let (objects, expected) = burst::manifests(dir.path(), "apiserver-down", 20);
    burst::create_in_background(dir.path(), objects)
        .join()
        .unwrap();
    assert_decided_once(&expected, 120);
    wait_for(200, 120);
}
