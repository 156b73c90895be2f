//! Scenarios whose clients or reference multicast mDNS run only inside a private network
//! namespace: `netns: true` (pyatv's `pair` publishes `_touch-remote._tcp` on every non-loopback
//! interface: docs/peers.md) and differential scenarios whose reference needs one
//! ([`ReferenceKind::needs_namespace`]: shairport-sync and UxPlay publish through avahi-daemon,
//! Kodi binds 0.0.0.0). Outside one, `airtwin run` runs such a scenario as `ci/netns airtwin run
//! FILE --seed N --out DIR [--differential REF] [--discovery MODE] [--pcap DIR] --result-json F`
//! (the parent's `--out` and `--pcap`, so transcripts, `differences.json` and captures land where
//! the parent's would; without `--out`, a temporary folder) and folds the child's result file and
//! the events it streamed to `events.jsonl` (without bodies) into its own report; a child that
//! crashes or leaves no result is an error of the scenario, never a silent pass.
//!
//! [`ReferenceKind::needs_namespace`]: crate::differential::ReferenceKind::needs_namespace

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::watch;

use airtwin_simulators::event::Event;

use crate::clients::ClientOutcome;
use crate::differential::Difference;
use crate::engine::{self, Failure, RunOptions, ScenarioResult};
use crate::scenario::{Loaded, Scenario};

/// Whether this process already runs inside the project's namespace (`ci/netns` sets it).
pub fn inside() -> bool {
    std::env::var_os("AIRTWIN_NETNS").is_some()
}

/// Why `scenario` must run inside a namespace, if it must.
pub fn needed_because(scenario: &Scenario) -> Option<String> {
    if scenario.netns {
        return Some("is marked `netns: true`".into());
    }
    scenario.reference.filter(|k| k.needs_namespace()).map(|k| {
        format!(
            "compares against {}, which multicasts mDNS or binds every interface",
            k.name()
        )
    })
}

/// Whether `scenario` must run inside a namespace.
pub fn needed(scenario: &Scenario) -> bool {
    needed_because(scenario).is_some()
}

/// What a child `airtwin run` inside the namespace reports for one scenario: the fields of its
/// [`ScenarioResult`] the parent folds into its own (written by `airtwin run --result-json`).
#[derive(Debug, Deserialize)]
pub struct ChildResult {
    pub name: String,
    pub passed: bool,
    #[serde(default)]
    pub failures: Vec<Failure>,
    pub error: Option<String>,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(default)]
    pub clients: Vec<(String, ClientOutcome)>,
    #[serde(default)]
    pub differences: Vec<Difference>,
}

/// Reads a `--result-json` file: the results of every scenario the child ran.
pub fn read_results(path: &Path) -> Result<Vec<ChildResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Folds the child's verdict on the scenario into `result`; `Err` when the child left none.
fn fold(result: &mut ScenarioResult, child: Vec<ChildResult>) -> Result<(), String> {
    let Some(c) = child.into_iter().find(|c| c.name == result.name) else {
        return Err(format!("no result for {} in the child's file", result.name));
    };
    result.passed = c.passed;
    result.failures = c.failures;
    result.error = c.error;
    result.interrupted |= c.interrupted;
    result.clients.extend(c.clients);
    result.differences = c.differences;
    Ok(())
}

/// `ci/netns` of the checkout above the scenario, else above the working folder or the airtwin
/// executable (a scenario kept outside the checkout).
fn netns_script(scenario_dir: &Path) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = engine::project_root(scenario_dir).into_iter().collect();
    roots.extend(
        std::env::current_dir()
            .ok()
            .and_then(|d| engine::project_root(&d)),
    );
    roots.extend(
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().and_then(engine::project_root)),
    );
    roots
        .into_iter()
        .map(|r| r.join("ci/netns"))
        .find(|s| s.is_file())
}

/// Says whether namespaces can be made here (`ci/netns --check`).
async fn check(script: &Path) -> Result<(), String> {
    let out = tokio::process::Command::new(script)
        .arg("--check")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The child's `--out`: the parent's, else a temporary folder (removed after), so that its events
/// come back to the parent either way. Returns the folder and whether it is temporary.
fn child_out(opts: &RunOptions, name: &str, seed: u64) -> (PathBuf, bool) {
    match &opts.out {
        Some(out) => (out.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "airtwin-netns-{}-{name}-{seed}",
                std::process::id()
            )),
            true,
        ),
    }
}

/// The events the child streamed to `events.jsonl` (bodies are not in that file); `Err` says why
/// they could not be read.
fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

/// `mode` as `--discovery` takes it ([`DiscoveryMode::parse`]).
///
/// [`DiscoveryMode::parse`]: crate::discovery::DiscoveryMode::parse
fn discovery_arg(mode: &crate::discovery::DiscoveryMode) -> String {
    use crate::discovery::DiscoveryMode;
    match mode {
        DiscoveryMode::None => "none".into(),
        DiscoveryMode::Unicast => "unicast".into(),
        DiscoveryMode::Loopback => "loopback".into(),
        DiscoveryMode::Interfaces(names) => format!("interfaces:{}", names.join(",")),
    }
}

/// How long the child `airtwin run` (and `ci/netns` around it) may take to stop its clients and
/// reference, write its result and delete the namespace after TERM, before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(15);

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
    let why = needed_because(scenario).unwrap_or_default();
    let script = netns_script(&loaded.dir());
    let exe = std::env::current_exe();
    let (Some(script), Ok(exe)) = (script, exe) else {
        result.error = Some(format!(
            "this scenario {why}, so it runs only inside a private network namespace: ci/netns was not found above it, the working folder or the airtwin executable"
        ));
        return result;
    };
    if let Err(e) = check(&script).await {
        result.error = Some(format!(
            "this scenario {why}, so it runs only inside a private network namespace, which \
             cannot be made here ({e}); run it as root after ci/install-peers"
        ));
        result.duration = started.elapsed();
        return result;
    }
    let file = std::fs::canonicalize(&loaded.file).unwrap_or_else(|_| loaded.file.clone());
    let (out, temporary) = child_out(opts, &scenario.name, seed);
    let result_file = out.join(&scenario.name).join("netns-result.json");
    if let Some(dir) = result_file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&result_file);
    let mut argv = vec![
        script.to_string_lossy().into_owned(),
        exe.to_string_lossy().into_owned(),
        "run".into(),
        file.to_string_lossy().into_owned(),
        "--seed".into(),
        seed.to_string(),
        "--result-json".into(),
        result_file.to_string_lossy().into_owned(),
    ];
    argv.push("--out".into());
    argv.push(out.to_string_lossy().into_owned());
    if let Some(kind) = scenario.reference {
        argv.push("--differential".into());
        argv.push(kind.name().into());
    }
    if let Some(mode) = &opts.discovery {
        argv.push("--discovery".into());
        argv.push(discovery_arg(mode));
    }
    // Only the child sees the devices' datagrams and stream bytes: it writes the capture.
    if let Some(dir) = &opts.pcap {
        argv.push("--pcap".into());
        argv.push(
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .to_string_lossy()
                .into_owned(),
        );
        result.pcap_written = true;
    }
    // A differential scenario runs its clients twice, after the reference (and its avahi) start.
    let client_time: f64 = scenario.clients.iter().map(|c| c.timeout).sum();
    let budget = match scenario.reference {
        Some(_) => 2.0 * client_time + 90.0,
        None => client_time + 60.0,
    };
    let mut env = BTreeMap::new();
    if let Some(p) = &opts.peers {
        env.insert("AIRTWIN_PEERS".into(), p.to_string_lossy().into_owned());
    }
    // At the budget or on Ctrl-C the child gets TERM first: ci/netns then deletes its namespace
    // and the child `airtwin run` stops its clients and writes its result and transcripts.
    let outcome = crate::clients::external::run_with_grace(
        &argv,
        &env,
        Path::new("."),
        Duration::from_secs_f64(budget),
        cancel,
        TERM_GRACE,
    )
    .await;
    result.duration = started.elapsed();
    result.interrupted = outcome.interrupted;
    let folded = read_results(&result_file).and_then(|child| fold(&mut result, child));
    // The HTML report's ladder and the parent's summary read the child's events.
    match read_events(&out.join(&scenario.name).join("events.jsonl")) {
        Ok(events) => result.events = events,
        Err(e) => tracing::warn!(scenario = %scenario.name, "the child's events: {e}"),
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&out);
    }
    match folded {
        Ok(()) if result.passed && outcome.exit != Some(0) => {
            result.passed = false;
            result.error = Some(format!(
                "ci/netns airtwin run reported a pass but ended {:?}: {}",
                outcome.exit,
                outcome.output().trim()
            ));
        }
        Ok(()) if outcome.timed_out => {
            result.passed = false;
            let child = result
                .error
                .take()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            result.error = Some(format!(
                "ci/netns airtwin run timed out after {budget:.0} s{child}"
            ));
        }
        Ok(()) => {}
        Err(e) => {
            result.passed = false;
            let how = if outcome.timed_out {
                format!("timed out after {budget:.0} s")
            } else {
                format!("ended {:?} (signal {:?})", outcome.exit, outcome.signal)
            };
            result.error = Some(format!(
                "ci/netns airtwin run {how} without a result ({e}): {}",
                outcome.output().trim()
            ));
        }
    }
    result.clients.push(("ci/netns".into(), outcome));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::differential::ReferenceKind;

    fn scenario(reference: Option<ReferenceKind>, netns: bool) -> Scenario {
        let text = "name: n\ndescription: d\nseed: 1\ndevices:\n  - kind: airport-express\n    name: kitchen\n";
        let mut s: Scenario = serde_yaml::from_str(text).unwrap();
        s.reference = reference;
        s.netns = netns;
        s
    }

    #[test]
    fn references_that_multicast_need_the_namespace() {
        assert!(!needed(&scenario(None, false)));
        assert!(needed(&scenario(None, true)));
        assert!(!needed(&scenario(Some(ReferenceKind::Openairplay1), false)));
        assert!(!needed(&scenario(Some(ReferenceKind::Shairplay), false)));
        for k in [
            ReferenceKind::ShairportSync,
            ReferenceKind::Uxplay,
            ReferenceKind::Kodi,
        ] {
            let why = needed_because(&scenario(Some(k), false)).expect("needs it");
            assert!(why.contains(k.name()), "{why}");
        }
    }

    #[test]
    fn the_discovery_mode_is_passed_on_as_the_child_parses_it() {
        use crate::discovery::DiscoveryMode;
        for mode in [
            DiscoveryMode::None,
            DiscoveryMode::Unicast,
            DiscoveryMode::Loopback,
            DiscoveryMode::Interfaces(vec!["airtwin0".into(), "lo".into()]),
        ] {
            assert_eq!(DiscoveryMode::parse(&discovery_arg(&mode)).unwrap(), mode);
        }
    }

    #[test]
    fn a_child_result_is_folded_and_a_missing_one_is_an_error() {
        let loaded = Loaded {
            file: PathBuf::from("x.yaml"),
            scenario: scenario(Some(ReferenceKind::ShairportSync), false),
        };
        let mut r = ScenarioResult::new(&loaded, 1, None);
        let child = r#"[{"name":"n","passed":false,"failures":[{"what":"difference vs shairport-sync: SETUP status","expected":"the fake's 200","actual":"the reference's 400"}],
            "error":null,"clients":[["sender",{"exit":0,"signal":null,"timed_out":false,"interrupted":false,"stdout":"ok","stderr":"","duration":1.5,"error":null}]],
            "differences":[{"exchange":"SETUP","what":"status","fake":"200","reference":"400","accepted":null},
                           {"exchange":"*","what":"header date","fake":"x","reference":"absent","accepted":"why"}]}]"#;
        let dir = std::env::temp_dir().join(format!("airtwin-netns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("r.json");
        std::fs::write(&f, child).unwrap();
        fold(&mut r, read_results(&f).unwrap()).unwrap();
        assert!(!r.passed);
        assert_eq!(r.failures.len(), 1);
        assert_eq!(r.clients[0].1.duration, Duration::from_millis(1500));
        assert_eq!(r.differences[1].accepted.as_deref(), Some("why"));
        let mut other = ScenarioResult::new(&loaded, 1, None);
        other.name = "m".into();
        assert!(fold(&mut other, read_results(&f).unwrap()).is_err());
        assert!(read_results(&dir.join("absent.json")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
