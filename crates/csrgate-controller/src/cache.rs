//! Compiled policies, kept per generation, so CSRs are decided without recompiling.
//!
//! The policy reflector's store says which policies exist; this cache says which of their
//! generations are compiled. A policy in the store whose generation is not compiled yet is
//! offered to `decide` as not Ready, which holds the CSRs it covers (when Enforce).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use csrgate_api::{CsrApprovalPolicy, PolicyMode};
use csrgate_policy::{CompiledPolicy, Engine};
use kube::runtime::reflector::Store;

/// Compiled policies keyed by uid, each for one generation, with the engine that compiles
/// and decides them (one per process: its caches are shared by every decision).
#[derive(Clone, Default)]
pub struct PolicyCache {
    compiled: Arc<RwLock<HashMap<String, CompiledPolicy>>>,
    engine: Arc<Engine>,
}

impl PolicyCache {
    /// The policy engine the cached policies were compiled by and decide with.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The compiled form of `policy`'s current generation, if already compiled.
    pub fn get(&self, policy: &CsrApprovalPolicy) -> Option<CompiledPolicy> {
        let compiled = self.compiled.read().ok()?;
        current(&compiled, policy).cloned()
    }

    /// Stores the compiled form of a policy's generation, unless a newer generation is
    /// already stored: at start-up `sync` compiles what the store held while the policy
    /// controller may already have compiled a newer generation, and the older must not
    /// replace it (the policy would be held as not compiled until it changed again).
    pub fn insert(&self, policy: &CsrApprovalPolicy, compiled: CompiledPolicy) {
        if let Ok(mut map) = self.compiled.write() {
            match map.get(key(policy)) {
                Some(stored) if stored.generation() > compiled.generation() => {}
                _ => {
                    map.insert(key(policy).to_owned(), compiled);
                }
            }
        }
    }

    /// Drops policies no longer in the store.
    pub fn retain(&self, store: &Store<CsrApprovalPolicy>) {
        let live: std::collections::HashSet<String> =
            store.state().iter().map(|p| key(p).to_owned()).collect();
        if let Ok(mut map) = self.compiled.write() {
            map.retain(|key, _| live.contains(key));
        }
    }

    /// The policies to decide with: every policy in the store, compiled or held.
    /// `dry_run` makes every policy Audit.
    ///
    /// Called once per decision: one lock and no allocation per policy (the clones share
    /// their contents), since 10,000 pending CSRs re-decided under 1,000 policies make ten
    /// million of these (issue 15). A poisoned lock holds every policy as not compiled.
    pub fn snapshot(&self, store: &Store<CsrApprovalPolicy>, dry_run: bool) -> Vec<CompiledPolicy> {
        let compiled = self.compiled.read().ok();
        store
            .state()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let compiled = compiled
                    .as_ref()
                    .and_then(|map| current(map, p).cloned())
                    .unwrap_or_else(|| CompiledPolicy::not_compiled(p));
                if dry_run {
                    compiled.with_mode(PolicyMode::Audit)
                } else {
                    compiled
                }
            })
            .collect()
    }
}

/// The cache key of a policy: its uid, or its name where it has none (a policy read from a
/// file by tests). Borrowed, so a lookup allocates nothing.
fn key(policy: &CsrApprovalPolicy) -> &str {
    policy
        .metadata
        .uid
        .as_deref()
        .or(policy.metadata.name.as_deref())
        .unwrap_or_default()
}

/// The entry of `map` compiled from `policy`'s current generation.
fn current<'m>(
    map: &'m HashMap<String, CompiledPolicy>,
    policy: &CsrApprovalPolicy,
) -> Option<&'m CompiledPolicy> {
    map.get(key(policy))
        .filter(|c| Some(c.generation()) == policy.metadata.generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(generation: i64) -> CsrApprovalPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "csrgate.dev/v1alpha1", "kind": "CsrApprovalPolicy",
            "metadata": {"name": "p", "uid": "u-1", "generation": generation},
            "spec": {"signerNames": ["example.com/x"],
                     "validations": [{"name": "v", "expression": "true"}]},
        }))
        .expect("a policy")
    }

    #[test]
    fn an_older_generation_does_not_replace_a_newer_one() {
        let cache = PolicyCache::default();
        let (older, newer) = (policy(1), policy(2));
        cache.insert(&newer, cache.engine().compile(&newer));
        // As `sync` at start-up, with what the store held a moment before.
        cache.insert(&older, cache.engine().compile(&older));
        assert_eq!(cache.get(&newer).map(|c| c.generation()), Some(2));
        assert!(cache.get(&older).is_none());
        // A newer generation still replaces the stored one.
        let newest = policy(3);
        cache.insert(&newest, cache.engine().compile(&newest));
        assert_eq!(cache.get(&newest).map(|c| c.generation()), Some(3));
    }
}
