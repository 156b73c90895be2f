//! Starting the devices of a scenario, and what the rest of the harness can ask of them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::airplay::{AirplayConfig, AirplayService};
use airtwin_simulators::dacp::pairing::parse_guid;
use airtwin_simulators::dacp::{DacpConfig, DacpService};
use airtwin_simulators::fault::{Action, FaultPlan};
use airtwin_simulators::raop::{keys, RaopConfig, RaopService};
use airtwin_simulators::service::Service;
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::shell::{self, ShellConfig};
use airtwin_simulators::wire::Limits;
use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::scenario::{DeviceKind, DeviceSpec};

/// The address every device listens on.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The address a device listens on: its scenario `address`, else [`LOOPBACK`].
pub fn address_of(spec: &DeviceSpec) -> IpAddr {
    spec.address.map_or(LOOPBACK, IpAddr::V4)
}

/// A running device.
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
    pub address: IpAddr,
    /// Service name → port (`raop` for an AirPort Express).
    pub ports: BTreeMap<String, u16>,
    pub parts: Parts,
    tasks: Vec<JoinHandle<()>>,
}

/// The protocol cores a device is made of, for expectations, captures and the ready file. A
/// device kind combines the parts it needs (an Apple TV also receives RAOP audio).
#[derive(Clone, Default)]
pub struct Parts {
    /// RAOP receiver: `Apple-Challenge`, audio sessions and their captures.
    pub raop: Option<Arc<RaopService>>,
    /// AirPlay side of an Apple TV: `/info`, fp-setup, the video API (its RAOP core is `raop`).
    pub airplay: Option<Arc<AirplayService>>,
    /// DACP library (iTunes, the remote-control side of an Apple TV): sessions, now playing.
    pub dacp: Option<Arc<DacpService>>,
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

impl Device {
    /// The main port (first service).
    pub fn port(&self) -> u16 {
        self.ports.values().next().copied().unwrap_or(0)
    }

    pub fn ready(&self) -> ReadyDevice {
        let mut identity = BTreeMap::new();
        if let Some(s) = &self.parts.raop {
            identity.insert("mac".into(), s.config.mac_string());
            identity.insert("model".into(), s.config.model.clone());
            identity.insert(
                "public_key".into(),
                keys::public_pem(&s.config.key.to_public_key()),
            );
        }
        if let Some(a) = &self.parts.airplay {
            let info = &a.config.info;
            identity.insert("device_id".into(), info.device_id.clone());
            identity.insert("model".into(), info.model.clone());
            identity.insert(
                "features".into(),
                airtwin_simulators::airplay::info::features_text(info.features),
            );
            identity.insert("pi".into(), info.pi.clone());
            identity.insert(
                "pk".into(),
                airtwin_simulators::airplay::info::hex(&info.pk),
            );
        }
        ReadyDevice {
            name: self.name.clone(),
            kind: self.kind.as_str().to_string(),
            address: self.address.to_string(),
            ports: self.ports.clone(),
            identity,
        }
    }

    /// The device's state as one JSON object (every part's keys together), for `state`
    /// expectations and the control API.
    pub fn state_json(&self) -> serde_json::Value {
        let mut all = serde_json::Map::new();
        let mut merge = |v: serde_json::Value| {
            if let serde_json::Value::Object(m) = v {
                all.extend(m);
            }
        };
        if let Some(s) = &self.parts.raop {
            let st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            merge(serde_json::to_value(&*st).unwrap_or_default());
        }
        if let Some(a) = &self.parts.airplay {
            merge(a.state_json(std::time::SystemTime::now()));
        }
        if let Some(d) = &self.parts.dacp {
            let v = d.state_json(std::time::SystemTime::now());
            merge(serde_json::json!({ "dacp": v }));
        }
        serde_json::Value::Object(all)
    }

    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `00:11:24:00:44:91` or `001124004491` → bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 12 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Everything a device needs from the run it belongs to.
pub struct RunContext {
    pub recorder: Arc<Recorder>,
    pub plan: Arc<FaultPlan>,
    pub seed: u64,
    pub shutdown: watch::Receiver<bool>,
    /// Folder relative key paths are resolved against.
    pub base_dir: std::path::PathBuf,
}

fn resolve_key(source: &str, base: &Path) -> String {
    match source {
        "builtin" | "airport-express" | "other" => source.to_string(),
        path if Path::new(path).is_absolute() => path.to_string(),
        path => base.join(path).to_string_lossy().into_owned(),
    }
}

/// Starts one device and waits until it listens.
pub async fn start(spec: &DeviceSpec, run: &RunContext) -> Result<Device> {
    match spec.kind {
        DeviceKind::AirportExpress => start_airport_express(spec, run).await,
        DeviceKind::AppleTv => start_apple_tv(spec, run).await,
        DeviceKind::Itunes => start_itunes(spec, run).await,
    }
}

/// Keys that `sign_with` faults name, loaded when the device starts so the core never reads files.
fn sign_with_keys(run: &RunContext) -> Result<Vec<(String, Arc<keys::DeviceKey>)>> {
    let mut out = Vec::new();
    for fault in run.plan.faults() {
        if let Action::SignWith(source) = &fault.action {
            let resolved = resolve_key(source, &run.base_dir);
            let key = crate::key_file::load_private(&resolved)
                .with_context(|| format!("fault sign_with {source:?}"))?;
            out.push((source.clone(), Arc::new(key)));
        }
    }
    Ok(out)
}

/// Listens on 127.0.0.1:`port` and serves `service` there; returns the port and the task.
async fn listen<S: Service>(
    spec: &DeviceSpec,
    run: &RunContext,
    port: u16,
    service: Arc<S>,
    service_name: &str,
) -> Result<(u16, JoinHandle<()>)> {
    let listener = shell::bind(SocketAddr::new(address_of(spec), port))
        .await
        .with_context(|| {
            format!(
                "device {}: cannot listen on {}:{port}",
                spec.name,
                address_of(spec)
            )
        })?;
    let bound = listener.local_addr()?.port();
    let cfg = ShellConfig {
        device: spec.name.as_str().into(),
        recorder: run.recorder.clone(),
        plan: run.plan.clone(),
        limits: Limits::default(),
        idle_timeout: Duration::from_secs_f64(spec.idle_timeout.unwrap_or(60.0)),
        shutdown: run.shutdown.clone(),
    };
    Ok((bound, shell::spawn(listener, service, cfg, service_name)))
}

/// An Apple TV: one port, `airplay` (7000 on a real device; `port` of the scenario), carrying
/// `/info`, fp-setup, the video API and RAOP audio. Other services of the device get ports of
/// their own, added to `ports`, `parts` and `tasks` here.
async fn start_apple_tv(spec: &DeviceSpec, run: &RunContext) -> Result<Device> {
    let id = &spec.identity;
    let mut config = AirplayConfig::apple_tv(&spec.name, run.seed);
    let info = &mut config.info;
    if let Some(mac) = &id.mac {
        let bytes = parse_mac(mac).with_context(|| format!("bad MAC {mac:?}"))?;
        info.mac_address = bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        info.device_id = info.mac_address.clone();
    }
    if let Some(v) = &id.device_id {
        info.device_id = v.clone();
    }
    if let Some(v) = &id.name {
        info.name = v.clone();
    }
    if let Some(v) = &id.model {
        info.model = v.clone();
    }
    if let Some(v) = &id.source_version {
        info.source_version = v.clone();
    }
    if let Some(f) = &id.features {
        info.features = f
            .value()
            .with_context(|| format!("device {}: identity.features {f:?}", spec.name))?;
    }
    if let Some(v) = &id.pi {
        info.pi = v.clone();
    }
    if let Some(v) = id.status_flags {
        info.status_flags = v;
    }
    if let Some(v) = id.initial_volume {
        info.initial_volume = v;
    }
    for (key, value) in &id.info {
        let value = (!value.is_null()).then(|| airtwin_simulators::fault::plist_from_json(value));
        info.overrides.push((key.clone(), value));
    }
    if let Some(d) = id.video_duration {
        config.video_duration = d;
    }
    let mut raop = config.raop_config(run.seed);
    if let Some(key) = &id.key {
        let source = resolve_key(key, &run.base_dir);
        raop.key = Arc::new(
            crate::key_file::load_private(&source)
                .with_context(|| format!("device {}: identity.key", spec.name))?,
        );
    }
    raop.session_id = id.session_id.clone();
    if let Some(n) = spec.max_sessions {
        raop.max_sessions = n;
    }
    raop.extra_keys = sign_with_keys(run)?;
    let airplay = Arc::new(AirplayService::new(config, raop));
    let mut ports = BTreeMap::new();
    let mut tasks = Vec::new();
    let (port, task) = listen(spec, run, spec.port, airplay.clone(), "airplay").await?;
    ports.insert("airplay".to_string(), port);
    tasks.push(task);
    let dacp_port = spec.dacp.as_ref().map_or(0, |d| d.port);
    let (port, task, dacp) = start_dacp(spec, run, dacp_port).await?;
    ports.insert("dacp".to_string(), port);
    tasks.push(task);
    Ok(Device {
        name: spec.name.clone(),
        kind: spec.kind,
        address: address_of(spec),
        ports,
        parts: Parts {
            raop: Some(airplay.raop.clone()),
            airplay: Some(airplay),
            dacp: Some(dacp),
        },
        tasks,
    })
}

/// The DACP configuration of a device from its scenario entry.
pub fn dacp_config(spec: &DeviceSpec, run: &RunContext) -> Result<DacpConfig> {
    let mut config = DacpConfig::itunes(&spec.name, std::time::SystemTime::now());
    config.seed = run.seed;
    // The library id, like the session ids, comes from the seed.
    // Mixed with the device name, so two libraries of one run differ: the id is also the
    // `_touch-able._tcp` instance name, which must be unique (RFC 6763 §4.1).
    let name_hash = spec.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    config.library_id = (run.seed ^ name_hash).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let Some(d) = &spec.dacp else {
        return Ok(config);
    };
    if let Some(list) = &d.known_guids {
        config.known_guids = list
            .iter()
            .map(|g| {
                parse_guid(g).with_context(|| {
                    format!(
                        "device {}: dacp.known_guids: {g:?} is not 0x and 16 hex digits",
                        spec.name
                    )
                })
            })
            .collect::<Result<_>>()?;
    }
    if let Some(s) = d.login_status {
        config.login_status = s;
    }
    if let Some(t) = d.session_timeout {
        config.session_timeout = Duration::from_secs_f64(t.max(0.0));
    }
    if let Some(g) = d.gzip {
        config.gzip = g;
    }
    if let Some(n) = &d.name {
        config.name = n.clone();
    }
    if let Some(np) = &d.now_playing {
        config.now_playing = np.clone();
    }
    if let Some(sp) = &d.speakers {
        config.speakers = sp.clone();
    }
    config.artwork = config
        .now_playing
        .tracks
        .iter()
        .map(|t| match &t.artwork {
            None => Ok(None),
            Some(p) => {
                let path = run.base_dir.join(p);
                std::fs::read(&path)
                    .map(Some)
                    .with_context(|| format!("device {}: artwork {}", spec.name, path.display()))
            }
        })
        .collect::<Result<_>>()?;
    Ok(config)
}

/// Starts a device's DACP server on 127.0.0.1:`port`: the whole of an `itunes`, the remote-control
/// port of an `apple-tv`.
pub async fn start_dacp(
    spec: &DeviceSpec,
    run: &RunContext,
    port: u16,
) -> Result<(u16, JoinHandle<()>, Arc<DacpService>)> {
    let service = Arc::new(DacpService::new(dacp_config(spec, run)?));
    let (port, task) = listen(spec, run, port, service.clone(), "dacp").await?;
    Ok((port, task, service))
}

/// iTunes: a DACP library on the device's port (3689 on a real one), service `dacp`.
async fn start_itunes(spec: &DeviceSpec, run: &RunContext) -> Result<Device> {
    let (port, task, dacp) = start_dacp(spec, run, spec.port).await?;
    Ok(Device {
        name: spec.name.clone(),
        kind: spec.kind,
        address: address_of(spec),
        ports: BTreeMap::from([("dacp".to_string(), port)]),
        parts: Parts {
            dacp: Some(dacp),
            ..Default::default()
        },
        tasks: vec![task],
    })
}

async fn start_airport_express(spec: &DeviceSpec, run: &RunContext) -> Result<Device> {
    let mut config = RaopConfig::airport_express(&spec.name);
    config.seed = run.seed;
    let id = &spec.identity;
    if let Some(mac) = &id.mac {
        config.hw_addr = parse_mac(mac).with_context(|| format!("bad MAC {mac:?}"))?;
    }
    if let Some(key) = &id.key {
        let source = resolve_key(key, &run.base_dir);
        config.key = Arc::new(
            crate::key_file::load_private(&source)
                .with_context(|| format!("device {}: identity.key", spec.name))?,
        );
    }
    if let Some(m) = &id.model {
        config.model = m.clone();
    }
    if let Some(v) = &id.source_version {
        config.source_version = v.clone();
    }
    config.session_id = id.session_id.clone();
    if let Some(n) = spec.max_sessions {
        config.max_sessions = n;
    }
    config.extra_keys = sign_with_keys(run)?;
    let service = Arc::new(RaopService::new(config));
    let (port, task) = listen(spec, run, spec.port, service.clone(), "raop").await?;
    Ok(Device {
        name: spec.name.clone(),
        kind: spec.kind,
        address: address_of(spec),
        ports: BTreeMap::from([("raop".to_string(), port)]),
        parts: Parts {
            raop: Some(service),
            ..Parts::default()
        },
        tasks: vec![task],
    })
}
