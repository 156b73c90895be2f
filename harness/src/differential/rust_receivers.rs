//! The Rust RAOP receivers `openairplay1` 0.3.0 and `shairplay` 0.10.0, run as one small binary
//! of ours (`ci/references/rust-receivers`, built by `ci/install-peers` into
//! `target/peers/references/`). It binds 127.0.0.1 on a free port, advertises nothing, signs
//! Apple-Challenge with the well-known AirPort Express key and the MAC it is given, and prints
//! `listening 127.0.0.1:PORT` when ready (docs/peers.md, "Rust RAOP receivers").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::reference::{Identity, Running};
use super::{Accepted, ReferenceKind};

/// Differences accepted against both Rust receivers (docs/differences.md): the headers they
/// leave out or word differently from the AirPort Express the fake is.
pub const RUST_RECEIVERS_ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "*",
        what: "header date",
        why: "the reference sends no Date; the fake does, as an AirPort Express (docs/protocols/raop.md)",
    },
    Accepted {
        exchange: "*",
        what: "header session",
        why: "the reference sends Session on SETUP only; the fake answers every request with one",
    },
    Accepted {
        exchange: "*",
        what: "header content-length",
        why: "the reference omits Content-Length: 0 on empty answers (allowed, RFC 2326 §12.14)",
    },
    Accepted {
        exchange: "*",
        what: "header server",
        why: "the reference names itself AirTunes/105.1; the fake answers as its firmware (AirTunes/220.68)",
    },
    Accepted {
        exchange: "OPTIONS",
        what: "header public",
        why: "the fake also lists POST and GET (/info, /feedback, /auth-setup), which the reference lacks",
    },
    Accepted {
        exchange: "TEARDOWN",
        what: "header connection",
        why: "the fake closes after TEARDOWN and says so; the reference keeps the connection open",
    },
    Accepted {
        exchange: "GET /info",
        what: "header content-type",
        why: "the reference has no GET /info, so no plist",
    },
    Accepted {
        exchange: "GET /info",
        what: "body",
        why: "the reference has no GET /info, so no plist",
    },
];

/// Differences accepted against openairplay1 besides [`RUST_RECEIVERS_ACCEPTED`]
/// (docs/differences.md, "openairplay1").
pub const OPENAIRPLAY1_ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "SETUP",
        what: "header transport",
        why: "the reference echoes the client's interleaved=0-1 in its UDP Transport",
    },
    Accepted {
        exchange: "GET /info",
        what: "status",
        why: "the reference has no GET /info (AirPlay 1 receivers need not; pyatv goes on without it)",
    },
    Accepted {
        exchange: "POST /feedback",
        what: "status",
        why: "the reference has no POST /feedback (pyatv ignores the status)",
    },
    Accepted {
        exchange: "*",
        what: "header audio-jack-status",
        why: "the reference sends Audio-Jack-Status on RECORD and SET_PARAMETER; the fake on the other answers",
    },
    Accepted {
        exchange: "SET_PARAMETER",
        what: "missing exchange",
        why: "pyatv sends its progress and volume updates as timing allows: their number varies between runs",
    },
];

/// Differences accepted against shairplay besides [`RUST_RECEIVERS_ACCEPTED`]
/// (docs/differences.md, "shairplay").
pub const SHAIRPLAY_ACCEPTED: &[Accepted] = &[
    Accepted {
        exchange: "*",
        what: "header apple-jack-status",
        why: "the reference names the jack header Apple-Jack-Status, on every answer",
    },
    Accepted {
        exchange: "*",
        what: "header audio-jack-status",
        why: "the reference names the jack header Apple-Jack-Status, on every answer",
    },
    Accepted {
        exchange: "SETUP",
        what: "header transport",
        why: "the reference adds an `events` parameter to its Transport",
    },
    Accepted {
        exchange: "SETUP",
        what: "header session",
        why: "the reference answers Session: DEADBEEF, which pyatv cannot parse (it expects a decimal number): pyatv fails against the reference, not the fake",
    },
    Accepted {
        exchange: "client pyatv",
        what: "exit",
        why: "pyatv fails against the reference on its Session: DEADBEEF",
    },
    Accepted {
        exchange: "GET /info",
        what: "status",
        why: "the reference has no GET /info",
    },
    Accepted {
        exchange: "SET_PARAMETER",
        what: "missing exchange",
        why: "pyatv stops after the reference's SETUP (Session: DEADBEEF)",
    },
    Accepted {
        exchange: "POST /feedback",
        what: "missing exchange",
        why: "pyatv stops after the reference's SETUP (Session: DEADBEEF)",
    },
    Accepted {
        exchange: "RECORD",
        what: "missing exchange",
        why: "pyatv stops after the reference's SETUP (Session: DEADBEEF)",
    },
    Accepted {
        exchange: "FLUSH",
        what: "missing exchange",
        why: "pyatv stops after the reference's SETUP (Session: DEADBEEF)",
    },
    Accepted {
        exchange: "TEARDOWN",
        what: "missing exchange",
        why: "pyatv stops after the reference's SETUP (Session: DEADBEEF)",
    },
    Accepted {
        exchange: "RECORD",
        what: "header audio-latency",
        why: "the reference reports Audio-Latency: 0; the fake 11025 samples (docs/protocols/raop.md)",
    },
];

/// The reference binary under the peers folder.
pub fn binary(peers: &Path) -> PathBuf {
    peers.join("references/airtwin-references")
}

/// Starts `kind` with the fake's name and MAC; its stderr goes to `log`.
pub async fn start(
    kind: ReferenceKind,
    peers: &Path,
    identity: &Identity,
    log: PathBuf,
) -> Result<Running> {
    let exe = binary(peers);
    if !exe.exists() {
        bail!(
            "reference {} is not installed ({} is missing): run ci/install-peers",
            kind.name(),
            exe.display()
        );
    }
    let mut cmd = Command::new(&exe);
    cmd.args([kind.name(), &identity.name, &identity.mac]);
    let mut child = super::reference::spawn(kind, &mut cmd, &log, Some(Stdio::piped()))?;
    let stdout = child.stdout.take().context("reference stdout")?;
    // Its address is known from its readiness line; until then a failure drops it (TERM, KILL).
    let unknown = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut running = Running::new(kind, unknown, child, log);
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("reference not ready within 20 s")??
        .with_context(|| format!("reference {} exited before it was ready", kind.name()))?;
    running.addr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("unexpected readiness line {line:?}"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            name: "ref".into(),
            mac: "00:11:24:00:44:91".into(),
        }
    }

    #[tokio::test]
    async fn a_missing_reference_names_install_peers() {
        let peers = std::env::temp_dir().join("airtwin-no-peers-here");
        let err = start(
            ReferenceKind::Shairplay,
            &peers,
            &identity(),
            std::env::temp_dir().join("airtwin-ref-test.log"),
        )
        .await
        .err()
        .expect("no binary, no reference");
        let text = format!("{err:#}");
        assert!(text.contains("ci/install-peers"), "{text}");
        assert!(text.contains("shairplay"), "{text}");
    }

    #[tokio::test]
    async fn a_reference_that_exits_before_ready_is_reported_as_exited() {
        let peers = std::env::temp_dir().join(format!("airtwin-fake-peers-{}", std::process::id()));
        std::fs::create_dir_all(peers.join("references")).unwrap();
        let exe = binary(&peers);
        std::fs::write(&exe, "#!/bin/sh\necho boom >&2\nexit 3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = start(
            ReferenceKind::Openairplay1,
            &peers,
            &identity(),
            peers.join("ref.log"),
        )
        .await
        .err()
        .expect("it exited");
        assert!(
            format!("{err:#}").contains("exited before it was ready"),
            "{err:#}"
        );
        let _ = std::fs::remove_dir_all(&peers);
    }
}
