//! Integration tests: kube-rs clients and kubectl against a started sandbox, by topic.

// Tests fail loudly on broken setup; unwrap/expect are the clearest way to say so here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod bad_input;
mod common;
mod csr;
mod faults;
#[macro_use]
mod kubectl;
mod resources;
mod signer;
mod watch;
mod widgets;
