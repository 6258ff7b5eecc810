//! The static checks of one parsed expression: identifiers, fields, functions, variables,
//! constant regular expressions, and warnings about likely mistakes.

use std::collections::HashMap;
use std::sync::Arc;

use kube::core::cel::cel;
use kube::core::cel::cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators,
};

use super::limits::{MAX_AST_DEPTH, MAX_AST_NODES, MAX_COMPREHENSION_NESTING};
use crate::{env, patterns};

/// Walks one parsed expression, recording problems instead of stopping at the first.
pub(super) struct Check<'a> {
    pub(super) variables: &'a [String],
    /// Names bound by enclosing comprehensions.
    pub(super) scopes: Vec<Vec<String>>,
    pub(super) nodes: usize,
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
    pub(super) reads_variables: Vec<String>,
    /// The constant `matches` patterns of the policy so far, compiled.
    pub(super) patterns: &'a mut HashMap<String, Arc<regex::Regex>>,
}

impl Check<'_> {
    pub(super) fn walk(&mut self, node: &IdedExpr, depth: usize, comprehensions: usize) {
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
        self.uncached_node_field(node);
        match &node.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => self.identifier(name),
            Expr::Select(select) => {
                self.select(&select.operand, &select.field);
                self.walk(&select.operand, depth + 1, comprehensions);
            }
            Expr::Call(call) => self.call(call, depth, comprehensions),
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
                self.comprehension(comprehension, depth, comprehensions);
            }
        }
    }

    /// A call: its function known, its arguments checked.
    fn call(&mut self, call: &CallExpr, depth: usize, comprehensions: usize) {
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
            let problems = crate::authorizer::check_call_problems(call, |n| self.is_bound(n));
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

    /// A comprehension: within the nesting limit, its variables in scope in its body.
    fn comprehension(
        &mut self,
        comprehension: &ComprehensionExpr,
        depth: usize,
        comprehensions: usize,
    ) {
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

    /// Refuses `expression` when it names one of [`UNCACHED_NODE_FIELDS`] of `node` or
    /// `subjectNode`: as a selection (`node.status.images`, also inside `has()`), an index
    /// with a string literal (`node.status["images"]`, `node["status"]["images"]`), or a
    /// string literal `in` the parent (`"images" in node.status`). A key known only at
    /// evaluation time cannot be checked here (see [`UNCACHED_NODE_FIELDS`]).
    ///
    /// [`UNCACHED_NODE_FIELDS`]: crate::node_fields::UNCACHED_NODE_FIELDS
    fn uncached_node_field(&mut self, expression: &IdedExpr) {
        // (the operand of the parent, the parent, the field)
        let named = match &expression.expr {
            Expr::Call(call) if call.func_name == operators::IN && call.target.is_none() => {
                match call.args.as_slice() {
                    [key, parent] => string_literal(key)
                        .zip(member(parent))
                        .map(|(field, (root, parent))| (root, parent, field)),
                    _ => None,
                }
            }
            _ => member(expression).and_then(|(parent, field)| {
                member(parent).map(|(root, parent)| (root, parent, field))
            }),
        };
        let Some((root, parent, field)) = named else {
            return;
        };
        if let Expr::Ident(root) = &root.expr
            && (root == env::NODE || root == env::SUBJECT_NODE)
            && !self.is_bound(root)
            && crate::node_fields::UNCACHED_NODE_FIELDS.contains(&(parent, field))
        {
            self.problem(format!(
                "{root}.{parent}.{field} is not available to policies: csrgate does not keep it of a Node"
            ));
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

/// The operand and the field of a member read known at compile time: a selection
/// (`a.b`, or `has(a.b)`), or an index with a string literal (`a["b"]`).
fn member(expression: &IdedExpr) -> Option<(&IdedExpr, &str)> {
    match &expression.expr {
        Expr::Select(select) => Some((&select.operand, select.field.as_str())),
        Expr::Call(call) if call.func_name == operators::INDEX && call.target.is_none() => {
            match call.args.as_slice() {
                [operand, key] => Some(operand).zip(string_literal(key)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The value of a string literal.
fn string_literal(expression: &IdedExpr) -> Option<&str> {
    match &expression.expr {
        Expr::Literal(LiteralValue::String(literal)) => Some(literal.inner()),
        _ => None,
    }
}
