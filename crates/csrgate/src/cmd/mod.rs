//! One function per subcommand; exit codes are decided here and nowhere else.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

mod check;
mod completion;
mod controller;
mod crd;
mod demo;
mod explain;
mod man;
pub(crate) mod request;
mod sandbox;
mod test;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (exit 0).
    Success,
    /// A test did not match (exit 1).
    Mismatch,
    /// Unreadable input or an invalid policy (exit 2).
    BadInput,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Mismatch => ExitCode::from(1),
            Outcome::BadInput => ExitCode::from(2),
        }
    }
}

/// Any error a command returns; printed once with its causes by `main`.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs the chosen subcommand.
///
/// # Errors
/// Whatever the subcommand could not read or do; `main` prints it and exits 2.
pub fn run(cli: Cli) -> Result<Outcome, Error> {
    match cli.command {
        Command::Completion(args) => completion::run(&args),
        Command::Man(args) => man::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Crd => crd::run(),
        Command::Demo(args) => demo::run(&args),
        Command::Controller(args) => controller::run(&args),
        Command::Sandbox(args) => sandbox::run(&args),
        Command::Request(args) => request::run(&args),
        Command::Explain(args) => explain::run(&args),
    }
}
