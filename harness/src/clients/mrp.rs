//! `airtwin client mrp`: MRP over AirPlay for an Apple TV 4K (docs/protocols/mrp.md), as a
//! tvOS 15+ controller reaches it: pair-verify on the AirPlay port with stored HomeKit
//! credentials (from `airtwin client hap`), a remote-control-only session SETUP (the event
//! channel is opened and its `updateInfo` answered), RECORD, a type-130 stream SETUP, then MRP on
//! the data stream: DEVICE_INFO, SET_CONNECTION_STATE, CLIENT_UPDATES_CONFIG, GET_KEYBOARD_SESSION
//! and the calls asked for (commands, keys, volume). It checks what pyatv lets pass: the SETUP
//! answers' `type` and `streamID`, every frame header (size, `rply` with zero command and
//! padding, the device's `cmnd`), that each of its `sync` frames gets a `rply` echoing its
//! sequence number, that the device's sequence numbers count up, and that every request that
//! wants one gets an answer with its identifier (pyatv waits only for some).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtwin_simulators::hap::channel::Channel;
use airtwin_simulators::mrp::frame::{self, Frame, HEADER_LEN};
use airtwin_simulators::mrp::message::{
    self, command, kind, playback_state, ClientUpdatesConfig, ProtocolMessage, SendCommand,
    SendHidEvent, SetConnectionState, SetVolume,
};
use airtwin_simulators::wire::{self, Limits, Protocol, Request};
use anyhow::{bail, Context as _, Result};
use plist::{Dictionary, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::hap::{pair_verify, stored, Conn};

pub struct Options {
    /// The AirPlay port.
    pub addr: SocketAddr,
    /// Stored HomeKit credentials (`airtwin client hap --credentials`).
    pub credentials: PathBuf,
    /// Calls after the start: `pause`, `play`, `next`, `previous`, `up`, `select`…,
    /// `volume=0.3`.
    pub calls: Vec<String>,
    pub seed: u64,
    pub timeout: Duration,
}

/// The data stream, sealed, with the frame checks.
struct Data {
    stream: TcpStream,
    channel: Channel,
    plain: Vec<u8>,
    seqno: u64,
    /// Sequence numbers of `sync` frames sent and not yet replied to.
    unreplied: BTreeSet<u64>,
    /// The device's last `sync` sequence number.
    device_seqno: Option<u64>,
    replies: u64,
    device_syncs: u64,
    timeout: Duration,
    next_id: u64,
}

impl Data {
    async fn send(&mut self, mut m: ProtocolMessage, want_answer: bool) -> Result<Option<String>> {
        let id = want_answer.then(|| {
            self.next_id += 1;
            format!("AIRTWIN-{:04}", self.next_id)
        });
        m.identifier = id.clone();
        let f = Frame::sync("comm", self.seqno, frame::payload(&[message::encode(&m)]));
        self.unreplied.insert(self.seqno);
        self.seqno += 1;
        let sealed = self.channel.seal(&f.encode());
        self.stream.write_all(&sealed).await?;
        Ok(id)
    }

    async fn frame(&mut self) -> Result<Frame> {
        loop {
            if self.plain.len() >= 4 {
                let size = u32::from_be_bytes([
                    self.plain[0],
                    self.plain[1],
                    self.plain[2],
                    self.plain[3],
                ]);
                if (size as usize) < HEADER_LEN {
                    bail!("frame header says size {size}, less than its 32-byte header");
                }
            }
            if let Some((f, used)) = Frame::decode(&self.plain).context("data frame")? {
                self.plain.drain(..used);
                return Ok(f);
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .context("no frame from the device in time")??;
            if n == 0 {
                bail!("the device closed the data stream");
            }
            let plain = self
                .channel
                .open(&chunk[..n])
                .context("a sealed block from the device does not open")?;
            self.plain.extend_from_slice(&plain);
        }
    }

    /// Reads frames, checking each, until a message with `id` arrives; returns it and the
    /// messages before it.
    async fn until(&mut self, id: &str) -> Result<(ProtocolMessage, Vec<ProtocolMessage>)> {
        let mut before = Vec::new();
        loop {
            let f = self.frame().await?;
            match f.message_type.as_str() {
                "rply" => {
                    if !f.command.is_empty() || f.padding != 0 {
                        bail!(
                            "rply {} has command {:?} and padding {}; both must be zero",
                            f.seqno,
                            f.command,
                            f.padding
                        );
                    }
                    if !self.unreplied.remove(&f.seqno) {
                        bail!("rply with seqno {} answers no sync of ours", f.seqno);
                    }
                    self.replies += 1;
                }
                "sync" => {
                    if f.command != "cmnd" || f.padding != 0 {
                        bail!(
                            "the device's sync {} has command {:?} padding {} (cmnd, 0 expected)",
                            f.seqno,
                            f.command,
                            f.padding
                        );
                    }
                    if let Some(last) = self.device_seqno {
                        if f.seqno <= last {
                            bail!("the device's seqno went from {last} to {}", f.seqno);
                        }
                    }
                    self.device_seqno = Some(f.seqno);
                    self.device_syncs += 1;
                    let reply = self.channel.seal(&Frame::reply(f.seqno).encode());
                    self.stream.write_all(&reply).await?;
                    for bytes in frame::messages(&f.payload).context("sync payload")? {
                        let m = message::decode(&bytes).context("ProtocolMessage")?;
                        if m.identifier.as_deref() == Some(id) {
                            return Ok((m, before));
                        }
                        before.push(m);
                    }
                }
                other => bail!("frame of type {other:?}"),
            }
        }
    }
}

fn plist_body(d: Dictionary) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    Value::Dictionary(d).to_writer_binary(&mut out)?;
    Ok(out)
}

fn setup(uri: &str, cseq: u32, body: Vec<u8>) -> Request {
    let mut r = Request::new("SETUP", uri, Protocol::Rtsp10);
    r.headers.set("CSeq", cseq.to_string());
    r.headers
        .set("Content-Type", "application/x-apple-binary-plist");
    r.headers.set("Content-Length", body.len().to_string());
    r.body = body;
    r
}

fn answer(body: &[u8], what: &str) -> Result<Dictionary> {
    Value::from_reader(std::io::Cursor::new(body))
        .ok()
        .and_then(Value::into_dictionary)
        .with_context(|| format!("{what}: the answer is not a binary plist dictionary"))
}

/// Answers the device's requests on the event channel (docs/protocols/airplay.md, "The event
/// channel"), noting each in `seen`.
async fn event_channel(mut stream: TcpStream, mut channel: Channel, seen: Arc<Mutex<Vec<String>>>) {
    let note = |s: String| seen.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    let mut plain = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match channel.open(&chunk[..n]) {
            Ok(p) => plain.extend(p),
            Err(e) => {
                note(format!("bad block: {e}"));
                return;
            }
        }
        while let Ok(Some((req, used))) = wire::framing::parse_request(&plain, &Limits::default()) {
            plain.drain(..used);
            note(format!("{} {}", req.method, req.path()));
            let cseq = req.headers.get("CSeq").unwrap_or("0").to_string();
            let resp = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n");
            if stream
                .write_all(&channel.seal(resp.as_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// The HID event pyatv sends for a key (docs/protocols/mrp.md, "Remote keys").
fn hid(page: u16, usage: u16, down: bool) -> ProtocolMessage {
    let mut m = ProtocolMessage::new(kind::SEND_HID_EVENT, None, "K".into());
    m.send_hid_event = Some(SendHidEvent {
        hid_event_data: Some(message::hid_event_data(page, usage, down)),
    });
    m
}

fn title(m: &ProtocolMessage) -> Option<String> {
    m.set_state
        .as_ref()?
        .playback_queue
        .as_ref()?
        .content_items
        .first()?
        .metadata
        .as_ref()?
        .title
        .clone()
}

/// Runs the client; every line it prints goes to `log` too.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let mut say = |line: String| {
        println!("{line}");
        log.push_str(&line);
        log.push('\n');
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x4D52_5000);
    let creds = stored(&Some(opts.credentials.clone()))?
        .with_context(|| format!("no credentials in {}", opts.credentials.display()))?;
    let mut conn = Conn::open(opts.addr, opts.timeout).await?;
    let shared = pair_verify(&mut conn, creds, rng.gen()).await?;
    say("OK pair-verify on the AirPlay port".into());

    let uri = format!("rtsp://{}/{}", opts.addr.ip(), rng.gen::<u32>());
    let mut session = Dictionary::new();
    session.insert("isRemoteControlOnly".into(), true.into());
    session.insert("timingProtocol".into(), "None".into());
    session.insert("osName".into(), "airtwin".into());
    session.insert("deviceID".into(), "AA:BB:CC:00:11:22".into());
    session.insert(
        "sessionUUID".into(),
        format!("{:08X}-0000-4000-8000-000000000001", rng.gen::<u32>()).into(),
    );
    let resp = conn.send(&setup(&uri, 1, plist_body(session)?)).await?;
    if resp.status != 200 {
        bail!("session SETUP: status {}", resp.status);
    }
    let event_port = answer(&resp.body, "session SETUP")?
        .get("eventPort")
        .and_then(Value::as_unsigned_integer)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .context("session SETUP: no eventPort")?;
    let events = TcpStream::connect((opts.addr.ip(), event_port))
        .await
        .context("connecting to the event channel")?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = tokio::spawn(event_channel(
        events,
        Channel::events_controller(&shared),
        seen.clone(),
    ));
    say(format!(
        "OK session SETUP: event channel on port {event_port}"
    ));

    let mut record = Request::new("RECORD", &uri, Protocol::Rtsp10);
    record.headers.set("CSeq", "2");
    let resp = conn.send(&record).await?;
    if resp.status != 200 {
        bail!("RECORD: status {}", resp.status);
    }

    let seed: u64 = rng.gen();
    let mut stream = Dictionary::new();
    stream.insert("type".into(), Value::Integer(130u64.into()));
    stream.insert("controlType".into(), Value::Integer(2u64.into()));
    stream.insert("channelID".into(), "AIRTWIN-CHANNEL".into());
    stream.insert("seed".into(), Value::Integer(seed.into()));
    stream.insert("clientUUID".into(), "AIRTWIN-CLIENT".into());
    stream.insert("wantsDedicatedSocket".into(), true.into());
    let mut body = Dictionary::new();
    body.insert(
        "streams".into(),
        Value::Array(vec![Value::Dictionary(stream)]),
    );
    let resp = conn.send(&setup(&uri, 3, plist_body(body)?)).await?;
    if resp.status != 200 {
        bail!("stream SETUP: status {}", resp.status);
    }
    let d = answer(&resp.body, "stream SETUP")?;
    let s = d
        .get("streams")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_dictionary)
        .context("stream SETUP: no streams[0]")?;
    let num = |k: &str| s.get(k).and_then(Value::as_unsigned_integer);
    if num("type") != Some(130) {
        bail!(
            "stream SETUP: streams[0].type is {:?}, not 130",
            num("type")
        );
    }
    let stream_id = num("streamID").context("stream SETUP: no streamID")?;
    let data_port = num("dataPort")
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .context("stream SETUP: no dataPort")?;
    say(format!(
        "OK stream SETUP: type 130, streamID {stream_id}, data port {data_port}"
    ));

    let tcp = TcpStream::connect((opts.addr.ip(), data_port))
        .await
        .context("connecting to the data stream")?;
    let mut data = Data {
        stream: tcp,
        channel: Channel::data_stream_controller(&shared, seed),
        plain: Vec::new(),
        seqno: 0x1_0000_0000 + u64::from(rng.gen::<u16>()),
        unreplied: BTreeSet::new(),
        device_seqno: None,
        replies: 0,
        device_syncs: 0,
        timeout: opts.timeout,
        next_id: 0,
    };
    let new = |t: i32| ProtocolMessage::new(t, None, "AIRTWIN".into());

    let id = data
        .send(new(kind::DEVICE_INFO), true)
        .await?
        .unwrap_or_default();
    let (info, _) = data.until(&id).await?;
    let d = info
        .device_info
        .as_ref()
        .filter(|_| info.kind() == kind::DEVICE_INFO)
        .context("DEVICE_INFO answered with another message")?;
    let device_uid = d.device_uid.clone().context("DEVICE_INFO: no deviceUID")?;
    say(format!(
        "OK DEVICE_INFO: {} ({}), build {}, {}",
        d.name.as_deref().unwrap_or("?"),
        d.model_id.as_deref().unwrap_or("?"),
        d.system_build_version.as_deref().unwrap_or("?"),
        if d.logical_device_count.unwrap_or(0) > 0 {
            "awake"
        } else {
            "asleep"
        }
    ));
    let mut m = new(kind::SET_CONNECTION_STATE);
    m.set_connection_state = Some(SetConnectionState { state: Some(2) });
    data.send(m, false).await?;

    let mut m = new(kind::CLIENT_UPDATES_CONFIG);
    m.client_updates_config = Some(ClientUpdatesConfig {
        artwork_updates: Some(true),
        now_playing_updates: Some(false),
        volume_updates: Some(true),
        keyboard_updates: Some(true),
        output_device_updates: Some(true),
    });
    let id = data.send(m, true).await?.unwrap_or_default();
    let (reply, pushed) = data.until(&id).await?;
    if reply.kind() != kind::CLIENT_UPDATES_CONFIG {
        bail!(
            "CLIENT_UPDATES_CONFIG answered with {}",
            message::type_name(reply.kind())
        );
    }
    let state = pushed
        .iter()
        .find(|m| m.kind() == kind::SET_STATE)
        .context("no SET_STATE before the CLIENT_UPDATES_CONFIG answer")?;
    if !pushed
        .iter()
        .any(|m| m.kind() == kind::SET_NOW_PLAYING_CLIENT)
    {
        bail!("no SET_NOW_PLAYING_CLIENT before the CLIENT_UPDATES_CONFIG answer");
    }
    say(format!(
        "OK CLIENT_UPDATES_CONFIG answered after {} pushes: now playing {:?}",
        pushed.len(),
        title(state).unwrap_or_default()
    ));
    let id = data
        .send(new(kind::GET_KEYBOARD_SESSION), true)
        .await?
        .unwrap_or_default();
    let (kb, _) = data.until(&id).await?;
    if kb.kind() != kind::KEYBOARD {
        bail!(
            "GET_KEYBOARD_SESSION answered with {}",
            message::type_name(kb.kind())
        );
    }
    say("OK GET_KEYBOARD_SESSION answered with KEYBOARD".into());

    for call in &opts.calls {
        if let Some(v) = call.strip_prefix("volume=") {
            let v: f32 = v.parse().with_context(|| format!("{call}: not a number"))?;
            let mut m = new(kind::SET_VOLUME);
            m.set_volume = Some(SetVolume {
                volume: Some(v),
                output_device_uid: Some(device_uid.clone()),
            });
            data.send(m, false).await?;
            // No identifier on SET_VOLUME: a GENERIC after it flushes, and the announcement must
            // come before its answer.
            let id = data
                .send(new(kind::GENERIC), true)
                .await?
                .unwrap_or_default();
            let (_, before) = data.until(&id).await?;
            let changed = before
                .iter()
                .filter_map(|m| m.volume_did_change.as_ref())
                .find(|c| c.output_device_uid.as_deref() == Some(device_uid.as_str()))
                .context("SET_VOLUME: no VOLUME_DID_CHANGE for the device")?;
            say(format!(
                "OK volume {v}: VOLUME_DID_CHANGE {}",
                changed.volume.unwrap_or(-1.0)
            ));
            continue;
        }
        let cmd = match call.as_str() {
            "play" => Some(command::PLAY),
            "pause" => Some(command::PAUSE),
            "play_pause" => Some(command::TOGGLE_PLAY_PAUSE),
            "stop" => Some(command::STOP),
            "next" => Some(command::NEXT_TRACK),
            "previous" => Some(command::PREVIOUS_TRACK),
            _ => None,
        };
        if let Some(c) = cmd {
            let mut m = new(kind::SEND_COMMAND);
            m.send_command = Some(SendCommand {
                command: Some(c),
                options: None,
            });
            let id = data.send(m, true).await?.unwrap_or_default();
            let (r, mut pushed) = data.until(&id).await?;
            let result = r
                .send_command_result
                .as_ref()
                .filter(|_| r.kind() == kind::SEND_COMMAND_RESULT)
                .with_context(|| {
                    format!("{call}: answered with {}", message::type_name(r.kind()))
                })?;
            if result.send_error != Some(0) {
                bail!("{call}: sendError {:?}", result.send_error);
            }
            // The change is pushed (before the result or after it): a GENERIC flush collects
            // what came before its answer.
            let id = data
                .send(new(kind::GENERIC), true)
                .await?
                .unwrap_or_default();
            let (_, after) = data.until(&id).await?;
            pushed.extend(after);
            let after = pushed;
            let st = after
                .iter()
                .rev()
                .find_map(|m| m.set_state.as_ref())
                .with_context(|| format!("{call}: no SET_STATE pushed after the command"))?;
            let ps = match st.playback_state {
                Some(playback_state::PLAYING) => "playing",
                Some(playback_state::PAUSED) => "paused",
                Some(playback_state::STOPPED) => "stopped",
                _ => "unknown",
            };
            let t = after.iter().rev().find_map(title).unwrap_or_default();
            say(format!(
                "OK {call}: SEND_COMMAND_RESULT no error; SET_STATE {ps} {t:?}"
            ));
            continue;
        }
        let (page, usage) =
            message::key_usage(call).with_context(|| format!("{call}: no such command or key"))?;
        data.send(hid(page, usage, true), false).await?;
        data.send(hid(page, usage, false), false).await?;
        let id = data
            .send(new(kind::GENERIC), true)
            .await?
            .unwrap_or_default();
        data.until(&id).await?;
        say(format!("OK key {call}: down, up, GENERIC answered"));
    }

    // Every sync of ours must have its rply by now: a last GENERIC waits for the stragglers.
    let id = data
        .send(new(kind::GENERIC), true)
        .await?
        .unwrap_or_default();
    data.until(&id).await?;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    while !data.unreplied.is_empty() && tokio::time::Instant::now() < deadline {
        let f = tokio::time::timeout_at(deadline, data.frame()).await;
        match f {
            Ok(Ok(f)) if f.message_type == "rply" => {
                data.unreplied.remove(&f.seqno);
                data.replies += 1;
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    if !data.unreplied.is_empty() {
        bail!("no rply to our sync frames {:?}", data.unreplied);
    }
    say(format!(
        "OK frames: {} rply for our syncs, {} syncs from the device, seqnos counting up",
        data.replies, data.device_syncs
    ));
    events.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if seen.is_empty() {
        bail!("the device sent nothing on the event channel");
    }
    say(format!("OK event channel: {} answered", seen.join(", ")));
    Ok(())
}
