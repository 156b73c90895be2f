//! Helpers for the conformance tests: where the project and the `airtwin` binary are, running
//! it as a real process, and checking that third-party peers are installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The checkout's root folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `airtwin` binary cargo built next to this test (same profile).
pub fn airtwin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/conformance-… → target/<profile>/airtwin
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("airtwin");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p airtwin` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A folder under target/ for one test's files, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/airtwin-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `airtwin ARGS…` from the project root and waits for it.
pub fn run(args: &[&str]) -> Output {
    Command::new(airtwin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("airtwin runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fails (never skips) when a third-party peer is missing, naming the script that installs it.
pub fn require_peers() {
    let atvremote = root().join("target/peers/venv/bin/atvremote");
    assert!(
        atvremote.exists(),
        "pyatv is not installed ({} missing): run ci/install-peers",
        atvremote.display()
    );
    for tool in ["pulseaudio", "pacat", "pipewire", "wireplumber", "pw-play"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        assert!(found, "{tool} is not installed: run ci/install-peers");
    }
}

/// Waits until `path` exists and parses as JSON, or panics after `limit`.
pub fn wait_for_json(path: &Path, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            if let Ok(v) = serde_json::from_slice(&bytes) {
                return v;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
