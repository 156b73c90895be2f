//! The RAOP receiver's RTSP state machine (AirTunes v2, as an AirPort Express answers it).
//!
//! A sender's session: OPTIONS (optionally with `Apple-Challenge`) → ANNOUNCE (SDP with codec and,
//! when encrypted, `rsaaeskey`/`aesiv`) → SETUP (Transport: the receiver opens its audio, control
//! and timing UDP ports) → RECORD → audio over RTP → FLUSH / SET_PARAMETER … → TEARDOWN.
//! pyatv also sends `GET /info`, `POST /auth-setup` and `POST /feedback` on the same connection
//! (docs/peers.md). A request out of order gets 455 (RFC 2326 §11.3.6), an unknown method 501.

use std::sync::{Arc, Mutex};

use super::audio::{AesParams, AudioFormat, AudioReceiver, Port, PortHandler};
use super::challenge::{self, decode_b64};
use super::keys::{self, DeviceKey};
use super::state::{CapturePolicy, RaopState, SessionRecord};
use crate::protocol_core::{ConnInfo, Context, Outcome, ProtocolCore, UdpRequest};
use crate::wire::sdp::{self, Announce};
use crate::wire::transport::Transport;
use crate::wire::{dmap, Request, Response};

/// How a RAOP receiver presents itself and what it allows.
#[derive(Clone)]
pub struct RaopConfig {
    /// Device name (the part after `@` of the `_raop._tcp` instance name).
    pub name: String,
    /// The 6-byte id signed into `Apple-Response`: the hex prefix of the `_raop._tcp` instance
    /// name, usually the MAC address (docs/protocols/raop.md).
    pub hw_addr: [u8; 6],
    pub key: Arc<DeviceKey>,
    /// `Server: AirTunes/<version>` (docs/protocols/airplay.md uses 220.68).
    pub source_version: String,
    /// `Audio-Jack-Status` value; an AirPort Express reports an analog jack.
    pub audio_jack: String,
    /// `Audio-Latency` answered on RECORD, in samples.
    pub audio_latency: u32,
    /// Sessions allowed at once; an ANNOUNCE beyond that gets 453.
    pub max_sessions: usize,
    /// Fixed `Session` value; when absent each connection gets one derived from `seed`.
    pub session_id: Option<String>,
    /// Model reported by `/info` (pyatv's `am` property, e.g. `AirPort10,115`).
    pub model: String,
    pub seed: u64,
    /// Keys a `sign_with` fault may name, loaded once when the device starts.
    pub extra_keys: Vec<(String, Arc<DeviceKey>)>,
    /// What the receiver keeps of each audio session (default: everything).
    pub capture: CapturePolicy,
}

impl RaopConfig {
    /// The built-in AirPort Express: well-known key, MAC 00:11:24:00:44:91 (the receiver of
    /// docs/protocols/raop.md).
    pub fn airport_express(name: &str) -> Self {
        RaopConfig {
            name: name.to_string(),
            hw_addr: [0x00, 0x11, 0x24, 0x00, 0x44, 0x91],
            key: Arc::new(keys::airport_express()),
            source_version: "220.68".into(),
            audio_jack: "connected; type=analog".into(),
            audio_latency: 11025,
            max_sessions: 1,
            session_id: None,
            model: "AirPort10,115".into(),
            seed: 0,
            extra_keys: Vec::new(),
            capture: CapturePolicy::default(),
        }
    }

    /// `00:11:24:00:44:91`.
    pub fn mac_string(&self) -> String {
        crate::wire::hex::mac_text(&self.hw_addr)
    }
}

/// Where a connection's session stands (RFC 2326 Appendix A, recorder side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing announced yet.
    Init,
    /// ANNOUNCE accepted.
    Announced,
    /// SETUP done, ports open.
    Ready,
    /// RECORD received; audio flows.
    Recording,
}

/// Per-connection state.
pub struct RaopConn {
    pub phase: Phase,
    session: String,
    announce: Option<Announce>,
    aes: Option<AesParams>,
    counts_as_active: bool,
    receiver: Option<Arc<AudioReceiver>>,
    /// On a connection that carries only interleaved audio (the one a TCP sender opens to
    /// `server_port`): the receiver of the session its first frame went to.
    audio: Option<Arc<AudioReceiver>>,
}

/// The RAOP receiver core. Shared by every connection of one device.
pub struct RaopCore {
    pub config: RaopConfig,
    pub state: Arc<Mutex<RaopState>>,
}

/// Methods a RAOP receiver answers (the `Public` header of OPTIONS).
pub const PUBLIC: &str =
    "ANNOUNCE, SETUP, RECORD, PAUSE, FLUSH, TEARDOWN, OPTIONS, GET_PARAMETER, SET_PARAMETER, POST, GET";

impl RaopCore {
    /// Where an interleaved frame on `channel` goes: channel 0 carries RTP audio, channel 1 the
    /// control packets (sync, retransmit replies), as `interleaved=0-1` names them (RFC 2326
    /// §12.39); the receiver is this connection's own TCP session, else the session the device
    /// set up last over TCP, which the connection then keeps (docs/protocols/raop.md, "RTP over
    /// TCP").
    fn frame_handler(&self, conn: &mut RaopConn, channel: u8) -> Result<PortHandler, String> {
        let port = match channel {
            0 => Port::Server,
            1 => Port::Control,
            other => return Err(format!("channel {other} is not one of interleaved=0-1")),
        };
        let receiver = match (&conn.receiver, &conn.audio) {
            (Some(r), _) | (None, Some(r)) => r.clone(),
            (None, None) => {
                let Some(r) = self.lock().interleaved_to.clone() else {
                    return Err("no RTP/AVP/TCP session is set up".into());
                };
                conn.audio = Some(r.clone());
                r
            }
        };
        Ok(PortHandler { receiver, port })
    }

    pub fn new(config: RaopConfig) -> Self {
        RaopCore {
            config,
            state: Arc::new(Mutex::new(RaopState::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RaopState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers `Apple-Challenge` when the request carries one (OPTIONS or ANNOUNCE).
    fn answer_challenge(&self, req: &Request, resp: &mut Response, cx: &mut Context<'_>) {
        let Some(challenge) = req.headers.get("Apple-Challenge") else {
            return;
        };
        let key = match &cx.params.sign_with {
            Some(name) => match self.config.extra_keys.iter().find(|(n, _)| n == name) {
                Some((_, k)) => k.clone(),
                None => {
                    cx.warn(format!(
                        "sign_with key {name:?} was not loaded; using own key"
                    ));
                    self.config.key.clone()
                }
            },
            None => self.config.key.clone(),
        };
        match challenge::apple_response(&key, challenge, cx.conn.local.ip(), &self.config.hw_addr) {
            Ok(answer) => resp.headers.set("Apple-Response", answer),
            Err(e) => cx.warn(format!("Apple-Challenge not answered: {e}")),
        }
    }

    fn announce(&self, conn: &mut RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        if conn.phase != Phase::Init {
            return self.refuse(
                conn,
                req,
                455,
                "ANNOUNCE after ANNOUNCE; send TEARDOWN first",
                cx,
            );
        }
        let announce = match sdp::parse_announce(&req.body) {
            Ok(a) => a,
            Err(e) => return self.refuse(conn, req, 400, &format!("bad SDP: {e}"), cx),
        };
        let aes = match (&announce.rsaaeskey, &announce.aesiv) {
            (None, None) => None,
            (Some(k), Some(iv)) => {
                let key = match challenge::decrypt_aes_key(&self.config.key, k) {
                    Ok(key) => key,
                    Err(e) => return self.refuse(conn, req, 456, &format!("rsaaeskey: {e}"), cx),
                };
                let iv: [u8; 16] = match decode_b64(iv).ok().and_then(|v| v.try_into().ok()) {
                    Some(iv) => iv,
                    None => {
                        return self.refuse(conn, req, 456, "aesiv must decode to 16 bytes", cx)
                    }
                };
                Some(AesParams { key, iv })
            }
            _ => {
                return self.refuse(
                    conn,
                    req,
                    456,
                    "rsaaeskey and aesiv must come as a pair",
                    cx,
                )
            }
        };
        {
            let mut st = self.lock();
            if st.active_sessions >= self.config.max_sessions {
                drop(st);
                return self.refuse(conn, req, 453, "busy: another sender is streaming", cx);
            }
            st.active_sessions += 1;
            st.sessions_total += 1;
        }
        conn.counts_as_active = true;
        cx.info(format!(
            "announced {} ({}), {}",
            announce.rtpmap,
            announce
                .fmtp
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            if aes.is_some() {
                "AES encrypted"
            } else {
                "clear"
            }
        ));
        conn.announce = Some(announce);
        conn.aes = aes;
        conn.phase = Phase::Announced;
        let mut r = self.respond(conn, req, 200, cx);
        self.answer_challenge(req, &mut r, cx);
        Outcome::Respond(r)
    }

    fn setup(&self, conn: &mut RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        if conn.phase != Phase::Announced {
            return self.refuse(conn, req, 455, "SETUP needs an ANNOUNCE first", cx);
        }
        let Some(transport) = req.headers.get("Transport").and_then(Transport::parse) else {
            return self.refuse(conn, req, 400, "SETUP without a valid Transport header", cx);
        };
        let announce = conn.announce.as_ref().expect("announced");
        let mut st = self.lock();
        let number = st.sessions_started;
        st.sessions_started += 1;
        let receiver = Arc::new(self.config.capture.receiver(
            &cx.conn.device,
            number,
            AudioFormat::from_announce(announce),
            conn.aes.clone(),
        ));
        {
            if let Some(keep) = self.config.capture.sessions {
                let excess = (st.sessions.len() + 1).saturating_sub(keep.max(1));
                for old in st.sessions.drain(..excess) {
                    old.receiver.finish_stream();
                }
            }
            st.sessions.push(SessionRecord {
                number,
                connection: cx.conn.index,
                peer: cx.conn.peer,
                rtpmap: announce.rtpmap.clone(),
                encrypted: conn.aes.is_some(),
                dacp_id: req.headers.get("DACP-ID").map(str::to_string),
                active_remote: req.headers.get("Active-Remote").map(str::to_string),
                user_agent: req.headers.get("User-Agent").map(str::to_string),
                receiver: receiver.clone(),
            });
        }
        drop(st);
        conn.receiver = Some(receiver.clone());
        if transport.is_tcp() {
            return self.setup_tcp(conn, req, receiver, cx);
        }
        Outcome::OpenUdp(vec![
            UdpRequest {
                name: "server",
                handler: receiver.server_port(),
                lossy: true,
            },
            UdpRequest {
                name: "control",
                handler: receiver.control_port(),
                lossy: false,
            },
            UdpRequest {
                name: "timing",
                handler: receiver.timing_port(),
                lossy: false,
            },
        ])
    }

    /// SETUP with `RTP/AVP/TCP`: no UDP port opens. The answer names the channels the receiver
    /// reads, `interleaved=0-1` whatever the offer (RFC 2326 §12.39), and its `server_port` is the
    /// RTSP port itself, so the RTP packets arrive as interleaved frames
    /// (RFC 2326 §10.12) either on this connection or on the second connection PulseAudio and
    /// PipeWire open to `server_port` (docs/protocols/raop.md, "RTP over TCP").
    fn setup_tcp(
        &self,
        conn: &mut RaopConn,
        req: &Request,
        receiver: Arc<AudioReceiver>,
        cx: &mut Context<'_>,
    ) -> Outcome {
        self.lock().interleaved_to = Some(receiver);
        let port = cx.conn.local.port();
        let mut answer = Transport {
            profile: "RTP/AVP/TCP".into(),
            params: vec![
                ("unicast".into(), None),
                ("interleaved".into(), Some("0-1".into())),
                ("mode".into(), Some("record".into())),
            ],
        };
        answer.set("server_port", port);
        conn.phase = Phase::Ready;
        cx.info(format!("audio interleaved over tcp, server_port {port}"));
        let mut r = self.respond(conn, req, 200, cx);
        r.headers.set("Transport", answer.to_string());
        Outcome::Respond(r)
    }

    fn set_parameter(&self, conn: &RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let ctype = req
            .headers
            .get("Content-Type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut st = self.lock();
        if ctype.starts_with("text/parameters") {
            let text = String::from_utf8_lossy(&req.body);
            for line in text.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                match k.trim() {
                    "volume" => match v.trim().parse::<f64>() {
                        Ok(db) => st.volume = Some(db),
                        Err(_) => cx.warn(format!("volume {v:?} is not a number")),
                    },
                    "progress" => st.progress = Some(v.trim().to_string()),
                    other => cx.warn(format!("unknown parameter {other:?}")),
                }
            }
        } else if ctype.starts_with("application/x-dmap-tagged") {
            match dmap::decode(&req.body) {
                Ok(items) => st.metadata = dmap::strings(&items),
                Err(e) => cx.warn(format!("metadata: {e}")),
            }
        } else if ctype.starts_with("image/") {
            st.artwork = Some((ctype.clone(), req.body.len()));
        } else {
            cx.warn(format!("SET_PARAMETER with content type {ctype:?}"));
        }
        drop(st);
        Outcome::Respond(self.respond(conn, req, 200, cx))
    }

    fn get_parameter(&self, conn: &RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let asked = String::from_utf8_lossy(&req.body);
        let volume = self.lock().volume.unwrap_or(-20.0);
        let mut body = String::new();
        for name in asked.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if name == "volume" {
                body.push_str(&format!("volume: {volume:.6}\r\n"));
            }
        }
        let r = self
            .respond(conn, req, 200, cx)
            .with_body("text/parameters", body.into_bytes());
        Outcome::Respond(r)
    }

    /// `GET /info` as pyatv sends it before streaming: a binary plist. pyatv reads only
    /// `initialVolume`, a float of which makes it skip its volume SET_PARAMETER (docs/peers.md).
    fn info(&self, conn: &RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let mut dict = plist::Dictionary::new();
        dict.insert("name".into(), self.config.name.clone().into());
        dict.insert("model".into(), self.config.model.clone().into());
        dict.insert("macAddress".into(), self.config.mac_string().into());
        dict.insert("deviceID".into(), self.config.mac_string().into());
        dict.insert(
            "sourceVersion".into(),
            self.config.source_version.clone().into(),
        );
        dict.insert("statusFlags".into(), plist::Value::Integer(4.into()));
        dict.insert("initialVolume".into(), plist::Value::Real(-20.0));
        let mut body = Vec::new();
        if let Err(e) = plist::Value::Dictionary(dict).to_writer_binary(&mut body) {
            return self.refuse(conn, req, 500, &format!("plist: {e}"), cx);
        }
        Outcome::Respond(
            self.respond(conn, req, 200, cx)
                .with_body("application/x-apple-binary-plist", body),
        )
    }

    fn release(&self, conn: &mut RaopConn) {
        if conn.counts_as_active {
            conn.counts_as_active = false;
            let mut st = self.lock();
            st.active_sessions = st.active_sessions.saturating_sub(1);
        }
        conn.phase = Phase::Init;
        conn.announce = None;
        conn.aes = None;
        if let Some(receiver) = conn.receiver.take() {
            let mut st = self.lock();
            if st
                .interleaved_to
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, &receiver))
            {
                st.interleaved_to = None;
            }
        }
    }
}

/// A decimal session id: pyatv parses `Session` as an integer (docs/peers.md).
fn session_for(seed: u64, conn: u64) -> String {
    let mut x = seed ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA177_u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{}", 10_000_000 + x % 89_999_999)
}

impl ProtocolCore for RaopCore {
    type Conn = RaopConn;

    fn open(&self, conn: &ConnInfo) -> RaopConn {
        RaopConn {
            phase: Phase::Init,
            session: self
                .config
                .session_id
                .clone()
                .unwrap_or_else(|| session_for(self.config.seed, conn.index)),
            announce: None,
            aes: None,
            counts_as_active: false,
            receiver: None,
            audio: None,
        }
    }

    fn handle(&self, conn: &mut RaopConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        match (req.method.as_str(), req.path()) {
            ("OPTIONS", _) => {
                let mut r = self.respond(conn, req, 200, cx);
                r.headers.set("Public", PUBLIC);
                self.answer_challenge(req, &mut r, cx);
                Outcome::Respond(r)
            }
            ("ANNOUNCE", _) => self.announce(conn, req, cx),
            ("SETUP", _) => self.setup(conn, req, cx),
            ("RECORD", _) => {
                if !matches!(conn.phase, Phase::Ready | Phase::Recording) {
                    return self.refuse(conn, req, 455, "RECORD needs SETUP first", cx);
                }
                if !req.headers.contains("DACP-ID") {
                    cx.info("RECORD without DACP-ID: no remote control for this session");
                }
                conn.phase = Phase::Recording;
                let mut r = self.respond(conn, req, 200, cx);
                r.headers
                    .set("Audio-Latency", self.config.audio_latency.to_string());
                Outcome::Respond(r)
            }
            ("FLUSH", _) | ("PAUSE", _) => {
                if !matches!(conn.phase, Phase::Ready | Phase::Recording) {
                    return self.refuse(conn, req, 455, "FLUSH needs SETUP first", cx);
                }
                Outcome::Respond(self.respond(conn, req, 200, cx))
            }
            ("SET_PARAMETER", _) => self.set_parameter(conn, req, cx),
            ("GET_PARAMETER", _) => self.get_parameter(conn, req, cx),
            ("TEARDOWN", _) => {
                self.release(conn);
                let mut r = self.respond(conn, req, 200, cx);
                r.headers.set("Connection", "close");
                Outcome::RespondAndClose(r)
            }
            ("GET", "/info") => self.info(conn, req, cx),
            // pyatv: 0x01 + 32-byte public key when `et` holds 4 and `am` starts "AirPort"; it does
            // not check the answer (docs/peers.md). A real device answers its own 32-byte key and a
            // certificate; 32 seeded bytes stand in for them.
            ("POST", "/auth-setup") => {
                let body: Vec<u8> = (0..32u64)
                    .map(|i| (session_for(self.config.seed, i).as_bytes()[3]) ^ i as u8)
                    .collect();
                Outcome::Respond(
                    self.respond(conn, req, 200, cx)
                        .with_body("application/octet-stream", body),
                )
            }
            ("POST", "/feedback") => Outcome::Respond(self.respond(conn, req, 200, cx)),
            ("GET" | "POST", path) => {
                let path = path.to_string();
                self.refuse(conn, req, 404, &format!("no resource {path}"), cx)
            }
            (method, _) => {
                let method = method.to_string();
                self.refuse(
                    conn,
                    req,
                    501,
                    &format!("method {method} not implemented"),
                    cx,
                )
            }
        }
    }

    fn complete(
        &self,
        conn: &mut RaopConn,
        req: &Request,
        ports: &[u16],
        cx: &mut Context<'_>,
    ) -> Response {
        let [server, control, timing] = ports else {
            return self
                .respond(conn, req, 500, cx)
                .with_reason_text("could not open audio ports");
        };
        if ports.contains(&0) {
            return self
                .respond(conn, req, 500, cx)
                .with_reason_text("could not open audio ports");
        }
        let mut answer = Transport {
            profile: "RTP/AVP/UDP".into(),
            params: vec![
                ("unicast".into(), None),
                ("mode".into(), Some("record".into())),
            ],
        };
        answer.set("server_port", server);
        answer.set("control_port", control);
        answer.set("timing_port", timing);
        conn.phase = Phase::Ready;
        cx.info(format!(
            "audio on udp {server}, control {control}, timing {timing}"
        ));
        let mut r = self.respond(conn, req, 200, cx);
        r.headers.set("Transport", answer.to_string());
        r
    }

    fn accepts_interleaved(&self, conn: &RaopConn) -> bool {
        conn.receiver.is_some() || conn.audio.is_some() || self.lock().interleaved_to.is_some()
    }

    /// An interleaved frame goes to the receiver [`RaopCore::frame_handler`] names.
    fn interleaved(
        &self,
        conn: &mut RaopConn,
        channel: u8,
        payload: &[u8],
        now: std::time::SystemTime,
    ) -> Result<(), String> {
        let handler = self.frame_handler(conn, channel)?;
        handler
            .receiver
            .on_port_datagram(handler.port, payload, now);
        Ok(())
    }

    fn interleaved_plaintext(
        &self,
        conn: &mut RaopConn,
        channel: u8,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        use crate::protocol_core::DatagramHandler;
        self.frame_handler(conn, channel).ok()?.plaintext(payload)
    }

    /// The headers every RTSP response carries (docs/protocols/airplay.md): `CSeq` echoed,
    /// `Date`, `Server: AirTunes/<version>`, `Session` (one value for the connection's life), and
    /// `Audio-Jack-Status` except on RECORD and SET_PARAMETER.
    fn decorate(
        &self,
        conn: &RaopConn,
        req: Option<&Request>,
        resp: &mut Response,
        cx: &Context<'_>,
    ) {
        if let Some(cseq) = req.and_then(|r| r.cseq()) {
            resp.headers.set("CSeq", cseq);
        }
        resp.headers.set("Date", httpdate::fmt_http_date(cx.now));
        resp.headers
            .set("Server", format!("AirTunes/{}", self.config.source_version));
        resp.headers.set("Session", conn.session.clone());
        let method = req.map(|r| r.method.as_str()).unwrap_or("");
        if method != "RECORD" && method != "SET_PARAMETER" {
            resp.headers
                .set("Audio-Jack-Status", self.config.audio_jack.clone());
        } else {
            resp.headers.remove("Audio-Jack-Status");
        }
    }

    fn close(&self, mut conn: RaopConn) {
        self.release(&mut conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::CoreParams;
    use rstest::rstest;
    use std::time::{Duration, SystemTime};

    use crate::testkit::{self, SDP_L16};

    fn conn(index: u64) -> ConnInfo {
        testkit::conn("apx", index, 5000)
    }

    fn req(method: &str, uri: &str, cseq: u32) -> Request {
        testkit::rtsp(method, uri, cseq)
    }

    fn drive(
        svc: &RaopCore,
        c: &mut RaopConn,
        info: &ConnInfo,
        r: &Request,
    ) -> (Response, Vec<crate::protocol_core::Note>) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        testkit::drive(svc, c, info, r, &CoreParams::default(), now)
    }

    /// A session brought to the point where `method` is valid.
    fn prepared(method: &str) -> (RaopCore, RaopConn, ConnInfo, u32) {
        let svc = RaopCore::new(RaopConfig::airport_express("apx"));
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut cseq = 1;
        let needs_announce = matches!(method, "SETUP" | "RECORD" | "FLUSH" | "TEARDOWN");
        let needs_setup = matches!(method, "RECORD" | "FLUSH");
        if needs_announce {
            let mut a = req("ANNOUNCE", "rtsp://127.0.0.1/1", cseq);
            a.headers.set("Content-Type", "application/sdp");
            a.body = SDP_L16.as_bytes().to_vec();
            assert_eq!(drive(&svc, &mut c, &info, &a).0.status, 200);
            cseq += 1;
        }
        if needs_setup {
            let mut s = req("SETUP", "rtsp://127.0.0.1/1", cseq);
            s.headers.set(
                "Transport",
                "RTP/AVP/UDP;unicast;mode=record;control_port=1;timing_port=2",
            );
            assert_eq!(drive(&svc, &mut c, &info, &s).0.status, 200);
            cseq += 1;
        }
        (svc, c, info, cseq)
    }

    /// docs/protocols/airplay.md: every response carries Date, Session (one value for the
    /// connection), CSeq echoed, Server: AirTunes/<v>, and Audio-Jack-Status except to RECORD and
    /// SET_PARAMETER.
    #[rstest]
    #[case::options("OPTIONS", "*", 200, true)]
    #[case::announce("ANNOUNCE", "rtsp://127.0.0.1/1", 200, true)]
    #[case::setup("SETUP", "rtsp://127.0.0.1/1", 200, true)]
    #[case::record("RECORD", "rtsp://127.0.0.1/1", 200, false)]
    #[case::flush("FLUSH", "rtsp://127.0.0.1/1", 200, true)]
    #[case::set_parameter("SET_PARAMETER", "rtsp://127.0.0.1/1", 200, false)]
    #[case::get_parameter("GET_PARAMETER", "rtsp://127.0.0.1/1", 200, true)]
    #[case::teardown("TEARDOWN", "rtsp://127.0.0.1/1", 200, true)]
    #[case::get_info("GET", "/info", 200, true)]
    #[case::post_feedback("POST", "/feedback", 200, true)]
    #[case::post_auth_setup("POST", "/auth-setup", 200, true)]
    #[case::unknown_path("GET", "/nope", 404, true)]
    #[case::unknown_method("PLAY_SOMETHING", "*", 501, true)]
    fn every_response_follows_the_rtsp_rules(
        #[case] method: &str,
        #[case] uri: &str,
        #[case] status: u16,
        #[case] jack: bool,
    ) {
        let (svc, mut c, info, cseq) = prepared(method);
        let mut r = req(method, uri, cseq + 40);
        testkit::body_for(method, &mut r);
        let (first, _) = drive(&svc, &mut c, &info, &req("OPTIONS", "*", 1));
        let (resp, _) = drive(&svc, &mut c, &info, &r);
        assert_eq!(
            resp.status,
            status,
            "{method} {uri}: {:?}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(
            resp.headers.get("CSeq"),
            Some((cseq + 40).to_string().as_str())
        );
        assert_eq!(
            resp.headers.get("Date"),
            Some("Tue, 14 Nov 2023 22:13:20 GMT")
        );
        assert_eq!(resp.headers.get("Server"), Some("AirTunes/220.68"));
        let session = resp.headers.get("Session").expect("Session");
        assert_eq!(
            Some(session),
            first.headers.get("Session"),
            "Session changed within a connection"
        );
        assert_eq!(
            resp.headers.contains("Audio-Jack-Status"),
            jack,
            "{method}: Audio-Jack-Status"
        );
    }

    #[rstest]
    #[case::setup_before_announce("SETUP", 455)]
    #[case::record_before_setup("RECORD", 455)]
    #[case::flush_before_setup("FLUSH", 455)]
    fn requests_out_of_order_get_455(#[case] method: &str, #[case] status: u16) {
        let svc = RaopCore::new(RaopConfig::airport_express("apx"));
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req(method, "rtsp://127.0.0.1/1", 1);
        r.headers
            .set("Transport", "RTP/AVP/UDP;unicast;mode=record");
        let (resp, notes) = drive(&svc, &mut c, &info, &r);
        assert_eq!(resp.status, status);
        assert!(!resp.body.is_empty(), "a refusal carries a reason");
        assert!(matches!(
            notes.first(),
            Some(crate::protocol_core::Note::Warning(_))
        ));
    }

    /// docs/protocols/raop.md, "RTP over TCP": no UDP port opens, the answer names channels 0-1
    /// and the RTSP port as `server_port`, and the device knows where interleaved audio goes.
    #[test]
    fn setup_over_tcp_answers_at_once_with_the_rtsp_port() {
        let (svc, mut c, info, cseq) = prepared("SETUP");
        let mut s = req("SETUP", "rtsp://127.0.0.1/1", cseq);
        s.headers.set(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let params = CoreParams::default();
        let mut cx = Context::new(&info, now, &params);
        let Outcome::Respond(resp) = svc.handle(&mut c, &s, &mut cx) else {
            panic!("a TCP SETUP opens no UDP port")
        };
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.headers.get("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record;server_port=5000")
        );
        assert_eq!(c.phase, Phase::Ready);
        assert!(svc.state.lock().unwrap().interleaved_to.is_some());
        assert_eq!(
            svc.interleaved(&mut c, 2, &[0x80, 0x60], now),
            Err("channel 2 is not one of interleaved=0-1".into())
        );
    }

    #[test]
    fn aes_key_without_iv_gets_456() {
        let (svc, mut c, info, _) = prepared("OPTIONS");
        let mut a = req("ANNOUNCE", "rtsp://127.0.0.1/1", 2);
        a.headers.set("Content-Type", "application/sdp");
        a.body = format!("{SDP_L16}a=rsaaeskey:AAAA\r\n").into_bytes();
        assert_eq!(drive(&svc, &mut c, &info, &a).0.status, 456);
    }

    #[test]
    fn second_sender_is_busy_until_the_first_tears_down() {
        let (svc, mut a, info, cseq) = prepared("SETUP");
        let info_b = conn(1);
        let mut b = svc.open(&info_b);
        let mut announce = req("ANNOUNCE", "rtsp://127.0.0.1/2", 1);
        announce.headers.set("Content-Type", "application/sdp");
        announce.body = SDP_L16.as_bytes().to_vec();
        assert_eq!(drive(&svc, &mut b, &info_b, &announce).0.status, 453);
        assert_eq!(
            drive(
                &svc,
                &mut a,
                &info,
                &req("TEARDOWN", "rtsp://127.0.0.1/1", cseq)
            )
            .0
            .status,
            200
        );
        assert_eq!(drive(&svc, &mut b, &info_b, &announce).0.status, 200);
    }

    #[test]
    fn set_parameter_keeps_volume_progress_and_metadata() {
        let (svc, mut c, info, _) = prepared("OPTIONS");
        let mut v = req("SET_PARAMETER", "rtsp://127.0.0.1/1", 5);
        v.headers.set("Content-Type", "text/parameters");
        v.body = b"volume: -11.5\r\n".to_vec();
        drive(&svc, &mut c, &info, &v);
        v.body = b"progress: 1/2/3\r\n".to_vec();
        drive(&svc, &mut c, &info, &v);
        v.headers.set("Content-Type", "application/x-dmap-tagged");
        v.body = b"mlit\0\0\0\x0dminm\0\0\0\x05Title".to_vec();
        drive(&svc, &mut c, &info, &v);
        let st = svc.state.lock().unwrap();
        assert_eq!(st.volume, Some(-11.5));
        assert_eq!(st.progress.as_deref(), Some("1/2/3"));
        assert_eq!(st.metadata, vec![("minm".to_string(), "Title".to_string())]);
    }

    #[test]
    fn sign_with_fault_uses_the_named_key() {
        let mut config = RaopConfig::airport_express("apx");
        let other = Arc::new(keys::builtin_key("other").unwrap());
        config.extra_keys.push(("other".into(), other.clone()));
        let svc = RaopCore::new(config);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req("OPTIONS", "*", 1);
        r.headers.set("Apple-Challenge", "09KF45soMYmvj6dpsUGiIg");
        let params = CoreParams {
            sign_with: Some("other".into()),
            ..Default::default()
        };
        let mut cx = Context::new(
            &info,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &params,
        );
        let Outcome::Respond(resp) = svc.handle(&mut c, &r, &mut cx) else {
            panic!()
        };
        let got = resp.headers.get("Apple-Response").unwrap();
        let want = challenge::apple_response(
            &other,
            "09KF45soMYmvj6dpsUGiIg",
            info.local.ip(),
            &svc.config.hw_addr,
        )
        .unwrap();
        assert_eq!(got, want);
    }
}
