//! The `authorizer` variable: Kubernetes CEL's authorization library, checking the CSR's
//! requestor, answered through an [`Authorizer`] the caller gives.
//!
//! Expressions read as in a ValidatingAdmissionPolicy (k8s.io/apiserver/pkg/cel/library,
//! authz.go): `authorizer.group(g).resource(r).subresource(s).namespace(ns).name(n).check(verb)`
//! or `authorizer.path(p).check(verb)` give a Decision with `allowed()`, `reason()`,
//! `errored()` and `error()`. The principal is always the CSR's requestor
//! (`spec.username`, `uid`, `groups`, `extra`), as a SubjectAccessReview would name it.
//!
//! # Why a synchronous trait, asked lazily
//! The engine stays pure: it builds a `SubjectAccessReviewSpec` and asks the
//! [`Authorizer`] it was given, which answers with a `SubjectAccessReviewStatus`.
//! Offline that is the RBAC evaluator of [`crate::rbac`], answering from manifests; online
//! the controller posts a SubjectAccessReview. A check is asked only when evaluation reaches
//! it, so a policy whose matchConditions do not apply costs no review, and arguments may be
//! dynamic (`name(variables.nodeName)`). Evaluation already runs off the async runtime (on
//! the controller's bounded blocking pool), so an online answer may block that thread
//! while it waits; answers are cached within one decision and at most
//! [`MAX_AUTHORIZATION_CHECKS`] distinct checks are asked per decision.
//!
//! # Failing closed
//! A check that could not be answered (the review failed, the cap was reached, no
//! authorizer was given) is a Decision with `errored() == true` and `error()` saying why.
//! Unlike Kubernetes, where `allowed()` is then false, csrgate makes `allowed()` on such a
//! Decision an evaluation error, so that a negated check (`!...allowed()`) cannot approve
//! because a review failed: the validation fails instead. A policy that wants to handle
//! errors reads `errored()` first.
//!
//! Compile time checks what can be known: every `check(verb)` has a constant, non-empty
//! verb and ends a chain that starts at `authorizer` and names a `resource(...)` (or a
//! `path(...)`), so a mistake makes the policy `Ready=False` instead of failing per CSR.
//! Each `check` costs [`CHECK_COST`] units of the evaluation budget, as in Kubernetes
//! (k8s.io/apiserver/pkg/cel/library/cost.go: "only two authorization checks per
//! expression").

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::core::cel::cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue};
use kube::core::cel::cel::extractors::This;
use kube::core::cel::cel::objects::Opaque;
use kube::core::cel::cel::{Context, ExecutionError, FunctionContext, ResolveResult, Value};

use crate::budget;

/// Answers access reviews for the `authorizer` variable.
///
/// `spec` is a SubjectAccessReview's spec: `user`, `uid`, `groups`, `extra` are the CSR's
/// requestor, and exactly one of `resourceAttributes` (with `version: "*"`, as Kubernetes'
/// CEL library asks) or `nonResourceAttributes` is set. The answer is a
/// SubjectAccessReview's status: `allowed`, `denied`, `reason`, and `evaluationError` when
/// the answer could not be had (set it, never panic, when the review itself failed).
///
/// Implementations: [`crate::rbac::RbacAuthorizer`] (offline, from RBAC manifests),
/// [`Unavailable`] (every check errors), and the controller's SubjectAccessReview client.
/// It is called from the evaluating thread, never from an async task.
pub trait Authorizer: Send + Sync {
    /// Answers one review.
    fn review(&self, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus;
}

/// An [`Authorizer`] that cannot answer: every check errors with its message. `decide` uses
/// it when no authorizer is given; `csrgate check` without `--rbac` says so through it.
#[derive(Debug, Clone)]
pub struct Unavailable {
    message: String,
}

impl Unavailable {
    /// Every check will error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl Authorizer for Unavailable {
    fn review(&self, _spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
        review_error(&self.message)
    }
}

/// A status for a review that could not be answered.
pub fn review_error(message: &str) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: false,
        denied: None,
        reason: None,
        evaluation_error: Some(message.to_owned()),
    }
}

/// Most distinct checks (by attributes) asked in one decision, over all its policies; past
/// it a check errors. Repeated checks are answered from the decision's cache and do not
/// count.
pub const MAX_AUTHORIZATION_CHECKS: usize = 32;

/// Cost units of one `check(...)`: Kubernetes' fixed cost of an authorization check,
/// chosen there to allow two per expression under [`crate::PER_CALL_LIMIT`].
pub const CHECK_COST: u64 = 350_000;

/// The identifier the variable is bound under.
pub const AUTHORIZER: &str = "authorizer";

/// The builder methods of the library, which may sit between `authorizer` and `check`.
pub(crate) const BUILDERS: [&str; 6] = [
    "group",
    "resource",
    "subresource",
    "namespace",
    "name",
    "path",
];

/// The function that asks.
pub(crate) const CHECK: &str = "check";

/// The checks of one decision: the requestor, the authorizer, and the answers so far.
pub(crate) struct Reviews {
    authorizer: Arc<dyn Authorizer>,
    user: Option<String>,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<BTreeMap<String, Vec<String>>>,
    answers: Mutex<HashMap<Attributes, SubjectAccessReviewStatus>>,
}

impl fmt::Debug for Reviews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reviews")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What one check asks about, the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attributes {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
        verb: String,
    },
    Path {
        path: String,
        verb: String,
    },
}

impl Reviews {
    /// The checks of one decision about `csr`'s requestor.
    pub(crate) fn new(authorizer: Arc<dyn Authorizer>, csr: &CertificateSigningRequest) -> Self {
        Self {
            authorizer,
            user: csr.spec.username.clone(),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra: csr.spec.extra.clone(),
            answers: Mutex::default(),
        }
    }

    /// The `authorizer` variable for these checks.
    pub(crate) fn variable(self: &Arc<Self>) -> Value {
        Value::Opaque(Arc::new(AuthorizerValue(Session(Arc::clone(self)))))
    }

    /// The answer for `attributes`: cached, else asked while under the cap.
    fn answer(&self, attributes: Attributes) -> SubjectAccessReviewStatus {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is usable.
        let lock = || {
            self.answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        {
            let answers = lock();
            if let Some(answer) = answers.get(&attributes) {
                return answer.clone();
            }
            if answers.len() >= MAX_AUTHORIZATION_CHECKS {
                return review_error(&format!(
                    "more than {MAX_AUTHORIZATION_CHECKS} distinct authorization checks in one decision"
                ));
            }
        }
        // Asked without the lock held: an online answer takes a round trip.
        let answer = self.authorizer.review(&self.spec(&attributes));
        lock().entry(attributes).or_insert(answer).clone()
    }

    fn spec(&self, attributes: &Attributes) -> SubjectAccessReviewSpec {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        let (resource_attributes, non_resource_attributes) = match attributes {
            Attributes::Resource {
                group,
                resource,
                subresource,
                namespace,
                name,
                verb,
            } => (
                Some(ResourceAttributes {
                    group: Some(group.clone()),
                    version: Some("*".to_owned()),
                    resource: Some(resource.clone()),
                    subresource: non_empty(subresource),
                    namespace: non_empty(namespace),
                    name: non_empty(name),
                    verb: Some(verb.clone()),
                    ..ResourceAttributes::default()
                }),
                None,
            ),
            Attributes::Path { path, verb } => (
                None,
                Some(NonResourceAttributes {
                    path: Some(path.clone()),
                    verb: Some(verb.clone()),
                }),
            ),
        };
        SubjectAccessReviewSpec {
            user: self.user.clone(),
            uid: self.uid.clone(),
            groups: self.groups.clone(),
            extra: self.extra.clone(),
            resource_attributes,
            non_resource_attributes,
        }
    }
}

/// The checks of one decision, compared by identity (CEL values must be comparable).
#[derive(Clone)]
struct Session(Arc<Reviews>);

impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Session {}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `authorizer`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthorizerValue(Session);

/// `authorizer.group(g)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupCheck {
    session: Session,
    group: String,
}

/// `authorizer.group(g).resource(r)` and what refines it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceCheck {
    session: Session,
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

/// `authorizer.path(p)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathCheck {
    session: Session,
    path: String,
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    reason: String,
    error: Option<String>,
}

impl Opaque for AuthorizerValue {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Authorizer"
    }
}

impl Opaque for GroupCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.GroupCheck"
    }
}

impl Opaque for ResourceCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.ResourceCheck"
    }
}

impl Opaque for PathCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.PathCheck"
    }
}

impl Opaque for Decision {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

/// Registers the library's functions into the root context.
pub(crate) fn register(context: &mut Context<'static>) {
    context.add_function("group", group);
    context.add_function("path", path);
    context.add_function("resource", resource);
    context.add_function("subresource", subresource);
    context.add_function("namespace", namespace);
    context.add_function("name", name);
    context.add_function(CHECK, check);
    context.add_function("allowed", allowed);
    context.add_function("reason", reason);
    context.add_function("errored", is_errored);
    context.add_function("error", error);
}

/// The receiver as `T`, or a "no such overload" error naming what it was called on.
fn receiver<T: Clone + 'static>(ftx: &FunctionContext, this: &Value) -> Result<T, ExecutionError> {
    if let Value::Opaque(opaque) = this
        && let Some(value) = opaque.downcast_ref::<T>()
    {
        return Ok(value.clone());
    }
    let what = match this {
        Value::Opaque(opaque) => opaque.runtime_type_name().to_owned(),
        other => format!("{:?}", other.type_of()),
    };
    Err(ftx.error(format!("{}() cannot be called on {what}", ftx.name)))
}

fn opaque(value: impl Opaque) -> ResolveResult {
    Ok(Value::Opaque(Arc::new(value)))
}

fn group(ftx: &FunctionContext, This(this): This<Value>, group: Arc<String>) -> ResolveResult {
    let AuthorizerValue(session) = receiver(ftx, &this)?;
    opaque(GroupCheck {
        session,
        group: group.to_string(),
    })
}

fn path(ftx: &FunctionContext, This(this): This<Value>, path: Arc<String>) -> ResolveResult {
    let AuthorizerValue(session) = receiver(ftx, &this)?;
    if path.trim().is_empty() {
        return Err(ftx.error("path must not be empty"));
    }
    opaque(PathCheck {
        session,
        path: path.to_string(),
    })
}

fn resource(
    ftx: &FunctionContext,
    This(this): This<Value>,
    resource: Arc<String>,
) -> ResolveResult {
    let GroupCheck { session, group } = receiver(ftx, &this)?;
    if resource.trim().is_empty() {
        return Err(ftx.error("resource must not be empty"));
    }
    opaque(ResourceCheck {
        session,
        group,
        resource: resource.to_string(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    })
}

fn subresource(
    ftx: &FunctionContext,
    This(this): This<Value>,
    value: Arc<String>,
) -> ResolveResult {
    let mut check: ResourceCheck = receiver(ftx, &this)?;
    check.subresource = value.to_string();
    opaque(check)
}

fn namespace(ftx: &FunctionContext, This(this): This<Value>, value: Arc<String>) -> ResolveResult {
    let mut check: ResourceCheck = receiver(ftx, &this)?;
    check.namespace = value.to_string();
    opaque(check)
}

fn name(ftx: &FunctionContext, This(this): This<Value>, value: Arc<String>) -> ResolveResult {
    let mut check: ResourceCheck = receiver(ftx, &this)?;
    check.name = value.to_string();
    opaque(check)
}

fn check(ftx: &FunctionContext, This(this): This<Value>, verb: Arc<String>) -> ResolveResult {
    let (session, attributes) = if let Ok(check) = receiver::<ResourceCheck>(ftx, &this) {
        let attributes = Attributes::Resource {
            group: check.group,
            resource: check.resource,
            subresource: check.subresource,
            namespace: check.namespace,
            name: check.name,
            verb: verb.to_string(),
        };
        (check.session, attributes)
    } else {
        let check: PathCheck = receiver(ftx, &this)?;
        let attributes = Attributes::Path {
            path: check.path,
            verb: verb.to_string(),
        };
        (check.session, attributes)
    };
    budget::charge(CHECK, CHECK_COST)?;
    let answer = budget::off_the_clock(|| session.0.answer(attributes));
    opaque(Decision {
        allowed: answer.allowed,
        reason: answer.reason.unwrap_or_default(),
        error: answer.evaluation_error.filter(|e| !e.is_empty()),
    })
}

fn allowed(ftx: &FunctionContext, This(this): This<Value>) -> ResolveResult {
    let decision: Decision = receiver(ftx, &this)?;
    match (decision.allowed, decision.error) {
        (false, Some(error)) => Err(ftx.error(format!("authorization check errored: {error}"))),
        (allowed, _) => Ok(Value::Bool(allowed)),
    }
}

fn reason(ftx: &FunctionContext, This(this): This<Value>) -> ResolveResult {
    let decision: Decision = receiver(ftx, &this)?;
    Ok(Value::String(Arc::new(decision.reason)))
}

fn is_errored(ftx: &FunctionContext, This(this): This<Value>) -> ResolveResult {
    let decision: Decision = receiver(ftx, &this)?;
    Ok(Value::Bool(decision.error.is_some()))
}

fn error(ftx: &FunctionContext, This(this): This<Value>) -> ResolveResult {
    let decision: Decision = receiver(ftx, &this)?;
    Ok(Value::String(Arc::new(decision.error.unwrap_or_default())))
}

/// The problems of one `check(...)` call, for compile time: its verb must be a constant,
/// non-empty string, and its receiver a chain `authorizer.group(g).resource(r)` (then any of
/// `subresource`, `namespace`, `name`) or `authorizer.path(p)`, written in one expression, so
/// that a check is never asked without a resource. `is_bound` says whether a name is a
/// comprehension variable (which would shadow `authorizer`).
pub(crate) fn check_call_problems(call: &CallExpr, is_bound: impl Fn(&str) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    match call.args.as_slice() {
        [
            IdedExpr {
                expr: Expr::Literal(LiteralValue::String(verb)),
                ..
            },
        ] if !verb.inner().trim().is_empty() => {}
        [
            IdedExpr {
                expr: Expr::Literal(LiteralValue::String(_)),
                ..
            },
        ] => problems.push("authorizer check(): the verb must not be empty".to_owned()),
        [_] => problems.push(
            "authorizer check(): the verb must be a constant string, e.g. check('create')"
                .to_owned(),
        ),
        _ => problems.push("authorizer check() takes one argument, the verb".to_owned()),
    }
    let mut methods = Vec::new();
    let mut current = call.target.as_deref();
    let rooted = loop {
        match current.map(|e| &e.expr) {
            Some(Expr::Call(inner)) if BUILDERS.contains(&inner.func_name.as_str()) => {
                methods.push((inner.func_name.as_str(), inner.args.first()));
                current = inner.target.as_deref();
            }
            Some(Expr::Ident(root)) => break root == AUTHORIZER && !is_bound(root),
            _ => break false,
        }
    };
    if !rooted {
        problems.push(
            "check() must end a chain that starts at authorizer in the same expression, e.g. authorizer.group('').resource('nodes').check('get')"
                .to_owned(),
        );
        return problems;
    }
    methods.reverse();
    let names: Vec<&str> = methods.iter().map(|(name, _)| *name).collect();
    let well_formed = match names.as_slice() {
        ["path"] => true,
        ["group", "resource", rest @ ..] => rest
            .iter()
            .all(|m| matches!(*m, "subresource" | "namespace" | "name")),
        _ => false,
    };
    if !well_formed {
        problems.push(format!(
            "authorizer.{}.check(): a check needs group(...).resource(...) (then optionally subresource, namespace, name) or path(...)",
            names
                .iter()
                .map(|n| format!("{n}(...)"))
                .collect::<Vec<_>>()
                .join(".")
        ));
    }
    for (method, argument) in methods {
        let empty_literal = matches!(argument.map(|a| &a.expr),
            Some(Expr::Literal(LiteralValue::String(s))) if s.inner().trim().is_empty());
        if empty_literal && matches!(method, "resource" | "path") {
            problems.push(format!("authorizer {method}() must not be empty"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::fixtures::decide_with;
    use crate::fixtures::{CsrBuilder, errors, ready};
    use crate::{Decision as Outcome_, Nodes, Outcome, reasons};

    const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

    /// Answers from a fixed table of `resource/subresource:verb` (or `path:verb`) and records
    /// every review it is asked.
    #[derive(Default)]
    struct Fake {
        allow: Vec<&'static str>,
        fail: bool,
        asked: Mutex<Vec<SubjectAccessReviewSpec>>,
    }

    impl Authorizer for Fake {
        fn review(&self, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
            self.asked.lock().unwrap().push(spec.clone());
            if self.fail {
                return review_error("the API server is down");
            }
            let key = match (&spec.resource_attributes, &spec.non_resource_attributes) {
                (Some(r), _) => format!(
                    "{}/{}:{}",
                    r.resource.clone().unwrap_or_default(),
                    r.subresource.clone().unwrap_or_default(),
                    r.verb.clone().unwrap_or_default()
                ),
                (None, Some(n)) => format!(
                    "{}:{}",
                    n.path.clone().unwrap_or_default(),
                    n.verb.clone().unwrap_or_default()
                ),
                _ => String::new(),
            };
            let allowed = self.allow.contains(&key.as_str());
            SubjectAccessReviewStatus {
                allowed,
                reason: allowed.then(|| format!("allowed {key}")),
                ..SubjectAccessReviewStatus::default()
            }
        }
    }

    fn decide_one(fake: &Arc<Fake>, validations: &[&str]) -> Outcome_ {
        let validations = crate::fixtures::validations(validations);
        let policy = ready(
            "p",
            &format!("signerNames: [{CLIENT}]\nvalidations:\n{validations}"),
        );
        let authorizer: Arc<dyn Authorizer> = fake.clone();
        decide_with(
            &[policy],
            &CsrBuilder::new().build(),
            Nodes::default(),
            Some(authorizer),
        )
    }

    const NODECLIENT: &str = "authorizer.group('certificates.k8s.io').resource('certificatesigningrequests').subresource('nodeclient').check('create')";

    #[test]
    fn an_allowed_check_approves_and_asks_about_the_requestor() {
        let fake = Arc::new(Fake {
            allow: vec!["certificatesigningrequests/nodeclient:create"],
            ..Fake::default()
        });
        let decision = decide_one(&fake, &[&format!("{NODECLIENT}.allowed()")]);
        assert_eq!(decision.outcome(), Outcome::Approved, "{decision:?}");
        let asked = fake.asked.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].user.as_deref(), Some("jane"));
        assert_eq!(
            asked[0].groups.as_deref(),
            Some(&["developers".to_owned(), "system:authenticated".to_owned()][..])
        );
        let attributes = asked[0].resource_attributes.as_ref().unwrap();
        assert_eq!(attributes.group.as_deref(), Some("certificates.k8s.io"));
        assert_eq!(attributes.version.as_deref(), Some("*"));
        assert_eq!(attributes.subresource.as_deref(), Some("nodeclient"));
        assert_eq!(attributes.namespace, None);
        assert_eq!(attributes.name, None);
    }

    #[test]
    fn a_denied_check_fails_and_reason_and_error_are_readable() {
        let fake = Arc::new(Fake::default());
        let decision = decide_one(
            &fake,
            &[
                &format!("{NODECLIENT}.allowed()"),
                &format!("{NODECLIENT}.reason() == '' && !{NODECLIENT}.errored()"),
                &format!("{NODECLIENT}.error() == ''"),
            ],
        );
        assert_eq!(decision.reason(), Some(reasons::POLICY_DENIED));
        let message = decision.message();
        assert!(message.contains("v0: failed validation"), "{message}");
        assert!(!message.contains("v1:"), "{message}");
        assert!(!message.contains("v2:"), "{message}");
        // One review for the three identical checks: answers are cached per decision.
        assert_eq!(fake.asked.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_errored_check_is_readable_but_never_allows_even_negated() {
        let fake = Arc::new(Fake {
            fail: true,
            ..Fake::default()
        });
        let decision = decide_one(
            &fake,
            &[
                &format!("!{NODECLIENT}.allowed()"),
                &format!(
                    "{NODECLIENT}.errored() && {NODECLIENT}.error() == 'the API server is down'"
                ),
            ],
        );
        assert_eq!(decision.outcome(), Outcome::Denied, "{decision:?}");
        let message = decision.message();
        assert!(
            message.contains(
                "v0: expression could not be evaluated: Error executing function 'allowed': authorization check errored: the API server is down"
            ),
            "{message}"
        );
        assert!(!message.contains("v1:"), "{message}");
    }

    #[test]
    fn without_an_authorizer_every_check_errors() {
        let policy = ready(
            "p",
            &format!(
                "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: \"{NODECLIENT}.allowed()\"}}\n"
            ),
        );
        let decision = crate::fixtures::decide(&[policy], &CsrBuilder::new().build(), None);
        assert_eq!(decision.outcome(), Outcome::Denied);
        assert!(
            decision
                .message()
                .contains("authorization check errored: no authorizer is configured")
        );
    }

    #[test]
    fn dynamic_names_and_paths_are_asked_as_evaluated() {
        let fake = Arc::new(Fake {
            allow: vec!["/healthz:get"],
            ..Fake::default()
        });
        let decision = decide_one(
            &fake,
            &[
                "authorizer.path('/healthz').check('get').allowed()",
                "!authorizer.group('').resource('nodes').name(object.spec.username).namespace('').check('get').allowed()",
            ],
        );
        assert_eq!(decision.outcome(), Outcome::Approved, "{decision:?}");
        let asked = fake.asked.lock().unwrap();
        assert_eq!(asked.len(), 2);
        let path = asked[0].non_resource_attributes.as_ref().unwrap();
        assert_eq!(path.path.as_deref(), Some("/healthz"));
        let node = asked[1].resource_attributes.as_ref().unwrap();
        assert_eq!(node.name.as_deref(), Some("jane"));
        assert_eq!(node.group.as_deref(), Some(""));
    }

    #[test]
    fn an_empty_resource_computed_at_run_time_is_an_evaluation_error() {
        let fake = Arc::new(Fake::default());
        let decision = decide_one(
            &fake,
            &[
                "authorizer.group('').resource(object.spec.username.substring(4)).check('get').errored()",
            ],
        );
        assert!(decision.message().contains("resource must not be empty"),);
        assert!(fake.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn more_checks_than_the_cap_error_past_it() {
        let fake = Arc::new(Fake::default());
        // Two checks per expression (the cost limit), over enough policies to pass the cap.
        let policies: Vec<_> = (0..20)
            .map(|p| {
                ready(
                    &format!("p{p}"),
                    &format!(
                        "signerNames: [{CLIENT}]\nfailureAction: Ignore\nvalidations:\n  - {{name: v, expression: \"authorizer.group('').resource('r{p}a').check('get').errored() || authorizer.group('').resource('r{p}b').check('get').errored()\"}}\n"
                    ),
                )
            })
            .collect();
        let authorizer: Arc<dyn Authorizer> = fake.clone();
        let decision = decide_with(
            &policies,
            &CsrBuilder::new().build(),
            Nodes::default(),
            Some(authorizer),
        );
        assert_eq!(fake.asked.lock().unwrap().len(), MAX_AUTHORIZATION_CHECKS);
        let approving = decision
            .policies
            .iter()
            .filter(|p| p.verdict == crate::Verdict::Approve)
            .count();
        // Policies whose checks went past the cap see them errored.
        assert_eq!(approving, 20 - MAX_AUTHORIZATION_CHECKS / 2);
    }

    #[test]
    fn checks_cost_as_in_kubernetes_so_three_in_one_expression_are_refused() {
        let three =
            format!("{NODECLIENT}.allowed() && {NODECLIENT}.allowed() && {NODECLIENT}.allowed()");
        let errors = errors(&format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: \"{three}\"}}\n"
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("spec.validations[0].expression: estimated evaluation cost 1050"),
            "{errors:?}"
        );
    }

    fn compile_errors(expression: &str) -> Vec<String> {
        errors(&format!(
            "signerNames: [{CLIENT}]\nvalidations:\n  - {{name: v, expression: {}}}\n",
            serde_json::to_string(expression).unwrap()
        ))
    }

    #[test]
    fn a_verb_that_is_not_a_constant_is_refused_naming_the_field() {
        assert_eq!(
            compile_errors(
                "authorizer.group('').resource('nodes').check(object.spec.username).allowed()"
            ),
            [
                "spec.validations[0].expression: authorizer check(): the verb must be a constant string, e.g. check('create')"
            ]
        );
        assert_eq!(
            compile_errors("authorizer.group('').resource('nodes').check(' ').allowed()"),
            ["spec.validations[0].expression: authorizer check(): the verb must not be empty"]
        );
    }

    #[test]
    fn a_check_without_a_resource_is_refused_naming_the_field() {
        assert_eq!(
            compile_errors("authorizer.group('certificates.k8s.io').check('create').allowed()"),
            [
                "spec.validations[0].expression: authorizer.group(...).check(): a check needs group(...).resource(...) (then optionally subresource, namespace, name) or path(...)"
            ]
        );
        assert_eq!(
            compile_errors("authorizer.group('').resource('').check('get').allowed()"),
            ["spec.validations[0].expression: authorizer resource() must not be empty"]
        );
        assert_eq!(
            compile_errors("object.spec.groups.check('get')"),
            [
                "spec.validations[0].expression: check() must end a chain that starts at authorizer in the same expression, e.g. authorizer.group('').resource('nodes').check('get')"
            ]
        );
    }

    #[test]
    fn the_library_functions_do_not_replace_existing_ones() {
        let originals = Context::default();
        let originals = kube::core::cel::KubeCelExt::with_all(originals);
        for name in [
            "group",
            "path",
            "resource",
            "subresource",
            "namespace",
            "name",
            CHECK,
            "allowed",
            "reason",
            "errored",
            "error",
        ] {
            let call = IdedExpr {
                id: 1,
                expr: Expr::Call(CallExpr {
                    func_name: name.to_owned(),
                    target: None,
                    args: Vec::new(),
                }),
            };
            assert!(
                matches!(
                    originals.resolve(&call),
                    Err(ExecutionError::UndeclaredReference(_))
                ),
                "{name} already exists"
            );
        }
    }
}
