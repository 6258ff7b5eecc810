//! What people expect from a command line: `--version` names the commit, `completion` scripts
//! that a shell really completes with, `man` pages, and the kubectl plugin `kubectl csrgate`
//! run by the real kubectl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helm::kube_bin;
use crate::util::{
    Cluster, csrgate, free_port, http, kubeconfig_with_unreachable_current_context, repo, run,
};

/// `git ARGS` in the repository, or `None` without git or a checkout.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo(""))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    let (code, stdout, stderr) = run(csrgate().arg("--version"));
    assert_eq!(code, 0, "{stderr}");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    assert_eq!(
        stdout.trim(),
        format!("csrgate {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// The newest compiled build script of the csrgate package (crates/csrgate/build.rs).
fn build_script() -> PathBuf {
    let build = Path::new(env!("CARGO_BIN_EXE_csrgate"))
        .parent()
        .unwrap()
        .join("build");
    std::fs::read_dir(&build)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("csrgate-"))
        .map(|e| e.path().join("build-script-build"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("a compiled build script under target/*/build/csrgate-*")
}

#[test]
fn the_build_script_says_unknown_outside_a_git_checkout_and_takes_the_commit_from_the_environment()
{
    // A source tarball: the crate's files without any .git above them.
    let tarball = tempfile::tempdir().unwrap();
    let run_script = |commit: Option<&str>| {
        let mut command = Command::new(build_script());
        command
            .env("CARGO_MANIFEST_DIR", tarball.path())
            .env("GIT_CEILING_DIRECTORIES", tarball.path().parent().unwrap())
            .env_remove("CSRGATE_GIT_COMMIT");
        if let Some(commit) = commit {
            command.env("CSRGATE_GIT_COMMIT", commit);
        }
        run(&mut command)
    };
    let (code, stdout, stderr) = run_script(None);
    assert_eq!(code, 0, "the build failed without .git: {stderr}");
    assert!(
        stdout.contains("cargo:rustc-env=CSRGATE_GIT_COMMIT=unknown\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("rerun-if-changed"), "{stdout}");
    let (code, stdout, _) = run_script(Some("0123456789ab"));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("cargo:rustc-env=CSRGATE_GIT_COMMIT=0123456789ab\n"),
        "{stdout}"
    );
    // In the checkout: the commit, and a rebuild when HEAD or its branch moves.
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        let (code, stdout, stderr) = run(Command::new(build_script())
            .env("CARGO_MANIFEST_DIR", repo("crates/csrgate"))
            .env_remove("CSRGATE_GIT_COMMIT"));
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(&format!("cargo:rustc-env=CSRGATE_GIT_COMMIT={commit}\n")),
            "{stdout}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("cargo:rerun-if-changed=") && l.ends_with("HEAD")),
            "{stdout}"
        );
    }
}

fn completion(shell: &str) -> String {
    let (code, stdout, stderr) = run(csrgate().args(["completion", shell]));
    assert_eq!(code, 0, "completion {shell}: {stderr}");
    stdout
}

#[test]
fn bash_completes_subcommands_and_flags_with_the_generated_script() {
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), completion("bash")).unwrap();
    // What bash does on TAB: COMP_WORDS/COMP_CWORD set, the completion function called.
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _csrgate csrgate \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.path().display()
        );
        let (code, stdout, stderr) = run(Command::new("bash").args(["-c", &program]));
        assert_eq!(code, 0, "{stderr}");
        stdout.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete("csrgate ch"), ["check"]);
    let flags = complete("csrgate request --k");
    assert!(
        flags.contains(&"--key-type".to_owned()) && flags.contains(&"--kubeconfig".to_owned()),
        "{flags:?}"
    );
    assert_eq!(complete("csrgate completion f"), ["fish"]);
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    // zsh and fish are not installed here, so their scripts are read, not run.
    let zsh = completion("zsh");
    assert!(zsh.starts_with("#compdef csrgate"), "{zsh}");
    let fish = completion("fish");
    for command in [
        "check",
        "test",
        "controller",
        "demo",
        "request",
        "completion",
        "man",
    ] {
        assert!(zsh.contains(&format!("'{command}:")), "zsh lacks {command}");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish lacks {command}"
        );
    }
    let (code, _, stderr) = run(csrgate().args(["completion", "tcsh"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("invalid value 'tcsh'") && stderr.contains("bash"),
        "{stderr}"
    );
}

#[test]
fn man_prints_a_page_man_can_render_and_writes_one_per_command() {
    let (code, page, stderr) = run(csrgate().arg("man"));
    assert_eq!(code, 0, "{stderr}");
    assert!(page.contains(".TH csrgate 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(csrgate().args(["man", "--dir"]).arg(dir.path()));
    assert_eq!(code, 0, "{stderr}");
    for name in [
        "csrgate.1",
        "csrgate-check.1",
        "csrgate-request.1",
        "csrgate-controller.1",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} not written");
    }
    // man(1) renders it (groff), as a person reading `man csrgate-check` would see it.
    let (code, text, stderr) = run(Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.path().join("csrgate-check.1"))
        .env("MANWIDTH", "100"));
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("--policy"), "{text}");
    let (code, _, stderr) = run(csrgate().args(["man", "--dir", "/proc/version/x"]));
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: writing manual pages into /proc/version/x: "),
        "{stderr}"
    );
}

/// A PATH with `kubectl-csrgate` (a symlink to the binary under test) first, then the kubectl
/// that `make kube` built; returns (temporary dir, PATH).
fn plugin_path() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_csrgate"),
        dir.path().join("kubectl-csrgate"),
    )
    .unwrap();
    let kubectl_dir = kube_bin("kubectl").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        dir.path().display(),
        kubectl_dir.display()
    );
    (dir, path)
}

fn kubectl(path: &str, args: &[&str]) -> (i32, String, String) {
    run(Command::new(kube_bin("kubectl"))
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", "/nonexistent")
        .current_dir(repo("")))
}

#[test]
fn kubectl_finds_the_plugin_and_runs_it_as_kubectl_csrgate() {
    let (dir, path) = plugin_path();
    let (code, stdout, stderr) = kubectl(&path, &["plugin", "list"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let plugin = dir.path().join("kubectl-csrgate");
    assert!(
        stdout.lines().any(|l| l.trim() == plugin.to_str().unwrap()),
        "kubectl plugin list:\n{stdout}{stderr}"
    );

    let (code, help, stderr) = kubectl(&path, &["csrgate", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(help.contains("Usage: kubectl csrgate <COMMAND>"), "{help}");
    assert!(help.contains("check") && help.contains("request"), "{help}");
    let (code, help, _) = kubectl(&path, &["csrgate", "request", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("Usage: kubectl csrgate request"), "{help}");
    assert!(
        help.contains("--context <CONTEXT>") && help.contains("--as <USER>"),
        "{help}"
    );

    // An unknown command: kubectl hands it to the plugin, which prints the usage.
    let (code, stdout, stderr) = kubectl(&path, &["csrgate", "approve-everything"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("unrecognized subcommand 'approve-everything'")
            && stderr.contains("Usage: kubectl csrgate <COMMAND>"),
        "{stderr}"
    );

    // A real command through kubectl.
    let (code, stdout, stderr) = kubectl(
        &path,
        &[
            "csrgate",
            "check",
            "--policy",
            "examples/policies/administrators.yaml",
            "examples/csrs/jane.yaml",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Approved"), "{stdout}");
}

#[test]
fn the_controller_uses_the_context_it_is_given() {
    let cluster = Cluster::start();
    let (kubeconfig, context) = kubeconfig_with_unreachable_current_context(&cluster);
    cluster.kubectl_ok(&["apply", "-f", "examples/policies/administrators.yaml"]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut controller = csrgate()
        .args([
            "controller",
            "--metrics-addr",
            &metrics,
            "--context",
            &context,
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (code, _, stderr) = crate::controller::create_as(&cluster, "examples/csrs/jane.yaml");
    assert_eq!(code, 0, "{stderr}");
    let decided = cluster.wait_for_condition("jane", 30);
    let ready = http("GET", &format!("http://{metrics}/readyz"), None);
    let _ = controller.kill();
    let _ = controller.wait();
    assert_eq!(
        decided.map(|(type_, _, _)| type_).as_deref(),
        Some("Approved"),
        "readyz: {ready:?}"
    );
}
