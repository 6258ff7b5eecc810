//! `csrgate-bench`: the side-by-side benchmarks behind `make bench` (see `bench/run.sh`).
//!
//! Each measurement runs the real `csrgate` binary as separate processes (sandbox API
//! server, controller) so the figures include HTTP, JSON and the kube-runtime machinery, as
//! in a cluster. The API floor (`floor`) is a plain kube-rs client doing the same API work
//! as the controller with no evaluation; `report` puts everything side by side.

mod cluster;
mod e2e;
mod floor;
mod real;
mod report;
mod report_real;
mod runs;
mod scale;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// What can go wrong while benchmarking; every variant says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A process could not be started or an output file could not be written.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// The step that failed.
        what: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// A benchmark input or output could not be read or written as JSON/YAML.
    #[error("{what}: {message}")]
    Data {
        /// The file or object.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The run did not reach the state it measures (e.g. not every CSR was decided).
    #[error("{0}")]
    Incomplete(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Parser)]
#[command(
    version,
    about = "csrgate's side-by-side benchmarks (run by `make bench`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bursts of N CSRs through the sandbox, decided by the controller and by the API floor
    E2e(e2e::Args),
    /// The API floor: approve every pending CSR with the controller's API calls, no evaluation
    Floor(floor::Args),
    /// The end-to-end benchmarks on the real control plane: against the floor and against
    /// kube-controller-manager's approver
    Real(real::Args),
    /// Memory with 10,000 pending CSRs and 5,000 Nodes cached, then 1,000 policies loaded
    Scale(scale::Args),
    /// Collect every result into summary.json, BENCHMARKS.md and the plot
    Report(report::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::E2e(args) => e2e::run(args).await,
            Command::Floor(args) => floor::run(args).await,
            Command::Real(args) => real::run(args).await,
            Command::Scale(args) => scale::run(args).await,
            Command::Report(args) => report::run(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Data {
        what: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// The default location of the `csrgate` binary: the release build next to this one.
pub fn default_csrgate() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("csrgate")))
        .unwrap_or_else(|| PathBuf::from("target/release/csrgate"))
}
