//! External client programs: run in their own process group, output captured, the whole group
//! killed at the timeout or when the run is interrupted.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::ClientOutcome;

/// `argv` ready to spawn: no stdin, stdout and stderr piped, in a process group of its own so
/// that a timeout kills the program and everything it started.
pub(crate) fn command(argv: &[String], env: &BTreeMap<String, String>, cwd: &Path) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Starts `argv`; when it cannot, why, with the hint to install a missing third-party peer
/// (docs/peers.md).
pub(crate) fn spawn(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<Child, String> {
    command(argv, env, cwd).spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: not found. If it is a third-party peer, install it with `ci/install-peers`.",
                argv[0]
            )
        } else {
            format!("{}: cannot start: {e}", argv[0])
        }
    })
}

/// Runs `argv` until it exits, `timeout` passes, or `cancel` flips to true (then its whole
/// process group is killed at once).
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Duration,
    cancel: watch::Receiver<bool>,
) -> ClientOutcome {
    run_with_grace(argv, env, cwd, timeout, cancel, Duration::ZERO).await
}

/// As [`run`], but at the timeout or on `cancel` the process group first gets TERM and up to
/// `grace` to exit (so that a program which cleans up on TERM, such as `ci/netns` deleting its
/// namespace or a child `airtwin run` writing its result, can), and only then KILL.
pub async fn run_with_grace(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Duration,
    mut cancel: watch::Receiver<bool>,
    grace: Duration,
) -> ClientOutcome {
    let started = Instant::now();
    let mut child = match spawn(argv, env, cwd) {
        Ok(c) => c,
        Err(hint) => return ClientOutcome::failed_to_start(hint, started.elapsed()),
    };
    let pgid = child.id().map(|p| p as i32);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v).await;
        v
    });
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        v
    });
    let mut timed_out = false;
    let mut interrupted = false;
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = tokio::time::sleep(timeout) => { timed_out = true; None }
        _ = cancel.wait_for(|c| *c) => { interrupted = true; None }
    };
    let status = match status {
        Some(s) => Some(s),
        None if !grace.is_zero() => {
            signal_group(pgid, libc::SIGTERM);
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    kill_group(pgid);
                    child.wait().await.ok()
                }
            }
        }
        None => {
            kill_group(pgid);
            child.wait().await.ok()
        }
    };
    // Children of the client may hold the pipes open: reap the group, then read what is there.
    kill_group(pgid);
    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    ClientOutcome {
        exit: if timed_out || interrupted {
            None
        } else {
            status.and_then(|s| s.code())
        },
        signal: status.and_then(|s| s.signal()),
        timed_out,
        interrupted,
        stdout,
        stderr,
        duration: started.elapsed(),
        error: None,
    }
}

async fn collect(task: tokio::task::JoinHandle<Vec<u8>>) -> String {
    match tokio::time::timeout(Duration::from_secs(2), task).await {
        Ok(Ok(v)) => String::from_utf8_lossy(&v).into_owned(),
        _ => String::from("(output not collected: still held open by a child process)"),
    }
}

pub(crate) fn kill_group(pgid: Option<i32>) {
    signal_group(pgid, libc::SIGKILL);
}

/// Sends `signal` to the process group `pgid`, if there is one.
pub(crate) fn signal_group(pgid: Option<i32>, signal: i32) {
    if let Some(pgid) = pgid {
        // SAFETY: killpg only sends a signal; an exited group gives ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_status_and_output_are_captured() {
        let (_tx, rx) = watch::channel(false);
        let o = run(
            &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            &BTreeMap::new(),
            Path::new("."),
            Duration::from_secs(10),
            rx,
        )
        .await;
        assert_eq!(o.exit, Some(3));
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert!(!o.timed_out);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let (_tx, rx) = watch::channel(false);
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let o = run(
            &argv(&["sh", "-c", &script]),
            &BTreeMap::new(),
            Path::new("."),
            Duration::from_millis(200),
            rx,
        )
        .await;
        assert!(o.timed_out);
        assert_eq!(o.exit, None);
        assert!(o.duration < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn with_a_grace_period_the_program_cleans_up_on_term_before_the_kill() {
        let (_tx, rx) = watch::channel(false);
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("cleaned");
        let script = format!(
            "trap 'sleep 0.3; touch {}; exit 143' TERM; sleep 30 & wait",
            marker.display()
        );
        let o = run_with_grace(
            &argv(&["sh", "-c", &script]),
            &BTreeMap::new(),
            Path::new("."),
            Duration::from_millis(300),
            rx,
            Duration::from_secs(5),
        )
        .await;
        assert!(o.timed_out);
        assert!(marker.exists(), "the TERM handler did not run");
        assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
    }

    #[tokio::test]
    async fn a_program_that_ignores_term_is_killed_after_the_grace_period() {
        let (tx, rx) = watch::channel(false);
        let o = tokio::spawn(async move {
            run_with_grace(
                &argv(&["sh", "-c", "trap '' TERM; sleep 30"]),
                &BTreeMap::new(),
                Path::new("."),
                Duration::from_secs(30),
                rx,
                Duration::from_millis(300),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let o = o.await.unwrap();
        assert!(o.interrupted);
        assert_eq!(o.signal, Some(libc::SIGKILL));
        assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
    }

    #[tokio::test]
    async fn missing_program_names_the_install_script() {
        let (_tx, rx) = watch::channel(false);
        let o = run(
            &argv(&["/nonexistent/atvremote"]),
            &BTreeMap::new(),
            Path::new("."),
            Duration::from_secs(1),
            rx,
        )
        .await;
        assert!(o.error.as_deref().unwrap().contains("ci/install-peers"));
    }
}
