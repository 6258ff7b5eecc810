//! `csrgate-kube up|down`: the real control plane for people, behind `make cluster-up` and
//! `make cluster-down`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use csrgate_kube::{Binaries, Component, ControlPlane, Lifetime, chain};

/// Start or stop a local Kubernetes control plane (etcd, kube-apiserver,
/// kube-controller-manager) built by `make kube`.
#[derive(Debug, Parser)]
#[command(name = "csrgate-kube")]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start it in the background; return once it is ready. Writes `<dir>/kubeconfig`.
    Up {
        /// The state folder (certificates, etcd data, kubeconfigs, logs); emptied first.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
        /// Where the binaries are (default: CSRGATE_KUBE_BIN, else target/kube/bin).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// Stop every process `up` started in `dir` and remove the folder.
    Down {
        /// The state folder given to `up`.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up { dir, bin } => up(&dir, bin),
        Command::Down { dir } => ControlPlane::down(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("csrgate-kube: {}", chain(&error));
            ExitCode::from(2)
        }
    }
}

fn up(dir: &std::path::Path, bin: Option<PathBuf>) -> csrgate_kube::Result<()> {
    if dir.join(format!("{}.pid", Component::Etcd)).exists() {
        // A second `up` must not orphan the first one's processes.
        ControlPlane::down(dir)?;
    }
    let binaries = Binaries::in_dir(&bin.unwrap_or_else(Binaries::default_dir))?;
    let started = std::time::Instant::now();
    let plane = ControlPlane::start(dir, binaries, Lifetime::Detached)?;
    println!(
        "control plane ready in {:.1} s at {}\n  export KUBECONFIG={}\n  logs: {}/logs/\n  stop: make cluster-down",
        started.elapsed().as_secs_f64(),
        plane.server(),
        plane.kubeconfig().display(),
        plane.dir().display(),
    );
    Ok(())
}
