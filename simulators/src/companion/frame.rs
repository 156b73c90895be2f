//! Companion framing (docs/protocols/companion.md, "Frames"): a 4-byte header, the frame type
//! and the payload length as 3 bytes big-endian, then the payload. On an encrypted connection the
//! payload is ciphertext and the 16-byte tag, the length counts the tag, and the header is the
//! AEAD's associated data; an empty payload is sent as is.

use thiserror::Error;

/// Length of the header.
pub const HEADER_LEN: usize = 4;
/// Largest payload the 3-byte length can say.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// The frame types a client and a device exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    NoOp,
    /// Pair-setup, first message.
    PsStart,
    /// Pair-setup, every later message and every answer.
    PsNext,
    /// Pair-verify, first message.
    PvStart,
    /// Pair-verify, every later message and every answer.
    PvNext,
    /// OPACK, unencrypted.
    UOpack,
    /// OPACK, encrypted: requests, responses and events after pair-verify.
    EOpack,
    /// OPACK, encrypted (pairing-related).
    POpack,
    /// Any other type byte (session and family frames, which no client here sends).
    Other(u8),
}

impl FrameType {
    pub fn from_byte(b: u8) -> FrameType {
        match b {
            1 => FrameType::NoOp,
            3 => FrameType::PsStart,
            4 => FrameType::PsNext,
            5 => FrameType::PvStart,
            6 => FrameType::PvNext,
            7 => FrameType::UOpack,
            8 => FrameType::EOpack,
            9 => FrameType::POpack,
            b => FrameType::Other(b),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            FrameType::NoOp => 1,
            FrameType::PsStart => 3,
            FrameType::PsNext => 4,
            FrameType::PvStart => 5,
            FrameType::PvNext => 6,
            FrameType::UOpack => 7,
            FrameType::EOpack => 8,
            FrameType::POpack => 9,
            FrameType::Other(b) => b,
        }
    }

    /// The name in transcripts (pyatv's names).
    pub fn name(self) -> String {
        match self {
            FrameType::NoOp => "NoOp".into(),
            FrameType::PsStart => "PS_Start".into(),
            FrameType::PsNext => "PS_Next".into(),
            FrameType::PvStart => "PV_Start".into(),
            FrameType::PvNext => "PV_Next".into(),
            FrameType::UOpack => "U_OPACK".into(),
            FrameType::EOpack => "E_OPACK".into(),
            FrameType::POpack => "P_OPACK".into(),
            FrameType::Other(b) => format!("frame type 0x{b:02X}"),
        }
    }
}

/// One frame as read: its header (the AAD of an encrypted payload) and its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: [u8; HEADER_LEN],
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn kind(&self) -> FrameType {
        FrameType::from_byte(self.header[0])
    }
}

/// The header of a frame of `kind` whose payload (with its tag, if any) is `len` bytes.
pub fn header(kind: FrameType, len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let l = (len as u32).to_be_bytes();
    Ok([kind.byte(), l[1], l[2], l[3]])
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("payload of {0} bytes does not fit the 3-byte length")]
    TooLong(usize),
    #[error("frame says {len} bytes, more than the {max} this device reads")]
    Limit { len: usize, max: usize },
}

/// Cuts a byte stream into frames.
#[derive(Debug)]
pub struct Reader {
    buffer: Vec<u8>,
    max: usize,
}

impl Reader {
    /// A reader that refuses frames longer than `max` payload bytes.
    pub fn new(max: usize) -> Self {
        Reader {
            buffer: Vec::new(),
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, self.buffer[1], self.buffer[2], self.buffer[3]]) as usize;
        if len > self.max {
            return Err(FrameError::Limit { len, max: self.max });
        }
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.buffer[..HEADER_LEN]);
        let payload = self.buffer[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buffer.drain(..HEADER_LEN + len);
        Ok(Some(Frame { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut bytes = header(FrameType::PsStart, 3).unwrap().to_vec();
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&header(FrameType::NoOp, 0).unwrap());
        assert_eq!(bytes[..4], [3, 0, 0, 3]);
        let mut r = Reader::new(1024);
        let mut frames = Vec::new();
        for b in &bytes {
            r.push(&[*b]);
            while let Some(f) = r.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].kind(), FrameType::PsStart);
        assert_eq!(frames[0].payload, b"abc");
        assert_eq!(frames[1].kind(), FrameType::NoOp);
        assert!(frames[1].payload.is_empty());
    }

    #[test]
    fn refuses_lengths_over_the_limit_and_the_format() {
        let mut r = Reader::new(16);
        r.push(&[8, 0, 1, 0]);
        assert_eq!(r.next_frame(), Err(FrameError::Limit { len: 256, max: 16 }));
        assert_eq!(
            header(FrameType::EOpack, 1 << 24),
            Err(FrameError::TooLong(1 << 24))
        );
        assert_eq!(FrameType::from_byte(0x20), FrameType::Other(0x20));
        assert_eq!(FrameType::from_byte(6).byte(), 6);
    }
}
