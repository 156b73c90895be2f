//! Conformance of the `airtwin` command itself, as a real process over real sockets on
//! 127.0.0.1: validation errors, reports of failing and interrupted runs, timeouts, seeds, serve,
//! logs. The built-in suite with the real third-party clients (pyatv, PulseAudio) runs through
//! the README's `ci/conformance` command in `readme.rs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airtwin_conformance::{airtwin, root, run, scratch, text, wait_for_json};

#[test]
fn failing_scenario_names_expected_and_actual_and_writes_reports() {
    let dir = scratch("failing");
    let junit = dir.join("junit.xml");
    let out = run(&[
        "run",
        "tests/fixtures/failing-expectation.yaml",
        "--junit",
        junit.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL  failing-expectation"))
        .expect(&stdout);
    assert!(
        line.contains("client sender: expected exit 3, got exit 0"),
        "{line}"
    );
    assert!(line.contains("(seed 1)"), "{line}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure") && xml.contains("at least 999999 frames"),
        "{xml}"
    );
    let transcript =
        std::fs::read_to_string(dir.join("failing-expectation/transcript.txt")).unwrap();
    assert!(
        transcript.contains("FAILED expect[0] audio at kitchen"),
        "{transcript}"
    );
    assert!(transcript.contains("→ ANNOUNCE"), "{transcript}");
    assert!(dir
        .join("failing-expectation/kitchen-session0.wav")
        .exists());
}

#[test]
fn validate_points_at_line_column_and_field_path() {
    let out = run(&["validate", "tests/fixtures/bad-kind.yaml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(
            "tests/fixtures/bad-kind.yaml:4:11: devices[0].kind: unknown variant `airport-expres`, expected one of `airport-express`"
        ),
        "{stderr}"
    );
    let (_, stderr) = text(&run(&["validate", "tests/fixtures/bad-fault.yaml"]));
    assert!(stderr.contains("bad-fault.yaml:8:"), "{stderr}");
    assert!(stderr.contains("faults[0].action"), "{stderr}");
    for action in airtwin_simulators::fault::Action::NAMES {
        assert!(
            stderr.contains(&format!("`{action}`")),
            "{action} not listed: {stderr}"
        );
    }
    let (_, stderr) = text(&run(&["validate", "tests/fixtures/unknown-field.yaml"]));
    assert!(stderr.contains("unknown-field.yaml:6:5: devices[0].colour: unknown field `colour`, expected one of `kind`"), "{stderr}");
    let out = run(&["validate", "scenarios"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn schema_and_list_describe_the_format_and_the_scenarios() {
    let out = run(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = &schema["properties"];
    for key in [
        "name",
        "description",
        "seed",
        "devices",
        "clients",
        "faults",
        "expect",
    ] {
        assert!(props.get(key).is_some(), "schema lacks {key}");
    }
    let (stdout, _) = text(&run(&["list", "scenarios"]));
    for name in [
        "apx-own-sender-happy-path",
        "apx-pyatv-stream",
        "apx-fault-wrong-signing-key",
    ] {
        assert!(stdout.contains(name), "{name} not listed:\n{stdout}");
    }
}

#[test]
fn scenario_faults_reach_the_remote_a_pair_client_starts() {
    let dir = scratch("remote-scenario-fault");
    let out = run(&[
        "run",
        "tests/fixtures/remote-scenario-fault.yaml",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("PASS  remote-scenario-fault"), "{stdout}");
}

#[test]
fn client_timeout_kills_the_process_group() {
    let out = run(&["run", "tests/fixtures/slow-client.yaml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("PASS  slow-client"), "{stdout}");
}

#[test]
fn same_seed_loses_the_same_packets() {
    let missing = |seed: &str, name: &str| {
        let dir = scratch(name);
        let out = run(&[
            "run",
            "scenarios/airport-express/fault-lost-rtp.yaml",
            "--seed",
            seed,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
        let t = std::fs::read_to_string(dir.join("apx-fault-lost-rtp/transcript.txt")).unwrap();
        t.lines()
            .find(|l| l.starts_with("== audio"))
            .unwrap()
            .to_string()
    };
    let a = missing("5", "seed-a");
    assert_eq!(a, missing("5", "seed-b"), "same seed, different losses");
    assert_ne!(
        a,
        missing("6", "seed-c"),
        "different seeds lost the same packets"
    );
}

#[test]
fn serve_writes_a_ready_file_serves_a_sender_and_stops_on_sigterm() {
    let dir = scratch("serve");
    let ready = dir.join("ready.json");
    let mut child = Command::new(airtwin())
        .args(["serve", "--device", "airport-express=den", "--ready-file"])
        .arg(&ready)
        .arg("--out")
        .arg(dir.join("out"))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let json = wait_for_json(&ready, Duration::from_secs(20));
    let dev = &json["devices"][0];
    assert_eq!(dev["name"], "den");
    assert_eq!(dev["kind"], "airport-express");
    assert_eq!(dev["address"], "127.0.0.1");
    let port = dev["ports"]["raop"].as_u64().expect("raop port");
    let out = run(&[
        "client",
        "raop",
        "--to",
        &format!("127.0.0.1:{port}"),
        "scenarios/media/tone-1s.wav",
    ]);
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok OPTIONS: Apple-Response verified"),
        "{stdout}"
    );
    unsafe { libc_kill(child.id() as i32, 15) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let transcript = std::fs::read_to_string(dir.join("out/transcript.txt")).unwrap();
    assert!(transcript.contains("→ RECORD"), "{transcript}");
    assert!(!ready.exists(), "ready file left behind");
}

#[test]
fn without_out_each_scenario_has_an_out_folder_of_its_own() {
    let o = run(&[
        "run",
        "tests/fixtures/own-out-a.yaml",
        "tests/fixtures/own-out-b.yaml",
        "-j",
        "2",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches("PASS").count(), 2, "{stdout}");
}

#[test]
fn interrupted_run_still_writes_reports() {
    let dir = scratch("interrupt");
    let junit = dir.join("junit.xml");
    let mut child = Command::new(airtwin())
        .args(["run", "tests/fixtures/interruptible.yaml", "--junit"])
        .arg(&junit)
        .arg("--out")
        .arg(&dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The client prints "waiting" into its captured output; wait until the device listens.
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc_kill(child.id() as i32, 2) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "run ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("interrupted"), "{xml}");
    let transcript = std::fs::read_to_string(dir.join("interruptible/transcript.txt")).unwrap();
    assert!(
        transcript.contains("waiting") && transcript.contains("interrupted"),
        "{transcript}"
    );
}

#[test]
fn json_logs_carry_a_span_per_connection_with_device_and_peer() {
    let out = Command::new(airtwin())
        .args([
            "--log-format",
            "json",
            "run",
            "scenarios/airport-express/own-sender-happy-path.yaml",
        ])
        .env("RUST_LOG", "airtwin_simulators=debug")
        .current_dir(root())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let conn_line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "request")
        .unwrap_or_else(|| panic!("no JSON request log line:\n{stderr}"));
    assert_eq!(conn_line["span"]["device"], "kitchen", "{conn_line}");
    assert!(
        conn_line["span"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{conn_line}"
    );
}

#[test]
fn readme_commands_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("ci/conformance"),
        "README lacks the conformance command"
    );
    assert!(
        readme.contains("ci/install-peers && cargo test --workspace"),
        "README lacks the test command"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.contains("ci/install-peers && cargo test --workspace"),
        ".ci/run must call the README's test command"
    );
    for script in [
        "ci/conformance",
        "ci/install-peers",
        "ci/netns",
        "ci/pulse-raop-send",
    ] {
        let p = root().join(script);
        assert!(p.exists(), "{script} missing");
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
