//! The scenario commands: `validate`, `list`, `schema` and `run`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use super::partition::Partition;
use crate::engine::{self, RunOptions, ScenarioResult};
use crate::{report, scenario, serve};

/// Prints the JSON Schema of the scenario format.
pub(super) fn schema() -> Result<ExitCode> {
    let schema = schemars::schema_for!(scenario::Scenario);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn validate(files: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario::collect_files(files).context("reading scenario paths")?;
    let mut bad = 0;
    for f in &files {
        match scenario::load_file(f) {
            Ok(_) => println!("ok  {}", f.display()),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} scenario(s) invalid", files.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

pub(super) fn list(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario::collect_files(paths).context("reading scenario paths")?;
    let mut ok = true;
    for f in &files {
        match scenario::load_file(f) {
            Ok(l) => {
                let desc = l
                    .scenario
                    .description
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<40} {}\n{:<40} {}",
                    l.scenario.name,
                    f.display(),
                    "",
                    desc
                );
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    Ok(super::exit_code(ok))
}

/// `airtwin run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a transcript, captures and client logs per scenario under this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write one self-contained HTML page here: a summary table and a ladder diagram per
    /// scenario (written also when scenarios fail or time out).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write each scenario's TCP exchanges and UDP datagrams as DIR/<scenario>.pcapng
    /// (synthesised packets with the real addresses and ports), and the plaintext of encrypted
    /// connections and audio as DIR/<scenario>.decrypted.pcapng.
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Use this seed instead of each scenario's (replays a failure).
    #[arg(long)]
    seed: Option<u64>,
    /// Run only scenarios whose name or path contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Run only shard K of N (1 ≤ K ≤ N): a scenario's shard is fixed by a hash of its name,
    /// so N jobs with K = 1…N run every scenario once. Applies after --filter.
    #[arg(long, value_name = "K/N")]
    partition: Option<Partition>,
    /// Scenarios run at once [default: 4 per core, at most 8: scenarios mostly wait on their
    /// clients, peers and timers].
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// Discovery for every scenario: none, unicast, loopback or interfaces:NAME[,NAME…]
    /// (default: each scenario's `discovery`, itself `none` by default).
    #[arg(long, value_parser = super::parse_discovery)]
    discovery: Option<crate::discovery::DiscoveryMode>,
    /// Also run every scenario's clients against this real receiver and compare each
    /// exchange (openairplay1, shairplay, shairport-sync, uxplay, kodi).
    #[arg(long, value_parser = crate::differential::ReferenceKind::parse)]
    differential: Option<crate::differential::ReferenceKind>,
    /// Write every scenario's result as JSON here (what `airtwin run` outside ci/netns reads
    /// back from the child it runs inside the namespace).
    #[arg(long, value_name = "FILE", hide = true)]
    result_json: Option<PathBuf>,
}

pub(super) async fn run(args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        paths,
        junit,
        html,
        pcap,
        out,
        seed,
        filter,
        partition,
        jobs,
        discovery,
        differential,
        result_json,
    } = args;
    let files = scenario::collect_files(&paths).context("reading scenario paths")?;
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    for f in files {
        match scenario::load_file(&f) {
            Ok(l) => loaded.push(l),
            Err(e) => invalid.push(e),
        }
    }
    if let Some(p) = &partition {
        // A file that does not load has no name: its path decides its shard, so exactly one
        // shard reports it.
        invalid.retain(|e| p.includes(&e.file.to_string_lossy()));
    }
    for e in &invalid {
        eprintln!("{e}");
    }
    if let Some(kind) = differential {
        for l in &mut loaded {
            l.scenario.reference = Some(kind);
        }
    }
    if let Some(text) = &filter {
        loaded.retain(|l| {
            l.scenario.name.contains(text.as_str())
                || l.file.to_string_lossy().contains(text.as_str())
        });
    }
    if let Some(p) = &partition {
        let before = loaded.len();
        loaded.retain(|l| p.includes(&l.scenario.name));
        eprintln!(
            "airtwin: partition {p}: {} of {before} scenario(s)",
            loaded.len()
        );
        if loaded.is_empty() && invalid.is_empty() {
            // More shards than scenarios: an empty shard is not an error, and writes an empty
            // JUnit report so that merging every shard's file still works.
            println!("0 passed, 0 failed");
            let cx = report::html::Context::default();
            write_reports(&[], junit.as_deref(), html.as_deref(), &cx)?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    if loaded.is_empty() && invalid.is_empty() {
        eprintln!("airtwin: no scenarios to run");
        return Ok(ExitCode::FAILURE);
    }
    let opts = Arc::new(RunOptions {
        seed,
        out: out.clone(),
        peers: None,
        discovery,
        pcap: pcap.clone(),
    });
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        serve::wait_for_signal().await;
        eprintln!("airtwin: interrupted; stopping clients and writing reports");
        let _ = cancel_tx.send(true);
    });
    let page = report::html::Context {
        expectations: loaded
            .iter()
            .map(|l| {
                (
                    l.scenario.name.clone(),
                    report::html::Expectations::of(&l.scenario),
                )
            })
            .collect(),
        invalid: invalid.iter().map(ToString::to_string).collect(),
    };
    let addresses: Arc<HashMap<String, HashMap<String, IpAddr>>> = Arc::new(
        loaded
            .iter()
            .map(|l| {
                let devices = l
                    .scenario
                    .devices
                    .iter()
                    .map(|d| {
                        let ip = d.address.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
                        (d.name.clone(), IpAddr::V4(ip))
                    })
                    .collect();
                (l.scenario.name.clone(), devices)
            })
            .collect(),
    );
    let pcap = pcap.map(Arc::new);
    let jobs = jobs.unwrap_or_else(default_jobs);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut handles = Vec::new();
    for l in loaded {
        let opts = opts.clone();
        let cancel = cancel_rx.clone();
        let sem = semaphore.clone();
        let pcap = pcap.clone();
        let addresses = addresses.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = engine::run(&l, &opts, cancel).await;
            println!("{}", report::line(&r));
            if let Some(dir) = pcap.as_deref().filter(|_| !r.pcap_written) {
                let none = HashMap::new();
                let devices = addresses.get(&r.name).unwrap_or(&none);
                if let Err(e) = report::pcap::write(dir, &r, devices) {
                    eprintln!("airtwin: {}: cannot write the capture: {e}", r.name);
                }
            }
            // Written: a run of many scenarios must not hold every scenario's packets.
            let mut r = r;
            r.packets = Default::default();
            r
        }));
    }
    let mut results: Vec<ScenarioResult> = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => eprintln!("airtwin: a scenario task failed: {e}"),
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    println!(
        "{passed} passed, {} failed{}",
        results.len() - passed,
        if invalid.is_empty() {
            String::new()
        } else {
            format!(", {} invalid", invalid.len())
        }
    );
    write_reports(&results, junit.as_deref(), html.as_deref(), &page)?;
    if let Some(path) = &result_json {
        let text = serde_json::to_string(&results).context("encoding the results")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(out) = &out {
        eprintln!("airtwin: transcripts in {}", out.display());
    }
    Ok(super::exit_code(
        passed == results.len() && invalid.is_empty(),
    ))
}

/// `-j` when not given: 4 scenarios per core, at most 8. A scenario mostly waits (on its clients'
/// start, the peers' own timers, a reference receiver): measured on a 2-core machine, the
/// built-in suite took 161 s at `-j 2`, 89 s at 4, 67 s at 6 and 58 s at 8, passing each time.
fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).min(8)
}

/// The JUnit file and the HTML page, when asked for.
fn write_reports(
    results: &[ScenarioResult],
    junit: Option<&Path>,
    html: Option<&Path>,
    page: &report::html::Context,
) -> Result<()> {
    if let Some(path) = junit {
        report::junit::write(path, results)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = html {
        report::html::write(path, results, page)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("airtwin: HTML report in {}", path.display());
    }
    Ok(())
}
