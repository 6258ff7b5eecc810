//! The identifiers flattened field paths are bound under (`object.spec.username` → `@p3`),
//! owned by an [`crate::Engine`] and shared by the policies it compiles.
//!
//! Why short names: the interpreter finds variables by comparing names along the scope chain
//! and formats `<target>.<method>` for every method call on an identifier, so long dotted
//! names that share prefixes cost string comparisons and copies on every evaluation. `@`
//! cannot start a CEL identifier, so these never clash with user names.
//!
//! Why per engine and shared: a CSR's scope binds each path once for every policy reading it,
//! so two policies must name the same path alike. Each compiled policy holds its entries; an
//! entry no live policy holds is reclaimed and its number reused, so the table is bounded by
//! the paths of the live policies (a deleted policy's entries go with it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// One flattened field path with the identifier it is bound under.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PathEntry {
    /// The number `n` of the identifier `@p<n>`, unique among the engine's live entries.
    pub(crate) index: usize,
    /// The dotted path, e.g. `object.spec.username`.
    pub(crate) path: String,
    /// `@p<n>`.
    pub(crate) identifier: String,
}

/// A path entry held by a compiled policy: it lives as long as some policy holds it.
pub(crate) type BoundPath = Arc<PathEntry>;

/// The engine's path entries.
#[derive(Debug, Default)]
pub(crate) struct PathTable {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Every entry not yet swept, with its number (readable once the entry is dead).
    by_path: HashMap<String, (Weak<PathEntry>, usize)>,
    /// Numbers of reclaimed entries, reused before new ones.
    free: Vec<usize>,
    /// The next never-used number.
    next: usize,
    /// `by_path.len()` at which dead entries are next swept out.
    sweep_at: usize,
}

/// Fewest entries before the table sweeps out dead ones.
const MIN_SWEEP: usize = 64;

impl PathTable {
    /// The entry of `path`, shared with every live policy reading it.
    pub(crate) fn intern(&self, path: &str) -> BoundPath {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let dead = match table.by_path.get(path) {
            Some((entry, index)) => match entry.upgrade() {
                Some(entry) => return entry,
                // No live policy uses its number: the path takes it again.
                None => Some(*index),
            },
            None => None,
        };
        if dead.is_none() && table.by_path.len() >= table.sweep_at.max(MIN_SWEEP) {
            table.sweep();
        }
        let index = match dead {
            Some(index) => index,
            None => table.free.pop().unwrap_or_else(|| table.take_next()),
        };
        let entry = Arc::new(PathEntry {
            index,
            path: path.to_owned(),
            identifier: format!("@p{index}"),
        });
        table
            .by_path
            .insert(path.to_owned(), (Arc::downgrade(&entry), index));
        entry
    }

    /// How many entries the table keeps, live or not yet swept, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_path
            .len()
    }
}

/// An interpreter message with every `@p<n>` identifier among `paths` replaced by the path it
/// stands for, so an auditor reads `object.spec.nope`, not an internal name.
pub(crate) fn describe(message: &str, paths: &[BoundPath]) -> String {
    if !message.contains("@p") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("@p") {
        out.push_str(&rest[..at]);
        let digits = rest[at + 2..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let number = rest[at + 2..at + 2 + digits].parse::<usize>().ok();
        match number.and_then(|n| paths.iter().find(|p| p.index == n)) {
            Some(entry) => out.push_str(&entry.path),
            None => out.push_str(&rest[at..at + 2 + digits]),
        }
        rest = &rest[at + 2 + digits..];
    }
    out.push_str(rest);
    out
}

impl Table {
    fn take_next(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }

    /// Drops the entries no policy holds any more and frees their numbers.
    fn sweep(&mut self) {
        let free = &mut self.free;
        self.by_path.retain(|_, (entry, index)| {
            let live = entry.strong_count() > 0;
            if !live {
                free.push(*index);
            }
            live
        });
        self.sweep_at = self.by_path.len() * 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_keeps_its_identifier_while_a_policy_holds_it() {
        let table = PathTable::default();
        let a = table.intern("object.spec.username");
        assert_eq!(a, table.intern("object.spec.username"));
        assert_ne!(a.identifier, table.intern("object.spec.groups").identifier);
        assert_eq!(a.identifier, format!("@p{}", a.index));
    }

    #[test]
    fn identifiers_read_back_as_paths() {
        let table = PathTable::default();
        let a = table.intern("object.spec.username");
        let held = [Arc::clone(&a)];
        assert_eq!(
            describe(
                &format!("Undeclared reference to '{}'", a.identifier),
                &held
            ),
            "Undeclared reference to 'object.spec.username'"
        );
        assert_eq!(
            describe("no identifiers here", &held),
            "no identifiers here"
        );
        assert_eq!(describe("@p999 and @p", &held), "@p999 and @p");
    }

    #[test]
    fn entries_no_policy_holds_are_reclaimed_and_their_numbers_reused() {
        let table = PathTable::default();
        let held: Vec<BoundPath> = (0..MIN_SWEEP)
            .map(|i| table.intern(&format!("object.a{i}")))
            .collect();
        drop(held);
        for round in 0..10 {
            let held: Vec<BoundPath> = (0..MIN_SWEEP)
                .map(|i| table.intern(&format!("object.r{round}.b{i}")))
                .collect();
            assert!(
                held.iter().all(|p| p.index < 3 * MIN_SWEEP),
                "numbers are reused"
            );
        }
        assert!(table.len() <= 3 * MIN_SWEEP, "{} entries kept", table.len());
        // Live entries are never given away.
        let live = table.intern("object.live");
        for i in 0..4 * MIN_SWEEP {
            assert_ne!(table.intern(&format!("object.c{i}")).index, live.index);
        }
    }
}
