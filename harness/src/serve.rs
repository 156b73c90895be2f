//! `airtwin serve`: keep a scenario's devices (or one device of a kind) listening until Ctrl-C or
//! SIGTERM, and say where they are in a ready file that scripts and other test frameworks wait on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airtwin_simulators::event::Recorder;
use airtwin_simulators::fault::FaultPlan;
use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::sync::watch;

use crate::devices::{self, Device, ReadyDevice, RunContext};
use crate::report::transcript;
use crate::scenario::{DeviceKind, DeviceSpec, Identity, Loaded, Scenario};

/// What `serve` starts.
pub enum What {
    Scenario(Loaded),
    /// `--device KIND[=NAME]`, with `--port`.
    Device {
        kind: DeviceKind,
        name: String,
        port: u16,
    },
}

/// The ready file: `{"devices":[{"name","kind","address","ports":{...}}]}`.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub devices: Vec<ReadyDevice>,
    pub pid: u32,
}

/// Parses `KIND[=NAME]`.
pub fn parse_device_arg(arg: &str) -> Result<(DeviceKind, String)> {
    let (kind, name) = match arg.split_once('=') {
        Some((k, n)) => (k, n.to_string()),
        None => (arg, arg.to_string()),
    };
    let kind = DeviceKind::parse(kind).with_context(|| {
        format!(
            "unknown device kind {kind:?}; valid kinds: {}",
            DeviceKind::NAMES.join(", ")
        )
    })?;
    Ok((kind, name))
}

/// Writes the ready file atomically (write to a temporary name, then rename), so a reader never
/// sees half of it.
pub fn write_ready(path: &Path, ready: &Ready) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(ready)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs until Ctrl-C/SIGTERM.
pub async fn serve(
    what: What,
    ready_file: Option<PathBuf>,
    out: Option<PathBuf>,
    seed: Option<u64>,
) -> Result<()> {
    let loaded = match what {
        What::Scenario(l) => l,
        What::Device { kind, name, port } => Loaded {
            file: PathBuf::from("."),
            scenario: Scenario {
                name: format!("serve-{name}"),
                description: format!("one {} from the command line", kind.as_str()),
                seed: 0,
                devices: vec![DeviceSpec {
                    kind,
                    name,
                    port,
                    identity: Identity::default(),
                    max_sessions: None,
                    idle_timeout: None,
                }],
                clients: Vec::new(),
                faults: Vec::new(),
                expect: Vec::new(),
            },
        },
    };
    let (specs, plan_faults, scenario_seed, base_dir) = (
        loaded.scenario.devices.clone(),
        loaded.scenario.faults.clone(),
        loaded.scenario.seed,
        loaded.dir(),
    );
    let seed = seed.unwrap_or(scenario_seed);
    let recorder = Recorder::shared();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = RunContext {
        recorder: recorder.clone(),
        plan: Arc::new(FaultPlan::new(seed, plan_faults)),
        seed,
        shutdown: stop_rx,
        base_dir,
    };
    let mut devices: Vec<Device> = Vec::new();
    for spec in &specs {
        devices.push(devices::start(spec, &ctx).await?);
    }
    let ready = Ready {
        devices: devices.iter().map(Device::ready).collect(),
        pid: std::process::id(),
    };
    for d in &ready.devices {
        eprintln!(
            "airtwin: {} ({}) listening on {} {:?}",
            d.name, d.kind, d.address, d.ports
        );
    }
    if let Some(path) = &ready_file {
        write_ready(path, &ready)?;
    }
    wait_for_signal().await;
    eprintln!("airtwin: shutting down");
    let _ = stop_tx.send(true);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    if let Some(out) = out {
        let result = crate::engine::ScenarioResult {
            name: loaded.scenario.name.clone(),
            file: loaded.file.clone(),
            seed,
            passed: true,
            duration: recorder.elapsed(),
            failures: Vec::new(),
            error: None,
            interrupted: false,
            clients: Vec::new(),
            out_dir: Some(out.clone()),
            events: recorder.snapshot(),
        };
        transcript::write_all(&out, &loaded, &devices, &result)?;
    }
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
