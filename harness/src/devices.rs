//! Starting the devices of a scenario, and what the rest of the harness can ask of them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::event::Recorder;
use airtwin_simulators::fault::{Action, FaultPlan};
use airtwin_simulators::raop::{keys, RaopConfig, RaopService};
use airtwin_simulators::shell::{self, ShellConfig};
use airtwin_simulators::wire::Limits;
use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::scenario::{DeviceKind, DeviceSpec};

/// The address every device listens on.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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
    }
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
            keys::load_private_key(&source)
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
    // Keys that `sign_with` faults name are loaded now, so the core never reads files.
    for fault in run.plan.faults() {
        if let Action::SignWith(source) = &fault.action {
            let resolved = resolve_key(source, &run.base_dir);
            let key = keys::load_private_key(&resolved)
                .with_context(|| format!("fault sign_with {source:?}"))?;
            config.extra_keys.push((source.clone(), Arc::new(key)));
        }
    }
    let service = Arc::new(RaopService::new(config));
    let listener = shell::bind(SocketAddr::new(LOOPBACK, spec.port))
        .await
        .with_context(|| {
            format!(
                "device {}: cannot listen on 127.0.0.1:{}",
                spec.name, spec.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let cfg = ShellConfig {
        device: spec.name.as_str().into(),
        recorder: run.recorder.clone(),
        plan: run.plan.clone(),
        limits: Limits::default(),
        idle_timeout: Duration::from_secs_f64(spec.idle_timeout.unwrap_or(60.0)),
        shutdown: run.shutdown.clone(),
    };
    let task = shell::spawn(listener, service.clone(), cfg, "raop");
    Ok(Device {
        name: spec.name.clone(),
        kind: spec.kind,
        address: LOOPBACK,
        ports: BTreeMap::from([("raop".to_string(), port)]),
        parts: Parts {
            raop: Some(service),
        },
        tasks: vec![task],
    })
}
