//! Clients that drive devices: airtwin's own reference clients and external programs.

pub mod airplay;
pub mod dacp;
pub mod external;
pub mod pair;
pub mod raop;
pub mod rtsp;

use std::time::Duration;

use serde::Serialize;

/// How a client run ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientOutcome {
    /// Exit status; `None` when killed (timeout, interrupt, signal) or never started.
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    pub stdout: String,
    pub stderr: String,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Why the client could not run at all.
    pub error: Option<String>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
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
