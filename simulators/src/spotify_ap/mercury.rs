//! Mercury requests over the AP (command 0xb2), answered from scripted replies by URI.
//!
//! Payload (librespot `core/src/mercury/types.rs`, `mod.rs`): u16 BE sequence length, the
//! sequence bytes, u8 flags (1 = final), u16 BE part count, then each part as u16 BE length and
//! bytes; the first part is a `mercury.Header` protobuf (uri, method, status_code).

use librespot_protocol::mercury::Header;
use protobuf::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MercuryError {
    #[error("Mercury payload truncated at byte {0}")]
    Truncated(usize),
    #[error("Mercury header does not parse: {0}")]
    Header(String),
    #[error("Mercury payload has no header part")]
    NoHeader,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub seq: Vec<u8>,
    pub flags: u8,
    pub header: Header,
    pub body: Vec<Vec<u8>>,
}

/// A scripted answer for one URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reply {
    pub uri: String,
    #[serde(default = "ok")]
    pub status: i32,
    /// The body, as text.
    #[serde(default)]
    pub body: String,
}

fn ok() -> i32 {
    200
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MercuryError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(MercuryError::Truncated(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<usize, MercuryError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// Parses a 0xb2 payload.
pub fn parse(payload: &[u8]) -> Result<Request, MercuryError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let seq_len = r.u16()?;
    let seq = r.take(seq_len)?.to_vec();
    let flags = r.take(1)?[0];
    let count = r.u16()?;
    let mut parts = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = r.u16()?;
        parts.push(r.take(len)?.to_vec());
    }
    if parts.is_empty() {
        return Err(MercuryError::NoHeader);
    }
    let header = Header::parse_from_bytes(&parts.remove(0))
        .map_err(|e| MercuryError::Header(e.to_string()))?;
    Ok(Request {
        seq,
        flags,
        header,
        body: parts,
    })
}

/// Encodes a final Mercury packet: `header` and `body` parts with sequence `seq`.
pub fn encode(seq: &[u8], header: &Header, body: &[Vec<u8>]) -> Vec<u8> {
    let head = super::handshake::encode_lenient(header);
    let mut out = Vec::new();
    let put16 = |out: &mut Vec<u8>, n: usize| {
        out.extend_from_slice(&(n.min(usize::from(u16::MAX)) as u16).to_be_bytes())
    };
    put16(&mut out, seq.len());
    out.extend_from_slice(seq);
    out.push(1);
    put16(&mut out, 1 + body.len());
    for part in std::iter::once(&head).chain(body) {
        put16(&mut out, part.len());
        out.extend_from_slice(&part[..part.len().min(usize::from(u16::MAX))]);
    }
    out
}

/// The answer to `req` from `replies` (first match by URI), 404 with no body by default.
pub fn answer(req: &Request, replies: &[Reply]) -> Vec<u8> {
    let uri = req.header.uri();
    let mut header = Header::new();
    header.uri = Some(uri.to_string());
    let body = match replies.iter().find(|r| r.uri == uri) {
        Some(r) => {
            header.status_code = Some(r.status);
            if r.body.is_empty() {
                vec![]
            } else {
                vec![r.body.as_bytes().to_vec()]
            }
        }
        None => {
            header.status_code = Some(404);
            vec![]
        }
    };
    encode(&req.seq, &header, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(uri: &str) -> Vec<u8> {
        let mut h = Header::new();
        h.uri = Some(uri.into());
        h.method = Some("GET".into());
        encode(&[0, 0, 0, 7], &h, &[])
    }

    #[test]
    fn scripted_uri_gets_its_reply_others_404() {
        let replies = vec![Reply {
            uri: "hm://keymaster/token".into(),
            status: 200,
            body: "{}".into(),
        }];
        let req = parse(&request("hm://keymaster/token")).unwrap();
        let back = parse(&answer(&req, &replies)).unwrap();
        assert_eq!(back.seq, [0, 0, 0, 7]);
        assert_eq!(back.header.status_code(), 200);
        assert_eq!(back.body, vec![b"{}".to_vec()]);
        let req = parse(&request("hm://other")).unwrap();
        assert_eq!(
            parse(&answer(&req, &replies)).unwrap().header.status_code(),
            404
        );
    }

    proptest! {
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
