//! The recorder every device of a run writes its [`Event`]s to, with the clock that stamps them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::event::{Event, EventKind};

/// Collects events from every device of a run, in arrival order.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }

    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn record(
        &self,
        device: &str,
        connection: Option<u64>,
        peer: Option<SocketAddr>,
        kind: EventKind,
    ) {
        let event = Event {
            at: self.start.elapsed(),
            device: device.to_string(),
            connection,
            peer,
            kind,
        };
        self.events.lock().expect("recorder lock").push(event);
        self.changed.notify_waiters();
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// Events from position `since` on.
    pub fn since(&self, since: usize) -> Vec<Event> {
        let events = self.events.lock().expect("recorder lock");
        events.get(since..).map(|s| s.to_vec()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.events.lock().expect("recorder lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until a new event is recorded.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}
