//! The Python wheel and its pytest plugin, as a Python user gets them: `ci/python-wheel` builds the
//! wheel from this checkout, installs it from the built file, and runs python/tests (pyatv, async,
//! against devices the plugin's fixtures serve). Any failing pytest test fails this one.

use std::process::Command;

use airtwin_conformance::{require_peers, root};

#[test]
fn the_wheel_installs_and_its_pytest_suite_passes() {
    require_peers();
    let out = Command::new(root().join("ci/python-wheel"))
        .current_dir(root())
        .output()
        .expect("ci/python-wheel runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ci/python-wheel failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("python-wheel: installed airtwin-"),
        "no wheel was installed:\n{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("failed") && !summary.contains("error"),
        "pytest summary: {summary}\n{stdout}"
    );
}
