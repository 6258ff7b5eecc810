//! The limits an expression must stay within to compile: size, nesting, node count,
//! comprehension depth, estimated cost; checked before and while parsing.

use kube::core::cel::cel;
use kube::core::cel::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 5 * 1024;
/// Deepest expression tree accepted; also the parser's recursion limit.
pub const MAX_AST_DEPTH: usize = 48;
/// Most nodes accepted in one expression tree.
pub const MAX_AST_NODES: usize = 2000;
/// Deepest nesting of comprehensions (`all`, `exists`, `map`, `filter`, ...) accepted.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// The number of nodes of an expression tree: the cost of evaluating it once, at a unit
/// per operation, as cel-go's estimator counts calls, selections and literals.
pub(super) fn node_count(node: &IdedExpr) -> u64 {
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
pub(super) fn estimated_cost(node: &IdedExpr) -> u64 {
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

/// A cheap scan that refuses inputs whose parse tree would be too deep before the parser ever
/// sees them: deep brackets, long runs of prefix operators and long chains of binary
/// operators. The ANTLR parser's prediction, its tree building and the tree's drop all
/// recurse, and a few thousand brackets overflow a 2 MiB thread stack before the parser's own
/// recursion limit is consulted.
pub(super) fn prescan(source: &str) -> Result<(), String> {
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

pub(super) fn parse_error_text(errors: &cel::ParseErrors) -> String {
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
