//! The scenario commands: `validate`, `list`, `schema` and `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

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

pub(super) async fn run(
    paths: Vec<PathBuf>,
    junit: Option<PathBuf>,
    out: Option<PathBuf>,
    seed: Option<u64>,
    filter: Option<String>,
    jobs: usize,
    discovery: Option<crate::discovery::DiscoveryMode>,
) -> Result<ExitCode> {
    let files = scenario::collect_files(&paths).context("reading scenario paths")?;
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    for f in files {
        match scenario::load_file(&f) {
            Ok(l) => loaded.push(l),
            Err(e) => invalid.push(e),
        }
    }
    for e in &invalid {
        eprintln!("{e}");
    }
    if let Some(text) = &filter {
        loaded.retain(|l| {
            l.scenario.name.contains(text.as_str())
                || l.file.to_string_lossy().contains(text.as_str())
        });
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
    });
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        serve::wait_for_signal().await;
        eprintln!("airtwin: interrupted; stopping clients and writing reports");
        let _ = cancel_tx.send(true);
    });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut handles = Vec::new();
    for l in loaded {
        let opts = opts.clone();
        let cancel = cancel_rx.clone();
        let sem = semaphore.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = engine::run(&l, &opts, cancel).await;
            println!("{}", report::line(&r));
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
    if let Some(path) = &junit {
        report::junit::write(path, &results)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(out) = &out {
        eprintln!("airtwin: transcripts in {}", out.display());
    }
    Ok(super::exit_code(
        passed == results.len() && invalid.is_empty(),
    ))
}
