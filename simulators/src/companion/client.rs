//! The client side of a Companion connection, sans-IO: it makes the frames a client sends
//! (pairing data under `_pd`, requests and events with increasing `_x`, OPACK with
//! back-references as pyatv writes it) and reads the device's frames, checking what pyatv lets
//! pass: every tag, every frame's type, and that a response answers the request it follows.

use super::frame::{Frame, FrameError, FrameType, Reader};
use super::message::{Message, MessageError};
use super::opack::{self, OpackError, Value};
use super::session::{self, Session};

/// What the device sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A pairing answer: its frame type and the TLV8 under `_pd`.
    Pairing {
        kind: FrameType,
        tlv: Vec<u8>,
    },
    Message(Message),
    NoOp,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("frame {0} from the device does not authenticate (bad MAC)")]
    Tag(u64),
    #[error("{0}")]
    Opack(#[from] OpackError),
    #[error("{0}")]
    Message(#[from] MessageError),
    #[error("{kind} frame without `_pd` pairing data")]
    NoPairingData { kind: String },
    #[error("{0} frame where the device should send OPACK")]
    UnexpectedFrame(String),
}

/// One client connection's framing and encryption.
pub struct Client {
    reader: Reader,
    session: Option<Session>,
    xid: i64,
    read: u64,
}

impl Client {
    /// `first_xid`: the `_x` of the first request (pyatv draws it at random).
    pub fn new(first_xid: i64) -> Self {
        Client {
            reader: Reader::new(super::server::MAX_FRAME),
            session: None,
            xid: first_xid,
            read: 0,
        }
    }

    /// From now on frames are encrypted with keys from the pair-verify secret `shared`.
    pub fn encrypt(&mut self, shared: &[u8]) {
        self.session = Some(Session::client(shared));
    }

    fn frame(&mut self, kind: FrameType, value: &Value) -> Result<Vec<u8>, ClientError> {
        let payload = opack::encode_with_references(value);
        Ok(match self.session.as_mut() {
            Some(s) => s.seal(kind, &payload)?,
            None => session::plain(kind, &payload)?,
        })
    }

    /// A pair-setup (`_pwTy` 1) or pair-verify (`_auTy` 4 on the first) frame.
    pub fn pairing(&mut self, kind: FrameType, tlv: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut pairs = vec![("_pd", Value::Bytes(tlv.to_vec()))];
        match kind {
            FrameType::PsStart | FrameType::PsNext => pairs.push(("_pwTy", Value::Int(1))),
            FrameType::PvStart => pairs.push(("_auTy", Value::Int(4))),
            _ => {}
        }
        self.frame(kind, &Value::dict(pairs))
    }

    /// A request; gives its `_x` and the frame.
    pub fn request(&mut self, name: &str, content: Value) -> Result<(i64, Vec<u8>), ClientError> {
        let xid = self.xid;
        self.xid += 1;
        let bytes = self.frame(
            FrameType::EOpack,
            &Message::request(name, content, xid).to_value(),
        )?;
        Ok((xid, bytes))
    }

    /// An event (no answer comes).
    pub fn event(&mut self, name: &str, content: Value) -> Result<Vec<u8>, ClientError> {
        let xid = self.xid;
        self.xid += 1;
        self.frame(
            FrameType::EOpack,
            &Message::event(name, content, xid).to_value(),
        )
    }

    /// Bytes read from the device.
    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    /// The next complete thing the device sent.
    pub fn next_incoming(&mut self) -> Result<Option<Incoming>, ClientError> {
        let Some(frame) = self.reader.next_frame()? else {
            return Ok(None);
        };
        let n = self.read;
        self.read += 1;
        let kind = frame.kind();
        let payload = self.open(&frame).ok_or(ClientError::Tag(n))?;
        if kind == FrameType::NoOp {
            return Ok(Some(Incoming::NoOp));
        }
        let value = opack::decode(&payload)?;
        match kind {
            FrameType::PsNext | FrameType::PvNext => {
                let tlv = value
                    .get("_pd")
                    .and_then(Value::as_bytes)
                    .ok_or_else(|| ClientError::NoPairingData { kind: kind.name() })?;
                Ok(Some(Incoming::Pairing {
                    kind,
                    tlv: tlv.to_vec(),
                }))
            }
            FrameType::EOpack | FrameType::UOpack | FrameType::POpack => {
                Ok(Some(Incoming::Message(Message::from_value(&value)?)))
            }
            other => Err(ClientError::UnexpectedFrame(other.name())),
        }
    }

    fn open(&mut self, frame: &Frame) -> Option<Vec<u8>> {
        match self.session.as_mut() {
            Some(s) => s.open(frame).ok(),
            None => Some(frame.payload.clone()),
        }
    }
}
