//! End-to-end tests: the real `csrgate` binary, run as a user or a pipeline would run it.
//!
//! One test binary, modules by topic. Each test gets its own temporary directory.

// Tests fail loudly: a panic with the value is the report.
#![allow(clippy::unwrap_used)]

mod util;

mod authorizer;
mod check;
mod cli;
mod controller;
mod dashboard;
mod demo;
mod deploy;
mod explain;
mod helm;
mod policy_cases;
mod request;
mod test_command;
