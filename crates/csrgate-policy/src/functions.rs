//! Bounded versions of the CEL functions and operators that build or scan values, registered
//! over the originals in the root context so every call is metered (see [`crate::budget`]).
//!
//! Three kinds:
//! - replacements for what kube-cel 0.8 and cel 0.13 get wrong: `sum` adds with unchecked
//!   `+` (kube-cel `value_ops::val_add`: wraps in release builds, panics in debug), unary
//!   `-` negates with unchecked `neg` (cel `Int::negate`), and `lists.range(n)` allocates
//!   `n` elements whatever `n` is; csrgate's versions are checked and charged first;
//! - `@add`, `@neg` and `@tick`, which compile-time rewriting puts in place of `_+_`, `-_`
//!   and in every comprehension's loop condition (`@` cannot start a CEL identifier, so no
//!   policy can call them by name);
//! - the library functions that build strings or lists, or scan them, wrapped so that they
//!   charge their inputs' size before they run and their result's size after: the wrapper
//!   evaluates the arguments, then calls the original through a private context holding
//!   the unwrapped libraries.

use std::sync::{Arc, OnceLock};

use kube::core::cel::KubeCelExt;
use kube::core::cel::cel::common::ast::{CallExpr, Expr, IdedExpr};
use kube::core::cel::cel::extractors::This;
use kube::core::cel::cel::{Context, ExecutionError, FunctionContext, ResolveResult, Value};

use crate::budget;

/// Functions that build a string or list from their inputs, or walk their inputs, charged
/// linearly in the size of what they read and build.
const LINEAR: [&str; 30] = [
    "replace",
    "split",
    "join",
    "format",
    "lowerAscii",
    "upperAscii",
    "trim",
    "substring",
    "charAt",
    "reverse",
    "indexOf",
    "lastIndexOf",
    "strings.quote",
    "base64.encode",
    "base64.decode",
    "string",
    "bytes",
    "find",
    "findAll",
    "flatten",
    "slice",
    "contains",
    "size",
    "min",
    "max",
    "isSorted",
    "first",
    "last",
    "url",
    "sort",
];

/// Functions that compare every element of one list with every element of another (or of
/// itself), charged by the product of the lengths.
const QUADRATIC: [&str; 4] = [
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "distinct",
];

/// Registers the bounded functions into `context` (the root context), replacing the
/// originals of the same names.
pub(crate) fn register(context: &mut Context<'static>) {
    context.add_function("@tick", tick);
    context.add_function("@add", add);
    context.add_function("@neg", negate);
    context.add_function("sum", sum);
    context.add_function("lists.range", range);
    for name in LINEAR {
        context.add_function(name, delegated(name, Growth::Linear));
    }
    for name in QUADRATIC {
        context.add_function(name, delegated(name, Growth::Quadratic));
    }
}

/// The name `@tick`, `@add` and `@neg` are registered under, for the compile-time rewriting.
pub(crate) const TICK: &str = "@tick";
/// See [`TICK`].
pub(crate) const ADD: &str = "@add";
/// See [`TICK`].
pub(crate) const NEGATE: &str = "@neg";

/// `@tick(units)`: one comprehension iteration whose body costs `units`; always true, so it
/// is and-ed onto the loop condition.
fn tick(units: i64) -> Result<bool, ExecutionError> {
    budget::tick(u64::try_from(units).unwrap_or(1))?;
    Ok(true)
}

/// `a + b` refusing a string or list past the size limit before it is built, and charging
/// the result's size; integer overflow is an error (cel's own `Value + Value` checks it).
fn add(a: Value, b: Value) -> ResolveResult {
    match (&a, &b) {
        (Value::String(x), Value::String(y)) => {
            budget::check_string_size("_+_", x.len().saturating_add(y.len()))?;
        }
        (Value::Bytes(x), Value::Bytes(y)) => {
            budget::check_string_size("_+_", x.len().saturating_add(y.len()))?;
        }
        _ => {}
    }
    // Appending copies both operands: a unit per list element, as reading them costs.
    budget::charge(
        "_+_",
        1u64.saturating_add(budget::size_units(&a))
            .saturating_add(budget::size_units(&b)),
    )?;
    a + b
}

/// `-x`, checked: negating the smallest int is an overflow error, as the CEL spec defines
/// (cel 0.13 negates with unchecked `neg`).
fn negate(value: Value) -> ResolveResult {
    match value {
        Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| {
            ExecutionError::function_error("-_", format!("integer overflow negating {i}"))
        }),
        Value::Float(f) => Ok(Value::Float(-f)),
        other => Err(ExecutionError::UnsupportedUnaryOperator("minus", other)),
    }
}

/// `<list>.sum()`, with checked integer arithmetic (kube-cel's wraps): the sum of ints or
/// uints that overflows is an error; doubles add as doubles. The empty list sums to 0.
fn sum(This(this): This<Arc<Vec<Value>>>) -> ResolveResult {
    budget::charge("sum", this.len() as u64)?;
    let mut items = this.iter();
    let Some(first) = items.next() else {
        return Ok(Value::Int(0));
    };
    let mut total = first.clone();
    for item in items {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => a
                .checked_add(*b)
                .map(Value::Int)
                .ok_or_else(|| overflow_adding(a, b))?,
            (Value::UInt(a), Value::UInt(b)) => a
                .checked_add(*b)
                .map(Value::UInt)
                .ok_or_else(|| overflow_adding(a, b))?,
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            _ => {
                return Err(ExecutionError::function_error(
                    "sum",
                    "cannot sum values of this type",
                ));
            }
        };
    }
    Ok(total)
}

fn overflow_adding(a: &dyn std::fmt::Display, b: &dyn std::fmt::Display) -> ExecutionError {
    ExecutionError::function_error("sum", format!("integer overflow adding {a} and {b}"))
}

/// `lists.range(n)`: the ints `0..n`, charged `n` before anything is allocated, so a range
/// larger than the budget is refused instead of allocated.
fn range(n: i64) -> ResolveResult {
    let Ok(length) = u64::try_from(n) else {
        return Err(ExecutionError::function_error(
            "lists.range",
            "range argument must be non-negative",
        ));
    };
    budget::charge("lists.range", length)?;
    Ok(Value::List(Arc::new((0..n).map(Value::Int).collect())))
}

#[derive(Clone, Copy)]
enum Growth {
    Linear,
    Quadratic,
}

/// The libraries as kube-cel registers them, unwrapped, for [`delegated`] to call.
///
/// A lazily built static because it is immutable once built (functions only): it holds no
/// state of any engine or decision.
fn originals() -> &'static Context<'static> {
    static ORIGINALS: OnceLock<Context<'static>> = OnceLock::new();
    ORIGINALS.get_or_init(|| Context::default().with_all())
}

/// The identifier the target of a delegated method call is bound to.
const TARGET: &str = "@target";

/// A function named `name` that evaluates its arguments, charges their size, calls the
/// original `name` and checks and charges its result.
fn delegated(
    name: &'static str,
    growth: Growth,
) -> Box<dyn Fn(&mut FunctionContext) -> ResolveResult + Send + Sync> {
    Box::new(move |ftx: &mut FunctionContext| {
        let args = ftx
            .args
            .iter()
            .map(|arg| ftx.ptx.resolve(arg))
            .collect::<Result<Vec<Value>, ExecutionError>>()?;
        let this = ftx.this.clone();
        let inputs = || this.iter().chain(args.iter());
        let units = match growth {
            Growth::Linear => {
                inputs().fold(1u64, |sum, v| sum.saturating_add(budget::size_units(v)))
            }
            Growth::Quadratic => {
                let lengths: Vec<u64> = inputs().map(|v| budget::length(v).max(1)).collect();
                let longest = lengths.iter().copied().max().unwrap_or(1);
                lengths
                    .iter()
                    .fold(1u64, |product, l| product.saturating_mul(*l))
                    .saturating_mul(if lengths.len() == 1 { longest } else { 1 })
            }
        };
        budget::charge(name, units)?;
        let mut scope = originals().new_inner_scope();
        let ident = |id: &str| IdedExpr {
            id: 0,
            expr: Expr::Ident(id.to_owned()),
        };
        let mut arg_exprs = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            let id = format!("@a{i}");
            scope.add_variable_from_value(id.clone(), arg.clone());
            arg_exprs.push(ident(&id));
        }
        // `sets.contains(a, b)` is called on the namespace; `s.split(",")` on its target.
        let (func_name, target) = match (name.split_once('.'), &this) {
            (Some((namespace, function)), _) => (function, Some(ident(namespace))),
            (None, Some(target)) => {
                scope.add_variable_from_value(TARGET, target.clone());
                (name, Some(ident(TARGET)))
            }
            (None, None) => (name, None),
        };
        let call = IdedExpr {
            id: 0,
            expr: Expr::Call(CallExpr {
                func_name: func_name.to_owned(),
                target: target.map(Box::new),
                args: arg_exprs,
            }),
        };
        let result = scope.resolve(&call)?;
        budget::built(name, &result)?;
        Ok(result)
    })
}
