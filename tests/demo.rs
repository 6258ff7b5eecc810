//! `csrgate demo`: the main job runs from the embedded examples and exits 0.

use crate::util::{csrgate, run};

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
                line.contains(" issued "),
                "{csr} approved but no certificate: {line}"
            );
        }
    }
}
