//! Lowering a checked expression for evaluation: field selections on the root variables
//! become single identifiers, method targets are unqualified, and `+`, unary `-` and
//! comprehension loops are rewritten into metered calls.

use kube::core::cel::cel;
use kube::core::cel::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use super::limits::node_count;
use crate::paths::{self, BoundPath};
use crate::{env, functions};

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
pub(super) fn flatten(node: &mut IdedExpr, bound: &mut Vec<String>, reads: &mut Reads) {
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
pub(super) fn instrument(node: &mut IdedExpr) {
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

/// What an expression reads of the per-CSR scope.
pub(super) struct Reads<'t> {
    /// Where flattened paths get their identifiers.
    pub(super) table: &'t paths::PathTable,
    /// The entries of the identifiers written, once each.
    pub(super) entries: Vec<BoundPath>,
    pub(super) paths: Vec<String>,
    pub(super) roots: env::Roots,
    /// `variables` is read other than as `variables.<name>`; it is never bound whole, so
    /// such a read can never resolve.
    pub(super) whole_variables: bool,
}

impl<'t> Reads<'t> {
    pub(super) fn new(table: &'t paths::PathTable) -> Self {
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
