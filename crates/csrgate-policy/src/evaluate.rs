//! Evaluating one compiled policy against one CSR's scope, giving a [`Verdict`].
//!
//! Every validation is evaluated, not only up to the first failure, so a denial lists every
//! reason at once (as cert-manager's approver-policy does). An evaluation error is a failure
//! carrying the error: csrgate never approves on an expression it could not evaluate.

use std::collections::HashMap;

use kube::core::cel::cel::{Context, Value};
use serde::Serialize;

use crate::compile::{CompiledExpression, CompiledPolicy, CompiledValidation, Rules};
use crate::env::{self, CsrScope};

/// The `validation` name used for a failure that is not one validation's: a matchCondition
/// that could not be evaluated, or a request that could not be parsed.
pub const MATCH_CONDITION_FAILURE_PREFIX: &str = "matchConditions.";

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
    /// The validation's name (or `matchConditions.<name>`, or `request`).
    pub validation: String,
    /// Why it failed: its message, or the evaluation error.
    pub message: String,
}

/// Evaluates `policy` in the scope of one CSR.
pub fn evaluate(policy: &CompiledPolicy, scope: &CsrScope) -> Verdict {
    let Some(rules) = policy.rules() else {
        return Verdict::NotReady(policy.not_ready_message().unwrap_or_default());
    };
    let mut context = scope.context().new_inner_scope();
    let variable_errors = bind_variables(rules, &mut context, scope);
    let run = Run {
        context: &context,
        scope,
        variable_errors: &variable_errors,
    };

    for (name, condition) in &rules.match_conditions {
        match run.evaluate_bool(condition) {
            Ok(true) => {}
            Ok(false) => return Verdict::NotApplicable,
            Err(error) => {
                return Verdict::Fail(vec![Failure {
                    validation: format!("{MATCH_CONDITION_FAILURE_PREFIX}{name}"),
                    message: format!("match condition could not be evaluated: {error}"),
                }]);
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
                    validation: validation.name.clone(),
                    message: run.failure_message(validation),
                }),
                Err(error) => Some(Failure {
                    validation: validation.name.clone(),
                    message: format!("expression could not be evaluated: {error}"),
                }),
            },
        )
        .collect();
    if failures.is_empty() {
        Verdict::Approve
    } else {
        Verdict::Fail(failures)
    }
}

/// Evaluates `spec.variables` in order, each seeing the ones before it, and binds each as
/// the identifier `variables.<name>` (expressions were rewritten to read it so). Returns
/// the evaluation errors by variable name.
fn bind_variables(
    rules: &Rules,
    context: &mut Context<'_>,
    scope: &CsrScope,
) -> HashMap<String, String> {
    let mut errors = HashMap::new();
    for variable in &rules.variables {
        let run = Run {
            context,
            scope,
            variable_errors: &errors,
        };
        match run.evaluate_value(&variable.expression) {
            Ok(value) => context.add_variable_from_value(variable.identifier.clone(), value),
            Err(error) => {
                errors.insert(variable.name.clone(), error);
            }
        }
    }
    errors
}

/// What evaluating one policy's expressions needs: its context (the CSR's scope plus the
/// policy's variables), the scope itself for results shared between policies, and the
/// variables that could not be evaluated.
struct Run<'r, 'c> {
    context: &'r Context<'c>,
    scope: &'r CsrScope,
    variable_errors: &'r HashMap<String, String>,
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
        let result = self.resolve(expression);
        self.scope.remember(key, &expression.source, &result);
        result
    }

    fn resolve(&self, expression: &CompiledExpression) -> Result<Value, String> {
        self.context
            .resolve(&expression.expression)
            .map_err(|error| env::describe(&error.to_string()))
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
