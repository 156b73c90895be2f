//! AirPlay 2 sessions on the encrypted control connection (docs/protocols/airplay.md,
//! "AirPlay 2 audio"): SETUP requests whose body is a binary plist. The first SETUP of a
//! session has no `streams` and sets up the session (timing, the event channel); later ones
//! carry `streams`, each with a numeric `type` ([`StreamType`]) and the parameters of that type.
//!
//! This module reads those bodies and writes the answers; [`super::server`] opens the ports.

use std::sync::Arc;

use plist::{Dictionary, Value};

use super::events::EventChannel;
use super::info;
use super::server::{AirplayConn, AirplayCore};
use crate::mrp::channel::DataChannel;
use crate::protocol_core::{
    ConnInfo, Context, Outcome, PortRequest, ProtocolCore, TcpRequest, UdpRequest,
};
use crate::raop::audio::{AudioFormat, AudioReceiver};
use crate::raop::state::SessionRecord;
use crate::stream_core::{Accept, StreamConn};
use crate::wire::{Request, Response};

/// The `type` of a stream in a SETUP's `streams` (docs/protocols/airplay.md, "Stream types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    /// 96: realtime audio over RTP/UDP, what pyatv's `stream_file` sends.
    RealtimeAudio,
    /// 103: buffered audio over TCP.
    BufferedAudio,
    /// 110: screen mirroring.
    Screen,
    /// 130: the remote-control data stream (MRP tunnelled over AirPlay).
    RemoteControl,
    /// Any other value.
    Other(i128),
}

impl StreamType {
    pub fn from_code(code: i128) -> Self {
        match code {
            96 => StreamType::RealtimeAudio,
            103 => StreamType::BufferedAudio,
            110 => StreamType::Screen,
            130 => StreamType::RemoteControl,
            other => StreamType::Other(other),
        }
    }

    pub fn code(self) -> i128 {
        match self {
            StreamType::RealtimeAudio => 96,
            StreamType::BufferedAudio => 103,
            StreamType::Screen => 110,
            StreamType::RemoteControl => 130,
            StreamType::Other(c) => c,
        }
    }
}

impl std::fmt::Display for StreamType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StreamType::RealtimeAudio => "realtime audio",
            StreamType::BufferedAudio => "buffered audio",
            StreamType::Screen => "screen",
            StreamType::RemoteControl => "remote control",
            StreamType::Other(_) => "unknown",
        };
        write!(f, "{} ({name})", self.code())
    }
}

/// Why a SETUP body cannot be used; answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("body is not a binary plist dictionary: {0}")]
    Plist(String),
    #[error("stream {index}: {why}")]
    Stream { index: usize, why: String },
}

/// The first SETUP of a session: what the controller says about itself and its clock.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionSetup {
    /// `timingProtocol`: `NTP`, `PTP` or `None`.
    pub timing_protocol: Option<String>,
    /// `timingPort`: the controller's NTP port.
    pub timing_port: Option<u16>,
    /// `isRemoteControlOnly`: a session for the remote-control data stream only.
    pub remote_control_only: bool,
    pub device_id: Option<String>,
    pub session_uuid: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
}

/// A realtime audio stream (type 96).
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeAudio {
    /// `ct`: compression type, 1 = PCM (docs/protocols/airplay.md).
    pub compression: i128,
    /// `audioFormat`: a bit of the audio formats table (0x800 = 44100 Hz, 16 bit, stereo PCM).
    pub audio_format: i128,
    /// `spf`: frames per packet.
    pub frames_per_packet: u32,
    /// `sr`: sample rate.
    pub sample_rate: u32,
    /// `shk`: the key sealing every packet.
    pub shk: [u8; 32],
    /// `controlPort`: the controller's port for retransmit requests.
    pub control_port: Option<u16>,
}

/// A remote-control data stream (type 130, docs/protocols/mrp.md, "Setting up the tunnel").
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteControl {
    /// `seed`: the stream's keys are derived under `DataStream-Salt<seed>`.
    pub seed: u64,
    /// `clientUUID`.
    pub client_uuid: Option<String>,
    /// `channelID`.
    pub channel_id: Option<String>,
}

/// One entry of `streams`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSetup {
    RealtimeAudio(RealtimeAudio),
    RemoteControl(RemoteControl),
    /// A type this device does not serve (yet); its dictionary as sent.
    Unsupported(StreamType, Dictionary),
}

impl StreamSetup {
    pub fn stream_type(&self) -> StreamType {
        match self {
            StreamSetup::RealtimeAudio(_) => StreamType::RealtimeAudio,
            StreamSetup::RemoteControl(_) => StreamType::RemoteControl,
            StreamSetup::Unsupported(t, _) => *t,
        }
    }
}

/// What one SETUP with a plist body asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupRequest {
    Session(SessionSetup),
    Streams(Vec<StreamSetup>),
}

fn int(d: &Dictionary, key: &str) -> Option<i128> {
    match d.get(key)? {
        Value::Integer(i) => i
            .as_signed()
            .map(i128::from)
            .or_else(|| i.as_unsigned().map(i128::from)),
        _ => None,
    }
}

fn text(d: &Dictionary, key: &str) -> Option<String> {
    d.get(key).and_then(Value::as_string).map(str::to_string)
}

fn port(d: &Dictionary, key: &str) -> Option<u16> {
    int(d, key).and_then(|p| u16::try_from(p).ok())
}

/// Reads a SETUP body.
pub fn parse_setup(body: &[u8]) -> Result<SetupRequest, SetupError> {
    let value = Value::from_reader(std::io::Cursor::new(body))
        .map_err(|e| SetupError::Plist(e.to_string()))?;
    let Some(d) = value.into_dictionary() else {
        return Err(SetupError::Plist("not a dictionary".into()));
    };
    let Some(streams) = d.get("streams") else {
        return Ok(SetupRequest::Session(SessionSetup {
            timing_protocol: text(&d, "timingProtocol"),
            timing_port: port(&d, "timingPort"),
            remote_control_only: d
                .get("isRemoteControlOnly")
                .and_then(Value::as_boolean)
                .unwrap_or(false),
            device_id: text(&d, "deviceID"),
            session_uuid: text(&d, "sessionUUID"),
            name: text(&d, "name"),
            model: text(&d, "model"),
        }));
    };
    let Some(streams) = streams.as_array() else {
        return Err(SetupError::Stream {
            index: 0,
            why: "streams is not an array".into(),
        });
    };
    streams
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let bad = |why: &str| SetupError::Stream {
                index,
                why: why.to_string(),
            };
            let s = s.as_dictionary().ok_or_else(|| bad("not a dictionary"))?;
            let kind = StreamType::from_code(int(s, "type").ok_or_else(|| bad("no type"))?);
            match kind {
                StreamType::RealtimeAudio => {
                    let shk = s
                        .get("shk")
                        .and_then(Value::as_data)
                        .and_then(|k| <[u8; 32]>::try_from(k).ok())
                        .ok_or_else(|| bad("shk must be 32 bytes of data"))?;
                    let small = |key: &str| {
                        int(s, key)
                            .and_then(|v| u32::try_from(v).ok())
                            .filter(|v| *v > 0)
                            .ok_or_else(|| bad(&format!("{key} must be a positive integer")))
                    };
                    Ok(StreamSetup::RealtimeAudio(RealtimeAudio {
                        compression: int(s, "ct").ok_or_else(|| bad("no ct"))?,
                        audio_format: int(s, "audioFormat").unwrap_or(0),
                        frames_per_packet: small("spf")?,
                        sample_rate: small("sr")?,
                        shk,
                        control_port: port(s, "controlPort"),
                    }))
                }
                StreamType::RemoteControl => {
                    let seed = match s.get("seed") {
                        Some(Value::Integer(i)) => {
                            i.as_unsigned().or_else(|| i.as_signed().map(|v| v as u64))
                        }
                        _ => None,
                    }
                    .ok_or_else(|| bad("seed must be an integer"))?;
                    Ok(StreamSetup::RemoteControl(RemoteControl {
                        seed,
                        client_uuid: text(s, "clientUUID"),
                        channel_id: text(s, "channelID"),
                    }))
                }
                other => Ok(StreamSetup::Unsupported(other, s.clone())),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SetupRequest::Streams)
}

/// The answer to the session SETUP: `{eventPort}` (and `timingPort` 0: this device does not query
/// the controller's clock).
pub fn session_answer(event_port: u16) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert(
        "eventPort".into(),
        Value::Integer(u64::from(event_port).into()),
    );
    d.insert("timingPort".into(), Value::Integer(0u64.into()));
    d
}

/// One entry of the answer's `streams`: the stream's `type`, its `streamID`, and its ports.
pub fn stream_answer(kind: StreamType, stream_id: u64, ports: &[(&str, u16)]) -> Value {
    let mut d = Dictionary::new();
    d.insert(
        "type".into(),
        Value::Integer(u64::try_from(kind.code()).unwrap_or(0).into()),
    );
    d.insert("streamID".into(), Value::Integer(stream_id.into()));
    for (name, port) in ports {
        d.insert((*name).into(), Value::Integer(u64::from(*port).into()));
    }
    Value::Dictionary(d)
}

/// `{streams: [...]}`.
pub fn streams_answer(streams: Vec<Value>) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("streams".into(), Value::Array(streams));
    d
}

/// Where one control connection's AirPlay 2 session stands.
#[derive(Default)]
pub struct SessionConn {
    /// The secret of the pairing that encrypted this connection (transient pair-setup or
    /// pair-verify): the root of the event channel's keys.
    pub shared: Option<Vec<u8>>,
    /// The session SETUP, once answered.
    pub session: Option<SessionSetup>,
    pub event_port: Option<u16>,
    /// Streams set up and not torn down: type, `streamID`, receiver.
    pub streams: Vec<(StreamType, u64, Arc<AudioReceiver>)>,
    /// RECORD received.
    pub recording: bool,
    pending: Option<Pending>,
    next_stream_id: u64,
    counts_as_active: bool,
}

/// What the ports being opened are for.
enum Pending {
    Session(SessionSetup),
    Audio(Arc<AudioReceiver>),
    RemoteControl,
}

/// Whether `req` carries a binary plist, which makes a SETUP an AirPlay 2 one.
pub fn is_plist(req: &Request) -> bool {
    req.headers
        .get("Content-Type")
        .is_some_and(|c| c.eq_ignore_ascii_case("application/x-apple-binary-plist"))
}

impl AirplayCore {
    /// SETUP with a plist body (docs/protocols/airplay.md, "AirPlay 2 audio").
    pub(super) fn airplay2_setup(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        cx: &mut Context<'_>,
    ) -> Outcome {
        let Some(shared) = conn.session.shared.clone() else {
            // Without pairing there are no keys for the event channel: a real Apple TV answers
            // 470 Connection Authorization Required (docs/protocols/hap.md).
            return self.refuse(conn, req, 470, "AirPlay 2 SETUP before pairing", cx);
        };
        let setup = match parse_setup(&req.body) {
            Ok(s) => s,
            Err(e) => return self.refuse(conn, req, 400, &format!("SETUP: {e}"), cx),
        };
        match setup {
            SetupRequest::Session(s) => {
                if let Some(port) = conn.session.event_port {
                    cx.warn(
                        "a second session SETUP on this connection; answered the same eventPort",
                    );
                    return self.plist(conn, req, session_answer(port), cx);
                }
                cx.info(format!(
                    "AirPlay 2 session: timing {}{}",
                    s.timing_protocol.as_deref().unwrap_or("unset"),
                    if s.remote_control_only {
                        ", remote control only"
                    } else {
                        ""
                    }
                ));
                conn.session.pending = Some(Pending::Session(s));
                let info = info::info_dict(&self.config.info, true);
                let record = self.events.clone();
                let accept = Accept(Arc::new(move |_: &ConnInfo| {
                    Box::new(EventChannel::new(&shared, info.clone(), record.clone()))
                        as Box<dyn StreamConn>
                }));
                Outcome::OpenPorts(vec![PortRequest::Tcp(TcpRequest {
                    name: "event",
                    protocol: "airplay-events",
                    accept,
                })])
            }
            SetupRequest::Streams(streams) => {
                if conn.session.session.is_none() {
                    return self.refuse(
                        conn,
                        req,
                        455,
                        "SETUP with streams before the session SETUP",
                        cx,
                    );
                }
                // One stream per SETUP, as senders send them; a type this device does not serve
                // is refused whole.
                let [stream] = &streams[..] else {
                    return self.refuse(conn, req, 400, "SETUP must carry exactly one stream", cx);
                };
                match stream {
                    StreamSetup::RealtimeAudio(a) => self.realtime_audio(conn, req, a, cx),
                    StreamSetup::RemoteControl(r) => self.remote_control(conn, req, r, shared, cx),
                    StreamSetup::Unsupported(kind, _) => self.refuse(
                        conn,
                        req,
                        400,
                        &format!("stream type {kind} is not served by this device"),
                        cx,
                    ),
                }
            }
        }
    }

    /// The MRP tunnel's data stream (docs/protocols/mrp.md, "Setting up the tunnel"): a TCP
    /// port whose connections carry MRP sealed under keys from `seed`.
    fn remote_control(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        r: &RemoteControl,
        shared: Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Outcome {
        let Some(mrp) = self.mrp.clone() else {
            return self.refuse(
                conn,
                req,
                400,
                "stream type 130 (remote control): this device has no MRP side",
                cx,
            );
        };
        cx.info(format!(
            "remote control stream: seed {}, client {}",
            r.seed,
            r.client_uuid.as_deref().unwrap_or("unnamed")
        ));
        conn.session.pending = Some(Pending::RemoteControl);
        let seed = r.seed;
        let accept = Accept(Arc::new(move |info: &ConnInfo| {
            Box::new(DataChannel::new(&shared, seed, mrp.clone(), info.index))
                as Box<dyn StreamConn>
        }));
        Outcome::OpenPorts(vec![PortRequest::Tcp(TcpRequest {
            name: "data",
            protocol: "mrp",
            accept,
        })])
    }

    fn realtime_audio(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        a: &RealtimeAudio,
        cx: &mut Context<'_>,
    ) -> Outcome {
        // ct 1 is PCM, big-endian 16-bit samples as in RAOP's L16 (docs/protocols/airplay.md).
        if a.compression != 1 {
            return self.refuse(
                conn,
                req,
                400,
                &format!(
                    "compression type ct={} is not served; only 1 (PCM)",
                    a.compression
                ),
                cx,
            );
        }
        let format = AudioFormat::l16(a.sample_rate, 2, a.frames_per_packet);
        let receiver;
        {
            let mut st = self.raop.state.lock().unwrap_or_else(|e| e.into_inner());
            // One sender at a time, as for AirTunes v2's ANNOUNCE (docs/protocols/raop.md): a
            // second sender's stream SETUP is answered 453 while the first one streams.
            if !conn.session.counts_as_active && st.active_sessions >= self.raop.config.max_sessions
            {
                drop(st);
                return self.refuse(conn, req, 453, "busy: another sender is streaming", cx);
            }
            let number = st.sessions_started;
            st.sessions_started += 1;
            // Bounded like an AirTunes v2 session's capture when the device serves for long
            // (`serve`): the last packets in memory, older samples streamed to its sink.
            let capture = &self.raop.config.capture;
            receiver = Arc::new(
                capture
                    .receiver(&cx.conn.device, number, format, None)
                    .sealed_with(a.shk),
            );
            if let Some(keep) = capture.sessions {
                let excess = (st.sessions.len() + 1).saturating_sub(keep.max(1));
                for old in st.sessions.drain(..excess) {
                    old.receiver.finish_stream();
                }
            }
            st.sessions.push(SessionRecord {
                number,
                connection: cx.conn.index,
                peer: cx.conn.peer,
                rtpmap: format!("L16/{}/2", a.sample_rate),
                encrypted: true,
                dacp_id: req.headers.get("DACP-ID").map(str::to_string),
                active_remote: req.headers.get("Active-Remote").map(str::to_string),
                user_agent: req.headers.get("User-Agent").map(str::to_string),
                receiver: receiver.clone(),
            });
            st.sessions_total += 1;
            if !conn.session.counts_as_active {
                st.active_sessions += 1;
            }
        }
        conn.session.counts_as_active = true;
        cx.info(format!(
            "realtime audio stream: PCM {} Hz, {} frames per packet, ChaCha20-Poly1305",
            a.sample_rate, a.frames_per_packet
        ));
        conn.session.pending = Some(Pending::Audio(receiver.clone()));
        Outcome::OpenPorts(vec![
            PortRequest::Udp(UdpRequest {
                name: "data",
                handler: receiver.server_port(),
                lossy: true,
            }),
            PortRequest::Udp(UdpRequest {
                name: "control",
                handler: receiver.control_port(),
                lossy: false,
            }),
        ])
    }

    /// The ports of an AirPlay 2 SETUP are open: the answer. `None` when no AirPlay 2 SETUP
    /// waited for them.
    pub(super) fn airplay2_complete(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        ports: &[u16],
        cx: &mut Context<'_>,
    ) -> Option<Response> {
        let pending = conn.session.pending.take()?;
        if ports.is_empty() || ports.contains(&0) {
            return Some(
                self.respond(conn, req, 500, cx)
                    .with_reason_text("could not open ports"),
            );
        }
        let dict = match pending {
            Pending::Session(s) => {
                conn.session.session = Some(s);
                conn.session.event_port = Some(ports[0]);
                cx.info(format!("event channel on tcp {}", ports[0]));
                session_answer(ports[0])
            }
            Pending::RemoteControl => {
                let id = conn.session.next_stream_id;
                conn.session.next_stream_id += 1;
                cx.info(format!("MRP data stream on tcp {}", ports[0]));
                streams_answer(vec![stream_answer(
                    StreamType::RemoteControl,
                    id,
                    &[("dataPort", ports[0])],
                )])
            }
            Pending::Audio(receiver) => {
                let (data, control) = (ports[0], ports.get(1).copied().unwrap_or(0));
                let id = conn.session.next_stream_id;
                conn.session.next_stream_id += 1;
                conn.session
                    .streams
                    .push((StreamType::RealtimeAudio, id, receiver));
                cx.info(format!("audio on udp {data}, control {control}"));
                streams_answer(vec![stream_answer(
                    StreamType::RealtimeAudio,
                    id,
                    &[("dataPort", data), ("controlPort", control)],
                )])
            }
        };
        Some(match info::encode(dict) {
            Ok(body) => self
                .respond(conn, req, 200, cx)
                .with_body("application/x-apple-binary-plist", body),
            Err(e) => self
                .respond(conn, req, 500, cx)
                .with_reason_text(&format!("plist: {e}")),
        })
    }

    /// RECORD, FLUSH and TEARDOWN of a connection with an AirPlay 2 session.
    pub(super) fn airplay2_control(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        cx: &mut Context<'_>,
    ) -> Outcome {
        match req.method.as_str() {
            "RECORD" => {
                conn.session.recording = true;
                Outcome::Respond(self.respond(conn, req, 200, cx))
            }
            "TEARDOWN" => {
                // With `streams`, only those streams end; without a body, the whole session. The
                // control connection stays open either way (docs/protocols/airplay.md).
                let only: Option<Vec<StreamType>> = match parse_setup(&req.body) {
                    Ok(SetupRequest::Streams(s)) => {
                        Some(s.iter().map(StreamSetup::stream_type).collect())
                    }
                    _ => None,
                };
                match only {
                    Some(types) => conn.session.streams.retain(|(t, _, _)| !types.contains(t)),
                    None => {
                        conn.session.streams.clear();
                        conn.session.session = None;
                        conn.session.event_port = None;
                        conn.session.recording = false;
                    }
                }
                if conn.session.streams.is_empty() {
                    self.release_airplay2(&mut conn.session);
                }
                Outcome::Respond(self.respond(conn, req, 200, cx))
            }
            // FLUSH: the receiver drops what it buffered; the capture keeps what arrived.
            _ => Outcome::Respond(self.respond(conn, req, 200, cx)),
        }
    }

    /// The session no longer counts as an active sender.
    pub(super) fn release_airplay2(&self, s: &mut SessionConn) {
        if s.counts_as_active {
            s.counts_as_active = false;
            let mut st = self.raop.state.lock().unwrap_or_else(|e| e.into_inner());
            st.active_sessions = st.active_sessions.saturating_sub(1);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The session SETUP body pyatv's `stream_file` sends (docs/peers.md, "pyatv: AirPlay 2 audio").
    pub(crate) fn pyatv_session_body() -> Vec<u8> {
        let mut d = Dictionary::new();
        d.insert("deviceID".into(), "AA:BB:CC:DD:EE:FF".into());
        d.insert(
            "sessionUUID".into(),
            "5A8B0C3E-0000-4000-8000-000000000001".into(),
        );
        d.insert("timingPort".into(), Value::Integer(51000u64.into()));
        d.insert("timingProtocol".into(), "NTP".into());
        d.insert("isMultiSelectAirPlay".into(), true.into());
        d.insert("model".into(), "iPhone14,3".into());
        d.insert("name".into(), "pyatv".into());
        encode(d)
    }

    /// The stream SETUP body pyatv sends: type 0x60, ct 1, audioFormat 0x800, spf 352, sr 44100.
    pub(crate) fn pyatv_stream_body(shk: [u8; 32], kind: u64) -> Vec<u8> {
        let mut s = Dictionary::new();
        s.insert("audioFormat".into(), Value::Integer(0x800u64.into()));
        s.insert("audioMode".into(), "default".into());
        s.insert("controlPort".into(), Value::Integer(51001u64.into()));
        s.insert("ct".into(), Value::Integer(1u64.into()));
        s.insert("isMedia".into(), true.into());
        s.insert("latencyMax".into(), Value::Integer(88200u64.into()));
        s.insert("latencyMin".into(), Value::Integer(11025u64.into()));
        s.insert("shk".into(), Value::Data(shk.to_vec()));
        s.insert("spf".into(), Value::Integer(352u64.into()));
        s.insert("sr".into(), Value::Integer(44100u64.into()));
        s.insert("type".into(), Value::Integer(kind.into()));
        let mut d = Dictionary::new();
        d.insert("streams".into(), Value::Array(vec![Value::Dictionary(s)]));
        encode(d)
    }

    fn encode(d: Dictionary) -> Vec<u8> {
        let mut out = Vec::new();
        Value::Dictionary(d).to_writer_binary(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_pyatvs_two_setups() {
        let SetupRequest::Session(s) = parse_setup(&pyatv_session_body()).unwrap() else {
            panic!("a session SETUP");
        };
        assert_eq!(s.timing_protocol.as_deref(), Some("NTP"));
        assert_eq!(s.timing_port, Some(51000));
        assert!(!s.remote_control_only);
        let SetupRequest::Streams(streams) =
            parse_setup(&pyatv_stream_body([9; 32], 0x60)).unwrap()
        else {
            panic!("a streams SETUP");
        };
        assert_eq!(
            streams,
            vec![StreamSetup::RealtimeAudio(RealtimeAudio {
                compression: 1,
                audio_format: 0x800,
                frames_per_packet: 352,
                sample_rate: 44100,
                shk: [9; 32],
                control_port: Some(51001),
            })]
        );
    }

    #[test]
    fn other_stream_types_are_named_and_kept() {
        let SetupRequest::Streams(streams) = parse_setup(&pyatv_stream_body([9; 32], 110)).unwrap()
        else {
            panic!("a streams SETUP");
        };
        assert_eq!(streams[0].stream_type(), StreamType::Screen);
        assert_eq!(StreamType::from_code(7), StreamType::Other(7));
        assert_eq!(StreamType::from_code(7).to_string(), "7 (unknown)");
        for code in [96, 103, 110, 130, 5] {
            assert_eq!(StreamType::from_code(code).code(), code);
        }
    }

    /// The type-130 stream pyatv's `setup_remote_control` sends (docs/protocols/mrp.md).
    #[test]
    fn a_remote_control_stream_carries_its_seed() {
        let mut st = Dictionary::new();
        st.insert("controlType".into(), Value::Integer(2u64.into()));
        st.insert("channelID".into(), "C-1".into());
        st.insert("seed".into(), Value::Integer(u64::MAX.into()));
        st.insert("clientUUID".into(), "U-1".into());
        st.insert("type".into(), Value::Integer(130u64.into()));
        st.insert("wantsDedicatedSocket".into(), true.into());
        let mut d = Dictionary::new();
        d.insert("streams".into(), Value::Array(vec![Value::Dictionary(st)]));
        let SetupRequest::Streams(streams) = parse_setup(&encode(d)).unwrap() else {
            panic!("a streams SETUP");
        };
        assert_eq!(
            streams,
            [StreamSetup::RemoteControl(RemoteControl {
                seed: u64::MAX,
                client_uuid: Some("U-1".into()),
                channel_id: Some("C-1".into()),
            })]
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(parse_setup(b"nope"), Err(SetupError::Plist(_))));
        let mut s = Dictionary::new();
        s.insert("type".into(), Value::Integer(96u64.into()));
        s.insert("shk".into(), Value::Data(vec![1; 5]));
        let mut d = Dictionary::new();
        d.insert("streams".into(), Value::Array(vec![Value::Dictionary(s)]));
        assert!(matches!(
            parse_setup(&encode(d)),
            Err(SetupError::Stream { index: 0, .. })
        ));
    }

    use crate::airplay::server::AirplayConfig;
    use crate::fault::CoreParams;
    use crate::protocol_core::Note;
    use crate::raop::audio::{encode_l16, open_sealed, seal};
    use crate::testkit;
    use std::time::{Duration, SystemTime};

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn tv() -> AirplayCore {
        let config = AirplayConfig::apple_tv_4k("tv", 3);
        let raop = config.raop_config(3);
        AirplayCore::new(config, raop)
    }

    fn setup(body: Vec<u8>, cseq: u32) -> Request {
        let mut r = testkit::rtsp("SETUP", "rtsp://127.0.0.1/1", cseq);
        r.headers
            .set("Content-Type", "application/x-apple-binary-plist");
        r.body = body;
        r
    }

    fn warnings(notes: &[Note]) -> Vec<&str> {
        notes
            .iter()
            .filter_map(|n| match n {
                Note::Warning(w) => Some(w.as_str()),
                Note::Info(_) => None,
            })
            .collect()
    }

    fn answer(resp: &Response) -> Dictionary {
        Value::from_reader(std::io::Cursor::new(&resp.body))
            .unwrap()
            .into_dictionary()
            .unwrap()
    }

    /// The sealed-packet layout, against a vector made with Python's `cryptography` package:
    ///   ChaCha20Poly1305(bytes(range(32))).encrypt(struct.pack("<LQ", 0, 5),
    ///       bytes([0, 1, 2, 3]) * 4, header[4:12])
    /// with header 806000010000016012345678, then the nonce's last 8 bytes appended.
    #[test]
    fn sealed_audio_known_answer() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let header: [u8; 12] = [0x80, 0x60, 0, 1, 0, 0, 1, 0x60, 0x12, 0x34, 0x56, 0x78];
        let payload = [0u8, 1, 2, 3].repeat(4);
        let packet = seal(&key, &header, &payload, 5);
        assert_eq!(
            crate::wire::hex::encode(&packet),
            "806000010000016012345678230994094524453d8bab3b4b25b432a05580107679cc3b630dc022ab24eef15c0500000000000000"
        );
        assert_eq!(open_sealed(&key, &packet).unwrap(), payload);
        let mut bad = packet.clone();
        bad[9] ^= 1; // the SSRC is authenticated
        assert!(open_sealed(&key, &bad).is_err());
        assert!(open_sealed(&key, &packet[..30]).is_err());
    }

    #[test]
    fn pyatvs_airplay2_session_captures_the_sealed_audio() {
        let svc = tv();
        let info = testkit::conn("tv", 0, 7000);
        let mut c = svc.open(&info);
        c.session.shared = Some(vec![4; 64]);
        let p = CoreParams::default();
        let (resp, notes) = testkit::drive(
            &svc,
            &mut c,
            &info,
            &setup(pyatv_session_body(), 1),
            &p,
            at(),
        );
        assert_eq!(resp.status, 200, "{notes:?}");
        assert_eq!(answer(&resp)["eventPort"].as_unsigned_integer(), Some(6000));
        let shk = [0x5A; 32];
        let (resp, notes) = testkit::drive(
            &svc,
            &mut c,
            &info,
            &setup(pyatv_stream_body(shk, 0x60), 2),
            &p,
            at(),
        );
        assert_eq!(resp.status, 200, "{notes:?}");
        let streams = answer(&resp)["streams"].as_array().unwrap().clone();
        let s = streams[0].as_dictionary().unwrap();
        assert_eq!(s["type"].as_unsigned_integer(), Some(96));
        assert_eq!(s["dataPort"].as_unsigned_integer(), Some(6000));
        assert_eq!(s["controlPort"].as_unsigned_integer(), Some(6001));
        assert!(warnings(&notes).is_empty());

        // Two packets of PCM sealed as pyatv seals them, the second one first.
        let receiver = c.session.streams[0].2.clone();
        let source = crate::raop::audio::tests::signal(352 * 2, 2);
        let packets: Vec<Vec<u8>> = source
            .chunks(352 * 2)
            .enumerate()
            .map(|(i, chunk)| {
                let seq = (100 + i as u16).to_be_bytes();
                let ts = (352 * i as u32).to_be_bytes();
                let mut header = [0x80, 0x60, seq[0], seq[1], 0, 0, 0, 0, 0, 0, 0, 7];
                header[4..8].copy_from_slice(&ts);
                seal(&shk, &header, &encode_l16(chunk), i as u64)
            })
            .collect();
        let from = "127.0.0.1:5000".parse().unwrap();
        let data = receiver.server_port();
        data.on_datagram(&packets[1], from, at());
        data.on_datagram(&packets[0], from, at());
        // A packet sealed under another key is a decode error, never a panic.
        data.on_datagram(
            &seal(
                &[1; 32],
                &[0x80, 0x60, 0, 102, 0, 0, 0, 0, 0, 0, 0, 7],
                &[0; 8],
                2,
            ),
            from,
            at(),
        );
        assert_eq!(receiver.pcm(), source);
        assert_eq!(receiver.stats().decode_errors, 1);
        assert!(receiver.is_encrypted());

        for (i, method) in ["RECORD", "FLUSH", "TEARDOWN"].into_iter().enumerate() {
            let r = testkit::rtsp(method, "rtsp://127.0.0.1/1", 3 + i as u32);
            let (resp, notes) = testkit::drive(&svc, &mut c, &info, &r, &p, at());
            assert_eq!(resp.status, 200, "{method}: {notes:?}");
        }
        assert!(c.session.session.is_none() && c.session.streams.is_empty());
        let st = svc.raop.state.lock().unwrap();
        assert_eq!((st.sessions_total, st.active_sessions), (1, 0));
        assert!(st.sessions[0].encrypted);
    }

    #[test]
    fn a_second_sender_is_busy_until_the_first_tears_down() {
        let svc = tv();
        let p = CoreParams::default();
        let stream = |svc: &AirplayCore, c: &mut AirplayConn, info: &ConnInfo| {
            c.session.shared = Some(vec![4; 64]);
            let (resp, _) = testkit::drive(svc, c, info, &setup(pyatv_session_body(), 1), &p, at());
            assert_eq!(resp.status, 200);
            let body = pyatv_stream_body([1; 32], 0x60);
            testkit::drive(svc, c, info, &setup(body, 2), &p, at())
        };
        let (info_a, info_b) = (testkit::conn("tv", 0, 7000), testkit::conn("tv", 1, 7000));
        let (mut a, mut b) = (svc.open(&info_a), svc.open(&info_b));
        assert_eq!(stream(&svc, &mut a, &info_a).0.status, 200);
        let (resp, notes) = stream(&svc, &mut b, &info_b);
        assert_eq!((resp.status, warnings(&notes).len()), (453, 1));
        let teardown = testkit::rtsp("TEARDOWN", "rtsp://127.0.0.1/1", 3);
        assert_eq!(
            testkit::drive(&svc, &mut a, &info_a, &teardown, &p, at())
                .0
                .status,
            200
        );
        let body = pyatv_stream_body([1; 32], 0x60);
        let (resp, _) = testkit::drive(&svc, &mut b, &info_b, &setup(body, 3), &p, at());
        assert_eq!(resp.status, 200);
    }

    #[test]
    fn setups_out_of_place_get_what_a_receiver_answers() {
        let svc = tv();
        let info = testkit::conn("tv", 0, 7000);
        let p = CoreParams::default();
        // Before pairing: 470.
        let mut c = svc.open(&info);
        let (resp, notes) = testkit::drive(
            &svc,
            &mut c,
            &info,
            &setup(pyatv_session_body(), 1),
            &p,
            at(),
        );
        assert_eq!((resp.status, warnings(&notes).len()), (470, 1));
        c.session.shared = Some(vec![4; 64]);
        // Streams before the session: 455.
        let body = pyatv_stream_body([1; 32], 96);
        let (resp, notes) = testkit::drive(&svc, &mut c, &info, &setup(body, 2), &p, at());
        assert_eq!((resp.status, warnings(&notes).len()), (455, 1));
        let (resp, _) = testkit::drive(
            &svc,
            &mut c,
            &info,
            &setup(pyatv_session_body(), 3),
            &p,
            at(),
        );
        assert_eq!(resp.status, 200);
        // A type this device does not serve, and garbage: 400 and one warning each.
        for body in [
            pyatv_stream_body([1; 32], 130),
            pyatv_stream_body([1; 32], 7),
            b"bplist00junk".to_vec(),
        ] {
            let (resp, notes) = testkit::drive(&svc, &mut c, &info, &setup(body, 4), &p, at());
            assert_eq!((resp.status, warnings(&notes).len()), (400, 1), "{notes:?}");
        }
        assert!(c.session.streams.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_setup(&body);
            let mut b = b"bplist00".to_vec();
            b.extend(&body);
            let _ = parse_setup(&b);
        }
    }
}
