//! The walk over a policy's spec: names, signers, and each expression through the limits,
//! the static checks and lowering.

use std::collections::HashMap;
use std::sync::Arc;

use csrgate_api::{CsrApprovalPolicy, CsrApprovalPolicySpec, ExpressionWarning};
use kube::core::cel::cel;

use super::check::Check;
use super::limits::{
    MAX_AST_DEPTH, MAX_EXPRESSION_BYTES, estimated_cost, parse_error_text, prescan,
};
use super::lower::{Reads, flatten, instrument};
use super::{CompileError, CompiledExpression, CompiledValidation, CompiledVariable, Rules};
use crate::engine::Engine;
use crate::patterns::Patterns;
use crate::{budget, env};

/// `pattern` is a signer name, or `<domain>/*` for every signer of the domain.
pub(super) fn signer_matches(pattern: &str, signer_name: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(domain) => signer_name
            .strip_prefix(domain)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        None => pattern == signer_name,
    }
}

/// Collects errors and warnings while compiling one policy.
pub(super) struct Compiler<'e> {
    pub(super) engine: &'e Engine,
    /// The constant `matches` patterns, compiled.
    pub(super) patterns: HashMap<String, Arc<regex::Regex>>,
    pub(super) errors: Vec<CompileError>,
    pub(super) warnings: Vec<ExpressionWarning>,
    /// Fields of the expressions that read `subjectNode`.
    pub(super) subject_node_fields: Vec<String>,
}

impl<'e> Compiler<'e> {
    pub(super) fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            patterns: HashMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            subject_node_fields: Vec::new(),
        }
    }

    pub(super) fn policy(&mut self, policy: &CsrApprovalPolicy) -> Rules {
        let spec = &policy.spec;
        self.counts_and_signers(spec);
        let (variables, declared) = self.variables(spec);
        let match_conditions = self.match_conditions(spec, &declared);
        let validations = self.validations(spec, &declared);
        Rules {
            variables,
            match_conditions,
            validations,
            scope_paths: Vec::new(),
            roots: env::Roots::default(),
            entries: Vec::new(),
            patterns: Arc::new(Patterns {
                constant: std::mem::take(&mut self.patterns),
                dynamic: Arc::clone(self.engine.patterns()),
            }),
        }
        .with_scope_reads()
    }

    /// The bounds on the spec's lists, and each signer name's form.
    fn counts_and_signers(&mut self, spec: &CsrApprovalPolicySpec) {
        if spec.signer_names.is_empty() || spec.signer_names.len() > 16 {
            self.error(
                "spec.signerNames",
                format!("must have 1 to 16 entries, has {}", spec.signer_names.len()),
            );
        }
        for (i, signer) in spec.signer_names.iter().enumerate() {
            if !is_signer_pattern(signer) {
                self.error(
                    format!("spec.signerNames[{i}]"),
                    format!("{signer:?} is not <domain>/<path> or <domain>/*"),
                );
            }
        }
        if spec.validations.is_empty() || spec.validations.len() > 64 {
            self.error(
                "spec.validations",
                format!("must have 1 to 64 entries, has {}", spec.validations.len()),
            );
        }
        if spec.match_conditions.len() > 64 {
            self.error("spec.matchConditions", "must have at most 64 entries");
        }
    }

    /// `spec.variables`, each seeing the ones before it; with the names declared.
    fn variables(&mut self, spec: &CsrApprovalPolicySpec) -> (Vec<CompiledVariable>, Vec<String>) {
        let mut declared: Vec<String> = Vec::new();
        let mut variables = Vec::new();
        for (i, variable) in spec.variables.iter().enumerate() {
            let path = format!("spec.variables[{i}]");
            self.name(
                &format!("{path}.name"),
                &variable.name,
                &declared,
                NameKind::Identifier,
            );
            if let Some(expression) = self.expression(
                &format!("{path}.expression"),
                &variable.expression,
                &declared,
            ) {
                variables.push(CompiledVariable {
                    name: variable.name.clone(),
                    entry: self.engine.paths().intern(&format!(
                        "{}.{}",
                        env::VARIABLES,
                        variable.name
                    )),
                    expression,
                });
            }
            declared.push(variable.name.clone());
        }
        (variables, declared)
    }

    /// `spec.matchConditions`, by name.
    fn match_conditions(
        &mut self,
        spec: &CsrApprovalPolicySpec,
        declared: &[String],
    ) -> Vec<(String, CompiledExpression)> {
        let mut names = Vec::new();
        let mut match_conditions = Vec::new();
        for (i, condition) in spec.match_conditions.iter().enumerate() {
            let path = format!("spec.matchConditions[{i}]");
            self.label(&path, &condition.name, &mut names);
            if let Some(expression) = self.expression(
                &format!("{path}.expression"),
                &condition.expression,
                declared,
            ) {
                match_conditions.push((condition.name.clone(), expression));
            }
        }
        match_conditions
    }

    /// `spec.validations`, with their messages.
    fn validations(
        &mut self,
        spec: &CsrApprovalPolicySpec,
        declared: &[String],
    ) -> Vec<CompiledValidation> {
        let mut names = Vec::new();
        let mut validations = Vec::new();
        for (i, validation) in spec.validations.iter().enumerate() {
            let path = format!("spec.validations[{i}]");
            self.label(&path, &validation.name, &mut names);
            if let Some(message) = &validation.message
                && (message.contains('\n') || message.contains('\r'))
            {
                self.error(format!("{path}.message"), "must be one line");
            }
            let message_expression = validation.message_expression.as_ref().and_then(|source| {
                self.expression(&format!("{path}.messageExpression"), source, declared)
            });
            if let Some(expression) = self.expression(
                &format!("{path}.expression"),
                &validation.expression,
                declared,
            ) {
                validations.push(CompiledValidation {
                    name: validation.name.clone(),
                    expression,
                    message: validation.message.clone(),
                    message_expression,
                });
            }
        }
        validations
    }

    pub(super) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(CompileError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, field: &str, warning: impl Into<String>) {
        self.warnings.push(ExpressionWarning {
            field_ref: field.to_owned(),
            warning: warning.into(),
        });
    }

    /// Checks the `name` of the list entry at `path` (a DNS label, unique in `names`) and
    /// adds it to `names`.
    fn label(&mut self, path: &str, name: &str, names: &mut Vec<String>) {
        self.name(&format!("{path}.name"), name, names, NameKind::Label);
        names.push(name.to_owned());
    }

    fn name(&mut self, field: &str, name: &str, earlier: &[String], kind: NameKind) {
        if earlier.iter().any(|n| n == name) {
            self.error(field, format!("duplicate name {name:?}"));
        }
        let valid = match kind {
            NameKind::Label => is_dns_label(name),
            NameKind::Identifier => is_identifier(name),
        };
        if !valid {
            self.error(
                field,
                format!("{name:?} is not a valid {}", kind.describe()),
            );
        }
    }

    /// Checks, parses and lowers one expression; `None` (with errors recorded) when it is
    /// unusable.
    fn expression(
        &mut self,
        field: &str,
        source: &str,
        variables: &[String],
    ) -> Option<CompiledExpression> {
        let mut expression = self.parse(field, source)?;
        let reads_variables = self.check(field, &expression, variables)?;
        let mut reads = Reads::new(self.engine.paths());
        flatten(&mut expression, &mut Vec::new(), &mut reads);
        self.check_reads(field, &reads)?;
        let estimate = estimated_cost(&expression);
        if estimate > budget::PER_CALL_LIMIT {
            self.error(
                field,
                format!(
                    "estimated evaluation cost {estimate} exceeds the limit of {} units per expression",
                    budget::PER_CALL_LIMIT
                ),
            );
            return None;
        }
        instrument(&mut expression);
        let shared_key = reads_variables.is_empty().then(|| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            source.hash(&mut hasher);
            hasher.finish()
        });
        Some(CompiledExpression {
            expression,
            source: Arc::from(source),
            shared_key,
            reads_variables,
            entries: reads.entries,
            roots: reads.roots,
        })
    }

    /// Parses one expression within the size and nesting limits.
    fn parse(&mut self, field: &str, source: &str) -> Option<cel::IdedExpr> {
        if source.len() > MAX_EXPRESSION_BYTES {
            self.error(
                field,
                format!(
                    "expression is {} bytes, more than the {MAX_EXPRESSION_BYTES}-byte limit",
                    source.len()
                ),
            );
            return None;
        }
        if source.trim().is_empty() {
            self.error(field, "expression is empty");
            return None;
        }
        if let Err(message) = prescan(source) {
            self.error(field, message);
            return None;
        }
        let parsed = cel::parser::Parser::new()
            .max_recursion_depth(u16::try_from(MAX_AST_DEPTH).unwrap_or(u16::MAX))
            .parse(source);
        match parsed {
            Ok(expression) => Some(expression),
            Err(errors) => {
                self.error(field, parse_error_text(&errors));
                None
            }
        }
    }

    /// The static checks of one parsed expression ([`Check`]); the `variables.<name>` it
    /// reads, sorted, or `None` when it has problems.
    fn check(
        &mut self,
        field: &str,
        expression: &cel::IdedExpr,
        variables: &[String],
    ) -> Option<Vec<String>> {
        let mut patterns = std::mem::take(&mut self.patterns);
        let mut check = Check {
            variables,
            scopes: Vec::new(),
            nodes: 0,
            problems: Vec::new(),
            warnings: Vec::new(),
            reads_variables: Vec::new(),
            patterns: &mut patterns,
        };
        check.walk(expression, 0, 0);
        let Check {
            warnings,
            problems,
            mut reads_variables,
            ..
        } = check;
        self.patterns = patterns;
        for warning in warnings {
            self.warn(field, warning);
        }
        if !problems.is_empty() {
            for problem in problems {
                self.error(field, problem);
            }
            return None;
        }
        reads_variables.sort();
        reads_variables.dedup();
        Some(reads_variables)
    }

    /// Checks what a lowered expression reads: `variables` only as `variables.<name>`, and
    /// field paths the schemas know; records whether it reads `subjectNode`. `None` when a
    /// read can never resolve.
    fn check_reads(&mut self, field: &str, reads: &Reads<'_>) -> Option<()> {
        if reads.whole_variables {
            self.error(
                field,
                "variables can only be read as variables.<name>; any other use of variables (variables[\"a\"], has(variables.a), variables itself) never resolves",
            );
            return None;
        }
        let mut unresolvable = false;
        for path in &reads.paths {
            match env::check_schema_path(path) {
                Ok(()) => {}
                // The CSR's schema is small and fixed: a field outside it is a typo.
                Err(message) if path.starts_with(env::OBJECT) => {
                    self.error(field, format!("{message}: this never resolves"));
                    unresolvable = true;
                }
                // A Node field csrgate's Kubernetes version does not know may be newer
                // than it: warn, do not refuse.
                Err(message) => self.warn(
                    field,
                    format!("{message}: reading it fails unless the Node has it"),
                ),
            }
        }
        if unresolvable {
            return None;
        }
        if reads.roots.contains(env::SUBJECT_NODE)
            || reads.paths.iter().any(|p| {
                p.strip_prefix(env::SUBJECT_NODE)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
        {
            self.subject_node_fields.push(field.to_owned());
        }
        Some(())
    }
}

#[derive(Clone, Copy)]
enum NameKind {
    Label,
    Identifier,
}

impl NameKind {
    fn describe(self) -> &'static str {
        match self {
            NameKind::Label => "name (lowercase letters, digits and '-', at most 63)",
            NameKind::Identifier => "variable name (a CEL identifier)",
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_signer_pattern(signer: &str) -> bool {
    let Some((domain, path)) = signer.split_once('/') else {
        return false;
    };
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !path.is_empty()
        && (path == "*" || !path.contains('*'))
}
