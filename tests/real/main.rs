//! End-to-end tests against the real control plane: etcd, kube-apiserver and
//! kube-controller-manager built from their Go modules by `make kube`, started once for this
//! test binary by `csrgate-kube` and shared by its tests (one at a time: see
//! `harness::serial`). Where the sandbox and these differ, these are right.
//!
//! The binaries must be built: without them every test here fails with the command to run.

// Tests fail loudly: a panic with the value is the report.
#![allow(clippy::unwrap_used)]

// Shared with the sandbox tests; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../util.rs"]
mod util;

mod burst;
mod harness;

mod authorizer;
mod bootstrap;
mod builtin;
mod cases;
mod default_deny;
mod demo;
mod differential;
mod explain;
mod failover;
mod faults;
mod helm;
mod lease;
mod nodes;
mod pending_cap;
mod rbac;
mod seed;
