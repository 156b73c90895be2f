//! Interleaved binary data on an RTSP connection (RFC 2326 §10.12): a frame is `$` (0x24), a
//! one-byte channel identifier, a 16-bit big-endian length, then that many bytes of payload (one
//! RTP or RTCP packet). A RAOP sender using `RTP/AVP/TCP;unicast;interleaved=0-1` writes its RTP
//! audio packets in such frames on channel 0 (docs/protocols/raop.md, "RTP over TCP").

/// The byte that starts an interleaved frame where a request line would start.
pub const MAGIC: u8 = b'$';

/// Bytes before the payload: `$`, channel, length.
pub const HEADER_LEN: usize = 4;

/// One whole interleaved frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub channel: u8,
    pub payload: &'a [u8],
}

/// Whether `received` starts with an interleaved frame rather than a request: its first byte is
/// `$`, with which none of the methods RTSP (RFC 2326 §10) and HTTP define begins.
pub fn starts_frame(received: &[u8]) -> bool {
    received.first() == Some(&MAGIC)
}

/// The frame at the start of `received` and the bytes it takes, or `None` while it is incomplete.
/// `received` must start with [`MAGIC`] ([`starts_frame`]); anything else is `None` too.
pub fn parse(received: &[u8]) -> Option<(Frame<'_>, usize)> {
    if !starts_frame(received) || received.len() < HEADER_LEN {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([received[2], received[3]]));
    let end = HEADER_LEN + len;
    let payload = received.get(HEADER_LEN..end)?;
    Some((
        Frame {
            channel: received[1],
            payload,
        },
        end,
    ))
}

/// `payload` framed on `channel`; a payload longer than 65535 bytes is cut to fit the length.
pub fn encode(channel: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(usize::from(u16::MAX));
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.push(MAGIC);
    out.push(channel);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&payload[..len]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_is_dollar_channel_length_payload() {
        let bytes = [b'$', 1, 0, 3, 0xaa, 0xbb, 0xcc, b'O'];
        let (frame, used) = parse(&bytes).unwrap();
        assert_eq!(frame.channel, 1);
        assert_eq!(frame.payload, [0xaa, 0xbb, 0xcc]);
        assert_eq!(used, 7);
        assert_eq!(encode(1, &[0xaa, 0xbb, 0xcc]), bytes[..7]);
    }

    #[test]
    fn incomplete_frames_and_requests_are_none() {
        assert_eq!(parse(b"$\x00\x00"), None);
        assert_eq!(parse(b"$\x00\x00\x02\x01"), None);
        assert_eq!(parse(b"OPTIONS * RTSP/1.0\r\n"), None);
        assert!(!starts_frame(b"OPTIONS"));
        assert_eq!(
            parse(b"$\x00\x00\x00").map(|(f, n)| (f.payload.len(), n)),
            Some((0, 4))
        );
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(channel in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let bytes = encode(channel, &payload);
            let (frame, used) = parse(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(frame.channel, channel);
            prop_assert_eq!(frame.payload, &payload[..]);
            for cut in 0..bytes.len() {
                prop_assert_eq!(parse(&bytes[..cut]), None);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some((frame, used)) = parse(&bytes) {
                prop_assert_eq!(used, HEADER_LEN + frame.payload.len());
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
