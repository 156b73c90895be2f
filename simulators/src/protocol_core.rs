//! The contract between a device's protocol core and the I/O shell that carries it.
//!
//! A core is sans-IO: it gets a parsed [`Request`] with a [`Context`] (who is connected, the time,
//! the fault parameters) and gives back an [`Outcome`]. It never touches a socket or a clock; the
//! shell (`crate::shell`) reads and writes bytes, applies the fault seam, and records events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::fault::CoreParams;
use crate::wire::{Request, Response};

/// Entries a core keeps of a history list in its state (commands carried out, logins, FairPlay
/// modes): the latest ones, so a device that runs for days stays flat while a scenario (far
/// shorter) sees them all.
pub const HISTORY_KEPT: usize = 1000;

/// Appends `item` to a history list, forgetting the oldest entry beyond [`HISTORY_KEPT`].
pub fn remember<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= HISTORY_KEPT {
        list.drain(..=list.len() - HISTORY_KEPT);
    }
    list.push(item);
}

/// Facts about one TCP connection, fixed for its life.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub device: Arc<str>,
    /// Index of this connection at the device, 0 for the first.
    pub index: u64,
    pub peer: SocketAddr,
    /// The device's end of the socket: the address a RAOP receiver signs into `Apple-Response`.
    pub local: SocketAddr,
}

/// Per-request input beside the request itself.
#[derive(Debug)]
pub struct Context<'a> {
    pub conn: &'a ConnInfo,
    /// Wall-clock time, passed in so cores stay deterministic under test.
    pub now: SystemTime,
    /// Fault parameters the core reads (e.g. `sign_with`).
    pub params: &'a CoreParams,
    /// Protocol warnings and notes for the transcript.
    pub notes: Vec<Note>,
    /// Set by a core whose answer completes a HomeKit pairing: once that answer is sent, the
    /// connection is encrypted with keys from this shared secret (docs/protocols/hap.md, "The
    /// encrypted channel").
    pub encrypt_after: Option<Vec<u8>>,
}

/// Something the core wants in the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Input a real device would not expect; expectations can forbid these.
    Warning(String),
    Info(String),
}

impl<'a> Context<'a> {
    pub fn new(conn: &'a ConnInfo, now: SystemTime, params: &'a CoreParams) -> Self {
        Context {
            conn,
            now,
            params,
            notes: Vec::new(),
            encrypt_after: None,
        }
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.notes.push(Note::Warning(message.into()));
    }

    pub fn info(&mut self, message: impl Into<String>) {
        self.notes.push(Note::Info(message.into()));
    }

    /// Answers `req` with `response`, whose status says it was refused, giving `why` as the reason
    /// phrase (RFC 2326 §7.1.1, RFC 7230 §3.1.2) and as a warning for the transcript.
    pub fn refuse(&mut self, req: &Request, response: Response, why: &str) -> Outcome {
        let status = response.status;
        self.warn(format!("{} {}: {status} {why}", req.method, req.path()));
        Outcome::Respond(response.with_reason_text(why))
    }
}

/// Receives datagrams on a UDP port the core asked the shell to open.
pub trait DatagramHandler: Send + Sync {
    /// Handles one datagram from `from`; returns datagrams to send back to `from`.
    fn on_datagram(&self, bytes: &[u8], from: SocketAddr, now: SystemTime) -> Vec<Vec<u8>>;

    /// The datagram with its encrypted part decrypted, for captures ([`crate::packet_log`]);
    /// `None` (the default): it is not encrypted, or cannot be read.
    fn plaintext(&self, _bytes: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// A UDP port a core needs, named for the transcript and the answer (`server`, `control`, `timing`).
pub struct UdpRequest {
    pub name: &'static str,
    pub handler: Arc<dyn DatagramHandler>,
    /// Whether the fault seam may lose datagrams arriving here (`lose_packets`).
    pub lossy: bool,
}

/// A TCP port a core needs beside its own (the AirPlay 2 event channel, docs/protocols/airplay.md
/// "AirPlay 2 audio"): the shell listens on the device's address, and drives every connection it
/// accepts there with the [`StreamConn`](crate::stream_core::StreamConn) that `accept` makes,
/// through the same fault seam as the device's own streams. The listener stops when the
/// connection that asked for it ends.
pub struct TcpRequest {
    /// The port's name for the transcript and the answer (`event`).
    pub name: &'static str,
    /// What the transcript calls the framing on that port.
    pub protocol: &'static str,
    pub accept: crate::stream_core::Accept,
}

/// A port a core asks the shell to open, UDP or TCP.
pub enum PortRequest {
    Udp(UdpRequest),
    Tcp(TcpRequest),
}

/// What a core does with one request.
pub enum Outcome {
    /// Send this response.
    Respond(Response),
    /// Open these UDP ports on the device's address, then call [`ProtocolCore::complete`] with their
    /// port numbers, in order, to get the response (RAOP SETUP).
    OpenUdp(Vec<UdpRequest>),
    /// Open these ports, UDP or TCP, then call [`ProtocolCore::complete`] with their port numbers,
    /// in order (AirPlay 2 SETUP: the event channel, the audio data and control ports).
    OpenPorts(Vec<PortRequest>),
    /// Send this response, then close the connection.
    RespondAndClose(Response),
    /// Answer later (a long poll, a slow device). The shell waits until the device's [`Changes`]
    /// revision differs from `after_revision`, or `until` (wall-clock) arrives, whichever is
    /// first, then calls [`ProtocolCore::resume`] with the same request, which may wait again. With
    /// neither set it waits until the device stops. While waiting the shell keeps reading, so a
    /// peer that goes away ends the wait; bytes it sends meanwhile are kept for the next request.
    Wait {
        after_revision: Option<u64>,
        until: Option<SystemTime>,
    },
    /// Send this response (`101 Switching Protocols` to `Upgrade: PTTH/1.0`), after which the
    /// connection runs the other way: the device sends the requests [`ProtocolCore::push`] gives,
    /// one at a time, and reads the peer's response to each (reverse HTTP,
    /// docs/protocols/airplay.md, "The reverse event channel").
    Reverse(Response),
}

/// What a core sends next on a reversed connection ([`Outcome::Reverse`]).
#[derive(Debug)]
pub enum Push {
    /// Send this request; the driver reads its response before asking again.
    Send(Request),
    /// Nothing to send now: ask again when the core's [`Changes`] revision moves, or at `until`.
    Idle { until: Option<SystemTime> },
    /// Close the connection for this reason.
    Close(String),
}

/// Called with the new revision on every [`Changes::bump`]; the shell registers one to wake its
/// waiting answers.
pub type Wake = Arc<dyn Fn(u64) + Send + Sync>;

/// A revision counter a core bumps when its state changes, so that deferred answers
/// ([`Outcome::Wait`]) wake up. Cores only bump and read it; the shell owns the waiting, through a
/// [`Wake`] callback it registers when it starts the device.
#[derive(Clone, Default)]
pub struct Changes(Arc<ChangesInner>);

#[derive(Default)]
struct ChangesInner {
    revision: AtomicU64,
    wakers: Mutex<Vec<Wake>>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// Marks a change: the revision goes up and every registered [`Wake`] runs.
    pub fn bump(&self) {
        let revision = self
            .0
            .revision
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        let wakers = self
            .0
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for wake in wakers {
            wake(revision);
        }
    }

    /// The current revision: 0 until the first bump.
    pub fn revision(&self) -> u64 {
        self.0.revision.load(Ordering::SeqCst)
    }

    /// Runs `wake` with the new revision on every later bump.
    pub fn on_change(&self, wake: Wake) {
        self.0
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(wake);
    }
}

/// A device's protocol core as a TCP shell drives it.
pub trait ProtocolCore: Send + Sync + 'static {
    /// Per-connection state.
    type Conn: Send + 'static;

    /// Called when a connection is accepted.
    fn open(&self, conn: &ConnInfo) -> Self::Conn;

    /// Handles one request.
    fn handle(&self, state: &mut Self::Conn, req: &Request, cx: &mut Context<'_>) -> Outcome;

    /// Finishes a request that asked for UDP ports.
    fn complete(
        &self,
        state: &mut Self::Conn,
        req: &Request,
        ports: &[u16],
        cx: &mut Context<'_>,
    ) -> Response;

    /// The revision counter [`Outcome::Wait`]'s `after_revision` refers to, for cores that wait
    /// on their own state changes.
    fn changes(&self) -> Option<&Changes> {
        None
    }

    /// Called again for a request the core answered with [`Outcome::Wait`], once the wait is over.
    /// Cores that never wait keep this default.
    fn resume(&self, state: &mut Self::Conn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let _ = (state, cx);
        Outcome::Respond(
            Response::new(req.protocol, 500).with_reason_text("this device never defers an answer"),
        )
    }

    /// Whether a `$` where a request would start is an interleaved frame (RFC 2326 §10.12) on
    /// this connection: only once an `RTP/AVP/TCP` session is set up on the device
    /// (docs/protocols/raop.md, "RTP over TCP"). Otherwise the byte starts a malformed request
    /// and gets the framing error any junk gets. Cores that carry no RTP over TCP keep this
    /// default.
    fn accepts_interleaved(&self, state: &Self::Conn) -> bool {
        let _ = state;
        false
    }

    /// One interleaved frame (RFC 2326 §10.12) received on this connection where a request would
    /// start: `payload` is an RTP or RTCP packet on `channel`. `Err` says why it was not used; the
    /// connection records the first such reason as a warning. Cores that carry no RTP over TCP
    /// keep this default.
    fn interleaved(
        &self,
        state: &mut Self::Conn,
        channel: u8,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        let _ = (state, channel, payload, now);
        Err("this device takes no interleaved RTP".into())
    }

    /// The payload of an interleaved frame this connection took, with its encrypted part
    /// decrypted, for captures ([`crate::packet_log`]); `None` (the default): not encrypted, or
    /// not readable. Called after [`ProtocolCore::interleaved`] took the frame.
    fn interleaved_plaintext(
        &self,
        state: &mut Self::Conn,
        channel: u8,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let _ = (state, channel, payload);
        None
    }

    /// Adds the headers every response of this device carries (e.g. RTSP `CSeq`, `Server`) to
    /// responses the core did not make: fault `respond` answers and framing errors.
    fn decorate(
        &self,
        state: &Self::Conn,
        req: Option<&Request>,
        resp: &mut Response,
        cx: &Context<'_>,
    );

    /// Called when the connection ends, whatever the reason.
    fn close(&self, state: Self::Conn);

    /// On a reversed connection ([`Outcome::Reverse`]): the next request the device sends. Called
    /// once the connection is reversed, after each response the peer sends, when the revision
    /// moves and at the time of [`Push::Idle`]. Cores that never reverse keep this default.
    fn push(&self, state: &mut Self::Conn, cx: &mut Context<'_>) -> Push {
        let _ = (state, cx);
        Push::Close("this device never reverses a connection".into())
    }

    /// On a reversed connection: the peer's `response` to the pushed request `pushed`.
    fn pushed_answer(
        &self,
        state: &mut Self::Conn,
        pushed: &Request,
        response: &Response,
        cx: &mut Context<'_>,
    ) {
        let _ = (state, pushed, response, cx);
    }

    /// A response of this device with `status` and the headers all its responses carry
    /// ([`ProtocolCore::decorate`]).
    fn respond(&self, conn: &Self::Conn, req: &Request, status: u16, cx: &Context<'_>) -> Response {
        let mut r = Response::new(req.protocol, status);
        self.decorate(conn, Some(req), &mut r, cx);
        r
    }

    /// Refuses `req` with `status`, its reason phrase `why`, noted as a protocol warning.
    fn refuse(
        &self,
        conn: &Self::Conn,
        req: &Request,
        status: u16,
        why: &str,
        cx: &mut Context<'_>,
    ) -> Outcome {
        let response = self.respond(conn, req, status, cx);
        cx.refuse(req, response, why)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::{remember, Changes, HISTORY_KEPT};

    #[test]
    fn a_history_list_keeps_the_latest_entries() {
        let mut list = Vec::new();
        for i in 0..HISTORY_KEPT + 10 {
            remember(&mut list, i);
        }
        assert_eq!(list.len(), HISTORY_KEPT);
        assert_eq!((list[0], *list.last().unwrap()), (10, HISTORY_KEPT + 9));
    }

    #[test]
    fn a_bump_raises_the_revision_and_calls_every_wake_with_it() {
        let changes = Changes::default();
        assert_eq!(changes.revision(), 0);
        let seen = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        for _ in 0..2 {
            let (seen, calls) = (seen.clone(), calls.clone());
            changes.on_change(Arc::new(move |revision| {
                seen.store(revision, Ordering::SeqCst);
                calls.fetch_add(1, Ordering::SeqCst);
            }));
        }
        changes.clone().bump();
        assert_eq!(changes.revision(), 1, "clones share the counter");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
