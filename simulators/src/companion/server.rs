//! The device side of Companion (docs/protocols/companion.md), a sans-IO [`StreamCore`]: frames
//! in, frames out. A connection pairs (`PS_Start`/`PS_Next`: HAP pair-setup with the PIN shown
//! on screen) or pair-verifies (`PV_Start`/`PV_Next`) through the HAP cores of [`crate::hap`],
//! then talks encrypted OPACK messages: the requests pyatv sends on connect (`_systemInfo`,
//! `_touchStart`, `_sessionStart`, `TVRCSessionStart`, `_tiStart`, `FetchAttentionState`), event
//! interest (`_interest`), the app list (`FetchLaunchableApplicationsEvent`) and `_launchApp`,
//! HID buttons (`_hidC`, which also carry sleep and wake), media control (`_mcc`, with the
//! volume) and touch events (`_hidT`). A request with no handler gets the error a real device
//! gives.
//!
//! A request is handled when its answer is due, after the fault seam has looked at the answer's
//! name ([`StreamConn::next_transmit`]), so that a `companion` fault can refuse a launch or put
//! the device to sleep before the answer is made, or spoil the answer's tag.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::frame::{FrameType, Reader};
use super::message::{Message, MessageType};
use super::opack::{self, Value};
use super::session::{self, Session};
use super::text_input;
use crate::fault::{CompanionFault, CoreParams};
use crate::hap::pair_setup::{self, Hkp, PairSetup, Policy};
use crate::hap::pair_verify::{self, PairVerify};
use crate::hap::tlv8::kind;
use crate::hap::{Controller, ErrorCode, Identity, Tlv8};
use crate::now_playing::Model;
use crate::protocol_core::ConnInfo;
use crate::stream_core::{NamedTransmit, StreamConn, StreamCore, StreamEvent};
use crate::wire::dns_sd::ServiceRecord;

/// The name of the framing in transcripts.
pub const PROTOCOL: &str = "COMPANION";
/// The DNS-SD service type.
pub const SERVICE: &str = "_companion-link._tcp";
/// `rpFl` of an Apple TV 4K (docs/protocols/companion.md, "Discovery"): bit 0x4000 says that
/// pairing with a PIN is possible (pyatv: pairing Mandatory), bit 0x4 would say pairing is
/// disabled.
pub const FLAGS_4K: u32 = 0x36782;
/// The `rpFl` bit that makes pyatv treat Companion pairing as mandatory.
pub const FLAG_PIN_PAIRING: u32 = 0x4000;
/// The `_ec` of the answer to a request the device has no handler for, with `_em` "No request
/// handler" (docs/protocols/companion.md, "Messages").
pub const NO_HANDLER: i64 = 58822;
/// The `_ec` of a refused `_launchApp` (an unknown bundle, or a `companion: refuse_launch`
/// fault).
pub const LAUNCH_REFUSED: i64 = 1;
/// Largest frame payload the device reads.
pub const MAX_FRAME: usize = 1 << 20;

/// One launchable app: its bundle identifier and the name the home screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub bundle_id: String,
    pub name: String,
}

impl App {
    pub fn new(bundle_id: &str, name: &str) -> Self {
        App {
            bundle_id: bundle_id.into(),
            name: name.into(),
        }
    }
}

/// The apps of a fresh Apple TV 4K with a few popular ones installed.
pub fn default_apps() -> Vec<App> {
    vec![
        App::new("com.apple.TVWatchList", "TV"),
        App::new("com.apple.TVMusic", "Music"),
        App::new("com.apple.TVPhotos", "Photos"),
        App::new("com.apple.TVAppStore", "App Store"),
        App::new("com.apple.TVSettings", "Settings"),
        App::new("com.google.ios.youtube", "YouTube"),
        App::new("com.netflix.Netflix", "Netflix"),
    ]
}

/// The HID buttons of `_hidC` (`_hidC` values 1..=19), by the names state and transcripts use.
pub const BUTTONS: [&str; 19] = [
    "up",
    "down",
    "left",
    "right",
    "menu",
    "select",
    "home",
    "volume_up",
    "volume_down",
    "siri",
    "screensaver",
    "sleep",
    "wake",
    "play_pause",
    "channel_up",
    "channel_down",
    "guide",
    "page_up",
    "page_down",
];

/// `_mcc` commands (values 1..=13).
const MEDIA_COMMANDS: [&str; 13] = [
    "play",
    "pause",
    "next",
    "previous",
    "get_volume",
    "set_volume",
    "skip_by",
    "fast_forward_begin",
    "fast_forward_end",
    "rewind_begin",
    "rewind_end",
    "get_caption_settings",
    "set_caption_settings",
];

/// `_mcF` media-control flags the device announces: play, pause, next, previous and volume
/// (docs/protocols/companion.md, "Events").
const MEDIA_FLAGS: i64 = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0100;

/// How the device looks and what it starts with.
#[derive(Debug, Clone)]
pub struct CompanionConfig {
    /// The name in `_systemInfo` answers and the DNS-SD instance.
    pub name: String,
    /// `rpMd`, e.g. `AppleTV11,1`.
    pub model: String,
    /// `rpMRtID`: the identifier pyatv keys the device by.
    pub rp_id: String,
    /// `rpFl`.
    pub flags: u32,
    /// `rpVr`, the Companion version.
    pub version: String,
    /// `rpBA`, a MAC-like address.
    pub bluetooth: String,
    /// The long-term identity of pair-setup M6 and pair-verify M2.
    pub identity: Identity,
    /// The PIN the device shows at pair-setup.
    pub pin: String,
    pub policy: Policy,
    /// Controllers paired before the device started (those of its AirPlay side).
    pub known: Vec<Controller>,
    pub apps: Vec<App>,
    /// The app in front at start (a bundle identifier).
    pub current_app: Option<String>,
    /// Whether the device starts awake.
    pub awake: bool,
    /// Volume 0.0..=1.0.
    pub volume: f64,
    /// The text of a focused text field; `None`: no field is focused.
    pub text_field: Option<String>,
    pub seed: u64,
}

impl CompanionConfig {
    /// An Apple TV 4K's Companion side with `identity` and `pin` (those of its AirPlay side).
    pub fn apple_tv_4k(name: &str, identity: Identity, pin: &str, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ crate::seed::label_hash(name) ^ 0x5250);
        let b: [u8; 6] = rng.gen();
        CompanionConfig {
            name: name.into(),
            model: "AppleTV11,1".into(),
            rp_id: crate::hap::identity::uuid(rng.gen()),
            flags: FLAGS_4K,
            version: "715.2".into(),
            bluetooth: b.map(|x| format!("{x:02X}")).join(":"),
            identity,
            pin: pin.into(),
            policy: Policy::default(),
            known: Vec::new(),
            apps: default_apps(),
            current_app: Some("com.apple.TVWatchList".into()),
            awake: true,
            volume: 0.5,
            text_field: None,
            seed,
        }
    }

    /// The `_companion-link._tcp` record (docs/protocols/companion.md, "Discovery").
    pub fn services(&self, name: &str, port: u16) -> Vec<ServiceRecord> {
        let mut r = ServiceRecord::new(SERVICE, name, port);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x7270_4841);
        let mut tag = || hex::encode(rng.gen::<[u8; 6]>());
        r.set("rpMac", "0");
        r.set("rpHN", tag());
        r.set("rpFl", format!("0x{:X}", self.flags));
        r.set("rpHA", tag());
        r.set("rpMd", self.model.clone());
        r.set("rpVr", self.version.clone());
        r.set("rpAD", tag());
        r.set("rpHI", tag());
        r.set("rpBA", self.bluetooth.clone());
        r.set("rpMRtID", self.rp_id.clone());
        vec![r]
    }
}

/// What the device now believes, device-wide.
#[derive(Debug, Clone, Serialize)]
pub struct TvState {
    pub apps: Vec<App>,
    pub current_app: Option<String>,
    pub awake: bool,
    pub volume: f64,
    /// Buttons released, in order (`up`, `sleep`, …; the latest
    /// [`crate::protocol_core::HISTORY_KEPT`], as for the lists below).
    pub keys: Vec<String>,
    /// Bundles or URLs launched, in order.
    pub launches: Vec<String>,
    /// Launches refused.
    pub refused_launches: u64,
    /// `_mcc` commands, in order.
    pub media_commands: Vec<String>,
    /// Touch events (`_hidT`).
    pub touches: u64,
    /// Sessions started (`_sessionStart`).
    pub sessions: u64,
    /// The `name` of the last `_systemInfo`.
    pub client_name: Option<String>,
    /// The focused text field's text; `None`: no field is focused.
    pub text: Option<String>,
}

struct PairingState {
    setup: PairSetup,
    controllers: Vec<Controller>,
    rng: ChaCha8Rng,
    verified: u64,
    failed: u64,
}

struct Shared {
    config: CompanionConfig,
    tv: Mutex<TvState>,
    pairing: Mutex<PairingState>,
    /// The device's now-playing model, shared with DACP and MRP: `_mcc` commands and the
    /// volume act on it (docs/protocols/mrp.md, "One now-playing model").
    now_playing: Option<Arc<Model>>,
}

impl Shared {
    /// The volume, 0..1: the shared model's when there is one.
    fn volume(&self, tv: &TvState) -> f64 {
        match &self.now_playing {
            Some(m) => m.lock().volume / 100.0,
            None => tv.volume,
        }
    }

    /// Sets the volume, 0..1, in the shared model too.
    fn set_volume(&self, tv: &mut TvState, v: f64, now: SystemTime) {
        tv.volume = v.clamp(0.0, 1.0);
        if let Some(m) = &self.now_playing {
            let percent = (tv.volume * 1000.0).round() / 10.0;
            m.with(now, |p| {
                p.set_property("dmcp.volume", &percent.to_string(), now)
            })
            .ok();
        }
    }

    /// A transport command (`play`, `pause`, `nextitem`, `previtem`) on the shared model.
    fn transport(&self, command: &str, now: SystemTime) {
        if let Some(m) = &self.now_playing {
            m.with(now, |p| p.command(command, now)).ok();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Companion core of a device, shared by its connections.
pub struct CompanionCore {
    shared: Arc<Shared>,
}

/// Why a live change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("app {0:?} is not installed (known: {1})")]
    UnknownApp(String, String),
}

impl CompanionCore {
    pub fn new(config: CompanionConfig) -> Self {
        let tv = TvState {
            apps: config.apps.clone(),
            current_app: config.current_app.clone(),
            awake: config.awake,
            volume: config.volume,
            keys: Vec::new(),
            launches: Vec::new(),
            refused_launches: 0,
            media_commands: Vec::new(),
            touches: 0,
            sessions: 0,
            client_name: None,
            text: config.text_field.clone(),
        };
        let pairing = PairingState {
            setup: PairSetup::new(config.policy),
            controllers: config.known.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x4350_4E00),
            verified: 0,
            failed: 0,
        };
        CompanionCore {
            shared: Arc::new(Shared {
                config,
                tv: Mutex::new(tv),
                pairing: Mutex::new(pairing),
                now_playing: None,
            }),
        }
    }

    /// A Companion side whose media commands and volume act on the device's shared now-playing
    /// `model`.
    pub fn with_now_playing(config: CompanionConfig, model: Arc<Model>) -> Self {
        let mut core = CompanionCore::new(config);
        if let Some(shared) = Arc::get_mut(&mut core.shared) {
            shared.now_playing = Some(model);
        }
        core
    }

    pub fn config(&self) -> &CompanionConfig {
        &self.shared.config
    }

    /// A copy of the device's state.
    pub fn tv(&self) -> TvState {
        lock(&self.shared.tv).clone()
    }

    /// The controllers paired over Companion.
    pub fn controllers(&self) -> Vec<Controller> {
        lock(&self.shared.pairing).controllers.clone()
    }

    /// State for expectations and the control API: `power` (`on`/`off`), `current_app`,
    /// `apps`, `keys`, `launches`, `refused_launches`, `media_commands`, `volume`, `touches`,
    /// `sessions`, `client_name`, `text` (the focused field's), and the pairing's `paired`, `verified`, `failed`, `pin`.
    pub fn state_json(&self) -> serde_json::Value {
        let tv = self.tv();
        let p = lock(&self.shared.pairing);
        json!({
            "power": if tv.awake { "on" } else { "off" },
            "current_app": tv.current_app,
            "apps": tv.apps.iter().map(|a| a.bundle_id.clone()).collect::<Vec<_>>(),
            "keys": tv.keys,
            "launches": tv.launches,
            "refused_launches": tv.refused_launches,
            "media_commands": tv.media_commands,
            "volume": self.shared.volume(&tv),
            "touches": tv.touches,
            "sessions": tv.sessions,
            "client_name": tv.client_name,
            "text": tv.text,
            "pin": self.shared.config.pin,
            "paired": p.controllers.iter().map(Controller::id_text).collect::<Vec<_>>(),
            "verified": p.verified,
            "failed": p.failed,
        })
    }

    /// Turns the device on or off (the control API's `power`).
    pub fn set_awake(&self, awake: bool) {
        lock(&self.shared.tv).awake = awake;
    }

    /// Brings app `bundle` to the front (the control API's `app`).
    pub fn set_current_app(&self, bundle: &str) -> Result<(), ChangeError> {
        let mut tv = lock(&self.shared.tv);
        if !tv.apps.iter().any(|a| a.bundle_id == bundle) {
            let known = tv
                .apps
                .iter()
                .map(|a| a.bundle_id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ChangeError::UnknownApp(bundle.into(), known));
        }
        tv.current_app = Some(bundle.into());
        Ok(())
    }
}

impl StreamCore for CompanionCore {
    type Conn = CompanionConn;

    fn open(&self, conn: &ConnInfo) -> CompanionConn {
        let seed = lock(&self.shared.pairing).rng.gen();
        CompanionConn {
            shared: self.shared.clone(),
            index: conn.index,
            reader: Reader::new(MAX_FRAME),
            inbound: VecDeque::new(),
            due: None,
            outbound: VecDeque::new(),
            events: VecDeque::new(),
            session: None,
            verify: PairVerify::new(),
            params: CoreParams::default(),
            interests: BTreeSet::new(),
            xid: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            frames_read: 0,
            pending_power: None,
            pending_imc: false,
            text_session: None,
            now: SystemTime::UNIX_EPOCH,
            closed: false,
        }
    }
}

/// A decoded frame waiting to be handled.
#[derive(Debug, Clone)]
enum Inbound {
    /// The TLV8 of a pair-setup (`setup`) or pair-verify message.
    Pairing {
        setup: bool,
        tlv: Vec<u8>,
    },
    Request(Message),
    Event(Message),
}

impl Inbound {
    /// The name of the transmit that answers it.
    fn answer_name(&self) -> String {
        match self {
            Inbound::Pairing { setup: true, .. } => FrameType::PsNext.name(),
            Inbound::Pairing { setup: false, .. } => FrameType::PvNext.name(),
            Inbound::Request(m) | Inbound::Event(m) => m.name.clone().unwrap_or_default(),
        }
    }
}

struct Outbound {
    transmit: NamedTransmit,
    /// Sealed, so a `bad_mac` fault can spoil its tag.
    sealed: bool,
}

/// One Companion connection.
pub struct CompanionConn {
    shared: Arc<Shared>,
    index: u64,
    reader: Reader,
    inbound: VecDeque<Inbound>,
    due: Option<Inbound>,
    outbound: VecDeque<Outbound>,
    events: VecDeque<StreamEvent>,
    session: Option<Session>,
    verify: PairVerify,
    params: CoreParams,
    interests: BTreeSet<String>,
    xid: i64,
    rng: ChaCha8Rng,
    frames_read: u64,
    /// A power change to push once the answer is queued.
    pending_power: Option<bool>,
    /// A volume change to announce with `_iMC` once the answer is queued.
    pending_imc: bool,
    /// The text-input session `_tiStart` opened.
    text_session: Option<[u8; 16]>,
    /// When the last bytes arrived (pair-setup's back-off counts from it).
    now: SystemTime,
    closed: bool,
}

fn since_epoch(now: SystemTime) -> Duration {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl CompanionConn {
    fn close(&mut self, reason: impl Into<String>) {
        self.events.push_back(StreamEvent::Close(reason.into()));
        self.closed = true;
    }

    fn warn_and_close(&mut self, message: String) {
        self.events.push_back(StreamEvent::Warning(message.clone()));
        self.close(message);
    }

    /// Queues a frame carrying `payload` (encrypted once pair-verify is done).
    fn send_frame(&mut self, name: &str, kind: FrameType, payload: &Value, fields: String) {
        let plain = opack::encode(payload);
        let (bytes, sealed) = match self.session.as_mut() {
            Some(s) => (s.seal(kind, &plain), true),
            None => (session::plain(kind, &plain), false),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                self.events
                    .push_back(StreamEvent::Warning(format!("{name}: {e}")));
                return;
            }
        };
        self.events.push_back(StreamEvent::Sent {
            name: name.into(),
            len: plain.len(),
            fields,
        });
        self.outbound.push_back(Outbound {
            transmit: NamedTransmit {
                name: name.into(),
                bytes,
            },
            sealed,
        });
    }

    fn send_message(&mut self, name: &str, msg: Message) {
        let fields = match &msg.error {
            Some(e) => format!("error {}: {e}", msg.content),
            None => msg.content.to_string(),
        };
        self.send_frame(name, FrameType::EOpack, &msg.to_value(), fields);
    }

    /// Pushes event `name` if the client registered interest in it.
    fn push_event(&mut self, name: &str, content: Value) {
        if !self.interests.contains(name) {
            return;
        }
        self.xid += 1;
        let msg = Message::event(name, content, self.xid);
        self.send_message(name, msg);
    }

    fn push_power(&mut self, awake: bool) {
        let state = Value::dict([("state", Value::Int(if awake { 3 } else { 1 }))]);
        self.push_event("SystemStatus", state.clone());
        self.push_event("TVSystemStatus", state);
    }

    fn decode_frame(&mut self, frame: super::frame::Frame) {
        let kind = frame.kind();
        let n = self.frames_read;
        self.frames_read += 1;
        let payload = match self.session.as_mut() {
            Some(s) => match s.open(&frame) {
                Ok(p) => p,
                Err(_) => {
                    self.warn_and_close(format!(
                        "{} frame {n} does not authenticate (bad MAC); closing",
                        kind.name()
                    ));
                    return;
                }
            },
            None => frame.payload,
        };
        if kind == FrameType::NoOp {
            self.events.push_back(StreamEvent::Received {
                name: kind.name(),
                len: payload.len(),
                fields: String::new(),
            });
            return;
        }
        let value = match opack::decode(&payload) {
            Ok(v) => v,
            Err(e) => {
                self.warn_and_close(format!("{} frame {n}: {e}", kind.name()));
                return;
            }
        };
        match kind {
            FrameType::PsStart | FrameType::PsNext | FrameType::PvStart | FrameType::PvNext => {
                let setup = matches!(kind, FrameType::PsStart | FrameType::PsNext);
                let Some(tlv) = value.get("_pd").and_then(Value::as_bytes) else {
                    self.warn_and_close(format!("{} without `_pd` pairing data", kind.name()));
                    return;
                };
                let state = Tlv8::decode(tlv).ok().and_then(|t| t.state());
                self.events.push_back(StreamEvent::Received {
                    name: kind.name(),
                    len: payload.len(),
                    fields: state.map(|s| format!("M{s}")).unwrap_or_default(),
                });
                self.inbound.push_back(Inbound::Pairing {
                    setup,
                    tlv: tlv.to_vec(),
                });
            }
            FrameType::EOpack | FrameType::UOpack | FrameType::POpack => {
                if kind == FrameType::EOpack && self.session.is_none() {
                    self.warn_and_close("E_OPACK frame before pair-verify; closing".into());
                    return;
                }
                let msg = match Message::from_value(&value) {
                    Ok(m) => m,
                    Err(e) => {
                        self.warn_and_close(format!("{} frame {n}: {e}", kind.name()));
                        return;
                    }
                };
                let name = msg.name.clone().unwrap_or_else(|| "(unnamed)".into());
                self.events.push_back(StreamEvent::Received {
                    name: name.clone(),
                    len: payload.len(),
                    fields: format!("xid={} {}", msg.xid.unwrap_or(-1), msg.content),
                });
                match msg.kind {
                    MessageType::Request => self.inbound.push_back(Inbound::Request(msg)),
                    MessageType::Event => self.inbound.push_back(Inbound::Event(msg)),
                    MessageType::Response => self.events.push_back(StreamEvent::Warning(format!(
                        "response {name} to a request the device never sent"
                    ))),
                }
            }
            other => self.events.push_back(StreamEvent::Warning(format!(
                "{} is not a frame a client sends; ignored",
                other.name()
            ))),
        }
    }

    /// Handles the request whose answer is due, under `params`.
    fn handle_due(&mut self, item: Inbound, now: SystemTime) {
        let params = self.params.clone();
        if params.companion == Some(CompanionFault::Sleep) {
            let was = std::mem::replace(&mut lock(&self.shared.tv).awake, false);
            self.events.push_back(StreamEvent::Note(
                "device goes to sleep (companion fault)".into(),
            ));
            if was {
                self.pending_power = Some(false);
            }
        }
        match item {
            Inbound::Pairing { setup: true, tlv } => self.pair_setup(&tlv, now),
            Inbound::Pairing { setup: false, tlv } => self.pair_verify(&tlv),
            Inbound::Request(msg) => self.request(msg, &params),
            Inbound::Event(msg) => self.event(msg),
        }
        if let Some(awake) = self.pending_power.take() {
            self.push_power(awake);
        }
        // pyatv's volume calls wait for `_iMC` and then ask for the volume.
        if std::mem::take(&mut self.pending_imc) {
            self.push_event("_iMC", Value::dict([("_mcF", Value::Int(MEDIA_FLAGS))]));
        }
    }
}

impl CompanionConn {
    fn pair_setup(&mut self, tlv: &[u8], now: SystemTime) {
        let config = &self.shared.config;
        let mut p = lock(&self.shared.pairing);
        let PairingState { setup, rng, .. } = &mut *p;
        let msg = pair_setup::Message {
            conn: self.index,
            hkp: Hkp::Pin,
            body: tlv,
            now: since_epoch(now),
            forgery: None,
        };
        let reply = setup.handle(msg, &config.identity, &config.pin, rng);
        let state = Tlv8::decode(&reply.body)
            .ok()
            .and_then(|t| t.state())
            .unwrap_or(0);
        let mut note = None;
        match reply.outcome {
            pair_setup::Outcome::Continue => {
                if state == 2 {
                    note = Some(format!("enter PIN {} on the client", config.pin));
                }
            }
            pair_setup::Outcome::Transient { .. } => {
                p.failed += 1;
                note = Some("transient pair-setup is not offered over Companion".into());
            }
            pair_setup::Outcome::Paired(c) => {
                note = Some(format!(
                    "paired controller {}{}",
                    c.id_text(),
                    c.name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ));
                p.controllers.retain(|k| k.id != c.id);
                p.controllers.push(c);
            }
            pair_setup::Outcome::Failed { code, reason } => {
                p.failed += 1;
                let text = format!("pair-setup: error {code}: {reason}");
                drop(p);
                self.refusal(code, text);
                return self.send_pairing(FrameType::PsNext, reply.body, state);
            }
        }
        drop(p);
        if let Some(n) = note {
            self.events.push_back(StreamEvent::Note(n));
        }
        self.send_pairing(FrameType::PsNext, reply.body, state);
    }

    fn pair_verify(&mut self, tlv: &[u8]) {
        let config = &self.shared.config;
        let controllers = lock(&self.shared.pairing).controllers.clone();
        let reply = self
            .verify
            .handle(tlv, &config.identity, &controllers, &mut self.rng);
        let state = Tlv8::decode(&reply.body)
            .ok()
            .and_then(|t| t.state())
            .unwrap_or(0);
        match reply.outcome {
            pair_verify::Outcome::Continue => {
                self.send_pairing(FrameType::PvNext, reply.body, state)
            }
            pair_verify::Outcome::Verified { controller, shared } => {
                lock(&self.shared.pairing).verified += 1;
                self.events.push_back(StreamEvent::Note(format!(
                    "pair-verify: controller {} verified; frames encrypted from here",
                    String::from_utf8_lossy(&controller)
                )));
                self.send_pairing(FrameType::PvNext, reply.body, state);
                self.session = Some(Session::device(&shared));
            }
            pair_verify::Outcome::Failed { code, reason } => {
                lock(&self.shared.pairing).failed += 1;
                self.refusal(code, format!("pair-verify: error {code}: {reason}"));
                self.send_pairing(FrameType::PvNext, reply.body, state);
            }
        }
    }

    /// A refusal a real device gives in normal use is a note; Unknown answers a message no
    /// conforming client sends, so it is a warning.
    fn refusal(&mut self, code: ErrorCode, text: String) {
        self.events.push_back(if code == ErrorCode::Unknown {
            StreamEvent::Warning(text)
        } else {
            StreamEvent::Note(text)
        });
    }

    fn send_pairing(&mut self, kind: FrameType, tlv: Vec<u8>, state: u8) {
        let error = Tlv8::decode(&tlv)
            .ok()
            .and_then(|t| t.byte(kind::ERROR))
            .map(|e| format!(" error {e}"))
            .unwrap_or_default();
        let value = Value::dict([("_pd", Value::Bytes(tlv))]);
        self.send_frame(&kind.name(), kind, &value, format!("M{state}{error}"));
    }

    fn event(&mut self, msg: Message) {
        let name = msg.name.as_deref().unwrap_or_default();
        match name {
            "_interest" => {
                let names = |key: &str| -> Vec<String> {
                    match msg.content.get(key) {
                        Some(Value::Array(items)) => items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                        _ => Vec::new(),
                    }
                };
                for e in names("_deregEvents") {
                    self.interests.remove(&e);
                }
                for e in names("_regEvents") {
                    let new = self.interests.insert(e.clone());
                    if new && e == "_iMC" {
                        self.push_event("_iMC", Value::dict([("_mcF", Value::Int(MEDIA_FLAGS))]));
                    }
                }
            }
            "_hidT" => lock(&self.shared.tv).touches += 1,
            "_tiC" => self.text_edit(&msg.content),
            other => self.events.push_back(StreamEvent::Warning(format!(
                "event {other} is not one a client sends; ignored"
            ))),
        }
    }

    fn request(&mut self, msg: Message, params: &CoreParams) {
        let name = msg.name.clone().unwrap_or_default();
        let answer = self.answer(&name, &msg.content, params);
        let reply = match answer {
            Ok(content) => Message::response(msg.xid, content),
            Err((code, text)) => {
                if code == NO_HANDLER {
                    self.events.push_back(StreamEvent::Warning(format!(
                        "request {name} has no handler here"
                    )));
                }
                Message::error_response(msg.xid, code, &text)
            }
        };
        self.send_message(&name, reply);
    }

    fn answer(
        &mut self,
        name: &str,
        c: &Value,
        params: &CoreParams,
    ) -> Result<Value, (i64, String)> {
        let empty = Value::Dict(Vec::new());
        let config = &self.shared.config;
        match name {
            "_systemInfo" => {
                let client = c.get("name").and_then(Value::as_str).map(str::to_string);
                lock(&self.shared.tv).client_name = client;
                Ok(Value::dict([
                    ("name", Value::str(config.name.clone())),
                    ("model", Value::str(config.model.clone())),
                    ("_i", Value::str(config.rp_id.clone())),
                    ("_sv", Value::str(config.version.clone())),
                ]))
            }
            "_sessionStart" => {
                lock(&self.shared.tv).sessions += 1;
                let sid: u32 = self.rng.gen();
                Ok(Value::dict([("_sid", Value::Int(i64::from(sid)))]))
            }
            "_sessionStop"
            | "_touchStart"
            | "_touchStop"
            | "TVRCSessionStart"
            | "FetchUserAccountsEvent"
            | "SwitchUserAccountEvent" => Ok(empty),
            "_tiStart" => {
                let text = lock(&self.shared.tv).text.clone();
                let Some(text) = text else {
                    self.text_session = None;
                    return Ok(empty);
                };
                let session: [u8; 16] = self.rng.gen();
                self.text_session = Some(session);
                Ok(Value::dict([(
                    "_tiD",
                    Value::Bytes(text_input::session_archive(session, &text)),
                )]))
            }
            "_tiStop" => {
                self.text_session = None;
                Ok(empty)
            }
            "FetchAttentionState" => {
                let awake = lock(&self.shared.tv).awake;
                Ok(Value::dict([(
                    "state",
                    Value::Int(if awake { 3 } else { 1 }),
                )]))
            }
            "FetchLaunchableApplicationsEvent" => {
                let tv = lock(&self.shared.tv);
                Ok(Value::Dict(
                    tv.apps
                        .iter()
                        .map(|a| (Value::str(a.bundle_id.clone()), Value::str(a.name.clone())))
                        .collect(),
                ))
            }
            "_launchApp" => self.launch(c, params),
            "_hidC" => {
                let (Some(state), Some(code)) = (
                    c.get("_hBtS").and_then(Value::as_int),
                    c.get("_hidC").and_then(Value::as_int),
                ) else {
                    return Err((NO_HANDLER, "_hidC needs _hBtS and _hidC".into()));
                };
                let Some(button) = usize::try_from(code - 1).ok().and_then(|i| BUTTONS.get(i))
                else {
                    self.events
                        .push_back(StreamEvent::Warning(format!("_hidC {code} is no button")));
                    return Ok(empty);
                };
                // A button acts when it is released (`_hBtS` 2); pyatv's power commands send
                // only the release.
                if state == 2 {
                    self.button(button);
                }
                Ok(empty)
            }
            "_mcc" => {
                let code = c.get("_mcc").and_then(Value::as_int).unwrap_or(0);
                let Some(command) = usize::try_from(code - 1)
                    .ok()
                    .and_then(|i| MEDIA_COMMANDS.get(i))
                else {
                    return Err((NO_HANDLER, format!("_mcc {code} is no command")));
                };
                let now = self.now;
                let mut tv = lock(&self.shared.tv);
                crate::protocol_core::remember(&mut tv.media_commands, command.to_string());
                match *command {
                    "get_volume" => Ok(Value::dict([(
                        "_vol",
                        Value::Float(self.shared.volume(&tv)),
                    )])),
                    "set_volume" => {
                        if let Some(v) = c.get("_vol").and_then(Value::as_f64) {
                            self.shared.set_volume(&mut tv, v, now);
                        }
                        self.pending_imc = true;
                        Ok(empty)
                    }
                    "play" | "pause" => {
                        drop(tv);
                        self.shared.transport(command, now);
                        Ok(empty)
                    }
                    "next" | "previous" => {
                        drop(tv);
                        let dacp = if *command == "next" {
                            "nextitem"
                        } else {
                            "previtem"
                        };
                        self.shared.transport(dacp, now);
                        Ok(empty)
                    }
                    _ => Ok(empty),
                }
            }
            _ => Err((NO_HANDLER, "No request handler".into())),
        }
    }

    fn text_edit(&mut self, c: &Value) {
        let op = match c.get("_tiD").and_then(Value::as_bytes) {
            Some(archive) => text_input::parse_operation(archive),
            None => {
                self.events
                    .push_back(StreamEvent::Warning("_tiC without _tiD".into()));
                return;
            }
        };
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                self.events
                    .push_back(StreamEvent::Warning(format!("_tiC: {e}")));
                return;
            }
        };
        let ours = self.text_session.map(|s| s.to_vec());
        if op.session.is_none() || op.session != ours {
            self.events.push_back(StreamEvent::Warning(
                "_tiC for a text-input session this connection did not start; ignored".into(),
            ));
            return;
        }
        let mut tv = lock(&self.shared.tv);
        let Some(text) = tv.text.as_mut() else {
            return;
        };
        if let Some(a) = op.assert {
            *text = a;
        }
        if let Some(i) = op.insert {
            text.push_str(&i);
        }
        let now = text.clone();
        drop(tv);
        self.events
            .push_back(StreamEvent::Note(format!("text field now {now:?}")));
    }

    fn launch(&mut self, c: &Value, params: &CoreParams) -> Result<Value, (i64, String)> {
        let target = c
            .get("_bundleID")
            .or_else(|| c.get("_urlS"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let by_url = c.get("_bundleID").is_none();
        let mut tv = lock(&self.shared.tv);
        let known = by_url || tv.apps.iter().any(|a| a.bundle_id == target);
        if params.companion == Some(CompanionFault::RefuseLaunch) || !known {
            tv.refused_launches += 1;
            let why = if known {
                "refused (companion fault)"
            } else {
                "not installed"
            };
            self.events
                .push_back(StreamEvent::Note(format!("launch of {target:?} {why}")));
            return Err((LAUNCH_REFUSED, format!("launch of {target} failed")));
        }
        crate::protocol_core::remember(&mut tv.launches, target.clone());
        if !by_url {
            tv.current_app = Some(target.clone());
        }
        if !tv.awake {
            tv.awake = true;
            self.pending_power = Some(true);
        }
        drop(tv);
        self.events
            .push_back(StreamEvent::Note(format!("launched {target}")));
        Ok(Value::Dict(Vec::new()))
    }

    fn button(&mut self, button: &str) {
        let mut tv = lock(&self.shared.tv);
        crate::protocol_core::remember(&mut tv.keys, button.to_string());
        let was = tv.awake;
        // Sleep turns the device off; any other button wakes it, as a remote's does.
        tv.awake = button != "sleep";
        let now = self.now;
        match button {
            "volume_up" => {
                let v = self.shared.volume(&tv) + 0.05;
                self.shared.set_volume(&mut tv, v.min(1.0), now);
            }
            "volume_down" => {
                let v = self.shared.volume(&tv) - 0.05;
                self.shared.set_volume(&mut tv, v.max(0.0), now);
            }
            "home" => tv.current_app = Some("com.apple.TVWatchList".into()),
            _ => {}
        }
        let awake = tv.awake;
        drop(tv);
        if awake != was {
            self.pending_power = Some(awake);
        }
        if button.starts_with("volume_") {
            self.pending_imc = true;
        }
    }
}

impl StreamConn for CompanionConn {
    fn handle_input(&mut self, bytes: &[u8], now: SystemTime) {
        if self.closed {
            return;
        }
        self.now = now;
        self.reader.push(bytes);
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) => self.decode_frame(frame),
                Ok(None) => break,
                Err(e) => {
                    self.warn_and_close(e.to_string());
                    break;
                }
            }
            if self.closed {
                break;
            }
        }
    }

    fn handle_timeout(&mut self, _now: SystemTime) {}

    fn next_transmit(&mut self) -> Option<String> {
        loop {
            if let Some(o) = self.outbound.front() {
                return Some(o.transmit.name.clone());
            }
            if let Some(d) = &self.due {
                return Some(d.answer_name());
            }
            match self.inbound.pop_front()? {
                Inbound::Event(msg) => {
                    self.event(msg);
                }
                item => self.due = Some(item),
            }
        }
    }

    fn prepare(&mut self, params: &CoreParams) {
        self.params = params.clone();
    }

    fn poll_transmit(&mut self) -> Option<NamedTransmit> {
        if self.outbound.is_empty() {
            if self.due.is_none() {
                self.next_transmit();
            }
            if let Some(item) = self.due.take() {
                self.handle_due(item, self.now);
            }
        }
        let mut o = self.outbound.pop_front()?;
        let params = std::mem::take(&mut self.params);
        if params.companion == Some(CompanionFault::BadMac) {
            if o.sealed {
                session::spoil_tag(&mut o.transmit.bytes);
                self.events.push_back(StreamEvent::Note(format!(
                    "{}: tag spoiled (companion fault)",
                    o.transmit.name
                )));
            } else {
                self.events.push_back(StreamEvent::Warning(format!(
                    "{}: bad_mac on a frame sent in the clear; sent as is",
                    o.transmit.name
                )));
            }
        }
        Some(o.transmit)
    }

    fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        None
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::companion::client::{Client, Incoming};
    use crate::event::EventKind;
    use crate::fault::{Action, Fault, FaultPlan, Match};
    use crate::hap::identity::Credentials;
    use crate::hap::pair_setup::SetupClient;
    use crate::hap::pair_verify::VerifyClient;
    use crate::stream_connection::StreamConnection;
    use crate::testkit;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn core() -> CompanionCore {
        let identity = Identity::from_seed(5, "tv");
        CompanionCore::new(CompanionConfig::apple_tv_4k("tv", identity, "1234", 5))
    }

    fn plan(faults: Vec<(&str, Action)>) -> Arc<FaultPlan> {
        Arc::new(FaultPlan::new(
            7,
            faults
                .into_iter()
                .map(|(m, action)| Fault {
                    when: Match {
                        method: Some(m.into()),
                        ..Match::default()
                    },
                    action,
                    times: None,
                    after: 0,
                    probability: 1.0,
                })
                .collect(),
        ))
    }

    struct Bench {
        conn: StreamConnection<CompanionCore>,
        client: Client,
        events: Vec<EventKind>,
    }

    impl Bench {
        fn new(core: &CompanionCore, plan: Arc<FaultPlan>, index: u64) -> Self {
            Bench {
                conn: StreamConnection::new(
                    core,
                    testkit::conn("tv", index, 49153),
                    plan,
                    PROTOCOL,
                    Duration::from_secs(30),
                    t0(),
                ),
                client: Client::new(100),
                events: Vec::new(),
            }
        }

        /// Sends `bytes`; gives what the device answered (possibly nothing), or the client's
        /// error text.
        fn send(&mut self, bytes: &[u8]) -> Result<Vec<Incoming>, String> {
            self.conn.receive(bytes, t0());
            while let Some(t) = self.conn.poll_transmit() {
                self.client.push(&t);
            }
            self.events
                .extend(std::iter::from_fn(|| self.conn.poll_event()));
            let mut out = Vec::new();
            while let Some(i) = self.client.next_incoming().map_err(|e| e.to_string())? {
                out.push(i);
            }
            Ok(out)
        }

        fn pairing(&mut self, kind: FrameType, tlv: &[u8]) -> Vec<u8> {
            let bytes = self.client.pairing(kind, tlv).unwrap();
            match self.send(&bytes).unwrap().as_slice() {
                [Incoming::Pairing { tlv, .. }] => tlv.clone(),
                other => panic!("{other:?}"),
            }
        }

        fn pair(&mut self, pin: &str) -> Result<Credentials, String> {
            let mut setup = SetupClient::new(pin, false, [9; 32], "CLIENT-1");
            let m2 = self.pairing(FrameType::PsStart, &setup.m1());
            let m4 = self.pairing(FrameType::PsNext, &setup.m3(&m2).unwrap());
            setup.m4(&m4).map_err(|e| e.to_string())?;
            let m6 = self.pairing(FrameType::PsNext, &setup.m5(Some("bench")).unwrap());
            setup.m6(&m6).map_err(|e| e.to_string())
        }

        fn verify(&mut self, credentials: Credentials) {
            let mut v = VerifyClient::new(credentials, [3; 32]);
            let m2 = self.pairing(FrameType::PvStart, &v.m1());
            let m4 = self.pairing(FrameType::PvNext, &v.m3(&m2).unwrap());
            let shared = v.m4(&m4).unwrap();
            self.client.encrypt(&shared);
        }

        /// Sends request `name`; gives the messages that came back (events first, if any).
        fn request(&mut self, name: &str, content: Value) -> Result<Vec<Message>, String> {
            let (_, bytes) = self.client.request(name, content).unwrap();
            Ok(self
                .send(&bytes)?
                .into_iter()
                .filter_map(|i| match i {
                    Incoming::Message(m) => Some(m),
                    _ => None,
                })
                .collect())
        }

        fn event(&mut self, name: &str, content: Value) -> Vec<Message> {
            let bytes = self.client.event(name, content).unwrap();
            self.send(&bytes)
                .unwrap()
                .into_iter()
                .filter_map(|i| match i {
                    Incoming::Message(m) => Some(m),
                    _ => None,
                })
                .collect()
        }
    }

    fn verified(core: &CompanionCore, plan: Arc<FaultPlan>) -> Bench {
        let mut b = Bench::new(core, FaultPlan::empty().into(), 0);
        let creds = b.pair("1234").unwrap();
        let mut b = Bench::new(core, plan, 1);
        b.verify(creds);
        b
    }

    fn hid(down: bool, command: i64) -> Value {
        Value::dict([
            ("_hBtS", Value::Int(if down { 1 } else { 2 })),
            ("_hidC", Value::Int(command)),
        ])
    }

    #[test]
    fn pairs_with_the_pin_verifies_and_answers_encrypted_requests() {
        let core = core();
        let mut b = Bench::new(&core, FaultPlan::empty().into(), 0);
        let wrong = b.pair("9999").unwrap_err();
        assert!(wrong.contains("M4 with error"), "{wrong}");
        let creds = b.pair("1234").unwrap();
        assert_eq!(core.controllers().len(), 1);
        assert_eq!(core.controllers()[0].name.as_deref(), Some("bench"));
        let mut b = Bench::new(&core, FaultPlan::empty().into(), 1);
        b.verify(creds);
        let info = b
            .request("_systemInfo", Value::dict([("name", Value::str("bench"))]))
            .unwrap();
        assert_eq!(info[0].xid, Some(100));
        assert_eq!(
            info[0].content.get("model").and_then(Value::as_str),
            Some("AppleTV11,1")
        );
        let sid = b
            .request("_sessionStart", Value::dict([("_sid", Value::Int(7))]))
            .unwrap();
        assert!(sid[0].content.get("_sid").and_then(Value::as_int).is_some());
        let unknown = b.request("_nothing", Value::Dict(vec![])).unwrap();
        assert_eq!(unknown[0].error.as_deref(), Some("No request handler"));
        let s = core.state_json();
        assert_eq!(s["verified"], 1);
        assert_eq!(s["failed"], 1);
        assert_eq!(s["client_name"], "bench");
        assert!(b.events.iter().any(|e| matches!(e,
            EventKind::Request { method, .. } if method == "_systemInfo")));
    }

    #[test]
    fn lists_and_launches_apps_and_refuses_unknown_ones() {
        let core = core();
        let mut b = verified(&core, FaultPlan::empty().into());
        let apps = b
            .request("FetchLaunchableApplicationsEvent", Value::Dict(vec![]))
            .unwrap();
        assert_eq!(
            apps[0].content.get("com.netflix.Netflix"),
            Some(&Value::str("Netflix"))
        );
        let ok = b
            .request(
                "_launchApp",
                Value::dict([("_bundleID", Value::str("com.netflix.Netflix"))]),
            )
            .unwrap();
        assert_eq!(ok[0].error, None);
        assert_eq!(
            core.tv().current_app.as_deref(),
            Some("com.netflix.Netflix")
        );
        let bad = b
            .request(
                "_launchApp",
                Value::dict([("_bundleID", Value::str("com.example.none"))]),
            )
            .unwrap();
        assert!(bad[0].error.is_some());
        assert_eq!(core.tv().launches, ["com.netflix.Netflix"]);
        assert_eq!(core.tv().refused_launches, 1);
    }

    #[test]
    fn buttons_power_and_pushed_system_status() {
        let core = core();
        let mut b = verified(&core, FaultPlan::empty().into());
        assert!(b
            .event(
                "_interest",
                Value::dict([("_regEvents", Value::Array(vec![Value::str("SystemStatus")]))])
            )
            .is_empty());
        b.request("_hidC", hid(true, 1)).unwrap();
        b.request("_hidC", hid(false, 1)).unwrap();
        let off = b.request("_hidC", hid(false, 12)).unwrap();
        assert_eq!(off.len(), 2, "{off:?}");
        assert_eq!(off[1].name.as_deref(), Some("SystemStatus"));
        assert_eq!(off[1].content.get("state"), Some(&Value::Int(1)));
        let state = b
            .request("FetchAttentionState", Value::Dict(vec![]))
            .unwrap();
        assert_eq!(state[0].content.get("state"), Some(&Value::Int(1)));
        assert_eq!(core.tv().keys, ["up", "sleep"]);
        assert_eq!(core.state_json()["power"], "off");
        b.request("_hidC", hid(false, 13)).unwrap();
        assert_eq!(core.state_json()["power"], "on");
        let imc = b.event(
            "_interest",
            Value::dict([("_regEvents", Value::Array(vec![Value::str("_iMC")]))]),
        );
        assert_eq!(imc[0].content.get("_mcF"), Some(&Value::Int(MEDIA_FLAGS)));
        let set = b
            .request(
                "_mcc",
                Value::dict([("_mcc", Value::Int(6)), ("_vol", Value::Float(0.25))]),
            )
            .unwrap();
        assert_eq!(set[1].name.as_deref(), Some("_iMC"), "{set:?}");
        let vol = b
            .request("_mcc", Value::dict([("_mcc", Value::Int(5))]))
            .unwrap();
        assert_eq!(vol[0].content.get("_vol"), Some(&Value::Float(0.25)));
    }

    #[test]
    fn media_commands_and_volume_act_on_the_shared_now_playing_model() {
        use crate::now_playing::{NowPlaying, Player, Track};
        let cfg = NowPlaying {
            tracks: vec![Track {
                title: "A".into(),
                duration: 60.0,
                ..Track::default()
            }],
            ..NowPlaying::default()
        };
        let model = Arc::new(Model::new(Player::new(&cfg, vec![None], t0())));
        let identity = Identity::from_seed(5, "tv");
        let core = CompanionCore::with_now_playing(
            CompanionConfig::apple_tv_4k("tv", identity, "1234", 5),
            model.clone(),
        );
        let mut b = verified(&core, FaultPlan::empty().into());
        let revision = model.changes.revision();
        // _mcc 2: pause.
        b.request("_mcc", Value::dict([("_mcc", Value::Int(2))]))
            .unwrap();
        assert_eq!(model.lock().state, crate::now_playing::PlayState::Paused);
        assert!(
            model.changes.revision() > revision,
            "other protocols wake up"
        );
        // The volume_up button (8): 50 % to 55 % in the model, read back by get_volume.
        b.request("_hidC", hid(false, 8)).unwrap();
        assert_eq!(model.lock().volume, 55.0);
        let vol = b
            .request("_mcc", Value::dict([("_mcc", Value::Int(5))]))
            .unwrap();
        assert_eq!(vol[0].content.get("_vol"), Some(&Value::Float(0.55)));
        assert_eq!(core.state_json()["volume"], 0.55);
    }

    #[test]
    fn button_and_media_command_histories_keep_the_latest_entries() {
        use crate::protocol_core::HISTORY_KEPT;
        let core = core();
        let mut b = verified(&core, FaultPlan::empty().into());
        for _ in 0..HISTORY_KEPT + 20 {
            b.request("_hidC", hid(false, 1)).unwrap();
            b.request("_mcc", Value::dict([("_mcc", Value::Int(5))]))
                .unwrap();
        }
        b.request("_hidC", hid(false, 2)).unwrap();
        let tv = core.tv();
        assert_eq!(tv.keys.len(), HISTORY_KEPT);
        assert_eq!(tv.keys.last().map(String::as_str), Some("down"));
        assert_eq!(tv.media_commands.len(), HISTORY_KEPT);
    }

    #[test]
    fn companion_faults_refuse_a_launch_sleep_and_spoil_a_tag() {
        let core = core();
        let mut b = verified(
            &core,
            plan(vec![
                (
                    "_launchApp",
                    Action::Companion(CompanionFault::RefuseLaunch),
                ),
                (
                    "FetchAttentionState",
                    Action::Companion(CompanionFault::Sleep),
                ),
                ("_touchStart", Action::Companion(CompanionFault::BadMac)),
            ]),
        );
        let refused = b
            .request(
                "_launchApp",
                Value::dict([("_bundleID", Value::str("com.netflix.Netflix"))]),
            )
            .unwrap();
        assert!(refused[0].error.is_some());
        assert_eq!(
            core.tv().current_app.as_deref(),
            Some("com.apple.TVWatchList")
        );
        let state = b
            .request("FetchAttentionState", Value::Dict(vec![]))
            .unwrap();
        assert_eq!(state[0].content.get("state"), Some(&Value::Int(1)));
        assert!(!core.tv().awake);
        let err = b.request("_touchStart", Value::Dict(vec![])).unwrap_err();
        assert!(err.contains("bad MAC"), "{err}");
        let faults = b
            .events
            .iter()
            .filter(|e| matches!(e, EventKind::Fault { .. }))
            .count();
        assert_eq!(faults, 3);
    }

    #[test]
    fn a_focused_text_field_is_read_and_edited_through_its_session() {
        let identity = Identity::from_seed(5, "tv");
        let mut config = CompanionConfig::apple_tv_4k("tv", identity, "1234", 5);
        config.text_field = Some("star".into());
        let core = CompanionCore::new(config);
        let mut b = verified(&core, FaultPlan::empty().into());
        let start = b.request("_tiStart", Value::Dict(vec![])).unwrap();
        let archive = start[0]
            .content
            .get("_tiD")
            .and_then(Value::as_bytes)
            .unwrap();
        let root = plist::Value::from_reader(std::io::Cursor::new(archive)).unwrap();
        let objects = root.as_dictionary().unwrap()["$objects"]
            .as_array()
            .unwrap();
        let session = objects[1].as_data().unwrap().to_vec();
        assert_eq!(objects[4].as_string(), Some("star"));
        let edit = text_input::tests::edit;
        b.event(
            "_tiC",
            Value::dict([("_tiD", Value::Bytes(edit(&session, Some(" wars"), None)))]),
        );
        assert_eq!(core.tv().text.as_deref(), Some("star wars"));
        b.event(
            "_tiC",
            Value::dict([("_tiD", Value::Bytes(edit(&[0; 16], None, Some(""))))]),
        );
        assert_eq!(
            core.tv().text.as_deref(),
            Some("star wars"),
            "wrong session"
        );
        assert!(b.events.iter().any(|e| matches!(e,
            EventKind::Warning { message } if message.contains("did not start"))));
        b.event(
            "_tiC",
            Value::dict([("_tiD", Value::Bytes(edit(&session, None, Some(""))))]),
        );
        assert_eq!(core.state_json()["text"], "");
    }

    #[test]
    fn a_client_frame_with_a_bad_tag_closes_the_connection() {
        let core = core();
        let mut b = verified(&core, FaultPlan::empty().into());
        let (_, mut bytes) = b
            .client
            .request("_systemInfo", Value::Dict(vec![]))
            .unwrap();
        session::spoil_tag(&mut bytes);
        assert!(b.send(&bytes).unwrap().is_empty());
        assert!(b.events.iter().any(|e| matches!(e,
            EventKind::Warning { message } if message.contains("bad MAC"))));
        assert!(b.conn.end_reason().is_some());
    }

    #[test]
    fn announces_rpfl_with_the_pin_pairing_bit() {
        let c = core();
        let r = &c.config().services("Living Room", 49153)[0];
        assert_eq!(r.service, "_companion-link._tcp");
        let fl = u32::from_str_radix(r.get("rpFl").unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_ne!(fl & FLAG_PIN_PAIRING, 0);
        assert_eq!(fl & 0x4, 0);
        assert_eq!(r.get("rpMd"), Some("AppleTV11,1"));
        assert_eq!(r.get("rpMRtID").map(str::len), Some(36));
    }
}
