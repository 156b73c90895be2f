//! One connection of a device as a sans-IO state machine, in the manner of quinn-proto's
//! `Connection`: the shell feeds it the bytes it read and the time, and takes out the bytes to
//! write, the next timer deadline, what to do on the side (open UDP ports, wait for the core's
//! revision) and the events to record. In between it frames requests within the limits, asks the
//! fault seam ([`FaultPlan::on_request`]) for a verdict, calls the core
//! ([`ProtocolCore::handle`] / [`ProtocolCore::complete`] / [`ProtocolCore::resume`]), applies the verdict's
//! edits, and describes all of it as [`EventKind`]s.
//!
//! [`DatagramPort`] does the same for a UDP port a core asked for: the fault seam may lose a
//! datagram (`lose_packets`) before the core's handler sees it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::event::EventKind;
use crate::fault::{self, FaultPlan, Preempt, RequestFacts, Verdict};
use crate::hap::channel::Channel;
use crate::protocol_core::{ConnInfo, Context, Note, Outcome, ProtocolCore, UdpRequest};
use crate::wire::{self, Limits, Request, Response};

/// The `tracing` target of protocol warnings (input a real device would not expect), so a front
/// end can show or hide them apart from other logs: they are events too, in every transcript.
pub const PROTOCOL_WARNING_TARGET: &str = "airtwin::protocol_warning";

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Closed with FIN, for this reason (as the transcript shows it).
    Closed(String),
    /// Closed with RST (a `reset` fault): the shell sets `SO_LINGER` 0 before closing.
    Reset,
}

impl End {
    /// The reason the transcript's `closed` event gives.
    pub fn reason(&self) -> &str {
        match self {
            End::Closed(reason) => reason,
            End::Reset => "reset by fault",
        }
    }
}

/// A request between its arrival and its answer.
struct Exchanging {
    req: Request,
    index: u64,
    verdict: Verdict,
    /// The core's notes so far; recorded just before the response.
    notes: Vec<Note>,
    /// The shared secret of a pairing this answer completes ([`Context::encrypt_after`]).
    encrypt_after: Option<Vec<u8>>,
}

enum Phase {
    /// Between requests: frames the next one from what was received.
    Idle,
    /// A `delay` fault holds the request until `until`; nothing is read meanwhile.
    Delayed {
        exchange: Exchanging,
        until: SystemTime,
    },
    /// The core asked for UDP ports ([`Outcome::OpenUdp`]); the shell binds them.
    OpeningUdp(Exchanging),
    /// The core deferred its answer ([`Outcome::Wait`]).
    Waiting {
        exchange: Exchanging,
        after_revision: Option<u64>,
        until: Option<SystemTime>,
    },
    /// A `stall` fault: reads and discards until the peer goes away.
    Stalled,
    Ended(End),
}

/// One TCP connection of a device running `S`, without the socket.
pub struct Connection<S: ProtocolCore> {
    service: Arc<S>,
    info: ConnInfo,
    plan: Arc<FaultPlan>,
    limits: Limits,
    idle_timeout: Duration,
    state: S::Conn,
    received: Vec<u8>,
    next_request: u64,
    /// When the connection last received bytes or finished an answer: the idle timer runs from
    /// there.
    idle_since: SystemTime,
    phase: Phase,
    transmit: Vec<u8>,
    events: VecDeque<EventKind>,
    udp: Option<Vec<UdpRequest>>,
    /// The HomeKit encrypted channel once a pairing completed: bytes are opened here before
    /// framing and sealed after the fault seam's edits, so the transcript, expectations and faults
    /// see plaintext (docs/protocols/hap.md, "The encrypted channel").
    channel: Option<Channel>,
}

impl<S: ProtocolCore> Connection<S> {
    /// A connection just accepted at `now`: the core opens its state, a `connected` event waits.
    pub fn new(
        service: Arc<S>,
        info: ConnInfo,
        plan: Arc<FaultPlan>,
        limits: Limits,
        idle_timeout: Duration,
        now: SystemTime,
    ) -> Self {
        let state = service.open(&info);
        Connection {
            service,
            info,
            plan,
            limits,
            idle_timeout,
            state,
            received: Vec::with_capacity(4096),
            next_request: 0,
            idle_since: now,
            phase: Phase::Idle,
            transmit: Vec::new(),
            events: VecDeque::from([EventKind::Connected]),
            udp: None,
            channel: None,
        }
    }

    /// The facts of this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Bytes read from the peer at `now`.
    pub fn receive(&mut self, bytes: &[u8], now: SystemTime) {
        match self.phase {
            Phase::Ended(_) => {}
            Phase::Stalled => {}
            Phase::Waiting { .. } => {
                let Some(plain) = self.open(bytes) else {
                    return;
                };
                self.received.extend_from_slice(&plain);
                // Pipelined requests wait their turn; a flood is cut off at the limits.
                if self.received.len() > self.limits.max_head + self.limits.max_body {
                    self.end(End::Closed(
                        "peer sent too much while the answer was deferred".into(),
                    ));
                }
            }
            _ => {
                let Some(plain) = self.open(bytes) else {
                    return;
                };
                self.received.extend_from_slice(&plain);
                self.idle_since = now;
                self.drive(now);
            }
        }
    }

    /// The plaintext of `bytes`: as they are before encryption starts, opened after. Bytes that
    /// are not a valid encrypted block end the connection, as an accessory closes it (HAP
    /// §6.5.2), with one warning.
    fn open(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let Some(channel) = self.channel.as_mut() else {
            return Some(bytes.to_vec());
        };
        match channel.open(bytes) {
            Ok(plain) => Some(plain),
            Err(e) => {
                warn!(error = %e, "bad encrypted block, closing");
                self.events.push_back(EventKind::Warning {
                    message: format!("encrypted channel: {e}; connection closed"),
                });
                self.end(End::Closed(format!("bad encrypted block: {e}")));
                None
            }
        }
    }

    /// The peer closed its side.
    pub fn receive_eof(&mut self) {
        let reason = match self.phase {
            Phase::Ended(_) => return,
            Phase::Stalled => "stalled by fault",
            Phase::Waiting { .. } => "peer closed while the answer was deferred",
            _ => "peer closed",
        };
        self.end(End::Closed(reason.into()));
    }

    /// Ends the connection for a reason outside the protocol (a read or write error, the device
    /// stopping). A stalled connection keeps "stalled by fault", whatever ends it.
    pub fn abort(&mut self, reason: impl Into<String>) {
        let reason = match self.phase {
            Phase::Stalled => "stalled by fault".to_string(),
            _ => reason.into(),
        };
        self.end(End::Closed(reason));
    }

    /// The time is `now`: a timer from [`Connection::poll_timeout`] may be due.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        match &self.phase {
            Phase::Idle if now >= self.idle_since + self.idle_timeout => {
                info!(
                    timeout_ms = self.idle_timeout.as_millis() as u64,
                    "idle timeout, closing"
                );
                self.end(End::Closed("idle timeout".into()));
            }
            Phase::Delayed { until, .. } if now >= *until => {
                let Phase::Delayed { exchange, .. } = self.take_phase() else {
                    unreachable!("matched above")
                };
                self.answer(exchange, now);
                self.drive(now);
            }
            Phase::Waiting {
                until: Some(until), ..
            } if now >= *until => self.resume(now),
            _ => {}
        }
    }

    /// The core's revision ([`ProtocolCore::changes`]) may have moved: a deferred answer waiting on it
    /// resumes if it did.
    pub fn handle_change(&mut self, now: SystemTime) {
        if let Phase::Waiting {
            after_revision: Some(after),
            ..
        } = self.phase
        {
            if self.service.changes().map(|c| c.revision()) != Some(after) {
                self.resume(now);
            }
        }
    }

    /// The shell opened the UDP ports [`Connection::poll_udp`] asked for: their numbers, in order
    /// (0 for one it could not open).
    pub fn ports_opened(&mut self, ports: &[u16], now: SystemTime) {
        if !matches!(self.phase, Phase::OpeningUdp(_)) {
            return;
        }
        let Phase::OpeningUdp(mut exchange) = self.take_phase() else {
            unreachable!("matched above")
        };
        let mut cx = Context::new(&self.info, now, &exchange.verdict.params);
        let resp = self
            .service
            .complete(&mut self.state, &exchange.req, ports, &mut cx);
        exchange.notes.append(&mut cx.notes);
        self.respond(exchange, resp, false, now);
        self.drive(now);
    }

    /// Bytes to write to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    /// The next thing to record, in order.
    pub fn poll_event(&mut self) -> Option<EventKind> {
        self.events.pop_front()
    }

    /// UDP ports to open on the device's address, then to report with
    /// [`Connection::ports_opened`].
    pub fn poll_udp(&mut self) -> Option<Vec<UdpRequest>> {
        self.udp.take()
    }

    /// When [`Connection::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        match &self.phase {
            Phase::Idle => Some(self.idle_since + self.idle_timeout),
            Phase::Delayed { until, .. } => Some(*until),
            Phase::Waiting { until, .. } => *until,
            _ => None,
        }
    }

    /// The revision a deferred answer waits to see change: the shell calls
    /// [`Connection::handle_change`] when the core's revision moves.
    pub fn waits_for_change(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { after_revision, .. } => after_revision,
            _ => None,
        }
    }

    /// Whether the shell should read (and watch for the device stopping). A delayed request and
    /// one waiting for its UDP ports hold the reading, as a busy device does.
    pub fn wants_read(&self) -> bool {
        matches!(
            self.phase,
            Phase::Idle | Phase::Waiting { .. } | Phase::Stalled
        )
    }

    /// Whether a `stall` fault holds the connection.
    pub fn is_stalled(&self) -> bool {
        matches!(self.phase, Phase::Stalled)
    }

    /// How the connection ended, once it has: the shell writes what is left to transmit (the
    /// answers before the one that ended it), then closes the socket.
    pub fn end_reason(&self) -> Option<&End> {
        match &self.phase {
            Phase::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// The connection is over: the core drops its state; returns the `closed` event to record.
    pub fn close(self) -> EventKind {
        let reason = match &self.phase {
            Phase::Ended(end) => end.reason().to_string(),
            _ => "closed".to_string(),
        };
        self.service.close(self.state);
        EventKind::Closed { reason }
    }

    fn take_phase(&mut self) -> Phase {
        std::mem::replace(&mut self.phase, Phase::Idle)
    }

    fn end(&mut self, end: End) {
        self.phase = Phase::Ended(end);
    }

    /// Answers every whole request received while nothing else is in flight.
    fn drive(&mut self, now: SystemTime) {
        while matches!(self.phase, Phase::Idle) {
            let (req, used) = match wire::parse_request(&self.received, &self.limits) {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    self.framing_error(&e, now);
                    return;
                }
            };
            self.received.drain(..used);
            let index = self.next_request;
            self.next_request += 1;
            self.start(req, index, now);
        }
    }

    /// A request that cannot be framed: an error status with the reason, then close.
    fn framing_error(&mut self, e: &wire::FramingError, now: SystemTime) {
        info!(error = %e, "bad request, answering {} and closing", e.status());
        self.events.push_back(EventKind::Warning {
            message: format!("framing: {e}"),
        });
        let salvaged = wire::salvage(&self.received);
        let protocol = salvaged.protocol.unwrap_or(wire::Protocol::Rtsp10);
        let mut resp = Response::new(protocol, e.status()).with_reason_text(&e.to_string());
        let params = Default::default();
        let cx = Context::new(&self.info, now, &params);
        self.service.decorate(&self.state, None, &mut resp, &cx);
        if let Some(cseq) = salvaged.cseq {
            resp.headers.set("CSeq", cseq);
        }
        self.send(None, &resp);
        self.end(End::Closed(format!("bad request: {e}")));
    }

    /// A request arrived: record it, ask the fault seam, and answer now or when the delay is over.
    fn start(&mut self, req: Request, index: u64, now: SystemTime) {
        debug!(method = %req.method, uri = %req.uri, "request");
        self.events.push_back(EventKind::Request {
            index,
            method: req.method.clone(),
            uri: req.uri.clone(),
            protocol: req.protocol.to_string(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            content_type: req.headers.get("Content-Type").map(str::to_string),
            body: req.body.clone(),
        });
        let verdict = self.plan.on_request(&RequestFacts {
            device: &self.info.device,
            connection: self.info.index,
            request: index,
            method: &req.method,
            path: req.path(),
        });
        for a in &verdict.applied {
            info!(fault = a.fault, action = %a.action, "fault applied");
            self.events.push_back(EventKind::Fault {
                request: Some(index),
                fault: a.fault,
                action: a.action.clone(),
            });
        }
        let delay = verdict.delay;
        let exchange = Exchanging {
            req,
            index,
            verdict,
            notes: Vec::new(),
            encrypt_after: None,
        };
        if delay.is_zero() {
            self.answer(exchange, now);
        } else {
            self.phase = Phase::Delayed {
                exchange,
                until: now + delay,
            };
        }
    }

    /// The fault seam's preemption, or else the core, answers.
    fn answer(&mut self, mut exchange: Exchanging, now: SystemTime) {
        match exchange.verdict.preempt.take() {
            Some(Preempt::Drop) => self.end(End::Closed("dropped by fault".into())),
            Some(Preempt::Reset) => self.end(End::Reset),
            Some(Preempt::Stall) => self.phase = Phase::Stalled,
            Some(Preempt::Respond(r)) => {
                let mut resp = fault::preempt_response(r, &exchange.req);
                let cx = Context::new(&self.info, now, &exchange.verdict.params);
                self.service
                    .decorate(&self.state, Some(&exchange.req), &mut resp, &cx);
                self.respond(exchange, resp, false, now);
            }
            None => {
                let mut cx = Context::new(&self.info, now, &exchange.verdict.params);
                let outcome = self.service.handle(&mut self.state, &exchange.req, &mut cx);
                exchange.notes.append(&mut cx.notes);
                exchange.encrypt_after = cx.encrypt_after.take();
                self.outcome(exchange, outcome, now);
            }
        }
    }

    /// A deferred answer's wait is over: the core looks again.
    fn resume(&mut self, now: SystemTime) {
        let Phase::Waiting { mut exchange, .. } = self.take_phase() else {
            return;
        };
        let mut cx = Context::new(&self.info, now, &exchange.verdict.params);
        let outcome = self.service.resume(&mut self.state, &exchange.req, &mut cx);
        exchange.notes.append(&mut cx.notes);
        self.outcome(exchange, outcome, now);
        self.drive(now);
    }

    fn outcome(&mut self, exchange: Exchanging, outcome: Outcome, now: SystemTime) {
        match outcome {
            Outcome::Respond(r) => self.respond(exchange, r, false, now),
            Outcome::RespondAndClose(r) => self.respond(exchange, r, true, now),
            Outcome::OpenUdp(requests) => {
                self.udp = Some(requests);
                self.phase = Phase::OpeningUdp(exchange);
            }
            Outcome::Wait {
                after_revision,
                until,
            } => {
                self.phase = Phase::Waiting {
                    exchange,
                    after_revision,
                    until,
                }
            }
        }
    }

    /// The core's notes, the verdict's edits, then the response goes out.
    fn respond(&mut self, exchange: Exchanging, mut resp: Response, close: bool, now: SystemTime) {
        for note in exchange.notes {
            self.events.push_back(match note {
                Note::Warning(message) => {
                    warn!(target: PROTOCOL_WARNING_TARGET, %message, "protocol warning");
                    EventKind::Warning { message }
                }
                Note::Info(message) => EventKind::Note { message },
            });
        }
        fault::apply_edits(&mut resp, &exchange.verdict.edits);
        self.send(Some(exchange.index), &resp);
        self.idle_since = now;
        if close {
            self.end(End::Closed("closed by device".into()));
        } else {
            self.phase = Phase::Idle;
            if let Some(shared) = exchange.encrypt_after {
                // The answer that completes the pairing goes out in the clear; everything after it
                // on this connection is encrypted (docs/protocols/hap.md, "The encrypted channel").
                self.channel = Some(Channel::accessory(&shared));
                self.events.push_back(EventKind::Note {
                    message: "encrypted channel: on".into(),
                });
                let pending = std::mem::take(&mut self.received);
                if !pending.is_empty() {
                    if let Some(plain) = self.open(&pending) {
                        self.received = plain;
                    }
                }
            }
        }
    }

    fn send(&mut self, index: Option<u64>, resp: &Response) {
        self.events.push_back(EventKind::Response {
            index: index.unwrap_or(u64::MAX),
            status: resp.status,
            reason: resp.reason.clone(),
            // As sent: `Response::encode` always writes Content-Length last.
            headers: resp
                .headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"))
                .map(|(n, v)| (n.into(), v.into()))
                .chain([("Content-Length".to_string(), resp.body.len().to_string())])
                .collect(),
            content_type: resp.headers.get("Content-Type").map(str::to_string),
            body: resp.body.clone(),
        });
        let bytes = resp.encode();
        match self.channel.as_mut() {
            Some(channel) => self.transmit.extend_from_slice(&channel.seal(&bytes)),
            None => self.transmit.extend_from_slice(&bytes),
        }
    }
}

/// A UDP port a core asked for, without the socket: the fault seam may lose each datagram before
/// the core's handler sees it.
pub struct DatagramPort {
    request: UdpRequest,
    plan: Arc<FaultPlan>,
    device: Arc<str>,
    lost: u64,
}

/// What one datagram caused.
#[derive(Debug, Default)]
pub struct Datagram {
    /// Datagrams to send back to the sender.
    pub replies: Vec<Vec<u8>>,
    /// A `lose_packets` fault lost it: the core's handler never saw it.
    pub lost: bool,
    /// The event to record: the first loss at this port.
    pub event: Option<EventKind>,
}

impl DatagramPort {
    pub fn new(request: UdpRequest, plan: Arc<FaultPlan>, device: Arc<str>) -> Self {
        DatagramPort {
            request,
            plan,
            device,
            lost: 0,
        }
    }

    /// The port's name (`server`, `control`, `timing`).
    pub fn name(&self) -> &'static str {
        self.request.name
    }

    /// One datagram from `from` at `now`.
    pub fn receive(&mut self, bytes: &[u8], from: SocketAddr, now: SystemTime) -> Datagram {
        if self.request.lossy {
            if let Some(fault) = self.plan.lose_datagram(&self.device) {
                self.lost += 1;
                let event = (self.lost == 1).then(|| EventKind::Fault {
                    request: None,
                    fault,
                    action: format!("lose_packets on {} port (first loss)", self.request.name),
                });
                return Datagram {
                    replies: Vec::new(),
                    lost: true,
                    event,
                };
            }
        }
        Datagram {
            replies: self.request.handler.on_datagram(bytes, from, now),
            lost: false,
            event: None,
        }
    }

    /// Datagrams lost here so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Cursor;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::airplay::{fairplay, AirplayConfig, AirplayCore};
    use crate::dacp::{DacpConfig, DacpCore};
    use crate::fault::{Action, CorruptTarget, Fault, Match};
    use crate::protocol_core::DatagramHandler;
    use crate::raop::{challenge, keys, RaopConfig, RaopCore};
    use crate::testkit;
    use crate::wire::dmap;
    use crate::wire::Protocol;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn plan(action: Action) -> Arc<FaultPlan> {
        Arc::new(FaultPlan::new(
            7,
            vec![Fault {
                when: Match::default(),
                action,
                times: None,
                after: 0,
                probability: 1.0,
            }],
        ))
    }

    fn open<S: ProtocolCore>(service: Arc<S>, plan: Arc<FaultPlan>, index: u64) -> Connection<S> {
        let info = testkit::conn("dev", index, 5000);
        Connection::new(
            service,
            info,
            plan,
            Limits::default(),
            Duration::from_secs(30),
            t0(),
        )
    }

    fn rtsp(method: &str, uri: &str, cseq: u32) -> Vec<u8> {
        testkit::rtsp(method, uri, cseq).encode()
    }

    fn http_get(uri: &str) -> Vec<u8> {
        Request::new("GET", uri, Protocol::Http11).encode()
    }

    /// Every response in what the connection has to write.
    fn answers<S: ProtocolCore>(conn: &mut Connection<S>) -> Vec<Response> {
        let bytes = conn.poll_transmit().unwrap_or_default();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((resp, used)) = wire::parse_response(&bytes[at..], &Limits::default())
            .expect("the connection writes well-framed responses")
        {
            out.push(resp);
            at += used;
        }
        assert_eq!(at, bytes.len(), "trailing bytes after the responses");
        out
    }

    fn only_answer<S: ProtocolCore>(conn: &mut Connection<S>) -> Response {
        let mut all = answers(conn);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn events<S: ProtocolCore>(conn: &mut Connection<S>) -> Vec<EventKind> {
        std::iter::from_fn(|| conn.poll_event()).collect()
    }

    fn fault_actions(events: &[EventKind]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::Fault { action, .. } => Some(action.clone()),
                _ => None,
            })
            .collect()
    }

    /// A core that answers every request 200 with a header and a binary-plist body, and counts
    /// the requests it saw.
    #[derive(Default)]
    struct Plain {
        handled: AtomicU64,
    }

    fn plain_body() -> Vec<u8> {
        let mut d = plist::Dictionary::new();
        d.insert("a".into(), plist::Value::Integer(1.into()));
        d.insert("b".into(), plist::Value::String("text".into()));
        let mut out = Vec::new();
        plist::Value::Dictionary(d)
            .to_writer_binary(&mut out)
            .expect("plist encodes");
        out
    }

    impl ProtocolCore for Plain {
        type Conn = ();

        fn open(&self, _: &ConnInfo) {}

        fn handle(&self, _: &mut (), req: &Request, cx: &mut Context<'_>) -> Outcome {
            self.handled.fetch_add(1, Ordering::SeqCst);
            cx.info("handled");
            let mut r = Response::new(req.protocol, 200)
                .with_body("application/x-apple-binary-plist", plain_body());
            r.headers.set("X-Kept", "kept-value");
            self.decorate(&(), Some(req), &mut r, cx);
            Outcome::Respond(r)
        }

        fn complete(&self, _: &mut (), req: &Request, _: &[u16], _: &mut Context<'_>) -> Response {
            Response::new(req.protocol, 500)
        }

        fn decorate(&self, _: &(), req: Option<&Request>, resp: &mut Response, _: &Context<'_>) {
            resp.headers.set("Server", "plain/1");
            if let Some(cseq) = req.and_then(Request::cseq) {
                resp.headers.set("CSeq", cseq);
            }
        }

        fn close(&self, _: ()) {}
    }

    /// The response `Plain` gives under `action`, after one OPTIONS request.
    fn plain_under(action: Action) -> Response {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc.clone(), plan(action), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        assert_eq!(svc.handled.load(Ordering::SeqCst), 1);
        only_answer(&mut conn)
    }

    #[test]
    fn without_faults_the_core_answers_and_everything_is_recorded_in_order() {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc, Arc::new(FaultPlan::empty()), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        let r = only_answer(&mut conn);
        assert_eq!((r.status, r.headers.get("CSeq")), (200, Some("1")));
        let kinds: Vec<&str> = events(&mut conn)
            .iter()
            .map(|e| match e {
                EventKind::Connected => "connected",
                EventKind::Request { .. } => "request",
                EventKind::Note { .. } => "note",
                EventKind::Response { .. } => "response",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["connected", "request", "note", "response"]);
        assert_eq!(conn.poll_timeout(), Some(t0() + Duration::from_secs(30)));
    }

    #[test]
    fn delay_sets_a_timer_and_answers_nothing_before_it() {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc.clone(), plan(Action::Delay(500)), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        assert_eq!(conn.poll_transmit(), None);
        assert_eq!(conn.poll_timeout(), Some(t0() + Duration::from_millis(500)));
        assert!(!conn.wants_read(), "a delayed request holds the reading");
        assert_eq!(fault_actions(&events(&mut conn)), ["delay 500ms"]);
        conn.handle_timeout(t0() + Duration::from_millis(499));
        assert_eq!(conn.poll_transmit(), None);
        assert_eq!(svc.handled.load(Ordering::SeqCst), 0);
        conn.handle_timeout(t0() + Duration::from_millis(500));
        assert_eq!(only_answer(&mut conn).status, 200);
        assert_eq!(svc.handled.load(Ordering::SeqCst), 1);
        assert!(conn.wants_read());
    }

    #[test]
    fn respond_answers_in_the_cores_place() {
        let svc = Arc::new(Plain::default());
        let action = Action::Respond {
            status: 453,
            headers: BTreeMap::from([("X-Fault".to_string(), "yes".to_string())]),
            body: "busy".into(),
        };
        let mut conn = open(svc.clone(), plan(action), 0);
        conn.receive(&rtsp("SETUP", "rtsp://x/1", 4), t0());
        let r = only_answer(&mut conn);
        assert_eq!(r.status, 453);
        assert_eq!(r.headers.get("CSeq"), Some("4"));
        assert_eq!(r.headers.get("X-Fault"), Some("yes"));
        assert_eq!(
            r.headers.get("Server"),
            Some("plain/1"),
            "the device decorates it"
        );
        assert_eq!(r.body, b"busy");
        assert_eq!(svc.handled.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn drop_closes_without_answering() {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc.clone(), plan(Action::Drop), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        assert_eq!(conn.poll_transmit(), None);
        assert_eq!(
            conn.end_reason(),
            Some(&End::Closed("dropped by fault".into()))
        );
        assert_eq!(svc.handled.load(Ordering::SeqCst), 0);
        let EventKind::Closed { reason } = conn.close() else {
            panic!("close gives the closed event")
        };
        assert_eq!(reason, "dropped by fault");
    }

    #[test]
    fn reset_ends_with_a_reset() {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc.clone(), plan(Action::Reset), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        assert_eq!(conn.poll_transmit(), None);
        assert_eq!(conn.end_reason(), Some(&End::Reset));
        let EventKind::Closed { reason } = conn.close() else {
            panic!("close gives the closed event")
        };
        assert_eq!(reason, "reset by fault");
    }

    #[test]
    fn stall_reads_and_never_answers_until_the_peer_goes() {
        let svc = Arc::new(Plain::default());
        let mut conn = open(svc.clone(), plan(Action::Stall), 0);
        conn.receive(&rtsp("OPTIONS", "*", 1), t0());
        assert!(conn.is_stalled() && conn.wants_read());
        assert_eq!(conn.poll_timeout(), None, "no idle timeout while stalled");
        conn.receive(&rtsp("OPTIONS", "*", 2), t0() + Duration::from_secs(60));
        conn.handle_timeout(t0() + Duration::from_secs(3600));
        assert_eq!(conn.poll_transmit(), None);
        assert_eq!(conn.end_reason(), None);
        assert_eq!(svc.handled.load(Ordering::SeqCst), 0);
        conn.receive_eof();
        assert_eq!(
            conn.end_reason(),
            Some(&End::Closed("stalled by fault".into()))
        );
    }

    #[test]
    fn omit_header_removes_it() {
        let r = plain_under(Action::OmitHeader("X-Kept".into()));
        assert_eq!(r.headers.get("X-Kept"), None);
        assert_eq!(r.headers.get("Server"), Some("plain/1"));
    }

    #[test]
    fn set_header_replaces_it() {
        let r = plain_under(Action::SetHeader {
            name: "X-Kept".into(),
            value: "changed".into(),
        });
        assert_eq!(r.headers.get("X-Kept"), Some("changed"));
    }

    #[test]
    fn corrupt_flips_body_bytes_the_same_way_every_time() {
        let action = Action::Corrupt {
            target: CorruptTarget::Body,
            bytes: 3,
        };
        let r = plain_under(action.clone());
        let clean = plain_body();
        assert_eq!(r.body.len(), clean.len());
        let flipped = r.body.iter().zip(&clean).filter(|(a, b)| a != b).count();
        assert!((1..=3).contains(&flipped), "{flipped} bytes differ");
        assert_eq!(plain_under(action).body, r.body, "seeded");
    }

    #[test]
    fn truncate_cuts_the_body_and_its_length() {
        let r = plain_under(Action::Truncate(4));
        assert_eq!(r.body, plain_body()[..4]);
        assert_eq!(r.headers.get("Content-Length"), Some("4"));
    }

    #[test]
    fn edit_plist_sets_and_removes_keys() {
        let r = plain_under(Action::EditPlist {
            set: BTreeMap::from([("a".to_string(), serde_json::json!(2))]),
            remove: vec!["b".into()],
        });
        let v = plist::Value::from_reader(Cursor::new(&r.body)).unwrap();
        let d = v.as_dictionary().unwrap();
        assert_eq!(
            d.get("a").and_then(plist::Value::as_signed_integer),
            Some(2)
        );
        assert!(d.get("b").is_none());
    }

    #[test]
    fn sign_with_makes_the_raop_core_sign_with_the_named_key() {
        let other = Arc::new(keys::builtin_key("other").unwrap());
        let mut config = RaopConfig::airport_express("apx");
        config.extra_keys.push(("other".into(), other.clone()));
        let svc = Arc::new(RaopCore::new(config));
        let mut conn = open(svc.clone(), plan(Action::SignWith("other".into())), 0);
        let mut r = testkit::rtsp("OPTIONS", "*", 1);
        r.headers.set("Apple-Challenge", "09KF45soMYmvj6dpsUGiIg");
        conn.receive(&r.encode(), t0());
        let resp = only_answer(&mut conn);
        let want = challenge::apple_response(
            &other,
            "09KF45soMYmvj6dpsUGiIg",
            conn.info().local.ip(),
            &svc.config.hw_addr,
        )
        .unwrap();
        assert_eq!(resp.headers.get("Apple-Response"), Some(want.as_str()));
    }

    fn apple_tv() -> Arc<AirplayCore> {
        let config = AirplayConfig::apple_tv("tv", 9);
        let raop = config.raop_config(9);
        Arc::new(AirplayCore::new(config, raop))
    }

    fn fp_setup(body: Vec<u8>, cseq: u32) -> Vec<u8> {
        let mut r = testkit::rtsp("POST", "/fp-setup", cseq);
        r.body = body;
        r.encode()
    }

    #[test]
    fn fp_reply_mode_makes_the_airplay_core_answer_another_mode() {
        let mut conn = open(apple_tv(), plan(Action::FpReplyMode(2)), 0);
        conn.receive(&fp_setup(fairplay::phase1_request(0).to_vec(), 1), t0());
        let resp = only_answer(&mut conn);
        assert_eq!(fairplay::mode_of_reply(&resp.body), Some(2));
    }

    #[test]
    fn fp_echo_offset_makes_the_airplay_core_echo_other_bytes() {
        let mut conn = open(apple_tv(), plan(Action::FpEchoOffset(0)), 0);
        conn.receive(&fp_setup(fairplay::phase1_request(0).to_vec(), 1), t0());
        assert_eq!(only_answer(&mut conn).status, 200);
        let phase3 = fairplay::phase3_request(&[9; 152]);
        conn.receive(&fp_setup(phase3.clone(), 2), t0());
        let resp = only_answer(&mut conn);
        assert_eq!(resp.body[..12], fairplay::PHASE3_HEADER);
        assert_eq!(resp.body[12..], phase3[..20]);
    }

    /// Counts the datagrams it is handed and echoes them.
    #[derive(Default)]
    struct Echo(AtomicU64);

    impl DatagramHandler for Echo {
        fn on_datagram(&self, bytes: &[u8], _: SocketAddr, _: SystemTime) -> Vec<Vec<u8>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            vec![bytes.to_vec()]
        }
    }

    #[test]
    fn lose_packets_loses_datagrams_before_the_handler_and_records_the_first_loss() {
        let from: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let echo = Arc::new(Echo::default());
        let port = |lossy| UdpRequest {
            name: "server",
            handler: echo.clone(),
            lossy,
        };
        let plan = plan(Action::LosePackets(1.0));
        let mut lossy = DatagramPort::new(port(true), plan.clone(), "dev".into());
        let first = lossy.receive(b"one", from, t0());
        assert!(first.lost && first.replies.is_empty());
        assert!(matches!(
            first.event,
            Some(EventKind::Fault { request: None, fault: 0, ref action })
                if action == "lose_packets on server port (first loss)"
        ));
        let second = lossy.receive(b"two", from, t0());
        assert!(second.lost && second.event.is_none());
        assert_eq!((lossy.lost(), echo.0.load(Ordering::SeqCst)), (2, 0));
        let mut kept = DatagramPort::new(port(false), plan, "dev".into());
        let got = kept.receive(b"three", from, t0());
        assert!(!got.lost);
        assert_eq!(got.replies, vec![b"three".to_vec()]);
        assert_eq!(echo.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_long_poll_waits_for_a_revision_that_another_connection_moves() {
        let svc = Arc::new(DacpCore::new(DacpConfig::itunes("lib", t0())));
        let none = Arc::new(FaultPlan::empty());
        let mut a = open(svc.clone(), none.clone(), 0);
        a.receive(
            &http_get("/login?pairing-guid=0x0000000000000001&hasFP=1"),
            t0(),
        );
        let login = dmap::decode(&only_answer(&mut a).body).unwrap();
        let sid = dmap::first(&login, &[b"mlog", b"mlid"])
            .and_then(dmap::Value::as_int)
            .unwrap();
        a.receive(
            &http_get(&format!(
                "/ctrl-int/1/playstatusupdate?revision-number=0&session-id={sid}"
            )),
            t0(),
        );
        let status = dmap::decode(&only_answer(&mut a).body).unwrap();
        let rev = dmap::first(&status, &[b"cmst", b"cmsr"])
            .and_then(dmap::Value::as_int)
            .unwrap();
        a.receive(
            &http_get(&format!(
                "/ctrl-int/1/playstatusupdate?revision-number={rev}&session-id={sid}"
            )),
            t0(),
        );
        assert_eq!(a.poll_transmit(), None);
        assert_eq!(a.waits_for_change(), Some(svc.changes.revision()));
        a.handle_change(t0());
        assert_eq!(a.poll_transmit(), None, "nothing changed yet");

        let mut b = open(svc.clone(), none, 1);
        b.receive(
            &http_get(&format!("/ctrl-int/1/pause?session-id={sid}")),
            t0(),
        );
        assert_eq!(only_answer(&mut b).status, 204);
        a.handle_change(t0());
        let status = dmap::decode(&only_answer(&mut a).body).unwrap();
        assert_eq!(
            dmap::first(&status, &[b"cmst", b"caps"]),
            Some(&dmap::Value::Int(3)),
            "paused"
        );
        assert_eq!(a.waits_for_change(), None);
    }

    #[test]
    fn a_peer_leaving_a_deferred_answer_ends_the_connection() {
        let svc = Arc::new(DacpCore::new(DacpConfig::itunes("lib", t0())));
        let mut conn = open(svc, Arc::new(FaultPlan::empty()), 0);
        conn.receive(
            &http_get("/login?pairing-guid=0x0000000000000001&hasFP=1"),
            t0(),
        );
        let login = dmap::decode(&only_answer(&mut conn).body).unwrap();
        let sid = dmap::first(&login, &[b"mlog", b"mlid"])
            .and_then(dmap::Value::as_int)
            .unwrap();
        conn.receive(
            &http_get(&format!(
                "/ctrl-int/1/playstatusupdate?revision-number=1&session-id={sid}"
            )),
            t0(),
        );
        assert!(conn.waits_for_change().is_some());
        conn.receive_eof();
        assert_eq!(
            conn.end_reason(),
            Some(&End::Closed(
                "peer closed while the answer was deferred".into()
            ))
        );
    }

    #[test]
    fn a_request_that_cannot_be_framed_gets_an_error_and_the_connection_closes() {
        let mut conn = open(Arc::new(Plain::default()), Arc::new(FaultPlan::empty()), 0);
        conn.receive(
            b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\nContent-Length: x\r\n\r\n",
            t0(),
        );
        let r = only_answer(&mut conn);
        assert!(r.status >= 400, "{}", r.status);
        assert_eq!(r.headers.get("CSeq"), Some("3"));
        assert!(
            matches!(conn.end_reason(), Some(End::Closed(reason)) if reason.starts_with("bad request"))
        );
    }

    #[test]
    fn a_connection_idle_past_its_timeout_closes() {
        let mut conn = open(Arc::new(Plain::default()), Arc::new(FaultPlan::empty()), 0);
        conn.receive(b"OPTIONS * RTSP/1.0\r\n", t0() + Duration::from_secs(10));
        conn.handle_timeout(t0() + Duration::from_secs(39));
        assert_eq!(conn.end_reason(), None);
        assert_eq!(conn.poll_timeout(), Some(t0() + Duration::from_secs(40)));
        conn.handle_timeout(t0() + Duration::from_secs(40));
        assert_eq!(conn.end_reason(), Some(&End::Closed("idle timeout".into())));
    }
}
