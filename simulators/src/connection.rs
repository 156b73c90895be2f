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
use crate::fault::CoreParams;
use crate::fault::{self, FaultPlan, Preempt, RequestFacts, Verdict};
use crate::hap::channel::{Channel, BLOCK};
use crate::hap::keys::TAG_LEN;
use crate::protocol_core::{
    ConnInfo, Context, Note, Outcome, PortRequest, ProtocolCore, Push, UdpRequest,
};
use crate::wire::{self, interleaved, Limits, Request, Response};

/// The note a connection records when its HomeKit channel starts encrypting: captures split the
/// connection there into wire and decrypted bytes (`airtwin run --pcap`).
pub const ENCRYPTED_CHANNEL_ON: &str = "encrypted channel: on";

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
    /// The core asked for ports ([`Outcome::OpenUdp`], [`Outcome::OpenPorts`]); the shell binds
    /// them.
    OpeningUdp(Exchanging),
    /// The core deferred its answer ([`Outcome::Wait`]).
    Waiting {
        exchange: Exchanging,
        after_revision: Option<u64>,
        until: Option<SystemTime>,
    },
    /// A `stall` fault: reads and discards until the peer goes away.
    Stalled,
    /// Reversed ([`Outcome::Reverse`]): the device sends requests and reads responses.
    Reverse(Reversed),
    Ended(End),
}

/// A reversed connection between pushes.
struct Reversed {
    /// The fault parameters of the request that reversed the connection.
    params: CoreParams,
    /// The request sent and not yet answered, with its index.
    awaiting: Option<(Request, u64)>,
    /// The core's revision when it was last asked for a push.
    seen_revision: Option<u64>,
    /// When to ask the core again without a change.
    until: Option<SystemTime>,
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
    /// Index of the next request the device sends on a reversed connection.
    next_push: u64,
    /// When the connection last received bytes or finished an answer: the idle timer runs from
    /// there.
    idle_since: SystemTime,
    phase: Phase,
    transmit: Vec<u8>,
    events: VecDeque<EventKind>,
    ports: Option<Vec<PortRequest>>,
    /// The HomeKit encrypted channel once a pairing completed: bytes are opened here before
    /// framing and sealed after the fault seam's edits, so the transcript, expectations and faults
    /// see plaintext (docs/protocols/hap.md, "The encrypted channel").
    channel: Option<Channel>,
    /// Interleaved frames (RFC 2326 §10.12) taken from this connection so far.
    frames: u64,
    /// Whether the core already refused a frame here (only the first refusal is recorded).
    frame_refused: bool,
    /// With [`Connection::log_frames`]: the interleaved frames taken, not yet polled.
    frame_log: Option<VecDeque<LoggedFrame>>,
}

/// An interleaved frame as it crossed the wire (`$`, channel, 2-byte length, payload), and the
/// same frame with its payload decrypted where the core could (RAOP's AES-CBC audio keeps its
/// length: docs/protocols/raop.md, "Audio encryption"), for captures ([`crate::packet_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedFrame {
    pub wire: Vec<u8>,
    pub plain: Option<Vec<u8>>,
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
            next_push: 0,
            idle_since: now,
            phase: Phase::Idle,
            transmit: Vec::new(),
            events: VecDeque::from([EventKind::Connected]),
            ports: None,
            channel: None,
            frames: 0,
            frame_refused: false,
            frame_log: None,
        }
    }

    /// From now on, keep each interleaved frame taken for [`Connection::poll_frame`]: the events
    /// count frames but do not hold their bytes.
    pub fn log_frames(&mut self) {
        self.frame_log.get_or_insert_with(VecDeque::new);
    }

    /// The next interleaved frame kept by [`Connection::log_frames`].
    pub fn poll_frame(&mut self) -> Option<LoggedFrame> {
        self.frame_log.as_mut()?.pop_front()
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
            Phase::Reverse(_) => {
                let Some(plain) = self.open(bytes) else {
                    return;
                };
                self.received.extend_from_slice(&plain);
                self.read_push_answers(now);
            }
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
            Phase::Reverse(_) => "peer closed the reversed connection",
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
            Phase::Reverse(Reversed {
                awaiting: None,
                until: Some(until),
                ..
            }) if now >= *until => self.push(now),
            _ => {}
        }
    }

    /// The core's revision ([`ProtocolCore::changes`]) may have moved: a deferred answer waiting on it
    /// resumes if it did.
    pub fn handle_change(&mut self, now: SystemTime) {
        if let Phase::Reverse(Reversed {
            awaiting: None,
            seen_revision,
            ..
        }) = &self.phase
        {
            if self.service.changes().map(|c| c.revision()) != *seen_revision {
                self.push(now);
            }
            return;
        }
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

    /// The shell opened the ports [`Connection::poll_ports`] asked for: their numbers, in order
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

    /// Ports to open on the device's address, then to report with
    /// [`Connection::ports_opened`].
    pub fn poll_ports(&mut self) -> Option<Vec<PortRequest>> {
        self.ports.take()
    }

    /// When [`Connection::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        match &self.phase {
            Phase::Idle => Some(self.idle_since + self.idle_timeout),
            Phase::Delayed { until, .. } => Some(*until),
            Phase::Waiting { until, .. } => *until,
            Phase::Reverse(Reversed {
                awaiting: None,
                until,
                ..
            }) => *until,
            _ => None,
        }
    }

    /// The revision a deferred answer waits to see change: the shell calls
    /// [`Connection::handle_change`] when the core's revision moves.
    pub fn waits_for_change(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { after_revision, .. } => after_revision,
            Phase::Reverse(Reversed {
                awaiting: None,
                seen_revision,
                ..
            }) => seen_revision,
            _ => None,
        }
    }

    /// Whether the shell should read (and watch for the device stopping). A delayed request and
    /// one waiting for its UDP ports hold the reading, as a busy device does.
    pub fn wants_read(&self) -> bool {
        matches!(
            self.phase,
            Phase::Idle | Phase::Waiting { .. } | Phase::Stalled | Phase::Reverse(_)
        )
    }

    /// Whether the connection is reversed ([`Outcome::Reverse`]).
    pub fn is_reversed(&self) -> bool {
        matches!(self.phase, Phase::Reverse(_))
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
            if interleaved::starts_frame(&self.received)
                && self.service.accepts_interleaved(&self.state)
            {
                if self.take_frame(now) {
                    continue;
                }
                return;
            }
            let framed = match wire::frame_request(&self.received, &self.limits) {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    self.framing_error(&e, now);
                    return;
                }
            };
            self.received.drain(..framed.used);
            let index = self.next_request;
            self.next_request += 1;
            let mut quirks = Vec::new();
            if framed.bare_lf {
                // Accepted, as receivers accept it (docs/protocols/raop.md, "Line endings").
                quirks.push(Note::Warning(format!(
                    "framing: request {index} ends lines with a bare LF instead of CRLF; accepted"
                )));
            }
            if framed.empty_uri {
                // docs/protocols/raop.md, "An empty request URI".
                quirks.push(Note::Warning(format!(
                    "framing: request {index} ({}) has an empty request URI; accepted",
                    framed.request.method
                )));
            }
            self.start(framed.request, index, quirks, now);
        }
    }

    /// An interleaved frame where a request would start (RFC 2326 §10.12): its payload goes to the
    /// core. False while the frame is incomplete, or when a `cut_interleaved` fault cut it: the
    /// connection is then reset with the frame half read (docs/protocols/raop.md, "RTP over TCP").
    fn take_frame(&mut self, now: SystemTime) -> bool {
        if let Some(fault) = self.plan.cut_interleaved(&self.info.device, self.frames) {
            info!(
                fault,
                frames = self.frames,
                "interleaved frame cut by fault"
            );
            self.events.push_back(EventKind::Fault {
                request: None,
                fault,
                action: format!("cut_interleaved after {} frame(s)", self.frames),
            });
            self.end(End::Reset);
            return false;
        }
        let Some((frame, used)) = interleaved::parse(&self.received) else {
            return false;
        };
        if self.frames == 0 {
            self.events.push_back(EventKind::Note {
                message: format!(
                    "interleaved RTP on channel {} (RFC 2326 §10.12)",
                    frame.channel
                ),
            });
        }
        self.frames += 1;
        let taken = self
            .service
            .interleaved(&mut self.state, frame.channel, frame.payload, now);
        if let Some(log) = &mut self.frame_log {
            let header = used - frame.payload.len();
            let plain = self
                .service
                .interleaved_plaintext(&mut self.state, frame.channel, frame.payload)
                .map(|p| [&self.received[..header], &p].concat());
            log.push_back(LoggedFrame {
                wire: self.received[..used].to_vec(),
                plain,
            });
        }
        if let Err(why) = taken {
            if !self.frame_refused {
                self.frame_refused = true;
                warn!(target: PROTOCOL_WARNING_TARGET, %why, "interleaved frame not used");
                self.events.push_back(EventKind::Warning {
                    message: format!("interleaved frame on channel {}: {why}", frame.channel),
                });
            }
        }
        self.received.drain(..used);
        true
    }

    /// Bytes this connection holds: received and not yet answered, answered and not yet
    /// written. The shell accounts them against the device's
    /// [`BufferBudget`](crate::buffer_budget::BufferBudget).
    pub fn buffered(&self) -> usize {
        self.received.len() + self.transmit.len()
    }

    /// The device's buffers are full ([`crate::buffer_budget`]): the bytes held are dropped, the
    /// peer is answered `503 Service Unavailable` (RFC 9110 §15.6.4, RFC 2326 §11.3.5: a
    /// temporary overload), and the connection closes.
    pub fn overloaded(&mut self, now: SystemTime) {
        if matches!(self.phase, Phase::Ended(_)) {
            return;
        }
        let protocol = wire::salvage(&self.received)
            .protocol
            .unwrap_or(wire::Protocol::Rtsp10);
        self.received = Vec::new();
        self.transmit = Vec::new();
        self.events.push_back(EventKind::Warning {
            message: "device buffers full; answered 503 and closed".into(),
        });
        let mut resp = Response::new(protocol, 503).with_reason_text("device buffers full");
        let params = Default::default();
        let cx = Context::new(&self.info, now, &params);
        self.service.decorate(&self.state, None, &mut resp, &cx);
        self.send(None, &resp, None);
        self.end(End::Closed("device buffers full".into()));
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
        self.send(None, &resp, None);
        self.end(End::Closed(format!("bad request: {e}")));
    }

    /// A request arrived: record it, ask the fault seam, and answer now or when the delay is over.
    fn start(&mut self, req: Request, index: u64, quirks: Vec<Note>, now: SystemTime) {
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
            notes: quirks,
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
            Outcome::Reverse(r) => {
                let params = exchange.verdict.params.clone();
                self.respond(exchange, r, false, now);
                if matches!(self.phase, Phase::Idle) {
                    self.phase = Phase::Reverse(Reversed {
                        params,
                        awaiting: None,
                        seen_revision: None,
                        until: None,
                    });
                    self.events.push_back(EventKind::Note {
                        message: "connection reversed: the device sends requests now".into(),
                    });
                    self.push(now);
                    // Bytes after the upgrade request are responses to what the device sends.
                    self.read_push_answers(now);
                }
            }
            Outcome::OpenUdp(requests) => {
                self.ports = Some(requests.into_iter().map(PortRequest::Udp).collect());
                self.phase = Phase::OpeningUdp(exchange);
            }
            Outcome::OpenPorts(requests) => {
                self.ports = Some(requests);
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
        self.record_notes(exchange.notes);
        fault::apply_edits(&mut resp, &exchange.verdict.edits);
        self.send(Some(exchange.index), &resp, exchange.verdict.corrupt_block);
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
                    message: ENCRYPTED_CHANNEL_ON.into(),
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

    /// On a reversed connection with nothing in flight: asks the core for its next request and
    /// sends it, or closes, or waits.
    fn push(&mut self, now: SystemTime) {
        let revision = self.service.changes().map(|c| c.revision());
        let Phase::Reverse(reversed) = &mut self.phase else {
            return;
        };
        if reversed.awaiting.is_some() {
            return;
        }
        reversed.seen_revision = revision;
        reversed.until = None;
        let mut cx = Context::new(&self.info, now, &reversed.params);
        let push = self.service.push(&mut self.state, &mut cx);
        let notes = std::mem::take(&mut cx.notes);
        self.record_notes(notes);
        match push {
            Push::Send(req) => {
                let index = self.next_push;
                self.next_push += 1;
                self.events.push_back(EventKind::Pushed {
                    index,
                    method: req.method.clone(),
                    uri: req.uri.clone(),
                    headers: req
                        .headers
                        .iter()
                        .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"))
                        .map(|(n, v)| (n.into(), v.into()))
                        .chain([("Content-Length".to_string(), req.body.len().to_string())])
                        .collect(),
                    content_type: req.headers.get("Content-Type").map(str::to_string),
                    body: req.body.clone(),
                });
                let bytes = req.encode();
                match self.channel.as_mut() {
                    Some(channel) => self.transmit.extend_from_slice(&channel.seal(&bytes)),
                    None => self.transmit.extend_from_slice(&bytes),
                }
                if let Phase::Reverse(reversed) = &mut self.phase {
                    reversed.awaiting = Some((req, index));
                }
            }
            Push::Idle { until } => {
                if let Phase::Reverse(reversed) = &mut self.phase {
                    reversed.until = until;
                }
            }
            Push::Close(reason) => self.end(End::Closed(reason)),
        }
    }

    /// On a reversed connection: reads the peer's responses to what the device sent.
    fn read_push_answers(&mut self, now: SystemTime) {
        while let Phase::Reverse(reversed) = &mut self.phase {
            if self.received.is_empty() {
                return;
            }
            let (resp, used) = match wire::parse_response(&self.received, &self.limits) {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => {
                    let message = format!("reversed connection: unreadable response: {e}");
                    warn!(target: PROTOCOL_WARNING_TARGET, %message, "protocol warning");
                    self.events.push_back(EventKind::Warning { message });
                    self.end(End::Closed(format!("bad response: {e}")));
                    return;
                }
            };
            self.received.drain(..used);
            let Some((pushed, index)) = reversed.awaiting.take() else {
                let message = format!(
                    "reversed connection: a response ({}) to no request",
                    resp.status
                );
                warn!(target: PROTOCOL_WARNING_TARGET, %message, "protocol warning");
                self.events.push_back(EventKind::Warning { message });
                continue;
            };
            let params = reversed.params.clone();
            self.events.push_back(EventKind::PushAnswered {
                index,
                status: resp.status,
                reason: resp.reason.clone(),
            });
            let mut cx = Context::new(&self.info, now, &params);
            self.service
                .pushed_answer(&mut self.state, &pushed, &resp, &mut cx);
            let notes = std::mem::take(&mut cx.notes);
            self.record_notes(notes);
            self.push(now);
        }
    }

    fn record_notes(&mut self, notes: Vec<Note>) {
        for note in notes {
            self.events.push_back(match note {
                Note::Warning(message) => {
                    warn!(target: PROTOCOL_WARNING_TARGET, %message, "protocol warning");
                    EventKind::Warning { message }
                }
                Note::Info(message) => EventKind::Note { message },
            });
        }
    }

    /// Records `resp` and queues its bytes, sealed when the channel is encrypted; `corrupt` (a
    /// `corrupt_encrypted_block` fault's seed) flips one byte of the first sealed block.
    fn send(&mut self, index: Option<u64>, resp: &Response, corrupt: Option<u64>) {
        self.events.push_back(EventKind::Response {
            index: index.unwrap_or(u64::MAX),
            status: resp.status,
            reason: resp.reason.clone(),
            // As sent: `Response::encode` writes Content-Length last, except in a 1xx response.
            headers: resp
                .headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"))
                .map(|(n, v)| (n.into(), v.into()))
                .chain(
                    (resp.status >= 200)
                        .then(|| ("Content-Length".to_string(), resp.body.len().to_string())),
                )
                .collect(),
            content_type: resp.headers.get("Content-Type").map(str::to_string),
            body: resp.body.clone(),
        });
        let bytes = resp.encode();
        match self.channel.as_mut() {
            Some(channel) => {
                let mut sealed = channel.seal(&bytes);
                if let Some(seed) = corrupt {
                    // Past the 2-byte length, inside the first block's ciphertext and tag: the
                    // controller's tag check fails there (docs/protocols/hap.md, "The encrypted
                    // channel").
                    let first = 2 + bytes.len().min(BLOCK) + TAG_LEN;
                    let at = 2 + (seed % (first - 2) as u64) as usize;
                    sealed[at] ^= 0x01 << ((seed >> 32) % 8);
                    self.events.push_back(EventKind::Note {
                        message: format!("corrupt_encrypted_block: flipped sealed byte {at}"),
                    });
                }
                self.transmit.extend_from_slice(&sealed);
            }
            None => {
                if corrupt.is_some() {
                    self.events.push_back(EventKind::Note {
                        message: "corrupt_encrypted_block: response sent in the clear, left alone"
                            .into(),
                    });
                }
                self.transmit.extend_from_slice(&bytes);
            }
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

    /// `bytes` with its encrypted part decrypted, for captures (the core's
    /// [`DatagramHandler::plaintext`](crate::protocol_core::DatagramHandler::plaintext)).
    pub fn plaintext(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.request.handler.plaintext(bytes)
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

    /// A core whose `POST /pair` completes a pairing with a fixed secret (the connection is
    /// encrypted after its answer) and that answers everything else 200.
    struct Pairs;

    impl ProtocolCore for Pairs {
        type Conn = ();

        fn open(&self, _: &ConnInfo) {}

        fn handle(&self, _: &mut (), req: &Request, cx: &mut Context<'_>) -> Outcome {
            if req.path() == "/pair" {
                cx.encrypt_after = Some(vec![6; 32]);
            }
            let mut r = Response::new(req.protocol, 200).with_body("text/plain", b"ok".to_vec());
            self.decorate(&(), Some(req), &mut r, cx);
            Outcome::Respond(r)
        }

        fn complete(&self, _: &mut (), req: &Request, _: &[u16], _: &mut Context<'_>) -> Response {
            Response::new(req.protocol, 500)
        }

        fn decorate(&self, _: &(), req: Option<&Request>, resp: &mut Response, _: &Context<'_>) {
            if let Some(cseq) = req.and_then(Request::cseq) {
                resp.headers.set("CSeq", cseq);
            }
        }

        fn close(&self, _: ()) {}
    }

    #[test]
    fn corrupt_encrypted_block_breaks_only_the_sealed_answer_it_matches() {
        let mut conn = open(Arc::new(Pairs), plan(Action::CorruptEncryptedBlock), 0);
        // The pairing answer goes out in the clear: the fault matches it but leaves it alone.
        conn.receive(&rtsp("POST", "/pair", 1), t0());
        assert_eq!(only_answer(&mut conn).status, 200);
        let notes: Vec<EventKind> = events(&mut conn);
        assert!(notes
            .iter()
            .any(|e| matches!(e, EventKind::Note { message } if message.contains("left alone"))));
        let mut ctl = Channel::controller(&[6; 32]);
        conn.receive(&ctl.seal(&rtsp("GET", "/info", 2)), t0());
        let sealed = conn.poll_transmit().unwrap();
        assert!(ctl.open(&sealed).is_err(), "the tag check must fail");
        let after = events(&mut conn);
        assert!(after
            .iter()
            .any(|e| matches!(e, EventKind::Response { status: 200, .. })));
        assert!(after.iter().any(
            |e| matches!(e, EventKind::Note { message } if message.starts_with("corrupt_encrypted_block: flipped"))
        ));

        // Without the fault the same answer opens.
        let mut conn = open(Arc::new(Pairs), Arc::new(FaultPlan::empty()), 0);
        conn.receive(&rtsp("POST", "/pair", 1), t0());
        only_answer(&mut conn);
        let mut ctl = Channel::controller(&[6; 32]);
        conn.receive(&ctl.seal(&rtsp("GET", "/info", 2)), t0());
        let plain = ctl.open(&conn.poll_transmit().unwrap()).unwrap();
        assert!(plain.starts_with(b"RTSP/1.0 200"));
    }

    /// A core that asks for a TCP port and a UDP port on every request and answers with the
    /// numbers it got.
    struct Opens;

    impl ProtocolCore for Opens {
        type Conn = ();

        fn open(&self, _: &ConnInfo) {}

        fn handle(&self, _: &mut (), _: &Request, _: &mut Context<'_>) -> Outcome {
            let accept = crate::stream_core::Accept(Arc::new(|_: &ConnInfo| {
                unreachable!("no connection is accepted in this test")
            }));
            Outcome::OpenPorts(vec![
                PortRequest::Tcp(crate::protocol_core::TcpRequest {
                    name: "event",
                    protocol: "test",
                    accept,
                }),
                PortRequest::Udp(UdpRequest {
                    name: "data",
                    handler: Arc::new(Echo::default()),
                    lossy: true,
                }),
            ])
        }

        fn complete(
            &self,
            _: &mut (),
            req: &Request,
            ports: &[u16],
            _: &mut Context<'_>,
        ) -> Response {
            let mut r = Response::new(req.protocol, 200);
            r.headers.set("X-Ports", format!("{ports:?}"));
            r
        }

        fn decorate(&self, _: &(), _: Option<&Request>, _: &mut Response, _: &Context<'_>) {}

        fn close(&self, _: ()) {}
    }

    #[test]
    fn open_ports_asks_the_shell_for_tcp_and_udp_ports_in_order_then_answers() {
        let mut conn = open(Arc::new(Opens), Arc::new(FaultPlan::empty()), 0);
        conn.receive(&rtsp("SETUP", "rtsp://127.0.0.1/1", 1), t0());
        assert!(conn.poll_transmit().is_none(), "no answer before the ports");
        assert!(!conn.wants_read());
        let ports = conn.poll_ports().expect("ports requested");
        let kinds: Vec<&str> = ports
            .iter()
            .map(|p| match p {
                PortRequest::Tcp(t) => t.name,
                PortRequest::Udp(u) => u.name,
            })
            .collect();
        assert_eq!(kinds, ["event", "data"]);
        assert!(matches!(ports[0], PortRequest::Tcp(_)));
        conn.ports_opened(&[7100, 7101], t0());
        let resp = only_answer(&mut conn);
        assert_eq!(resp.headers.get("X-Ports"), Some("[7100, 7101]"));
        assert!(conn.wants_read());
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
    fn connections_that_grow_past_the_device_budget_are_answered_503_and_closed() {
        use crate::buffer_budget::{BufferBudget, Verdict};
        let budget = BufferBudget::new(1000);
        let svc = Arc::new(Plain::default());
        let mut a = open(svc.clone(), Arc::new(FaultPlan::empty()), 0);
        let mut b = open(svc, Arc::new(FaultPlan::empty()), 1);
        // Two half-sent bodies: each under its own cap (Limits), together over the budget.
        let head = b"POST /x HTTP/1.1\r\nContent-Length: 4000\r\n\r\n";
        a.receive(head, t0());
        a.receive(&[b'a'; 600], t0());
        assert_eq!(budget.account(0, a.buffered()), Verdict::Within);
        let held_a = a.buffered();
        b.receive(head, t0());
        b.receive(&[b'b'; 600], t0());
        assert_eq!(
            budget.account(0, b.buffered()),
            Verdict::Over { first: true }
        );
        let held_b = b.buffered();
        b.overloaded(t0());
        let r = only_answer(&mut b);
        assert_eq!((r.status, r.protocol), (503, Protocol::Http11));
        assert!(matches!(b.end_reason(), Some(End::Closed(why)) if why == "device buffers full"));
        assert_eq!(b.buffered(), 0);
        assert_eq!(budget.account(held_b, 0), Verdict::Within);
        // The other connection goes on: the rest of its body gets its answer.
        a.receive(&[b'a'; 3400], t0());
        assert_eq!(only_answer(&mut a).status, 200);
        assert!(a.end_reason().is_none());
        assert_eq!(budget.account(held_a, a.buffered()), Verdict::Within);
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

    fn http(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut r = Request::new(method, uri, Protocol::Http11);
        for (n, v) in headers {
            r.headers.set(n, *v);
        }
        r.body = body.to_vec();
        r.encode()
    }

    /// Every request the connection has to write (a reversed connection's pushes).
    fn pushes<S: ProtocolCore>(conn: &mut Connection<S>) -> Vec<Request> {
        let bytes = conn.poll_transmit().unwrap_or_default();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((req, used)) = wire::parse_request(&bytes[at..], &Limits::default())
            .expect("the connection writes well-framed requests")
        {
            out.push(req);
            at += used;
        }
        assert_eq!(at, bytes.len(), "trailing bytes after the requests");
        out
    }

    fn event_state(req: &Request) -> String {
        let v = plist::Value::from_reader(Cursor::new(&req.body)).unwrap();
        v.as_dictionary().unwrap()["state"]
            .as_string()
            .unwrap()
            .to_string()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    const REVERSE: [(&str, &str); 2] = [("Upgrade", "PTTH/1.0"), ("X-Apple-Session-ID", "S-7")];

    #[test]
    fn a_reversed_connection_pushes_each_state_change_and_reads_the_answers() {
        let svc = apple_tv();
        let none = Arc::new(FaultPlan::empty());
        let mut events_conn = open(svc.clone(), none.clone(), 0);
        events_conn.receive(&http("POST", "/reverse", &REVERSE, b""), t0());
        let up = only_answer(&mut events_conn);
        assert_eq!(up.status, 101);
        assert_eq!(up.headers.get("Upgrade"), Some("PTTH/1.0"));
        assert!(events_conn.is_reversed() && events_conn.wants_read());
        assert_eq!(
            events_conn.poll_timeout(),
            Some(t0() + Duration::from_millis(250))
        );
        let t1 = t0() + Duration::from_secs(1);
        events_conn.handle_timeout(t1);
        assert!(pushes(&mut events_conn).is_empty(), "nothing played yet");
        let waiting = events_conn.waits_for_change();
        assert_eq!(waiting, Some(svc.changes.revision()));

        let mut control = open(svc.clone(), none, 1);
        let play = b"Content-Location: http://x/a.mp4\nStart-Position: 0\n";
        control.receive(
            &http(
                "POST",
                "/play",
                &[("Content-Type", "text/parameters")],
                play,
            ),
            t1,
        );
        assert_eq!(only_answer(&mut control).status, 200);
        events_conn.handle_change(t1);
        let sent = pushes(&mut events_conn);
        assert_eq!(sent.len(), 1, "one event at a time");
        assert_eq!(
            (sent[0].method.as_str(), sent[0].uri.as_str()),
            ("POST", "/event")
        );
        assert_eq!(sent[0].headers.get("X-Apple-Session-ID"), Some("S-7"));
        assert_eq!(event_state(&sent[0]), "loading");
        assert_eq!(events_conn.waits_for_change(), None, "awaiting the answer");
        events_conn.receive(OK, t1);
        assert_eq!(event_state(&pushes(&mut events_conn)[0]), "playing");
        events_conn.receive(OK, t1);
        assert!(pushes(&mut events_conn).is_empty());
        control.receive(&http("POST", "/stop", &[], b""), t1);
        assert_eq!(only_answer(&mut control).status, 200);
        events_conn.handle_change(t1);
        assert_eq!(event_state(&pushes(&mut events_conn)[0]), "stopped");
        events_conn.receive(OK, t1);
        let recorded: Vec<String> = events(&mut events_conn)
            .iter()
            .filter_map(|e| match e {
                EventKind::Pushed { index, uri, .. } => Some(format!("pushed {index} {uri}")),
                EventKind::PushAnswered { index, status, .. } => {
                    Some(format!("answered {index} {status}"))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            recorded,
            [
                "pushed 0 /event",
                "answered 0 200",
                "pushed 1 /event",
                "answered 1 200",
                "pushed 2 /event",
                "answered 2 200"
            ]
        );
        let state = svc.state_json(t1);
        assert_eq!(
            state["event_channel"]["pushed"],
            serde_json::json!(["loading", "playing", "stopped"])
        );
        assert_eq!(state["event_channel"]["answered"], 3);
        events_conn.receive_eof();
        assert_eq!(
            events_conn.end_reason(),
            Some(&End::Closed("peer closed the reversed connection".into()))
        );
    }

    /// An Apple TV connection turned into an event channel by `POST /reverse`, after which a
    /// 3 s video starts playing at t0 + 1 s; the channel has been told of the change.
    fn reversed_then_playing(
        faults: Arc<FaultPlan>,
    ) -> (Arc<AirplayCore>, Connection<AirplayCore>, SystemTime) {
        let svc = apple_tv();
        let mut conn = open(svc.clone(), faults, 0);
        conn.receive(&http("POST", "/reverse", &REVERSE, b""), t0());
        assert_eq!(only_answer(&mut conn).status, 101);
        let t1 = t0() + Duration::from_secs(1);
        svc.state.lock().unwrap().video.play(
            b"Content-Location: http://x/a.mp4\n",
            "text/parameters",
            3.0,
            t1,
        );
        svc.changes.bump();
        conn.handle_change(t1);
        (svc, conn, t1)
    }

    #[test]
    fn a_video_reaching_its_end_is_pushed_as_stopped_at_the_timer() {
        let (_, mut conn, t1) = reversed_then_playing(Arc::new(FaultPlan::empty()));
        assert_eq!(event_state(&pushes(&mut conn)[0]), "loading");
        conn.receive(OK, t1);
        assert_eq!(event_state(&pushes(&mut conn)[0]), "playing");
        conn.receive(OK, t1);
        let end = t1 + Duration::from_secs(3) + Duration::from_millis(1);
        assert_eq!(conn.poll_timeout(), Some(end));
        conn.handle_timeout(end - Duration::from_millis(2));
        assert!(pushes(&mut conn).is_empty());
        conn.handle_timeout(end);
        assert_eq!(event_state(&pushes(&mut conn)[0]), "stopped");
    }

    #[test]
    fn drop_event_channel_closes_the_channel_instead_of_the_next_event() {
        let (svc, mut conn, t1) = reversed_then_playing(plan(Action::DropEventChannel(1)));
        assert_eq!(event_state(&pushes(&mut conn)[0]), "loading");
        conn.receive(OK, t1);
        assert!(pushes(&mut conn).is_empty());
        assert_eq!(
            conn.end_reason(),
            Some(&End::Closed("event channel dropped by fault".into()))
        );
        assert_eq!(svc.state_json(t1)["event_channel"]["dropped"], 1);
    }

    #[test]
    fn reverse_without_the_ptth_upgrade_is_refused() {
        let mut conn = open(apple_tv(), Arc::new(FaultPlan::empty()), 0);
        conn.receive(&http("POST", "/reverse", &[], b""), t0());
        assert_eq!(only_answer(&mut conn).status, 400);
        assert!(!conn.is_reversed());
    }

    fn warnings_of(events: &[EventKind]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::Warning { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bare_lf_requests_are_answered_with_a_warning() {
        let mut conn = open(apple_tv(), Arc::new(FaultPlan::empty()), 0);
        conn.receive(
            b"GET /playback-info HTTP/1.1\nUser-Agent: MediaControl/1.0\nContent-Length: 0\n\n",
            t0(),
        );
        assert_eq!(only_answer(&mut conn).status, 200);
        assert_eq!(
            warnings_of(&events(&mut conn)),
            ["framing: request 0 ends lines with a bare LF instead of CRLF; accepted"]
        );
    }

    #[test]
    fn an_empty_uri_teardown_ends_the_raop_session_with_a_warning() {
        let svc = Arc::new(RaopCore::new(RaopConfig::airport_express("apx")));
        let mut conn = open(svc, Arc::new(FaultPlan::empty()), 0);
        conn.receive(b"TEARDOWN  RTSP/1.0\r\nCSeq: 7\r\n\r\n", t0());
        let r = only_answer(&mut conn);
        assert_eq!((r.status, r.headers.get("CSeq")), (200, Some("7")));
        assert_eq!(
            conn.end_reason(),
            Some(&End::Closed("closed by device".into()))
        );
        assert_eq!(
            warnings_of(&events(&mut conn)),
            ["framing: request 0 (TEARDOWN) has an empty request URI; accepted"]
        );
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
    fn library_item_missing_keeps_the_item_listed_and_its_artwork_404() {
        let mut cfg = DacpConfig::itunes("lib", t0());
        cfg.artwork = vec![Some(b"png".to_vec())];
        let svc = Arc::new(DacpCore::new(cfg));
        let mut conn = open(svc, plan(Action::LibraryItemMissing(1)), 0);
        conn.receive(&http_get("/login"), t0());
        let login = dmap::decode(&only_answer(&mut conn).body).unwrap();
        let sid = dmap::first(&login, &[b"mlog", b"mlid"])
            .and_then(dmap::Value::as_int)
            .unwrap();
        conn.receive(
            &http_get(&format!("/databases/1/items?session-id={sid}")),
            t0(),
        );
        let items = dmap::decode(&only_answer(&mut conn).body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"adbs", b"mlcl", b"mlit", b"miid"]),
            Some(&dmap::Value::Int(1))
        );
        conn.receive(
            &http_get(&format!(
                "/databases/1/items/1/extra_data/artwork?session-id={sid}"
            )),
            t0(),
        );
        assert_eq!(only_answer(&mut conn).status, 404);
        assert!(events(&mut conn).iter().any(|e| matches!(
            e,
            EventKind::Fault { action, .. } if action.contains("library_item_missing 1")
        )));
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

    /// A RAOP receiver with a clear L16 session set up over TCP on connection 0: the core, the
    /// connection, and the SETUP answer.
    fn raop_over_tcp(plan: Arc<FaultPlan>) -> (Arc<RaopCore>, Connection<RaopCore>, Response) {
        let svc = Arc::new(RaopCore::new(RaopConfig::airport_express("apx")));
        let (conn, setup) = setup_over_tcp(svc.clone(), plan);
        (svc, conn, setup)
    }

    /// Connection 0 of `svc` after ANNOUNCE (clear L16) and a SETUP asking for RTP over TCP, and
    /// the SETUP answer.
    fn setup_over_tcp<S: ProtocolCore>(
        svc: Arc<S>,
        plan: Arc<FaultPlan>,
    ) -> (Connection<S>, Response) {
        let mut conn = open(svc, plan, 0);
        let mut announce = testkit::rtsp("ANNOUNCE", "rtsp://127.0.0.1/1", 1);
        testkit::body_for("ANNOUNCE", &mut announce);
        let mut setup = testkit::rtsp("SETUP", "rtsp://127.0.0.1/1", 2);
        setup.headers.set(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        );
        conn.receive(&announce.encode(), t0());
        conn.receive(&setup.encode(), t0());
        let mut all = answers(&mut conn);
        assert_eq!(all.len(), 2, "{all:?}");
        (conn, all.remove(1))
    }

    #[test]
    fn the_apple_tv_takes_interleaved_audio_as_its_raop_receiver() {
        let svc = apple_tv();
        let (mut conn, setup) = setup_over_tcp(svc.clone(), Arc::new(FaultPlan::empty()));
        assert_eq!(setup.status, 200);
        let (frames, samples) = interleaved_audio(2);
        conn.receive(&frames, t0());
        assert_eq!(svc.raop.state.lock().unwrap().captured_pcm(), samples);
    }

    /// `packets` RTP audio packets of 352 stereo L16 frames, each in an interleaved frame on
    /// channel 0, and the samples they carry.
    fn interleaved_audio(packets: usize) -> (Vec<u8>, Vec<i16>) {
        let samples: Vec<i16> = (0..packets * 352 * 2)
            .map(|i| (i as i16).wrapping_mul(37))
            .collect();
        let mut rtp = crate::raop::sender::RtpSender::new(100, 0, 7, None);
        let mut bytes = Vec::new();
        for chunk in samples.chunks(352 * 2) {
            let packet = rtp.next_packet(&crate::raop::audio::encode_l16(chunk), 352);
            bytes.extend(interleaved::encode(0, &packet));
        }
        (bytes, samples)
    }

    #[test]
    fn setup_over_tcp_answers_the_rtsp_port_as_server_port() {
        let (_, _, setup) = raop_over_tcp(Arc::new(FaultPlan::empty()));
        assert_eq!(setup.status, 200);
        assert_eq!(
            setup.headers.get("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record;server_port=5000")
        );
    }

    proptest::proptest! {
        /// RFC 2326 §10.12: frames between requests on the RTSP connection, delivered in pieces
        /// cut at any bytes, reach the session's capture whole and in order; the requests around
        /// them are answered.
        #[test]
        fn interleaved_frames_split_anywhere_reach_the_capture(
            cuts in proptest::collection::vec(0usize..6000, 0..12),
        ) {
            let (svc, mut conn, _) = raop_over_tcp(Arc::new(FaultPlan::empty()));
            let (frames, samples) = interleaved_audio(4);
            let mut stream = testkit::rtsp("RECORD", "rtsp://127.0.0.1/1", 3).encode();
            stream.extend(&frames);
            stream.extend(testkit::rtsp("OPTIONS", "*", 4).encode());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                conn.receive(&stream[at..cut], t0());
                at = cut;
            }
            let statuses: Vec<u16> = answers(&mut conn).iter().map(|r| r.status).collect();
            proptest::prop_assert_eq!(statuses, vec![200, 200]);
            let st = svc.state.lock().unwrap();
            proptest::prop_assert_eq!(st.captured_pcm(), samples);
            proptest::prop_assert_eq!(conn.end_reason(), None);
        }
    }

    #[test]
    fn frames_on_a_second_connection_go_to_the_session_set_up_over_tcp() {
        let (svc, mut rtsp_conn, _) = raop_over_tcp(Arc::new(FaultPlan::empty()));
        let mut audio = open(svc.clone(), Arc::new(FaultPlan::empty()), 1);
        let (frames, samples) = interleaved_audio(3);
        audio.receive(&frames, t0());
        assert_eq!(audio.poll_transmit(), None, "frames get no answer");
        let notes: Vec<String> = events(&mut audio)
            .into_iter()
            .filter_map(|e| match e {
                EventKind::Note { message } => Some(message),
                EventKind::Warning { message } => panic!("warning: {message}"),
                _ => None,
            })
            .collect();
        assert_eq!(notes, ["interleaved RTP on channel 0 (RFC 2326 §10.12)"]);
        assert_eq!(svc.state.lock().unwrap().captured_pcm(), samples);
        rtsp_conn.receive(&rtsp("TEARDOWN", "rtsp://127.0.0.1/1", 3), t0());
        assert_eq!(only_answer(&mut rtsp_conn).status, 200);
        assert!(svc.state.lock().unwrap().interleaved_to.is_none());
    }

    #[test]
    fn a_dollar_without_a_tcp_session_is_a_malformed_request() {
        // Nothing on the device set up RTP/AVP/TCP, so `$` cannot start a frame: the bytes get
        // the answer any junk gets, and the connection does not wait for a frame's length.
        let svc = Arc::new(RaopCore::new(RaopConfig::airport_express("apx")));
        let mut conn = open(svc, Arc::new(FaultPlan::empty()), 0);
        let (frames, _) = interleaved_audio(2);
        conn.receive(&frames, t0());
        assert_eq!(only_answer(&mut conn).status, 400);
        assert!(
            conn.end_reason().is_some(),
            "closed after the framing error"
        );
    }

    #[test]
    fn cut_interleaved_resets_the_connection_halfway_through_the_next_frame() {
        let (svc, mut conn, _) = raop_over_tcp(plan(Action::CutInterleaved(2)));
        let (frames, samples) = interleaved_audio(4);
        let one = frames.len() / 4;
        conn.receive(&frames[..2 * one + one / 2], t0());
        assert_eq!(conn.end_reason(), Some(&End::Reset));
        assert_eq!(
            fault_actions(&events(&mut conn)),
            ["cut_interleaved after 2 frame(s)"]
        );
        conn.receive(&frames[2 * one + one / 2..], t0());
        assert_eq!(
            svc.state.lock().unwrap().captured_pcm(),
            samples[..2 * 352 * 2],
            "the two frames before the cut are kept"
        );
    }
}
