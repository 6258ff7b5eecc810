//! Compiling a `CsrApprovalPolicy`: parse every expression once per generation, within limits.
//!
//! A policy that would fail at 3 a.m. should fail when it is applied instead, so compiling
//! checks what can be checked without a CSR: expression size, AST depth and node count,
//! comprehension nesting, identifiers outside the variable table, `variables.<name>` used
//! before it is declared, unknown `x509` fields, unknown functions, constant regular
//! expressions, duplicate names. Problems that do not stop the policy are kept apart as
//! warnings, like ripgrep's `Partial` errors.

use std::sync::Arc;

use csrgate_api::{CsrApprovalPolicy, ExpressionWarning, FailureAction, PolicyMode};
use kube::core::cel::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use kube::core::cel::cel;

use crate::env;

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 5 * 1024;
/// Deepest expression tree accepted; also the parser's recursion limit.
pub const MAX_AST_DEPTH: usize = 48;
/// Most nodes accepted in one expression tree.
pub const MAX_AST_NODES: usize = 2000;
/// Deepest nesting of comprehensions (`all`, `exists`, `map`, `filter`, ...) accepted.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// One reason a policy is not Ready, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CompileError {
    /// The field path, e.g. `spec.validations[2].expression`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A compiled expression and the variables it reads.
#[derive(Debug)]
pub(crate) struct CompiledExpression {
    /// The checked tree, evaluated as is (`cel::Program` would only wrap it).
    pub(crate) expression: cel::IdedExpr,
    pub(crate) source: String,
    /// `variables.<name>` this expression reads, so a variable's evaluation error can be
    /// reported on the expressions that needed it.
    pub(crate) reads_variables: Vec<String>,
}

/// A compiled `spec.validations[]` entry.
#[derive(Debug)]
pub(crate) struct CompiledValidation {
    pub(crate) name: String,
    pub(crate) expression: CompiledExpression,
    pub(crate) message: Option<String>,
    pub(crate) message_expression: Option<CompiledExpression>,
}

/// The compiled expressions of a Ready policy.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) variables: Vec<(String, CompiledExpression)>,
    pub(crate) match_conditions: Vec<(String, CompiledExpression)>,
    pub(crate) validations: Vec<CompiledValidation>,
}

/// Why a policy cannot be used to decide.
#[derive(Debug, Clone)]
enum NotReady {
    /// The controller has not compiled this generation yet.
    NotCompiled,
    /// An expression is invalid.
    Invalid(Vec<CompileError>),
}

/// A `CsrApprovalPolicy` ready to decide with, or the reasons it is not.
///
/// Compiled once per generation and shared (cheaply cloned) between decisions.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    name: String,
    generation: i64,
    mode: PolicyMode,
    failure_action: FailureAction,
    signer_names: Vec<String>,
    rules: Result<Arc<Rules>, NotReady>,
    warnings: Vec<ExpressionWarning>,
}

impl CompiledPolicy {
    /// Compiles every expression of the policy's current spec.
    ///
    /// Never fails: an invalid policy is returned not Ready, with its [`errors`](Self::errors),
    /// because a covering policy that is not Ready must still hold its CSRs pending.
    pub fn compile(policy: &CsrApprovalPolicy) -> Self {
        let mut compiler = Compiler::default();
        let rules = compiler.policy(policy);
        let rules = if compiler.errors.is_empty() {
            Ok(Arc::new(rules))
        } else {
            Err(NotReady::Invalid(compiler.errors))
        };
        Self {
            rules,
            warnings: compiler.warnings,
            ..Self::header(policy)
        }
    }

    /// A placeholder for a policy whose current generation is not compiled yet; it holds the
    /// CSRs it covers (when Enforce) until it is replaced by [`compile`](Self::compile).
    pub fn not_compiled(policy: &CsrApprovalPolicy) -> Self {
        Self::header(policy)
    }

    fn header(policy: &CsrApprovalPolicy) -> Self {
        Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation.unwrap_or_default(),
            mode: policy.spec.mode,
            failure_action: policy.spec.failure_action,
            signer_names: policy.spec.signer_names.clone(),
            rules: Err(NotReady::NotCompiled),
            warnings: Vec::new(),
        }
    }

    /// The same policy in another mode; `csrgate controller --dry-run` makes every policy Audit.
    #[must_use]
    pub fn with_mode(mut self, mode: PolicyMode) -> Self {
        self.mode = mode;
        self
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `metadata.generation` compiled.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Enforce or Audit.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// Deny or Ignore.
    pub fn failure_action(&self) -> FailureAction {
        self.failure_action
    }

    /// `spec.signerNames`.
    pub fn signer_names(&self) -> &[String] {
        &self.signer_names
    }

    /// Whether the policy can decide (every expression compiled).
    pub fn is_ready(&self) -> bool {
        self.rules.is_ok()
    }

    /// Why the policy is not Ready, one error per problem; empty when Ready or not compiled yet.
    pub fn errors(&self) -> &[CompileError] {
        match &self.rules {
            Err(NotReady::Invalid(errors)) => errors,
            _ => &[],
        }
    }

    /// A one-line reason the policy is not Ready, for events and decision messages.
    pub fn not_ready_message(&self) -> Option<String> {
        match &self.rules {
            Ok(_) => None,
            Err(NotReady::NotCompiled) => Some(format!(
                "generation {} is not compiled yet",
                self.generation
            )),
            Err(NotReady::Invalid(errors)) => Some(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    /// Expressions that compiled but look wrong.
    pub fn warnings(&self) -> &[ExpressionWarning] {
        &self.warnings
    }

    /// Whether this policy covers CSRs for `signer_name`: an exact entry, or `<domain>/*`.
    pub fn covers(&self, signer_name: &str) -> bool {
        self.signer_names
            .iter()
            .any(|pattern| signer_matches(pattern, signer_name))
    }

    pub(crate) fn rules(&self) -> Option<&Rules> {
        self.rules.as_deref().ok()
    }
}

/// `pattern` is a signer name, or `<domain>/*` for every signer of the domain.
fn signer_matches(pattern: &str, signer_name: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(domain) => signer_name
            .strip_prefix(domain)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        None => pattern == signer_name,
    }
}

/// Collects errors and warnings while compiling one policy.
#[derive(Default)]
struct Compiler {
    errors: Vec<CompileError>,
    warnings: Vec<ExpressionWarning>,
}

impl Compiler {
    fn policy(&mut self, policy: &CsrApprovalPolicy) -> Rules {
        let spec = &policy.spec;
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

        let mut declared: Vec<String> = Vec::new();
        let mut variables = Vec::new();
        for (i, variable) in spec.variables.iter().enumerate() {
            let path = format!("spec.variables[{i}]");
            self.name(&format!("{path}.name"), &variable.name, &declared, NameKind::Identifier);
            if let Some(expression) =
                self.expression(&format!("{path}.expression"), &variable.expression, &declared)
            {
                variables.push((variable.name.clone(), expression));
            }
            declared.push(variable.name.clone());
        }

        let mut names = Vec::new();
        let mut match_conditions = Vec::new();
        for (i, condition) in spec.match_conditions.iter().enumerate() {
            let path = format!("spec.matchConditions[{i}]");
            self.name(&format!("{path}.name"), &condition.name, &names, NameKind::Label);
            names.push(condition.name.clone());
            if let Some(expression) =
                self.expression(&format!("{path}.expression"), &condition.expression, &declared)
            {
                match_conditions.push((condition.name.clone(), expression));
            }
        }

        let mut names = Vec::new();
        let mut validations = Vec::new();
        for (i, validation) in spec.validations.iter().enumerate() {
            let path = format!("spec.validations[{i}]");
            self.name(&format!("{path}.name"), &validation.name, &names, NameKind::Label);
            names.push(validation.name.clone());
            if let Some(message) = &validation.message
                && (message.contains('\n') || message.contains('\r'))
            {
                self.error(format!("{path}.message"), "must be one line");
            }
            let message_expression = validation.message_expression.as_ref().and_then(|source| {
                self.expression(&format!("{path}.messageExpression"), source, &declared)
            });
            if let Some(expression) =
                self.expression(&format!("{path}.expression"), &validation.expression, &declared)
            {
                validations.push(CompiledValidation {
                    name: validation.name.clone(),
                    expression,
                    message: validation.message.clone(),
                    message_expression,
                });
            }
        }
        Rules {
            variables,
            match_conditions,
            validations,
        }
    }

    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
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

    fn name(&mut self, field: &str, name: &str, earlier: &[String], kind: NameKind) {
        if earlier.iter().any(|n| n == name) {
            self.error(field, format!("duplicate name {name:?}"));
        }
        let valid = match kind {
            NameKind::Label => is_dns_label(name),
            NameKind::Identifier => is_identifier(name),
        };
        if !valid {
            self.error(field, format!("{name:?} is not a valid {}", kind.describe()));
        }
    }

    /// Checks and parses one expression; `None` (with errors recorded) when it is unusable.
    fn expression(
        &mut self,
        field: &str,
        source: &str,
        variables: &[String],
    ) -> Option<CompiledExpression> {
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
        let expression = match parsed {
            Ok(expression) => expression,
            Err(errors) => {
                self.error(field, parse_error_text(&errors));
                return None;
            }
        };
        let mut check = Check {
            variables,
            scopes: Vec::new(),
            nodes: 0,
            problems: Vec::new(),
            warnings: Vec::new(),
            reads_variables: Vec::new(),
        };
        check.walk(&expression, 0, 0);
        for warning in std::mem::take(&mut check.warnings) {
            self.warn(field, warning);
        }
        if !check.problems.is_empty() {
            for problem in check.problems {
                self.error(field, problem);
            }
            return None;
        }
        let mut reads_variables = check.reads_variables;
        reads_variables.sort();
        reads_variables.dedup();
        Some(CompiledExpression {
            expression,
            source: source.to_owned(),
            reads_variables,
        })
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

/// A cheap scan that refuses inputs whose parse tree would be too deep before the parser
/// (whose tree building and dropping recurse) ever sees them: long runs of prefix operators
/// and long chains of binary operators.
fn prescan(source: &str) -> Result<(), String> {
    let mut unary_run = 0usize;
    let mut operators = 0usize;
    let mut in_string: Option<u8> = None;
    let mut escaped = false;
    let mut previous_significant = b'(';
    for &b in source.as_bytes() {
        if let Some(quote) = in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == quote {
                in_string = None;
                previous_significant = b'"';
            }
            continue;
        }
        match b {
            b'"' | b'\'' => in_string = Some(b),
            b'!' | b'-' if matches!(previous_significant, b'(' | b'[' | b'{' | b',' | b'!' | b'-' | b'+' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'&' | b'|' | b'?' | b':') => {
                unary_run += 1;
                if unary_run > MAX_AST_DEPTH {
                    return Err(format!(
                        "expression nests deeper than {MAX_AST_DEPTH} levels"
                    ));
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' => operators += 1,
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            if !matches!(b, b'!' | b'-') {
                unary_run = 0;
            }
            previous_significant = b;
        }
    }
    if operators > MAX_AST_NODES / 2 {
        return Err(format!(
            "expression has {operators} arithmetic operators, more than the {} allowed",
            MAX_AST_NODES / 2
        ));
    }
    Ok(())
}

fn parse_error_text(errors: &cel::ParseErrors) -> String {
    let text = errors
        .errors
        .iter()
        .map(|e| {
            if e.msg.contains("Recursion limit") {
                format!("expression nests deeper than {MAX_AST_DEPTH} levels")
            } else {
                format!("syntax error at {}:{}: {}", e.pos.0, e.pos.1 + 1, e.msg)
            }
        })
        .collect::<Vec<_>>();
    let mut text = text.join("; ");
    if text.is_empty() {
        text = "syntax error".into();
    }
    text
}

/// Walks one parsed expression, recording problems instead of stopping at the first.
struct Check<'a> {
    variables: &'a [String],
    /// Names bound by enclosing comprehensions.
    scopes: Vec<Vec<String>>,
    nodes: usize,
    problems: Vec<String>,
    warnings: Vec<String>,
    reads_variables: Vec<String>,
}

impl Check<'_> {
    fn walk(&mut self, node: &IdedExpr, depth: usize, comprehensions: usize) {
        self.nodes += 1;
        if depth > MAX_AST_DEPTH {
            self.problem(format!("expression nests deeper than {MAX_AST_DEPTH} levels"));
            return;
        }
        if self.nodes > MAX_AST_NODES {
            self.problem(format!("expression has more than {MAX_AST_NODES} nodes"));
            return;
        }
        match &node.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => self.identifier(name),
            Expr::Select(select) => {
                self.select(&select.operand, &select.field);
                self.walk(&select.operand, depth + 1, comprehensions);
            }
            Expr::Call(call) => {
                self.function(&call.func_name, call.target.as_deref());
                if call.func_name == "matches" {
                    self.pattern(call.args.last());
                }
                if let Some(target) = &call.target {
                    self.walk(target, depth + 1, comprehensions);
                }
                for arg in &call.args {
                    self.walk(arg, depth + 1, comprehensions);
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.walk(element, depth + 1, comprehensions);
                }
            }
            Expr::Map(map) => self.entries(&map.entries, depth, comprehensions),
            Expr::Struct(structure) => {
                self.problem(format!(
                    "message construction {}{{...}} is not supported",
                    structure.type_name
                ));
                self.entries(&structure.entries, depth, comprehensions);
            }
            Expr::Comprehension(comprehension) => {
                let nesting = comprehensions + 1;
                if nesting > MAX_COMPREHENSION_NESTING {
                    self.problem(format!(
                        "comprehensions (all, exists, map, filter, ...) nest {nesting} deep, more than {MAX_COMPREHENSION_NESTING}"
                    ));
                    return;
                }
                self.walk(&comprehension.iter_range, depth + 1, comprehensions);
                self.walk(&comprehension.accu_init, depth + 1, comprehensions);
                let mut bound = vec![
                    comprehension.iter_var.clone(),
                    comprehension.accu_var.clone(),
                ];
                bound.extend(comprehension.iter_var2.clone());
                self.scopes.push(bound);
                self.walk(&comprehension.loop_cond, depth + 1, nesting);
                self.walk(&comprehension.loop_step, depth + 1, nesting);
                self.walk(&comprehension.result, depth + 1, nesting);
                self.scopes.pop();
            }
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr], depth: usize, comprehensions: usize) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::MapEntry(e) => {
                    self.walk(&e.key, depth + 1, comprehensions);
                    self.walk(&e.value, depth + 1, comprehensions);
                }
                EntryExpr::StructField(f) => self.walk(&f.value, depth + 1, comprehensions),
            }
        }
    }

    fn problem(&mut self, message: String) {
        if !self.problems.contains(&message) {
            self.problems.push(message);
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        self.scopes.iter().flatten().any(|bound| bound == name)
    }

    fn identifier(&mut self, name: &str) {
        if !self.is_bound(name) && !env::ROOT_VARIABLES.contains(&name) {
            self.problem(format!(
                "unknown identifier {name} (known: {})",
                env::ROOT_VARIABLES.join(", ")
            ));
        }
    }

    fn select(&mut self, operand: &IdedExpr, field: &str) {
        let root = |expected: &str| matches!(&operand.expr, Expr::Ident(n) if n == expected);
        if root(env::VARIABLES) && !self.is_bound(env::VARIABLES) {
            if self.variables.iter().any(|v| v == field) {
                self.reads_variables.push(field.to_owned());
            } else {
                self.problem(format!(
                    "variables.{field} is not declared in spec.variables before this expression"
                ));
            }
        } else if root(env::X509) && !self.is_bound(env::X509) && !env::X509_FIELDS.contains(&field) {
            self.problem(format!(
                "x509 has no field {field} (fields: {})",
                env::X509_FIELDS.join(", ")
            ));
        } else if let Expr::Select(inner) = &operand.expr
            && inner.field == "publicKey"
            && matches!(&inner.operand.expr, Expr::Ident(n) if n == env::X509)
            && !env::PUBLIC_KEY_FIELDS.contains(&field)
        {
            self.problem(format!(
                "x509.publicKey has no field {field} (fields: {})",
                env::PUBLIC_KEY_FIELDS.join(", ")
            ));
        } else if field == "request"
            && matches!(&operand.expr, Expr::Select(s) if s.field == "spec"
                && matches!(&s.operand.expr, Expr::Ident(n) if n == env::OBJECT))
        {
            self.warnings.push(
                "object.spec.request is the base64 PEM; read the parsed request from x509 instead"
                    .into(),
            );
        }
    }

    fn function(&mut self, name: &str, target: Option<&IdedExpr>) {
        // Operators and macro internals are handled by the interpreter itself.
        if name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name.starts_with('-') {
            return;
        }
        let qualified = match target.map(|t| &t.expr) {
            Some(Expr::Ident(prefix)) => env::is_known_function(&format!("{prefix}.{name}")),
            _ => false,
        };
        if !qualified && !env::is_known_function(name) {
            self.problem(format!("unknown function {name}"));
        }
    }

    fn pattern(&mut self, pattern: Option<&IdedExpr>) {
        match pattern.map(|p| &p.expr) {
            Some(Expr::Literal(LiteralValue::String(literal))) => {
                if let Err(message) = env::compiled_regex(literal.inner()) {
                    self.problem(message);
                }
            }
            _ => self.warnings.push(
                "matches() with a pattern computed at evaluation time: it is compiled (and cached) per distinct value"
                    .into(),
            ),
        }
    }
}
