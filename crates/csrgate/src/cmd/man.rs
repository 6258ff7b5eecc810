//! `csrgate man`: the manual pages (roff), generated from the command line itself
//! (clap_mangen), so they document every subcommand and flag of this build.

use std::path::PathBuf;

use clap::CommandFactory;

use super::Outcome;
use crate::cli::{Cli, ManArgs};

/// Why the manual pages could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManError {
    /// Rendering to stdout failed (a closed pipe, a full disk).
    #[error("writing the manual page to stdout")]
    Stdout(#[source] std::io::Error),
    /// The directory could not be created or a page written into it.
    #[error("writing manual pages into {0}")]
    Dir(PathBuf, #[source] std::io::Error),
}

/// Prints csrgate.1 on stdout, or writes it and one page per subcommand into `args.dir`.
///
/// # Errors
/// [`ManError`] when a page cannot be written.
pub fn run(args: &ManArgs) -> Result<Outcome, super::Error> {
    let command = Cli::command();
    match &args.dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(ManError::Stdout)?,
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .map_err(|e| ManError::Dir(dir.clone(), e))?,
    }
    Ok(Outcome::Success)
}
