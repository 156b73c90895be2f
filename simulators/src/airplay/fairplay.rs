//! FairPlay setup, `POST /fp-setup`, as an AirPlay receiver answers it
//! (docs/protocols/airplay.md, "AirPlay /info and FairPlay setup").
//!
//! Every FPLY message starts with the same 7 bytes: `FPLY`, major version, minor version, phase.
//! - Phase 1: a 16-byte request whose byte 14 is the mode (0..3); the answer is a fixed 142-byte
//!   message chosen by mode. The four replies are public protocol constants
//!   (`vectors/fp-setup-phase1-replies.hex`); each starts `46 50 4C 59 03 01 02 00 00 00 00 82 02
//!   <mode>`: byte 11 is the length of what follows the 12-byte header (0x82 = 142 - 12).
//! - Phase 3: a 164-byte request carrying the key message; the answer is 32 bytes, the fixed
//!   12-byte header `46 50 4C 59 03 01 04 00 00 00 00 14` then request bytes 144..164.
//!
//! Receivers check no signature. On a wrong version or length, or a mode above 3, they answer 200
//! with an empty body (docs/protocols/airplay.md).

use std::sync::OnceLock;

use thiserror::Error;

/// `FPLY`, the first four bytes of every message.
pub const SIGNATURE: [u8; 4] = *b"FPLY";
/// The only major version receivers process.
pub const MAJOR_VERSION: u8 = 3;
/// Length of a phase-1 request.
pub const PHASE1_REQUEST_LEN: usize = 16;
/// Offset of the mode in a phase-1 request.
pub const MODE_OFFSET: usize = 14;
/// Length of a phase-1 reply.
pub const PHASE1_REPLY_LEN: usize = 142;
/// Length of a phase-3 request (the key message).
pub const PHASE3_REQUEST_LEN: usize = 164;
/// The fixed header of every phase-3 reply.
pub const PHASE3_HEADER: [u8; 12] = [
    0x46, 0x50, 0x4C, 0x59, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
];
/// Where the 20 echoed bytes of a phase-3 request start.
pub const ECHO_OFFSET: usize = 144;
/// How many request bytes a phase-3 reply echoes.
pub const ECHO_LEN: usize = 20;

const VECTORS: &str = include_str!("../../vectors/fp-setup-phase1-replies.hex");

/// The four fixed phase-1 replies, by mode.
pub fn phase1_replies() -> &'static [[u8; PHASE1_REPLY_LEN]; 4] {
    static REPLIES: OnceLock<[[u8; PHASE1_REPLY_LEN]; 4]> = OnceLock::new();
    REPLIES.get_or_init(|| {
        parse_vectors(VECTORS).expect("vectors/fp-setup-phase1-replies.hex is well formed")
    })
}

/// Reads `mode hex` lines (comments start with `#`).
pub fn parse_vectors(text: &str) -> Result<[[u8; PHASE1_REPLY_LEN]; 4], String> {
    let mut out = [[0u8; PHASE1_REPLY_LEN]; 4];
    let mut seen = [false; 4];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mode, hex) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {line:?} is not `mode hex`"))?;
        let mode: usize = mode
            .parse()
            .ok()
            .filter(|m| *m < 4)
            .ok_or_else(|| format!("mode {mode:?} is not 0..3"))?;
        let bytes = decode_hex(hex.trim()).ok_or_else(|| format!("mode {mode}: bad hex"))?;
        out[mode] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("mode {mode}: {} bytes, not 142", b.len()))?;
        seen[mode] = true;
    }
    if seen.iter().all(|s| *s) {
        Ok(out)
    } else {
        Err("not every mode 0..3 has a reply".into())
    }
}

/// Lower- or upper-case hex without separators.
pub use crate::wire::hex::decode as decode_hex;

/// A readable FPLY request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FpRequest {
    /// Phase 1: the sender asks for the reply of `mode`.
    Phase1 { mode: u8 },
    /// Phase 3: the 164-byte key message, kept for decrypting the sender's AES key later.
    Phase3 { key_message: Vec<u8> },
}

/// Why a request gets an empty answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FpError {
    #[error("body of {0} bytes is shorter than the 7-byte FPLY header")]
    Short(usize),
    #[error("major version {0}; only 3 is processed")]
    Version(u8),
    #[error("phase {phase} body of {got} bytes; expected {want}")]
    Length { phase: u8, got: usize, want: usize },
    #[error("mode {0}; modes are 0..3")]
    Mode(u8),
    #[error("unknown phase {0}; expected 1 or 3")]
    Phase(u8),
}

/// A request read, and whether its signature was wrong (receivers do not check it, so a wrong one
/// is answered as usual and only noted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub request: FpRequest,
    pub bad_signature: bool,
}

/// Reads an fp-setup request body.
pub fn parse(body: &[u8]) -> Result<Parsed, FpError> {
    if body.len() < 7 {
        return Err(FpError::Short(body.len()));
    }
    let bad_signature = body[..4] != SIGNATURE;
    if body[4] != MAJOR_VERSION {
        return Err(FpError::Version(body[4]));
    }
    let request = match body[6] {
        1 => {
            if body.len() != PHASE1_REQUEST_LEN {
                return Err(FpError::Length {
                    phase: 1,
                    got: body.len(),
                    want: PHASE1_REQUEST_LEN,
                });
            }
            let mode = body[MODE_OFFSET];
            if mode > 3 {
                return Err(FpError::Mode(mode));
            }
            FpRequest::Phase1 { mode }
        }
        3 => {
            if body.len() != PHASE3_REQUEST_LEN {
                return Err(FpError::Length {
                    phase: 3,
                    got: body.len(),
                    want: PHASE3_REQUEST_LEN,
                });
            }
            FpRequest::Phase3 {
                key_message: body.to_vec(),
            }
        }
        other => return Err(FpError::Phase(other)),
    };
    Ok(Parsed {
        request,
        bad_signature,
    })
}

/// The 142-byte phase-1 reply of `mode`, if the mode exists.
pub fn phase1_reply(mode: u8) -> Option<&'static [u8; PHASE1_REPLY_LEN]> {
    phase1_replies().get(usize::from(mode))
}

/// The 32-byte phase-3 reply: the fixed header, then 20 bytes of the key message from `echo_from`
/// (144 on a real receiver). Bytes past the end of the message are zero.
pub fn phase3_reply(key_message: &[u8], echo_from: usize) -> Vec<u8> {
    let mut out = PHASE3_HEADER.to_vec();
    out.extend((0..ECHO_LEN).map(|i| {
        echo_from
            .checked_add(i)
            .and_then(|at| key_message.get(at))
            .copied()
            .unwrap_or(0)
    }));
    out
}

/// A phase-1 request as senders build it: header, byte 11 = 4 (bytes that follow), then
/// `02 00 <mode> BB`. The receiver reads only byte 14.
pub fn phase1_request(mode: u8) -> [u8; PHASE1_REQUEST_LEN] {
    [
        0x46, 0x50, 0x4C, 0x59, 0x03, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x02, 0x00, mode,
        0xBB,
    ]
}

/// A phase-3 request: header with byte 11 = 0x98 (152 bytes follow), then the given 152 bytes.
pub fn phase3_request(payload: &[u8; PHASE3_REQUEST_LEN - 12]) -> Vec<u8> {
    let mut out = vec![
        0x46, 0x50, 0x4C, 0x59, 0x03, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x98,
    ];
    out.extend_from_slice(payload);
    out
}

/// Which mode a 142-byte reply belongs to, if it is one of the four.
pub fn mode_of_reply(reply: &[u8]) -> Option<u8> {
    phase1_replies()
        .iter()
        .position(|r| r[..] == *reply)
        .map(|m| m as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first 14 bytes of every mode's reply, from docs/protocols/airplay.md.
    #[test]
    fn every_phase1_reply_starts_with_the_documented_header() {
        for mode in 0..4u8 {
            let r = phase1_reply(mode).unwrap();
            assert_eq!(
                r[..14],
                [0x46, 0x50, 0x4C, 0x59, 0x03, 0x01, 0x02, 0, 0, 0, 0, 0x82, 0x02, mode],
                "mode {mode}"
            );
        }
        assert!(phase1_reply(4).is_none());
    }

    /// Known answers: the vectors file's replies, byte for byte, for each mode, and the last
    /// bytes of each as written there.
    #[rstest::rstest]
    #[case(0, "46504c59030102000000008202000f9f3f9e0a25", "f7a3f6d5ba")]
    #[case(1, "46504c5903010200000000820201cf32a25714b2", "2ad946688a")]
    #[case(2, "46504c5903010200000000820202c169a352eeed", "6e56f850ce")]
    #[case(3, "46504c59030102000000008202039001e1727e0f", "9246c8c359")]
    fn phase1_request_gets_the_fixed_reply_of_its_mode(
        #[case] mode: u8,
        #[case] head: &str,
        #[case] tail: &str,
    ) {
        let parsed = parse(&phase1_request(mode)).unwrap();
        assert_eq!(parsed.request, FpRequest::Phase1 { mode });
        assert!(!parsed.bad_signature);
        let reply = phase1_reply(mode).unwrap();
        assert_eq!(reply.len(), 142);
        assert_eq!(reply[..20], decode_hex(head).unwrap()[..]);
        assert_eq!(reply[137..], decode_hex(tail).unwrap()[..]);
        assert_eq!(mode_of_reply(reply), Some(mode));
    }

    /// Known answer for phase 3: header 46504C59 03 01 04 00000000 14, then request[144..164].
    #[test]
    fn phase3_reply_is_fixed_header_then_last_20_request_bytes() {
        let payload: [u8; 152] = std::array::from_fn(|i| i as u8);
        let req = phase3_request(&payload);
        assert_eq!(req.len(), 164);
        let Parsed { request, .. } = parse(&req).unwrap();
        let FpRequest::Phase3 { key_message } = request else {
            panic!("not phase 3")
        };
        let reply = phase3_reply(&key_message, ECHO_OFFSET);
        // Request byte 144 is payload byte 132 (the payload starts after the 12-byte header).
        let mut want = decode_hex("46504c590301040000000014").unwrap();
        want.extend(132u8..152);
        assert_eq!(reply, want);
        assert_eq!(reply.len(), 32);
        assert_eq!(reply[12..], req[144..164]);
    }

    #[rstest::rstest]
    #[case::too_short(b"FPL".to_vec(), FpError::Short(3))]
    #[case::version_2(vec![0x46, 0x50, 0x4C, 0x59, 2, 1, 1, 0, 0, 0, 0, 4, 2, 0, 0, 0xBB], FpError::Version(2))]
    #[case::phase1_length(vec![0x46, 0x50, 0x4C, 0x59, 3, 1, 1, 0, 0], FpError::Length { phase: 1, got: 9, want: 16 })]
    #[case::phase3_length(vec![0x46, 0x50, 0x4C, 0x59, 3, 1, 3, 0, 0], FpError::Length { phase: 3, got: 9, want: 164 })]
    #[case::mode_4(phase1_request(4).to_vec(), FpError::Mode(4))]
    #[case::phase_2(vec![0x46, 0x50, 0x4C, 0x59, 3, 1, 2, 0], FpError::Phase(2))]
    fn malformed_requests_are_named(#[case] body: Vec<u8>, #[case] want: FpError) {
        assert_eq!(parse(&body), Err(want));
    }

    #[test]
    fn wrong_signature_is_answered_but_flagged() {
        let mut body = phase1_request(2);
        body[0] = b'X';
        let p = parse(&body).unwrap();
        assert!(p.bad_signature);
        assert_eq!(p.request, FpRequest::Phase1 { mode: 2 });
    }

    #[test]
    fn echo_offset_past_the_end_pads_with_zeros() {
        let reply = phase3_reply(&[1, 2, 3], usize::MAX);
        assert_eq!(reply.len(), 32);
        assert!(reply[12..].iter().all(|b| *b == 0));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(p) = parse(&body) {
                match p.request {
                    FpRequest::Phase1 { mode } => prop_assert!(phase1_reply(mode).is_some()),
                    FpRequest::Phase3 { key_message } => {
                        prop_assert_eq!(phase3_reply(&key_message, ECHO_OFFSET).len(), 32)
                    }
                }
            }
        }

        #[test]
        fn fply_bodies_with_any_phase_and_length_never_panic(
            phase in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut body = vec![0x46, 0x50, 0x4C, 0x59, 3, 1, phase];
            body.extend(rest);
            let _ = parse(&body);
        }
    }
}
