//! Scenarios marked `netns: true` run their clients' mDNS (pyatv's `pair` publishes
//! `_touch-remote._tcp` on every non-loopback interface: docs/peers.md) only inside a private
//! network namespace. Outside one, `airtwin run` runs such a scenario as
//! `ci/netns airtwin run FILE --seed N [--out DIR]` and reads the child's verdict.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::{self, Failure, RunOptions, ScenarioResult};
use crate::scenario::Loaded;

/// Whether this process already runs inside the project's namespace (`ci/netns` sets it).
pub fn inside() -> bool {
    std::env::var_os("AIRTWIN_NETNS").is_some()
}

/// Runs `loaded` through `ci/netns` in a child `airtwin run`.
pub async fn run_scenario(
    loaded: &Loaded,
    opts: &RunOptions,
    seed: u64,
    cancel: watch::Receiver<bool>,
) -> ScenarioResult {
    let started = Instant::now();
    let scenario = &loaded.scenario;
    let mut result = ScenarioResult::new(
        loaded,
        seed,
        opts.out.as_ref().map(|o| o.join(&scenario.name)),
    );
    let script = engine::project_root(&loaded.dir()).map(|r| r.join("ci/netns"));
    let exe = std::env::current_exe();
    let (Some(script), Ok(exe)) = (script.filter(|s| s.exists()), exe) else {
        result.error = Some(
            "this scenario needs a private network namespace: ci/netns was not found above it"
                .into(),
        );
        return result;
    };
    let file = std::fs::canonicalize(&loaded.file).unwrap_or_else(|_| loaded.file.clone());
    let mut argv = vec![
        script.to_string_lossy().into_owned(),
        exe.to_string_lossy().into_owned(),
        "run".into(),
        file.to_string_lossy().into_owned(),
        "--seed".into(),
        seed.to_string(),
    ];
    if let Some(out) = &opts.out {
        argv.push("--out".into());
        argv.push(out.to_string_lossy().into_owned());
    }
    let budget: f64 = scenario.clients.iter().map(|c| c.timeout).sum::<f64>() + 60.0;
    let mut env = BTreeMap::new();
    if let Some(p) = &opts.peers {
        env.insert("AIRTWIN_PEERS".into(), p.to_string_lossy().into_owned());
    }
    let outcome = crate::clients::external::run(
        &argv,
        &env,
        Path::new("."),
        Duration::from_secs_f64(budget),
        cancel,
    )
    .await;
    result.duration = started.elapsed();
    result.interrupted = outcome.interrupted;
    result.passed = outcome.exit == Some(0);
    if !result.passed {
        let fail_line = outcome
            .stdout
            .lines()
            .find(|l| l.contains("FAIL"))
            .map(str::to_string);
        match fail_line {
            Some(line) => result.failures.push(Failure {
                what: "inside ci/netns".into(),
                expected: "the scenario to pass".into(),
                actual: line,
            }),
            None => {
                result.error = Some(format!(
                    "ci/netns airtwin run ended {:?}: {}",
                    outcome.exit,
                    outcome.output().trim()
                ))
            }
        }
    }
    result.clients.push(("ci/netns".into(), outcome));
    result
}
