//! The contract of a byte-stream core: a protocol whose connection is not a sequence of parsed
//! HTTP/RTSP requests but its own framing (the Spotify access point's hello packets and Shannon
//! frames). The core frames and decodes; it hands out what it writes as named transmits, so the
//! driver ([`crate::stream_connection`]) can apply the fault seam to each one by name, and
//! describes every decoded frame as a [`StreamEvent`] for the transcript. Like
//! [`crate::protocol_core::ProtocolCore`] it never touches a socket or a clock.

use std::time::SystemTime;

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
    /// The next event, in order.
    fn poll_event(&mut self) -> Option<StreamEvent>;
    /// When [`StreamConn::handle_timeout`] is next due.
    fn poll_timeout(&self) -> Option<SystemTime>;
    /// Whether the core is done with the connection.
    fn is_closed(&self) -> bool;
}
