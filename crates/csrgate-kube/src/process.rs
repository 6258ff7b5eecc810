//! Starting the component processes so that none outlives what started it by accident.
//!
//! An attached process (tests) is started through `setpriv --pdeathsig KILL` from one
//! supervisor thread that lives as long as the process: Linux sends the signal when the
//! *thread* that forked the child exits, so forking from short-lived test threads would kill
//! the control plane when the first test ends, and forking from the supervisor means the
//! children die with the test binary, whether it exits, panics or is killed. A detached
//! process (`make cluster-up`) gets a process group of its own and outlives the command.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

/// A command for the supervisor thread and where to send the spawned child.
type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

/// The sender to the supervisor thread, started on first use.
static SUPERVISOR: Mutex<Option<Sender<SpawnRequest>>> = Mutex::new(None);

/// Starts `command` with stdout and stderr appended to `log`; attached children die with
/// this process, detached ones get their own process group and outlive it.
pub(crate) fn spawn(
    mut command: Command,
    log: &std::fs::File,
    attached: bool,
) -> std::io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    if !attached {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        return command.spawn();
    }
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args(["--pdeathsig", "KILL", "--"])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let (reply, answer) = channel();
    supervisor()?
        .send((wrapped, reply))
        .map_err(|_| std::io::Error::other("the supervisor thread has stopped"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the supervisor thread has stopped"))?
}

/// The supervisor's sender, starting the thread on first use. The thread never returns:
/// when it runs out of requests it parks, because its exit would kill every child.
fn supervisor() -> std::io::Result<Sender<SpawnRequest>> {
    let mut guard = SUPERVISOR
        .lock()
        .map_err(|_| std::io::Error::other("supervisor lock poisoned"))?;
    if let Some(sender) = guard.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, requests) = channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("csrgate-kube-supervisor".to_owned())
        .spawn(move || {
            for (mut command, reply) in requests.iter() {
                let _ = reply.send(command.spawn());
            }
            loop {
                std::thread::park();
            }
        })?;
    *guard = Some(sender.clone());
    Ok(sender)
}

/// Sends `signal` (a name such as `STOP`, `CONT`, `TERM`) to `pid` with kill(1), which
/// keeps this crate free of unsafe code.
pub(crate) fn signal(pid: u32, signal: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -{signal} {pid}: {status}"
        )))
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
