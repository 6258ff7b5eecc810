//! `csrgate completion SHELL`: a completion script generated from the command line itself
//! (clap_complete), so it always knows every subcommand and flag of this build.

use clap::CommandFactory;

use super::Outcome;
use crate::cli::{Cli, CompletionArgs};

/// Prints the completion script for `args.shell` on stdout.
///
/// # Errors
/// None in practice: the script goes to stdout, and a closed stdout ends the process as for
/// any other command.
pub fn run(args: &CompletionArgs) -> Result<Outcome, super::Error> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "csrgate", &mut std::io::stdout());
    Ok(Outcome::Success)
}
