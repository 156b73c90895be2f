//! Device kinds: which protocol cores a kind combines and on which ports, its identity defaults,
//! its ready-file entry, DNS-SD records and state, and a builder that starts one.
//!
//! Each kind is one file ([`airport_express`], [`apple_tv`], [`itunes`]) with a unit type that
//! implements [`Kind`] and a [`Builder`] of its own configuration. What is the same for every
//! kind lives here: the running [`Device`] handle (state JSON, state changes, captured audio,
//! events, faults, shutdown), the [`Settings`] every device starts with, and [`Shell`], the one
//! place that turns settings into a listening shell.

pub mod airport_express;
pub mod apple_tv;
pub mod itunes;
pub mod spotify_ap;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::airplay::AirplayCore;
use crate::buffer_budget::BufferBudget;
use crate::dacp::state::{TimelineStep, Track};
use crate::dacp::DacpCore;
use crate::event::Event;
use crate::fault::{Fault, FaultPlan};
use crate::protocol_core::ProtocolCore;
use crate::raop::RaopCore;
use crate::shell::Recorder;
use crate::shell::{self, ShellConfig};
use crate::wire::dns_sd::{host_label, HostRecords, ServiceRecord};
use crate::wire::Limits;

pub use airport_express::AirportExpress;
pub use apple_tv::AppleTv;
pub use itunes::Itunes;
pub use spotify_ap::SpotifyAp;

/// The address a device listens on unless told otherwise.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The keys [`Device::set_state`] accepts.
pub const STATE_KEYS: [&str; 7] = [
    "volume",
    "now_playing",
    "play_state",
    "position",
    "next",
    "power",
    "app",
];

/// What one kind of device is: its name and what it shows of its parts to the outside.
pub trait Kind: Send + Sync + 'static {
    /// The kind's name in scenarios and the ready file, e.g. `apple-tv`.
    fn as_str(&self) -> &'static str;

    /// Identity facts of the ready file a client needs (e.g. `mac`, `public_key`).
    fn identity(&self, parts: &Parts) -> BTreeMap<String, String>;

    /// The DNS-SD services the device publishes under `name`, with its ports by service name.
    fn services(
        &self,
        parts: &Parts,
        ports: &BTreeMap<String, u16>,
        name: &str,
    ) -> Vec<ServiceRecord>;
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol cores a device is made of, for expectations, captures and the ready file. A
/// device kind combines the parts it needs (an Apple TV also receives RAOP audio).
#[derive(Clone, Default)]
pub struct Parts {
    /// RAOP receiver: `Apple-Challenge`, audio sessions and their captures.
    pub raop: Option<Arc<RaopCore>>,
    /// AirPlay side of an Apple TV: `/info`, fp-setup, the video API (its RAOP core is `raop`).
    pub airplay: Option<Arc<AirplayCore>>,
    /// DACP library (iTunes, the remote-control side of an Apple TV): sessions, now playing.
    pub dacp: Option<Arc<DacpCore>>,
    /// Spotify access point: its signing key, accounts and scripted replies.
    pub spotify_ap: Option<Arc<crate::spotify_ap::session::ApCore>>,
    /// Companion side of an Apple TV 4K: pairing, apps, power, buttons.
    pub companion: Option<Arc<crate::companion::CompanionCore>>,
    /// MRP side of an Apple TV 4K (tunnelled over AirPlay): what its data streams saw.
    pub mrp: Option<Arc<crate::mrp::MrpCore>>,
}

/// What the ready file says of one device.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyDevice {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub ports: BTreeMap<String, u16>,
    /// Identity facts a client needs (e.g. `mac`, `public_key`).
    pub identity: BTreeMap<String, String>,
}

/// A device that could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("device {device}: cannot listen on {address}:{port}")]
    Bind {
        device: String,
        address: IpAddr,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("device {device}: no signing key: {source}")]
    Identity {
        device: String,
        #[source]
        source: crate::spotify_ap::identity::IdentityError,
    },
}

/// A state change the device refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("unknown state key {0:?}; supported: volume (RAOP receivers, dB), for DACP devices now_playing, play_state, position, next, and for an Apple TV 4K power (on/off) and app (a bundle id)")]
    UnknownKey(String),
    #[error("device {0} has no RAOP receiver, so no volume")]
    NoVolume(String),
    #[error("volume {0} must be -144 (mute) or -30..0")]
    Volume(Value),
    #[error("device {0} has no DACP library, so no now-playing state")]
    NoNowPlaying(String),
    #[error("now_playing: {0}")]
    NowPlaying(String),
    #[error("now-playing change: {0}")]
    Change(String),
    #[error("device {0} has no Companion side (only an apple-tv of generation 4k has one), so no power or app")]
    NoCompanion(String),
    #[error("power {0} must be \"on\" or \"off\"")]
    Power(Value),
    #[error("app: {0}")]
    App(String),
}

/// Why a device has no audio to give.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("device {0} receives no audio")]
    NoReceiver(String),
    #[error("device {0} has received no audio yet")]
    Nothing(String),
    #[error("{0}")]
    Wav(#[from] hound::Error),
}

/// Why a device has no DNS-SD records.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("device {0}: DNS-SD needs an IPv4 address")]
    NotIpv4(String),
}

/// What every device starts with, whatever its kind.
#[derive(Clone)]
pub struct Settings {
    /// Device name: in events, fault matches and identity defaults.
    pub name: String,
    /// Seed of every random choice of the device (session ids, identity defaults, faults).
    pub seed: u64,
    /// Address to listen on (default 127.0.0.1).
    pub address: IpAddr,
    /// Main port (0: a free one).
    pub port: u16,
    /// A connection that sends nothing for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    pub limits: Limits,
    /// Recorder shared with other devices; a new one when absent.
    pub recorder: Option<Arc<Recorder>>,
    /// Fault plan shared with other devices; a new one seeded by `seed` when absent.
    pub plan: Option<Arc<FaultPlan>>,
    /// Faults added to the plan when the device starts.
    pub faults: Vec<Fault>,
    /// Stop signal shared with other devices; the device owns one when absent.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Buffer budget shared with other devices; the device has its own
    /// ([`BufferBudget::DEFAULT_LIMIT`]) when absent.
    pub buffers: Option<Arc<BufferBudget>>,
}

impl Settings {
    pub fn new(name: &str) -> Self {
        Settings {
            name: name.to_string(),
            seed: 0,
            address: LOOPBACK,
            port: 0,
            idle_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            recorder: None,
            plan: None,
            faults: Vec::new(),
            shutdown: None,
            buffers: None,
        }
    }

    /// The shell these settings describe: recorder, plan and stop signal made where absent, the
    /// settings' faults added to the plan.
    pub fn shell(&self) -> Shell {
        let recorder = self.recorder.clone().unwrap_or_else(Recorder::shared);
        let plan = self
            .plan
            .clone()
            .unwrap_or_else(|| Arc::new(FaultPlan::new(self.seed, Vec::new())));
        for f in &self.faults {
            plan.add(f.clone());
        }
        let (stop, shutdown) = match &self.shutdown {
            Some(rx) => (None, rx.clone()),
            None => {
                let (tx, rx) = watch::channel(false);
                (Some(tx), rx)
            }
        };
        Shell {
            config: ShellConfig {
                device: self.name.as_str().into(),
                recorder,
                plan,
                limits: self.limits,
                idle_timeout: self.idle_timeout,
                shutdown,
                buffers: self.buffers.clone().unwrap_or_default(),
            },
            address: self.address,
            stop,
        }
    }
}

/// A device's shell: every service of the device is served through it, sharing recorder, fault
/// plan and stop signal.
pub struct Shell {
    pub config: ShellConfig,
    pub address: IpAddr,
    /// Stops the device when it owns its stop signal ([`Settings::shutdown`] absent).
    pub stop: Option<watch::Sender<bool>>,
}

impl Shell {
    /// Listens on the shell's address and `port` (0: a free one) and serves `service` there
    /// until the stop signal; returns the bound port and the accept task.
    pub async fn serve<S: ProtocolCore>(
        &self,
        service: Arc<S>,
        service_name: &str,
        port: u16,
    ) -> Result<(u16, JoinHandle<()>), SpawnError> {
        let bind_error = |source| SpawnError::Bind {
            device: self.config.device.to_string(),
            address: self.address,
            port,
            source,
        };
        let listener = shell::bind(SocketAddr::new(self.address, port))
            .await
            .map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?.port();
        let task = shell::spawn(listener, service, self.config.clone(), service_name);
        Ok((bound, task))
    }

    /// Like [`Shell::serve`] for a byte-stream core: its connections are driven by a
    /// [`crate::stream_connection::StreamConnection`]; `protocol` names its framing in the
    /// transcript.
    pub async fn serve_stream<C: crate::stream_core::StreamCore>(
        &self,
        core: Arc<C>,
        service_name: &str,
        protocol: &'static str,
        port: u16,
    ) -> Result<(u16, JoinHandle<()>), SpawnError> {
        let bind_error = |source| SpawnError::Bind {
            device: self.config.device.to_string(),
            address: self.address,
            port,
            source,
        };
        let listener = shell::bind(SocketAddr::new(self.address, port))
            .await
            .map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?.port();
        let task = shell::spawn_stream(listener, core, self.config.clone(), service_name, protocol);
        Ok((bound, task))
    }

    /// Makes the running device from what was served.
    /// A device that is one protocol core on its main port, named `service_name` in the ready
    /// file (an AirPort Express is a RAOP core, iTunes a DACP core); `parts` holds that core.
    async fn one_core<S: ProtocolCore>(
        self,
        kind: &'static dyn Kind,
        core: Arc<S>,
        service_name: &str,
        port: u16,
        parts: Parts,
    ) -> Result<Device, SpawnError> {
        let (port, task) = self.serve(core, service_name, port).await?;
        let ports = BTreeMap::from([(service_name.to_string(), port)]);
        Ok(self.device(kind, ports, parts, vec![task]))
    }

    fn device(
        self,
        kind: &'static dyn Kind,
        ports: BTreeMap<String, u16>,
        parts: Parts,
        tasks: Vec<JoinHandle<()>>,
    ) -> Device {
        let initial_volume = parts
            .raop
            .as_ref()
            .and_then(|r| r.state.lock().unwrap_or_else(|e| e.into_inner()).volume);
        Device {
            name: self.config.device.to_string(),
            kind,
            address: self.address,
            ports,
            parts,
            recorder: self.config.recorder,
            plan: self.config.plan,
            stop: self.stop,
            tasks,
            initial_volume,
        }
    }
}

/// A kind's builder: the [`Settings`] every device has plus the kind's configuration `C`.
pub struct Builder<C> {
    pub settings: Settings,
    pub config: C,
}

impl<C: Default> Builder<C> {
    fn new(name: &str) -> Self {
        Builder {
            settings: Settings::new(name),
            config: C::default(),
        }
    }
}

impl<C> Builder<C> {
    /// Device name (default: the kind's name).
    pub fn name(mut self, name: &str) -> Self {
        self.settings.name = name.to_string();
        self
    }

    /// Seed of every random choice (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// Address to listen on (default 127.0.0.1).
    pub fn address(mut self, address: IpAddr) -> Self {
        self.settings.address = address;
        self
    }

    /// Main port (default 0: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.settings.port = port;
        self
    }

    /// Idle time after which a silent connection is closed (default 60 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.settings.idle_timeout = idle;
        self
    }

    /// A fault applied from the start.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.settings.faults.push(fault);
        self
    }

    /// Records into `recorder` (shared with other devices) instead of a recorder of its own.
    pub fn recorder(mut self, recorder: Arc<Recorder>) -> Self {
        self.settings.recorder = Some(recorder);
        self
    }

    /// Takes its faults from `plan` (shared with other devices) instead of a plan of its own.
    pub fn plan(mut self, plan: Arc<FaultPlan>) -> Self {
        self.settings.plan = Some(plan);
        self
    }

    /// Stops when `shutdown` turns true (shared with other devices) instead of on its own
    /// signal; [`Device::shutdown`] then only stops accepting.
    pub fn shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.settings.shutdown = Some(shutdown);
        self
    }

    /// Replaces every setting at once.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
}

/// A running device of any kind. Dropping it stops it.
pub struct Device {
    pub name: String,
    pub kind: &'static dyn Kind,
    pub address: IpAddr,
    /// Service name → port (`raop` for an AirPort Express).
    pub ports: BTreeMap<String, u16>,
    pub parts: Parts,
    recorder: Arc<Recorder>,
    plan: Arc<FaultPlan>,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
    /// RAOP volume at start, for [`Device::reset_state`].
    initial_volume: Option<f64>,
}

impl Device {
    /// The main port (first service).
    pub fn port(&self) -> u16 {
        self.ports.values().next().copied().unwrap_or(0)
    }

    /// The port of service `name` (`airplay`, `raop`, `dacp`).
    pub fn port_of(&self, name: &str) -> Option<u16> {
        self.ports.get(name).copied()
    }

    /// Address and main port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port())
    }

    /// The recorder the device records into.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Every event this device recorded so far.
    pub fn events(&self) -> Vec<Event> {
        let mut all = self.recorder.snapshot();
        all.retain(|e| e.device == self.name);
        all
    }

    /// The fault plan the device applies.
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Adds a fault from now on, for this device only when it names no device; answers its
    /// index in the plan.
    pub fn add_fault(&self, mut fault: Fault) -> usize {
        if fault.when.device.is_none() {
            fault.when.device = Some(self.name.clone());
        }
        self.plan.add(fault)
    }

    /// What the ready file says of the device.
    pub fn ready(&self) -> ReadyDevice {
        ReadyDevice {
            name: self.name.clone(),
            kind: self.kind.as_str().to_string(),
            address: self.address.to_string(),
            ports: self.ports.clone(),
            identity: self.kind.identity(&self.parts),
        }
    }

    /// The DNS-SD records of the device under the name it is announced with. `extra_txt` are
    /// set on its `_raop._tcp` record (a scenario's `identity.txt`).
    pub fn records(
        &self,
        name: &str,
        extra_txt: &BTreeMap<String, String>,
    ) -> Result<HostRecords, RecordsError> {
        let IpAddr::V4(address) = self.address else {
            return Err(RecordsError::NotIpv4(self.name.clone()));
        };
        let mut services = self.kind.services(&self.parts, &self.ports, name);
        for s in services.iter_mut().filter(|s| s.service == "_raop._tcp") {
            for (k, v) in extra_txt {
                s.set(k, v.clone());
            }
        }
        Ok(HostRecords {
            host: host_label(name),
            address,
            services,
        })
    }

    /// The device's state as one JSON object (every part's keys together), for `state`
    /// expectations and the control API.
    pub fn state_json(&self) -> Value {
        let now = SystemTime::now();
        let mut all = serde_json::Map::new();
        let mut merge = |v: Value| {
            if let Value::Object(m) = v {
                all.extend(m);
            }
        };
        if let Some(s) = &self.parts.raop {
            let st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            merge(serde_json::to_value(&*st).unwrap_or_default());
            merge(serde_json::json!({ "capture": capture_json(&s.config.capture, &st) }));
        }
        if let Some(a) = &self.parts.airplay {
            merge(a.state_json(now));
        }
        if let Some(d) = &self.parts.dacp {
            merge(serde_json::json!({ "dacp": d.state_json(now) }));
        }
        if let Some(ap) = &self.parts.spotify_ap {
            merge(serde_json::json!({ "spotify": ap.stats() }));
        }
        if let Some(c) = &self.parts.companion {
            merge(serde_json::json!({ "companion": c.state_json() }));
        }
        if let Some(m) = &self.parts.mrp {
            // `now_playing`: the model every protocol shares, whichever changed it last.
            let now_playing = m.now_playing.with(now, |p| p.to_json(now));
            merge(serde_json::json!({ "mrp": m.state_json(), "now_playing": now_playing }));
        }
        Value::Object(all)
    }

    /// One value of [`Device::state_json`] by dotted key (`volume`, `dacp.title`); `null` when
    /// the device has no such key.
    pub fn state_value(&self, key: &str) -> Value {
        state_key(&self.state_json(), key)
    }

    /// Changes state live: `volume` (RAOP, dB: -144 mute or -30..0), and for a DACP library
    /// `now_playing` (a track), `play_state`, `position` (s), `next` (true), and for an Apple
    /// TV 4K's Companion side `power` (`on`/`off`) and `app` (an installed bundle id). Keys are
    /// applied in that order; the first refused one ends the change.
    pub fn set_state(&self, fields: &serde_json::Map<String, Value>) -> Result<(), StateError> {
        if let Some(key) = fields.keys().find(|k| !STATE_KEYS.contains(&k.as_str())) {
            return Err(StateError::UnknownKey(key.clone()));
        }
        if let Some(v) = fields.get("volume") {
            let Some(raop) = &self.parts.raop else {
                return Err(StateError::NoVolume(self.name.clone()));
            };
            // RAOP volume: -144 is mute, else -30 (quietest) to 0 (loudest) (SET_PARAMETER
            // `volume:`, as senders write it; docs/protocols/raop.md).
            let vol = v
                .as_f64()
                .filter(|x| *x == -144.0 || (-30.0..=0.0).contains(x))
                .ok_or_else(|| StateError::Volume(v.clone()))?;
            raop.state.lock().unwrap_or_else(|e| e.into_inner()).volume = Some(vol);
        }
        let dacp_keys = ["now_playing", "play_state", "position", "next"];
        if dacp_keys.iter().any(|k| fields.contains_key(*k)) {
            let Some(dacp) = &self.parts.dacp else {
                return Err(StateError::NoNowPlaying(self.name.clone()));
            };
            let track = match fields.get("now_playing") {
                None => None,
                Some(v) => Some(
                    serde_json::from_value::<Track>(v.clone())
                        .map_err(|e| StateError::NowPlaying(e.to_string()))?,
                ),
            };
            // The other keys are exactly a timeline step's fields: reuse its parser and checks.
            let mut step = serde_json::Map::new();
            step.insert("at".into(), Value::from(0.0));
            for k in ["play_state", "position", "next"] {
                if let Some(v) = fields.get(k) {
                    let key = if k == "play_state" { "state" } else { k };
                    step.insert(key.into(), v.clone());
                }
            }
            let step: TimelineStep = serde_json::from_value(Value::Object(step))
                .map_err(|e| StateError::Change(e.to_string()))?;
            dacp.change_now_playing(track, Some(&step), SystemTime::now());
        }
        if fields.contains_key("power") || fields.contains_key("app") {
            let Some(companion) = &self.parts.companion else {
                return Err(StateError::NoCompanion(self.name.clone()));
            };
            if let Some(v) = fields.get("power") {
                match v.as_str() {
                    Some("on") => companion.set_awake(true),
                    Some("off") => companion.set_awake(false),
                    _ => return Err(StateError::Power(v.clone())),
                }
            }
            if let Some(v) = fields.get("app") {
                let bundle = v
                    .as_str()
                    .ok_or_else(|| StateError::App(format!("{v} is not a bundle id")))?;
                companion
                    .set_current_app(bundle)
                    .map_err(|e| StateError::App(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Puts back what [`Device::set_state`] changes and a reset restores: the RAOP volume the
    /// device started with.
    pub fn reset_state(&self) {
        if let Some(r) = &self.parts.raop {
            r.state.lock().unwrap_or_else(|e| e.into_inner()).volume = self.initial_volume;
        }
    }

    /// The audio the device received, every session in order, as a 16-bit WAV file in the
    /// format of the last session.
    pub fn wav(&self) -> Result<Vec<u8>, AudioError> {
        let Some(raop) = &self.parts.raop else {
            return Err(AudioError::NoReceiver(self.name.clone()));
        };
        let st = raop.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = st.sessions.last() else {
            return Err(AudioError::Nothing(self.name.clone()));
        };
        let format = last.receiver.format().clone();
        let pcm = st.captured_pcm();
        drop(st);
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec)?;
        for s in &pcm {
            w.write_sample(*s)?;
        }
        w.finalize()?;
        Ok(cursor.into_inner())
    }

    /// Stops accepting connections at once (open connections end with the stop signal).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Stops the device: signals its connections to close when it owns its stop signal, and
    /// waits until it no longer accepts.
    pub async fn shutdown(mut self) {
        match &self.stop {
            Some(stop) => {
                let _ = stop.send(true);
                for t in std::mem::take(&mut self.tasks) {
                    let _ = t.await;
                }
            }
            None => self.abort(),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(true);
        }
        self.abort();
    }
}

/// What a RAOP receiver keeps of its audio sessions in memory (`serve --capture-window`,
/// `--capture-sessions`) and what it handed on: `window` and `sessions_kept` are the bounds
/// (`null`: all), `sessions_forgotten` the sessions no longer in memory, and per session kept
/// `packets` received, `kept` in memory, `handed_on` (to `--out`), `late`.
fn capture_json(policy: &crate::raop::CapturePolicy, st: &crate::raop::RaopState) -> Value {
    let sessions: Vec<Value> = st
        .sessions
        .iter()
        .map(|s| {
            let capture = s.receiver.capture();
            let r = capture.retention();
            serde_json::json!({
                "number": s.number,
                "packets": capture.stats().packets,
                "kept": r.kept,
                "handed_on": r.handed_on,
                "late": r.late,
            })
        })
        .collect();
    serde_json::json!({
        "window": policy.window,
        "sessions_kept": policy.sessions,
        "sessions_forgotten": st.sessions_started.saturating_sub(st.sessions.len()),
        "sessions": sessions,
    })
}

/// The value at dotted `key` (`volume`, `dacp.title`) of a [`Device::state_json`]; `null` when
/// absent.
pub fn state_key(state: &Value, key: &str) -> Value {
    state
        .pointer(&format!("/{}", key.replace('.', "/")))
        .cloned()
        .unwrap_or_default()
}

pub use crate::wire::hex::parse_mac;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fault::{Action, Match};

    /// A device of `kind` made of `parts` on `ports`, nothing listening: for what a device says
    /// of itself.
    pub(crate) fn offline(
        kind: &'static dyn Kind,
        name: &str,
        parts: Parts,
        ports: &[(&str, u16)],
    ) -> Device {
        let ports = ports.iter().map(|(s, p)| (s.to_string(), *p)).collect();
        Settings::new(name)
            .shell()
            .device(kind, ports, parts, Vec::new())
    }

    /// An AirPort Express named `name`, seed 7, offline.
    pub(crate) fn airport(name: &str) -> Device {
        let raop = Arc::new(RaopCore::new(AirportExpress::config(name, 7)));
        let parts = Parts {
            raop: Some(raop),
            ..Parts::default()
        };
        offline(&AirportExpress, name, parts, &[("raop", 5000)])
    }

    /// An iTunes library named `name`, seed 7, offline.
    pub(crate) fn itunes(name: &str) -> Device {
        let dacp = Arc::new(DacpCore::new(Itunes::library(
            name,
            7,
            SystemTime::UNIX_EPOCH,
        )));
        let parts = Parts {
            dacp: Some(dacp),
            ..Parts::default()
        };
        offline(&Itunes, name, parts, &[("dacp", 3689)])
    }

    fn fields(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn state_json_merges_the_parts_and_nests_dacp() {
        let a = airport("ae").state_json();
        assert_eq!(a["volume"], Value::Null);
        assert_eq!(a["active_sessions"], 0);
        assert_eq!(
            a["capture"]["window"],
            Value::Null,
            "a run keeps every packet"
        );
        assert_eq!(a["capture"]["sessions"], serde_json::json!([]));
        assert!(a.get("dacp").is_none(), "{a}");
        let i = itunes("lib").state_json();
        assert!(i.get("volume").is_none(), "{i}");
        assert!(i["dacp"]["state"].is_string(), "{i}");
        assert_eq!(i["dacp"]["sessions"], 0);
    }

    #[test]
    fn volume_is_set_and_reset_on_a_raop_receiver() {
        let d = airport("ae");
        d.set_state(&fields(serde_json::json!({ "volume": -12.5 })))
            .unwrap();
        assert_eq!(d.state_value("volume"), -12.5);
        d.set_state(&fields(serde_json::json!({ "volume": -144 })))
            .unwrap();
        assert_eq!(d.state_value("volume"), -144.0);
        d.reset_state();
        assert_eq!(d.state_value("volume"), Value::Null);
    }

    #[test]
    fn refused_state_changes_say_why() {
        let ae = airport("ae");
        let lib = itunes("lib");
        let set = |d: &Device, v: Value| d.set_state(&fields(v)).unwrap_err();
        assert_eq!(
            set(&ae, serde_json::json!({ "colour": 1 })),
            StateError::UnknownKey("colour".into())
        );
        assert_eq!(
            set(&ae, serde_json::json!({ "name": "Den" })),
            StateError::UnknownKey("name".into())
        );
        assert_eq!(
            set(&ae, serde_json::json!({ "volume": -31 })),
            StateError::Volume((-31).into())
        );
        assert_eq!(
            set(&ae, serde_json::json!({ "volume": "loud" })).to_string(),
            "volume \"loud\" must be -144 (mute) or -30..0"
        );
        assert_eq!(
            set(&lib, serde_json::json!({ "volume": -10 })).to_string(),
            "device lib has no RAOP receiver, so no volume"
        );
        assert_eq!(
            set(&ae, serde_json::json!({ "play_state": "paused" })).to_string(),
            "device ae has no DACP library, so no now-playing state"
        );
        assert!(matches!(
            set(
                &lib,
                serde_json::json!({ "now_playing": { "artist": "no title" } })
            ),
            StateError::NowPlaying(_)
        ));
        assert!(matches!(
            set(&lib, serde_json::json!({ "play_state": "dancing" })),
            StateError::Change(_)
        ));
        // A refused key changes nothing.
        assert_eq!(ae.state_value("volume"), Value::Null);
    }

    #[test]
    fn now_playing_changes_reach_the_dacp_state_keys() {
        let lib = itunes("lib");
        lib.set_state(&fields(serde_json::json!({
            "now_playing": { "title": "Song", "artist": "Band", "duration": 100 },
            "play_state": "paused",
            "position": 42,
        })))
        .unwrap();
        assert_eq!(lib.state_value("dacp.title"), "Song");
        assert_eq!(lib.state_value("dacp.artist"), "Band");
        assert_eq!(lib.state_value("dacp.state"), "paused");
        assert_eq!(lib.state_value("dacp.position"), 42.0);
    }

    #[test]
    fn state_keys_are_dotted_paths_and_missing_ones_are_null() {
        let state = serde_json::json!({ "volume": -3, "dacp": { "title": "T" } });
        assert_eq!(state_key(&state, "volume"), -3);
        assert_eq!(state_key(&state, "dacp.title"), "T");
        assert_eq!(state_key(&state, "dacp.album"), Value::Null);
        assert_eq!(state_key(&state, "video.url"), Value::Null);
        assert_eq!(airport("ae").state_value("dacp.title"), Value::Null);
    }

    #[test]
    fn audio_is_refused_without_a_receiver_or_before_any_session() {
        assert_eq!(
            itunes("lib").wav().unwrap_err().to_string(),
            "device lib receives no audio"
        );
        assert_eq!(
            airport("ae").wav().unwrap_err().to_string(),
            "device ae has received no audio yet"
        );
    }

    #[test]
    fn records_need_ipv4_and_extra_txt_goes_on_raop_only() {
        let mut d = airport("ae");
        let extra = BTreeMap::from([("am".to_string(), "Custom1,1".to_string())]);
        let r = d.records("Kitchen", &extra).unwrap();
        assert_eq!(r.host, host_label("Kitchen"));
        assert_eq!(r.address, Ipv4Addr::LOCALHOST);
        assert_eq!(r.services[0].get("am"), Some("Custom1,1"));
        d.address = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert_eq!(
            d.records("Kitchen", &extra).unwrap_err().to_string(),
            "device ae: DNS-SD needs an IPv4 address"
        );
        let lib = itunes("lib");
        let r = lib.records("lib", &extra).unwrap();
        assert!(r.services.iter().all(|s| s.get("am").is_none()), "{r:?}");
    }

    #[tokio::test]
    async fn a_spawned_device_records_applies_its_faults_and_stops() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tv = AppleTv::builder().name("tv").seed(7).spawn().await.unwrap();
        assert_eq!(tv.addr().port(), tv.port_of("airplay").unwrap());
        assert_ne!(tv.port_of("dacp"), Some(0));
        let index = tv.add_fault(Fault {
            when: Match {
                path: Some("/info".into()),
                ..Match::default()
            },
            action: Action::Respond {
                status: 503,
                headers: Default::default(),
                body: String::new(),
            },
            times: None,
            after: 0,
            probability: 1.0,
        });
        assert_eq!(
            tv.plan().faults()[index].when.device.as_deref(),
            Some("tv"),
            "a fault added to a device applies to it only"
        );
        let mut conn = tokio::net::TcpStream::connect(tv.addr()).await.unwrap();
        conn.write_all(b"GET /info HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut status = [0u8; 12];
        conn.read_exact(&mut status).await.unwrap();
        assert_eq!(&status, b"HTTP/1.1 503");
        let events = tv.events();
        assert!(events.iter().all(|e| e.device == "tv"));
        assert!(
            events.iter().any(
                |e| matches!(e.kind, crate::event::EventKind::Fault { fault, .. } if fault == index)
            ),
            "{events:#?}"
        );
        let addr = tv.addr();
        tv.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn devices_of_one_run_share_recorder_plan_and_stop_signal() {
        let recorder = Recorder::shared();
        let plan = Arc::new(FaultPlan::new(1, Vec::new()));
        let (stop, rx) = watch::channel(false);
        let a = AirportExpress::builder()
            .name("a")
            .recorder(recorder.clone())
            .plan(plan.clone())
            .shutdown(rx.clone())
            .spawn()
            .await
            .unwrap();
        let b = Itunes::builder()
            .name("b")
            .recorder(recorder.clone())
            .plan(plan.clone())
            .shutdown(rx)
            .spawn()
            .await
            .unwrap();
        assert!(Arc::ptr_eq(a.recorder(), b.recorder()));
        assert!(Arc::ptr_eq(a.plan(), b.plan()));
        // One `Listening` event each, in the shared recorder, each device seeing its own.
        assert_eq!(recorder.len(), 2);
        assert_eq!(a.events().len(), 1);
        assert_eq!(b.events()[0].device, "b");
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn a_taken_port_names_the_device_and_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = Itunes::builder()
            .name("lib")
            .port(port)
            .spawn()
            .await
            .err()
            .expect("the port is taken");
        assert_eq!(
            e.to_string(),
            format!("device lib: cannot listen on 127.0.0.1:{port}")
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
