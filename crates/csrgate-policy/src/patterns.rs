//! Regular expressions for `string.matches(pattern)`: constant patterns compiled once when a
//! policy is compiled and owned by it, patterns computed at evaluation time compiled into a
//! bounded cache owned by the [`crate::Engine`].
//!
//! The CEL `matches` function is registered once in the immutable root context, so it cannot
//! hold a policy's patterns itself; the policy being evaluated lends them to its thread for the
//! duration of its evaluation ([`Patterns::lend`]), as the budget lends its meter.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;

/// Most distinct patterns computed at evaluation time kept compiled per engine; past that
/// the cache starts over, so a policy building patterns from request data cannot grow memory
/// without bound.
pub const DYNAMIC_PATTERN_ENTRIES: usize = 1024;
/// Most bytes of pattern text kept by the dynamic cache (each compiled program is bounded by
/// [`REGEX_SIZE_LIMIT`] on top).
pub const DYNAMIC_PATTERN_BYTES: usize = 256 * 1024;
/// Largest compiled program one pattern may produce (bytes), bounding compile time and memory.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles one pattern under [`REGEX_SIZE_LIMIT`].
///
/// # Errors
/// The pattern is not a valid regular expression, or compiles past the size limit; the
/// message quotes the pattern.
pub(crate) fn compile(pattern: &str) -> Result<Arc<Regex>, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("'{pattern}' is not a valid regular expression: {e}"))
}

/// The engine's cache of patterns computed at evaluation time, bounded by
/// [`DYNAMIC_PATTERN_ENTRIES`] and [`DYNAMIC_PATTERN_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct DynamicPatterns {
    cache: Mutex<Bounded>,
}

#[derive(Debug, Default)]
struct Bounded {
    compiled: HashMap<String, Arc<Regex>>,
    bytes: usize,
}

impl DynamicPatterns {
    /// The compiled `pattern`, from the cache or compiled now.
    ///
    /// # Errors
    /// See [`compile`].
    pub(crate) fn get(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        let lock = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(regex) = lock().compiled.get(pattern) {
            return Ok(Arc::clone(regex));
        }
        let regex = compile(pattern)?;
        let mut cache = lock();
        if cache.compiled.len() >= DYNAMIC_PATTERN_ENTRIES
            || cache.bytes + pattern.len() > DYNAMIC_PATTERN_BYTES
        {
            *cache = Bounded::default();
        }
        if pattern.len() <= DYNAMIC_PATTERN_BYTES {
            cache.bytes += pattern.len();
            cache
                .compiled
                .insert(pattern.to_owned(), Arc::clone(&regex));
        }
        Ok(regex)
    }

    /// How many patterns are cached, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .compiled
            .len()
    }
}

/// The patterns one compiled policy evaluates with: its constant ones, compiled with the
/// policy and dropped with it, and its engine's cache for the others.
#[derive(Debug)]
pub(crate) struct Patterns {
    pub(crate) constant: HashMap<String, Arc<Regex>>,
    pub(crate) dynamic: Arc<DynamicPatterns>,
}

thread_local! {
    /// The patterns of the policy evaluated on this thread; `None` outside an evaluation.
    static LENT: RefCell<Option<Arc<Patterns>>> = const { RefCell::new(None) };
}

/// Restores the thread's previous patterns when an evaluation ends, even by a panic.
pub(crate) struct Lent {
    previous: Option<Arc<Patterns>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let previous = self.previous.take();
        LENT.with(|lent| *lent.borrow_mut() = previous);
    }
}

impl Patterns {
    /// Lends these patterns to `matches` calls on this thread until the guard drops.
    pub(crate) fn lend(self: &Arc<Self>) -> Lent {
        Lent {
            previous: LENT.with(|lent| lent.borrow_mut().replace(Arc::clone(self))),
        }
    }
}

/// The compiled `pattern` for a `matches` call: the evaluated policy's constant one, else
/// from its engine's cache; outside any evaluation, compiled afresh.
///
/// # Errors
/// See [`compile`].
pub(crate) fn lookup(pattern: &str) -> Result<Arc<Regex>, String> {
    let lent = LENT.with(|lent| lent.borrow().clone());
    match lent {
        Some(patterns) => match patterns.constant.get(pattern) {
            Some(regex) => Ok(Arc::clone(regex)),
            None => patterns.dynamic.get(pattern),
        },
        None => compile(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_cache_reuses_the_compiled_pattern() {
        let cache = DynamicPatterns::default();
        let first = cache.get("^a+$").unwrap();
        let second = cache.get("^a+$").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_dynamic_cache_is_bounded_by_entries_and_bytes() {
        let cache = DynamicPatterns::default();
        for i in 0..=DYNAMIC_PATTERN_ENTRIES {
            cache.get(&format!("^{i}$")).unwrap();
        }
        assert!(cache.len() <= DYNAMIC_PATTERN_ENTRIES);
        // A verbose-mode comment: long text, an empty program.
        let long = format!("(?x)#{}", "a".repeat(DYNAMIC_PATTERN_BYTES / 2));
        cache.get(&long).unwrap();
        cache.get(&format!("{long}b")).unwrap();
        assert_eq!(
            cache.len(),
            1,
            "the second long pattern starts the cache over"
        );
    }

    #[test]
    fn invalid_patterns_are_errors_not_panics() {
        assert!(
            DynamicPatterns::default()
                .get("(")
                .unwrap_err()
                .contains("not a valid regular expression")
        );
    }

    #[test]
    fn lent_patterns_answer_until_the_guard_drops() {
        let regex = compile("^x$").unwrap();
        let patterns = Arc::new(Patterns {
            constant: HashMap::from([("^x$".to_owned(), Arc::clone(&regex))]),
            dynamic: Arc::default(),
        });
        {
            let _lent = patterns.lend();
            assert!(Arc::ptr_eq(&lookup("^x$").unwrap(), &regex));
            lookup("^y$").unwrap();
            assert_eq!(patterns.dynamic.len(), 1);
        }
        assert!(!Arc::ptr_eq(&lookup("^x$").unwrap(), &regex));
    }
}
