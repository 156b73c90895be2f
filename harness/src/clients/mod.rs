//! Clients that drive devices: airtwin's own reference clients and external programs.

pub mod airplay;
pub mod companion;
pub mod dacp;
pub mod external;
pub mod hap;
pub mod mrp;
pub mod pair;
pub mod raop;
pub mod rtsp;
pub mod spotify;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a client run ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientOutcome {
    /// Exit status; `None` when killed (timeout, interrupt, signal) or never started.
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    pub stdout: String,
    pub stderr: String,
    #[serde(serialize_with = "secs", deserialize_with = "secs_back")]
    pub duration: Duration,
    /// Why the client could not run at all.
    pub error: Option<String>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads [`secs`] back (a child `airtwin run`'s result, e.g. from inside `ci/netns`).
fn secs_back<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = f64::deserialize(d)?;
    Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
}

/// One of airtwin's own clients, run inside this process; its log becomes the outcome's stdout.
pub trait InProcess {
    /// The client's steps, one line per step written to `log`.
    fn run(&self, log: &mut String)
        -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// Runs an in-process client until it ends, `timeout` passes or `cancel` flips.
pub async fn run_in_process<C: InProcess>(
    client: C,
    timeout: Duration,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> ClientOutcome {
    let started = std::time::Instant::now();
    let mut log = String::new();
    let result = bounded(client.run(&mut log), timeout, cancel).await;
    outcome_of(result, log, started, timeout)
}

/// Runs an in-process client's future until it ends, `timeout` passes (`Some(Err)`), or `cancel`
/// flips (`None`): the input of [`outcome_of`].
pub async fn bounded<F: std::future::Future<Output = anyhow::Result<()>>>(
    fut: F,
    timeout: Duration,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Option<Result<anyhow::Result<()>, tokio::time::error::Elapsed>> {
    tokio::select! {
        r = tokio::time::timeout(timeout, fut) => Some(r),
        _ = cancel.wait_for(|c| *c) => None,
    }
}

/// How an in-process client's run ended: `None` when interrupted, `Some(Err)` at its timeout,
/// `Some(Ok(result))` when it finished. Its log becomes the outcome's stdout, with a `FAIL …` line
/// for an error or a timeout; exit 0 on success, 1 on failure.
pub fn outcome_of(
    result: Option<Result<anyhow::Result<()>, tokio::time::error::Elapsed>>,
    mut log: String,
    started: std::time::Instant,
    timeout: Duration,
) -> ClientOutcome {
    use std::fmt::Write as _;
    let mut outcome = ClientOutcome {
        duration: started.elapsed(),
        ..Default::default()
    };
    match result {
        None => outcome.interrupted = true,
        Some(Err(_)) => {
            outcome.timed_out = true;
            let _ = writeln!(
                log,
                "FAIL timeout: no end after {:.1}s",
                timeout.as_secs_f64()
            );
        }
        Some(Ok(Ok(()))) => outcome.exit = Some(0),
        Some(Ok(Err(e))) => {
            let _ = writeln!(log, "FAIL {e:#}");
            outcome.exit = Some(1);
        }
    }
    outcome.stdout = log;
    outcome
}

impl ClientOutcome {
    pub fn failed_to_start(error: String, duration: Duration) -> Self {
        ClientOutcome {
            stderr: error.clone(),
            error: Some(error),
            duration,
            ..Default::default()
        }
    }

    /// stdout then stderr, as output patterns see them.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}
