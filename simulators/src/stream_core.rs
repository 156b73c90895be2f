//! The contract of a byte-stream core: a protocol whose connection is not a sequence of parsed
//! HTTP/RTSP requests but its own framing (the Spotify access point's hello packets and Shannon
//! frames). The core frames and decodes; it hands out what it writes as named transmits, so the
//! driver ([`crate::stream_connection`]) can apply the fault seam to each one by name, and
//! describes every decoded frame as a [`StreamEvent`] for the transcript. Like
//! [`crate::protocol_core::ProtocolCore`] it never touches a socket or a clock.

use std::sync::Arc;
use std::time::SystemTime;

use crate::fault::CoreParams;
use crate::protocol_core::ConnInfo;

/// Bytes the core wants written, named by the frame or command they carry (`APResponseMessage`,
/// `APWelcome`, `Ping`…): the name is what a fault's `match.method` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTransmit {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a stream core reports besides bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A frame decoded from the peer: its name, payload length and fields as text.
    Received {
        name: String,
        len: usize,
        fields: String,
    },
    /// A frame the core made (before the fault seam acts on its bytes).
    Sent {
        name: String,
        len: usize,
        fields: String,
    },
    /// Input a real device would not expect.
    Warning(String),
    /// A state change worth showing (a login, a refusal).
    Note(String),
    /// The core closes the connection once its pending transmits are written.
    Close(String),
}

/// A message of a connection as it reads decrypted, for captures ([`crate::packet_log`]): the
/// core's own layout of it (for the Spotify access point, the hello packets as sent, and each
/// Shannon frame as command byte, 2-byte big-endian length and payload, without its MAC;
/// docs/protocols/spotify-ap.md "Shannon frames").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// Whether the peer sent it (else the core made it, before the fault seam acts on its bytes).
    pub from_peer: bool,
    pub bytes: Vec<u8>,
}

/// A byte-stream protocol core, shared by all its connections.
pub trait StreamCore: Send + Sync + 'static {
    /// Per-connection state.
    type Conn: StreamConn;

    /// Called when a connection is accepted.
    fn open(&self, conn: &ConnInfo) -> Self::Conn;
}

/// One connection of a [`StreamCore`], sans-IO.
pub trait StreamConn: Send + 'static {
    /// Bytes read from the peer at `now`, split anywhere.
    fn handle_input(&mut self, bytes: &[u8], now: SystemTime);
    /// The time is `now`: the deadline of [`StreamConn::poll_timeout`] may be due.
    fn handle_timeout(&mut self, now: SystemTime);
    /// The next bytes to write, in order.
    fn poll_transmit(&mut self) -> Option<NamedTransmit>;
    /// The name of the next transmit before it is made, for a core that makes an answer only
    /// when it is due: the driver then asks the fault seam about that name first and hands the
    /// parameters of the matching faults to [`StreamConn::prepare`] before polling it. `None`
    /// (the default): the core makes its transmits eagerly and the seam sees them made.
    fn next_transmit(&mut self) -> Option<String> {
        None
    }
    /// The fault parameters of the transmit [`StreamConn::next_transmit`] named.
    fn prepare(&mut self, _params: &CoreParams) {}
    /// The next event, in order.
    fn poll_event(&mut self) -> Option<StreamEvent>;
    /// When [`StreamConn::handle_timeout`] is next due.
    fn poll_timeout(&self) -> Option<SystemTime>;
    /// Whether the core is done with the connection.
    fn is_closed(&self) -> bool;
    /// From now on, keep each message's [`Plaintext`] for [`StreamConn::poll_plaintext`] (a core
    /// whose wire is not encrypted keeps nothing: the default).
    fn log_plaintext(&mut self) {}
    /// The next message kept since [`StreamConn::log_plaintext`], in order.
    fn poll_plaintext(&mut self) -> Option<Plaintext> {
        None
    }
    /// Whether the driver closes the connection after its idle timeout (the default). A
    /// connection that may rightly stay silent for hours (the MRP data stream while nothing
    /// changes, docs/protocols/mrp.md, "Data frames") says no.
    fn idles_out(&self) -> bool {
        true
    }
}

/// Makes the connection state of a port a core opened at run time
/// ([`crate::protocol_core::TcpRequest`]); the shell serves that port as a [`StreamCore`].
#[derive(Clone)]
pub struct Accept(pub Arc<AcceptFn>);

/// The function behind [`Accept`].
pub type AcceptFn = dyn Fn(&ConnInfo) -> Box<dyn StreamConn> + Send + Sync;

impl StreamCore for Accept {
    type Conn = Box<dyn StreamConn>;

    fn open(&self, conn: &ConnInfo) -> Box<dyn StreamConn> {
        (self.0)(conn)
    }
}

impl StreamConn for Box<dyn StreamConn> {
    fn handle_input(&mut self, bytes: &[u8], now: SystemTime) {
        (**self).handle_input(bytes, now)
    }
    fn handle_timeout(&mut self, now: SystemTime) {
        (**self).handle_timeout(now)
    }
    fn poll_transmit(&mut self) -> Option<NamedTransmit> {
        (**self).poll_transmit()
    }
    fn poll_event(&mut self) -> Option<StreamEvent> {
        (**self).poll_event()
    }
    fn poll_timeout(&self) -> Option<SystemTime> {
        (**self).poll_timeout()
    }
    fn is_closed(&self) -> bool {
        (**self).is_closed()
    }
    fn log_plaintext(&mut self) {
        (**self).log_plaintext()
    }
    fn poll_plaintext(&mut self) -> Option<Plaintext> {
        (**self).poll_plaintext()
    }
    fn idles_out(&self) -> bool {
        (**self).idles_out()
    }
}
