//! A running reference receiver, whatever starts it: its address, its process group (the
//! receiver and whatever it needs, e.g. the private dbus and avahi of `ci/references/mdns-session`),
//! its log, and how it ended. Every reference module exposes
//! `async fn start(peers: &Path, identity: &Identity, log: PathBuf) -> Result<Running>`; the
//! process group is killed when the handle is stopped or dropped.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use super::{ReferenceExit, ReferenceKind};

/// The identity the reference is given: the scenario's first device's name and MAC.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// A started reference receiver.
pub struct Running {
    pub kind: ReferenceKind,
    /// Where its clients connect (the recording proxy forwards here).
    pub addr: SocketAddr,
    /// The identity the reference really took, when it is not the one it was given (e.g.
    /// shairport-sync derives its MAC from its name): Apple-Response is verified against it.
    pub identity: Option<Identity>,
    child: Child,
    pgid: Option<i32>,
    log: PathBuf,
    stopped: bool,
}

/// Spawns `cmd` as the leader of a new process group, stdin closed, stderr and (unless `stdout`
/// is given, e.g. piped for a readiness line) stdout written to `log` (emptied first: a log holds
/// one run only). Wrap the child in [`Running`] at once: it is not killed when dropped on its
/// own, so that [`Running`]'s drop can give it TERM first.
pub fn spawn(
    kind: ReferenceKind,
    cmd: &mut Command,
    log: &Path,
    stdout: Option<Stdio>,
) -> Result<Child> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let out = match stdout {
        Some(s) => s,
        None => file.try_clone().context("duplicating the log file")?.into(),
    };
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(file)
        .process_group(0);
    terminate_with_parent(cmd);
    without_core_dumps(cmd);
    cmd.spawn()
        .with_context(|| format!("starting reference {}", kind.name()))
}

/// The executable of reference `name`: `overridden` (an environment variable's value) if set,
/// else `name` on `path`; either must be an executable file.
pub fn program_in(name: &str, overridden: Option<OsString>, path: &OsStr) -> Result<PathBuf> {
    let found = match overridden {
        Some(p) => which::which(PathBuf::from(p)),
        None => which::which_in(name, Some(path), "/"),
    };
    found.map_err(|_| {
        anyhow::anyhow!(
            "reference {name} is not installed (no {name} executable): run ci/install-peers"
        )
    })
}

/// [`program_in`] with the value of `env` (when given) and this process's `PATH`.
pub fn program(name: &str, env: Option<&str>) -> Result<PathBuf> {
    program_in(
        name,
        env.and_then(std::env::var_os),
        &std::env::var_os("PATH").unwrap_or_default(),
    )
}

/// `ci/references/mdns-session`, which runs a reference with its own dbus and avahi-daemon inside
/// `ci/netns`: looked for above the peers folder (`<checkout>/target/peers`), the working folder
/// and the airtwin executable.
pub fn mdns_session(peers: &Path) -> Result<PathBuf> {
    let script = Path::new("ci/references/mdns-session");
    let mut starts: Vec<PathBuf> = vec![peers.to_path_buf()];
    starts.extend(std::env::current_dir().ok());
    starts.extend(std::env::current_exe().ok());
    starts
        .iter()
        .flat_map(|s| s.ancestors())
        .map(|a| a.join(script))
        .find(|p| p.is_file())
        .context("ci/references/mdns-session not found above the peers folder, the working folder or the airtwin executable")
}

/// Spawns `argv` under [`mdns_session`] (its own dbus and avahi-daemon), as [`spawn`] does.
pub fn spawn_with_mdns(
    kind: ReferenceKind,
    peers: &Path,
    argv: &[String],
    log: &Path,
) -> Result<Child> {
    if !crate::netns::inside() {
        bail!(
            "reference {} publishes mDNS through avahi-daemon: it runs only inside ci/netns",
            kind.name()
        );
    }
    let mut cmd = Command::new(mdns_session(peers)?);
    cmd.arg("--").args(argv);
    spawn(kind, &mut cmd, log, None)
}

/// Asks the kernel to send the child TERM when airtwin dies without stopping it (killed by a
/// timeout, say): the reference leads a process group of its own, so a signal to airtwin's group
/// would not reach it, and a wrapper such as `ci/references/mdns-session` stops its helpers on
/// TERM.
pub fn terminate_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the child's core file size limit to 0: a reference that crashes (Kodi segfaults on TERM,
/// shairport-sync on pyatv's stream; docs/peers.md) must not leave a core file of hundreds of MB
/// per run.
pub fn without_core_dumps(cmd: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &none) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The last `n` lines of `log`.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(n).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A TCP port free on 127.0.0.1 right now (the reference binds it a moment later; a reference
/// that cannot takes the "exited before it was ready" path).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Running {
    /// Wraps a child made by [`spawn`] (or any child that leads its own process group).
    pub fn new(kind: ReferenceKind, addr: SocketAddr, child: Child, log: PathBuf) -> Running {
        let pgid = child.id().map(|p| p as i32);
        Running {
            kind,
            addr,
            identity: None,
            child,
            pgid,
            log,
            stopped: false,
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until `addr` accepts a TCP connection, or fails when the process exits first
    /// (with its log tail) or `timeout` passes.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.exited() {
                bail!(
                    "reference {} exited before it was ready ({}); its log ends:\n{}",
                    exit.reference,
                    exit.status,
                    exit.log_tail
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "reference {} did not listen on {} within {} s; its log ends:\n{}",
                    self.kind.name(),
                    self.addr,
                    timeout.as_secs(),
                    log_tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some` when the reference exited on its own (crashed, or quit).
    pub fn exited(&mut self) -> Option<ReferenceExit> {
        let status = self.child.try_wait().ok()??;
        Some(ReferenceExit {
            reference: self.kind.name().into(),
            status: status.to_string(),
            log_tail: log_tail(&self.log, 20),
        })
    }

    fn signal_group(&self, signal: i32) {
        crate::clients::external::signal_group(self.pgid, signal);
    }

    /// Stops the whole process group: TERM (so wrappers clean up), KILL after 3 s.
    pub async fn stop(mut self) {
        self.signal_group(libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Helpers the leader started may outlive it by a moment.
        self.signal_group(libc::SIGKILL);
        self.stopped = true;
    }
}

/// How long a reference dropped without [`Running::stop`] has between TERM and KILL.
const DROP_GRACE: Duration = Duration::from_secs(3);

impl Drop for Running {
    /// TERM now, so that a wrapper such as `ci/references/mdns-session` stops its helpers and
    /// removes its folder; KILL from a detached thread after [`DROP_GRACE`] for whatever is left.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let pgid = self.pgid;
        if pgid.is_some() {
            std::thread::spawn(move || {
                std::thread::sleep(DROP_GRACE);
                crate::clients::external::kill_group(pgid);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("reference.sh");
        std::fs::write(&exe, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    }

    #[test]
    fn the_mdns_session_script_is_found_above_the_peers_folder() {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers");
        let script = mdns_session(&peers).unwrap();
        assert!(script.ends_with("ci/references/mdns-session"), "{script:?}");
    }

    #[tokio::test]
    async fn a_crash_before_ready_names_the_signal_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "echo starting up; kill -SEGV $$");
        let log = dir.path().join("ref.log");
        let child = spawn(
            ReferenceKind::ShairportSync,
            &mut Command::new(&exe),
            &log,
            None,
        )
        .unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
        let mut r = Running::new(ReferenceKind::ShairportSync, addr, child, log);
        let err = r
            .wait_listening(Duration::from_secs(10))
            .await
            .expect_err("it crashed");
        let text = format!("{err:#}");
        assert!(text.contains("exited before it was ready"), "{text}");
        assert!(text.contains("SIGSEGV"), "{text}");
        assert!(text.contains("starting up"), "{text}");
    }

    #[test]
    fn a_missing_or_unexecutable_program_names_install_peers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let err = program_in("uxplay", None, dir.path().as_os_str()).unwrap_err();
        assert!(
            format!("{err:#}").contains("run ci/install-peers"),
            "{err:#}"
        );
        let exe = dir.path().join("uxplay");
        std::fs::write(&exe, "").unwrap();
        assert!(program_in("uxplay", None, dir.path().as_os_str()).is_err());
        assert!(program_in("uxplay", Some(exe.clone().into()), OsStr::new("")).is_err());
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            program_in("uxplay", None, dir.path().as_os_str()).unwrap(),
            exe
        );
        assert_eq!(
            program_in("uxplay", Some(exe.clone().into()), OsStr::new("")).unwrap(),
            exe
        );
    }

    #[tokio::test]
    async fn a_reference_may_not_dump_core() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(dir.path(), "ulimit -c; ulimit -H -c");
        let log = dir.path().join("ref.log");
        let mut child = spawn(ReferenceKind::Kodi, &mut Command::new(&exe), &log, None).unwrap();
        assert!(child.wait().await.unwrap().success());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "0\n0\n");
    }

    #[tokio::test]
    async fn a_dropped_reference_gets_term_to_clean_up_then_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (marker, trapped) = (dir.path().join("cleaned"), dir.path().join("trapped"));
        let exe = script(
            dir.path(),
            &format!(
                "trap 'touch {}; exit 143' TERM; touch {}; sleep 60 & wait",
                marker.display(),
                trapped.display()
            ),
        );
        let log = dir.path().join("ref.log");
        let child = spawn(ReferenceKind::Uxplay, &mut Command::new(&exe), &log, None).unwrap();
        let pid = child.id().unwrap() as i32;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        // TERM only once the handler is in place, however slowly the shell starts.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !trapped.exists() {
            assert!(Instant::now() < deadline, "the script never set its trap");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(Running::new(
            ReferenceKind::Uxplay,
            addr,
            child,
            log.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !marker.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(marker.exists(), "the TERM handler did not run");

        let exe = script(dir.path(), "trap '' TERM; sleep 60");
        let child = spawn(ReferenceKind::Uxplay, &mut Command::new(&exe), &log, None).unwrap();
        let stubborn = child.id().unwrap() as i32;
        drop(Running::new(ReferenceKind::Uxplay, addr, child, log));
        tokio::time::sleep(DROP_GRACE + Duration::from_millis(500)).await;
        for p in [pid, stubborn] {
            // A killed child of this test process stays a zombie until reaped.
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z"),
                "{p} still runs: {stat}"
            );
        }
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("helper.pid");
        let exe = script(
            dir.path(),
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        );
        let log = dir.path().join("ref.log");
        let child = spawn(ReferenceKind::Uxplay, &mut Command::new(&exe), &log, None).unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        let mut r = Running::new(ReferenceKind::Uxplay, addr, child, log);
        // The shell creates the file before `echo` fills it: wait for a whole pid.
        let deadline = Instant::now() + Duration::from_secs(5);
        let helper: i32 = loop {
            let written = std::fs::read_to_string(&pidfile).unwrap_or_default();
            if let Ok(pid) = written.trim().parse() {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "the helper wrote no pid: {written:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(r.exited().is_none());
        r.stop().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(helper, 0) } == 0;
        let zombie = std::fs::read_to_string(format!("/proc/{helper}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true);
        assert!(!alive || zombie, "the helper {helper} outlived stop()");
    }
}
