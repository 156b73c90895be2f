//! Every `sh` block of README.md runs, so the README cannot drift from the code.
//!
//! Each block runs with `bash -e` from the project root, `airtwin` on the PATH (the binary built
//! next to this test), and `/tmp/` replaced by a scratch folder of its own, within a time limit;
//! background jobs it leaves are killed. The one block not run here is the set-up block (`ci/conformance`,
//! `ci/install-peers && cargo test --workspace`): CI runs exactly those commands, and running
//! `cargo test` from inside a test would recurse.

use std::process::Command;
use std::time::{Duration, Instant};

use airtwin_conformance::{airtwin, require_peers, root, scratch};

/// The fenced blocks of `text` whose info string is `sh`.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    assert!(current.is_none(), "README.md has an unclosed ```sh block");
    blocks
}

#[test]
fn every_sh_block_of_the_readme_runs() {
    require_peers();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    let setup: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("ci/install-peers && cargo test --workspace"))
        .collect();
    assert_eq!(setup.len(), 1, "exactly one set-up block");
    assert!(setup[0].contains("ci/conformance"));
    assert!(blocks.len() >= 6, "only {} sh blocks found", blocks.len());
    let bin_dir = airtwin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if std::ptr::eq(block, setup[0]) {
            continue;
        }
        let dir = scratch(&format!("readme-{i}"));
        let script = format!(
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}",
            block.replace("/tmp/", &format!("{}/", dir.display()))
        );
        let started = Instant::now();
        let out = Command::new("timeout")
            .args([
                "-k", "5", "180", "bash", "-e", "-o", "pipefail", "-c", &script,
            ])
            .current_dir(root())
            .env("PATH", &path)
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "README block {i} failed ({:?} after {:?}):\n{block}\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                started.elapsed(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        assert!(started.elapsed() < Duration::from_secs(200));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
