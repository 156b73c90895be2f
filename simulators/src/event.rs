//! Everything a device sees and does becomes an [`Event`]: the cores and the connection driver
//! describe them as [`EventKind`]s, and the shell's recorder stamps and keeps them.
//!
//! Devices never call the harness: they record events, and the harness turns them into transcripts
//! and checks expectations against them after (or while) the run goes on.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One thing that happened at a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Time since the recorder started.
    #[serde(
        serialize_with = "ser_duration_ms",
        deserialize_with = "de_duration_ms"
    )]
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

fn de_duration_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ms = f64::deserialize(d)?;
    Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
}

/// What happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_from_its_json_line_without_its_body() {
        let event = Event {
            at: Duration::from_micros(12_345),
            device: "kitchen".into(),
            connection: Some(2),
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 50_000))),
            kind: EventKind::Request {
                index: 1,
                method: "SETUP".into(),
                uri: "rtsp://127.0.0.1/1".into(),
                protocol: "RTSP/1.0".into(),
                headers: vec![("CSeq".into(), "3".into())],
                body: b"not in the line".to_vec(),
                content_type: None,
            },
        };
        let line = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&line).unwrap();
        // Milliseconds as a float: exact to well under a microsecond.
        assert!(back.at.abs_diff(event.at) < Duration::from_nanos(10));
        assert_eq!(
            (back.device.as_str(), back.connection),
            ("kitchen", Some(2))
        );
        assert_eq!(back.peer, event.peer);
        let EventKind::Request {
            method,
            headers,
            body,
            ..
        } = back.kind
        else {
            panic!("{:?}", back.kind)
        };
        assert_eq!((method.as_str(), headers.len()), ("SETUP", 1));
        assert!(body.is_empty());
    }
}
