//! Every `sh` block of README.md runs, so the README cannot drift from the code.
//!
//! Each block runs with `bash -e` from the project root, `airtwin` on the PATH (the binary built
//! next to this test), and `/tmp/` replaced by a scratch folder of its own, within a time limit;
//! background jobs it leaves are killed. The set-up block's first command, `ci/conformance`, runs
//! in a test of its own (the whole built-in suite, as a newcomer runs it); its second,
//! `ci/install-peers && cargo test --workspace`, is what CI runs, and running `cargo test` from
//! inside a test would recurse.

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

/// The README's first set-up command: installs peers, builds, runs every built-in scenario against
/// the real clients, and writes the JUnit report. It uses the debug build this test suite already
/// made (`AIRTWIN_PROFILE=dev`), so the dependency tree is compiled once, not again in release.
#[test]
fn readme_conformance_command_passes_every_builtin_scenario() {
    require_peers();
    let junit = root().join("target/airtwin/junit.xml");
    let _ = std::fs::remove_file(&junit);
    let out = Command::new("timeout")
        .args(["-k", "10", "1500", "ci/conformance"])
        .current_dir(root())
        .env("AIRTWIN_PROFILE", "dev")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let scenarios = count_scenarios(&root().join("scenarios"));
    let passes = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(
        out.status.success() && passes == scenarios,
        "{passes} of {scenarios} scenarios passed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase").count(), scenarios, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

fn count_scenarios(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                count_scenarios(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "yaml"))
            }
        })
        .sum()
}
