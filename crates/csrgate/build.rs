//! Stamps `csrgate --version` with the git commit the binary was built from.
//!
//! `CSRGATE_GIT_COMMIT` in the environment wins (a packager, or the Dockerfile, whose build
//! context has no `.git`); else `git rev-parse` in this checkout; else, in a source tarball or
//! without git, `unknown`. The build never fails for want of git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CSRGATE_GIT_COMMIT");
    let commit = std::env::var("CSRGATE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CSRGATE_GIT_COMMIT={}", commit.trim());
}

/// `git ARGS` in this crate's directory: its trimmed output, or `None` when git is missing,
/// fails (not a checkout) or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

/// The short commit of HEAD. Cargo is told to run this again when HEAD moves: when the file
/// HEAD changes (a checkout) and when the branch it names changes (a commit), loose or packed.
/// Only files that exist are named, since Cargo reruns every build for a missing one.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        let path = manifest_dir().join(Path::new(&path));
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
