//! `airtwin bench soak`: every device kind ([`Load::ALL`]) under mixed load for a set time with a
//! fault plan active (delays, 503 answers, dropped and reset connections, each on a share of the
//! requests drawn from the seed), started as `serve` starts them: a bounded event ring and the
//! transcript streamed to disk. Afterwards it checks what a device left running for a day must
//! hold:
//!
//! - no panic in any task;
//! - every device still answers;
//! - open file descriptors back to where they were before the load;
//! - resident memory flat: the growth after the first third of the run (the reference, measured
//!   in the same run) within a few MB;
//! - the transcript complete: one `events.jsonl` line per event recorded, every request the
//!   clients saw answered in it.
//!
//! It prints the figures and fails with the list of what did not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use airtwin_simulators::fault::{Action, Fault, FaultPlan, Match};
use airtwin_simulators::shell::Recorder;
use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::memory::{ApTarget, Load, LoadClient};
use super::scale::rss_kib;
use crate::devices::{self, Device, RunContext};
use crate::report::transcript;
use crate::scenario::{Loaded, Scenario};

/// What one soak run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    /// Keep-alive client connections per device kind.
    pub connections: usize,
    /// Events kept in memory, as `serve --events`.
    pub events: usize,
    /// Allowed growth of resident memory over the reference, in MB.
    pub rss_slack_mb: f64,
    pub seed: u64,
    /// Folder of the transcript (a scratch folder, removed afterwards, when absent).
    pub out: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(10),
            connections: 2,
            events: 2000,
            rss_slack_mb: 8.0,
            seed: 0,
            out: None,
        }
    }
}

/// Per device kind: requests answered 200, answered otherwise (a fault's status), connections the
/// client had to open again (a fault dropped or reset one), and Spotify AP logins.
#[derive(Debug, Default, Clone)]
pub struct KindFigures {
    pub ok: u64,
    pub faulted: u64,
    pub reconnects: u64,
    pub logins: u64,
}

/// The figures of a run and what did not hold.
#[derive(Debug, Default)]
pub struct Report {
    pub seconds: f64,
    pub kinds: BTreeMap<&'static str, KindFigures>,
    pub fds_before: usize,
    pub fds_after: usize,
    pub rss_before_kib: u64,
    pub rss_reference_kib: u64,
    pub rss_after_kib: u64,
    pub events_recorded: usize,
    pub events_on_disk: usize,
    pub requests_on_disk: usize,
    pub panics: u64,
    pub problems: Vec<String>,
}

impl Report {
    pub fn print(&self) {
        println!(
            "airtwin bench soak: {:.1}s, {} device kinds with a fault plan active",
            self.seconds,
            self.kinds.len()
        );
        for (name, k) in &self.kinds {
            println!(
                "{name:<16} {} answered 200, {} faulted answers, {} reconnects, {} logins",
                k.ok, k.faulted, k.reconnects, k.logins
            );
        }
        let mb = |k: u64| k as f64 / 1024.0;
        println!(
            "file descriptors: {} before the load, {} after",
            self.fds_before, self.fds_after
        );
        println!(
            "RSS: {:.1} MB before, {:.1} MB at a third of the run (reference), {:.1} MB at the end = {:+.1} MB",
            mb(self.rss_before_kib),
            mb(self.rss_reference_kib),
            mb(self.rss_after_kib),
            mb(self.rss_after_kib) - mb(self.rss_reference_kib)
        );
        println!(
            "transcript: {} events recorded, {} in events.jsonl, {} requests",
            self.events_recorded, self.events_on_disk, self.requests_on_disk
        );
        println!("panics: {}", self.panics);
        if self.problems.is_empty() {
            println!("soak: everything held");
        }
        for p in &self.problems {
            println!("soak FAILED: {p}");
        }
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts panics of every thread and task (the previous hook still reports them).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            previous(info);
        }));
    });
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The fault plan: every device, a share of the requests each (README, "Faults").
fn faults() -> Vec<Fault> {
    let fault = |action, probability| Fault {
        when: Match::default(),
        action,
        times: None,
        after: 0,
        probability,
    };
    vec![
        fault(Action::Delay(2), 0.05),
        fault(
            Action::Respond {
                status: 503,
                headers: Default::default(),
                body: String::new(),
            },
            0.02,
        ),
        fault(Action::Drop, 0.005),
        fault(Action::Reset, 0.005),
    ]
}

fn scenario(seed: u64) -> Loaded {
    Loaded {
        file: PathBuf::from("."),
        scenario: Scenario {
            name: "soak".into(),
            description: "airtwin bench soak".into(),
            seed,
            devices: Vec::new(),
            clients: Vec::new(),
            faults: faults(),
            expect: Vec::new(),
            netns: false,
            discovery: Default::default(),
            reference: None,
        },
    }
}

type Running = Vec<tokio::task::JoinHandle<Result<KindFigures>>>;

/// Starts one kind's clients, each running until `until`.
async fn drive(
    load: Load,
    device: &Device,
    connections: usize,
    until: Instant,
    seed: u64,
) -> Result<Running> {
    let ap = match load {
        Load::SpotifyAp => Some(ApTarget::of(device)?),
        _ => None,
    };
    let mut tasks = Vec::new();
    for i in 0..connections {
        let ap = ap.clone();
        let mut client = LoadClient::connect(load, device, seed + i as u64).await?;
        tasks.push(tokio::spawn(async move {
            let mut f = KindFigures::default();
            let mut n = 0u64;
            // An AP login every 50 requests.
            let mut next_login = 50u64;
            while Instant::now() < until {
                n += 1;
                match client.request().await {
                    Ok(200) => f.ok += 1,
                    Ok(_) => f.faulted += 1,
                    Err(_) => {
                        f.reconnects += 1;
                        loop {
                            match client.reconnect().await {
                                Ok(()) => break,
                                Err(_) if Instant::now() < until => {
                                    tokio::time::sleep(Duration::from_millis(10)).await
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                }
                if let Some(ap) = ap.as_ref().filter(|_| n == next_login) {
                    next_login += 50;
                    // A fault may drop the login's connection too; the next one goes on.
                    if ap.login(seed ^ n).await.is_ok() {
                        f.logins += 1;
                    }
                }
            }
            Ok(f)
        }));
    }
    Ok(tasks)
}

/// Whether `device` answers `load`'s request with 200 (a few tries: the fault plan stays active).
async fn answers(load: Load, device: &Device) -> bool {
    for i in 0..20 {
        if let Ok(mut c) = LoadClient::connect(load, device, 1000 + i).await {
            if let Ok(200) = c.request().await {
                return true;
            }
        }
    }
    false
}

fn count_lines(path: &Path) -> Result<(usize, usize)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut events = 0;
    let mut requests = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: a line is not JSON", path.display()))?;
        events += 1;
        if v["kind"]["type"] == "request" {
            requests += 1;
        }
    }
    Ok((events, requests))
}

/// Runs the soak; the report lists what did not hold (an error: the run itself could not go on).
pub async fn run(opts: Options) -> Result<Report> {
    count_panics();
    let panics_before = PANICS.load(Ordering::Relaxed);
    let started = Instant::now();
    let (out, scratch) = match &opts.out {
        Some(o) => (o.clone(), false),
        None => (
            std::env::temp_dir().join(format!("airtwin-soak-{}", std::process::id())),
            true,
        ),
    };
    let loaded = scenario(opts.seed);
    let recorder = Arc::new(Recorder::bounded(opts.events));
    let streamed = transcript::Streamed::start(&out, &loaded, opts.seed)
        .with_context(|| format!("cannot write the transcript in {}", out.display()))?;
    recorder.set_sink(streamed.sink()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = RunContext {
        recorder: recorder.clone(),
        plan: Arc::new(FaultPlan::new(opts.seed, faults())),
        seed: opts.seed,
        shutdown: stop_rx,
        base_dir: PathBuf::from("."),
        capture: airtwin_simulators::raop::CapturePolicy {
            window: Some(crate::serve::CAPTURE_WINDOW),
            sessions: Some(crate::serve::CAPTURE_SESSIONS),
            sink: Some(streamed.audio_sinks()),
        },
        buffers: None,
    };
    let mut devices = Vec::new();
    for load in Load::ALL {
        let device = devices::start(&load.spec(&format!("soak-{}", load.name())), &ctx)
            .await
            .with_context(|| format!("{} did not start", load.name()))?;
        devices.push((load, device));
    }
    let mut report = Report {
        fds_before: open_fds(),
        rss_before_kib: rss_kib().unwrap_or(0),
        ..Report::default()
    };

    let load_start = Instant::now();
    let until = load_start + opts.duration;
    let reference_at = load_start + opts.duration / 3;
    let rss_reference = tokio::spawn(async move {
        tokio::time::sleep_until(reference_at.into()).await;
        rss_kib().unwrap_or(0)
    });
    let mut running = Vec::new();
    for (load, device) in &devices {
        let tasks = drive(*load, device, opts.connections.max(1), until, opts.seed).await?;
        running.push((load.name(), tasks));
    }
    for (name, tasks) in running {
        let total = report.kinds.entry(name).or_default();
        for t in tasks {
            let f = t.await.context("a load task panicked")??;
            total.ok += f.ok;
            total.faulted += f.faulted;
            total.reconnects += f.reconnects;
            total.logins += f.logins;
        }
    }
    report.rss_reference_kib = rss_reference.await.unwrap_or(0);

    // The clients are gone: the devices close their ends, and every descriptor is given back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        report.fds_after = open_fds();
        if report.fds_after <= report.fds_before || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.rss_after_kib = rss_kib().unwrap_or(0);
    for (load, device) in &devices {
        if !answers(*load, device).await {
            report
                .problems
                .push(format!("{} no longer answers", load.name()));
        }
    }
    // Those checks' own connections close too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > report.fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.fds_after = report.fds_after.max(open_fds());

    report.events_recorded = recorder.len();
    let (on_disk, requests) = count_lines(&out.join("events.jsonl"))?;
    report.events_on_disk = on_disk;
    report.requests_on_disk = requests;
    let devices_only: Vec<Device> = Vec::new();
    let mut result = crate::engine::ScenarioResult::new(&loaded, opts.seed, Some(out.clone()));
    result.passed = true;
    result.duration = recorder.elapsed();
    streamed.finish(&devices_only, &result)?;
    let _ = stop_tx.send(true);
    for (_, d) in &devices {
        d.abort();
    }
    report.panics = PANICS.load(Ordering::Relaxed) - panics_before;
    report.seconds = started.elapsed().as_secs_f64();

    if report.panics > 0 {
        report
            .problems
            .push(format!("{} panics (see stderr)", report.panics));
    }
    if report.fds_after > report.fds_before {
        report.problems.push(format!(
            "{} file descriptors open after the load, {} before",
            report.fds_after, report.fds_before
        ));
    }
    let growth_mb = (report.rss_after_kib as f64 - report.rss_reference_kib as f64) / 1024.0;
    if growth_mb > opts.rss_slack_mb {
        report.problems.push(format!(
            "resident memory grew {growth_mb:.1} MB after the reference (allowed {} MB)",
            opts.rss_slack_mb
        ));
    }
    if report.events_on_disk != report.events_recorded {
        report.problems.push(format!(
            "events.jsonl holds {} events, {} were recorded",
            report.events_on_disk, report.events_recorded
        ));
    }
    let answered: u64 = report.kinds.values().map(|k| k.ok + k.faulted).sum();
    if (report.requests_on_disk as u64) < answered {
        report.problems.push(format!(
            "the transcript holds {} requests, the clients had {answered} answered",
            report.requests_on_disk
        ));
    }
    for (name, k) in &report.kinds {
        if k.ok == 0 {
            report.problems.push(format!("{name}: no request answered"));
        }
    }
    if scratch {
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(report)
}
