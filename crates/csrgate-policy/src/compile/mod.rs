//! Compiling a `CsrApprovalPolicy`: parse every expression once per generation, within limits.
//!
//! A policy that would fail at 3 a.m. should fail when it is applied instead, so compiling
//! checks what can be checked without a CSR: expression size, AST depth and node count,
//! comprehension nesting, identifiers outside the variable table, `variables.<name>` used
//! before it is declared, unknown `x509` fields, unknown functions, constant regular
//! expressions, duplicate names. Problems that do not stop the policy are kept apart as
//! warnings, like ripgrep's `Partial` errors.

mod check;
mod limits;
mod lower;
mod spec;

use std::sync::Arc;

use csrgate_api::{CsrApprovalPolicy, DefaultAction, ExpressionWarning, FailureAction, PolicyMode};
use kube::core::cel::cel;

use crate::engine::Engine;
use crate::env;
use crate::paths::{self, BoundPath};
use crate::patterns::Patterns;

pub use self::limits::{
    MAX_AST_DEPTH, MAX_AST_NODES, MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_BYTES,
};
use self::spec::{Compiler, signer_matches};

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
    Invalid(Arc<[CompileError]>),
}

/// A `CsrApprovalPolicy` ready to decide with, or the reasons it is not.
///
/// Compiled once per generation and shared (cheaply cloned) between decisions.
///
/// A clone allocates nothing: every field is a number or behind an `Arc`. The controller
/// hands each decision a snapshot of all policies, so with 1,000 policies and 10,000 pending
/// CSRs a re-decision clones ten million of them (issue 15).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    name: Arc<str>,
    generation: i64,
    mode: PolicyMode,
    failure_action: FailureAction,
    default_action: DefaultAction,
    signer_names: Arc<[String]>,
    rules: Result<Arc<Rules>, NotReady>,
    warnings: Arc<[ExpressionWarning]>,
    /// The expression fields that read `subjectNode`, for [`Self::without_subject_node`].
    subject_node_fields: Arc<[String]>,
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
            Err(NotReady::Invalid(compiler.errors.into()))
        };
        Self {
            rules,
            warnings: compiler.warnings.into(),
            subject_node_fields: compiler.subject_node_fields.into(),
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
            self.rules = Err(NotReady::Invalid(
                vec![CompileError {
                    field: "spec".into(),
                    message: "compiled by another csrgate_policy::Engine than the one deciding"
                        .into(),
                }]
                .into(),
            ));
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
            name: policy.metadata.name.as_deref().unwrap_or_default().into(),
            generation: policy.metadata.generation.unwrap_or_default(),
            mode: policy.spec.mode,
            failure_action: policy.spec.failure_action,
            default_action: policy.spec.default_action,
            signer_names: policy.spec.signer_names.as_slice().into(),
            rules: Err(NotReady::NotCompiled),
            warnings: Arc::default(),
            subject_node_fields: Arc::default(),
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

#[cfg(test)]
mod tests;
