//! Evaluating one compiled policy against one CSR's scope, giving a [`Verdict`].
//!
//! Every validation is evaluated, not only up to the first failure, so a denial lists every
//! reason at once (as cert-manager's approver-policy does). An evaluation error is a failure
//! carrying the error: csrgate never approves on an expression it could not evaluate.

use std::collections::HashMap;

use kube::core::cel::cel::{Context, Value};
use serde::Serialize;

use crate::budget::Meter;
use crate::compile::{CompiledExpression, CompiledPolicy, CompiledValidation, Rules};
use crate::env::CsrScope;

/// The prefix of a matchCondition's name in a failure's `validation` text
/// (`matchConditions.<name>`, see [`FailureSource`]).
pub(crate) const MATCH_CONDITION_FAILURE_PREFIX: &str = "matchConditions.";

/// The `validation` text of a failure of the request itself (see [`FailureSource`]).
pub(crate) const REQUEST_FAILURE: &str = "request";

/// What failed: a validation, a matchCondition that could not be evaluated, or the request.
///
/// Written (and serialized, as the `validation` field of `csrgate check --output json`) as
/// the validation's name, `matchConditions.<name>`, or `request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureSource {
    /// A `spec.validations[]` entry that was false or could not be evaluated, by name.
    Validation(String),
    /// A `spec.matchConditions[]` entry that could not be evaluated, by name.
    MatchCondition(String),
    /// `spec.request` could not be read exactly.
    Request,
}

impl FailureSource {
    /// The validation's name, when a validation failed.
    pub fn validation(&self) -> Option<&str> {
        match self {
            FailureSource::Validation(name) => Some(name),
            FailureSource::MatchCondition(_) | FailureSource::Request => None,
        }
    }
}

impl std::fmt::Display for FailureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureSource::Validation(name) => f.write_str(name),
            FailureSource::MatchCondition(name) => {
                write!(f, "{MATCH_CONDITION_FAILURE_PREFIX}{name}")
            }
            FailureSource::Request => f.write_str(REQUEST_FAILURE),
        }
    }
}

impl Serialize for FailureSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What one policy says about one CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "failures")]
pub enum Verdict {
    /// The policy applies and every validation is true.
    Approve,
    /// The policy applies and at least one validation is false or could not be evaluated.
    Fail(Vec<Failure>),
    /// The policy covers the signer but a matchCondition is false.
    NotApplicable,
    /// The policy is not Ready (invalid, or not compiled yet); the text says why.
    NotReady(String),
}

impl Verdict {
    /// The spelling used in `csrgate check` output and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Approve => "Approve",
            Verdict::Fail(_) => "Fail",
            Verdict::NotApplicable => "NotApplicable",
            Verdict::NotReady(_) => "NotReady",
        }
    }
}

/// One failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What failed; serialized as `validation`: the validation's name (or
    /// `matchConditions.<name>`, or `request`).
    #[serde(rename = "validation")]
    pub source: FailureSource,
    /// Why it failed: its message, or the evaluation error.
    pub message: String,
}

/// Evaluates `policy` in the scope of one CSR.
pub fn evaluate(policy: &CompiledPolicy, scope: &CsrScope) -> Verdict {
    evaluate_with_unmatched(policy, scope).0
}

/// [`evaluate`], with the name of the matchCondition that was false when the verdict is
/// [`Verdict::NotApplicable`], so a `defaultAction: Deny` message can say why a policy did
/// not approve.
pub(crate) fn evaluate_with_unmatched(
    policy: &CompiledPolicy,
    scope: &CsrScope,
) -> (Verdict, Option<String>) {
    let Some(rules) = policy.rules() else {
        return (
            Verdict::NotReady(policy.not_ready_message().unwrap_or_default()),
            None,
        );
    };
    let meter = Meter::default();
    let _patterns = rules.patterns.lend();
    let mut context = scope.context().new_inner_scope();
    let variable_errors = bind_variables(rules, &mut context, scope, &meter);
    let run = Run {
        rules,
        context: &context,
        scope,
        variable_errors: &variable_errors,
        meter: &meter,
    };

    for (name, condition) in &rules.match_conditions {
        match run.evaluate_bool(condition) {
            Ok(true) => {}
            Ok(false) => return (Verdict::NotApplicable, Some(name.clone())),
            Err(error) => {
                let failure = Failure {
                    source: FailureSource::MatchCondition(name.clone()),
                    message: format!("match condition could not be evaluated: {error}"),
                };
                return (Verdict::Fail(vec![failure]), None);
            }
        }
    }

    let failures: Vec<Failure> = rules
        .validations
        .iter()
        .filter_map(
            |validation| match run.evaluate_bool(&validation.expression) {
                Ok(true) => None,
                Ok(false) => Some(Failure {
                    source: FailureSource::Validation(validation.name.clone()),
                    message: run.failure_message(validation),
                }),
                Err(error) => Some(Failure {
                    source: FailureSource::Validation(validation.name.clone()),
                    message: format!("expression could not be evaluated: {error}"),
                }),
            },
        )
        .collect();
    if failures.is_empty() {
        (Verdict::Approve, None)
    } else {
        (Verdict::Fail(failures), None)
    }
}

/// Evaluates `spec.variables` in order, each seeing the ones before it, and binds each as
/// the identifier `variables.<name>` (expressions were rewritten to read it so). Returns
/// the evaluation errors by variable name.
fn bind_variables(
    rules: &Rules,
    context: &mut Context<'_>,
    scope: &CsrScope,
    meter: &Meter,
) -> HashMap<String, String> {
    let mut errors = HashMap::new();
    for variable in &rules.variables {
        let run = Run {
            rules,
            context,
            scope,
            variable_errors: &errors,
            meter,
        };
        match run.evaluate_value(&variable.expression) {
            Ok(value) => context.add_variable_from_value(variable.entry.identifier.clone(), value),
            Err(error) => {
                errors.insert(variable.name.clone(), error);
            }
        }
    }
    errors
}

/// What evaluating one policy's expressions needs: its context (the CSR's scope plus the
/// policy's variables), the scope itself for results shared between policies, the
/// variables that could not be evaluated, and the policy's evaluation budget.
struct Run<'r, 'c> {
    rules: &'r Rules,
    context: &'r Context<'c>,
    scope: &'r CsrScope,
    variable_errors: &'r HashMap<String, String>,
    meter: &'r Meter,
}

impl Run<'_, '_> {
    fn evaluate_value(&self, expression: &CompiledExpression) -> Result<Value, String> {
        if let Some(name) = expression
            .reads_variables
            .iter()
            .find(|name| self.variable_errors.contains_key(*name))
        {
            let cause = self.variable_errors.get(name).map_or("", String::as_str);
            return Err(format!("variables.{name} could not be evaluated: {cause}"));
        }
        let Some(key) = expression.shared_key else {
            return self.resolve(expression);
        };
        if let Some(result) = self.scope.recall(key, &expression.source) {
            return result;
        }
        // A result cut short by this policy's remaining budget is this policy's alone.
        let shareable = self.meter.has_full_call_budget();
        let result = self.resolve(expression);
        if shareable {
            self.scope.remember(key, &expression.source, &result);
        }
        result
    }

    /// Evaluates under the policy's budget; a panic inside a CEL function is an error here.
    fn resolve(&self, expression: &CompiledExpression) -> Result<Value, String> {
        self.meter.run(|| {
            self.context
                .resolve(&expression.expression)
                .map_err(|error| self.rules.describe(&error.to_string()))
        })
    }

    fn evaluate_bool(&self, expression: &CompiledExpression) -> Result<bool, String> {
        match self.evaluate_value(expression)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "expression returned {}, not bool",
                type_name(&other)
            )),
        }
    }

    /// The message of a failed validation: its messageExpression if that gives a one-line
    /// string, else its static message, else `failed validation "<name>": <expression>`.
    fn failure_message(&self, validation: &CompiledValidation) -> String {
        if let Some(expression) = &validation.message_expression
            && let Ok(Value::String(text)) = self.evaluate_value(expression)
            && !text.contains('\n')
            && !text.contains('\r')
            && !text.trim().is_empty()
        {
            return text.to_string();
        }
        validation.message.clone().unwrap_or_else(|| {
            format!(
                "failed validation {:?}: {}",
                validation.name, validation.expression.source
            )
        })
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "a value of another type",
    }
}

#[cfg(test)]
mod tests {
    //! The evaluation budget and isolation, issue #12 part 1: the shared cases in
    //! `tests/cases/policy-*` and the kinds of fault they stand for.

    use std::time::{Duration, Instant};

    use csrgate_api::CsrApprovalPolicy;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

    use crate::fixtures::decide;
    use crate::fixtures::{CsrBuilder, errors, ready};
    use crate::{CompiledPolicy, Decision, Outcome, reasons};

    const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

    fn case_file(case: &str, file: &str) -> String {
        let path = format!(
            "{}/../../tests/cases/{case}/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_failure_source_is_written_as_the_validation_text_of_the_json_output() {
        use crate::{Failure, FailureSource};
        let json = |source: FailureSource| {
            serde_json::to_value(Failure {
                source,
                message: "m".into(),
            })
            .unwrap()
        };
        assert_eq!(
            json(FailureSource::Request),
            serde_json::json!({"validation": "request", "message": "m"})
        );
        assert_eq!(
            json(FailureSource::MatchCondition("is-node".into()))["validation"],
            "matchConditions.is-node"
        );
        assert_eq!(
            json(FailureSource::Validation("cn".into()))["validation"],
            "cn"
        );
        assert_eq!(
            FailureSource::Validation("cn".into()).validation(),
            Some("cn")
        );
        assert_eq!(FailureSource::Request.validation(), None);
    }

    fn case_policy(case: &str) -> CompiledPolicy {
        let mut policy: CsrApprovalPolicy =
            serde_saphyr::from_str(&case_file(case, "policy.yaml")).unwrap();
        policy.metadata.generation = Some(1);
        crate::fixtures::compile(&policy)
    }

    fn case_csr(case: &str) -> CertificateSigningRequest {
        serde_saphyr::from_str(&case_file(case, "jane.yaml")).unwrap()
    }

    /// Decides jane's CSR with one policy of the given validations (`name: expression`
    /// lines as YAML flow entries), with the given variables.
    fn decide_with(variables: &str, validations: &[&str]) -> Decision {
        let validations = crate::fixtures::validations(validations);
        let policy = ready(
            "p",
            &format!("signerNames: [{CLIENT}]\n{variables}validations:\n{validations}"),
        );
        decide(&[policy], &CsrBuilder::new().build(), None)
    }

    fn assert_denied_with(decision: &Decision, needle: &str) {
        assert_eq!(decision.outcome(), Outcome::Denied, "{decision:?}");
        assert_eq!(
            decision.reason(),
            Some(reasons::POLICY_DENIED),
            "{decision:?}"
        );
        let message = decision.message();
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }

    /// Under `cargo test` (debug) evaluation is several times slower than released.
    fn time_limit() -> Duration {
        if cfg!(debug_assertions) {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(500)
        }
    }

    #[test]
    fn policy_panic_case_denies_with_the_panic_instead_of_crashing() {
        let policy = case_policy("policy-panic");
        assert!(policy.is_ready(), "{:?}", policy.errors());
        let decision = decide(&[policy], &case_csr("policy-panic"), None);
        assert_denied_with(
            &decision,
            "precision: expression could not be evaluated: a CEL function panicked",
        );
    }

    #[test]
    fn policy_memory_case_is_refused_at_compile_time_with_its_field_path() {
        let policy = case_policy("policy-memory");
        assert_eq!(
            policy
                .errors()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "spec.validations[0].expression: estimated evaluation cost 2000000005 exceeds the limit of 1000000 units per expression"
            ]
        );
    }

    #[test]
    fn a_range_sized_by_the_csr_is_denied_before_it_is_allocated() {
        let started = Instant::now();
        let decision = decide_with(
            "",
            &["size(lists.range(object.spec.expirationSeconds * 100000)) > 0"],
        );
        assert_denied_with(
            &decision,
            "exceeds the limit of 1000000 units per expression",
        );
        assert!(started.elapsed() < time_limit(), "{:?}", started.elapsed());
    }

    #[test]
    fn strings_doubled_through_variables_stop_at_the_size_limit() {
        let mut variables = String::from(
            "variables:\n  - {name: s0, expression: 'object.spec.username + object.spec.username'}\n",
        );
        for i in 1..40 {
            variables.push_str(&format!(
                "  - {{name: s{i}, expression: 'variables.s{p} + variables.s{p}'}}\n",
                p = i - 1
            ));
        }
        let decision = decide_with(&variables, &["size(variables.s39) > 0"]);
        assert_denied_with(&decision, "could not be evaluated");
        let message = decision.message();
        assert!(
            message.contains("larger than 3145728 bytes") || message.contains("budget"),
            "{message}"
        );
    }

    #[test]
    fn lists_doubled_through_variables_stop_at_the_cost_limit() {
        let mut variables = String::from("variables:\n  - {name: l0, expression: '[1, 2]'}\n");
        for i in 1..40 {
            variables.push_str(&format!(
                "  - {{name: l{i}, expression: 'variables.l{p} + variables.l{p}'}}\n",
                p = i - 1
            ));
        }
        let decision = decide_with(&variables, &["size(variables.l39) > 0"]);
        assert_denied_with(&decision, "variables.l");
        assert_denied_with(&decision, "exceeds");
    }

    #[test]
    fn policy_slow_case_is_refused_at_compile_time_with_its_field_path() {
        let policy = case_policy("policy-slow");
        let errors: Vec<String> = policy.errors().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("spec.validations[0].expression: estimated evaluation cost "),
            "{errors:?}"
        );
    }

    #[test]
    fn nested_ranges_sized_by_the_csr_are_denied_well_under_a_second() {
        let started = Instant::now();
        let decision = decide_with(
            "",
            &[
                "lists.range(object.spec.expirationSeconds / 20).all(a, lists.range(object.spec.expirationSeconds / 20).all(b, true))",
            ],
        );
        assert_denied_with(
            &decision,
            "exceeds the limit of 1000000 units per expression",
        );
        assert!(started.elapsed() < time_limit(), "{:?}", started.elapsed());
    }

    #[test]
    fn policy_overflow_case_denies_every_overflowing_validation() {
        let policy = case_policy("policy-overflow");
        assert!(policy.is_ready(), "{:?}", policy.errors());
        let decision = decide(&[policy], &case_csr("policy-overflow"), None);
        for validation in ["sum-wraps-negative", "neg-wraps", "sum-under-limit"] {
            assert_denied_with(
                &decision,
                &format!("{validation}: expression could not be evaluated: "),
            );
        }
        assert_denied_with(
            &decision,
            "integer overflow adding 86400 and 9223372036854775807",
        );
        assert_denied_with(&decision, "integer overflow negating -9223372036854775808");
    }

    #[test]
    fn arithmetic_that_overflows_is_an_error_not_a_wrapped_value() {
        for expression in [
            "9223372036854775807 + 1 < 0",
            "-9223372036854775808 - 1 > 0",
            "9223372036854775807 * 2 < 0",
            "-(-9223372036854775808) < 0",
            "[18446744073709551615u, 1u].sum() == 0u",
        ] {
            let decision = decide_with("", &[expression]);
            assert_denied_with(&decision, "could not be evaluated");
        }
        let decision = decide_with(
            "",
            &["[1, 2, 3].sum() == 6 && -(1) == -1 && [1.5].sum() == 1.5"],
        );
        assert_eq!(decision.outcome(), Outcome::Approved, "{decision:?}");
    }

    #[test]
    fn an_exceeded_budget_is_not_absorbed_by_a_logical_or() {
        let decision = decide_with(
            "",
            &["lists.range(object.spec.expirationSeconds * 100).exists(i, i < 0) || true"],
        );
        assert_denied_with(&decision, "exceeds the limit");
    }

    #[test]
    fn every_expression_has_its_own_per_call_limit_within_the_policy_budget() {
        // Each validation costs about 800,000 units (a 100,000-element range, then 7 units
        // an iteration): under the per-call limit, and twelve fit the policy's 10,000,000;
        // the thirteenth does not. The texts differ so that none is shared.
        let rules: Vec<String> = (0..13)
            .map(|k| {
                format!("lists.range(object.spec.expirationSeconds + 13600).all(i, i >= -{k})")
            })
            .collect();
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let decision = decide_with("", &rules);
        assert_denied_with(
            &decision,
            "v12: expression could not be evaluated: evaluation cost exceeds the policy's budget of 10000000 units per CSR",
        );
        assert!(!decision.message().contains("v11:"));
    }

    #[test]
    fn ordinary_rules_stay_far_under_the_budget() {
        let decision = decide_with(
            "",
            &[
                "object.spec.groups.all(g, g.startsWith('system:') || g == 'developers')",
                "['a', 'b'].map(x, x + '!').join(',') == 'a!,b!'",
                "'a,b,c'.split(',').size() == 3 && 'abc'.upperAscii() == 'ABC'",
                "sets.contains(['a', 'b', 'c'], ['a']) && [3, 1, 2].sort() == [1, 2, 3]",
                "'%d-%s'.format([1, 'x']) == '1-x' && 'abc'.replace('b', 'x') == 'axc'",
            ],
        );
        assert_eq!(decision.outcome(), Outcome::Approved, "{decision:?}");
    }

    #[test]
    fn ranges_of_known_size_within_the_budget_compile() {
        assert!(errors(&format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: 'lists.range(100).all(a, lists.range(100).all(b, a + b >= 0))'}}\n"
        ))
        .is_empty());
    }
}

#[cfg(test)]
mod cel_differences {
    //! Where csrgate's CEL (cel 0.13 with kube-cel 0.8, as csrgate sets them up) differs from
    //! the CEL spec and from Kubernetes CEL: each row pins one difference listed in
    //! docs/policies.md ("Where csrgate's CEL differs"), so a dependency upgrade that changes
    //! one fails here and the document is updated with it.

    use crate::Verdict;
    use crate::fixtures::decide;
    use crate::fixtures::{CsrBuilder, policy};

    /// What csrgate makes of one validation for jane's CSR: `true`, `false`, `error: ...`
    /// (an evaluation error) or `refused: ...` (a compile error).
    fn outcome(expression: &str) -> String {
        let compiled = crate::fixtures::compile(&policy(
            "p",
            &format!(
                "signerNames: [kubernetes.io/kube-apiserver-client]\nvalidations:\n  - {{name: v, expression: {}}}\n",
                serde_json::to_string(expression).unwrap()
            ),
        ));
        if let Some(error) = compiled.errors().first() {
            return format!("refused: {}", error.message);
        }
        let decision = decide(&[compiled], &CsrBuilder::new().build(), None);
        match &decision.policies[0].verdict {
            Verdict::Approve => "true".to_owned(),
            Verdict::Fail(failures) => {
                match failures[0].message.split_once("could not be evaluated: ") {
                    Some((_, error)) => format!("error: {error}"),
                    None => "false".to_owned(),
                }
            }
            other => format!("{other:?}"),
        }
    }

    /// (expression, what the CEL spec gives, what csrgate gives).
    const DIFFERENCES: [(&str, &str, &str); 13] = [
        // Numbers of different types are never equal (the spec's heterogeneous equality
        // says they are when their values are).
        ("1 == 1.0", "true", "false"),
        ("1 == 1u", "true", "false"),
        ("[1] == [1.0]", "true", "false"),
        ("1 in [1.0]", "true", "false"),
        ("object.spec.expirationSeconds == 86400.0", "true", "false"),
        // Ordering across numeric types does follow the spec.
        ("1 < 1.5", "true", "true"),
        // size() of a string counts bytes, not code points.
        ("size('h\u{e9}llo') == 5", "true", "false"),
        ("size('h\u{e9}llo') == 6", "false", "true"),
        // A double out of the int range converts instead of failing.
        (
            "int(9223372036854775807.0) == 9223372036854775807",
            "error: out of range",
            "true",
        ),
        // No type(), no dyn(), no type identifiers: refused when compiled.
        ("type(1) == int", "true", "refused: unknown function type"),
        ("dyn(1) == 1", "true", "refused: unknown function dyn"),
        (
            "int == int",
            "true",
            "refused: unknown identifier int (known: object, x509, node, subjectNode, variables, authorizer)",
        ),
        // has() on a field the schema lacks is false (Kubernetes refuses it when compiled).
        ("has(object.spec.bogus)", "false", "false"),
    ];

    #[test]
    fn csrgate_differs_from_the_cel_spec_as_documented() {
        for (expression, spec, csrgate) in DIFFERENCES {
            assert_eq!(outcome(expression), csrgate, "{expression} (spec: {spec})");
        }
    }

    #[test]
    fn overflow_and_errors_follow_the_spec() {
        for (expression, expected) in [
            (
                "2u - 3u == 0u",
                "error: Overflow from binary operator 'sub': UInt(2), UInt(3)",
            ),
            (
                "9223372036854775807 + 1 > 0",
                "error: Overflow from binary operator 'add': Int(9223372036854775807), Int(1)",
            ),
            ("(1 / 0 == 1) || true", "true"),
            ("string(1.0) == '1'", "true"),
            (
                "timestamp('2026-01-01T00:00:00Z') < timestamp('2026-01-02T00:00:00Z')",
                "true",
            ),
        ] {
            assert_eq!(outcome(expression), expected, "{expression}");
        }
    }

    #[test]
    fn comparing_with_a_double_or_uint_literal_warns() {
        let warned = |expression: &str| {
            !crate::fixtures::compile(&policy(
                "p",
                &format!(
                    "signerNames: [kubernetes.io/kube-apiserver-client]\nvalidations:\n  - {{name: v, expression: {}}}\n",
                    serde_json::to_string(expression).unwrap()
                ),
            ))
            .warnings()
            .is_empty()
        };
        assert!(warned("object.spec.expirationSeconds == 86400.0"));
        assert!(warned("1 != 1u"));
        assert!(!warned("object.spec.expirationSeconds == 86400"));
        assert!(!warned("double(object.spec.expirationSeconds) == 86400.0"));
    }
}
