//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// The `csrgate` binary under test, run from the repository root.
pub fn csrgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_csrgate"));
    command.current_dir(root());
    command
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run csrgate");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// Compares against a golden file; `CSRGATE_BLESS=1` rewrites it.
pub fn assert_golden(name: &str, got: &str) {
    let path = repo(&format!("tests/golden/{name}"));
    if std::env::var_os("CSRGATE_BLESS").is_some() {
        std::fs::write(&path, got).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    pretty_assertions::assert_eq!(
        expected,
        got,
        "golden file {name} differs (CSRGATE_BLESS=1 to update)"
    );
}
