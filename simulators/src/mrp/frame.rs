//! Frames of the AirPlay remote-control data stream (docs/protocols/mrp.md, "Data frames"): a
//! 32-byte big-endian header (total size including the header, a 12-byte message type `sync` or
//! `rply` padded with zeros, a 4-byte command `comm` or `cmnd`, a 64-bit sequence number and 4
//! bytes of padding), then the payload. A `sync` frame's payload is a binary plist
//! `{params: {data: <ProtocolMessages>}}`, each message prefixed by its length as a protobuf
//! varint; a `rply` frame answers a `sync` with the same sequence number and may be empty.

use plist::{Dictionary, Value};

/// Bytes of the header.
pub const HEADER_LEN: usize = 32;

/// The largest frame this device accepts (a real device's are a few kilobytes; artwork is the
/// largest thing a controller could send).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Why bytes are not a frame, or a payload not messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is smaller than its 32-byte header")]
    TooSmall(u32),
    #[error("frame size {0} is larger than {MAX_FRAME}")]
    TooLarge(u32),
    #[error("payload is not a binary plist: {0}")]
    Plist(String),
    #[error("payload has no params.data")]
    NoData,
    #[error("message length {len} runs past the {left} bytes left")]
    Truncated { len: u64, left: usize },
    #[error("bad varint length prefix")]
    Varint,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `sync` or `rply` (the 12-byte field without its zero padding).
    pub message_type: String,
    /// `comm`, `cmnd`, or empty (four zero bytes) in a reply.
    pub command: String,
    pub seqno: u64,
    pub padding: u32,
    pub payload: Vec<u8>,
}

fn trimmed(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

impl Frame {
    /// A `sync` frame carrying `payload`, with the command the sender uses (`comm` from a
    /// controller, `cmnd` from a receiver).
    pub fn sync(command: &str, seqno: u64, payload: Vec<u8>) -> Self {
        Frame {
            message_type: "sync".into(),
            command: command.into(),
            seqno,
            padding: 0,
            payload,
        }
    }

    /// The `rply` to a `sync` with `seqno`: its payload is an empty dictionary as a binary plist
    /// (an empty payload makes pyatv log "failed to process data frame" for every reply;
    /// docs/protocols/mrp.md, "Data frames").
    pub fn reply(seqno: u64) -> Self {
        let mut payload = Vec::new();
        Value::Dictionary(Dictionary::new())
            .to_writer_binary(&mut payload)
            .expect("an empty dictionary always encodes");
        Frame {
            message_type: "rply".into(),
            command: String::new(),
            seqno,
            padding: 0,
            payload,
        }
    }

    pub fn is_sync(&self) -> bool {
        self.message_type == "sync"
    }

    pub fn encode(&self) -> Vec<u8> {
        let size = (HEADER_LEN + self.payload.len()) as u32;
        let mut out = Vec::with_capacity(size as usize);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&padded::<12>(&self.message_type));
        out.extend_from_slice(&padded::<4>(&self.command));
        out.extend_from_slice(&self.seqno.to_be_bytes());
        out.extend_from_slice(&self.padding.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The first frame of `buf` and the bytes it used; `None` until it is complete.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if (size as usize) < HEADER_LEN {
            return Err(FrameError::TooSmall(size));
        }
        if size as usize > MAX_FRAME {
            return Err(FrameError::TooLarge(size));
        }
        if buf.len() < size as usize {
            return Ok(None);
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&buf[20..28]);
        let frame = Frame {
            message_type: trimmed(&buf[4..16]),
            command: trimmed(&buf[16..20]),
            seqno: u64::from_be_bytes(seq),
            padding: u32::from_be_bytes([buf[28], buf[29], buf[30], buf[31]]),
            payload: buf[HEADER_LEN..size as usize].to_vec(),
        };
        Ok(Some((frame, size as usize)))
    }
}

/// The payload `{params: {data: <messages, each length-prefixed>}}` as a binary plist.
pub fn payload(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    for m in messages {
        prost::encoding::encode_varint(m.len() as u64, &mut data);
        data.extend_from_slice(m);
    }
    let mut params = Dictionary::new();
    params.insert("data".into(), Value::Data(data));
    let mut top = Dictionary::new();
    top.insert("params".into(), Value::Dictionary(params));
    let mut out = Vec::new();
    Value::Dictionary(top)
        .to_writer_binary(&mut out)
        .expect("a plist of a dictionary and data always encodes");
    out
}

/// The serialized messages of a `sync` payload ([`split`]).
pub fn messages(payload: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let value = Value::from_reader(std::io::Cursor::new(payload))
        .map_err(|e| FrameError::Plist(e.to_string()))?;
    let data = value
        .as_dictionary()
        .and_then(|d| d.get("params"))
        .and_then(Value::as_dictionary)
        .and_then(|p| p.get("data"))
        .and_then(Value::as_data)
        .ok_or(FrameError::NoData)?;
    split(data)
}

/// Splits varint-length-prefixed messages. Every message starts with 0x08, the tag of its first
/// field `type`; data that starts with 0x08 but does not read as prefixed messages that each start
/// so is one message sent without a prefix (docs/protocols/mrp.md, "Data frames"). The prefixed
/// reading goes first: an 8-byte message's prefix is 0x08 too.
pub fn split(data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let prefixed = split_prefixed(data);
    let each_a_message = |found: &Vec<Vec<u8>>| found.iter().all(|m| m.first() == Some(&0x08));
    match prefixed {
        Ok(found) if data.first() != Some(&0x08) || each_a_message(&found) => Ok(found),
        _ if data.first() == Some(&0x08) => Ok(vec![data.to_vec()]),
        other => other,
    }
}

fn split_prefixed(mut data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = prost::encoding::decode_varint(&mut data).map_err(|_| FrameError::Varint)?;
        if len > data.len() as u64 {
            return Err(FrameError::Truncated {
                len,
                left: data.len(),
            });
        }
        let (m, rest) = data.split_at(len as usize);
        out.push(m.to_vec());
        data = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_32_big_endian_bytes() {
        let f = Frame::sync("comm", 0x1_0000_0002, vec![1, 2, 3]);
        let b = f.encode();
        assert_eq!(b.len(), 35);
        assert_eq!(&b[..4], &35u32.to_be_bytes());
        assert_eq!(&b[4..16], b"sync\0\0\0\0\0\0\0\0");
        assert_eq!(&b[16..20], b"comm");
        assert_eq!(&b[20..28], &0x1_0000_0002u64.to_be_bytes());
        assert_eq!(&b[28..32], &[0, 0, 0, 0]);
        assert_eq!(Frame::decode(&b).unwrap(), Some((f, 35)));
        assert_eq!(Frame::decode(&b[..34]).unwrap(), None);
        let r = Frame::reply(7).encode();
        assert_eq!(&r[16..20], &[0u8; 4][..]);
        assert_eq!(&r[32..40], b"bplist00");
    }

    #[test]
    fn a_size_below_the_header_is_an_error() {
        let mut b = Frame::reply(1).encode();
        b[3] = 8;
        assert_eq!(Frame::decode(&b), Err(FrameError::TooSmall(8)));
    }

    #[test]
    fn payload_round_trips_messages_and_takes_an_unprefixed_one_whole() {
        let a = vec![0x08, 0x0f, 0x12, 0x01, b'x'];
        let long = vec![0x08; 200];
        let p = payload(&[a.clone(), long.clone()]);
        assert_eq!(messages(&p).unwrap(), vec![a.clone(), long]);
        assert_eq!(split(&a).unwrap(), vec![a]);
        // An 8-byte message: its prefix is 0x08, the same byte an unprefixed message starts with.
        let eight = vec![0x08, 0x0f, 0x12, 0x04, b'a', b'b', b'c', b'd'];
        let mut prefixed = vec![0x08];
        prefixed.extend_from_slice(&eight);
        assert_eq!(split(&prefixed).unwrap(), vec![eight]);
        // A 9-byte message without a prefix reads as a prefix and 8 bytes that are no message.
        let nine = vec![0x08, 0x0f, 0x12, 0x05, b'a', b'b', b'c', b'd', b'e'];
        assert_eq!(split(&nine).unwrap(), vec![nine]);
        assert!(matches!(
            split(&[0x05, 1, 2]),
            Err(FrameError::Truncated { len: 5, left: 2 })
        ));
    }
}
