//! Compiling a `CsrApprovalPolicy`: parse every expression once per generation, within limits.
//!
//! A policy that would fail at 3 a.m. should fail when it is applied instead, so compiling
//! checks what can be checked without a CSR: expression size, AST depth and node count,
//! comprehension nesting, identifiers outside the variable table, `variables.<name>` used
//! before it is declared, unknown `x509` fields, unknown functions, constant regular
//! expressions, duplicate names. Problems that do not stop the policy are kept apart as
//! warnings, like ripgrep's `Partial` errors.

use std::collections::HashMap;
use std::sync::Arc;

use csrgate_api::{CsrApprovalPolicy, DefaultAction, ExpressionWarning, FailureAction, PolicyMode};
use kube::core::cel::cel;
use kube::core::cel::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use crate::engine::Engine;
use crate::paths::{self, BoundPath};
use crate::patterns::Patterns;
use crate::{budget, env, functions, patterns};

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
    pub(crate) source: Arc<str>,
    /// A fingerprint of the source when the result depends on the CSR alone (the expression
    /// reads no `variables`), so policies sharing the expression evaluate it once per CSR
    /// (see [`crate::CsrScope`]); `None` otherwise.
    pub(crate) shared_key: Option<u64>,
    /// `variables.<name>` this expression reads, so a variable's evaluation error can be
    /// reported on the expressions that needed it.
    pub(crate) reads_variables: Vec<String>,
    /// The entries of every identifier [`flatten`] wrote into this expression: field paths
    /// under `object`, `x509` and `node` flattened into single identifiers, and
    /// `variables.<name>`; held so the identifiers stay this expression's while it lives.
    pub(crate) entries: Vec<BoundPath>,
    /// The root variables this expression reads whole, not through a flattened path.
    pub(crate) roots: env::Roots,
}

/// A compiled `spec.validations[]` entry.
#[derive(Debug)]
pub(crate) struct CompiledValidation {
    pub(crate) name: String,
    pub(crate) expression: CompiledExpression,
    pub(crate) message: Option<String>,
    pub(crate) message_expression: Option<CompiledExpression>,
}

/// A compiled `spec.variables[]` entry.
#[derive(Debug)]
pub(crate) struct CompiledVariable {
    pub(crate) name: String,
    /// The identifier expressions read it under (`variables.<name>`'s entry), resolved once
    /// at compile time.
    pub(crate) entry: BoundPath,
    pub(crate) expression: CompiledExpression,
}

/// The compiled expressions of a Ready policy.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) variables: Vec<CompiledVariable>,
    pub(crate) match_conditions: Vec<(String, CompiledExpression)>,
    pub(crate) validations: Vec<CompiledValidation>,
    /// Every flattened field path the expressions read, once each, so a CSR's scope binds
    /// them without collecting and deduplicating them again per CSR.
    pub(crate) scope_paths: Vec<BoundPath>,
    /// The root variables some expression reads whole.
    pub(crate) roots: env::Roots,
    /// Every path entry the expressions use, so evaluation errors can name paths.
    pub(crate) entries: Vec<BoundPath>,
    /// The constant `matches` patterns, compiled with the policy, and its engine's cache.
    pub(crate) patterns: Arc<Patterns>,
}

impl Rules {
    fn expressions(&self) -> impl Iterator<Item = &CompiledExpression> {
        self.variables
            .iter()
            .map(|v| &v.expression)
            .chain(self.match_conditions.iter().map(|(_, e)| e))
            .chain(
                self.validations.iter().flat_map(|v| {
                    std::iter::once(&v.expression).chain(v.message_expression.iter())
                }),
            )
    }

    /// Fills [`scope_paths`](Self::scope_paths) and [`roots`](Self::roots) from the
    /// expressions.
    fn with_scope_reads(mut self) -> Self {
        let mut entries: Vec<BoundPath> = self
            .expressions()
            .flat_map(|e| e.entries.iter())
            .chain(self.variables.iter().map(|v| &v.entry))
            .cloned()
            .collect();
        entries.sort_unstable_by_key(|p| p.index);
        entries.dedup_by_key(|p| p.index);
        self.roots = self
            .expressions()
            .fold(env::Roots::default(), |roots, e| roots.union(e.roots));
        self.scope_paths = entries
            .iter()
            .filter(|p| !p.path.starts_with("variables."))
            .cloned()
            .collect();
        self.entries = entries;
        self
    }

    /// An interpreter message with this policy's identifiers read back as paths.
    pub(crate) fn describe(&self, message: &str) -> String {
        paths::describe(message, &self.entries)
    }
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
    default_action: DefaultAction,
    signer_names: Vec<String>,
    rules: Result<Arc<Rules>, NotReady>,
    warnings: Vec<ExpressionWarning>,
    /// The expression fields that read `subjectNode`, for [`Self::without_subject_node`].
    subject_node_fields: Vec<String>,
    /// The [`Engine`] that compiled the rules (their identifiers are its).
    engine: u64,
}

impl CompiledPolicy {
    /// See [`Engine::compile`].
    pub(crate) fn compile(engine: &Engine, policy: &CsrApprovalPolicy) -> Self {
        let (compiler, rules) = match compile_on_large_stack(engine, policy) {
            Ok(compiled) => compiled,
            Err(message) => {
                let mut compiler = Compiler::new(engine);
                compiler.error("spec", message);
                (compiler, None)
            }
        };
        let rules = if let (true, Some(rules)) = (compiler.errors.is_empty(), rules) {
            Ok(Arc::new(rules))
        } else {
            Err(NotReady::Invalid(compiler.errors))
        };
        Self {
            rules,
            warnings: compiler.warnings,
            subject_node_fields: compiler.subject_node_fields,
            engine: engine.id(),
            ..Self::header(policy)
        }
    }

    /// Whether this policy can decide with the engine `id`: it was compiled by it, or it
    /// decides nothing (not Ready).
    pub(crate) fn compiled_by(&self, id: u64) -> bool {
        self.engine == id || self.rules.is_err()
    }

    /// This policy for the engine `id`: itself when [`compiled_by`](Self::compiled_by) it,
    /// else not Ready (its identifiers would be read as that engine's).
    #[must_use]
    pub(crate) fn for_engine(mut self, id: u64) -> Self {
        if !self.compiled_by(id) {
            self.rules = Err(NotReady::Invalid(vec![CompileError {
                field: "spec".into(),
                message: "compiled by another csrgate_policy::Engine than the one deciding".into(),
            }]));
        }
        self
    }

    /// A placeholder for a policy whose current generation is not compiled yet; it holds the
    /// CSRs it covers (when Enforce) until it is replaced by [`Engine::compile`]'s result.
    pub fn not_compiled(policy: &CsrApprovalPolicy) -> Self {
        Self::header(policy)
    }

    fn header(policy: &CsrApprovalPolicy) -> Self {
        Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            generation: policy.metadata.generation.unwrap_or_default(),
            mode: policy.spec.mode,
            failure_action: policy.spec.failure_action,
            default_action: policy.spec.default_action,
            signer_names: policy.spec.signer_names.clone(),
            rules: Err(NotReady::NotCompiled),
            warnings: Vec::new(),
            subject_node_fields: Vec::new(),
            engine: 0,
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

    /// Pending or Deny: what a covered CSR no policy approved or denied becomes.
    pub fn default_action(&self) -> DefaultAction {
        self.default_action
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

    /// Whether some expression of this policy reads the `node` variable, whole or a field of
    /// it, so that its verdict can change when the requestor's Node does. The controller
    /// confirms such decisions with a fresh read of the Node before writing them (DESIGN.md,
    /// "The decision"). False when the policy is not Ready: it decides nothing then.
    pub fn reads_node(&self) -> bool {
        self.rules().is_some_and(|rules| {
            rules.roots.contains(env::NODE)
                || rules.scope_paths.iter().any(|p| {
                    p.path
                        .strip_prefix(env::NODE)
                        .is_some_and(|rest| rest.starts_with('.'))
                })
        })
    }

    /// Whether some expression of this policy asks the `authorizer` variable (so that an
    /// offline `csrgate check` without `--rbac` can warn that every check errors). False when
    /// the policy is not Ready.
    pub fn reads_authorizer(&self) -> bool {
        self.rules()
            .is_some_and(|rules| rules.roots.contains(env::AUTHORIZER))
    }

    /// Whether some expression of this policy reads `subjectNode`, whole or a field of it
    /// (through a variable too). False when the policy is not Ready.
    pub fn reads_subject_node(&self) -> bool {
        self.rules().is_some() && !self.subject_node_fields.is_empty()
    }

    /// The policy refused, not Ready, when it reads `subjectNode` and no Node can be looked
    /// up (`csrgate controller` with its Node watch off): `subjectNode` would always be null,
    /// and "not yet a Node" would hold for every name. Each expression reading it gets one
    /// error naming its field and `why`. A policy that does not read it is returned as is.
    #[must_use]
    pub fn without_subject_node(mut self, why: &str) -> Self {
        if !self.reads_subject_node() {
            return self;
        }
        let errors = self
            .subject_node_fields
            .iter()
            .map(|field| CompileError {
                field: field.clone(),
                message: format!("{} is not available: {why}", env::SUBJECT_NODE),
            })
            .collect();
        self.rules = Err(NotReady::Invalid(errors));
        self
    }

    /// Every flattened field path this policy's expressions read, for [`crate::CsrScope`].
    pub fn field_paths(&self) -> impl Iterator<Item = &str> {
        self.rules()
            .into_iter()
            .flat_map(|rules| rules.scope_paths.iter().map(|p| p.path.as_str()))
    }
}

/// Stack for the compile thread. The CEL parser (ANTLR) recurses once per nesting level while
/// predicting, building and dropping trees; a 5 KiB expression can nest a few thousand levels
/// (`a.b.b.b...`, `x ? y : x ? y : ...`) before the depth check can refuse it. The memory is
/// reserved, not committed, so a large figure costs nothing unless a hostile input uses it.
const COMPILE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Runs the compiler on its own thread with a stack deep enough for any input within
/// [`MAX_EXPRESSION_BYTES`], so a hostile expression is refused instead of aborting the
/// process; a panic inside the parser becomes an error, and the policy is not Ready.
fn compile_on_large_stack<'e>(
    engine: &'e Engine,
    policy: &CsrApprovalPolicy,
) -> Result<(Compiler<'e>, Option<Rules>), String> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("csrgate-compile".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn_scoped(scope, || {
                let mut compiler = Compiler::new(engine);
                let rules = compiler.policy(policy);
                (compiler, Some(rules))
            })
            .map_err(|e| format!("could not start the compiler thread: {e}"))?;
        worker
            .join()
            .map_err(|_| "the CEL compiler failed on this policy (internal error)".to_owned())
    })
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
struct Compiler<'e> {
    engine: &'e Engine,
    /// The constant `matches` patterns, compiled.
    patterns: HashMap<String, Arc<regex::Regex>>,
    errors: Vec<CompileError>,
    warnings: Vec<ExpressionWarning>,
    /// Fields of the expressions that read `subjectNode`.
    subject_node_fields: Vec<String>,
}

impl<'e> Compiler<'e> {
    fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            patterns: HashMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            subject_node_fields: Vec::new(),
        }
    }

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

        let mut names = Vec::new();
        let mut match_conditions = Vec::new();
        for (i, condition) in spec.match_conditions.iter().enumerate() {
            let path = format!("spec.matchConditions[{i}]");
            self.name(
                &format!("{path}.name"),
                &condition.name,
                &names,
                NameKind::Label,
            );
            names.push(condition.name.clone());
            if let Some(expression) = self.expression(
                &format!("{path}.expression"),
                &condition.expression,
                &declared,
            ) {
                match_conditions.push((condition.name.clone(), expression));
            }
        }

        let mut names = Vec::new();
        let mut validations = Vec::new();
        for (i, validation) in spec.validations.iter().enumerate() {
            let path = format!("spec.validations[{i}]");
            self.name(
                &format!("{path}.name"),
                &validation.name,
                &names,
                NameKind::Label,
            );
            names.push(validation.name.clone());
            if let Some(message) = &validation.message
                && (message.contains('\n') || message.contains('\r'))
            {
                self.error(format!("{path}.message"), "must be one line");
            }
            let message_expression = validation.message_expression.as_ref().and_then(|source| {
                self.expression(&format!("{path}.messageExpression"), source, &declared)
            });
            if let Some(expression) = self.expression(
                &format!("{path}.expression"),
                &validation.expression,
                &declared,
            ) {
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
            self.error(
                field,
                format!("{name:?} is not a valid {}", kind.describe()),
            );
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
        check.walk(&expression, 0, 0);
        let Check {
            warnings,
            problems,
            reads_variables,
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
        let mut reads_variables = reads_variables;
        reads_variables.sort();
        reads_variables.dedup();
        let mut expression = expression;
        let mut reads = Reads::new(self.engine.paths());
        flatten(&mut expression, &mut Vec::new(), &mut reads);
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
}

/// Rewrites field selections on the root variables into single identifiers:
/// `object.spec.username` becomes one identifier bound once per CSR, and `variables.name` one
/// bound once per policy evaluation (short names, see [`crate::paths`]).
///
/// Why: the interpreter deep-copies the selected value at every step of a selection, so
/// `object.spec.username` would copy the whole `spec` (the base64 request included) on every
/// evaluation. An identifier lookup borrows.
/// A path that does not exist in a CSR is left unbound, so reading it is an evaluation error,
/// as selecting a missing field is in CEL.
/// Also records, in `reads`, the paths flattened and the root variables still read whole.
fn flatten(node: &mut IdedExpr, bound: &mut Vec<String>, reads: &mut Reads) {
    if let Some(path) = selection_path(node, bound) {
        if !path.starts_with("variables.") {
            reads.paths.push(path.clone());
        }
        let entry = reads.table.intern(&path);
        node.expr = Expr::Ident(entry.identifier.clone());
        if !reads.entries.iter().any(|e| e.index == entry.index) {
            reads.entries.push(entry);
        }
        return;
    }
    match &mut node.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) {
                reads.roots.insert(name);
                reads.whole_variables |= name == env::VARIABLES;
            }
        }
        Expr::Select(select) => flatten(&mut select.operand, bound, reads),
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                flatten(target, bound, reads);
                unqualify_method_target(target, &call.func_name);
            }
            for arg in &mut call.args {
                flatten(arg, bound, reads);
            }
        }
        Expr::List(list) => {
            for element in &mut list.elements {
                flatten(element, bound, reads);
            }
        }
        Expr::Map(map) => flatten_entries(&mut map.entries, bound, reads),
        Expr::Struct(structure) => flatten_entries(&mut structure.entries, bound, reads),
        Expr::Comprehension(comprehension) => {
            flatten(&mut comprehension.iter_range, bound, reads);
            flatten(&mut comprehension.accu_init, bound, reads);
            let scope = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.push(comprehension.accu_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            flatten(&mut comprehension.loop_cond, bound, reads);
            flatten(&mut comprehension.loop_step, bound, reads);
            flatten(&mut comprehension.result, bound, reads);
            bound.truncate(scope);
        }
    }
}

/// Wraps an identifier that is the target of a method call (`n.endsWith(...)`, `@p3.size()`)
/// as `true ? n : n`, which evaluates to the identifier's value.
///
/// Why: for every method call whose target is a plain identifier, the interpreter formats
/// `<identifier>.<method>` and looks it up as a namespaced function (`sets.contains`) before
/// it looks up the method, an allocation and a failed lookup per call, about a tenth of an
/// evaluation. A conditional with a literal condition allocates nothing. The result, and the
/// error when the identifier is unbound, are the same: the method is still looked up first,
/// then the target is evaluated. A target that does name a namespace is left alone.
fn unqualify_method_target(target: &mut IdedExpr, method: &str) {
    let Expr::Ident(name) = &target.expr else {
        return;
    };
    if env::is_known_function(&format!("{name}.{method}")) {
        return;
    }
    let ident = || IdedExpr {
        id: target.id,
        expr: Expr::Ident(name.clone()),
    };
    let wrapped = Expr::Call(cel::common::ast::CallExpr {
        func_name: cel::common::ast::operators::CONDITIONAL.to_owned(),
        target: None,
        args: vec![
            IdedExpr {
                id: target.id,
                expr: Expr::Literal(LiteralValue::Boolean(true.into())),
            },
            ident(),
            ident(),
        ],
    });
    target.expr = wrapped;
}

/// Rewrites an expression for the evaluation budget (see [`crate::budget`]): `_+_` becomes
/// `@add` (checked, size-bounded, charged), `-_` becomes `@neg` (checked), and every
/// comprehension's loop condition `c` becomes `c && @tick(n)`, charging `n` units, the
/// size of the loop's body, per iteration.
///
/// Why rewrite rather than hook the interpreter: cel 0.13 evaluates `+`, unary `-` and
/// comprehensions itself, with no cost tracking and no way to replace them; a function call
/// in their place is the one hook it offers.
fn instrument(node: &mut IdedExpr) {
    match &mut node.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(select) => instrument(&mut select.operand),
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                instrument(target);
            }
            for arg in &mut call.args {
                instrument(arg);
            }
            if call.target.is_none() {
                match (call.func_name.as_str(), call.args.len()) {
                    (operators::ADD, 2) => functions::ADD.clone_into(&mut call.func_name),
                    (operators::NEGATE, 1) => functions::NEGATE.clone_into(&mut call.func_name),
                    _ => {}
                }
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(instrument),
        Expr::Map(map) => instrument_entries(&mut map.entries),
        Expr::Struct(structure) => instrument_entries(&mut structure.entries),
        Expr::Comprehension(comprehension) => {
            let units = node_count(&comprehension.loop_cond) + node_count(&comprehension.loop_step);
            instrument(&mut comprehension.iter_range);
            instrument(&mut comprehension.accu_init);
            instrument(&mut comprehension.loop_cond);
            instrument(&mut comprehension.loop_step);
            instrument(&mut comprehension.result);
            let id = comprehension.loop_cond.id;
            let condition = std::mem::replace(
                &mut comprehension.loop_cond,
                IdedExpr {
                    id,
                    expr: Expr::Unspecified,
                },
            );
            let tick = IdedExpr {
                id,
                expr: Expr::Call(cel::common::ast::CallExpr {
                    func_name: functions::TICK.to_owned(),
                    target: None,
                    args: vec![IdedExpr {
                        id,
                        expr: Expr::Literal(LiteralValue::Int(
                            i64::try_from(units).unwrap_or(i64::MAX).into(),
                        )),
                    }],
                }),
            };
            comprehension.loop_cond = IdedExpr {
                id,
                expr: Expr::Call(cel::common::ast::CallExpr {
                    func_name: operators::LOGICAL_AND.to_owned(),
                    target: None,
                    args: vec![condition, tick],
                }),
            };
        }
    }
}

fn instrument_entries(entries: &mut [cel::common::ast::IdedEntryExpr]) {
    for entry in entries {
        match &mut entry.expr {
            EntryExpr::MapEntry(e) => {
                instrument(&mut e.key);
                instrument(&mut e.value);
            }
            EntryExpr::StructField(f) => instrument(&mut f.value),
        }
    }
}

/// The number of nodes of an expression tree: the cost of evaluating it once, at a unit
/// per operation, as cel-go's estimator counts calls, selections and literals.
fn node_count(node: &IdedExpr) -> u64 {
    1 + match &node.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => 0,
        Expr::Select(select) => node_count(&select.operand),
        Expr::Call(call) => {
            call.target.as_deref().map_or(0, node_count)
                + call.args.iter().map(node_count).sum::<u64>()
        }
        Expr::List(list) => list.elements.iter().map(node_count).sum(),
        Expr::Map(map) => entries_count(&map.entries),
        Expr::Struct(structure) => entries_count(&structure.entries),
        Expr::Comprehension(c) => {
            node_count(&c.iter_range)
                + node_count(&c.accu_init)
                + node_count(&c.loop_cond)
                + node_count(&c.loop_step)
                + node_count(&c.result)
        }
    }
}

fn entries_count(entries: &[cel::common::ast::IdedEntryExpr]) -> u64 {
    entries
        .iter()
        .map(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => node_count(&e.key) + node_count(&e.value),
            EntryExpr::StructField(f) => node_count(&f.value),
        })
        .sum()
}

/// The worst-case cost of an expression as far as it is known before any CSR: a unit per
/// node, `n` for `lists.range(n)` with a constant `n`, and a comprehension's body once per
/// element when its range has a known length (a list literal or a constant range), else
/// once. Short-circuiting is ignored, as Kubernetes' estimator ignores it: an expression
/// whose known worst case is over [`budget::PER_CALL_LIMIT`] is refused when compiled,
/// rather than failing on every CSR.
fn estimated_cost(node: &IdedExpr) -> u64 {
    match &node.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => 1,
        Expr::Select(select) => 1u64.saturating_add(estimated_cost(&select.operand)),
        Expr::Call(call) => {
            let own = if call.func_name == crate::authorizer::CHECK {
                crate::authorizer::CHECK_COST
            } else {
                constant_range(node).unwrap_or(1)
            };
            call.args
                .iter()
                .chain(call.target.as_deref())
                .fold(own, |sum, e| sum.saturating_add(estimated_cost(e)))
        }
        Expr::List(list) => list
            .elements
            .iter()
            .fold(1, |sum, e| sum.saturating_add(estimated_cost(e))),
        Expr::Map(_) | Expr::Struct(_) => node_count(node),
        Expr::Comprehension(c) => {
            let iterations = match &c.iter_range.expr {
                Expr::List(list) => list.elements.len() as u64,
                _ => constant_range(&c.iter_range).unwrap_or(1),
            };
            let body = estimated_cost(&c.loop_cond).saturating_add(estimated_cost(&c.loop_step));
            estimated_cost(&c.iter_range)
                .saturating_add(estimated_cost(&c.accu_init))
                .saturating_add(iterations.saturating_mul(body))
                .saturating_add(estimated_cost(&c.result))
        }
    }
}

/// `n` when `node` is `lists.range(n)` with a literal `n`.
fn constant_range(node: &IdedExpr) -> Option<u64> {
    let Expr::Call(call) = &node.expr else {
        return None;
    };
    let namespace_is_lists = matches!(
        call.target.as_deref().map(|t| &t.expr),
        Some(Expr::Ident(n)) if n == "lists"
    );
    if call.func_name != "range" || !namespace_is_lists {
        return None;
    }
    match call.args.first().map(|a| &a.expr) {
        Some(Expr::Literal(LiteralValue::Int(n))) => u64::try_from(*n.inner()).ok(),
        _ => None,
    }
}

/// What an expression reads of the per-CSR scope.
struct Reads<'t> {
    /// Where flattened paths get their identifiers.
    table: &'t paths::PathTable,
    /// The entries of the identifiers written, once each.
    entries: Vec<BoundPath>,
    paths: Vec<String>,
    roots: env::Roots,
    /// `variables` is read other than as `variables.<name>`; it is never bound whole, so
    /// such a read can never resolve.
    whole_variables: bool,
}

impl<'t> Reads<'t> {
    fn new(table: &'t paths::PathTable) -> Self {
        Self {
            table,
            entries: Vec::new(),
            paths: Vec::new(),
            roots: env::Roots::default(),
            whole_variables: false,
        }
    }
}

fn flatten_entries(
    entries: &mut [cel::common::ast::IdedEntryExpr],
    bound: &mut Vec<String>,
    reads: &mut Reads,
) {
    for entry in entries {
        match &mut entry.expr {
            EntryExpr::MapEntry(e) => {
                flatten(&mut e.key, bound, reads);
                flatten(&mut e.value, bound, reads);
            }
            EntryExpr::StructField(f) => flatten(&mut f.value, bound, reads),
        }
    }
}

/// The dotted path of a plain selection chain on an unshadowed root variable
/// (`object.spec.username`); for `variables`, only `variables.<name>`.
fn selection_path(node: &IdedExpr, bound: &[String]) -> Option<String> {
    let mut fields = Vec::new();
    let mut current = node;
    while let Expr::Select(select) = &current.expr {
        if select.test {
            return None;
        }
        fields.push(select.field.as_str());
        current = &select.operand;
    }
    let Expr::Ident(root) = &current.expr else {
        return None;
    };
    if fields.is_empty() || bound.iter().any(|b| b == root) {
        return None;
    }
    fields.reverse();
    match root.as_str() {
        env::VARIABLES if fields.len() == 1 => Some(format!("{root}.{}", fields[0])),
        env::OBJECT | env::X509 | env::NODE | env::SUBJECT_NODE => {
            Some(format!("{root}.{}", fields.join(".")))
        }
        _ => None,
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

/// A cheap scan that refuses inputs whose parse tree would be too deep before the parser ever
/// sees them: deep brackets, long runs of prefix operators and long chains of binary
/// operators. The ANTLR parser's prediction, its tree building and the tree's drop all
/// recurse, and a few thousand brackets overflow a 2 MiB thread stack before the parser's own
/// recursion limit is consulted.
fn prescan(source: &str) -> Result<(), String> {
    let mut unary_run = 0usize;
    let mut operators = 0usize;
    let mut brackets = 0usize;
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
            b'!' | b'-'
                if matches!(
                    previous_significant,
                    b'(' | b'['
                        | b'{'
                        | b','
                        | b'!'
                        | b'-'
                        | b'+'
                        | b'*'
                        | b'/'
                        | b'%'
                        | b'<'
                        | b'>'
                        | b'='
                        | b'&'
                        | b'|'
                        | b'?'
                        | b':'
                ) =>
            {
                unary_run += 1;
                if unary_run > MAX_AST_DEPTH {
                    return Err(format!(
                        "expression nests deeper than {MAX_AST_DEPTH} levels"
                    ));
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' => operators += 1,
            b'(' | b'[' | b'{' => {
                brackets += 1;
                if brackets > MAX_AST_DEPTH {
                    return Err(format!(
                        "expression nests deeper than {MAX_AST_DEPTH} levels"
                    ));
                }
            }
            b')' | b']' | b'}' => brackets = brackets.saturating_sub(1),
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
    /// The constant `matches` patterns of the policy so far, compiled.
    patterns: &'a mut HashMap<String, Arc<regex::Regex>>,
}

impl Check<'_> {
    fn walk(&mut self, node: &IdedExpr, depth: usize, comprehensions: usize) {
        self.nodes += 1;
        if depth > MAX_AST_DEPTH {
            self.problem(format!(
                "expression nests deeper than {MAX_AST_DEPTH} levels"
            ));
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
                let namespaced = self.function(&call.func_name, call.target.as_deref());
                if matches!(
                    call.func_name.as_str(),
                    operators::EQUALS | operators::NOT_EQUALS
                ) && let [left, right] = call.args.as_slice()
                {
                    self.mixed_numbers(left, right);
                }
                if call.func_name == "matches" {
                    self.pattern(call.args.last());
                }
                if call.func_name == crate::authorizer::CHECK {
                    let problems =
                        crate::authorizer::check_call_problems(call, |n| self.is_bound(n));
                    problems.into_iter().for_each(|p| self.problem(p));
                }
                // In `sets.contains(a, b)` the target `sets` names a function namespace, not
                // a variable.
                if let Some(target) = call.target.as_deref().filter(|_| !namespaced) {
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

    fn entries(
        &mut self,
        entries: &[cel::common::ast::IdedEntryExpr],
        depth: usize,
        comprehensions: usize,
    ) {
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
        } else if root(env::X509) && !self.is_bound(env::X509) && !env::X509_FIELDS.contains(&field)
        {
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
        } else if let Expr::Select(inner) = &operand.expr
            && let Expr::Ident(root) = &inner.operand.expr
            && (root == env::NODE || root == env::SUBJECT_NODE)
            && !self.is_bound(root)
            && env::UNCACHED_NODE_FIELDS.contains(&(inner.field.as_str(), field))
        {
            self.problem(format!(
                "{root}.{}.{field} is not available to policies: csrgate does not keep it of a Node",
                inner.field
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

    /// Checks a called function exists; returns whether the call is namespaced
    /// (`sets.contains`), whose target is then not a variable.
    fn function(&mut self, name: &str, target: Option<&IdedExpr>) -> bool {
        // Operators and macro internals are handled by the interpreter itself.
        if name.starts_with('_')
            || name.starts_with('@')
            || name.starts_with('!')
            || name.starts_with('-')
        {
            return false;
        }
        let namespaced = match target.map(|t| &t.expr) {
            Some(Expr::Ident(prefix))
                if !self.is_bound(prefix) && !env::ROOT_VARIABLES.contains(&prefix.as_str()) =>
            {
                env::is_known_function(&format!("{prefix}.{name}"))
            }
            _ => false,
        };
        if !namespaced && !env::is_known_function(name) {
            self.problem(format!("unknown function {name}"));
        }
        namespaced
    }

    /// Warns about `==` / `!=` between a `uint` or `double` literal and anything not
    /// known to be of the same type: cel 0.13 never finds an int, a uint and a double
    /// equal (`1 == 1.0` is false; the CEL spec says true), so such a comparison is
    /// almost always a mistake (`object.spec.expirationSeconds == 86400.0` is never true).
    fn mixed_numbers(&mut self, left: &IdedExpr, right: &IdedExpr) {
        /// The numeric type an operand is known to have: a literal, or a conversion.
        fn numeric_type(e: &IdedExpr) -> Option<&'static str> {
            match &e.expr {
                Expr::Literal(LiteralValue::Int(_)) => Some("int"),
                Expr::Literal(LiteralValue::UInt(_)) => Some("uint"),
                Expr::Literal(LiteralValue::Double(_)) => Some("double"),
                Expr::Call(call) if call.target.is_none() && call.args.len() == 1 => {
                    match call.func_name.as_str() {
                        "int" => Some("int"),
                        "uint" => Some("uint"),
                        "double" => Some("double"),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        let (a, b) = (numeric_type(left), numeric_type(right));
        let mixed = match (a, b) {
            (Some(a), Some(b)) => a != b,
            (Some(t), None) | (None, Some(t)) => t != "int",
            (None, None) => false,
        };
        if mixed {
            self.warnings.push(
                "== and != never find an int, a uint and a double equal in csrgate (1 == 1.0 is false): compare values of one type, e.g. double(x) == 1.0 (nothing to do if both sides already are)"
                    .into(),
            );
        }
    }

    fn pattern(&mut self, pattern: Option<&IdedExpr>) {
        match pattern.map(|p| &p.expr) {
            Some(Expr::Literal(LiteralValue::String(literal))) => {
                let pattern = literal.inner();
                if self.patterns.contains_key(pattern) {
                    return;
                }
                match patterns::compile(pattern) {
                    Ok(regex) => {
                        self.patterns.insert(pattern.to_owned(), regex);
                    }
                    Err(message) => self.problem(message),
                }
            }
            _ => self.warnings.push(
                "matches() with a pattern computed at evaluation time: it is compiled (and cached) per distinct value"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
