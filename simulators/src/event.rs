//! Everything a device sees and does becomes an [`Event`]: the cores and the connection driver
//! describe them as [`EventKind`]s, and the shell's recorder stamps and keeps them.
//!
//! Devices never call the harness: they record events, and the harness turns them into transcripts
//! and checks expectations against them after (or while) the run goes on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// One thing that happened at a device.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Time since the recorder started.
    #[serde(serialize_with = "ser_duration_ms")]
    pub at: Duration,
    pub device: String,
    /// Index of the TCP connection at this device (0 for the first), if the event belongs to one.
    pub connection: Option<u64>,
    pub peer: Option<SocketAddr>,
    pub kind: EventKind,
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A device started listening.
    Listening {
        service: String,
        port: u16,
    },
    Connected,
    Closed {
        reason: String,
    },
    /// A request as received (before any fault).
    Request {
        index: u64,
        method: String,
        uri: String,
        protocol: String,
        headers: Vec<(String, String)>,
        #[serde(skip)]
        body: Vec<u8>,
        content_type: Option<String>,
    },
    /// A response as sent (after faults edited it).
    Response {
        index: u64,
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        #[serde(skip)]
        body: Vec<u8>,
        content_type: Option<String>,
    },
    /// A request the device sent on a reversed connection (an AirPlay `POST /event`), as sent.
    Pushed {
        /// Index among the requests the device sent on this connection (0 the first).
        index: u64,
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
        #[serde(skip)]
        body: Vec<u8>,
        content_type: Option<String>,
    },
    /// The peer's response to the pushed request `index`.
    PushAnswered {
        index: u64,
        status: u16,
        reason: String,
    },
    /// A fault of the scenario acted on this exchange.
    Fault {
        /// Index of the request it acted on, if any.
        request: Option<u64>,
        /// Position of the fault in the scenario's list.
        fault: usize,
        action: String,
    },
    /// Input the device accepted but that a real device would not expect (a protocol warning).
    Warning {
        message: String,
    },
    /// A non-exchange state change worth showing (session set up, audio stream opened …).
    Note {
        message: String,
    },
}
