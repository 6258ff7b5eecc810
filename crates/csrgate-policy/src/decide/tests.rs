//! Decision tests: DESIGN.md "The decision", step by step, and properties.

use super::*;
use crate::fixtures::{CsrBuilder, decide, decide_with, node, policy, ready};

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn admins(extra: &str) -> CompiledPolicy {
    ready(
        "admins",
        &format!(
            r#"
signerNames: [{CLIENT}]
{extra}
validations:
  - name: cn-is-requestor
    expression: 'x509.commonName == object.spec.username'
    messageExpression: '"CN " + x509.commonName + " is not " + object.spec.username'
  - name: no-system-groups
    expression: '!x509.organizations.exists(o, o.startsWith("system:"))'
    message: 'O must not name a system: group'
"#
        ),
    )
}

#[test]
fn approves_when_every_validation_holds() {
    let decision = decide(&[admins("")], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Approved);
    assert_eq!(decision.reason(), Some(reasons::POLICY_APPROVED));
    assert_eq!(
        Some(decision.message()),
        Some(r#"csrgate: approved by CsrApprovalPolicy "admins" (generation 1)"#)
    );
}

#[test]
fn denies_with_every_failed_validation_and_its_message() {
    let csr = CsrBuilder::new()
        .request("jane-masters.csr")
        .username("bob")
        .build();
    let decision = decide(&[admins("")], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert_eq!(decision.reason(), Some(reasons::POLICY_DENIED));
    assert_eq!(
        Some(decision.message()),
        Some(
            r#"csrgate: denied by CsrApprovalPolicy "admins" (generation 1): cn-is-requestor: CN jane is not bob; no-system-groups: O must not name a system: group"#
        )
    );
}

#[test]
fn does_nothing_when_no_policy_covers_the_signer() {
    let csr = CsrBuilder::new().signer("example.com/other").build();
    let decision = decide(&[admins("")], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert_eq!(decision.pending(), Some(&PendingCause::NoCoveringPolicy));
    assert!(decision.policies.is_empty());
}

#[test]
fn deny_overrides_approval_and_policies_are_sorted_by_name() {
    let strict = ready(
        "b-strict",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: short, expression: 'object.spec.expirationSeconds <= 3600', message: at most one hour}}\n"
        ),
    );
    let lax = ready(
        "a-lax",
        &format!("signerNames: [{CLIENT}]\nvalidations:\n  - {{name: any, expression: 'true'}}\n"),
    );
    let decision = decide(&[strict, lax], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert_eq!(
        Some(decision.message()),
        Some(
            r#"csrgate: denied by CsrApprovalPolicy "b-strict" (generation 1): short: at most one hour"#
        )
    );
    let names: Vec<_> = decision.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a-lax", "b-strict"]);
    assert_eq!(decision.policies[0].verdict, Verdict::Approve);
}

#[test]
fn names_every_approving_policy() {
    let a = ready(
        "a",
        &format!("signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: 'true'}}\n"),
    );
    let b = ready(
        "b",
        "signerNames: [kubernetes.io/*]\nvalidations:\n  - {name: v, expression: 'true'}\n",
    );
    let decision = decide(&[b, a], &CsrBuilder::new().build(), None);
    assert_eq!(
        Some(decision.message()),
        Some(
            r#"csrgate: approved by CsrApprovalPolicy "a" (generation 1), CsrApprovalPolicy "b" (generation 1)"#
        )
    );
}

#[test]
fn failure_action_ignore_gives_no_opinion() {
    let csr = CsrBuilder::new().username("bob").build();
    let decision = decide(&[admins("failureAction: Ignore")], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert_eq!(decision.pending(), Some(&PendingCause::NoApproval));
    assert!(matches!(decision.policies[0].verdict, Verdict::Fail(ref f) if f.len() == 1));
}

#[test]
fn audit_policies_are_recorded_but_never_decide() {
    let csr = CsrBuilder::new().username("bob").build();
    let decision = decide(&[admins("mode: Audit")], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert_eq!(decision.policies[0].mode, PolicyMode::Audit);
    assert!(matches!(decision.policies[0].verdict, Verdict::Fail(_)));
    let approving = decide(&[admins("mode: Audit")], &CsrBuilder::new().build(), None);
    assert_eq!(approving.outcome(), Outcome::Pending);
    assert_eq!(approving.policies[0].verdict, Verdict::Approve);
}

#[test]
fn dry_run_mode_turns_a_denial_into_a_record() {
    let csr = CsrBuilder::new().username("bob").build();
    let decision = decide(&[admins("").with_mode(PolicyMode::Audit)], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Pending);
}

#[test]
fn match_conditions_that_are_false_make_the_policy_not_applicable() {
    let decision = decide(
        &[admins(
            "matchConditions:\n  - {name: only-nodes, expression: 'object.spec.username.startsWith(\"system:node:\")'}",
        )],
        &CsrBuilder::new().username("bob").build(),
        None,
    );
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert_eq!(decision.policies[0].verdict, Verdict::NotApplicable);
}

#[test]
fn an_invalid_enforce_policy_holds_its_csrs_even_if_another_approves() {
    let broken = crate::fixtures::compile(&policy(
        "broken",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: 'x509v == 1'}}\n"
        ),
    ));
    let decision = decide(&[broken, admins("")], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert!(
        matches!(decision.pending(), Some(PendingCause::PolicyNotReady { policy, .. }) if policy == "broken")
    );
    assert!(decision.message().contains("unknown identifier x509v"));
}

#[test]
fn a_not_yet_compiled_policy_holds_but_an_audit_one_does_not() {
    let pending_policy = policy(
        "new",
        &format!("signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: 'true'}}\n"),
    );
    let held = decide(
        &[CompiledPolicy::not_compiled(&pending_policy), admins("")],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(held.outcome(), Outcome::Pending);
    let audit = CompiledPolicy::not_compiled(&pending_policy).with_mode(PolicyMode::Audit);
    let decided = decide(&[audit, admins("")], &CsrBuilder::new().build(), None);
    assert_eq!(decided.outcome(), Outcome::Approved);
}

#[test]
fn an_unreadable_request_is_denied_as_invalid_request() {
    for file in [
        "jane-forged.csr",
        "alg-rsa512-sha256.csr",
        "alg-rsa2048-sha1.csr",
    ] {
        let decision = decide(
            &[admins("")],
            &CsrBuilder::new().request(file).build(),
            None,
        );
        assert_eq!(decision.outcome(), Outcome::Denied, "{file}");
        assert_eq!(decision.reason(), Some(reasons::INVALID_REQUEST));
        assert!(decision.message().starts_with("csrgate: invalid request: "));
    }
}

#[test]
fn an_unreadable_request_stays_pending_when_no_policy_denies_on_failure() {
    let csr = CsrBuilder::new().raw_request(b"junk").build();
    let decision = decide(&[admins("failureAction: Ignore")], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Pending);
    assert!(matches!(
        decision.pending(),
        Some(PendingCause::InvalidRequest(_))
    ));
}

#[test]
fn an_evaluation_error_is_a_failure_with_the_error() {
    let p = ready(
        "p",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: bad-index, expression: 'x509.dnsNames[3] == \"a\"'}}\n"
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert!(
        decision
            .message()
            .contains("bad-index: expression could not be evaluated: ")
    );
}

#[test]
fn a_non_bool_validation_is_a_failure() {
    let p = ready(
        "p",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: not-bool, expression: 'x509.commonName'}}\n"
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert!(
        decision
            .message()
            .contains("expression returned string, not bool")
    );
}

#[test]
fn a_match_condition_error_fails_the_policy_closed() {
    let p = ready(
        "p",
        &format!(
            "signerNames: [{CLIENT}]\nmatchConditions:\n  - {{name: broken, expression: 'object.metadata.labels.nope == 1'}}\nvalidations:\n  - {{name: v, expression: 'true'}}\n"
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    let message = decision.message();
    assert!(
        message.contains("matchConditions.broken: match condition could not be evaluated"),
        "{message}"
    );
    // The auditor reads the path as written, not the interpreter's internal name.
    assert!(message.contains("object.metadata.labels.nope"), "{message}");
}

#[test]
fn message_falls_back_to_static_then_to_the_expression() {
    let p = ready(
        "p",
        &format!(
            r#"signerNames: [{CLIENT}]
validations:
  - {{name: with-bad-expression, expression: 'false', message: static text, messageExpression: '1'}}
  - {{name: bare, expression: 'false'}}
  - {{name: multiline, expression: 'false', message: fallback, messageExpression: '"a\nb"'}}
"#
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    assert_eq!(
        Some(decision.message()),
        Some(
            r#"csrgate: denied by CsrApprovalPolicy "p" (generation 1): with-bad-expression: static text; bare: failed validation "bare": false; multiline: fallback"#
        )
    );
}

#[test]
fn variables_see_earlier_ones_and_errors_reach_the_rules_that_read_them() {
    let p = ready(
        "p",
        &format!(
            r#"signerNames: [{CLIENT}]
variables:
  - {{name: user, expression: 'object.spec.username'}}
  - {{name: isJane, expression: 'variables.user == "jane"'}}
  - {{name: broken, expression: 'object.metadata.labels.nope'}}
validations:
  - {{name: is-jane, expression: 'variables.isJane'}}
  - {{name: uses-broken, expression: 'variables.broken == 1'}}
"#
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    let message = decision.message();
    assert!(!message.contains("is-jane"), "{message}");
    assert!(message.contains("uses-broken: expression could not be evaluated: variables.broken could not be evaluated"), "{message}");
}

#[test]
fn node_is_the_requestors_node_or_null() {
    let serving = ready(
        "kubelet-serving",
        r#"signerNames: [kubernetes.io/kubelet-serving]
variables:
  - {name: addresses, expression: 'node == null ? [] : node.status.addresses.map(a, a.address)'}
validations:
  - {name: node-exists, expression: 'node != null', message: no Node object for this requestor}
  - {name: ips-are-the-nodes, expression: 'x509.ipAddresses.all(ip, ip in variables.addresses)'}
  - {name: dns-are-the-nodes, expression: 'x509.dnsNames.all(n, n in variables.addresses)'}
"#,
    );
    let csr = CsrBuilder::new()
        .signer("kubernetes.io/kubelet-serving")
        .request("worker-1-serving.csr")
        .username("system:node:worker-1")
        .groups(&["system:nodes", "system:authenticated"])
        .build();
    let worker = node(
        "worker-1",
        &[
            ("InternalIP", "10.0.0.11"),
            ("InternalIP", "fd00::b"),
            ("Hostname", "worker-1"),
            ("InternalDNS", "worker-1.cluster.internal"),
        ],
    );
    assert_eq!(
        decide(std::slice::from_ref(&serving), &csr, Some(&worker)).outcome(),
        Outcome::Approved
    );
    let missing = decide(std::slice::from_ref(&serving), &csr, None);
    assert_eq!(missing.outcome(), Outcome::Denied);
    assert!(missing.message().contains("node-exists: no Node object"));
    let spoof = CsrBuilder::new()
        .signer("kubernetes.io/kubelet-serving")
        .request("worker-1-spoofing.csr")
        .username("system:node:worker-1")
        .build();
    let decision = decide(&[serving], &spoof, Some(&worker));
    assert_eq!(decision.outcome(), Outcome::Denied);
    let message = decision.message();
    assert!(
        message.contains("ips-are-the-nodes") && message.contains("dns-are-the-nodes"),
        "{message}"
    );
}

/// A kubelet client policy applying only to node requestors, with `extra` in its spec.
fn nodes_only(name: &str, extra: &str) -> CompiledPolicy {
    ready(
        name,
        &format!(
            r#"signerNames: [{CLIENT}]
{extra}
matchConditions:
  - {{name: is-node, expression: 'object.spec.username.startsWith("system:node:")'}}
validations:
  - {{name: cn-is-requestor, expression: 'x509.commonName == object.spec.username', message: CN must be the requestor}}
"#
        ),
    )
}

#[test]
fn issue_13_default_action_deny_denies_what_no_policy_approved_and_says_why_each_did_not() {
    let catch_all = nodes_only("a-nodes", "defaultAction: Deny");
    let ignoring = admins("failureAction: Ignore");
    let csr = CsrBuilder::new().username("bob").build();
    let decision = decide(&[catch_all, ignoring], &csr, None);
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert_eq!(decision.reason(), Some(reasons::NO_POLICY_APPROVED));
    assert_eq!(
        Some(decision.message()),
        Some(
            r#"csrgate: no CsrApprovalPolicy approved this CSR and defaultAction is Deny in CsrApprovalPolicy "a-nodes" (generation 1): CsrApprovalPolicy "a-nodes" (generation 1): matchCondition "is-node" is false; CsrApprovalPolicy "admins" (generation 1): failed with failureAction Ignore: cn-is-requestor: CN jane is not bob"#
        )
    );
    assert_eq!(decision.policies[0].unmatched.as_deref(), Some("is-node"));
}

#[test]
fn issue_13_default_action_deny_never_overrides_an_approval() {
    let decision = decide(
        &[nodes_only("a-nodes", "defaultAction: Deny"), admins("")],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(decision.outcome(), Outcome::Approved);
    assert_eq!(decision.reason(), Some(reasons::POLICY_APPROVED));
}

#[test]
fn issue_13_default_action_pending_and_audit_defaults_leave_the_csr_pending() {
    let csr = CsrBuilder::new().username("bob").build();
    let pending = decide(&[nodes_only("a-nodes", "")], &csr, None);
    assert_eq!(pending.outcome(), Outcome::Pending);
    assert_eq!(pending.pending(), Some(&PendingCause::NoApproval));
    assert_eq!(pending.policies[0].default_denial, None);

    let audit = decide(
        &[
            nodes_only("a-nodes", "defaultAction: Deny\nmode: Audit"),
            admins("failureAction: Ignore"),
        ],
        &csr,
        None,
    );
    assert_eq!(audit.outcome(), Outcome::Pending);
    let recorded = audit.policies[0].default_denial.as_deref().unwrap();
    assert!(
            recorded.starts_with(
                r#"csrgate: no CsrApprovalPolicy approved this CSR and defaultAction is Deny in CsrApprovalPolicy "a-nodes" (generation 1): CsrApprovalPolicy "a-nodes" (generation 1): matchCondition "is-node" is false"#
            ),
            "{recorded}"
        );
    assert_eq!(audit.policies[1].default_denial, None);

    // An Audit default records nothing when an Enforce policy decided, or when the
    // Audit policy would approve on its own.
    let approved = decide(
        &[
            nodes_only("a-nodes", "defaultAction: Deny\nmode: Audit"),
            admins(""),
        ],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(approved.outcome(), Outcome::Approved);
    assert_eq!(approved.policies[0].default_denial, None);
    let node_csr = CsrBuilder::new().username("system:node:worker-1").build();
    let own = decide(
        &[nodes_only("a-nodes", "defaultAction: Deny\nmode: Audit")],
        &node_csr,
        None,
    );
    assert!(matches!(own.policies[0].verdict, Verdict::Fail(_)));
    assert_eq!(own.policies[0].default_denial, None);
}

#[test]
fn issue_13_an_audit_policy_is_named_in_the_default_denial_as_never_deciding() {
    let decision = decide(
        &[
            nodes_only("a-nodes", "defaultAction: Deny"),
            admins("mode: Audit"),
        ],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert!(decision.message().ends_with(
            r#"CsrApprovalPolicy "admins" (generation 1): Audit, so it does not count; its verdict: approves"#
        ));
}

#[test]
fn issue_13_an_unreadable_request_is_denied_when_a_policy_denies_by_default() {
    let csr = CsrBuilder::new().raw_request(b"junk").build();
    let decision = decide(
        &[admins("failureAction: Ignore\ndefaultAction: Deny")],
        &csr,
        None,
    );
    assert_eq!(decision.outcome(), Outcome::Denied);
    assert_eq!(decision.reason(), Some(reasons::INVALID_REQUEST));
}

#[test]
fn issue_13_subject_node_is_the_node_the_cn_names_or_null() {
    let bootstrap = ready(
        "bootstrap",
        r#"signerNames: [kubernetes.io/kube-apiserver-client-kubelet]
validations:
  - {name: new-node, expression: 'subjectNode == null', message: a Node of this name exists}
  - {name: same-name, expression: 'node == null || node.metadata.name == subjectNode.metadata.name'}
"#,
    );
    let csr = CsrBuilder::new()
        .signer("kubernetes.io/kube-apiserver-client-kubelet")
        .request("worker-1-client.csr")
        .username("system:bootstrap:abcdef")
        .build();
    let worker = node("worker-1", &[("InternalIP", "10.0.0.11")]);
    let new = decide_with(
        std::slice::from_ref(&bootstrap),
        &csr,
        Nodes::default(),
        None,
    );
    assert_eq!(new.outcome(), Outcome::Approved, "{:?}", new.message());
    let existing = decide_with(
        std::slice::from_ref(&bootstrap),
        &csr,
        Nodes {
            requestor: None,
            subject: Some(&worker),
        },
        None,
    );
    assert_eq!(existing.outcome(), Outcome::Denied);
    assert!(
        existing
            .message()
            .contains("new-node: a Node of this name exists")
    );
    // `node` is the requestor's alone: a bootstrap requestor has none.
    let fields = ready(
        "fields",
        r#"signerNames: [kubernetes.io/kube-apiserver-client-kubelet]
validations:
  - {name: ip, expression: 'subjectNode.status.addresses[0].address == "10.0.0.11" && node == null'}
"#,
    );
    let decision = decide_with(
        &[fields],
        &csr,
        Nodes {
            requestor: None,
            subject: Some(&worker),
        },
        None,
    );
    assert_eq!(
        decision.outcome(),
        Outcome::Approved,
        "{:?}",
        decision.message()
    );
}

#[test]
fn kubernetes_cel_libraries_are_available() {
    let p = ready(
        "p",
        r#"signerNames: [kubernetes.io/kubelet-serving]
validations:
  - {name: ip-in-range, expression: 'x509.ipAddresses.all(ip, !isIP(ip) || cidr("10.0.0.0/8").containsIP(ip) || ip(ip).family() == 6)'}
  - {name: lower, expression: 'x509.dnsNames.all(n, n.lowerAscii() == n)'}
  - {name: regex, expression: 'x509.commonName.matches("^system:node:[a-z0-9-]+$")'}
"#,
    );
    let csr = CsrBuilder::new()
        .signer("kubernetes.io/kubelet-serving")
        .request("worker-1-serving.csr")
        .build();
    let decision = decide(&[p], &csr, None);
    assert_eq!(
        decision.outcome(),
        Outcome::Approved,
        "{:?}",
        decision.message()
    );
}

#[test]
fn absent_fields_are_absent_so_has_tells_them_apart() {
    let p = ready(
        "p",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: bounded, expression: 'has(object.spec.expirationSeconds) && object.spec.expirationSeconds <= 3600'}}\n"
        ),
    );
    let unset = CsrBuilder::new().expiration(None).build();
    assert_eq!(
        decide(std::slice::from_ref(&p), &unset, None).outcome(),
        Outcome::Denied
    );
    let short = CsrBuilder::new().expiration(Some(600)).build();
    assert_eq!(decide(&[p], &short, None).outcome(), Outcome::Approved);
}

#[test]
fn the_same_text_reading_different_variables_is_evaluated_per_policy() {
    let with_user = |name: &str, user: &str| {
        ready(
            name,
            &format!(
                "signerNames: [{CLIENT}]\nvariables:\n  - {{name: user, expression: '{user}'}}\nvalidations:\n  - {{name: is-jane, expression: 'variables.user == \"jane\"'}}\n"
            ),
        )
    };
    let decision = decide(
        &[
            with_user("a", "object.spec.username"),
            with_user("b", "\"bob\""),
        ],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(decision.policies[0].verdict, Verdict::Approve);
    assert!(matches!(decision.policies[1].verdict, Verdict::Fail(_)));
}

#[test]
fn policies_sharing_an_expression_get_the_same_result_and_error() {
    let shared = |name: &str| {
        ready(
            name,
            &format!(
                "signerNames: [{CLIENT}]\nmatchConditions:\n  - {{name: jane, expression: 'object.spec.username == \"jane\"'}}\nvalidations:\n  - {{name: bad-index, expression: 'x509.dnsNames[3] == \"a\"'}}\n  - {{name: cn, expression: 'x509.commonName == object.spec.username'}}\n"
            ),
        )
    };
    let decision = decide(
        &[shared("a"), shared("b")],
        &CsrBuilder::new().build(),
        None,
    );
    assert_eq!(decision.policies[0].verdict, decision.policies[1].verdict);
    let Verdict::Fail(failures) = &decision.policies[0].verdict else {
        panic!("{:?}", decision.policies[0].verdict);
    };
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0]
            .message
            .starts_with("expression could not be evaluated: ")
    );
    let bob = decide(
        &[shared("a"), shared("b")],
        &CsrBuilder::new().username("bob").build(),
        None,
    );
    assert!(
        bob.policies
            .iter()
            .all(|p| p.verdict == Verdict::NotApplicable)
    );
}

#[test]
fn whole_root_variables_are_bound_when_an_expression_reads_them_so() {
    let p = ready(
        "p",
        &format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: whole, expression: 'object != null && has(object.spec) && \"spec\" in object && x509.commonName == object.spec.username && node == null && size(x509.dnsNames) == size(x509[\"dnsNames\"])'}}\n"
        ),
    );
    let decision = decide(&[p], &CsrBuilder::new().build(), None);
    assert_eq!(
        decision.outcome(),
        Outcome::Approved,
        "{:?}",
        decision.message()
    );
}

#[test]
fn long_messages_are_truncated_at_a_character_boundary() {
    let long = "é".repeat(MAX_MESSAGE_BYTES);
    let cut = truncate(long);
    assert!(cut.len() <= MAX_MESSAGE_BYTES);
    assert!(cut.ends_with("(truncated)"));
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::fixtures::{CsrBuilder, decide, ready, testdata};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever bytes a request holds, a policy that approves everything only approves
        /// when the request parses: never on a partial parse.
        #[test]
        fn nothing_is_approved_unless_its_request_parses(index in 0usize..2000, xor in 1u8..=255, cut in 0usize..2000) {
            let allow_all = ready("allow-all", "signerNames: [kubernetes.io/kube-apiserver-client]\nvalidations:\n  - {name: v, expression: 'true'}\n");
            let mut bytes = testdata("jane.csr");
            let i = index % bytes.len();
            bytes[i] ^= xor;
            bytes.truncate(bytes.len() - cut % bytes.len());
            let csr = CsrBuilder::new().raw_request(&bytes).build();
            let decision = decide(&[allow_all], &csr, None);
            if decision.outcome() == Outcome::Approved {
                prop_assert!(crate::parse_request(&bytes).is_ok());
            } else {
                prop_assert_eq!(decision.reason(), Some(reasons::INVALID_REQUEST));
            }
        }
    }
}
