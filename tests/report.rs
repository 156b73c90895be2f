//! The reports of `airtwin run` as a user consumes them: CI shards (`--partition`) and their
//! merged JUnit file, the HTML report rendered in headless Chromium, and the pcapng read back by
//! tshark.

use std::path::Path;

use airtwin_conformance::{run, scratch, text};

/// A scenario called `name`: airtwin's own AirPlay client reads `/info` from an Apple TV (no
/// third-party peer). With `fail`, its last expectation cannot hold.
fn probe(dir: &Path, name: &str, fail: bool) -> std::path::PathBuf {
    let requests = if fail { 2 } else { 1 };
    let yaml = format!(
        "name: {name}
description: probe of the report tests
seed: 5
devices:
  - kind: apple-tv
    name: tv
clients:
  - name: client
    run:
      airplay: {{to: tv, qualifier: false}}
    timeout: 20
expect:
  - client: {{name: client, exit: 0}}
  - state: {{device: tv, values: {{info_requests: {requests}}}}}
"
    );
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    file
}

fn testcase_names(xml: &str) -> Vec<String> {
    xml.split("<testcase ")
        .skip(1)
        .map(|c| {
            let name = c.split("name=\"").nth(1).expect("testcase has a name");
            name[..name.find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn partitions_run_every_scenario_once_and_their_junit_merges() {
    let dir = scratch("partition");
    let suite = dir.join("suite");
    std::fs::create_dir_all(&suite).unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("shard-probe-{i}")).collect();
    for n in &names {
        probe(&suite, n, false);
    }
    let suite_arg = suite.to_string_lossy().into_owned();
    let mut shard_files = Vec::new();
    let mut seen = Vec::new();
    for k in 1..=3 {
        let junit = dir.join(format!("junit-{k}.xml"));
        let o = run(&[
            "run",
            &suite_arg,
            "-j",
            "2",
            "--partition",
            &format!("{k}/3"),
            "--junit",
            &junit.to_string_lossy(),
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "shard {k}:\n{out}\n{err}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        let shard = testcase_names(&xml);
        for n in &shard {
            assert!(
                out.contains(&format!("PASS  {n}")),
                "{n} not run by shard {k}:\n{out}"
            );
        }
        seen.extend(shard);
        shard_files.push(junit);
    }
    seen.sort();
    assert_eq!(seen, names, "the shards together run each scenario once");

    let merged = dir.join("merged.xml");
    let mut args = vec!["junit".to_string(), "merge".into()];
    args.push(merged.to_string_lossy().into_owned());
    args.extend(shard_files.iter().map(|f| f.to_string_lossy().into_owned()));
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{:?}", text(&o));
    let xml = std::fs::read_to_string(&merged).unwrap();
    let mut all = testcase_names(&xml);
    all.sort();
    assert_eq!(all, names);
    assert!(
        xml.contains("<testsuites name=\"airtwin\" tests=\"5\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite ").count(), 1, "{xml}");

    // Alone in a run, a scenario goes to the same shard as among the others: the assignment is
    // the name's, not the order's or the folder's.
    let lone = probe(&dir, "shard-probe-0", false);
    let owner = (1..=3)
        .filter(|k| {
            let o = run(&[
                "run",
                &lone.to_string_lossy(),
                "--partition",
                &format!("{k}/3"),
            ]);
            assert!(o.status.success(), "{:?}", text(&o));
            text(&o).0.contains("PASS  shard-probe-0")
        })
        .collect::<Vec<_>>();
    assert_eq!(owner.len(), 1, "{owner:?}");
    let first = std::fs::read_to_string(&shard_files[owner[0] - 1]).unwrap();
    assert!(first.contains("name=\"shard-probe-0\""), "{first}");
}

/// A peer binary on the PATH, or a failure naming the script that installs it.
fn require_tool(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is missing: run ci/install-peers (docs/peers.md)"))
}

/// The Chromium-family browser that renders the HTML report: the first of `chromium`,
/// `google-chrome-stable`, `google-chrome`, `chromium-browser` on the PATH that answers
/// `--version` (Ubuntu's `chromium-browser` is a transitional script that only points at the snap
/// and fails; GitHub's Ubuntu runners preinstall Google Chrome). `ci/install-peers` tries the same
/// names in the same order and says which one it found. None: a failure naming that script.
fn chromium_family_browser() -> std::path::PathBuf {
    const NAMES: [&str; 4] = [
        "chromium",
        "google-chrome-stable",
        "google-chrome",
        "chromium-browser",
    ];
    let paths: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    NAMES
        .iter()
        .flat_map(|name| paths.iter().map(move |d| d.join(name)))
        .filter(|p| p.is_file())
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no Chromium-family browser ({}) answers `--version`: run ci/install-peers (docs/peers.md)",
                NAMES.join(", ")
            )
        })
}

/// The deliberately failing scenario of the HTML and pcap tests: a fault strips `pk` from the
/// Apple TV's `/info` (so the client fails, as expected), and the last expectation asks for two
/// `/info` requests where one is made.
fn failing_probe(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("report-probe.yaml");
    std::fs::write(
        &file,
        "name: report-probe
description: a run that fails on purpose, for the report tests
seed: 5
devices:
  - kind: apple-tv
    name: tv
clients:
  - name: client
    run:
      airplay: {to: tv, qualifier: false}
    timeout: 20
faults:
  - when: {method: GET, path: /info}
    action:
      edit_plist: {remove: [pk]}
expect:
  - faults_applied: [0]
  - client: {name: client, exit: 1}
  - state: {device: tv, values: {info_requests: 2}}
",
    )
    .unwrap();
    file
}

/// Rows of a PNG (8-bit RGB or RGBA, not interlaced) that are not one flat colour.
fn png_rows_with_content(png: &[u8]) -> (u32, u32, usize) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut at = 8;
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!((data[8], data[12]), (8, 0), "8-bit, not interlaced");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    let stride = 1 + width as usize * channels;
    assert_eq!(raw.len(), stride * height as usize, "IDAT size");
    let busy = raw
        .chunks(stride)
        .filter(|row| {
            let (filter, px) = (row[0], &row[1..]);
            if filter == 0 {
                px.chunks(channels).any(|p| p != &px[..channels])
            } else {
                // Sub, Up, Average, Paeth: a flat row continuing a flat row is all zeros.
                px.iter().skip(channels).any(|&b| b != 0)
            }
        })
        .count();
    (width, height, busy)
}

/// Script added to a copy of the page: after layout, it writes what it measured into the DOM so
/// that `--dump-dom` shows it: each request arrow's ends against the centres of its lanes.
const LAYOUT_PROBE: &str = r#"<script>
addEventListener('load', () => {
  const centre = e => { const r = e.getBoundingClientRect(); return (r.left + r.right) / 2; };
  const out = [];
  document.querySelectorAll('.ladder').forEach(ladder => {
   const lanes = {};
   ladder.querySelectorAll('.lane.head').forEach(l => lanes[l.dataset.lane] = centre(l));
   ladder.querySelectorAll('.exchange.request').forEach(x => {
    const r = x.querySelector('summary').getBoundingClientRect();
    const device = lanes[x.dataset.device], client = lanes['client 127.0.0.1'];
    out.push(`${Math.abs(r.left - client) < 3 && Math.abs(r.right - device) < 3 ? 'aligned' : 'misaligned'} ${r.left.toFixed(0)}-${r.right.toFixed(0)} lanes ${client}-${device}`);
   });
  });
  const failed = document.querySelector('.failed-expectation');
  const bg = failed ? getComputedStyle(failed).backgroundColor : 'none';
  const p = document.createElement('pre');
  p.id = 'layout-check';
  p.textContent = out.join('\n') + '\nfailed-background ' + bg;
  document.body.appendChild(p);
});
</script>"#;

#[test]
fn html_report_of_a_failing_run_renders_in_headless_chromium() {
    let chromium = chromium_family_browser();
    let dir = scratch("html");
    let scenario = failing_probe(&dir);
    // A second scenario whose client is killed at its timeout.
    let slow = dir.join("slow.yaml");
    std::fs::write(
        &slow,
        "name: report-slow-client
description: a client that outlives its timeout
seed: 1
devices:
  - kind: itunes
    name: lib
clients:
  - name: sleeper
    run:
      command: [sleep, \"30\"]
    timeout: 1
expect:
  - client: {name: sleeper, exit: 0}
",
    )
    .unwrap();
    let page = dir.join("report.html");
    let o = run(&[
        "run",
        &scenario.to_string_lossy(),
        &slow.to_string_lossy(),
        "--html",
        &page.to_string_lossy(),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "the run fails:\n{out}\n{err}");
    let html = std::fs::read_to_string(&page).expect("the page is written when the run fails");
    // Nothing is fetched: no linked style sheet, script, image, frame or CSS import.
    for remote in ["<link", " src=", "url(", "@import", "<iframe"] {
        assert!(!html.contains(remote), "the page fetches through {remote}");
    }

    let probed = dir.join("probed.html");
    std::fs::write(
        &probed,
        html.replace("</body>", &format!("{LAYOUT_PROBE}</body>")),
    )
    .unwrap();
    let chrome = |extra: &[&str], file: &Path| {
        let o = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(extra)
            .arg(format!("file://{}", file.display()))
            .output()
            .expect("the browser runs");
        assert!(o.status.success(), "{}: {:?}", chromium.display(), text(&o));
        o
    };

    let dom = String::from_utf8(chrome(&["--dump-dom"], &probed).stdout).unwrap();
    let failed = dom
        .split("<li class=\"failed-expectation\" data-expect=\"2\">")
        .nth(1)
        .expect("expectation 2 is highlighted as failed");
    assert!(failed.starts_with("<code>{\"state\":"), "{failed}");
    assert!(
        dom.contains("<li class=\"held\" data-expect=\"0\">"),
        "{dom}"
    );
    assert!(dom.contains("data-lane=\"client 127.0.0.1\""), "{dom}");
    assert!(dom.contains("data-lane=\"tv\""), "{dom}");
    assert!(
        dom.contains("data-method=\"GET\" data-path=\"/info\""),
        "{dom}"
    );
    assert!(
        dom.contains("class=\"exchange response struck left\" data-status=\"200\""),
        "the response the fault edited is marked: {dom}"
    );
    assert!(dom.contains("faults[0] edit_plist"), "{dom}");
    assert!(
        dom.contains("<tr class=\"fail\" data-scenario=\"report-slow-client\">"),
        "{dom}"
    );
    assert!(
        dom.contains("<details class=\"client timed-out\"><summary>client <b>sleeper</b>: no exit status, killed at timeout"),
        "{dom}"
    );
    // The decoded binary plist of /info is in the response's details.
    assert!(dom.contains("&lt;key&gt;deviceID&lt;/key&gt;"), "{dom}");
    let check = dom
        .split("<pre id=\"layout-check\">")
        .nth(1)
        .expect("the layout probe ran");
    let check = &check[..check.find("</pre>").unwrap()];
    assert!(check.starts_with("aligned "), "{check}");
    assert!(!check.contains("misaligned"), "{check}");
    assert!(
        check.contains("failed-background rgb(253, 226, 224)"),
        "{check}"
    );

    let shot = dir.join("report.png");
    chrome(&[&format!("--screenshot={}", shot.display())], &page);
    let png = std::fs::read(&shot).unwrap();
    let (width, height, busy) = png_rows_with_content(&png);
    assert_eq!((width, height), (1400, 1000));
    assert!(
        busy > 150,
        "only {busy} of {height} rows of the screenshot show anything"
    );
}

/// `tshark -r FILE [-d tcp.port==PORT,PROTO] -Y FILTER -T fields -e F…`, one row per packet.
fn tshark(
    file: &Path,
    decode_as: Option<(u16, &str)>,
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let decode: Vec<String> = decode_as
        .map(|(port, proto)| format!("tcp.port=={port},{proto}"))
        .into_iter()
        .collect();
    tshark_decoding(file, &decode, filter, fields)
}

/// `tshark -r FILE [-d RULE]… -Y FILTER -T fields -e F…`, one row per packet.
fn tshark_decoding(
    file: &Path,
    decode_as: &[String],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut cmd = std::process::Command::new(require_tool("tshark"));
    cmd.arg("-r").arg(file);
    for rule in decode_as {
        cmd.args(["-d", rule]);
    }
    cmd.args(["-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().expect("tshark runs");
    assert!(o.status.success(), "tshark: {:?}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// The port a device listened on for `service`, from the scenario's events.jsonl.
fn listening_port(out: &Path, scenario: &str, service: &str) -> u16 {
    let events = std::fs::read_to_string(out.join(scenario).join("events.jsonl")).unwrap();
    events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"]["type"] == "listening" && e["kind"]["service"] == service)
        .and_then(|e| e["kind"]["port"].as_u64())
        .unwrap_or_else(|| panic!("{scenario}: no {service} port in events.jsonl")) as u16
}

/// The client addresses (`peer`) the device saw, from events.jsonl.
fn peers(out: &Path, scenario: &str) -> Vec<String> {
    let events = std::fs::read_to_string(out.join(scenario).join("events.jsonl")).unwrap();
    let mut peers: Vec<String> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"]["type"] == "connected")
        .filter_map(|e| e["peer"].as_str().map(str::to_string))
        .collect();
    peers.sort();
    peers
}

/// Runs the scenario files with `--pcap` and `--out` in a scratch folder named `tag`; they must
/// pass. Returns the capture folder and the transcript folder.
fn captured(tag: &str, files: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    captured_with(tag, files, &[])
}

/// [`captured`] with more arguments for `airtwin run`.
fn captured_with(
    tag: &str,
    files: &[&str],
    more: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(tag);
    let (pcap, out) = (dir.join("pcap"), dir.join("out"));
    let mut args = vec!["run".to_string()];
    args.extend(files.iter().map(|f| f.to_string()));
    for (flag, path) in [("--pcap", &pcap), ("--out", &out)] {
        args.push(flag.into());
        args.push(path.to_string_lossy().into_owned());
    }
    args.extend(more.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    assert!(o.status.success(), "{:?}", text(&o));
    (pcap, out)
}

#[test]
fn pcapng_captures_dissect_in_tshark() {
    require_tool("tshark");
    let (pcap, out) = captured(
        "pcap",
        &[
            "scenarios/airport-express/own-sender-happy-path.yaml",
            "scenarios/itunes/own-client-tour.yaml",
            "scenarios/apple-tv-4k/own-client-pair.yaml",
        ],
    );

    // RTSP: airtwin's RAOP sender against an AirPort Express.
    let raop = pcap.join("apx-own-sender-happy-path.pcapng");
    let port = listening_port(&out, "apx-own-sender-happy-path", "raop");
    let syns = tshark(
        &raop,
        None,
        "tcp.flags.syn==1 && tcp.flags.ack==0",
        &["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"],
    );
    let mut seen: Vec<String> = syns.iter().map(|r| format!("{}:{}", r[0], r[1])).collect();
    seen.sort();
    assert_eq!(
        seen,
        peers(&out, "apx-own-sender-happy-path"),
        "the clients' real ports"
    );
    assert!(
        syns.iter()
            .all(|r| r[2] == "127.0.0.1" && r[3] == port.to_string()),
        "{syns:?}"
    );
    let methods: Vec<String> = tshark(
        &raop,
        Some((port, "rtsp")),
        "rtsp.request",
        &["rtsp.method"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    for m in ["OPTIONS", "ANNOUNCE", "SETUP", "RECORD", "TEARDOWN"] {
        assert!(
            methods.iter().any(|x| x == m),
            "{m} not dissected: {methods:?}"
        );
    }
    let statuses = tshark(
        &raop,
        Some((port, "rtsp")),
        "rtsp.response",
        &["rtsp.status"],
    );
    assert!(
        !statuses.is_empty() && statuses.iter().all(|r| r[0] == "200"),
        "{statuses:?}"
    );
    let sdp = tshark(&raop, Some((port, "rtsp")), "sdp", &["sdp.media"]);
    assert!(
        sdp.iter().any(|r| r[0].contains("audio")),
        "ANNOUNCE's SDP: {sdp:?}"
    );

    // HTTP with DAAP bodies: airtwin's DACP client against iTunes.
    let dacp = pcap.join("itunes-own-client-tour.pcapng");
    let port = listening_port(&out, "itunes-own-client-tour", "dacp");
    let uris = tshark(
        &dacp,
        Some((port, "http")),
        "http.request",
        &["http.request.method", "http.request.uri"],
    );
    assert!(
        uris.iter()
            .any(|r| r[0] == "GET" && r[1].starts_with("/login?pairing-guid=")),
        "{uris:?}"
    );
    let daap = tshark(&dacp, Some((port, "http")), "daap", &["http.response.code"]);
    assert!(
        daap.len() >= 3 && daap.iter().all(|r| r[0] == "200"),
        "{daap:?}"
    );

    // HomeKit: after pair-verify the wire is encrypted, so the exchanges after it are only in
    // the decrypted file.
    let clear = pcap.join("apple-tv-4k-own-client-pair.pcapng");
    let decrypted = pcap.join("apple-tv-4k-own-client-pair.decrypted.pcapng");
    let port = listening_port(&out, "apple-tv-4k-own-client-pair", "airplay");
    let info = |f: &Path| {
        tshark(
            f,
            Some((port, "http")),
            "http.request.uri == \"/info\"",
            &["http.request.method"],
        )
    };
    assert!(info(&clear).is_empty(), "encrypted /info in the clear file");
    let gets = info(&decrypted);
    assert!(
        !gets.is_empty() && gets.iter().all(|r| r[0] == "GET"),
        "{gets:?}"
    );
    let setup = tshark(
        &clear,
        Some((port, "http")),
        "http.request",
        &["http.request.uri"],
    );
    assert!(setup.iter().any(|r| r[0] == "/pair-setup"), "{setup:?}");
}

/// The `PORT` of `name=PORT` in the `Transport` header of the device's answer to SETUP, from
/// events.jsonl.
fn setup_port(out: &Path, scenario: &str, name: &str) -> u16 {
    let events = std::fs::read_to_string(out.join(scenario).join("events.jsonl")).unwrap();
    events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"]["type"] == "response")
        .flat_map(|e| e["kind"]["headers"].as_array().cloned().unwrap_or_default())
        .filter(|h| h[0] == "Transport")
        .filter_map(|h| h[1].as_str().map(str::to_string))
        .flat_map(|t| t.split(';').map(str::to_string).collect::<Vec<_>>())
        .find_map(|p| p.strip_prefix(&format!("{name}=")).map(str::to_string))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{scenario}: no {name} in a SETUP answer"))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn pcapng_captures_hold_rtp_interleaved_over_rtsp_and_decrypt_it_in_the_second_file() {
    require_tool("tshark");
    let name = "apx-pulseaudio-tcp-stream";
    let (pcap, out) = captured(
        "pcap-interleaved",
        &["scenarios/airport-express/pulseaudio-tcp-stream.yaml"],
    );
    let port = listening_port(&out, name, "raop");
    let frames = |file: &str| -> Vec<(String, Vec<u8>)> {
        tshark(
            &pcap.join(file),
            Some((port, "rtsp")),
            "rtsp.channel",
            &["rtsp.channel", "rtsp.data"],
        )
        .into_iter()
        .map(|r| (r[0].clone(), hex(&r[1])))
        .collect()
    };
    let (wire, plain) = (
        frames(&format!("{name}.pcapng")),
        frames(&format!("{name}.decrypted.pcapng")),
    );
    // PulseAudio sends 4096-frame packets: one second of audio is at least 10 of them.
    let audio: Vec<_> = wire.iter().filter(|(c, _)| c == "0x00").collect();
    assert!(
        audio.len() >= 10,
        "{} audio frames on channel 0",
        audio.len()
    );
    assert_eq!(wire.len(), plain.len());
    for ((wc, w), (pc, p)) in wire.iter().zip(&plain) {
        assert_eq!(wc, pc);
        assert_eq!(w.len(), p.len());
        if wc != "0x00" {
            continue; // channel 1: control packets, never encrypted
        }
        // RTP version 2, payload type 96 (the marker bit may be set); the header is in clear.
        assert_eq!((w[0], w[1] & 0x7f), (0x80, 96), "{:02x?}", &w[..4]);
        assert_eq!(
            w[..12],
            p[..12],
            "the RTP header reads the same in both files"
        );
        assert_ne!(
            w[12..],
            p[12..],
            "the AES-CBC payload reads decrypted in the second file"
        );
    }
}

#[test]
fn a_scenario_run_inside_the_namespace_has_its_capture_and_its_ladder_from_the_child() {
    require_tool("tshark");
    let name = "netns-own-sender";
    let dir = scratch("pcap-netns-html");
    let html = dir.join("report.html");
    let (pcap, out) = captured_with(
        "pcap-netns",
        &["tests/fixtures/netns-own-sender.yaml"],
        &["--html", &html.to_string_lossy()],
    );
    // The child's events come back to the parent: the report draws the scenario's ladder.
    let page = std::fs::read_to_string(&html).unwrap();
    for method in ["OPTIONS", "ANNOUNCE", "SETUP", "RECORD", "TEARDOWN"] {
        assert!(
            page.contains(&format!("data-method=\"{method}\"")),
            "no {method} arrow in the report"
        );
    }
    let file = pcap.join(format!("{name}.pcapng"));
    let port = listening_port(&out, name, "raop");
    let methods: Vec<String> = tshark(
        &file,
        Some((port, "rtsp")),
        "rtsp.request",
        &["rtsp.method"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(
        methods,
        ["OPTIONS", "ANNOUNCE", "SETUP", "RECORD", "TEARDOWN"],
        "the parent, which saw no packets, must not overwrite the child's capture"
    );
    let server = setup_port(&out, name, "server_port");
    let audio = tshark(
        &file,
        None,
        &format!("udp.dstport == {server}"),
        &["udp.length"],
    );
    assert!(audio.len() >= 100, "{} audio datagrams", audio.len());
}

#[test]
fn pcapng_captures_hold_raop_audio_as_rtp_over_udp() {
    require_tool("tshark");
    let name = "apx-own-sender-happy-path";
    let (pcap, out) = captured(
        "pcap-udp",
        &["scenarios/airport-express/own-sender-happy-path.yaml"],
    );
    let (server, control) = (
        setup_port(&out, name, "server_port"),
        setup_port(&out, name, "control_port"),
    );
    let client_control = {
        let events = std::fs::read_to_string(out.join(name).join("events.jsonl")).unwrap();
        let request = events
            .lines()
            .find(|l| l.contains("\"method\":\"SETUP\""))
            .expect("SETUP in events.jsonl")
            .to_string();
        let t = request.split("control_port=").nth(1).unwrap();
        t[..t.find(|c: char| !c.is_ascii_digit()).unwrap()]
            .parse::<u16>()
            .unwrap()
    };
    let decode = [
        format!("udp.port=={server},rtp"),
        format!("udp.port=={control},rtp"),
    ];
    let fields = [
        "ip.dst",
        "udp.dstport",
        "rtp.p_type",
        "rtp.seq",
        "rtp.timestamp",
        "rtp.ssrc",
        "rtp.payload",
        "frame.comment",
    ];
    let audio = |file: &Path| {
        tshark_decoding(
            file,
            &decode,
            &format!("rtp && udp.dstport == {server}"),
            &fields,
        )
    };
    let wire_file = pcap.join(format!("{name}.pcapng"));
    let wire = audio(&wire_file);
    // A 1 s WAV at 44.1 kHz in 352-frame packets (docs/protocols/raop.md, "RTP streams").
    assert!(wire.len() >= 120, "{} audio packets", wire.len());
    assert!(
        wire.iter()
            .all(|r| r[0] == "127.0.0.1" && r[1] == server.to_string() && r[2] == "96"),
        "{:?}",
        &wire[..3]
    );
    let seqs: Vec<u16> = wire.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "sequence numbers go up by one: {seqs:?}"
    );
    let stamps: Vec<u32> = wire.iter().map(|r| r[4].parse().unwrap()).collect();
    assert!(
        stamps.windows(2).all(|w| w[1] == w[0].wrapping_add(352)),
        "timestamps go up by 352 frames: {stamps:?}"
    );
    assert!(wire.iter().all(|r| r[5] == wire[0][5]), "one SSRC");
    assert!(
        wire[0][7].contains(&format!("-d udp.port=={server},rtp")),
        "decode hint: {:?}",
        wire[0][7]
    );

    // The sync packet to the control port: with the marker bit its byte 1 (0xD4, type 84) is in
    // the range RFC 5761 keeps for RTCP, and tshark does not read it as RTP: read as bytes.
    let sync = tshark_decoding(
        &wire_file,
        &[],
        &format!("udp.dstport == {control}"),
        &["udp.srcport", "udp.payload"],
    );
    assert_eq!(sync.len(), 1, "{sync:?}");
    assert_eq!(sync[0][0], client_control.to_string());
    assert_eq!(hex(&sync[0][1])[1], 0xd4, "{sync:?}");

    // The decrypted file: the same packets, the AES-CBC blocks of each payload decrypted. An ALAC
    // frame starts with the 3-bit element id of a channel pair (1) for stereo.
    let plain = audio(&pcap.join(format!("{name}.decrypted.pcapng")));
    assert_eq!(plain.len(), wire.len());
    for (w, p) in wire.iter().zip(&plain) {
        assert_eq!(w[3..6], p[3..6], "same header");
        let (w, p) = (hex(&w[6]), hex(&p[6]));
        assert_eq!(w.len(), p.len());
        assert_ne!(w[..16], p[..16], "the first block is decrypted");
        let whole = w.len() / 16 * 16;
        assert_eq!(
            w[whole..],
            p[whole..],
            "the trailing partial block is in clear"
        );
        assert_eq!(
            p[0] >> 5,
            1,
            "an ALAC channel-pair element: {:02x?}",
            &p[..4]
        );
    }
}

#[test]
fn pcapng_captures_hold_the_spotify_access_point_stream_and_its_decrypted_frames() {
    require_tool("tshark");
    let name = "spotify-ap-own-client-login";
    let (pcap, out) = captured(
        "pcap-spotify",
        &["scenarios/spotify-ap/own-client-login.yaml"],
    );
    let port = listening_port(&out, name, "spotify-ap");
    let client = peers(&out, name);
    assert_eq!(client.len(), 1, "{client:?}");
    // (from the client, payload) of each segment that carries bytes.
    let segments = |file: &Path| -> Vec<(bool, Vec<u8>)> {
        let rows = tshark(
            file,
            None,
            "tcp.len > 0",
            &["ip.src", "tcp.srcport", "tcp.dstport", "tcp.payload"],
        );
        rows.iter()
            .map(|r| {
                let from_client = format!("{}:{}", r[0], r[1]) == client[0];
                let device_side = if from_client { &r[2] } else { &r[1] };
                assert_eq!(device_side, &port.to_string(), "{r:?}");
                (from_client, hex(&r[3]))
            })
            .collect()
    };
    let syn = tshark(
        &pcap.join(format!("{name}.pcapng")),
        None,
        "tcp.flags.syn==1 && tcp.flags.ack==0",
        &["ip.src", "tcp.srcport", "tcp.dstport"],
    );
    assert_eq!(
        syn,
        [vec![
            "127.0.0.1".to_string(),
            client[0].rsplit(':').next().unwrap().to_string(),
            port.to_string()
        ]]
    );

    // On the wire: ClientHello (the 0x00 0x04 prefix), the AP's response, the client's
    // response (docs/protocols/spotify-ap.md, "Handshake"), then Shannon-encrypted frames.
    let wire = segments(&pcap.join(format!("{name}.pcapng")));
    assert!(wire.len() >= 5, "{} segments", wire.len());
    assert!(
        wire[0].0 && wire[0].1.starts_with(&[0x00, 0x04]),
        "{wire:?}"
    );
    assert!(!wire[1].0 && wire[2].0);
    let length = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
    assert_eq!(length(&wire[1].1), wire[1].1.len(), "APResponseMessage");
    // Then the client's ClientResponsePlaintext and its Login frame, back to back: the device
    // may read them in one segment or two, so they are compared as one run of client bytes.
    let client_run: Vec<u8> = wire[2..]
        .iter()
        .take_while(|(from_client, _)| *from_client)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let crp = length(&client_run);

    // Decrypted: the same hello packets, then each frame as command, length, payload.
    let plain = segments(&pcap.join(format!("{name}.decrypted.pcapng")));
    assert_eq!(
        plain[..2],
        wire[..2],
        "the hello packets are in clear on the wire"
    );
    assert_eq!(
        (plain[2].0, &plain[2].1[..]),
        (true, &client_run[..crp]),
        "ClientResponsePlaintext, in clear on the wire"
    );
    let frames: Vec<(bool, u8, &[u8])> = plain[3..]
        .iter()
        .map(|(c, b)| {
            let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
            assert_eq!(b.len(), 3 + len, "one frame per segment: {b:02x?}");
            (*c, b[0], &b[3..])
        })
        .collect();
    let (login, welcome) = (&frames[0], &frames[1]);
    assert_eq!((login.0, login.1), (true, 0xab), "Login first");
    assert!(
        login.2.windows(5).any(|w| w == b"alice"),
        "Login names alice: {:02x?}",
        login.2
    );
    // On the wire, after ClientResponsePlaintext, the Login is the frame and its 4-byte MAC.
    let login_wire = &client_run[crp..];
    assert_eq!(login_wire.len(), 3 + login.2.len() + 4);
    assert_ne!(login_wire[0], 0xab, "encrypted on the wire");
    assert_eq!((welcome.0, welcome.1), (false, 0xac), "APWelcome answers");
    let ping = frames
        .iter()
        .position(|f| !f.0 && f.1 == 0x04)
        .expect("a Ping");
    assert!(
        frames[ping..].iter().any(|f| f.0 && f.1 == 0x49),
        "the client answers the Ping with a Pong: {frames:02x?}"
    );
}

#[test]
fn pcapng_captures_hold_airplay2_audio_sealed_on_the_wire_and_opened_in_the_decrypted_file() {
    require_tool("tshark");
    airtwin_conformance::require_peers();
    let name = "apple-tv-4k-pyatv-stream-airplay2";
    let (pcap, _) = captured(
        "pcap-airplay2",
        &["scenarios/apple-tv-4k/pyatv-stream-airplay2.yaml"],
    );
    let wire_file = pcap.join(format!("{name}.pcapng"));
    // The realtime audio port (its number is in SETUP's binary plist): where most datagrams go.
    let mut ports: Vec<String> = tshark(&wire_file, None, "udp", &["udp.dstport"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ports.sort();
    let audio_port = ports
        .chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .map(|run| run[0].clone())
        .expect("UDP datagrams in the capture");
    let audio = |file: &Path| {
        tshark_decoding(
            file,
            &[format!("udp.port=={audio_port},rtp")],
            &format!("rtp && udp.dstport == {audio_port}"),
            &["rtp.p_type", "rtp.seq", "rtp.timestamp", "udp.length"],
        )
    };
    let wire = audio(&wire_file);
    let plain = audio(&pcap.join(format!("{name}.decrypted.pcapng")));
    assert!(wire.len() > 100, "{} audio packets", wire.len());
    assert_eq!(plain.len(), wire.len());
    let seqs: Vec<u16> = wire.iter().map(|r| r[1].parse().unwrap()).collect();
    assert!(
        seqs.windows(2)
            .all(|w| (1..100).contains(&w[1].wrapping_sub(w[0]))),
        "sequence numbers increase: {seqs:?}"
    );
    for (w, p) in wire.iter().zip(&plain) {
        assert_eq!((&w[0], &p[0]), (&"96".to_string(), &"96".to_string()));
        assert_eq!(w[1..3], p[1..3], "same sequence number and timestamp");
        // Opened: the 16-byte Poly1305 tag and the 8-byte nonce are gone
        // (docs/protocols/airplay.md, "AirPlay 2 audio").
        let (w, p): (usize, usize) = (w[3].parse().unwrap(), p[3].parse().unwrap());
        assert_eq!(w - p, 24, "{w} on the wire, {p} opened");
    }
}
