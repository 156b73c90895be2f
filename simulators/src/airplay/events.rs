//! The AirPlay 2 event channel (docs/protocols/airplay.md, "The event channel"): a TCP connection
//! the controller opens to the `eventPort` of the session SETUP's answer, encrypted like the
//! control connection but with keys under `Events-Salt` from the same pairing secret. On it the
//! receiver is the one that sends requests: a real Apple TV sends `POST /command` with
//! `{type: updateInfo, value: <its /info>}`, and the controller answers each with 200.
//!
//! Sans-IO: a [`StreamConn`] the shell drives on the port the SETUP opened.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use plist::{Dictionary, Value};
use serde::Serialize;

use crate::hap::channel::Channel;
use crate::stream_core::{NamedTransmit, StreamConn, StreamEvent};
use crate::wire::{self, Limits, Protocol, Request};

/// What every event channel of a device saw, for `state` expectations (`airplay2.events`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventsRecord {
    /// Event channel connections accepted.
    pub connections: u64,
    /// Requests the device sent on them.
    pub requests: u64,
    /// Statuses of the controller's answers, in order (the latest
    /// [`crate::protocol_core::HISTORY_KEPT`]).
    pub replies: Vec<u16>,
    /// Connections that ended on bytes that were not a valid encrypted block.
    pub broken: u64,
}

/// The device's side of one event channel connection.
pub struct EventChannel {
    channel: Channel,
    transmits: VecDeque<NamedTransmit>,
    events: VecDeque<StreamEvent>,
    plain: Vec<u8>,
    closed: bool,
    record: Arc<Mutex<EventsRecord>>,
}

impl EventChannel {
    /// A channel keyed from the pairing secret `shared` that starts by sending `POST /command`
    /// `updateInfo` with `info` (the device's `/info` dictionary) as its value.
    pub fn new(shared: &[u8], info: Dictionary, record: Arc<Mutex<EventsRecord>>) -> Self {
        let mut this = EventChannel {
            channel: Channel::events_accessory(shared),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            plain: Vec::new(),
            closed: false,
            record,
        };
        this.lock().connections += 1;
        this.send_update_info(info);
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventsRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_update_info(&mut self, info: Dictionary) {
        let mut body = Dictionary::new();
        body.insert("type".into(), "updateInfo".into());
        body.insert("value".into(), Value::Dictionary(info));
        let mut bytes = Vec::new();
        if let Err(e) = Value::Dictionary(body).to_writer_binary(&mut bytes) {
            self.events
                .push_back(StreamEvent::Warning(format!("updateInfo plist: {e}")));
            return;
        }
        let mut req = Request::new("POST", "/command", Protocol::Rtsp10);
        req.headers.set("CSeq", "1");
        req.headers
            .set("Content-Type", "application/x-apple-binary-plist");
        req.body = bytes;
        let plain = req.encode();
        self.events.push_back(StreamEvent::Sent {
            name: "POST /command".into(),
            len: req.body.len(),
            fields: "type=updateInfo".into(),
        });
        self.lock().requests += 1;
        self.transmits.push_back(NamedTransmit {
            name: "POST /command".into(),
            bytes: self.channel.seal(&plain),
        });
    }
}

impl StreamConn for EventChannel {
    fn handle_input(&mut self, bytes: &[u8], _now: SystemTime) {
        if self.closed {
            return;
        }
        match self.channel.open(bytes) {
            Ok(plain) => self.plain.extend(plain),
            Err(e) => {
                // An accessory closes a connection whose block does not open (HAP R2 §6.5.2).
                self.lock().broken += 1;
                self.events.push_back(StreamEvent::Warning(format!(
                    "event channel: {e}; connection closed"
                )));
                self.events
                    .push_back(StreamEvent::Close(format!("bad encrypted block: {e}")));
                self.closed = true;
                return;
            }
        }
        loop {
            match wire::framing::parse_response(&self.plain, &Limits::default()) {
                Ok(Some((resp, used))) => {
                    self.plain.drain(..used);
                    crate::protocol_core::remember(&mut self.lock().replies, resp.status);
                    self.events.push_back(StreamEvent::Received {
                        name: format!("{} {}", resp.protocol, resp.status),
                        len: resp.body.len(),
                        fields: resp
                            .headers
                            .get("CSeq")
                            .map(|c| format!("CSeq={c}"))
                            .unwrap_or_default(),
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    self.events.push_back(StreamEvent::Warning(format!(
                        "event channel: not a response: {e}"
                    )));
                    self.plain.clear();
                    break;
                }
            }
        }
    }

    fn handle_timeout(&mut self, _now: SystemTime) {}

    fn poll_transmit(&mut self) -> Option<NamedTransmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        None
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Dictionary {
        let mut d = Dictionary::new();
        d.insert("model".into(), "AppleTV11,1".into());
        d
    }

    #[test]
    fn sends_update_info_under_the_events_keys_and_reads_the_answer() {
        let shared = [5u8; 32];
        let record = Arc::new(Mutex::new(EventsRecord::default()));
        let mut dev = EventChannel::new(&shared, info(), record.clone());
        let mut ctl = Channel::events_controller(&shared);
        let sent = dev.poll_transmit().expect("updateInfo goes out first");
        assert_eq!(sent.name, "POST /command");
        let plain = ctl.open(&sent.bytes).unwrap();
        let (req, _) = wire::framing::parse_request(&plain, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.path()), ("POST", "/command"));
        let body = Value::from_reader(std::io::Cursor::new(&req.body)).unwrap();
        let d = body.as_dictionary().unwrap();
        assert_eq!(d["type"].as_string(), Some("updateInfo"));
        assert_eq!(
            d["value"].as_dictionary().unwrap()["model"].as_string(),
            Some("AppleTV11,1")
        );
        // The controller's sealed answer, split in two reads.
        let answer = ctl.seal(b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\nCSeq: 1\r\n\r\n");
        dev.handle_input(&answer[..7], SystemTime::UNIX_EPOCH);
        dev.handle_input(&answer[7..], SystemTime::UNIX_EPOCH);
        let st = record.lock().unwrap().clone();
        assert_eq!((st.connections, st.requests, st.replies), (1, 1, vec![200]));
        assert!(!dev.is_closed());
    }

    #[test]
    fn control_keys_or_garbage_close_the_channel() {
        let shared = [5u8; 32];
        let record = Arc::new(Mutex::new(EventsRecord::default()));
        let mut dev = EventChannel::new(&shared, info(), record.clone());
        // Sealed with the control channel's keys: the events keys do not open it.
        let mut wrong = Channel::controller(&shared);
        dev.handle_input(
            &wrong.seal(b"RTSP/1.0 200 OK\r\n\r\n"),
            SystemTime::UNIX_EPOCH,
        );
        assert!(dev.is_closed());
        assert_eq!(record.lock().unwrap().broken, 1);
        let mut events = Vec::new();
        while let Some(e) = dev.poll_event() {
            events.push(e);
        }
        assert!(events.iter().any(|e| matches!(e, StreamEvent::Close(_))));
    }
}
