//! The recorder every device of a run writes its [`Event`]s to, with the clock that stamps them.
//!
//! Events carry absolute indexes: the first event recorded is event 0, and event N stays event N
//! whatever the recorder forgets. A bounded recorder ([`Recorder::bounded`]) keeps the last
//! `capacity` events in memory, so a device that runs for days stays flat; a sink
//! ([`Recorder::set_sink`]) sees every event as it is recorded, so what the ring forgets can still
//! be written to disk.
//!
//! A recorder may also keep a [`PacketLog`] of the bytes that crossed the wire where the events
//! hold no bytes (UDP datagrams, byte streams), for captures; it is off unless asked for
//! ([`Recorder::log_packets`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::event::{Event, EventKind};
use crate::packet_log::{Logged, PacketLog, WirePacket};

/// Called with every event, in order, as it is recorded.
pub type Sink = Box<dyn FnMut(&Event) + Send>;

/// Collects events from every device of a run, in arrival order.
pub struct Recorder {
    start: Instant,
    log: Mutex<Log>,
    /// Most events kept in memory; `None`: all of them.
    capacity: Option<usize>,
    changed: Notify,
    /// The packets of [`Recorder::log_packets`], when asked for.
    packets: Mutex<Option<PacketLog>>,
    /// Whether `packets` is on: read for every datagram, so without taking the lock.
    logging_packets: AtomicBool,
}

struct Log {
    /// The kept events: `events[0]` is event `first`.
    events: VecDeque<Event>,
    first: u64,
    sink: Option<Sink>,
}

/// Events from some index on, as [`Recorder::since`] finds them.
#[derive(Debug, Clone)]
pub struct Since {
    /// Absolute index of `events[0]` (the index asked for, or the oldest kept if that is later).
    pub first: u64,
    /// Events between the index asked for and `first` that are no longer in memory.
    pub dropped: u64,
    pub events: Vec<Event>,
}

impl Since {
    /// The index to ask for next.
    pub fn next(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.lock();
        f.debug_struct("Recorder")
            .field("capacity", &self.capacity)
            .field("first", &log.first)
            .field("kept", &log.events.len())
            .finish()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder that keeps every event.
    pub fn new() -> Self {
        Self::with_capacity(None)
    }

    /// A recorder that keeps the last `capacity` events in memory (at least one).
    pub fn bounded(capacity: usize) -> Self {
        Self::with_capacity(Some(capacity.max(1)))
    }

    fn with_capacity(capacity: Option<usize>) -> Self {
        Recorder {
            start: Instant::now(),
            log: Mutex::new(Log {
                events: VecDeque::new(),
                first: 0,
                sink: None,
            }),
            capacity,
            changed: Notify::new(),
            packets: Mutex::new(None),
            logging_packets: AtomicBool::new(false),
        }
    }

    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Most events kept in memory (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// From now on, `sink` sees every event as it is recorded.
    pub fn set_sink(&self, sink: Sink) {
        self.lock().sink = Some(sink);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
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
        {
            let mut log = self.lock();
            if let Some(sink) = log.sink.as_mut() {
                sink(&event);
            }
            if let Some(cap) = self.capacity {
                while log.events.len() >= cap {
                    log.events.pop_front();
                    log.first += 1;
                }
            }
            log.events.push_back(event);
        }
        self.changed.notify_waiters();
    }

    /// A copy of every event still in memory (every event, for an unbounded recorder).
    pub fn snapshot(&self) -> Vec<Event> {
        self.lock().events.iter().cloned().collect()
    }

    /// Events from absolute index `since` on, with how many of them are no longer in memory.
    pub fn since(&self, since: u64) -> Since {
        let log = self.lock();
        let first = since.max(log.first);
        let skip = usize::try_from(first - log.first).unwrap_or(usize::MAX);
        Since {
            first,
            dropped: first - since,
            events: log.events.iter().skip(skip).cloned().collect(),
        }
    }

    /// Events recorded so far, kept or not (the index the next event gets).
    pub fn len(&self) -> usize {
        let log = self.lock();
        log.first as usize + log.events.len()
    }

    /// Absolute index of the oldest event kept in memory.
    pub fn first_kept(&self) -> u64 {
        self.lock().first
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// From now on, keeps the packets the shell logs ([`Recorder::log_packet`]), at most
    /// `budget` bytes of them (the oldest go first).
    pub fn log_packets(&self, budget: usize) {
        *self.lock_packets() = Some(PacketLog::new(budget));
        self.logging_packets.store(true, Ordering::Release);
    }

    /// Whether packets are logged: the shell makes a [`WirePacket`] only then.
    pub fn logs_packets(&self) -> bool {
        self.logging_packets.load(Ordering::Acquire)
    }

    /// Logs one packet, stamped with the recorder's clock (nothing unless
    /// [`Recorder::log_packets`] was called). `at` in `packet` is replaced.
    pub fn log_packet(&self, mut packet: WirePacket) {
        let mut log = self.lock_packets();
        if let Some(log) = log.as_mut() {
            packet.at = self.start.elapsed();
            log.push(packet);
        }
    }

    /// The packets logged and kept, oldest first, and how many were dropped for the budget;
    /// the log is left empty (still logging), so the packets are not held twice.
    pub fn take_packets(&self) -> Logged {
        self.lock_packets()
            .as_mut()
            .map(PacketLog::take)
            .unwrap_or_default()
    }

    fn lock_packets(&self) -> std::sync::MutexGuard<'_, Option<PacketLog>> {
        self.packets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a new event is recorded.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(r: &Recorder, i: usize) {
        r.record(
            "d",
            None,
            None,
            EventKind::Note {
                message: i.to_string(),
            },
        );
    }

    fn message(e: &Event) -> String {
        match &e.kind {
            EventKind::Note { message } => message.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_bounded_recorder_keeps_the_last_events_with_their_indexes() {
        let r = Recorder::bounded(3);
        for i in 0..10 {
            note(&r, i);
        }
        assert_eq!(r.len(), 10);
        assert_eq!(r.first_kept(), 7);
        let kept: Vec<String> = r.snapshot().iter().map(message).collect();
        assert_eq!(kept, ["7", "8", "9"]);

        let old = r.since(2);
        assert_eq!((old.first, old.dropped, old.next()), (7, 5, 10));
        assert_eq!(old.events.len(), 3);

        let recent = r.since(8);
        assert_eq!((recent.first, recent.dropped), (8, 0));
        assert_eq!(message(&recent.events[0]), "8");

        let future = r.since(12);
        assert_eq!(
            (future.first, future.dropped, future.events.len()),
            (12, 0, 0)
        );
    }

    #[test]
    fn an_unbounded_recorder_drops_nothing_and_the_sink_sees_everything() {
        let r = Recorder::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.set_sink(Box::new(move |e| s.lock().unwrap().push(message(e))));
        for i in 0..5 {
            note(&r, i);
        }
        let all = r.since(0);
        assert_eq!((all.first, all.dropped, all.events.len()), (0, 0, 5));
        assert_eq!(seen.lock().unwrap().len(), 5);

        let b = Recorder::bounded(2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        b.set_sink(Box::new(move |e| s.lock().unwrap().push(message(e))));
        for i in 0..5 {
            note(&b, i);
        }
        assert_eq!(*seen.lock().unwrap(), ["0", "1", "2", "3", "4"]);
        assert_eq!(b.snapshot().len(), 2);
    }

    #[test]
    fn packets_are_logged_only_once_asked_for_and_within_the_budget() {
        let packet = |n: usize| WirePacket {
            at: Duration::from_secs(99),
            device: "d".into(),
            transport: crate::packet_log::Transport::Udp,
            from: SocketAddr::from(([127, 0, 0, 1], 1)),
            to: SocketAddr::from(([127, 0, 0, 1], 2)),
            wire: Some(vec![0; n]),
            plain: None,
            note: None,
        };
        let r = Recorder::new();
        assert!(!r.logs_packets());
        r.log_packet(packet(10));
        assert_eq!(r.take_packets(), Logged::default());
        r.log_packets(2 * (std::mem::size_of::<WirePacket>() + 100));
        assert!(r.logs_packets());
        for _ in 0..3 {
            r.log_packet(packet(100));
        }
        let logged = r.take_packets();
        assert_eq!((logged.packets.len(), logged.dropped), (2, 1));
        assert!(
            logged.packets[0].at < Duration::from_secs(99),
            "stamped with the recorder's clock"
        );
    }
}
