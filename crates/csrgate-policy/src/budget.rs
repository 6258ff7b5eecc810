//! The evaluation budget: every expression runs under a cost limit, as the Kubernetes CEL
//! environment runs it, so a policy cannot take the controller's time or memory.
//!
//! The cel interpreter has no cost tracking of its own, so csrgate meters from the outside:
//! at compile time every comprehension's loop condition is made to charge its body's cost
//! per iteration (`@tick`), `+` and unary `-` are routed through checked, size-bounded
//! versions (`@add`, `@neg`), and the functions that build or scan strings and lists charge
//! their input and output sizes before and after they run (see `env::root_context`). The
//! meter is thread-local: one evaluation runs on one thread, start to end.
//!
//! Exceeding the budget, a panic inside a CEL function, or an integer overflow is an
//! evaluation error of that expression; the decision rules turn it into a failure, never an
//! approval. Once the budget is exceeded the expression's result is that error whatever the
//! rest evaluates to, so `expensive || true` is not true (Kubernetes aborts the whole
//! program on its cost limit too, rather than letting a logical operator absorb the error).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use kube::core::cel::cel::{ExecutionError, Value};

/// Cost units one expression may spend: Kubernetes' `PerCallLimit`
/// (k8s.io/apiserver/pkg/apis/cel/config.go, "roughly 0.1 second for each expression").
pub const PER_CALL_LIMIT: u64 = 1_000_000;

/// Cost units all expressions of one policy may spend on one CSR (variables,
/// matchConditions, validations and messageExpressions together): Kubernetes'
/// `RuntimeCELCostBudget` (k8s.io/apiserver/pkg/apis/cel/config.go, per
/// ValidatingAdmissionPolicyBinding, "roughly 1 second").
pub const RUNTIME_COST_BUDGET: u64 = 10_000_000;

/// Largest string or bytes value, in bytes, an expression may build: Kubernetes'
/// `MaxRequestSizeBytes` (3 MiB, k8s.io/apiserver/pkg/apis/cel/config.go), the largest
/// object the API server accepts, so no CSR field is larger either.
pub const MAX_STRING_BYTES: usize = 3 * 1024 * 1024;

/// Bytes of a string that cost one unit to traverse: cel-go's string traversal cost factor
/// is 0.1 per byte (cel-go checker/cost.go `common.StringTraversalCostFactor`).
const BYTES_PER_UNIT: usize = 10;

/// Wall-clock limit of one expression, a backstop for work the cost model charges as one
/// unit (comparing two large strings with `==`, `in` over a large list). Kubernetes too
/// interrupts an evaluation that outlives its request, checking every 100 comprehension
/// iterations (`checkFrequency` in k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/
/// compilation.go); so does csrgate, at the same frequency.
pub const EXPRESSION_DEADLINE: Duration = Duration::from_secs(1);

/// How many comprehension iterations pass between two clock reads.
const CHECK_FREQUENCY: u32 = 100;

/// The state of the expression being evaluated on this thread.
#[derive(Clone, Copy)]
struct Metering {
    /// Units left.
    remaining: u64,
    /// The limit it started with, for the error message.
    limit: u64,
    /// Whether that limit is the policy's remaining budget rather than the per-call limit.
    policy_limited: bool,
    /// Set once any limit was hit: the result is then an error whatever it is.
    exceeded: Option<Exceeded>,
    /// When the expression's first comprehension iteration ran: the clock is read only
    /// by expressions that loop, the only ones that can run long.
    started: Option<Instant>,
    /// Iterations since the clock was last read.
    iterations: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exceeded {
    Cost,
    Time,
    Size,
}

thread_local! {
    /// `None` outside a metered evaluation (compile-time probing evaluates unmetered).
    static METER: Cell<Option<Metering>> = const { Cell::new(None) };
}

/// Meters the expressions of one policy's evaluation for one CSR.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Units left of [`RUNTIME_COST_BUDGET`].
    remaining: Cell<u64>,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            remaining: Cell::new(RUNTIME_COST_BUDGET),
        }
    }
}

/// Restores the thread's previous metering state when an evaluation ends, even by a panic.
struct Armed {
    previous: Option<Metering>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        METER.with(|m| m.set(self.previous));
    }
}

impl Meter {
    /// Whether the next expression runs under the full [`PER_CALL_LIMIT`], so its result
    /// does not depend on what this policy spent before: only such a result may be shared
    /// with other policies (see `CsrScope::remember`).
    pub(crate) fn has_full_call_budget(&self) -> bool {
        self.remaining.get() >= PER_CALL_LIMIT
    }

    /// Evaluates one expression under the budget: at most [`PER_CALL_LIMIT`] units, and no
    /// more than the policy has left. A panic inside `evaluate` is caught and returned as an
    /// error, so a bug in a CEL function fails the expression instead of the process.
    ///
    /// # Errors
    /// `evaluate`'s error; the budget, size or time limit was exceeded; `evaluate` panicked.
    pub(crate) fn run<T>(&self, evaluate: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        if self.remaining.get() == 0 {
            return Err(format!(
                "the policy's evaluation cost budget of {RUNTIME_COST_BUDGET} units is spent"
            ));
        }
        let limit = PER_CALL_LIMIT.min(self.remaining.get());
        let armed = Armed {
            previous: METER.with(|m| {
                m.replace(Some(Metering {
                    remaining: limit,
                    limit,
                    policy_limited: limit < PER_CALL_LIMIT,
                    exceeded: None,
                    started: None,
                    iterations: 0,
                }))
            }),
        };
        let result = catch_unwind(AssertUnwindSafe(evaluate));
        let state = METER.with(Cell::get);
        drop(armed);
        let Some(state) = state else {
            return Err("internal error: the evaluation meter was lost".to_owned());
        };
        self.remaining.set(
            self.remaining
                .get()
                .saturating_sub(state.limit.saturating_sub(state.remaining)),
        );
        if let Some(exceeded) = state.exceeded {
            return Err(exceeded_message(exceeded, &state));
        }
        match result {
            Ok(result) => result,
            Err(payload) => Err(format!(
                "a CEL function panicked: {}",
                panic_text(payload.as_ref())
            )),
        }
    }
}

fn exceeded_message(exceeded: Exceeded, state: &Metering) -> String {
    match exceeded {
        Exceeded::Cost if state.policy_limited => format!(
            "evaluation cost exceeds the policy's budget of {RUNTIME_COST_BUDGET} units per CSR"
        ),
        Exceeded::Cost => {
            format!("evaluation cost exceeds the limit of {PER_CALL_LIMIT} units per expression")
        }
        Exceeded::Time => format!(
            "evaluation took longer than {} ms",
            EXPRESSION_DEADLINE.as_millis()
        ),
        Exceeded::Size => format!("a value built is larger than {MAX_STRING_BYTES} bytes"),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Marks the current evaluation as over a limit and returns the error to raise.
fn exceed(function: &str, kind: Exceeded) -> ExecutionError {
    let message = METER.with(|m| match m.get() {
        Some(mut state) => {
            state.remaining = 0;
            state.exceeded.get_or_insert(kind);
            m.set(Some(state));
            exceeded_message(kind, &state)
        }
        None => exceeded_message(kind, &unmetered()),
    });
    ExecutionError::function_error(function, message)
}

fn unmetered() -> Metering {
    Metering {
        remaining: 0,
        limit: PER_CALL_LIMIT,
        policy_limited: false,
        exceeded: None,
        started: None,
        iterations: 0,
    }
}

/// Spends `units` of the current expression's budget.
///
/// # Errors
/// The budget is exceeded; every later charge of the same evaluation fails too.
pub(crate) fn charge(function: &str, units: u64) -> Result<(), ExecutionError> {
    let over = METER.with(|m| match m.get() {
        None => false,
        Some(mut state) if state.exceeded.is_none() && units <= state.remaining => {
            state.remaining -= units;
            m.set(Some(state));
            false
        }
        Some(_) => true,
    });
    if over {
        Err(exceed(function, Exceeded::Cost))
    } else {
        Ok(())
    }
}

/// One comprehension iteration costing `units`; every [`CHECK_FREQUENCY`] iterations the
/// clock is read against [`EXPRESSION_DEADLINE`].
///
/// # Errors
/// The budget or the deadline is exceeded.
pub(crate) fn tick(units: u64) -> Result<(), ExecutionError> {
    charge("comprehension", units)?;
    let late = METER.with(|m| match m.get() {
        None => false,
        Some(mut state) => {
            let started = *state.started.get_or_insert_with(Instant::now);
            state.iterations += 1;
            let late =
                state.iterations >= CHECK_FREQUENCY && started.elapsed() > EXPRESSION_DEADLINE;
            if state.iterations >= CHECK_FREQUENCY {
                state.iterations = 0;
            }
            m.set(Some(state));
            late
        }
    });
    if late {
        Err(exceed("comprehension", Exceeded::Time))
    } else {
        Ok(())
    }
}

/// Runs `wait` (an answer from outside the engine: the `authorizer` variable's
/// SubjectAccessReview) with the expression's clock stopped: [`EXPRESSION_DEADLINE`] bounds
/// the evaluation's own work, and a slow API server is the caller's to retry, never a
/// reason for a policy to fail (with `failureAction: Deny`, a denial that depends on load).
pub(crate) fn off_the_clock<T>(wait: impl FnOnce() -> T) -> T {
    let began = Instant::now();
    let answer = wait();
    let waited = began.elapsed();
    METER.with(|m| {
        if let Some(mut state) = m.get() {
            state.started = state
                .started
                .map(|started| started.checked_add(waited).unwrap_or(started));
            m.set(Some(state));
        }
    });
    answer
}

/// Refuses a string or bytes value of `bytes` before it is built.
///
/// # Errors
/// `bytes` is over [`MAX_STRING_BYTES`].
pub(crate) fn check_string_size(function: &str, bytes: usize) -> Result<(), ExecutionError> {
    if bytes > MAX_STRING_BYTES {
        Err(exceed(function, Exceeded::Size))
    } else {
        Ok(())
    }
}

/// The cost of reading or building `value` once: a unit per list element or map entry,
/// per [`BYTES_PER_UNIT`] bytes of a string, nested values included.
pub(crate) fn size_units(value: &Value) -> u64 {
    match value {
        Value::String(s) => (s.len() / BYTES_PER_UNIT) as u64,
        Value::Bytes(b) => (b.len() / BYTES_PER_UNIT) as u64,
        Value::List(items) => items.iter().fold(items.len() as u64, |sum, item| {
            sum.saturating_add(size_units(item))
        }),
        Value::Map(map) => map.map.values().fold(map.map.len() as u64, |sum, item| {
            sum.saturating_add(size_units(item))
        }),
        _ => 0,
    }
}

/// The length of a list, map, string or bytes value (bytes for strings), else 0.
pub(crate) fn length(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64,
        Value::Bytes(b) => b.len() as u64,
        Value::List(items) => items.len() as u64,
        Value::Map(map) => map.map.len() as u64,
        _ => 0,
    }
}

/// Checks a value a function built: strings and bytes within [`MAX_STRING_BYTES`], then
/// charges its size.
///
/// # Errors
/// It is too large, or its cost exceeds the budget.
pub(crate) fn built(function: &str, value: &Value) -> Result<(), ExecutionError> {
    if let Value::String(s) = value {
        check_string_size(function, s.len())?;
    }
    if let Value::Bytes(b) = value {
        check_string_size(function, b.len())?;
    }
    charge(function, size_units(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_within_the_limit_and_fails_past_it() {
        let meter = Meter::default();
        assert_eq!(
            meter.run(|| charge("f", 10).map_err(|e| e.to_string())),
            Ok(())
        );
        let error = meter
            .run(|| charge("f", PER_CALL_LIMIT + 1).map_err(|e| e.to_string()))
            .unwrap_err();
        assert!(
            error.contains("exceeds the limit of 1000000 units"),
            "{error}"
        );
    }

    #[test]
    fn an_exceeded_budget_fails_the_expression_even_when_its_result_was_ok() {
        let meter = Meter::default();
        let error = meter
            .run(|| {
                let _ignored = charge("f", PER_CALL_LIMIT + 1);
                Ok(true)
            })
            .unwrap_err();
        assert!(error.contains("exceeds the limit"), "{error}");
    }

    #[test]
    fn the_policy_budget_is_shared_by_its_expressions() {
        let meter = Meter::default();
        for _ in 0..10 {
            meter
                .run(|| charge("f", PER_CALL_LIMIT).map_err(|e| e.to_string()))
                .unwrap();
        }
        let error = meter.run(|| Ok(())).unwrap_err();
        assert!(
            error.contains("budget of 10000000 units is spent"),
            "{error}"
        );
    }

    #[test]
    fn a_panic_is_an_error_and_the_meter_is_reset() {
        let meter = Meter::default();
        let error = meter.run::<()>(|| panic!("boom")).unwrap_err();
        assert_eq!(error, "a CEL function panicked: boom");
        assert!(METER.with(Cell::get).is_none());
    }

    #[test]
    fn charges_are_free_outside_an_evaluation() {
        assert!(charge("f", u64::MAX).is_ok());
    }

    /// Starts the clock, waits `wait` (off the clock or on it), then loops past a check.
    fn loop_after_waiting(off: bool) -> Result<(), String> {
        Meter::default().run(|| {
            tick(1).map_err(|e| e.to_string())?;
            let wait = || std::thread::sleep(EXPRESSION_DEADLINE + Duration::from_millis(100));
            if off {
                off_the_clock(wait);
            } else {
                wait();
            }
            for _ in 0..CHECK_FREQUENCY {
                tick(1).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    #[test]
    fn a_wait_off_the_clock_does_not_count_toward_the_deadline() {
        assert_eq!(loop_after_waiting(true), Ok(()));
        let error = loop_after_waiting(false).unwrap_err();
        assert!(error.contains("longer than 1000 ms"), "{error}");
    }
}
