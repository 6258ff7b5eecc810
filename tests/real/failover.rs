//! Failover on real Leases: two `csrgate controller --leader-elect` processes; the leader is
//! SIGKILLed during a burst of 500 CSRs; the standby takes over and every CSR ends decided
//! exactly once and right.

use std::time::{Duration, Instant};

use crate::burst;
use crate::harness::{Controller, all_csrs, assert_decided_once, decisions, plane, serial};

#[test]
fn the_standby_takes_over_a_burst_of_500_when_the_leader_is_killed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    burst::apply_policy(dir.path());
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        "csrgate-failover-test",
        "--lease-duration",
        "6",
    ];
    let mut controllers = [
        Some(Controller::start(dir.path(), plane().kubeconfig(), &args)),
        Some(Controller::start(dir.path(), plane().kubeconfig(), &args)),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let roles: Vec<String> = controllers
            .iter()
            .flatten()
            .map(Controller::readyz)
            .collect();
        assert!(
            roles.iter().filter(|r| r.contains("leader")).count() <= 1,
            "two leaders: {roles:?}"
        );
        if let Some(index) = roles.iter().position(|r| r.contains("leader")) {
            break index;
        }
        assert!(Instant::now() < deadline, "no leader: {roles:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let standby = 1 - leader;

    let (objects, expected) = burst::manifests(dir.path(), "failover", 500);
    let creating = burst::create_in_background(dir.path(), objects);
    // Kill the leader once it has decided some of the burst.
    let deadline = Instant::now() + Duration::from_secs(120);
    while all_csrs()
        .values()
        .filter(|c| !decisions(c).is_empty())
        .count()
        < 50
    {
        assert!(Instant::now() < deadline, "the leader decided nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Instant::now();
    controllers[leader] = None;

    controllers[standby]
        .as_ref()
        .unwrap()
        .wait_for_role("leader", 60);
    let takeover = killed.elapsed();
    creating.join().unwrap();
    assert_decided_once(&expected, 180);
    eprintln!(
        "failover: the standby led {:.1} s after the leader was killed (lease duration 6 s); \
         all 500 CSRs decided once, {:.1} s after the kill",
        takeover.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(20),
        "takeover took {takeover:?}"
    );
}
