//! The simulated AirPort Express over real sockets: every test starts its own device in-process
//! (`Settings::shell` + `RaopService`, as `bench::start_device` does) on 127.0.0.1 port 0, talks to it
//! with plain tokio TCP/UDP sockets, and checks both what came back on the wire and what the
//! device's `Recorder` holds. Random input is drawn from seeded ChaCha generators, so a failure
//! replays with the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin::clients::raop::{self as reference, Options};
use airtwin::expect::audio_match::{compare, read_wav};
use airtwin::scenario::ChallengeOn;
use airtwin_simulators::device::Settings;
use airtwin_simulators::event::{Event, EventKind};
use airtwin_simulators::fault::{Action, Fault, FaultPlan, Match};
use airtwin_simulators::raop::audio::encode_l16;
use airtwin_simulators::raop::sender::RtpSender;
use airtwin_simulators::raop::{RaopConfig, RaopService};
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::wire::transport::Transport;
use airtwin_simulators::wire::{self, Limits, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

/// Longest wait for any single thing the device should do; only reached when a test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

const WAV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/media/tone-1s.wav"
);

/// pyatv's clear L16 ANNOUNCE body (no `rsaaeskey`/`aesiv`).
const SDP_L16: &str = "v=0\r\no=iTunes 3413821438 0 IN IP4 127.0.0.1\r\ns=iTunes\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/44100/2\r\na=fmtp:96 352\r\n";

// ---------------------------------------------------------------------------------------------
// The device under test.

struct Device {
    addr: SocketAddr,
    service: Arc<RaopService>,
    recorder: Arc<Recorder>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn start_device(
    name: &str,
    tweak: impl FnOnce(&mut RaopConfig),
    plan: FaultPlan,
    idle_timeout: Duration,
) -> Device {
    let mut config = RaopConfig::airport_express(name);
    config.seed = 7;
    tweak(&mut config);
    let service = Arc::new(RaopService::new(config));
    let recorder = Recorder::shared();
    let (shutdown, rx) = watch::channel(false);
    let shell = Settings {
        idle_timeout,
        recorder: Some(recorder.clone()),
        plan: Some(Arc::new(plan)),
        shutdown: Some(rx),
        ..Settings::new(name)
    }
    .shell();
    let (port, _accept) = shell
        .serve(service.clone(), "raop", 0)
        .await
        .expect("bind 127.0.0.1:0");
    Device {
        addr: SocketAddr::new(shell.address, port),
        service,
        recorder,
        shutdown,
    }
}

async fn plain_device(name: &str) -> Device {
    start_device(name, |_| {}, FaultPlan::empty(), Duration::from_secs(30)).await
}

impl Device {
    fn state(&self) -> std::sync::MutexGuard<'_, airtwin_simulators::raop::RaopState> {
        self.service.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (bounded) until `find` finds something in the recorded events.
    async fn wait_event<T>(&self, what: &str, mut find: impl FnMut(&[Event]) -> Option<T>) -> T {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let events = self.recorder.snapshot();
            if let Some(found) = find(&events) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                let tail = &events[events.len().saturating_sub(20)..];
                panic!("device never recorded {what}; last events: {tail:#?}");
            }
            // `changed` only wakes current waiters, so poll as well as listen.
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(20)),
                self.recorder.changed(),
            )
            .await;
        }
    }

    /// The device's index for the connection whose client end is `local`.
    async fn connection_of(&self, local: SocketAddr) -> u64 {
        self.wait_event(&format!("a Connected event from {local}"), |events| {
            events.iter().find_map(|e| {
                (matches!(e.kind, EventKind::Connected) && e.peer == Some(local))
                    .then_some(e.connection)
                    .flatten()
            })
        })
        .await
    }

    /// The reason of the Closed event of connection `conn`, waiting for it.
    async fn closed_reason(&self, conn: u64) -> String {
        self.wait_event(&format!("Closed for connection {conn}"), |events| {
            events.iter().find_map(|e| match &e.kind {
                EventKind::Closed { reason } if e.connection == Some(conn) => Some(reason.clone()),
                _ => None,
            })
        })
        .await
    }

    fn reference_options(&self, seed: u64) -> Options {
        Options {
            addr: self.addr,
            wav: PathBuf::from(WAV),
            challenge: ChallengeOn::Options,
            encrypt: true,
            verify_key: Arc::new(self.service.config.key.to_public_key()),
            mac: self.service.config.hw_addr,
            response_timeout: IO_TIMEOUT,
            seed,
        }
    }

    /// Runs airtwin's reference sender with the tone and checks the device captured exactly the
    /// WAV in the session it opened.
    async fn reference_session_plays_the_wav(&self, seed: u64) {
        let sessions_before = self.state().sessions.len();
        let mut log = String::new();
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            reference::run(&self.reference_options(seed), &mut log),
        )
        .await
        .unwrap_or_else(|_| panic!("reference sender did not finish; log so far:\n{log}"));
        if let Err(e) = result {
            panic!("reference sender failed: {e:#}\nlog:\n{log}");
        }
        let wav = read_wav(WAV.as_ref()).expect("tone WAV");
        let session = {
            let st = self.state();
            assert_eq!(
                st.sessions.len(),
                sessions_before + 1,
                "the reference sender's SETUP adds one session record"
            );
            assert_eq!(
                st.active_sessions, 0,
                "TEARDOWN released the reference session"
            );
            st.sessions.last().cloned().expect("session record")
        };
        assert_eq!(session.user_agent.as_deref(), Some("airtwin-raop/0.1"));
        assert!(session.encrypted);
        let pcm = session.receiver.pcm();
        if let Err(diff) = compare(&wav.samples, &pcm, wav.channels as usize) {
            panic!(
                "captured PCM differs from the WAV: {diff}; stats {:?}",
                session.receiver.stats()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A raw client connection.

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Status line of the last response read, exactly as sent.
    status_line: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            status_line: String::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// One read into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self, what: &str) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: nothing from the device within {IO_TIMEOUT:?} (buffered {:?})",
                    lossy(&self.buf)
                )
            })?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one whole response; panics (naming `what`) if the device closes or stalls first.
    async fn response(&mut self, what: &str) -> Response {
        loop {
            match wire::parse_response(&self.buf, &Limits::default()) {
                Ok(Some((resp, used))) => {
                    let line_end = self.buf.iter().position(|&b| b == b'\n').unwrap();
                    self.status_line = String::from_utf8_lossy(&self.buf[..line_end])
                        .trim_end_matches('\r')
                        .to_string();
                    self.buf.drain(..used);
                    return resp;
                }
                Ok(None) => {}
                Err(e) => panic!("{what}: unreadable response ({e}): {:?}", lossy(&self.buf)),
            }
            match self.fill(what).await {
                Ok(0) => panic!(
                    "{what}: device closed before a whole response (got {:?})",
                    lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "{what}: read failed before a whole response ({e}); got {:?}",
                    lossy(&self.buf)
                ),
            }
        }
    }

    /// Asserts the device closes the connection (FIN) without sending anything more.
    async fn expect_eof(&mut self, what: &str) {
        assert!(
            self.buf.is_empty(),
            "{what}: unexpected bytes {:?}",
            lossy(&self.buf)
        );
        match self.fill(what).await {
            Ok(0) => {}
            Ok(_) => panic!(
                "{what}: expected the device to close, got {:?}",
                lossy(&self.buf)
            ),
            Err(e) => panic!("{what}: expected a clean close (FIN), got error {e}"),
        }
    }

    /// Sends one RTSP request with `CSeq` and reads its response.
    async fn request(
        &mut self,
        method: &str,
        uri: &str,
        cseq: u32,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Response {
        let mut out = format!("{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n");
        for (n, v) in headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        let bytes = match body {
            Some((ctype, body)) => {
                out.push_str(&format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ));
                let mut b = out.into_bytes();
                b.extend_from_slice(body);
                b
            }
            None => {
                out.push_str("\r\n");
                out.into_bytes()
            }
        };
        self.send(&bytes).await;
        let what = format!("{method} {uri} (CSeq {cseq})");
        let resp = self.response(&what).await;
        assert_eq!(
            resp.headers.get("CSeq"),
            Some(cseq.to_string().as_str()),
            "{what}: CSeq not echoed"
        );
        resp
    }
}

fn lossy(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(200)];
    String::from_utf8_lossy(shown).into_owned()
}

/// The RFC 2326 / RFC 9110 reason phrase a status line must carry.
fn phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        453 => "Not Enough Bandwidth",
        455 => "Method Not Valid in This State",
        501 => "Not Implemented",
        505 => "RTSP Version Not Supported",
        other => panic!("test has no phrase for {other}"),
    }
}

/// A 4xx/5xx answer: exact status line, a text/plain body that says why (containing `keyword`).
fn assert_refusal(conn: &Conn, resp: &Response, status: u16, keyword: &str, what: &str) {
    assert_eq!(
        conn.status_line,
        format!("RTSP/1.0 {status} {}", phrase(status)),
        "{what}: status line"
    );
    assert_eq!(
        resp.headers.get("Content-Type"),
        Some("text/plain"),
        "{what}: reason body type"
    );
    let text = std::str::from_utf8(&resp.body)
        .unwrap_or_else(|_| panic!("{what}: reason body is not UTF-8: {:?}", resp.body));
    assert!(
        !text.trim().is_empty() && text.contains(keyword),
        "{what}: reason {text:?} does not say {keyword:?}"
    );
    assert!(
        resp.headers
            .get("Server")
            .is_some_and(|s| s.starts_with("AirTunes/")),
        "{what}: response not decorated with Server"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Malformed input.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    UnknownMethod,
    OutOfOrder,
    NoResource,
    GarbageLine,
    BadVersion,
    TooManyHeaders,
    HugeHead,
    HugeHeadUnterminated,
    BodyTooLarge,
    BadContentLength,
    BinaryJunk,
    JunkHeader,
    NulBytes,
    Truncated,
}

const ALL_KINDS: [Kind; 14] = [
    Kind::UnknownMethod,
    Kind::OutOfOrder,
    Kind::NoResource,
    Kind::GarbageLine,
    Kind::BadVersion,
    Kind::TooManyHeaders,
    Kind::HugeHead,
    Kind::HugeHeadUnterminated,
    Kind::BodyTooLarge,
    Kind::BadContentLength,
    Kind::BinaryJunk,
    Kind::JunkHeader,
    Kind::NulBytes,
    Kind::Truncated,
];

#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Well-formed but refused: answered with this status, connection stays open, CSeq echoed.
    Refused { status: u16, keyword: &'static str },
    /// A framing error: answered with this status, then the device closes.
    FramingError { status: u16, keyword: &'static str },
    /// Incomplete request, then the client half-closes: no answer, the device closes.
    Unanswered,
}

struct Case {
    kind: Kind,
    bytes: Vec<u8>,
    fate: Fate,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Random bytes without CR or LF.
fn junk(rng: &mut ChaCha8Rng, lengths: std::ops::Range<usize>) -> Vec<u8> {
    let len = rng.gen_range(lengths);
    (0..len)
        .map(|_| loop {
            let b: u8 = rng.gen();
            if b != b'\r' && b != b'\n' {
                break b;
            }
        })
        .collect()
}

fn token(rng: &mut ChaCha8Rng, min: usize, max: usize) -> String {
    const TCHARS: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~-";
    let len = rng.gen_range(min..=max);
    (0..len)
        .map(|_| *pick(rng, TCHARS) as char)
        .collect::<String>()
}

/// Methods the RAOP core answers with something other than 501.
const KNOWN_METHODS: &[&str] = &[
    "ANNOUNCE",
    "SETUP",
    "RECORD",
    "PAUSE",
    "FLUSH",
    "TEARDOWN",
    "OPTIONS",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "POST",
    "GET",
];

fn make_case(rng: &mut ChaCha8Rng, cseq: u32) -> Case {
    let head = |line: &str| format!("{line}\r\nCSeq: {cseq}\r\n");
    let roll = rng.gen_range(0..100);
    let (kind, bytes, fate): (Kind, Vec<u8>, Fate) = match roll {
        0..=21 => {
            let method = if rng.gen_bool(0.5) {
                pick(
                    rng,
                    &[
                        "PLAY",
                        "DESCRIBE",
                        "REDIRECT",
                        "announce",
                        "Options",
                        "M-SEARCH",
                        "X_AIRTWIN",
                    ],
                )
                .to_string()
            } else {
                loop {
                    let len = rng.gen_range(1..=12);
                    let m: String = (0..len)
                        .map(|_| *pick(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_-0123456789") as char)
                        .collect();
                    if !KNOWN_METHODS.contains(&m.as_str()) {
                        break m;
                    }
                }
            };
            let uri = pick(rng, &["*", "rtsp://127.0.0.1/1", "/x", "/info"]);
            let mut text = head(&format!("{method} {uri} RTSP/1.0"));
            let mut body = Vec::new();
            if rng.gen_bool(0.3) {
                body = junk(rng, 0..64);
                text.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            text.push_str("\r\n");
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&body);
            (
                Kind::UnknownMethod,
                bytes,
                Fate::Refused {
                    status: 501,
                    keyword: "not implemented",
                },
            )
        }
        22..=39 => {
            let (request, keyword) = *pick(
                rng,
                &[
                    ("RECORD rtsp://127.0.0.1/1 RTSP/1.0", "RECORD needs SETUP"),
                    (
                        "SETUP rtsp://127.0.0.1/1 RTSP/1.0",
                        "SETUP needs an ANNOUNCE",
                    ),
                    ("FLUSH rtsp://127.0.0.1/1 RTSP/1.0", "needs SETUP"),
                    ("PAUSE rtsp://127.0.0.1/1 RTSP/1.0", "needs SETUP"),
                ],
            );
            let mut text = head(request);
            if request.starts_with("SETUP") {
                text.push_str("Transport: RTP/AVP/UDP;unicast;mode=record;control_port=6001;timing_port=6002\r\n");
            }
            if request.starts_with("RECORD") && rng.gen_bool(0.5) {
                text.push_str("Range: npt=0-\r\nRTP-Info: seq=1;rtptime=0\r\n");
            }
            text.push_str("\r\n");
            (
                Kind::OutOfOrder,
                text.into_bytes(),
                Fate::Refused {
                    status: 455,
                    keyword,
                },
            )
        }
        40..=49 => {
            let method = pick(rng, &["GET", "POST"]);
            let path = format!("/nope/{}", token(rng, 1, 12).replace(['?', '#'], "x"));
            let text = head(&format!("{method} {path} RTSP/1.0")) + "\r\n";
            (
                Kind::NoResource,
                text.into_bytes(),
                Fate::Refused {
                    status: 404,
                    keyword: "no resource",
                },
            )
        }
        50..=55 => {
            let line = match rng.gen_range(0..7) {
                // One word.
                0 => token(rng, 1, 40),
                // Four parts.
                1 => format!("OPTIONS * RTSP/1.0 {}", token(rng, 1, 8)),
                // Empty URI between two spaces.
                2 => "OPTIONS  * RTSP/1.0".to_string(),
                // Method with a separator in it.
                3 => format!(
                    "{} * RTSP/1.0",
                    pick(rng, &["OPT@ONS", "GET/x", "<html>", "SET:UP", "RE CORD x"])
                ),
                // A version that is neither RTSP nor HTTP.
                4 => format!(
                    "OPTIONS * {}",
                    pick(rng, &["SIP/2.0", "rtsp/1.0", "RTSP1.0", "1.0", "X"])
                ),
                // Blank lines first (tolerated), then garbage.
                5 => format!("\r\n\r\n{} {}", token(rng, 1, 10), token(rng, 1, 10)),
                // Missing version.
                _ => "OPTIONS * ".to_string(),
            };
            let mut text = line + "\r\n";
            if rng.gen_bool(0.5) {
                text.push_str(&format!("CSeq: {cseq}\r\n\r\n"));
            }
            (
                Kind::GarbageLine,
                text.into_bytes(),
                Fate::FramingError {
                    status: 400,
                    keyword: "malformed request line",
                },
            )
        }
        56..=61 => {
            let method = pick(rng, &["OPTIONS", "ANNOUNCE", "GET", "SETUP", "TEARDOWN"]);
            let version = pick(
                rng,
                &[
                    "RTSP/2.0",
                    "RTSP/1.1",
                    "RTSP/0.9",
                    "RTSP/",
                    "RTSP/1.0.0",
                    "HTTP/2.0",
                    "HTTP/0.9",
                    "HTTP/1.2",
                    "HTTP/3",
                ],
            );
            let mut text = format!("{method} * {version}\r\n");
            if rng.gen_bool(0.5) {
                text.push_str(&format!("CSeq: {cseq}\r\n\r\n"));
            }
            (
                Kind::BadVersion,
                text.into_bytes(),
                Fate::FramingError {
                    status: 505,
                    keyword: "unsupported protocol version",
                },
            )
        }
        62..=65 => {
            let mut text = head("OPTIONS * RTSP/1.0");
            for i in 0..rng.gen_range(65..=120) {
                text.push_str(&format!("X-H{i}: {}\r\n", token(rng, 0, 6)));
            }
            text.push_str("\r\n");
            (
                Kind::TooManyHeaders,
                text.into_bytes(),
                Fate::FramingError {
                    status: 431,
                    keyword: "more than 64 header fields",
                },
            )
        }
        66..=67 => {
            let pad = "a".repeat(rng.gen_range(16_400..=20_000));
            let text = head("OPTIONS * RTSP/1.0") + "X-Pad: " + &pad + "\r\n\r\n";
            (
                Kind::HugeHead,
                text.into_bytes(),
                Fate::FramingError {
                    status: 431,
                    keyword: "header block longer than 16384 bytes",
                },
            )
        }
        68..=69 => {
            // Just over the limit and never terminated: the device must not wait for more.
            let mut text = head("OPTIONS * RTSP/1.0") + "X-Pad: ";
            let total = 16_385 + rng.gen_range(0..200);
            text.push_str(&"b".repeat(total - text.len()));
            (
                Kind::HugeHeadUnterminated,
                text.into_bytes(),
                Fate::FramingError {
                    status: 431,
                    keyword: "header block longer than 16384 bytes",
                },
            )
        }
        70..=75 => {
            let line = pick(
                rng,
                &[
                    "ANNOUNCE rtsp://127.0.0.1/1 RTSP/1.0",
                    "SET_PARAMETER rtsp://127.0.0.1/1 RTSP/1.0",
                    "POST /fp-setup RTSP/1.0",
                ],
            );
            let len = match rng.gen_range(0..3) {
                0 => (4 * 1024 * 1024 + 1 + rng.gen_range(0..1000)).to_string(),
                1 => "99999999".to_string(),
                _ => u64::MAX.to_string(),
            };
            let text = head(line) + &format!("Content-Length: {len}\r\n\r\n");
            (
                Kind::BodyTooLarge,
                text.into_bytes(),
                Fate::FramingError {
                    status: 413,
                    keyword: "exceeds the 4194304-byte limit",
                },
            )
        }
        76..=81 => {
            let value = pick(
                rng,
                &["abc", "-1", "1.5", "0x10", "ten", "12 3", "1e3", "", "١٢"],
            );
            let text = head("SET_PARAMETER rtsp://127.0.0.1/1 RTSP/1.0")
                + &format!("Content-Length: {value}\r\n\r\n");
            (
                Kind::BadContentLength,
                text.into_bytes(),
                Fate::FramingError {
                    status: 400,
                    keyword: "is not a number",
                },
            )
        }
        82..=86 => {
            let mut bytes = junk(rng, 1..300);
            // 0xFF never occurs in UTF-8: the line can never be a request line.
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = 0xFF;
            bytes.extend_from_slice(b"\r\n");
            (
                Kind::BinaryJunk,
                bytes,
                Fate::FramingError {
                    status: 400,
                    keyword: "not UTF-8",
                },
            )
        }
        87..=90 => {
            let mut bytes = head("OPTIONS * RTSP/1.0").into_bytes();
            // A header line starting with a byte that can't begin a field name.
            let first = loop {
                let b: u8 = rng.gen();
                if (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b >= 0x7F {
                    break b;
                }
            };
            bytes.push(first);
            bytes.extend(junk(rng, 0..100));
            bytes.extend_from_slice(b"\r\n\r\n");
            (
                Kind::JunkHeader,
                bytes,
                Fate::FramingError {
                    status: 400,
                    keyword: "malformed header block",
                },
            )
        }
        91..=95 => {
            let (bytes, keyword): (Vec<u8>, &'static str) = match rng.gen_range(0..5) {
                0 => (
                    head("OPTIONS\0* RTSP/1.0").into_bytes(),
                    "malformed request line",
                ),
                1 => (
                    head("OPTIONS /a\0b RTSP/1.0").into_bytes(),
                    "malformed request line",
                ),
                2 => {
                    let mut b = vec![0u8; rng.gen_range(1..64)];
                    b.extend_from_slice(b"\r\n");
                    (b, "malformed request line")
                }
                3 => (
                    format!("OPTIONS * RTSP/1.0\r\nCSeq: {cseq}\0\r\n").into_bytes(),
                    "malformed header block",
                ),
                _ => (
                    head("\0OPTIONS * RTSP/1.0").into_bytes(),
                    "malformed request line",
                ),
            };
            let mut bytes = bytes;
            bytes.extend_from_slice(b"\r\n");
            (
                Kind::NulBytes,
                bytes,
                Fate::FramingError {
                    status: 400,
                    keyword,
                },
            )
        }
        _ => {
            let body = b"volume: -20.000000\r\n";
            let mut full = (head("SET_PARAMETER rtsp://127.0.0.1/1 RTSP/1.0")
                + &format!(
                    "Content-Type: text/parameters\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ))
                .into_bytes();
            full.extend_from_slice(body);
            let cut = rng.gen_range(1..full.len());
            full.truncate(cut);
            (Kind::Truncated, full, Fate::Unanswered)
        }
    };
    Case { kind, bytes, fate }
}

#[derive(Default, Debug)]
struct Tally {
    by_kind: BTreeMap<Kind, usize>,
    by_status: BTreeMap<u16, usize>,
    framing_errors: usize,
    unanswered: usize,
    connections: usize,
}

/// Sends `n` malformed requests from one seeded generator, one at a time, on as few connections
/// as the device allows.
async fn malformed_lane(addr: SocketAddr, seed: u64, n: usize) -> Tally {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut current: Option<Conn> = None;
    let mut cseq: u32 = 0;
    for i in 0..n {
        cseq += rng.gen_range(1..=3);
        let case = make_case(&mut rng, cseq);
        *tally.by_kind.entry(case.kind).or_default() += 1;
        let mut conn = match current.take() {
            Some(c) => c,
            None => {
                tally.connections += 1;
                Conn::open(addr).await
            }
        };
        let what = format!(
            "seed {seed:#x}, case {i} ({:?}: {:?})",
            case.kind,
            lossy(&case.bytes[..case.bytes.len().min(100)])
        );
        conn.send(&case.bytes).await;
        match case.fate {
            Fate::Refused { status, keyword } => {
                let resp = conn.response(&what).await;
                assert_refusal(&conn, &resp, status, keyword, &what);
                assert_eq!(
                    resp.headers.get("CSeq"),
                    Some(cseq.to_string().as_str()),
                    "{what}: CSeq not echoed"
                );
                *tally.by_status.entry(status).or_default() += 1;
                current = Some(conn);
            }
            Fate::FramingError { status, keyword } => {
                let resp = conn.response(&what).await;
                assert_refusal(&conn, &resp, status, keyword, &what);
                conn.expect_eof(&what).await;
                *tally.by_status.entry(status).or_default() += 1;
                tally.framing_errors += 1;
            }
            Fate::Unanswered => {
                conn.stream.shutdown().await.expect("half-close");
                conn.expect_eof(&what).await;
                tally.unanswered += 1;
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_then_a_good_session() {
    const LANES: u64 = 4;
    const PER_LANE: usize = 2_500;
    let dev = plain_device("malformed").await;

    let lanes: Vec<_> = (0..LANES)
        .map(|lane| tokio::spawn(malformed_lane(dev.addr, 0xA1B7_0000 + lane, PER_LANE)))
        .collect();
    let mut total = Tally::default();
    for lane in lanes {
        let t = lane.await.expect("lane panicked");
        for (k, n) in t.by_kind {
            *total.by_kind.entry(k).or_default() += n;
        }
        for (s, n) in t.by_status {
            *total.by_status.entry(s).or_default() += n;
        }
        total.framing_errors += t.framing_errors;
        total.unanswered += t.unanswered;
        total.connections += t.connections;
    }
    let sent: usize = total.by_kind.values().sum();
    assert_eq!(sent, LANES as usize * PER_LANE);
    for kind in ALL_KINDS {
        assert!(
            total.by_kind.get(&kind).copied().unwrap_or(0) >= 10,
            "the seeded mix should hold {kind:?} at least 10 times: {:?}",
            total.by_kind
        );
    }

    // Every connection the lanes opened has ended at the device (the last ones by our drop).
    let connections = total.connections;
    let events = dev
        .wait_event(&format!("{connections} Closed events"), |events| {
            let closed = events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Closed { .. }))
                .count();
            (closed >= connections).then(|| events.to_vec())
        })
        .await;
    let mut closed_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut framing_warnings = 0;
    let mut connected = 0;
    for e in &events {
        match &e.kind {
            EventKind::Connected => connected += 1,
            EventKind::Closed { reason } => {
                let class = if reason.starts_with("bad request: ") {
                    "bad request"
                } else {
                    reason.as_str()
                };
                *closed_reasons.entry(class.to_string()).or_default() += 1;
            }
            EventKind::Response { status, .. } => *statuses.entry(*status).or_default() += 1,
            EventKind::Warning { message } if message.starts_with("framing: ") => {
                framing_warnings += 1
            }
            _ => {}
        }
    }
    assert_eq!(connected, connections);
    assert_eq!(
        statuses, total.by_status,
        "device's recorded answers vs the ones the clients read"
    );
    assert_eq!(framing_warnings, total.framing_errors);
    assert_eq!(
        closed_reasons,
        BTreeMap::from([
            ("bad request".to_string(), total.framing_errors),
            (
                "peer closed".to_string(),
                connections - total.framing_errors
            ),
        ]),
        "why the device closed each connection"
    );
    {
        let st = dev.state();
        assert_eq!(st.active_sessions, 0);
        assert_eq!(st.sessions_total, 0);
    }

    // The same device still takes a whole session and plays the tone sample for sample.
    dev.reference_session_plays_the_wav(11).await;
}

// ---------------------------------------------------------------------------------------------
// 2. A sender that vanishes mid-RECORD.

enum Hangup {
    /// Close: FIN.
    Drop,
    /// SO_LINGER 0, then close: RST.
    Reset,
}

/// OPTIONS, ANNOUNCE (clear L16), SETUP, RECORD without DACP-ID, a little audio, then the TCP
/// connection goes away while the timing socket is never read.
async fn record_then_hang_up(dev: &Device, hangup: Hangup, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut conn = Conn::open(dev.addr).await;
    let index = dev.connection_of(conn.local()).await;
    let ua = [("User-Agent", "AirPlay/550.10")];

    let r = conn.request("OPTIONS", "*", 1, &ua, None).await;
    assert_eq!(r.status, 200);
    let url = "rtsp://127.0.0.1/3413821438";
    let r = conn
        .request(
            "ANNOUNCE",
            url,
            2,
            &ua,
            Some(("application/sdp", SDP_L16.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "ANNOUNCE: {:?}", lossy(&r.body));

    // Ports the client announces; the timing one is never read nor answered.
    let control = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let timing = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let transport = format!(
        "RTP/AVP/UDP;unicast;interleaved=0-1;mode=record;control_port={};timing_port={}",
        control.local_addr().unwrap().port(),
        timing.local_addr().unwrap().port()
    );
    let r = conn
        .request(
            "SETUP",
            url,
            3,
            &[ua[0], ("Transport", transport.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "SETUP: {:?}", lossy(&r.body));
    let answer = r
        .headers
        .get("Transport")
        .and_then(Transport::parse)
        .expect("SETUP answer has a Transport");
    let server_port = answer.port("server_port").expect("server_port");
    let session = r.headers.get("Session").expect("Session").to_string();

    let seq: u16 = rng.gen();
    let rtptime: u32 = rng.gen();
    let rtp_info = format!("seq={seq};rtptime={rtptime}");
    let r = conn
        .request(
            "RECORD",
            url,
            4,
            &[
                ua[0],
                ("Session", session.as_str()),
                ("Range", "npt=0-"),
                ("RTP-Info", rtp_info.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "RECORD: {:?}", lossy(&r.body));
    assert!(r.headers.contains("Audio-Latency"));

    // A few packets of clear L16, so the device is really streaming when the sender vanishes.
    let audio = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sender = RtpSender::new(seq, rtptime, rng.gen(), None);
    let mut sent_pcm: Vec<i16> = Vec::new();
    const PACKETS: u64 = 6;
    for _ in 0..PACKETS {
        let samples: Vec<i16> = (0..352 * 2).map(|_| rng.gen_range(-8000..8000)).collect();
        let packet = sender.next_packet(&encode_l16(&samples), 352);
        audio
            .send_to(&packet, SocketAddr::new(dev.addr.ip(), server_port))
            .await
            .unwrap();
        sent_pcm.extend(samples);
    }
    let receiver = {
        let st = dev.state();
        let record = st
            .sessions
            .iter()
            .rev()
            .find(|s| s.connection == index)
            .expect("session record of the hanging sender");
        assert_eq!(record.dacp_id, None);
        assert_eq!(record.active_remote, None);
        assert!(!record.encrypted);
        assert_eq!(record.rtpmap, "L16/44100/2");
        assert_eq!(st.active_sessions, 1);
        record.receiver.clone()
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    while receiver.stats().packets < PACKETS {
        assert!(
            Instant::now() < deadline,
            "device never received the L16 packets: {:?}",
            receiver.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(receiver.pcm(), sent_pcm, "clear L16 captured as sent");
    dev.wait_event("the note about RECORD without DACP-ID", |events| {
        events.iter().find(|e| {
            e.connection == Some(index)
                && matches!(&e.kind, EventKind::Note { message } if message.contains("without DACP-ID"))
        }).map(|_| ())
    })
    .await;

    // The hang-up.
    let expect_reason = match hangup {
        Hangup::Drop => {
            drop(conn);
            "peer closed"
        }
        Hangup::Reset => {
            // Zero linger does not block on close: the kernel discards and sends RST.
            #[allow(deprecated)]
            conn.stream
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
            drop(conn);
            "read error"
        }
    };
    let reason = dev.closed_reason(index).await;
    assert!(
        reason.starts_with(expect_reason),
        "connection {index} closed with {reason:?}, expected {expect_reason:?}"
    );
    assert_eq!(
        dev.state().active_sessions,
        0,
        "the vanished sender's session is released"
    );
    // The sender's UDP sockets outlive its TCP connection, as a crashed client's would.
    drop((control, timing, audio));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_without_dacp_id_and_silent_timing_then_hangup_leaves_device_serving() {
    let dev = plain_device("hangup").await;
    record_then_hang_up(&dev, Hangup::Drop, 21).await;
    dev.reference_session_plays_the_wav(22).await;
    record_then_hang_up(&dev, Hangup::Reset, 23).await;
    dev.reference_session_plays_the_wav(24).await;
    let st = dev.state();
    assert_eq!(st.sessions_total, 4);
    assert_eq!(st.active_sessions, 0);
}

// ---------------------------------------------------------------------------------------------
// 3. One session at a time.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_answers_453_while_busy() {
    let dev = start_device(
        "busy",
        |c| c.max_sessions = 1,
        FaultPlan::empty(),
        Duration::from_secs(30),
    )
    .await;
    let sdp = Some(("application/sdp", SDP_L16.as_bytes()));
    let url = "rtsp://127.0.0.1/1";

    let mut a = Conn::open(dev.addr).await;
    assert_eq!(a.request("OPTIONS", "*", 1, &[], None).await.status, 200);
    let r = a.request("ANNOUNCE", url, 2, &[], sdp).await;
    assert_eq!(r.status, 200, "A's ANNOUNCE: {:?}", lossy(&r.body));

    let mut b = Conn::open(dev.addr).await;
    let r = b.request("ANNOUNCE", url, 1, &[], sdp).await;
    assert_eq!(r.status, 453);
    assert_refusal(
        &b,
        &r,
        453,
        "busy",
        "B's ANNOUNCE while A holds the session",
    );
    assert_eq!(dev.state().active_sessions, 1);

    // B's connection stays usable after the refusal.
    assert_eq!(b.request("OPTIONS", "*", 2, &[], None).await.status, 200);

    let r = a.request("TEARDOWN", url, 3, &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(dev.state().active_sessions, 0);

    let r = b.request("ANNOUNCE", url, 3, &[], sdp).await;
    assert_eq!(
        r.status,
        200,
        "B's ANNOUNCE after A's TEARDOWN: {:?}",
        lossy(&r.body)
    );

    // The slot moved to B: a third sender is now the one refused.
    let mut c = Conn::open(dev.addr).await;
    let r = c.request("ANNOUNCE", url, 1, &[], sdp).await;
    assert_refusal(
        &c,
        &r,
        453,
        "busy",
        "C's ANNOUNCE while B holds the session",
    );
    let st = dev.state();
    assert_eq!(st.active_sessions, 1);
    assert_eq!(st.sessions_total, 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Idle connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() {
    let dev = start_device(
        "idle",
        |_| {},
        FaultPlan::empty(),
        Duration::from_millis(300),
    )
    .await;

    // Silent from the start.
    let mut silent = Conn::open(dev.addr).await;
    let silent_index = dev.connection_of(silent.local()).await;
    silent.expect_eof("a connection that never sends").await;
    assert_eq!(dev.closed_reason(silent_index).await, "idle timeout");

    // Silent after one exchange.
    let mut quiet = Conn::open(dev.addr).await;
    let quiet_index = dev.connection_of(quiet.local()).await;
    assert_eq!(
        quiet.request("OPTIONS", "*", 1, &[], None).await.status,
        200
    );
    quiet.expect_eof("a connection idle after OPTIONS").await;
    assert_eq!(dev.closed_reason(quiet_index).await, "idle timeout");

    let closed: Vec<(Option<u64>, String)> = dev
        .recorder
        .snapshot()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Closed { reason } => Some((e.connection, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        vec![
            (Some(silent_index), "idle timeout".to_string()),
            (Some(quiet_index), "idle timeout".to_string()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Pipelining.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_echoes_cseq_on_a_pipelined_burst() {
    let dev = plain_device("pipeline").await;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut seen = BTreeSet::new();
    let cseqs: Vec<u32> = std::iter::from_fn(|| Some(rng.gen_range(0..1_000_000)))
        .filter(|c| seen.insert(*c))
        .take(50)
        .collect();
    let mut burst = Vec::new();
    for c in &cseqs {
        burst.extend_from_slice(
            format!("OPTIONS * RTSP/1.0\r\nCSeq: {c}\r\nUser-Agent: burst\r\n\r\n").as_bytes(),
        );
    }
    let mut conn = Conn::open(dev.addr).await;
    let index = dev.connection_of(conn.local()).await;
    conn.send(&burst).await;
    for (i, c) in cseqs.iter().enumerate() {
        let what = format!("response {i} of the burst");
        let r = conn.response(&what).await;
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(
            r.headers.get("CSeq"),
            Some(c.to_string().as_str()),
            "{what}"
        );
        assert!(r.headers.contains("Public"), "{what}");
    }
    assert!(
        conn.buf.is_empty(),
        "more than 50 responses: {:?}",
        lossy(&conn.buf)
    );
    // One more exchange on the same connection: nothing was left half-parsed.
    assert_eq!(conn.request("OPTIONS", "*", 7, &[], None).await.status, 200);

    let indices: Vec<u64> = dev
        .recorder
        .snapshot()
        .iter()
        .filter(|e| e.connection == Some(index))
        .filter_map(|e| match e.kind {
            EventKind::Request { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(indices, (0..51).collect::<Vec<u64>>());
}

// ---------------------------------------------------------------------------------------------
// 6. The fault seam.

fn fault_on(connection: u64, request: Option<u64>, action: Action, times: u64) -> Fault {
    Fault {
        when: Match {
            connection: Some(connection),
            request,
            method: Some("OPTIONS".into()),
            ..Match::default()
        },
        action,
        times: Some(times),
        after: 0,
        probability: 1.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_at_the_seam_over_real_sockets() {
    let plan = FaultPlan::new(
        99,
        vec![
            fault_on(0, Some(1), Action::Drop, 1),
            fault_on(1, Some(1), Action::Reset, 1),
            fault_on(2, None, Action::Delay(300), 2),
        ],
    );
    let dev = start_device("faulty", |_| {}, plan, Duration::from_secs(30)).await;

    // Connection 0: the 2nd request is dropped: closed, no answer.
    let mut c0 = Conn::open(dev.addr).await;
    assert_eq!(c0.request("OPTIONS", "*", 1, &[], None).await.status, 200);
    c0.send(b"OPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n").await;
    c0.expect_eof("the dropped 2nd request").await;
    assert_eq!(dev.connection_of(c0.local()).await, 0);
    assert_eq!(dev.closed_reason(0).await, "dropped by fault");

    // Connection 1: the 2nd request is answered with a reset.
    let mut c1 = Conn::open(dev.addr).await;
    assert_eq!(c1.request("OPTIONS", "*", 1, &[], None).await.status, 200);
    c1.send(b"OPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n").await;
    match c1.fill("the reset 2nd request").await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected ECONNRESET, read {n} bytes: {:?}", lossy(&c1.buf)),
    }
    assert!(c1.buf.is_empty());
    assert_eq!(dev.connection_of(c1.local()).await, 1);
    assert_eq!(dev.closed_reason(1).await, "reset by fault");

    // Connection 2: the first two answers are held 300 ms each, the third is not delayed.
    let mut c2 = Conn::open(dev.addr).await;
    for cseq in 1..=2 {
        let asked = Instant::now();
        let r = c2.request("OPTIONS", "*", cseq, &[], None).await;
        let waited = asked.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            waited >= Duration::from_millis(300),
            "delayed answer {cseq} came after {waited:?}"
        );
    }
    assert_eq!(c2.request("OPTIONS", "*", 3, &[], None).await.status, 200);
    assert_eq!(dev.connection_of(c2.local()).await, 2);

    // Connection 3: no fault matches.
    let mut c3 = Conn::open(dev.addr).await;
    for cseq in 1..=3 {
        assert_eq!(
            c3.request("OPTIONS", "*", cseq, &[], None).await.status,
            200
        );
    }

    let faults: Vec<(Option<u64>, usize, Option<u64>, String)> = dev
        .recorder
        .snapshot()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Fault {
                request,
                fault,
                action,
            } => Some((e.connection, fault, request, action)),
            _ => None,
        })
        .collect();
    assert_eq!(
        faults,
        vec![
            (Some(0), 0, Some(1), "drop".to_string()),
            (Some(1), 1, Some(1), "reset".to_string()),
            (Some(2), 2, Some(0), "delay 300ms".to_string()),
            (Some(2), 2, Some(1), "delay 300ms".to_string()),
        ]
    );
    // Neither the dropped nor the reset request got a response event.
    let answered: Vec<(Option<u64>, u64)> = dev
        .recorder
        .snapshot()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Response { index, .. } => Some((e.connection, index)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answered,
        vec![
            (Some(0), 0),
            (Some(1), 0),
            (Some(2), 0),
            (Some(2), 1),
            (Some(2), 2),
            (Some(3), 0),
            (Some(3), 1),
            (Some(3), 2),
        ]
    );
}
