//! Compile tests: limits, static checks, lowering, the spec walk.

use super::*;
use crate::fixtures::{errors, policy, ready};

fn one_rule(expression: &str) -> String {
    format!(
        "signerNames: [example.com/x]\nvalidations:\n  - name: rule\n    expression: {}\n",
        serde_json::to_string(expression).unwrap()
    )
}

#[test]
fn says_whether_a_policy_reads_node_whole_through_a_field_or_a_variable() {
    for expression in [
        "node == null",
        "has(node.status)",
        "node.metadata.name == 'a'",
        "node != null && node.status.addresses.exists(a, a.type == 'InternalIP')",
    ] {
        assert!(
            ready("p", &one_rule(expression)).reads_node(),
            "{expression}"
        );
    }
    let through_variable = ready(
        "p",
        "signerNames: [example.com/x]\nvariables:\n  - name: n\n    expression: node\n\
             validations:\n  - name: rule\n    expression: variables.n == null\n",
    );
    assert!(through_variable.reads_node());
    for expression in [
        "object.spec.username == 'node'",
        "x509.commonName == 'node.a'",
    ] {
        assert!(
            !ready("p", &one_rule(expression)).reads_node(),
            "{expression}"
        );
    }
    assert!(!crate::fixtures::compile(&policy("p", &one_rule("node ==="))).reads_node());
}

#[test]
fn says_whether_a_policy_asks_the_authorizer() {
    let asks = ready(
        "p",
        &one_rule("authorizer.group('').resource('nodes').check('get').allowed()"),
    );
    assert!(asks.reads_authorizer());
    assert!(!ready("q", &one_rule("node == null")).reads_authorizer());
}

#[test]
fn issue_13_says_which_fields_read_subject_node_and_refuses_them_without_a_node_watch() {
    let spec = r#"signerNames: [kubernetes.io/kube-apiserver-client-kubelet]
variables:
  - {name: taken, expression: 'subjectNode != null'}
validations:
  - {name: cn, expression: 'x509.commonName.startsWith("system:node:")'}
  - {name: new, expression: '!variables.taken'}
  - {name: ips, expression: 'has(subjectNode.status)'}
"#;
    let compiled = ready("p", spec);
    assert!(compiled.reads_subject_node());
    assert!(!compiled.reads_node());
    let refused = compiled.without_subject_node("the Node watch is off");
    assert!(!refused.is_ready());
    let refusals: Vec<String> = refused.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        refusals,
        [
            "spec.variables[0].expression: subjectNode is not available: the Node watch is off",
            "spec.validations[2].expression: subjectNode is not available: the Node watch is off",
        ]
    );
    let plain = ready("q", &one_rule("node == null"));
    assert!(!plain.reads_subject_node());
    assert!(plain.without_subject_node("off").is_ready());
    assert!(
        errors(&one_rule("size(subjectNode.status.images) == 0"))
            .iter()
            .any(|e| e.contains("subjectNode.status.images is not available to policies"))
    );
}

#[test]
fn compiles_the_design_example() {
    let compiled = ready(
        "kubelet-serving",
        r#"
signerNames: ["kubernetes.io/kubelet-serving"]
variables:
  - name: nodeName
    expression: 'object.spec.username.substring(12)'
matchConditions:
  - name: is-node
    expression: 'object.spec.username.startsWith("system:node:") && "system:nodes" in object.spec.groups'
validations:
  - name: cn-is-requestor
    expression: 'x509.commonName == object.spec.username'
    message: 'the certificate CN must name the requesting node'
    messageExpression: '"CN " + x509.commonName + " is not " + object.spec.username'
"#,
    );
    assert!(compiled.warnings().is_empty(), "{:?}", compiled.warnings());
}

#[test]
fn refuses_unknown_identifiers_with_the_field_path() {
    assert_eq!(
        errors(&one_rule("x509v.commonName == 'a'")),
        [
            "spec.validations[0].expression: unknown identifier x509v (known: object, x509, node, subjectNode, variables, authorizer)"
        ]
    );
}

#[test]
fn comprehension_variables_are_in_scope_only_inside() {
    assert!(errors(&one_rule("x509.dnsNames.all(n, n.endsWith('.internal'))")).is_empty());
    assert_eq!(
        errors(&one_rule("x509.dnsNames.all(n, true) && n == 'a'")).len(),
        1
    );
}

#[test]
fn refuses_unknown_x509_fields_and_functions() {
    let e = errors(&one_rule("x509.cn == 'a'"));
    assert!(e[0].contains("x509 has no field cn"), "{e:?}");
    let e = errors(&one_rule("x509.publicKey.bits > 1"));
    assert!(e[0].contains("x509.publicKey has no field bits"), "{e:?}");
    let e = errors(&one_rule("size(node.status.images) > 0"));
    assert!(
        e[0].contains("node.status.images is not available to policies"),
        "{e:?}"
    );
    assert!(errors(&one_rule("size(node.status.addresses) > 0")).is_empty());
    let e = errors(&one_rule("x509.commonName.startsWithh('a')"));
    assert!(e[0].contains("unknown function startsWithh"), "{e:?}");
}

#[test]
fn namespaced_kubernetes_functions_compile() {
    for expression in [
        "sets.contains(x509.dnsNames, ['a'])",
        "math.greatest([1, 2]) == 2",
        "strings.quote(x509.commonName) != ''",
    ] {
        assert!(
            errors(&one_rule(expression)).is_empty(),
            "{expression}: {:?}",
            errors(&one_rule(expression))
        );
    }
    assert!(!errors(&one_rule("nosuch.contains(1)")).is_empty());
}

#[test]
fn refuses_references_that_can_never_resolve() {
    let e = errors(
        "signerNames: [example.com/x]\nvariables:\n  - {name: a, expression: 'object.spec.username'}\nvalidations:\n  - {name: v, expression: 'variables[\"a\"] == \"jane\"'}\n  - {name: w, expression: 'has(variables.a)'}\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .all(|e| e.contains("variables can only be read as variables.<name>")),
        "{e:?}"
    );
    let e = errors(&one_rule("object.spec.bogus == 1"));
    assert_eq!(
        e,
        [
            "spec.validations[0].expression: object.spec has no field bogus (fields: expirationSeconds, extra, groups, request, signerName, uid, usages, username): this never resolves"
        ]
    );
    let e = errors(&one_rule("object.metadata.nam == 'a'"));
    assert!(e[0].contains("object.metadata has no field nam"), "{e:?}");
}

#[test]
fn accepts_every_field_the_schemas_have_and_any_map_key() {
    for expression in [
        "object.metadata.labels.team == 'a'",
        "object.metadata.annotations['example.com/x'] == 'a'",
        "object.spec.extra.scopes == ['a']",
        "object.status.certificate == ''",
        "object.metadata.creationTimestamp != ''",
        "node.status.addresses.exists(a, a.type == 'InternalIP')",
        "node.metadata.labels.zone == 'a'",
    ] {
        assert!(
            errors(&one_rule(expression)).is_empty(),
            "{expression}: {:?}",
            errors(&one_rule(expression))
        );
    }
}

#[test]
fn warns_about_node_fields_the_schema_lacks() {
    let compiled = ready("p", &one_rule("node.status.bogus == 1"));
    assert_eq!(compiled.warnings().len(), 1);
    assert!(
        compiled.warnings()[0]
            .warning
            .starts_with("node.status has no field bogus"),
        "{:?}",
        compiled.warnings()
    );
}

#[test]
fn refuses_a_known_cost_over_the_per_call_limit() {
    let e = errors(&one_rule(
        "lists.range(4000).all(a, lists.range(4000).all(b, true))",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("spec.validations[0].expression: estimated evaluation cost ")
            && e[0].ends_with("exceeds the limit of 1000000 units per expression"),
        "{e:?}"
    );
    assert!(errors(&one_rule("lists.range(1000).all(a, a >= 0)")).is_empty());
    assert!(!errors(&one_rule("size(lists.range(1000001)) > 0")).is_empty());
}

#[test]
fn refuses_variables_used_before_they_are_declared() {
    let e = errors(
        "signerNames: [example.com/x]\nvariables:\n  - {name: a, expression: 'variables.b'}\n  - {name: b, expression: '1'}\nvalidations:\n  - {name: v, expression: 'variables.a == 1 && variables.c == 2'}\n",
    );
    assert_eq!(
        e,
        [
            "spec.variables[0].expression: variables.b is not declared in spec.variables before this expression",
            "spec.validations[0].expression: variables.c is not declared in spec.variables before this expression",
        ]
    );
}

#[test]
fn refuses_expressions_over_5_kib() {
    let long = format!("x509.commonName == '{}'", "a".repeat(MAX_EXPRESSION_BYTES));
    let e = errors(&one_rule(&long));
    assert!(e[0].contains("more than the 5120-byte limit"), "{e:?}");
}

#[test]
fn refuses_thousands_of_chained_additions_without_overflowing() {
    let chain = vec!["1"; 2500].join("+");
    let e = errors(&one_rule(&format!("{chain} > 0")));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("spec.validations[0].expression: "),
        "{e:?}"
    );
}

#[test]
fn refuses_deep_nesting_without_overflowing() {
    for source in [
        format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
        format!("{}1{} == [1]", "[".repeat(2000), "]".repeat(2000)),
        format!("{}true", "!".repeat(5000)),
        format!("{}1 > 0", "-".repeat(5000)),
        format!("{}true", "true && (".repeat(500)) + &")".repeat(500),
        format!("object{} == 1", ".a".repeat(2500)),
        format!("object{} == 1", "[0]".repeat(1500)),
        format!("{}1 == 1", "1 == ".repeat(1200)),
        format!("{}true", "true ? true : ".repeat(700)),
        format!("{}true", "false || ".repeat(600)),
        format!("{}1 > 0", "1 * ".repeat(1200)),
    ] {
        let e = errors(&one_rule(&source));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("deeper than") || e[0].contains("more than"),
            "{e:?}"
        );
    }
}

#[test]
fn refuses_comprehensions_nested_three_deep() {
    let nested = "x509.dnsNames.all(a, x509.uris.all(b, x509.emailAddresses.all(c, a != b)))";
    let e = errors(&one_rule(nested));
    assert!(e[0].contains("nest 3 deep, more than 2"), "{e:?}");
    assert!(errors(&one_rule("x509.dnsNames.all(a, x509.uris.all(b, a != b))")).is_empty());
}

#[test]
fn refuses_duplicate_and_malformed_names() {
    let e = errors(
        "signerNames: [example.com/x]\nvalidations:\n  - {name: v, expression: 'true'}\n  - {name: v, expression: 'true'}\n  - {name: Not_A_Label, expression: 'true'}\n",
    );
    assert_eq!(
        e,
        [
            "spec.validations[1].name: duplicate name \"v\"",
            "spec.validations[2].name: \"Not_A_Label\" is not a valid name (lowercase letters, digits and '-', at most 63)",
        ]
    );
}

#[test]
fn refuses_invalid_constant_regular_expressions_at_compile_time() {
    let e = errors(&one_rule("x509.commonName.matches('(')"));
    assert!(e[0].contains("not a valid regular expression"), "{e:?}");
}

#[test]
fn reports_syntax_errors_with_their_position() {
    let e = errors(&one_rule("x509.commonName =="));
    assert!(
        e[0].starts_with("spec.validations[0].expression: syntax error at 1:"),
        "{e:?}"
    );
}

#[test]
fn warns_about_reading_the_raw_request() {
    let compiled = ready("p", &one_rule("object.spec.request != ''"));
    assert_eq!(
        compiled.warnings()[0].field_ref,
        "spec.validations[0].expression"
    );
}

#[test]
fn refuses_bad_signer_names() {
    let e = errors(
        "signerNames: ['example.com', 'a.io/*x']\nvalidations:\n  - {name: v, expression: 'true'}\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("spec.signerNames[0]:"), "{e:?}");
}

#[test]
fn covers_exact_signers_and_domain_wildcards() {
    let compiled = crate::fixtures::compile(&policy(
        "p",
        "signerNames: [kubernetes.io/kubelet-serving, example.com/*]\nvalidations:\n  - {name: v, expression: 'true'}\n",
    ));
    assert!(compiled.covers("kubernetes.io/kubelet-serving"));
    assert!(compiled.covers("example.com/workloads"));
    assert!(!compiled.covers("example.com/"));
    assert!(!compiled.covers("example.community/x"));
    assert!(!compiled.covers("kubernetes.io/kube-apiserver-client"));
}

#[test]
fn a_policy_not_compiled_yet_is_not_ready_and_says_so() {
    let placeholder = CompiledPolicy::not_compiled(&policy("p", &one_rule("true")));
    assert!(!placeholder.is_ready());
    assert_eq!(
        placeholder.not_ready_message().unwrap(),
        "generation 1 is not compiled yet"
    );
}

#[test]
fn issue_15_a_clone_shares_everything_it_holds() {
    // A warning, so the shared warning list is not the empty one every policy has.
    let compiled = ready(
        "p",
        "signerNames: [example.com/x, example.com/y]\nvalidations:\n  - name: rule\n    expression: subjectNode == null || object.spec.username == 'a'\n",
    );
    let clone = compiled.clone();
    assert!(Arc::ptr_eq(&compiled.name, &clone.name));
    assert!(Arc::ptr_eq(&compiled.signer_names, &clone.signer_names));
    assert!(Arc::ptr_eq(&compiled.warnings, &clone.warnings));
    assert!(Arc::ptr_eq(
        &compiled.subject_node_fields,
        &clone.subject_node_fields
    ));
    assert!(!clone.subject_node_fields.is_empty());
    let (Ok(rules), Ok(cloned)) = (&compiled.rules, &clone.rules) else {
        panic!("not Ready: {:?}", compiled.errors());
    };
    assert!(Arc::ptr_eq(rules, cloned));

    let invalid = compiled.without_subject_node("no Node watch");
    let clone = invalid.clone();
    let (Err(NotReady::Invalid(errors)), Err(NotReady::Invalid(cloned))) =
        (&invalid.rules, &clone.rules)
    else {
        panic!("still Ready");
    };
    assert!(Arc::ptr_eq(errors, cloned));
    assert_eq!(clone.signer_names(), ["example.com/x", "example.com/y"]);
}

#[test]
fn refuses_the_uncached_node_fields_in_every_static_form_on_node_and_subject_node() {
    let forms: [(&str, &str); 10] = [
        ("size({root}.status.images) > 0", "status.images"),
        ("has({root}.status.images)", "status.images"),
        ("size({root}.status['images']) > 0", "status.images"),
        ("size({root}['status']['images']) > 0", "status.images"),
        (
            "size({root}['status'].volumesInUse) > 0",
            "status.volumesInUse",
        ),
        ("'images' in {root}.status", "status.images"),
        (
            "'volumesAttached' in {root}['status']",
            "status.volumesAttached",
        ),
        (
            "size({root}.metadata['managedFields']) > 0",
            "metadata.managedFields",
        ),
        (
            "'managedFields' in {root}.metadata",
            "metadata.managedFields",
        ),
        (
            "has({root}.metadata.managedFields)",
            "metadata.managedFields",
        ),
    ];
    let mut missed = Vec::new();
    for root in ["node", "subjectNode"] {
        for (form, path) in forms {
            let expression = form.replace("{root}", root);
            let expected = [format!(
                "spec.validations[0].expression: {root}.{path} is not available to policies: csrgate does not keep it of a Node"
            )];
            let got = errors(&one_rule(&expression));
            if got != expected {
                missed.push(format!("{expression}: {got:?}"));
            }
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

#[test]
fn the_cached_node_fields_and_dynamic_keys_compile() {
    for expression in [
        "size(node.status['addresses']) > 0",
        "'addresses' in subjectNode.status",
        "has(node.metadata.labels)",
        "'images' in node.metadata.labels",
        "node.status.nodeInfo['images'] == 'a'",
        // A key known only at evaluation time reads an absent field (see UNCACHED_NODE_FIELDS).
        "['images'].all(k, !(k in node.status))",
        // A comprehension variable named like the root is not the Node.
        "x509.dnsNames.all(node, node != '') && [{'status': {'images': 1}}].all(node, has(node.status.images))",
    ] {
        assert!(
            errors(&one_rule(expression)).is_empty(),
            "{expression}: {:?}",
            errors(&one_rule(expression))
        );
    }
}
