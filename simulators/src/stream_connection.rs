//! One connection of a byte-stream core ([`StreamCore`]) as a sans-IO state machine, the
//! counterpart of [`crate::connection::Connection`] for protocols with their own framing. The
//! shell feeds it bytes and the time and takes out bytes to write, the next deadline and events.
//! In between, every named transmit of the core passes the fault seam
//! ([`FaultPlan::on_request`], the transmit's name as the `method`, its number on the connection
//! as the `request`): `delay` holds it (and what follows it), `drop` closes without it, `reset`
//! closes with RST, `stall` keeps the connection open and silent, `truncate` and `corrupt` edit
//! its bytes, `corrupt_encrypted_block` flips a bit of the first sealed block. Every frame the core decodes or makes becomes a request- or response-like event.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::connection::{End, PROTOCOL_WARNING_TARGET};
use crate::event::EventKind;
use crate::fault::{apply_edits, FaultPlan, Preempt, RequestFacts, Verdict};
use crate::hap::channel::BLOCK;
use crate::hap::keys::TAG_LEN;
use crate::protocol_core::ConnInfo;
use crate::stream_core::{NamedTransmit, Plaintext, StreamConn, StreamCore, StreamEvent};
use crate::wire::{Protocol, Response};
use std::sync::Arc;

enum Phase {
    Open,
    /// A `stall` fault: nothing more is written; reads are discarded until the peer goes away.
    Stalled,
    Ended(End),
}

/// One TCP connection of a device running the stream core `C`, without the socket.
pub struct StreamConnection<C: StreamCore> {
    info: ConnInfo,
    plan: Arc<FaultPlan>,
    protocol: &'static str,
    idle_timeout: Duration,
    idle_since: SystemTime,
    conn: C::Conn,
    phase: Phase,
    /// Transmits a `delay` fault holds, with when each may go.
    held: VecDeque<(SystemTime, Vec<u8>)>,
    transmit: Vec<u8>,
    events: VecDeque<EventKind>,
    received: u64,
    sent: u64,
    transmits: u64,
    /// Why the core closes, once it has said so.
    closing: Option<String>,
}

impl<C: StreamCore> StreamConnection<C> {
    /// A connection just accepted at `now`; `protocol` names the framing in the transcript.
    pub fn new(
        core: &C,
        info: ConnInfo,
        plan: Arc<FaultPlan>,
        protocol: &'static str,
        idle_timeout: Duration,
        now: SystemTime,
    ) -> Self {
        let conn = core.open(&info);
        let mut this = StreamConnection {
            info,
            plan,
            protocol,
            idle_timeout,
            idle_since: now,
            conn,
            phase: Phase::Open,
            held: VecDeque::new(),
            transmit: Vec::new(),
            events: VecDeque::from([EventKind::Connected]),
            received: 0,
            sent: 0,
            transmits: 0,
            closing: None,
        };
        this.pump(now);
        this
    }

    /// The facts of this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// From now on, the core keeps the plaintext of each message ([`StreamConn::log_plaintext`]).
    pub fn log_plaintext(&mut self) {
        self.conn.log_plaintext();
    }

    /// The next message's plaintext the core kept, in order.
    pub fn poll_plaintext(&mut self) -> Option<Plaintext> {
        self.conn.poll_plaintext()
    }

    /// Bytes read from the peer at `now`.
    pub fn receive(&mut self, bytes: &[u8], now: SystemTime) {
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        self.idle_since = now;
        self.conn.handle_input(bytes, now);
        self.pump(now);
    }

    /// Bytes this connection holds for the peer: transmits held by a fault and not yet written.
    /// (The core's own input buffer is capped by its framing: docs/protocols/spotify-ap.md.)
    pub fn buffered(&self) -> usize {
        self.transmit.len() + self.held.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// The device's buffers are full ([`crate::buffer_budget`]): a byte stream has no status to
    /// answer with, so the connection closes.
    pub fn overloaded(&mut self) {
        self.held.clear();
        self.transmit = Vec::new();
        self.abort("device buffers full");
    }

    /// The peer closed its side.
    pub fn receive_eof(&mut self) {
        let reason = match self.phase {
            Phase::Ended(_) => return,
            Phase::Stalled => "stalled by fault",
            Phase::Open => "peer closed",
        };
        self.phase = Phase::Ended(End::Closed(reason.into()));
    }

    /// Ends the connection for a reason outside the protocol (an I/O error, the device stopping).
    pub fn abort(&mut self, reason: impl Into<String>) {
        let reason = match self.phase {
            Phase::Ended(_) => return,
            Phase::Stalled => "stalled by fault".to_string(),
            Phase::Open => reason.into(),
        };
        self.phase = Phase::Ended(End::Closed(reason));
    }

    /// The time is `now`: a deadline from [`StreamConnection::poll_timeout`] may be due.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        if self.held.is_empty()
            && self.conn.idles_out()
            && now >= self.idle_since + self.idle_timeout
        {
            info!(
                timeout_ms = self.idle_timeout.as_millis() as u64,
                "idle timeout, closing"
            );
            self.phase = Phase::Ended(End::Closed("idle timeout".into()));
            return;
        }
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Bytes to write to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    /// The next thing to record, in order.
    pub fn poll_event(&mut self) -> Option<EventKind> {
        self.events.pop_front()
    }

    /// When [`StreamConnection::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        if !matches!(self.phase, Phase::Open) {
            return None;
        }
        [
            self.conn
                .idles_out()
                .then_some(self.idle_since + self.idle_timeout),
            self.conn.poll_timeout(),
            self.held.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the shell should read: always until the connection ends (a stalled one reads and
    /// discards).
    pub fn wants_read(&self) -> bool {
        !matches!(self.phase, Phase::Ended(_))
    }

    /// How the connection ended, once it has.
    pub fn end_reason(&self) -> Option<&End> {
        match &self.phase {
            Phase::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// The connection is over; returns the `closed` event to record.
    pub fn close(self) -> EventKind {
        let reason = match &self.phase {
            Phase::Ended(end) => end.reason().to_string(),
            _ => "closed".to_string(),
        };
        EventKind::Closed { reason }
    }

    /// Moves the core's events and transmits through the seam, releases held transmits that are
    /// due, and ends the connection when the core has closed and nothing is left to write.
    fn pump(&mut self, now: SystemTime) {
        while let Some(event) = self.conn.poll_event() {
            self.record(event);
        }
        while matches!(self.phase, Phase::Open) {
            let early = self.conn.next_transmit().map(|name| self.verdict(&name));
            if let Some(v) = &early {
                self.conn.prepare(&v.params);
            }
            let Some(t) = self.conn.poll_transmit() else {
                break;
            };
            let verdict = match early {
                Some(v) => v,
                None => self.verdict(&t.name),
            };
            self.seam(t, verdict, now);
        }
        while let Some(event) = self.conn.poll_event() {
            self.record(event);
        }
        while self.held.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, bytes)) = self.held.pop_front() {
                self.transmit.extend_from_slice(&bytes);
            }
        }
        if matches!(self.phase, Phase::Open) && self.conn.is_closed() && self.held.is_empty() {
            let reason = self
                .closing
                .take()
                .unwrap_or_else(|| "closed by device".into());
            self.phase = Phase::Ended(End::Closed(reason));
        }
    }

    /// The fault seam's verdict on the next transmit, named `name`.
    fn verdict(&mut self, name: &str) -> Verdict {
        let index = self.transmits;
        self.transmits += 1;
        self.plan.on_request(&RequestFacts {
            device: &self.info.device,
            connection: self.info.index,
            request: index,
            method: name,
            path: "",
        })
    }

    /// One named transmit through the fault seam.
    fn seam(&mut self, t: NamedTransmit, mut verdict: Verdict, now: SystemTime) {
        let index = self.transmits - 1;
        for a in &verdict.applied {
            info!(fault = a.fault, action = %a.action, frame = %t.name, "fault applied");
            self.events.push_back(EventKind::Fault {
                request: Some(index),
                fault: a.fault,
                action: a.action.clone(),
            });
        }
        match verdict.preempt.take() {
            Some(Preempt::Drop) => {
                self.phase = Phase::Ended(End::Closed("dropped by fault".into()));
                return;
            }
            Some(Preempt::Reset) => {
                self.phase = Phase::Ended(End::Reset);
                return;
            }
            Some(Preempt::Stall) => {
                self.phase = Phase::Stalled;
                return;
            }
            Some(Preempt::Respond(_)) => {
                // Once per process: a fault plan that answers a share of every device's requests
                // (`bench soak`, a scenario's catch-all fault) would repeat it for every frame.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    warn!(
                        frame = %t.name,
                        "a `respond` fault has no meaning on a byte stream; frames are sent as they are (said once)"
                    )
                });
            }
            None => {}
        }
        let mut bytes = t.bytes;
        if !verdict.edits.is_empty() {
            let mut carrier = Response::new(Protocol::Http11, 200);
            carrier.body = bytes;
            apply_edits(&mut carrier, &verdict.edits);
            bytes = carrier.body;
        }
        if let Some(seed) = verdict.corrupt_block {
            // `corrupt_encrypted_block`: one flipped bit past the 2-byte length of the first
            // sealed block (its ciphertext or tag), so the peer's tag check fails there
            // (docs/protocols/hap.md, "The encrypted channel"; docs/protocols/mrp.md, "Faults").
            let first = bytes.len().min(2 + BLOCK + TAG_LEN);
            if first > 2 {
                let at = 2 + (seed % (first - 2) as u64) as usize;
                bytes[at] ^= 0x01 << ((seed >> 32) % 8);
                self.events.push_back(EventKind::Note {
                    message: format!("corrupt_encrypted_block: flipped byte {at} of {}", t.name),
                });
            }
        }
        self.idle_since = now;
        if verdict.delay.is_zero() && self.held.is_empty() {
            self.transmit.extend_from_slice(&bytes);
        } else {
            let after = self.held.back().map_or(now, |(t, _)| *t);
            self.held.push_back((after.max(now + verdict.delay), bytes));
        }
    }

    fn record(&mut self, event: StreamEvent) {
        let kind = match event {
            StreamEvent::Received { name, len, fields } => {
                let index = self.received;
                self.received += 1;
                EventKind::Request {
                    index,
                    method: name,
                    uri: fields,
                    protocol: self.protocol.to_string(),
                    headers: vec![("Length".into(), len.to_string())],
                    body: Vec::new(),
                    content_type: None,
                }
            }
            StreamEvent::Sent { name, len, fields } => {
                let index = self.sent;
                self.sent += 1;
                EventKind::Response {
                    index,
                    status: 200,
                    reason: format!("{name} {fields}"),
                    headers: vec![("Length".into(), len.to_string())],
                    body: Vec::new(),
                    content_type: None,
                }
            }
            StreamEvent::Warning(message) => {
                warn!(target: PROTOCOL_WARNING_TARGET, "{message}");
                EventKind::Warning { message }
            }
            StreamEvent::Note(message) => EventKind::Note { message },
            StreamEvent::Close(reason) => {
                info!(%reason, "device closes");
                self.closing = Some(reason);
                return;
            }
        };
        self.events.push_back(kind);
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::fault::{Action, Fault, Match};
    use crate::spotify_ap::client::{ApClient, ClientConfig, ClientEvent, Credentials};
    use crate::spotify_ap::identity::tests::test_identity;
    use crate::spotify_ap::session::{Account, ApConfig, ApCore};

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn core() -> ApCore {
        let mut c = ApConfig::new(Arc::new(test_identity().clone()), 3);
        c.accounts.push(Account {
            username: "alice".into(),
            password: Some("secret".into()),
            refuse: None,
        });
        ApCore::new(Arc::new(c))
    }

    fn client() -> ApClient {
        ApClient::new(ClientConfig {
            username: "alice".into(),
            credentials: Credentials::Password("secret".into()),
            server_key: test_identity().public(),
            seed: 9,
        })
    }

    fn plan(method: Option<&str>, action: Action) -> Arc<FaultPlan> {
        let faults = method
            .map(|m| Fault {
                when: Match {
                    method: Some(m.into()),
                    ..Match::default()
                },
                action,
                times: None,
                after: 0,
                probability: 1.0,
            })
            .into_iter()
            .collect();
        Arc::new(FaultPlan::new(7, faults))
    }

    fn conn(plan: Arc<FaultPlan>) -> StreamConnection<ApCore> {
        let info = ConnInfo {
            device: "ap".into(),
            index: 0,
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:4070".parse().unwrap(),
        };
        StreamConnection::new(
            &core(),
            info,
            plan,
            "SPOTIFY-AP",
            Duration::from_secs(30),
            t0(),
        )
    }

    /// Moves bytes both ways at `now` until neither side has any; returns the driver's events
    /// and the client's.
    fn pump(
        ap: &mut StreamConnection<ApCore>,
        cl: &mut ApClient,
        now: SystemTime,
    ) -> (Vec<EventKind>, Vec<ClientEvent>) {
        let (mut aev, mut cev) = (vec![], vec![]);
        loop {
            let mut moved = false;
            while let Some(t) = cl.poll_transmit() {
                ap.receive(&t, now);
                moved = true;
            }
            while let Some(t) = ap.poll_transmit() {
                cl.handle_input(&t);
                moved = true;
            }
            aev.extend(std::iter::from_fn(|| ap.poll_event()));
            cev.extend(std::iter::from_fn(|| cl.poll_event()));
            if !moved {
                return (aev, cev);
            }
        }
    }

    fn requests(events: &[EventKind]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::Request { method, .. } => Some(method.clone()),
                _ => None,
            })
            .collect()
    }

    fn logged_in(events: &[ClientEvent]) -> bool {
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::LoggedIn { .. }))
    }

    #[test]
    fn without_faults_every_frame_is_an_event_and_the_client_logs_in() {
        let mut ap = conn(plan(None, Action::Reset));
        let mut cl = client();
        let (events, client_events) = pump(&mut ap, &mut cl, t0());
        assert!(logged_in(&client_events), "{client_events:?}");
        assert_eq!(
            requests(&events),
            ["ClientHello", "ClientResponsePlaintext", "Login", "Pong"]
        );
        let sent: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::Response { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert!(sent.iter().any(|r| r.starts_with("APWelcome")), "{sent:?}");
        assert!(ap.end_reason().is_none());
        assert!(matches!(events.first(), Some(EventKind::Connected)));
        assert!(events
            .iter()
            .any(|e| matches!(e, EventKind::Note { message } if message == "logged in: alice")));
    }

    #[test]
    fn reset_on_apwelcome_ends_with_rst_before_the_welcome() {
        let mut ap = conn(plan(Some("APWelcome"), Action::Reset));
        let mut cl = client();
        let (events, client_events) = pump(&mut ap, &mut cl, t0());
        assert!(!logged_in(&client_events));
        assert_eq!(ap.end_reason(), Some(&End::Reset));
        assert!(events
            .iter()
            .any(|e| matches!(e, EventKind::Fault { action, .. } if action.contains("reset"))));
        assert!(matches!(ap.close(), EventKind::Closed { reason } if reason == "reset by fault"));
    }

    #[test]
    fn stall_on_the_server_hello_writes_nothing_and_keeps_reading() {
        let mut ap = conn(plan(Some("APResponseMessage"), Action::Stall));
        let mut cl = client();
        let (_, client_events) = pump(&mut ap, &mut cl, t0());
        assert!(!logged_in(&client_events));
        assert!(ap.end_reason().is_none() && ap.wants_read());
        assert_eq!(ap.poll_timeout(), None, "a stalled connection has no timer");
        ap.receive(b"more", t0());
        assert!(ap.poll_transmit().is_none());
        ap.receive_eof();
        assert_eq!(
            ap.end_reason(),
            Some(&End::Closed("stalled by fault".into()))
        );
    }

    #[test]
    fn delay_holds_the_server_hello_until_its_deadline() {
        let mut ap = conn(plan(Some("APResponseMessage"), Action::Delay(500)));
        let mut cl = client();
        let (_, first) = pump(&mut ap, &mut cl, t0());
        assert!(!logged_in(&first));
        let due = t0() + Duration::from_millis(500);
        assert_eq!(ap.poll_timeout(), Some(due));
        ap.handle_timeout(due - Duration::from_millis(1));
        assert!(ap.poll_transmit().is_none(), "not before its deadline");
        ap.handle_timeout(due);
        let (_, later) = pump(&mut ap, &mut cl, due);
        assert!(logged_in(&later), "{later:?}");
    }

    #[test]
    fn truncate_cuts_the_named_transmit_and_the_client_fails() {
        let mut ap = conn(plan(Some("APResponseMessage"), Action::Truncate(4)));
        let mut cl = client();
        for t in std::iter::from_fn(|| cl.poll_transmit()) {
            ap.receive(&t, t0());
        }
        let out = ap.poll_transmit().expect("the cut server hello");
        assert_eq!(out.len(), 4);
        cl.handle_input(&out);
        let (_, client_events) = pump(&mut ap, &mut cl, t0());
        assert!(!logged_in(&client_events));
    }

    #[test]
    fn idle_timeout_closes_a_silent_connection() {
        let mut ap = conn(plan(None, Action::Reset));
        let deadline = ap.poll_timeout().expect("idle timer");
        assert_eq!(deadline, t0() + Duration::from_secs(30));
        ap.handle_timeout(deadline);
        assert_eq!(ap.end_reason(), Some(&End::Closed("idle timeout".into())));
    }
}
