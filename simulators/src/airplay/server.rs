//! The Apple TV's AirPlay port as one [`ProtocolCore`]: `GET /info`, `POST /fp-setup` and the video
//! API are answered here; every other request (OPTIONS, ANNOUNCE, SETUP, RECORD, … and pyatv's
//! `/feedback`, `/auth-setup`) goes to the RAOP core it wraps, so an Apple TV receives RAOP audio
//! exactly as an AirPort Express does. RTSP responses follow the same rules either way
//! ([`RaopCore`]'s `decorate`: `Date`, `Session`, `CSeq`, `Server`, `Audio-Jack-Status`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ed25519_dalek::SigningKey;
use plist::{Dictionary, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::events::EventsRecord;
use super::fairplay::{self, FpRequest};
use super::info::{self, DisplayInfo, InfoIdentity, InfoQuery};
use super::pairing::{self, Pairing, PairingConfig, PairingConn};
use super::reverse::{EventChannel, EventLog, Next};
use super::session::{self, SessionConn};
use super::video::{Video, VideoReply};
use crate::hap::Identity;
use crate::protocol_core::{Changes, ConnInfo, Context, Outcome, ProtocolCore, Push};
use crate::raop::session::RaopConn;
use crate::raop::{RaopConfig, RaopCore};
use crate::wire::{hex, Protocol, Request, Response};

/// The AirPlay side of an Apple TV.
#[derive(Clone)]
pub struct AirplayConfig {
    /// What `/info` reports.
    pub info: InfoIdentity,
    /// Ed25519 key pair whose public half is `/info`'s `pk`, derived from the scenario seed.
    pub signing_key: SigningKey,
    /// Seconds every `POST /play` URL lasts on the simulated clock.
    pub video_duration: f64,
    /// HomeKit pairing (`/pair-pin-start`, `/pair-setup`, `/pair-verify`), which an Apple TV 4K
    /// has and an Apple TV 3 does not; its long-term key is `signing_key`, its identifier `pi`.
    pub pairing: Option<PairingConfig>,
    /// Seed of the pairing's salts, SRP secrets and ephemeral keys.
    pub seed: u64,
}

/// Features of the default Apple TV: bits 0-2, 4-6, 8-22, 27-28, 30 (video, photo, screen,
/// audio, …). Bits 38 (SupportsUnifiedMediaControl), 43 (SupportsSystemPairing) and 48
/// (SupportsCoreUtilsPairingAndEncryption) stay off: they send pyatv down HomeKit pairing and
/// AirPlay 2 (docs/peers.md), which this device does not do.
pub const DEFAULT_FEATURES: u64 = 0x5A7F_FFF7;

/// Feature bits that switch senders to HomeKit pairing / AirPlay 2 (docs/peers.md).
pub const HOMEKIT_BITS: [u32; 3] = [38, 43, 48];

/// Features of an Apple TV 4K: the default's, plus bit 38 (SupportsUnifiedMediaControl), 40
/// (SupportsBufferedAudio), 41 (SupportsPTP), 43 (SupportsSystemPairing), 46 (SupportsHKPairing
/// AndAccessControl) and 48 (SupportsCoreUtilsPairingAndEncryption), which make pyatv pair the
/// HomeKit way (docs/protocols/hap.md).
pub const FEATURES_4K: u64 =
    DEFAULT_FEATURES | 1 << 38 | 1 << 40 | 1 << 41 | 1 << 43 | 1 << 46 | 1 << 48;

/// `flags` / `sf` of an Apple TV 4K: 0x244, whose bit 0x200 tells pyatv pairing is mandatory
/// (docs/protocols/hap.md).
pub const FLAGS_4K: u64 = 0x244;

/// `osvers` of an Apple TV 4K: tvOS 18.2 (docs/protocols/hap.md, "What an Apple TV 4K announces").
pub const OS_VERSION_4K: &str = "18.2";

/// `Audio-Jack-Status` of an Apple TV (docs/protocols/airplay.md).
pub const AUDIO_JACK: &str = "Connected; type=digital";

/// A generator for the identity of device `name` under `seed`.
fn identity_rng(seed: u64, name: &str) -> ChaCha8Rng {
    // The name's hash, so two Apple TVs of one scenario differ.
    ChaCha8Rng::seed_from_u64(seed ^ crate::seed::label_hash(name) ^ 0xA1B7_0001)
}

/// A version-4-shaped UUID from 16 random bytes.
fn uuid(bytes: [u8; 16]) -> String {
    let mut b = bytes;
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = info::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl AirplayConfig {
    /// The default Apple TV named `name`: model AppleTV3,2, MAC AA:BB:CC:DD:EE:FF and
    /// sourceVersion 220.68 as in docs/protocols/airplay.md; key pair, `pi` and display
    /// uuid from `seed`.
    pub fn apple_tv(name: &str, seed: u64) -> Self {
        let mut rng = identity_rng(seed, name);
        let signing_key = SigningKey::from_bytes(&rng.gen::<[u8; 32]>());
        let pi = uuid(rng.gen());
        let display_uuid = uuid(rng.gen());
        let mac = "AA:BB:CC:DD:EE:FF".to_string();
        AirplayConfig {
            info: InfoIdentity {
                device_id: mac.clone(),
                mac_address: mac,
                model: "AppleTV3,2".into(),
                name: name.to_string(),
                pi,
                pk: signing_key.verifying_key().to_bytes(),
                features: DEFAULT_FEATURES,
                status_flags: 4,
                vv: 2,
                source_version: "220.68".into(),
                initial_volume: -20.0,
                display: DisplayInfo {
                    width: 1920,
                    height: 1080,
                    refresh_rate: 60.0,
                    uuid: display_uuid,
                },
                os_version: None,
                psi: None,
                overrides: Vec::new(),
            },
            signing_key,
            video_duration: 3.0,
            pairing: None,
            seed,
        }
    }

    /// An Apple TV 4K (2nd generation, `AppleTV11,1`) named `name`: the Apple TV defaults with
    /// the 4K's model, features, flags and source version, and HomeKit pairing with a PIN drawn
    /// from `seed`.
    pub fn apple_tv_4k(name: &str, seed: u64) -> Self {
        let mut c = Self::apple_tv(name, seed);
        c.info.model = "AppleTV11,1".into();
        c.info.features = FEATURES_4K;
        c.info.status_flags = FLAGS_4K;
        c.info.source_version = "620.8.2".into();
        c.info.os_version = Some(OS_VERSION_4K.into());
        // airtwin pairs with `pi` as its HAP identifier, so `psi` announces the same UUID.
        c.info.psi = Some(c.info.pi.clone());
        c.pairing = Some(PairingConfig::from_seed(seed, name));
        c
    }

    /// The RAOP core of the same device: its MAC, model and source version, a digital audio jack.
    pub fn raop_config(&self, seed: u64) -> RaopConfig {
        let mut raop = RaopConfig::airport_express(&self.info.name);
        if let Some(mac) = hex::parse_mac(&self.info.mac_address) {
            raop.hw_addr = mac;
        }
        raop.model = self.info.model.clone();
        raop.source_version = self.info.source_version.clone();
        raop.audio_jack = AUDIO_JACK.into();
        raop.seed = seed;
        raop
    }
}

/// What the FairPlay exchanges left behind, device-wide.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FpRecord {
    /// Mode of every phase-1 request, in order.
    pub phase1_modes: Vec<u8>,
    /// Phase-3 requests answered.
    pub phase3: u64,
    /// The last phase-3 key message, hex.
    pub key_message: Option<String>,
}

/// Device-wide state of the AirPlay side.
#[derive(Debug, Clone, Default)]
pub struct AirplayState {
    pub video: Video,
    /// What the event channels reported.
    pub event_channel: EventLog,
    pub fp_setup: FpRecord,
    pub info_requests: u64,
}

/// Per-connection state: the RAOP session and the FairPlay phases of this connection.
pub struct AirplayConn {
    pub raop: RaopConn,
    /// This connection's index at the device (the owner of a pair-setup).
    pub index: u64,
    pub pairing: PairingConn,
    pub fp_mode: Option<u8>,
    pub key_message: Option<Vec<u8>>,
    /// Set once `POST /reverse` turned this connection into a reverse event channel.
    pub reverse: Option<EventChannel>,
    /// The AirPlay 2 session of this connection, once it is encrypted.
    pub session: SessionConn,
}

/// The AirPlay core of an Apple TV.
pub struct AirplayCore {
    pub config: AirplayConfig,
    /// The RAOP core that receives audio on the same port.
    pub raop: Arc<RaopCore>,
    pub state: Arc<Mutex<AirplayState>>,
    /// HomeKit pairing, when the configuration has it.
    pub pairing: Option<Pairing>,
    /// Bumped on every change of the video session, so that reverse event channels report it.
    pub changes: Changes,
    /// What the AirPlay 2 event channels saw.
    pub events: Arc<Mutex<EventsRecord>>,
    /// The MRP side the remote-control stream (type 130) tunnels to; none on a device without
    /// one (docs/protocols/mrp.md).
    pub mrp: Option<Arc<crate::mrp::MrpCore>>,
}

impl AirplayCore {
    pub fn new(config: AirplayConfig, raop: RaopConfig) -> Self {
        let pairing = config.pairing.clone().map(|p| {
            let identity = Identity::new(config.info.pi.clone(), config.signing_key.clone());
            Pairing::new(p, identity, config.seed)
        });
        AirplayCore {
            config,
            raop: Arc::new(RaopCore::new(raop)),
            state: Arc::new(Mutex::new(AirplayState::default())),
            pairing,
            changes: Changes::default(),
            events: Arc::default(),
            mrp: None,
        }
    }

    /// Tunnels the remote-control stream to `mrp`.
    pub fn with_mrp(mut self, mrp: Arc<crate::mrp::MrpCore>) -> Self {
        self.mrp = Some(mrp);
        self
    }

    fn lock(&self) -> MutexGuard<'_, AirplayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as JSON for expectations: `video` (url, state, position at `now` …), `fp_setup`
    /// and `info_requests`.
    pub fn state_json(&self, now: SystemTime) -> serde_json::Value {
        let st = self.lock();
        let mut state = serde_json::json!({
            "video": st.video.view(now),
            "event_channel": st.event_channel,
            "fp_setup": st.fp_setup,
            "info_requests": st.info_requests,
        });
        if let Some(p) = &self.pairing {
            state["hap"] = p.state_json();
            let events = self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            state["airplay2"] = serde_json::json!({ "events": events });
        }
        state
    }

    pub(super) fn plist(
        &self,
        conn: &AirplayConn,
        req: &Request,
        dict: Dictionary,
        cx: &mut Context<'_>,
    ) -> Outcome {
        match info::encode(dict) {
            Ok(body) => Outcome::Respond(
                self.respond(conn, req, 200, cx)
                    .with_body("application/x-apple-binary-plist", body),
            ),
            Err(e) => self.refuse(conn, req, 500, &format!("plist: {e}"), cx),
        }
    }

    fn info(&self, conn: &AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let query = info::parse_query(&req.body).unwrap_or_else(|e| {
            cx.warn(format!("GET /info {e}; answering the full /info"));
            InfoQuery::Full
        });
        self.lock().info_requests += 1;
        let dict = match query {
            InfoQuery::Full => info::info_dict(&self.config.info, req.cseq().is_some()),
            InfoQuery::TxtAirPlay => {
                cx.info("GET /info qualifier txtAirPlay: TXT record only");
                info::txt_dict(&self.config.info)
            }
        };
        self.plist(conn, req, dict, cx)
    }

    fn fp_setup(&self, conn: &mut AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let octets = |this: &Self, conn: &AirplayConn, cx: &Context<'_>, body: Vec<u8>| {
            Outcome::Respond(
                this.respond(conn, req, 200, cx)
                    .with_body("application/octet-stream", body),
            )
        };
        let parsed = match fairplay::parse(&req.body) {
            Ok(p) => p,
            Err(e) => {
                // Receivers answer 200 with an empty body (docs/protocols/airplay.md).
                cx.warn(format!(
                    "POST /fp-setup: {e}; answered 200 with an empty body"
                ));
                return octets(self, conn, cx, Vec::new());
            }
        };
        if parsed.bad_signature {
            cx.warn(format!(
                "POST /fp-setup: signature {:02x?} is not FPLY; answered anyway, as receivers do",
                &req.body[..4]
            ));
        }
        match parsed.request {
            FpRequest::Phase1 { mode } => {
                conn.fp_mode = Some(mode);
                crate::protocol_core::remember(&mut self.lock().fp_setup.phase1_modes, mode);
                let answer = cx.params.fp_reply_mode.unwrap_or(mode);
                cx.info(format!("fp-setup phase 1, mode {mode}"));
                match fairplay::phase1_reply(answer) {
                    Some(reply) => octets(self, conn, cx, reply.to_vec()),
                    None => octets(self, conn, cx, Vec::new()),
                }
            }
            FpRequest::Phase3 { key_message } => {
                if conn.fp_mode.is_none() {
                    cx.warn("POST /fp-setup: phase 3 before phase 1 on this connection");
                }
                let from = cx.params.fp_echo_offset.unwrap_or(fairplay::ECHO_OFFSET);
                let reply = fairplay::phase3_reply(&key_message, from);
                let text = info::hex(&key_message);
                cx.info(format!("fp-setup phase 3 key message (164 bytes): {text}"));
                {
                    let mut st = self.lock();
                    st.fp_setup.phase3 += 1;
                    st.fp_setup.key_message = Some(text);
                }
                conn.key_message = Some(key_message);
                octets(self, conn, cx, reply)
            }
        }
    }

    /// The HomeKit pairing requests (docs/protocols/hap.md, "Transport on the AirPlay port").
    fn pair(&self, conn: &mut AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let Some(p) = &self.pairing else {
            return self.refuse(conn, req, 404, "no HomeKit pairing on this device", cx);
        };
        let body = match req.path() {
            "/pair-pin-start" => {
                p.pin_start(cx);
                return Outcome::Respond(self.respond(conn, req, 200, cx));
            }
            "/pair-setup" => match p.setup(req, cx) {
                Some(body) => body,
                None => {
                    return self.refuse(conn, req, 501, "X-Apple-HKP must be 3 or 4", cx);
                }
            },
            _ => p.verify(&mut conn.pairing, req, cx),
        };
        if let Some(shared) = &cx.encrypt_after {
            conn.session.shared = Some(shared.clone());
        }
        Outcome::Respond(pairing::tlv_response(
            self.respond(conn, req, 200, cx),
            body,
        ))
    }

    /// `POST /reverse` with `Upgrade: PTTH/1.0`: `101 Switching Protocols`, and the connection
    /// becomes an event channel (docs/protocols/airplay.md, "The reverse event channel").
    fn reverse(&self, conn: &mut AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let upgrade = req.headers.get("Upgrade").unwrap_or("");
        if !upgrade.eq_ignore_ascii_case("PTTH/1.0") {
            let why = format!("POST /reverse needs Upgrade: PTTH/1.0, got {upgrade:?}");
            return self.refuse(conn, req, 400, &why, cx);
        }
        let now = cx.now;
        let number = {
            let mut st = self.lock();
            st.event_channel.opened += 1;
            st.event_channel.opened
        };
        let view = self.lock().video.view(now);
        let session = req
            .headers
            .get("X-Apple-Session-ID")
            .map(str::to_string)
            .unwrap_or_else(|| format!("00000000-0000-0000-0000-{number:012X}"));
        if let Some(purpose) = req.headers.get("X-Apple-Purpose") {
            cx.info(format!("event channel {number} (purpose {purpose})"));
        } else {
            cx.info(format!("event channel {number}"));
        }
        conn.reverse = Some(EventChannel::open(session, number, &view, now));
        let mut resp = self.respond(conn, req, 101, cx);
        resp.headers.set("Upgrade", "PTTH/1.0");
        resp.headers.set("Connection", "Upgrade");
        Outcome::Reverse(resp)
    }

    fn server_info(&self) -> Dictionary {
        let id = &self.config.info;
        let mut d = Dictionary::new();
        d.insert("deviceid".into(), id.device_id.clone().into());
        d.insert("features".into(), Value::Integer(id.features.into()));
        d.insert("macAddress".into(), id.mac_address.clone().into());
        d.insert("model".into(), id.model.clone().into());
        d.insert("protovers".into(), "1.0".into());
        d.insert("srcvers".into(), id.source_version.clone().into());
        d.insert("vv".into(), Value::Integer(id.vv.into()));
        d
    }

    fn video(&self, conn: &AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let now = cx.now;
        let ctype = req.headers.get("Content-Type").unwrap_or("");
        let reply = {
            let mut st = self.lock();
            let v = &mut st.video;
            match (req.method.as_str(), req.path()) {
                ("POST", "/play") => {
                    let r = v.play(&req.body, ctype, self.config.video_duration, now);
                    if r == VideoReply::Ok {
                        cx.info(format!(
                            "playing {} for {:.1}s",
                            v.url.as_deref().unwrap_or(""),
                            v.duration
                        ));
                    }
                    r
                }
                ("GET", "/playback-info") => v.playback_info(now),
                ("GET", "/scrub") => v.scrub_get(now),
                ("POST", "/scrub") => v.scrub_set(req.query_param("position"), now),
                ("POST", "/rate") => v.set_rate(req.query_param("value"), now),
                ("POST", "/stop") => v.stop(now),
                ("POST", "/getProperty") => v.get_property(req.query().unwrap_or(""), now),
                ("PUT", "/setProperty") => v.set_property(req.query().unwrap_or(""), &req.body),
                _ => VideoReply::Plist(self.server_info()),
            }
        };
        let changed = matches!(
            (req.method.as_str(), req.path()),
            ("POST", "/play" | "/scrub" | "/rate" | "/stop")
        );
        if changed && reply == VideoReply::Ok {
            self.changes.bump();
        }
        match reply {
            // An Apple TV answers these two as XML property lists (nto 4.1 "HTTP requests",
            // docs/protocols/airplay.md "The video API"; Kodi 20.1 does the same, docs/peers.md).
            VideoReply::Plist(d) if matches!(req.path(), "/server-info" | "/playback-info") => {
                let mut body = Vec::new();
                match Value::Dictionary(d).to_writer_xml(&mut body) {
                    Ok(()) => Outcome::Respond(
                        self.respond(conn, req, 200, cx)
                            .with_body("text/x-apple-plist+xml", body),
                    ),
                    Err(e) => self.refuse(conn, req, 500, &format!("plist: {e}"), cx),
                }
            }
            VideoReply::Plist(d) => self.plist(conn, req, d, cx),
            VideoReply::Text(t) => Outcome::Respond(
                self.respond(conn, req, 200, cx)
                    .with_body("text/parameters", t.into_bytes()),
            ),
            VideoReply::Ok => Outcome::Respond(self.respond(conn, req, 200, cx)),
            VideoReply::Refuse(status, why) => self.refuse(conn, req, status, &why, cx),
        }
    }
}

impl ProtocolCore for AirplayCore {
    type Conn = AirplayConn;

    fn open(&self, conn: &ConnInfo) -> AirplayConn {
        AirplayConn {
            raop: self.raop.open(conn),
            index: conn.index,
            pairing: PairingConn::default(),
            fp_mode: None,
            key_message: None,
            reverse: None,
            session: SessionConn::default(),
        }
    }

    fn handle(&self, conn: &mut AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        match (req.method.as_str(), req.path()) {
            ("POST", "/pair-pin-start" | "/pair-setup" | "/pair-verify")
                if self.pairing.is_some() =>
            {
                self.pair(conn, req, cx)
            }
            ("GET", "/info") => self.info(conn, req, cx),
            ("POST", "/fp-setup") => self.fp_setup(conn, req, cx),
            ("POST", "/play" | "/scrub" | "/rate" | "/stop" | "/getProperty")
            | ("PUT", "/setProperty")
            | ("GET", "/playback-info" | "/scrub" | "/server-info") => self.video(conn, req, cx),
            ("POST", "/reverse") => self.reverse(conn, req, cx),
            ("SETUP", _) if session::is_plist(req) => self.airplay2_setup(conn, req, cx),
            ("RECORD" | "FLUSH" | "TEARDOWN", _) if conn.session.session.is_some() => {
                self.airplay2_control(conn, req, cx)
            }
            _ => self.raop.handle(&mut conn.raop, req, cx),
        }
    }

    fn complete(
        &self,
        conn: &mut AirplayConn,
        req: &Request,
        ports: &[u16],
        cx: &mut Context<'_>,
    ) -> Response {
        if let Some(r) = self.airplay2_complete(conn, req, ports, cx) {
            return r;
        }
        self.raop.complete(&mut conn.raop, req, ports, cx)
    }

    fn resume(&self, conn: &mut AirplayConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        self.raop.resume(&mut conn.raop, req, cx)
    }

    fn changes(&self) -> Option<&Changes> {
        Some(&self.changes)
    }

    /// The next `POST /event` of an event channel (docs/protocols/airplay.md, "The reverse event
    /// channel"), or a `drop_event_channel` fault closing it.
    fn push(&self, conn: &mut AirplayConn, cx: &mut Context<'_>) -> Push {
        let Some(channel) = conn.reverse.as_mut() else {
            return Push::Close("not an event channel".into());
        };
        let now = cx.now;
        let mut st = self.lock();
        let view = st.video.view(now);
        let mut probe = channel.clone();
        let state = match probe.next(&view, now) {
            Next::Wait(until) => return Push::Idle { until },
            Next::Send(state) => state,
        };
        if cx.params.drop_event_channel == Some(channel.pushed) {
            st.event_channel.dropped += 1;
            cx.info(format!("event channel dropped by fault before {state:?}"));
            return Push::Close("event channel dropped by fault".into());
        }
        *channel = probe;
        channel.pushed += 1;
        crate::protocol_core::remember(&mut st.event_channel.pushed, state.to_string());
        cx.info(format!("event: {state}"));
        Push::Send(channel.event(state, &cx.conn.peer.to_string()))
    }

    fn pushed_answer(
        &self,
        _conn: &mut AirplayConn,
        pushed: &Request,
        response: &Response,
        cx: &mut Context<'_>,
    ) {
        if response.status == 200 {
            self.lock().event_channel.answered += 1;
        } else {
            cx.warn(format!(
                "{} {}: the client answered {} {}",
                pushed.method, pushed.uri, response.status, response.reason
            ));
        }
    }

    /// RTSP responses: the RAOP core's rules (docs/protocols/airplay.md). HTTP/1.x
    /// responses (the video API): `Date` and `Server` (RFC 9110 §6.6.1, §10.2.4), and `CSeq`
    /// only when the request carried one.
    fn decorate(
        &self,
        conn: &AirplayConn,
        req: Option<&Request>,
        resp: &mut Response,
        cx: &Context<'_>,
    ) {
        match req {
            Some(r) if r.protocol != Protocol::Rtsp10 => {
                if let Some(cseq) = r.cseq() {
                    resp.headers.set("CSeq", cseq);
                }
                resp.headers.set("Date", httpdate::fmt_http_date(cx.now));
                resp.headers.set(
                    "Server",
                    format!("AirTunes/{}", self.config.info.source_version),
                );
            }
            _ => self.raop.decorate(&conn.raop, req, resp, cx),
        }
    }

    fn accepts_interleaved(&self, conn: &AirplayConn) -> bool {
        self.raop.accepts_interleaved(&conn.raop)
    }

    fn interleaved(
        &self,
        conn: &mut AirplayConn,
        channel: u8,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        self.raop.interleaved(&mut conn.raop, channel, payload, now)
    }

    fn close(&self, mut conn: AirplayConn) {
        if let Some(p) = &self.pairing {
            p.connection_closed(conn.index);
        }
        self.release_airplay2(&mut conn.session);
        self.raop.close(conn.raop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_pinned_to_seed_and_name() {
        // Pinned: scenario outcomes (keys, device ids) depend on these values.
        assert_eq!(identity_rng(7, "tv").gen::<u64>(), 539829931766139116);
        assert_eq!(
            identity_rng(42, "Living Room").gen::<u64>(),
            3284044237402223746
        );
    }
    use crate::fault::CoreParams;
    use crate::protocol_core::Note;
    use rstest::rstest;
    use std::io::Cursor;
    use std::time::Duration;

    use crate::testkit;

    fn conn(index: u64) -> ConnInfo {
        testkit::conn("tv", index, 7000)
    }

    fn service(session: Option<&str>) -> AirplayCore {
        let config = AirplayConfig::apple_tv("tv", 9);
        let mut raop = config.raop_config(9);
        raop.session_id = session.map(str::to_string);
        AirplayCore::new(config, raop)
    }

    fn req(method: &str, uri: &str, cseq: u32) -> Request {
        testkit::rtsp(method, uri, cseq)
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn drive_with(
        svc: &AirplayCore,
        c: &mut AirplayConn,
        info: &ConnInfo,
        r: &Request,
        params: &CoreParams,
        now: SystemTime,
    ) -> (Response, Vec<Note>) {
        testkit::drive(svc, c, info, r, params, now)
    }

    fn drive(
        svc: &AirplayCore,
        c: &mut AirplayConn,
        info: &ConnInfo,
        r: &Request,
    ) -> (Response, Vec<Note>) {
        drive_with(svc, c, info, r, &CoreParams::default(), at())
    }

    fn warnings(notes: &[Note]) -> usize {
        notes
            .iter()
            .filter(|n| matches!(n, Note::Warning(_)))
            .count()
    }

    /// docs/protocols/airplay.md, for the Apple TV: every response carries `Date`,
    /// `Session` (one value for the connection; the scenario may fix it), `CSeq` echoed,
    /// `Server: AirTunes/220.68`, and `Audio-Jack-Status: Connected; type=digital` except to
    /// RECORD and SET_PARAMETER.
    #[rstest]
    #[case::get_info("GET", "/info", 200, true)]
    #[case::fp_setup_phase1("POST", "/fp-setup", 200, true)]
    #[case::options("OPTIONS", "*", 200, true)]
    #[case::announce("ANNOUNCE", "rtsp://127.0.0.1/1", 200, true)]
    #[case::setup("SETUP", "rtsp://127.0.0.1/1", 200, true)]
    #[case::record("RECORD", "rtsp://127.0.0.1/1", 200, false)]
    #[case::flush("FLUSH", "rtsp://127.0.0.1/1", 200, true)]
    #[case::set_parameter("SET_PARAMETER", "rtsp://127.0.0.1/1", 200, false)]
    #[case::get_parameter("GET_PARAMETER", "rtsp://127.0.0.1/1", 200, true)]
    #[case::teardown("TEARDOWN", "rtsp://127.0.0.1/1", 200, true)]
    #[case::post_feedback("POST", "/feedback", 200, true)]
    #[case::post_auth_setup("POST", "/auth-setup", 200, true)]
    #[case::unknown_path("GET", "/nope", 404, true)]
    #[case::unknown_method("PLAY_SOMETHING", "*", 501, true)]
    fn every_rtsp_response_follows_the_rules(
        #[case] method: &str,
        #[case] uri: &str,
        #[case] status: u16,
        #[case] jack: bool,
        #[values(None, Some("CAFEBABE"))] session: Option<&str>,
    ) {
        let svc = service(session);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut cseq = 1;
        let (first, _) = drive(&svc, &mut c, &info, &req("OPTIONS", "*", cseq));
        let needs_announce = matches!(method, "SETUP" | "RECORD" | "FLUSH" | "TEARDOWN");
        let needs_setup = matches!(method, "RECORD" | "FLUSH");
        for (step, needed) in [("ANNOUNCE", needs_announce), ("SETUP", needs_setup)] {
            if needed {
                cseq += 1;
                let mut r = req(step, "rtsp://127.0.0.1/1", cseq);
                testkit::body_for(step, &mut r);
                assert_eq!(drive(&svc, &mut c, &info, &r).0.status, 200, "{step}");
            }
        }
        let mut r = req(method, uri, cseq + 40);
        testkit::body_for(method, &mut r);
        if uri == "/fp-setup" {
            r.body = fairplay::phase1_request(1).to_vec();
        }
        let (resp, _) = drive(&svc, &mut c, &info, &r);
        assert_eq!(resp.status, status, "{method} {uri}");
        assert_eq!(
            resp.headers.get("CSeq"),
            Some((cseq + 40).to_string().as_str())
        );
        assert_eq!(
            resp.headers.get("Date"),
            Some("Tue, 14 Nov 2023 22:13:20 GMT")
        );
        assert_eq!(resp.headers.get("Server"), Some("AirTunes/220.68"));
        let s = resp.headers.get("Session").expect("Session");
        assert_eq!(Some(s), first.headers.get("Session"), "Session changed");
        if let Some(fixed) = session {
            assert_eq!(s, fixed);
        }
        assert_eq!(
            resp.headers.get("Audio-Jack-Status"),
            jack.then_some(AUDIO_JACK),
            "{method}: Audio-Jack-Status"
        );
    }

    #[test]
    fn an_apple_tv_4k_announces_osvers_and_psi_and_an_apple_tv_3_does_not() {
        let atv4k = AirplayConfig::apple_tv_4k("tv", 9).info;
        let txt = info::txt_entries(&atv4k);
        assert!(txt.contains(&("osvers".into(), OS_VERSION_4K.into())));
        assert!(txt.contains(&("psi".into(), atv4k.pi.clone())));
        let major: u32 = OS_VERSION_4K.split('.').next().unwrap().parse().unwrap();
        assert!(major >= 13, "pyatv needs osvers >= 13 for the MRP tunnel");
        let atv3 = info::txt_entries(&AirplayConfig::apple_tv("tv", 9).info);
        assert!(!atv3.iter().any(|(k, _)| k == "osvers" || k == "psi"));
    }

    #[test]
    fn session_differs_between_connections_unless_fixed() {
        let svc = service(None);
        let (a, b) = (conn(0), conn(1));
        let mut ca = svc.open(&a);
        let mut cb = svc.open(&b);
        let sa = drive(&svc, &mut ca, &a, &req("OPTIONS", "*", 1)).0;
        let sb = drive(&svc, &mut cb, &b, &req("OPTIONS", "*", 1)).0;
        assert_ne!(sa.headers.get("Session"), sb.headers.get("Session"));
    }

    #[test]
    fn info_is_a_binary_plist_with_the_seed_derived_ed25519_key() {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let (resp, notes) = drive(&svc, &mut c, &info, &req("GET", "/info", 0));
        assert_eq!(warnings(&notes), 0);
        assert_eq!(
            resp.headers.get("Content-Type"),
            Some("application/x-apple-binary-plist")
        );
        let v = Value::from_reader(Cursor::new(&resp.body)).unwrap();
        let d = v.as_dictionary().unwrap();
        let pk = d["pk"].as_data().unwrap();
        let again = AirplayConfig::apple_tv("tv", 9);
        assert_eq!(pk, again.signing_key.verifying_key().as_bytes());
        assert_ne!(pk, AirplayConfig::apple_tv("tv", 10).info.pk);
        assert_ne!(pk, AirplayConfig::apple_tv("den", 9).info.pk);
        assert!(d
            .get("initialVolume")
            .is_some_and(|v| v.as_real().is_some()));
        assert_eq!(d["features"].as_unsigned_integer(), Some(DEFAULT_FEATURES));
        for bit in HOMEKIT_BITS {
            assert_eq!(DEFAULT_FEATURES >> bit & 1, 0, "bit {bit}");
        }
    }

    #[test]
    fn qualifier_gets_only_the_txt_record() {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req("GET", "/info", 0);
        r.headers
            .set("Content-Type", "application/x-apple-binary-plist");
        r.body = info::qualifier_body("txtAirPlay");
        let (resp, _) = drive(&svc, &mut c, &info, &r);
        let v = Value::from_reader(Cursor::new(&resp.body)).unwrap();
        let d = v.as_dictionary().unwrap();
        assert_eq!(d.len(), 1);
        let txt = info::decode_txt(d["txtAirPlay"].as_data().unwrap()).unwrap();
        assert!(txt.contains(&("deviceid".into(), "AA:BB:CC:DD:EE:FF".into())));
    }

    #[rstest]
    #[case(0)]
    #[case(1)]
    #[case(2)]
    #[case(3)]
    fn fp_setup_phase1_then_phase3_answer_the_known_bytes(#[case] mode: u8) {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req("POST", "/fp-setup", 1);
        r.headers.set("X-Apple-ET", "32");
        r.body = fairplay::phase1_request(mode).to_vec();
        let (resp, notes) = drive(&svc, &mut c, &info, &r);
        assert_eq!(warnings(&notes), 0);
        assert_eq!(resp.body[..], fairplay::phase1_reply(mode).unwrap()[..]);
        let payload: [u8; 152] = std::array::from_fn(|i| (i * 7) as u8);
        r.body = fairplay::phase3_request(&payload);
        let (resp, notes) = drive(&svc, &mut c, &info, &r);
        assert_eq!(warnings(&notes), 0);
        assert_eq!(resp.body[..12], fairplay::PHASE3_HEADER);
        assert_eq!(resp.body[12..], r.body[144..164]);
        assert!(notes
            .iter()
            .any(|n| matches!(n, Note::Info(t) if t.contains("key message"))));
        let st = svc.state_json(at());
        assert_eq!(st["fp_setup"]["phase1_modes"], serde_json::json!([mode]));
        assert_eq!(st["fp_setup"]["phase3"], 1);
    }

    #[rstest]
    #[case::not_fply(b"XPLY\x03\x01\x01\0\0\0\0\x04\x02\0\x01\xbb".to_vec(), 142)]
    #[case::version_2(b"FPLY\x02\x01\x01\0\0\0\0\x04\x02\0\x01\xbb".to_vec(), 0)]
    #[case::mode_7(fairplay::phase1_request(7).to_vec(), 0)]
    #[case::short(b"FP".to_vec(), 0)]
    #[case::phase_9(b"FPLY\x03\x01\x09\0".to_vec(), 0)]
    fn bad_fp_setup_gets_what_receivers_send_and_one_warning(
        #[case] body: Vec<u8>,
        #[case] reply_len: usize,
    ) {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req("POST", "/fp-setup", 1);
        r.body = body;
        let (resp, notes) = drive(&svc, &mut c, &info, &r);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), reply_len);
        assert_eq!(warnings(&notes), 1, "{notes:?}");
    }

    #[test]
    fn fault_parameters_change_the_mode_and_the_echo() {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut r = req("POST", "/fp-setup", 1);
        r.body = fairplay::phase1_request(0).to_vec();
        let params = CoreParams {
            fp_reply_mode: Some(2),
            fp_echo_offset: Some(0),
            ..Default::default()
        };
        let (resp, _) = drive_with(&svc, &mut c, &info, &r, &params, at());
        assert_eq!(fairplay::mode_of_reply(&resp.body), Some(2));
        r.body = fairplay::phase3_request(&[9; 152]);
        let (resp, _) = drive_with(&svc, &mut c, &info, &r, &params, at());
        assert_eq!(resp.body[12..], r.body[..20]);
    }

    #[test]
    fn video_api_over_http_plays_on_the_clock_and_stops() {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let http = |method: &str, uri: &str| Request::new(method, uri, Protocol::Http11);
        let mut play = http("POST", "/play");
        let mut d = Dictionary::new();
        d.insert("Content-Location".into(), "http://127.0.0.1/v.mp4".into());
        d.insert("Start-Position".into(), Value::Integer(0.into()));
        play.body = info::encode(d).unwrap();
        play.headers
            .set("Content-Type", "application/x-apple-binary-plist");
        let (resp, _) = drive(&svc, &mut c, &info, &play);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.protocol, Protocol::Http11);
        assert!(resp.headers.get("Date").is_some() && resp.headers.get("Session").is_none());
        let later = at() + Duration::from_millis(1500);
        let p = CoreParams::default();
        let (resp, _) = drive_with(
            &svc,
            &mut c,
            &info,
            &http("GET", "/playback-info"),
            &p,
            later,
        );
        assert_eq!(
            resp.headers.get("Content-Type"),
            Some("text/x-apple-plist+xml")
        );
        let v = Value::from_reader_xml(Cursor::new(&resp.body)).unwrap();
        assert_eq!(v.as_dictionary().unwrap()["position"].as_real(), Some(1.5));
        drive_with(&svc, &mut c, &info, &http("POST", "/stop"), &p, later);
        let st = svc.state_json(later + Duration::from_secs(9));
        assert_eq!(st["video"]["state"], "stopped");
        assert_eq!(st["video"]["url"], "http://127.0.0.1/v.mp4");
        assert_eq!(st["video"]["position"], 1.5);
        let (resp, _) = drive(&svc, &mut c, &info, &http("GET", "/server-info"));
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.headers.get("Content-Type"),
            Some("text/x-apple-plist+xml")
        );
        let v = Value::from_reader_xml(Cursor::new(&resp.body)).unwrap();
        assert!(v.as_dictionary().unwrap().contains_key("deviceid"));
        let (resp, notes) = drive(&svc, &mut c, &info, &http("POST", "/rate"));
        assert_eq!((resp.status, warnings(&notes)), (400, 1));
    }

    proptest::proptest! {
        /// Whatever the body, /fp-setup and /info answer 200 and never panic.
        #[test]
        fn arbitrary_bodies_get_an_answer(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            fply in proptest::prelude::any::<bool>(),
        ) {
            let svc = service(None);
            let info = conn(0);
            let mut c = svc.open(&info);
            let mut body = body;
            if fply {
                body.splice(0..0, *b"FPLY\x03\x01");
            }
            for path in ["/fp-setup", "/info"] {
                let method = if path == "/info" { "GET" } else { "POST" };
                let mut r = req(method, path, 1);
                r.body = body.clone();
                let (resp, _) = drive(&svc, &mut c, &info, &r);
                proptest::prop_assert_eq!(resp.status, 200);
            }
        }
    }

    #[test]
    fn audio_session_goes_to_the_raop_core() {
        let svc = service(None);
        let info = conn(0);
        let mut c = svc.open(&info);
        let mut a = req("ANNOUNCE", "rtsp://127.0.0.1/1", 1);
        testkit::body_for("ANNOUNCE", &mut a);
        assert_eq!(drive(&svc, &mut c, &info, &a).0.status, 200);
        assert_eq!(svc.raop.state.lock().unwrap().sessions_total, 1);
        svc.close(c);
        assert_eq!(svc.raop.state.lock().unwrap().active_sessions, 0);
    }
}
