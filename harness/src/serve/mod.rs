//! `airtwin serve`: keep a scenario's devices (or one device of a kind) listening until Ctrl-C or
//! SIGTERM, and say where they are in a ready file that scripts and other test frameworks wait on.

pub mod auth;
pub mod control;
pub mod ctl;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airtwin_simulators::buffer_budget::BufferBudget;
use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::shell::Recorder;
use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::sync::watch;

use crate::devices::{self, Device, ReadyDevice, RunContext};
use crate::report::transcript;
use crate::scenario::{DeviceKind, DeviceSpec, Identity, Loaded, Scenario};
use control::ServeState;

/// What `serve` starts.
pub enum What {
    Scenario(Loaded),
    /// `--device KIND[=NAME]` (repeatable), each with its `--port`.
    Devices(Vec<DeviceArg>),
}

/// One `--device` of the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceArg {
    pub kind: DeviceKind,
    pub name: String,
    pub port: u16,
}

/// The `--device` and `--port` lists: the i-th port goes to the i-th device (0 when absent).
pub fn device_args(devices: &[String], ports: &[u16]) -> Result<Vec<DeviceArg>> {
    if ports.len() > devices.len() {
        anyhow::bail!(
            "{} --port but {} --device: each --port goes to the --device in the same position",
            ports.len(),
            devices.len()
        );
    }
    let mut out: Vec<DeviceArg> = Vec::new();
    for (i, arg) in devices.iter().enumerate() {
        let (kind, name) = parse_device_arg(arg)?;
        if out.iter().any(|d| d.name == name) {
            anyhow::bail!("two devices named {name:?}: give each --device its own KIND=NAME");
        }
        let port = ports.get(i).copied().unwrap_or(0);
        out.push(DeviceArg { kind, name, port });
    }
    Ok(out)
}

/// The ready file: `{"devices":[{"name","kind","address","ports":{...},"identity":{...},
/// "mdns":[...]}],"ports":{"control":N,"dns-sd":M},"discovery":…,"pid":P}`.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub devices: Vec<ServedDevice>,
    /// Ports of `serve` itself on 127.0.0.1: `control` (the control API) and `dns-sd` (unicast
    /// DNS-SD, UDP) when discovery is on.
    pub ports: std::collections::BTreeMap<String, u16>,
    pub discovery: crate::discovery::DiscoveryMode,
    pub pid: u32,
    /// The control API's token: requests send `Authorization: Bearer TOKEN` (`crate::auth`).
    pub token: String,
}

/// One device in the ready file: what `Device::ready` says, plus its DNS-SD names.
#[derive(Debug, Serialize)]
pub struct ServedDevice {
    #[serde(flatten)]
    pub device: ReadyDevice,
    /// `{service, instance, fullname, host, port}` of every record announced (empty when
    /// discovery is `none`).
    pub mdns: Vec<serde_json::Value>,
}

/// Options of `airtwin serve` beside what to serve.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub ready_file: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub seed: Option<u64>,
    /// Discovery mode; default: the scenario's, or `unicast` when the scenario says `none`.
    pub discovery: Option<crate::discovery::DiscoveryMode>,
    /// UDP port of the unicast DNS-SD responder on 127.0.0.1 (0: a free one).
    pub dns_sd_port: u16,
    /// Address of the control API (default 127.0.0.1:0).
    pub control: Option<std::net::SocketAddr>,
    /// Events kept in memory (default [`DEFAULT_EVENTS`]).
    pub events: Option<usize>,
    /// Audio packets of each session kept in memory (default [`CAPTURE_WINDOW`]).
    pub capture_window: Option<usize>,
    /// Audio sessions kept per receiver (default [`CAPTURE_SESSIONS`]).
    pub capture_sessions: Option<usize>,
    /// Bytes all connections of all devices may hold at once (default
    /// [`BufferBudget::DEFAULT_LIMIT`]).
    pub buffer_budget: Option<usize>,
}

/// The smallest `--buffer-budget`: below it a single ordinary request head would not fit.
pub const MIN_BUFFER_BUDGET: usize = 1024;

/// Parses a byte count: a number with an optional unit, `K`/`KiB` (1024), `M`/`MiB`, `G`/`GiB`
/// (`65536`, `512KiB`, `64M`).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count (e.g. 65536, 512KiB, 64MiB)"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use K/KiB, M/MiB or G/GiB (powers of 1024)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `--buffer-budget`: a byte count of at least [`MIN_BUFFER_BUDGET`].
pub fn parse_buffer_budget(text: &str) -> Result<usize, String> {
    let n = parse_bytes(text)?;
    if n < MIN_BUFFER_BUDGET {
        return Err(format!(
            "{n} bytes is below the smallest budget, {MIN_BUFFER_BUDGET} (one request head must fit)"
        ));
    }
    Ok(n)
}

/// A ring size (`--events`, `--capture-window`, `--capture-sessions`): at least 1.
pub fn parse_ring_size(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1 (a ring that keeps nothing cannot answer)".into());
    }
    Ok(n)
}

/// Events a `serve` keeps in memory unless `--events` says otherwise: an exchange is two events of
/// about 1 to 2 KB each, so some 20 MB at most.
pub const DEFAULT_EVENTS: usize = 10_000;

/// Audio packets of each session a `serve` keeps in memory: about 8 s at 352 frames per packet
/// and 44.1 kHz (1.4 MB of 16-bit stereo), far more than a sender's retransmit window; older
/// packets go to `--out` (`DEVICE-sessionN.wav`) as they leave it.
pub const CAPTURE_WINDOW: usize = 1024;

/// Audio sessions a `serve` keeps per RAOP receiver (the latest); `state` and the control API
/// report the count of all of them.
pub const CAPTURE_SESSIONS: usize = 8;

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
/// sees half of it; mode 0600, since it holds the control API's token.
pub fn write_ready(path: &Path, ready: &Ready) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&serde_json::to_vec_pretty(ready)?))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs until Ctrl-C/SIGTERM.
pub async fn serve(what: What, opts: ServeOptions) -> Result<()> {
    // Thousands of client connections each hold a descriptor.
    crate::bench::scale::raise_fd_limit();
    let loaded = match what {
        What::Scenario(l) => l,
        What::Devices(devices) => Loaded {
            file: PathBuf::from("."),
            scenario: Scenario {
                name: format!(
                    "serve-{}",
                    devices
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join("-")
                ),
                description: "devices from the command line".into(),
                seed: 0,
                devices: devices
                    .into_iter()
                    .map(|d| DeviceSpec {
                        kind: d.kind,
                        name: d.name,
                        port: d.port,
                        identity: Identity::default(),
                        max_sessions: None,
                        idle_timeout: None,
                        dacp: None,
                        spotify: None,
                        companion: None,
                        address: None,
                    })
                    .collect(),
                clients: Vec::new(),
                faults: Vec::new(),
                expect: Vec::new(),
                netns: false,
                discovery: Default::default(),
                reference: None,
            },
        },
    };
    let (specs, plan_faults, scenario_seed, base_dir) = (
        loaded.scenario.devices.clone(),
        loaded.scenario.faults.clone(),
        loaded.scenario.seed,
        loaded.dir(),
    );
    let seed = opts.seed.unwrap_or(scenario_seed);
    let recorder = Arc::new(Recorder::bounded(opts.events.unwrap_or(DEFAULT_EVENTS)));
    // What the ring forgets is still on disk: events go to --out as they are recorded.
    let streamed =
        match &opts.out {
            Some(out) => {
                let streamed = transcript::Streamed::start(out, &loaded, seed)
                    .with_context(|| format!("cannot write the transcript in {}", out.display()))?;
                recorder.set_sink(streamed.sink().with_context(|| {
                    format!("cannot write the transcript in {}", out.display())
                })?);
                Some((out.clone(), streamed))
            }
            None => None,
        };
    let (stop_tx, stop_rx) = watch::channel(false);
    let plan = Arc::new(FaultPlan::new(seed, plan_faults.clone()));
    let capture = airtwin_simulators::raop::CapturePolicy {
        window: Some(opts.capture_window.unwrap_or(CAPTURE_WINDOW)),
        sessions: Some(opts.capture_sessions.unwrap_or(CAPTURE_SESSIONS)),
        sink: streamed.as_ref().map(|(_, s)| s.audio_sinks()),
    };
    let ctx = RunContext {
        recorder: recorder.clone(),
        plan: plan.clone(),
        seed,
        shutdown: stop_rx.clone(),
        base_dir,
        capture,
        // One budget for every device: the total a `serve` holds in connection buffers.
        buffers: Some(Arc::new(BufferBudget::new(
            opts.buffer_budget.unwrap_or(BufferBudget::DEFAULT_LIMIT),
        ))),
    };
    let mut devices: Vec<Device> = Vec::new();
    for spec in &specs {
        devices.push(devices::start(spec, &ctx).await?);
    }
    let mode = match &opts.discovery {
        Some(m) => m.clone(),
        None if loaded.scenario.discovery.is_none() => crate::discovery::DiscoveryMode::Unicast,
        None => loaded.scenario.discovery.clone(),
    };
    let discovery = crate::discovery::Discovery::start(
        &mode,
        &devices,
        &specs,
        opts.dns_sd_port,
        stop_rx.clone(),
    )
    .await?;
    let dns_sd_port = discovery.dns_sd_port;
    let state = Arc::new(ServeState::new(
        devices,
        plan,
        recorder.clone(),
        discovery,
        plan_faults,
    ));
    let control_addr = opts
        .control
        .unwrap_or_else(|| std::net::SocketAddr::new(devices::LOOPBACK, 0));
    let listener = control::bind(control_addr)
        .await
        .with_context(|| format!("cannot listen for the control API on {control_addr}"))?;
    let control_bound = listener.local_addr()?;
    let control_port = control_bound.port();
    let access = Arc::new(auth::Access::new(control_bound));
    let control_task = control::spawn(listener, state.clone(), access.clone(), stop_rx.clone());
    let mut ports = std::collections::BTreeMap::from([("control".to_string(), control_port)]);
    if let Some(p) = dns_sd_port {
        ports.insert("dns-sd".to_string(), p);
    }
    let ready = Ready {
        devices: state
            .devices
            .iter()
            .map(|d| ServedDevice {
                device: d.ready(),
                mdns: state
                    .discovery
                    .records_of(&d.name)
                    .map(|r| control::mdns_names(&r))
                    .unwrap_or_default(),
            })
            .collect(),
        ports,
        discovery: mode,
        pid: std::process::id(),
        token: access.token().to_string(),
    };
    for d in &ready.devices {
        let d = &d.device;
        eprintln!(
            "airtwin: {} ({}) listening on {} {:?}",
            d.name, d.kind, d.address, d.ports
        );
        if let Some(pin) = d.identity.get("pin") {
            eprintln!("airtwin: {}: enter PIN {pin} on the client", d.name);
        }
    }
    eprintln!(
        "airtwin: control API on http://{}:{control_port}/",
        control_addr.ip()
    );
    if let Some(p) = dns_sd_port {
        eprintln!("airtwin: DNS-SD on 127.0.0.1:{p}/udp");
    }
    if let Some(path) = &opts.ready_file {
        write_ready(path, &ready)?;
    }
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = state.stop.notified() => {}
    }
    eprintln!("airtwin: shutting down");
    // Goodbyes first (RFC 6762 §10.1), while the devices still answer.
    state.discovery.shutdown().await;
    let devices = &state.devices;
    let _ = stop_tx.send(true);
    control_task.abort();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    if let Some((out, streamed)) = streamed {
        let mut result = crate::engine::ScenarioResult::new(&loaded, seed, Some(out.clone()));
        result.passed = true;
        result.duration = recorder.elapsed();
        result.events = recorder.snapshot();
        streamed
            .finish(devices, &result)
            .with_context(|| format!("cannot write the transcript in {}", out.display()))?;
        eprintln!("airtwin: transcript in {}", out.display());
    }
    for d in devices {
        d.abort();
    }
    if let Some(path) = &opts.ready_file {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_args_pair_ports_by_position_and_refuse_clashes() {
        let devices = ["airport-express=den".to_string(), "apple-tv".to_string()];
        let got = device_args(&devices, &[5000]).unwrap();
        assert_eq!(got[0].name, "den");
        assert_eq!(got[0].port, 5000);
        assert_eq!((got[1].name.as_str(), got[1].port), ("apple-tv", 0));
        assert_eq!(got[1].kind, DeviceKind::parse("apple-tv").unwrap());
        let twice = ["itunes".to_string(), "itunes".to_string()];
        let e = device_args(&twice, &[]).unwrap_err().to_string();
        assert!(e.contains("two devices named \"itunes\""), "{e}");
        let e = device_args(&devices, &[1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("3 --port but 2 --device"), "{e}");
        let e = device_args(&["toaster".to_string()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown device kind"), "{e}");
    }

    #[test]
    fn byte_counts_take_binary_units_and_budgets_refuse_what_cannot_hold_a_request() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("64MiB"), Ok(BufferBudget::DEFAULT_LIMIT));
        let e = parse_bytes("12 parsecs").unwrap_err();
        assert!(e.contains("unknown unit \"parsecs\""), "{e}");
        let e = parse_bytes("lots").unwrap_err();
        assert!(e.contains("not a byte count"), "{e}");
        assert!(parse_bytes("99999999999999999999G").is_err());
        let e = parse_buffer_budget("100").unwrap_err();
        assert!(e.contains("below the smallest budget, 1024"), "{e}");
        assert_eq!(parse_buffer_budget("1KiB"), Ok(1024));
        assert_eq!(parse_ring_size("16"), Ok(16));
        assert!(parse_ring_size("0").unwrap_err().contains("at least 1"));
        assert!(parse_ring_size("-3")
            .unwrap_err()
            .contains("not a whole number"));
    }

    #[test]
    fn serve_flags_have_the_documented_defaults_and_refuse_zero_with_the_flag_named() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut args = vec!["airtwin", "serve", "--device", "apple-tv"];
            args.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(args)
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--capture-window", "64", "--buffer-budget", "256KiB"]).is_ok());
        for (flag, value, why) in [
            ("--capture-window", "0", "at least 1"),
            ("--capture-sessions", "0", "at least 1"),
            ("--events", "0", "at least 1"),
            ("--buffer-budget", "10", "below the smallest budget"),
            ("--buffer-budget", "8 furlongs", "unknown unit"),
        ] {
            let e = match parse(&[flag, value]) {
                Ok(_) => panic!("{flag} {value} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(flag) && e.contains(why), "{flag} {value}: {e}");
        }
    }
}
