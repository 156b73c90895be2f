//! Verdicts of every expectation kind on synthetic runs: the events a device recorded, the
//! outcomes of the clients, and audio sessions put straight into a device's RAOP state. Each kind
//! has a case that passes and one that fails, and a failure names what was expected and what was
//! seen.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use airtwin_simulators::event::{Event, EventKind};
use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::raop::audio::{
    encode_l16, encrypt_payload, AesParams, AudioFormat, AudioReceiver, Port,
};
use airtwin_simulators::raop::rtp::{self, RtpHeader};
use airtwin_simulators::raop::state::SessionRecord;
use airtwin_simulators::shell::Recorder;
use rstest::rstest;
use tokio::sync::watch;

use super::{audio_match, evaluate};
use crate::clients::ClientOutcome;
use crate::devices::{self, Device, RunContext};
use crate::engine::Failure;
use crate::scenario::{parse_str, Loaded};

/// A scenario with two AirPort Express devices (`kitchen`, `hall`), one client (`sender`), two
/// faults, and the expectations `expect` (YAML list items, one per line).
fn scenario(dir: &Path, expect: &str) -> Loaded {
    let items: String = expect.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "name: verdicts
description: expectations on a synthetic run
seed: 1
devices:
  - {{kind: airport-express, name: kitchen}}
  - {{kind: airport-express, name: hall}}
clients:
  - name: sender
    run:
      command: [\"true\"]
faults:
  - when: {{method: OPTIONS}}
    action: {{omit_header: Apple-Response}}
  - when: {{method: SETUP}}
    action: drop
expect:
{items}"
    );
    let file = dir.join("verdicts.yaml");
    let scenario = parse_str(&text, &file).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Loaded { file, scenario }
}

/// What a run left behind, as `evaluate` reads it.
struct Run {
    events: Vec<Event>,
    sender: ClientOutcome,
}

impl Run {
    fn new(events: Vec<Event>) -> Self {
        Run {
            events,
            sender: exited(0, "ok"),
        }
    }

    /// The failures of `expect` against this run (`devices`: the running devices, if any).
    fn verdict(&self, dir: &Path, expect: &str, devices: &[Device]) -> Vec<Failure> {
        let loaded = scenario(dir, expect);
        let mut result = crate::engine::ScenarioResult::new(&loaded, 1, None);
        result.events = self.events.clone();
        result.clients = vec![("sender".into(), self.sender.clone())];
        evaluate(&loaded, devices, &result)
    }
}

fn exited(code: i32, stdout: &str) -> ClientOutcome {
    ClientOutcome {
        exit: Some(code),
        stdout: stdout.into(),
        duration: Duration::from_millis(300),
        ..Default::default()
    }
}

fn timed_out() -> ClientOutcome {
    ClientOutcome {
        timed_out: true,
        stdout: "waiting".into(),
        duration: Duration::from_secs(5),
        ..Default::default()
    }
}

fn event(device: &str, connection: Option<u64>, kind: EventKind) -> Event {
    Event {
        at: Duration::ZERO,
        device: device.into(),
        connection,
        peer: Some("127.0.0.1:40000".parse::<SocketAddr>().expect("address")),
        kind,
    }
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn request(device: &str, index: u64, method: &str, uri: &str, h: &[(&str, &str)]) -> Event {
    event(
        device,
        Some(0),
        EventKind::Request {
            index,
            method: method.into(),
            uri: uri.into(),
            protocol: "RTSP/1.0".into(),
            headers: headers(h),
            body: Vec::new(),
            content_type: None,
        },
    )
}

fn response(device: &str, index: u64, status: u16, h: &[(&str, &str)]) -> Event {
    event(
        device,
        Some(0),
        EventKind::Response {
            index,
            status,
            reason: "OK".into(),
            headers: headers(h),
            body: Vec::new(),
            content_type: None,
        },
    )
}

fn warning(device: &str, message: &str) -> Event {
    event(
        device,
        Some(0),
        EventKind::Warning {
            message: message.into(),
        },
    )
}

/// At `kitchen`: OPTIONS → 200 with `Apple-Response`; ANNOUNCE with `Apple-Challenge` → 200;
/// GET /info → 200; SETUP, never answered. At `hall`: TEARDOWN → 200 (never what `kitchen`'s
/// expectations look at).
fn session_events() -> Vec<Event> {
    vec![
        request("kitchen", 0, "OPTIONS", "*", &[("CSeq", "1")]),
        response(
            "kitchen",
            0,
            200,
            &[("CSeq", "1"), ("Apple-Response", "u+msU8Cc7KBrVPjI")],
        ),
        request(
            "kitchen",
            1,
            "ANNOUNCE",
            "rtsp://127.0.0.1/1",
            &[("CSeq", "2"), ("Apple-Challenge", "09KF45soMYmvj6dpsUGiIg")],
        ),
        response("kitchen", 1, 200, &[("CSeq", "2")]),
        request("kitchen", 2, "GET", "/info", &[("CSeq", "3")]),
        response("kitchen", 2, 200, &[("CSeq", "3")]),
        request(
            "kitchen",
            3,
            "SETUP",
            "rtsp://127.0.0.1/1",
            &[("CSeq", "4")],
        ),
        request("hall", 0, "TEARDOWN", "rtsp://127.0.0.1/9", &[]),
        response("hall", 0, 200, &[]),
    ]
}

/// Asserts the verdict: `None` passes; `Some((expected, actual))` fails with exactly one failure,
/// of `expect[0]`, whose `expected` and `actual` hold those texts.
fn assert_verdict(failures: &[Failure], want: Option<(&str, &str)>, case: &str) {
    match want {
        None => assert!(failures.is_empty(), "{case}: want a pass, got {failures:?}"),
        Some((expected, actual)) => {
            assert_eq!(
                failures.len(),
                1,
                "{case}: want one failure, got {failures:?}"
            );
            let f = &failures[0];
            assert!(f.what.starts_with("expect[0]"), "{case}: {f:?}");
            assert!(
                f.expected.contains(expected),
                "{case}: expected {:?} should name {expected:?}",
                f.expected
            );
            assert!(
                f.actual.contains(actual),
                "{case}: actual {:?} should name {actual:?}",
                f.actual
            );
        }
    }
}

#[rstest]
// order
#[case::in_order_pass(
    "requests: [{method: OPTIONS}, {method: ANNOUNCE}, {method: SETUP}]",
    None
)]
#[case::in_order_fail(
    "requests: [{method: ANNOUNCE}, {method: OPTIONS}]",
    Some(("OPTIONS *", "OPTIONS * → 200, ANNOUNCE"))
)]
#[case::in_order_skips_others("requests: [{method: OPTIONS}, {method: SETUP}]", None)]
#[case::any_order_pass(
    "order: any_order, requests: [{method: SETUP}, {method: OPTIONS}]",
    None
)]
#[case::any_order_fail("order: any_order, requests: [{method: SETUP}, {method: TEARDOWN}]", Some(("TEARDOWN *", "SETUP")))]
// method and path
#[case::method_pass("requests: [{method: get}]", None)]
#[case::method_fail("requests: [{method: RECORD}]", Some(("RECORD *", "OPTIONS * → 200")))]
#[case::path_pass("requests: [{method: GET, path: /info}]", None)]
#[case::path_fail("requests: [{method: GET, path: /fp-setup}]", Some(("GET /fp-setup", "GET /info → 200")))]
// status and no response
#[case::status_pass("requests: [{method: ANNOUNCE, status: 200}]", None)]
#[case::status_fail("requests: [{method: ANNOUNCE, status: 453}]", Some(("ANNOUNCE * → 453", "answered 200")))]
#[case::status_of_unanswered("requests: [{method: SETUP, status: 200}]", Some(("→ 200", "SETUP /1 not answered")))]
#[case::no_response_pass("requests: [{method: SETUP, no_response: true}]", None)]
#[case::no_response_fail(
    "requests: [{method: OPTIONS, no_response: true}]",
    Some(("→ no response", "response 200"))
)]
// request headers
#[case::req_present_pass(
    "requests: [{method: ANNOUNCE, request_headers: {Apple-Challenge: present}}]",
    None
)]
#[case::req_present_fail(
    "requests: [{method: OPTIONS, request_headers: {Apple-Challenge: present}}]",
    Some(("apple-challenge present", "OPTIONS * request Apple-Challenge absent"))
)]
#[case::req_absent_pass(
    "requests: [{method: OPTIONS, request_headers: {Apple-Challenge: absent}}]",
    None
)]
#[case::req_absent_fail(
    "requests: [{method: ANNOUNCE, request_headers: {Apple-Challenge: absent}}]",
    Some(("apple-challenge absent", "request Apple-Challenge: 09KF45soMYmvj6dpsUGiIg"))
)]
#[case::req_equals_pass(
    "requests: [{method: ANNOUNCE, request_headers: {CSeq: {equals: '2'}}}]",
    None
)]
#[case::req_equals_fail(
    "requests: [{method: ANNOUNCE, request_headers: {CSeq: {equals: '7'}}}]",
    Some(("equals(\"7\")", "request CSeq: 2"))
)]
#[case::req_matches_pass(
    "requests: [{method: ANNOUNCE, request_headers: {Apple-Challenge: {matches: '^09KF'}}}]",
    None
)]
#[case::req_matches_fail(
    "requests: [{method: ANNOUNCE, request_headers: {Apple-Challenge: {matches: '^[0-9]+$'}}}]",
    Some(("matches(\"^[0-9]+$\")", "Apple-Challenge: 09KF45soMYmvj6dpsUGiIg"))
)]
// response headers
#[case::resp_present_pass(
    "requests: [{method: OPTIONS, response_headers: {Apple-Response: present}}]",
    None
)]
#[case::resp_present_fail(
    "requests: [{method: ANNOUNCE, response_headers: {Apple-Response: present}}]",
    Some(("apple-response present", "ANNOUNCE /1 response Apple-Response absent"))
)]
#[case::resp_absent_pass(
    "requests: [{method: ANNOUNCE, response_headers: {Apple-Response: absent}}]",
    None
)]
#[case::resp_absent_fail(
    "requests: [{method: OPTIONS, response_headers: {Apple-Response: absent}}]",
    Some(("apple-response absent", "response Apple-Response: u+msU8Cc7KBrVPjI"))
)]
#[case::resp_equals_pass(
    "requests: [{method: GET, response_headers: {CSeq: {equals: '3'}}}]",
    None
)]
#[case::resp_equals_fail(
    "requests: [{method: GET, response_headers: {CSeq: {equals: '4'}}}]",
    Some(("equals(\"4\")", "GET /info response CSeq: 3"))
)]
#[case::resp_matches_pass(
    "requests: [{method: OPTIONS, response_headers: {Apple-Response: {matches: '^u\\+ms'}}}]",
    None
)]
#[case::resp_matches_fail(
    "requests: [{method: OPTIONS, response_headers: {Apple-Response: {matches: '^AAAA'}}}]",
    Some(("matches(\"^aaaa\")", "response Apple-Response: u+msU8Cc7KBrVPjI"))
)]
fn exchanges(#[case] body: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let expect = format!("- exchanges: {{device: kitchen, {body}}}");
    let failures = Run::new(session_events()).verdict(dir.path(), &expect, &[]);
    assert_verdict(&failures, want, &expect);
}

#[test]
fn exchanges_look_at_their_own_device_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Run::new(session_events());
    let hall = run.verdict(
        dir.path(),
        "- exchanges: {device: hall, requests: [{method: TEARDOWN, status: 200}]}",
        &[],
    );
    assert_verdict(&hall, None, "TEARDOWN at hall");
    let kitchen = run.verdict(
        dir.path(),
        "- exchanges: {device: kitchen, requests: [{method: TEARDOWN}]}",
        &[],
    );
    assert_verdict(
        &kitchen,
        Some(("TEARDOWN", "OPTIONS * → 200")),
        "TEARDOWN at kitchen",
    );
}

#[rstest]
#[case::exit_pass(exited(0, "ok"), "{name: sender, exit: 0}", None)]
#[case::exit_fail(
    exited(1, "Traceback: boom"),
    "{name: sender, exit: 0}",
    Some(("exit 0", "exit 1; output: Traceback: boom"))
)]
#[case::exit_other_than_zero_pass(exited(3, ""), "{name: sender, exit: 3}", None)]
#[case::exit_killed_fail(
    timed_out(),
    "{name: sender}",
    Some(("exit 0", "killed at its timeout after 5.0s"))
)]
#[case::output_pass(
    exited(0, "ok ANNOUNCE: Apple-Response verified"),
    "{name: sender, output: 'Apple-Response verified'}",
    None
)]
#[case::output_fail(
    exited(0, "ok ANNOUNCE\nok SETUP"),
    "{name: sender, output: 'RECORD'}",
    Some(("output matching /RECORD/", "ok ANNOUNCE ⏎ ok SETUP"))
)]
#[case::output_not_pass(exited(0, "ok"), "{name: sender, output_not: Traceback}", None)]
#[case::output_not_fail(
    exited(0, "ok\nTraceback (most recent call last)"),
    "{name: sender, output_not: 'Traceback \\(\\w+'}",
    Some(("output not matching /Traceback \\(\\w+/", "found \"Traceback (most\""))
)]
#[case::timed_out_pass(timed_out(), "{name: sender, timed_out: true}", None)]
#[case::timed_out_fail(
    exited(0, "ok"),
    "{name: sender, timed_out: true}",
    Some(("killed at its timeout", "exit Some(0)"))
)]
#[case::did_not_start(
    ClientOutcome { error: Some("cannot start true: not found".into()), ..Default::default() },
    "{name: sender}",
    Some(("client sender ran", "cannot start true: not found"))
)]
fn client(#[case] outcome: ClientOutcome, #[case] item: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = Run::new(Vec::new());
    run.sender = outcome;
    let expect = format!("- client: {item}");
    let failures = run.verdict(dir.path(), &expect, &[]);
    assert_verdict(&failures, want, &expect);
}

#[test]
fn a_client_without_an_expectation_is_held_to_its_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = Run::new(Vec::new());
    run.sender = exited(2, "usage");
    let failures = run.verdict(dir.path(), "- no_warnings: {device: kitchen}", &[]);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].what, "client sender");
    assert_eq!(failures[0].expected, "exit 0");
    assert_eq!(failures[0].actual, "exit 2; output: usage");
}

#[rstest]
#[case::all_allowed("[OPTIONS, ANNOUNCE, GET /info, SETUP]", None)]
#[case::method_case_is_ignored("[options, announce, get /info, setup]", None)]
#[case::unexpected_method("[OPTIONS, ANNOUNCE, GET]", Some(("only OPTIONS, ANNOUNCE, GET", "SETUP /1")))]
#[case::unexpected_path(
    "[OPTIONS, ANNOUNCE, GET /server-info, SETUP]",
    Some(("only OPTIONS, ANNOUNCE, GET /server-info, SETUP", "GET /info"))
)]
fn no_unexpected_requests(#[case] allowed: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let expect = format!("- no_unexpected_requests: {{device: kitchen, allowed: {allowed}}}");
    let failures = Run::new(session_events()).verdict(dir.path(), &expect, &[]);
    assert_verdict(&failures, want, &expect);
}

/// Two protocol warnings at `kitchen`.
fn warning_events() -> Vec<Event> {
    vec![
        warning("kitchen", "ANNOUNCE /1: 456 rsaaeskey is 12 bytes"),
        warning("kitchen", "SETUP /1: 455 before ANNOUNCE"),
    ]
}

#[rstest]
#[case::no_warnings_pass(Vec::new(), "- no_warnings: {device: kitchen}", None)]
#[case::no_warnings_elsewhere_pass(warning_events(), "- no_warnings: {device: hall}", None)]
#[case::no_warnings_fail(
    warning_events(),
    "- no_warnings: {device: kitchen}",
    Some(("no protocol warnings", "ANNOUNCE /1: 456 rsaaeskey is 12 bytes"))
)]
#[case::warnings_pass(warning_events(), "- warnings: {device: kitchen}", None)]
#[case::warnings_none_fail(
    Vec::new(),
    "- warnings: {device: kitchen}",
    Some(("at least 1 protocol warning(s)", "none"))
)]
#[case::warnings_matches_pass(
    warning_events(),
    "- warnings: {device: kitchen, matches: '^SETUP.*455'}",
    None
)]
#[case::warnings_matches_fail(
    warning_events(),
    "- warnings: {device: kitchen, matches: Apple-Challenge}",
    Some(("at least 1 protocol warning(s) matching /Apple-Challenge/", "0 matching of 2"))
)]
#[case::warnings_min_pass(warning_events(), "- warnings: {device: kitchen, min: 2}", None)]
#[case::warnings_min_fail(
    warning_events(),
    "- warnings: {device: kitchen, matches: '45[56]', min: 3}",
    Some(("at least 3 protocol warning(s) matching /45[56]/", "2 matching of 2"))
)]
fn warnings(#[case] events: Vec<Event>, #[case] expect: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let failures = Run::new(events).verdict(dir.path(), expect, &[]);
    assert_verdict(&failures, want, expect);
}

#[rstest]
#[case::applied_pass(&[0, 0], "- faults_applied: [0]", None)]
#[case::all_applied_pass(&[0, 1], "- faults_applied: [1, 0]", None)]
#[case::not_applied_fail(&[0, 0], "- faults_applied: [0, 1]", Some(("fault 1 applied", "applied: [0]")))]
#[case::none_applied_fail(&[], "- faults_applied: [1]", Some(("fault 1 applied", "applied: []")))]
fn faults_applied(
    #[case] applied: &[usize],
    #[case] expect: &str,
    #[case] want: Option<(&str, &str)>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut events = session_events();
    for &fault in applied {
        events.push(event(
            "kitchen",
            Some(0),
            EventKind::Fault {
                request: Some(0),
                fault,
                action: "omit_header Apple-Response".into(),
            },
        ));
    }
    let failures = Run::new(events).verdict(dir.path(), expect, &[]);
    assert_verdict(&failures, want, expect);
}

/// Frames per packet and packets per session of the synthetic audio.
const FRAMES: usize = 352;
const PACKETS: u16 = 10;

/// Stereo samples of packet `n`: never silent, different in every packet.
fn samples(n: u16) -> Vec<i16> {
    (0..2 * FRAMES)
        .map(|i| (i as i16).wrapping_mul(13).wrapping_add(n as i16 * 101) | 1)
        .collect()
}

/// An L16 session at 44.1 kHz that received packets `seqs` (clear, or AES-encrypted as a sender
/// encrypts: whole blocks, restarted per packet).
fn session(connection: u64, seqs: &[u16], aes: Option<AesParams>) -> SessionRecord {
    let format = AudioFormat::l16(44100, 2, FRAMES as u32);
    let encrypted = aes.is_some();
    let receiver = Arc::new(AudioReceiver::new(format, aes.clone()));
    for &seq in seqs {
        let mut payload = encode_l16(&samples(seq));
        if let Some(aes) = &aes {
            encrypt_payload(aes, &mut payload);
        }
        let header = RtpHeader {
            marker: seq == 0,
            payload_type: rtp::PT_AUDIO,
            seq,
            timestamp: u32::from(seq) * FRAMES as u32,
            ssrc: 7,
        };
        receiver.on_port_datagram(
            Port::Server,
            &rtp::encode(&header, &payload),
            SystemTime::now(),
        );
    }
    SessionRecord {
        number: connection as usize,
        connection,
        peer: "127.0.0.1:40000".parse().expect("address"),
        rtpmap: "L16/44100/2".into(),
        encrypted,
        dacp_id: None,
        active_remote: None,
        user_agent: None,
        receiver,
    }
}

/// Starts the scenario's two devices: `kitchen` holds one clear session of every packet and
/// volume -20 dB, `hall` one encrypted session that lost packet 5.
async fn devices_with_audio(loaded: &Loaded) -> Vec<Device> {
    let (_stop, shutdown) = watch::channel(false);
    let run = RunContext {
        recorder: Recorder::shared(),
        plan: Arc::new(FaultPlan::empty()),
        seed: 1,
        shutdown,
        base_dir: loaded.dir(),
        capture: Default::default(),
        buffers: None,
    };
    let mut out = Vec::new();
    for spec in &loaded.scenario.devices {
        out.push(devices::start(spec, &run).await.expect("device starts"));
    }
    let all: Vec<u16> = (0..PACKETS).collect();
    let lossy: Vec<u16> = (0..PACKETS).filter(|s| *s != 5).collect();
    let aes = AesParams {
        key: [1; 16],
        iv: [2; 16],
    };
    for d in &out {
        let raop = d
            .parts
            .raop
            .as_ref()
            .expect("an AirPort Express receives audio");
        let mut state = raop.state.lock().expect("state");
        if d.name == "kitchen" {
            state.sessions.push(session(0, &all, None));
            state.volume = Some(-20.0);
        } else {
            state.sessions.push(session(0, &lossy, Some(aes.clone())));
        }
    }
    out
}

/// The source audio of `kitchen` as a WAV (`tone.wav`) and a different one (`other.wav`).
fn write_wavs(dir: &Path) {
    let all: Vec<i16> = (0..PACKETS).flat_map(samples).collect();
    audio_match::write_wav(&dir.join("tone.wav"), 2, 44100, &all).expect("tone.wav");
    let mut other = all.clone();
    other[1000] = other[1000].wrapping_add(1);
    audio_match::write_wav(&dir.join("other.wav"), 2, 44100, &other).expect("other.wav");
}

#[rstest]
#[case::min_packets_pass("{device: kitchen, min_packets: 10}", None)]
#[case::min_packets_fail("{device: kitchen, min_packets: 11}", Some(("at least 11 audio packets", "10")))]
#[case::min_frames_pass("{device: kitchen, min_frames: 3520}", None)]
#[case::min_frames_fail("{device: kitchen, min_frames: 3521}", Some(("at least 3521 frames", "3520")))]
#[case::max_missing_pass("{device: kitchen, max_missing: 0}", None)]
#[case::max_missing_fail("{device: hall, max_missing: 0}", Some(("at most 0 missing packets", "1 missing")))]
#[case::min_missing_pass("{device: hall, min_missing: 1}", None)]
#[case::min_missing_fail("{device: kitchen, min_missing: 1}", Some(("at least 1 missing packets", "0 missing")))]
#[case::encrypted_pass("{device: hall, encrypted: true}", None)]
#[case::encrypted_fail(
    "{device: kitchen, encrypted: true}",
    Some(("every session encrypted", "session on connection 0 is clear"))
)]
#[case::clear_pass("{device: kitchen, encrypted: false}", None)]
#[case::clear_fail(
    "{device: hall, encrypted: false}",
    Some(("every session clear", "session on connection 0 is encrypted"))
)]
#[case::equals_wav_pass("{device: kitchen, equals_wav: tone.wav}", None)]
#[case::equals_wav_fail("{device: kitchen, equals_wav: other.wav}", Some(("decoded audio equal to other.wav", "")))]
#[case::equals_wav_unreadable(
    "{device: kitchen, equals_wav: missing.wav}",
    Some(("readable WAV", ""))
)]
#[tokio::test]
async fn audio(#[case] item: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_wavs(dir.path());
    let expect = format!("- audio: {item}");
    let loaded = scenario(dir.path(), &expect);
    let devices = devices_with_audio(&loaded).await;
    let failures = Run::new(Vec::new()).verdict(dir.path(), &expect, &devices);
    for d in &devices {
        d.abort();
    }
    assert_verdict(&failures, want, &expect);
    if let Some(f) = failures.first() {
        // The WAV cases name the file and say where the audio differs or why it did not load.
        assert!(!f.actual.is_empty(), "{f:?}");
    }
}

#[rstest]
#[case::number_pass("{device: kitchen, values: {volume: -20}}", None)]
#[case::number_fail("{device: kitchen, values: {volume: -10}}", Some(("volume = -10", "volume = -20.0")))]
#[case::count_pass("{device: hall, values: {active_sessions: 0}}", None)]
#[case::absent_fail("{device: hall, values: {volume: -20}}", Some(("volume = -20", "volume = null")))]
#[tokio::test]
async fn state(#[case] item: &str, #[case] want: Option<(&str, &str)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let expect = format!("- state: {item}");
    let loaded = scenario(dir.path(), &expect);
    let devices = devices_with_audio(&loaded).await;
    let failures = Run::new(Vec::new()).verdict(dir.path(), &expect, &devices);
    for d in &devices {
        d.abort();
    }
    assert_verdict(&failures, want, &expect);
}

#[test]
fn bounds_name_the_broken_limit_and_pass_within() {
    use super::bound;
    assert_eq!(bound(5, Some(5), Some(5), "frames"), None);
    assert_eq!(bound(3, None, None, "frames"), None);
    assert_eq!(
        bound(4, Some(5), None, "frames").as_deref(),
        Some("at least 5 frames")
    );
    assert_eq!(
        bound(6, Some(1), Some(5), "missing packets").as_deref(),
        Some("at most 5 missing packets")
    );
}
