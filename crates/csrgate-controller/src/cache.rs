//! Compiled policies, kept per generation, so CSRs are decided without recompiling.
//!
//! The policy reflector's store says which policies exist; this cache says which of their
//! generations are compiled. A policy in the store whose generation is not compiled yet is
//! offered to `decide` as not Ready, which holds the CSRs it covers (when Enforce).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use csrgate_api::{CsrApprovalPolicy, PolicyMode};
use csrgate_policy::{CompiledPolicy, Engine};
use kube::ResourceExt;
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
        let key = policy.uid().unwrap_or_else(|| policy.name_any());
        let compiled = self.compiled.read().ok()?;
        compiled
            .get(&key)
            .filter(|c| Some(c.generation()) == policy.metadata.generation)
            .cloned()
    }

    /// Stores the compiled form of a policy's generation.
    pub fn insert(&self, policy: &CsrApprovalPolicy, compiled: CompiledPolicy) {
        let key = policy.uid().unwrap_or_else(|| policy.name_any());
        if let Ok(mut map) = self.compiled.write() {
            map.insert(key, compiled);
        }
    }

    /// Drops policies no longer in the store.
    pub fn retain(&self, store: &Store<CsrApprovalPolicy>) {
        let live: std::collections::HashSet<String> = store
            .state()
            .iter()
            .map(|p| p.uid().unwrap_or_else(|| p.name_any()))
            .collect();
        if let Ok(mut map) = self.compiled.write() {
            map.retain(|key, _| live.contains(key));
        }
    }

    /// The policies to decide with: every policy in the store, compiled or held.
    /// `dry_run` makes every policy Audit.
    pub fn snapshot(&self, store: &Store<CsrApprovalPolicy>, dry_run: bool) -> Vec<CompiledPolicy> {
        store
            .state()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let compiled = self
                    .get(p)
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
