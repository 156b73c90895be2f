//! Running one scenario: start its devices, run its clients in order, stop, check expectations,
//! write the reports. Reports are written whatever happened: failure, timeout or interrupt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airtwin_simulators::event::Event;
use airtwin_simulators::fault::FaultPlan;
use airtwin_simulators::shell::Recorder;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, info_span, Instrument};

use crate::clients::{self, ClientOutcome};
use crate::devices::{self, Device, RunContext};
use crate::expect;
use crate::report::transcript;
use crate::scenario::subst::Vars;
use crate::scenario::{ClientKind, Loaded};

/// Options of one `airtwin run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replaces every scenario's seed.
    pub seed: Option<u64>,
    /// Folder for transcripts, captures and client logs (one subfolder per scenario).
    pub out: Option<PathBuf>,
    /// Third-party peers folder (`${peers}`); default `target/peers` of the project.
    pub peers: Option<PathBuf>,
    /// Replaces every scenario's `discovery` mode (`--discovery`).
    pub discovery: Option<crate::discovery::DiscoveryMode>,
    /// `--pcap DIR`: keep the datagrams and byte-stream bytes the devices saw, within
    /// [`PacketLog::DEFAULT_BUDGET`](airtwin_simulators::packet_log::PacketLog::DEFAULT_BUDGET),
    /// for the capture the caller writes into DIR. A scenario that runs in a child inside
    /// `ci/netns` has the child write its capture there ([`ScenarioResult::pcap_written`]).
    pub pcap: Option<PathBuf>,
}

/// A failed expectation.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Failure {
    /// Which expectation, e.g. `expect[2] audio kitchen`.
    pub what: String,
    pub expected: String,
    pub actual: String,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub file: PathBuf,
    pub seed: u64,
    pub passed: bool,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub failures: Vec<Failure>,
    /// The run could not go on (device failed to start, interrupt, …).
    pub error: Option<String>,
    pub interrupted: bool,
    pub clients: Vec<(String, ClientOutcome)>,
    /// Where the transcript went, if `--out` was given.
    pub out_dir: Option<PathBuf>,
    /// Differential mode: every difference from the reference, accepted ones included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<crate::differential::Difference>,
    #[serde(skip)]
    pub events: Vec<Event>,
    /// With [`RunOptions::pcap`]: the packets logged (oldest dropped past the budget).
    #[serde(skip)]
    pub packets: airtwin_simulators::packet_log::Logged,
    /// The capture of `--pcap` is already written (by the child run inside `ci/netns`, which
    /// alone saw the packets).
    #[serde(skip)]
    pub pcap_written: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl ScenarioResult {
    /// A result not yet passed, with nothing recorded.
    pub fn new(loaded: &Loaded, seed: u64, out_dir: Option<PathBuf>) -> Self {
        ScenarioResult {
            name: loaded.scenario.name.clone(),
            file: loaded.file.clone(),
            seed,
            passed: false,
            duration: Duration::ZERO,
            failures: Vec::new(),
            error: None,
            interrupted: false,
            clients: Vec::new(),
            out_dir,
            differences: Vec::new(),
            events: Vec::new(),
            packets: Default::default(),
            pcap_written: false,
        }
    }

    /// The first failure as one line: `what: expected X, got Y`.
    pub fn first_problem(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        self.failures
            .first()
            .map(|f| format!("{}: expected {}, got {}", f.what, f.expected, f.actual))
    }
}

/// Runs one loaded scenario.
pub async fn run(
    loaded: &Loaded,
    opts: &RunOptions,
    cancel: watch::Receiver<bool>,
) -> ScenarioResult {
    let scenario = &loaded.scenario;
    let span = info_span!("scenario", name = %scenario.name);
    async move {
        let started = Instant::now();
        let seed = opts.seed.unwrap_or(scenario.seed);
        if crate::netns::needed(scenario) && !crate::netns::inside() {
            return crate::netns::run_scenario(loaded, opts, seed, cancel).await;
        }
        let recorder = Recorder::shared();
        if opts.pcap.is_some() {
            recorder.log_packets(airtwin_simulators::packet_log::PacketLog::DEFAULT_BUDGET);
        }
        let plan = Arc::new(FaultPlan::new(seed, scenario.faults.clone()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = RunContext {
            recorder: recorder.clone(),
            plan,
            seed,
            shutdown: stop_rx,
            base_dir: loaded.dir(),
            capture: Default::default(),
            buffers: None,
        };
        let out_dir = opts.out.as_ref().map(|o| o.join(&scenario.name));
        if let Some(d) = &out_dir {
            let _ = std::fs::create_dir_all(d);
        }
        let mut result = ScenarioResult::new(loaded, seed, out_dir.clone());
        // `${out}` without `--out`: a folder of this scenario's own, removed when it ends, since
        // scenarios run side by side (`-j`) and their clients write files there.
        let scratch = match &out_dir {
            Some(_) => None,
            None => tempfile::Builder::new()
                .prefix(&format!("airtwin-{}-", scenario.name))
                .tempdir()
                .ok(),
        };
        let client_out = out_dir
            .as_deref()
            .or(scratch.as_ref().map(tempfile::TempDir::path));

        let mut devices: Vec<Device> = Vec::new();
        for spec in &scenario.devices {
            match devices::start(spec, &ctx).await {
                Ok(d) => {
                    info!(device = %d.name, ports = ?d.ports, "listening");
                    devices.push(d)
                }
                Err(e) => {
                    result.error = Some(format!("device {} did not start: {e:#}", spec.name));
                    break;
                }
            }
        }

        let mode = opts.discovery.as_ref().unwrap_or(&scenario.discovery);
        let mut discovery = crate::discovery::Discovery::none();
        if result.error.is_none() && !mode.is_none() {
            match crate::discovery::Discovery::start(
                mode,
                &devices,
                &scenario.devices,
                0,
                ctx.shutdown.clone(),
            )
            .await
            {
                Ok(d) => discovery = d,
                Err(e) => result.error = Some(format!("discovery did not start: {e:#}")),
            }
        }

        if result.error.is_none() {
            let mut vars = variables(loaded, &devices, seed, opts, client_out);
            if let Some(port) = discovery.dns_sd_port {
                vars.set("discovery.port", port.to_string());
                vars.set("discovery.address", "127.0.0.1");
            }
            let mut differential = None;
            if let Some(kind) = scenario.reference {
                match crate::differential::run::Pass::start(kind, &devices, &vars, opts, loaded, out_dir.as_deref()).await {
                    Ok(pass) => {
                        pass.redirect_to_fake(&mut vars);
                        differential = Some(pass);
                    }
                    Err(e) => result.error = Some(format!("differential mode: {e:#}")),
                }
            }
            let redirect = differential.as_ref().map(|p| p.fake_redirect());
            for client in scenario.clients.iter().filter(|_| result.error.is_none()) {
                if *cancel.borrow() {
                    result.interrupted = true;
                    break;
                }
                let outcome = run_client(loaded, client, &devices, &vars, seed, redirect.as_ref(), cancel.clone()).await;
                info!(client = %client.name, exit = ?outcome.exit, timed_out = outcome.timed_out, "client done");
                let interrupted = outcome.interrupted;
                result.clients.push((client.name.clone(), outcome));
                if interrupted {
                    result.interrupted = true;
                    break;
                }
            }
            if let Some(pass) = differential.take() {
                if result.error.is_none() && !result.interrupted {
                    pass.run_reference(loaded, &devices, &vars, seed, &cancel, &mut result)
                        .await;
                } else {
                    pass.stop().await;
                }
            }
            // Datagrams still in flight when the client returns.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }

        // mDNS goodbyes go out before the devices stop (RFC 6762 §10.1).
        discovery.shutdown().await;
        let _ = stop_tx.send(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        for d in &devices {
            d.abort();
        }
        result.events = recorder.snapshot();
        result.packets = recorder.take_packets();
        if result.interrupted && result.error.is_none() {
            result.error = Some("interrupted".into());
        }
        if result.error.is_none() {
            let differences = std::mem::take(&mut result.failures);
            result.failures = expect::evaluate(loaded, &devices, &result);
            result.failures.extend(differences);
        }
        result.passed = result.error.is_none() && result.failures.is_empty();
        result.duration = started.elapsed();
        if let Some(dir) = &out_dir {
            if let Err(e) = transcript::write_all(dir, loaded, &devices, &result) {
                tracing::warn!(error = %e, "could not write the transcript");
            }
        }
        result
    }
    .instrument(span)
    .await
}

/// The variables external commands may use.
pub fn variables(
    loaded: &Loaded,
    devices: &[Device],
    seed: u64,
    opts: &RunOptions,
    out: Option<&Path>,
) -> Vars {
    let mut v = Vars::default();
    for d in devices {
        v.set(format!("device.{}.port", d.name), d.port().to_string());
        v.set(format!("device.{}.address", d.name), d.address.to_string());
        for (service, port) in &d.ports {
            v.set(
                format!("device.{}.ports.{service}", d.name),
                port.to_string(),
            );
        }
        // The ready file's identity facts: `mac`, a Spotify AP's `public_key` PEM…
        for (key, value) in d.ready().identity {
            v.set(format!("device.{}.{key}", d.name), value);
        }
    }
    let peers = opts
        .peers
        .clone()
        .unwrap_or_else(|| default_peers_dir(&loaded.dir()));
    v.set("peers", peers.to_string_lossy());
    v.set("scenario_dir", loaded.dir().to_string_lossy());
    v.set("seed", seed.to_string());
    if let Ok(exe) = std::env::current_exe() {
        v.set("airtwin", exe.to_string_lossy());
    }
    // Absolute: clients run in their own working directory, and `--out` may be relative.
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let out = std::path::absolute(&out).unwrap_or(out);
    v.set("out", out.to_string_lossy());
    let root = project_root(&loaded.dir()).unwrap_or_else(|| PathBuf::from("."));
    v.set("project", root.to_string_lossy());
    v
}

/// `AIRTWIN_PEERS`, else `target/peers` of the project the scenario lives in.
pub fn default_peers_dir(from: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("AIRTWIN_PEERS") {
        return PathBuf::from(p);
    }
    project_root(from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("target/peers")
}

/// The nearest folder above `from` that holds `ci/install-peers` (airtwin's checkout).
pub fn project_root(from: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(from).ok()?;
    start
        .ancestors()
        .find(|a| a.join("ci/install-peers").exists())
        .map(Path::to_path_buf)
}

pub(crate) async fn run_client(
    loaded: &Loaded,
    client: &crate::scenario::ClientSpec,
    devices: &[Device],
    vars: &Vars,
    seed: u64,
    redirect: Option<&crate::differential::run::Redirect>,
    cancel: watch::Receiver<bool>,
) -> ClientOutcome {
    let timeout = Duration::from_secs_f64(client.timeout);
    match &client.run {
        ClientKind::Command(argv) => {
            let argv: Result<Vec<String>, String> = argv.iter().map(|a| vars.apply(a)).collect();
            let env: Result<BTreeMap<String, String>, String> = client
                .env
                .iter()
                .map(|(k, v)| vars.apply(v).map(|v| (k.clone(), v)))
                .collect();
            match (argv, env) {
                (Ok(argv), Ok(env)) => {
                    clients::external::run(&argv, &env, &loaded.dir(), timeout, cancel).await
                }
                (Err(e), _) | (_, Err(e)) => ClientOutcome::failed_to_start(e, Duration::ZERO),
            }
        }
        ClientKind::Raop(spec) => {
            let Some(device) = devices.iter().find(|d| d.name == spec.to) else {
                return ClientOutcome::failed_to_start(
                    format!("no device {}", spec.to),
                    Duration::ZERO,
                );
            };
            let mut opts = match clients::raop::Options::from_spec(spec, loaded, device, seed) {
                Ok(o) => o,
                Err(e) => return ClientOutcome::failed_to_start(format!("{e:#}"), Duration::ZERO),
            };
            if let Some(r) = redirect.filter(|r| r.device == spec.to) {
                opts.addr = r.addr;
                if let Some(key) = &r.verify_key {
                    opts.verify_key = key.clone();
                }
                if let Some(mac) = r.verify_mac {
                    opts.mac = mac;
                }
            }
            clients::run_in_process(opts, timeout, cancel).await
        }
        ClientKind::Airplay(spec) => {
            let Some(device) = devices.iter().find(|d| d.name == spec.to) else {
                return ClientOutcome::failed_to_start(
                    format!("no device {}", spec.to),
                    Duration::ZERO,
                );
            };
            let mut opts = match clients::airplay::Options::from_spec(spec, loaded, device, seed) {
                Ok(o) => o,
                Err(e) => return ClientOutcome::failed_to_start(format!("{e:#}"), Duration::ZERO),
            };
            if let Some(r) = redirect.filter(|r| r.device == spec.to) {
                opts.addr = r.addr;
            }
            clients::run_in_process(opts, timeout, cancel).await
        }
        ClientKind::Dacp(spec) => {
            let Some((address, port)) = devices
                .iter()
                .find(|d| d.name == spec.to)
                .and_then(|d| d.ports.get("dacp").map(|p| (d.address, p)))
            else {
                return ClientOutcome::failed_to_start(
                    format!("device {} has no dacp port", spec.to),
                    Duration::ZERO,
                );
            };
            let steps = match clients::dacp::parse_steps(&spec.steps) {
                Ok(s) => s,
                Err(e) => return ClientOutcome::failed_to_start(e, Duration::ZERO),
            };
            let opts = clients::dacp::Options {
                addr: std::net::SocketAddr::new(address, *port),
                guid: spec.guid.clone(),
                steps,
                gzip: spec.gzip,
                response_timeout: Duration::from_secs_f64(spec.response_timeout.unwrap_or(10.0)),
                out: PathBuf::from(vars.apply("${out}").unwrap_or_else(|_| ".".into())),
            };
            clients::run_in_process(opts, timeout, cancel).await
        }
        ClientKind::Pair(spec) => {
            let dacp = devices
                .iter()
                .find(|d| d.name == spec.device)
                .and_then(|d| d.parts.dacp.clone());
            let argv: Option<Result<Vec<String>, String>> = spec
                .command
                .as_ref()
                .map(|argv| argv.iter().map(|a| vars.apply(a)).collect());
            let env: Result<BTreeMap<String, String>, String> = client
                .env
                .iter()
                .map(|(k, v)| vars.apply(v).map(|v| (k.clone(), v)))
                .collect();
            let (argv, env) = match (argv.transpose(), env) {
                (Ok(a), Ok(e)) => (a, e),
                (Err(e), _) | (_, Err(e)) => {
                    return ClientOutcome::failed_to_start(e, Duration::ZERO)
                }
            };
            let mut env = env;
            if let Some(faults) =
                clients::pair::remote_faults_env(&client.name, &loaded.scenario.faults, seed)
            {
                env.insert(clients::pair::REMOTE_FAULTS_ENV.into(), faults);
            }
            clients::pair::run(spec, dacp, argv, &env, &loaded.dir(), timeout, cancel).await
        }
    }
}
