//! RTP as RAOP uses it: the audio packet header, NTP timestamps, and the small packets of the
//! control and timing ports (sync, retransmit, timing).
//!
//! Sans-IO: these functions build and read bytes; time is always passed in.
//!
//! Sources: the fixed header layout is RFC 3550 §5.1; the RAOP payload types and packet shapes are
//! from docs/protocols/raop.md and pyatv's
//! `raop/packets.py` (the sender described in docs/peers.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RTP version carried in the two top bits of byte 0 (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// Payload type of RAOP audio packets on the server port: 0x60 = 96, the dynamic type the SDP
/// binds with `a=rtpmap:96 …` (docs/protocols/raop.md; the first packet carries the marker bit, so
/// byte 1 is 0xE0).
pub const PT_AUDIO: u8 = 0x60;
/// Timing request, byte 1 = 0xD2 = marker | 0x52 (docs/protocols/raop.md).
pub const PT_TIMING_REQUEST: u8 = 0x52;
/// Timing reply, byte 1 = 0xD3 = marker | 0x53 (docs/protocols/raop.md).
pub const PT_TIMING_REPLY: u8 = 0x53;
/// Sync packet on the control port, byte 1 = 0xD4 = marker | 0x54 (docs/protocols/raop.md).
pub const PT_SYNC: u8 = 0x54;
/// Retransmit request on the control port (receiver → sender), byte 1 = 0xD5 (pyatv's
/// `RetransmitReqeust` in raop/packets.py: header, lost seq u16, count u16).
pub const PT_RETRANSMIT_REQUEST: u8 = 0x55;
/// Retransmit reply on the control port (sender → receiver), byte 1 = 0xD6 = marker | 0x56: a
/// 4-byte header followed by the whole original RTP audio packet (docs/protocols/raop.md).
pub const PT_RETRANSMIT_REPLY: u8 = 0x56;

/// Length of timing requests and replies (docs/protocols/raop.md).
pub const TIMING_LEN: usize = 32;
/// Length of a sync packet (pyatv's `SyncPacket`: 4-byte header, three u32 and one NTP time).
pub const SYNC_LEN: usize = 20;

/// The RTP fields RAOP uses (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    pub marker: bool,
    /// 7 bits.
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// An audio packet header (payload type 96).
    pub fn audio(marker: bool, seq: u16, timestamp: u32, ssrc: u32) -> Self {
        RtpHeader {
            marker,
            payload_type: PT_AUDIO,
            seq,
            timestamp,
            ssrc,
        }
    }
}

/// True when byte 0 says RTP version 2 (RFC 3550 §5.1).
pub fn is_rtp_v2(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b >> 6 == RTP_VERSION)
}

/// The payload type of a packet (byte 1 without the marker bit), if it is RTP version 2 with at
/// least two bytes.
pub fn packet_type(bytes: &[u8]) -> Option<u8> {
    if bytes.len() < 2 || !is_rtp_v2(bytes) {
        return None;
    }
    Some(bytes[1] & 0x7f)
}

/// Reads an RTP packet: the header and the payload after it.
///
/// The fixed header and CSRC list follow RFC 3550 §5.1. The padding (P) and extension (X) bits are
/// deliberately not interpreted: RAOP senders set X on packets that carry no extension header
/// (the first sync packet starts 0x90, docs/protocols/raop.md), so honouring them would cut real audio.
/// Returns `None` for anything shorter than its header or not version 2.
pub fn parse(bytes: &[u8]) -> Option<(RtpHeader, &[u8])> {
    if bytes.len() < HEADER_LEN || !is_rtp_v2(bytes) {
        return None;
    }
    let csrc_count = usize::from(bytes[0] & 0x0f);
    let start = HEADER_LEN + 4 * csrc_count;
    if bytes.len() < start {
        return None;
    }
    let header = RtpHeader {
        marker: bytes[1] & 0x80 != 0,
        payload_type: bytes[1] & 0x7f,
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
    };
    Some((header, &bytes[start..]))
}

/// Writes an RTP packet: version 2, no padding, no extension, no CSRC (RFC 3550 §5.1; byte 0 is
/// 0x80 as RAOP senders send it).
pub fn encode(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(RTP_VERSION << 6);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An NTP timestamp: seconds since 1900-01-01 in the upper 32 bits, binary fraction of a second
/// in the lower 32 (RFC 3550 §4; the timing packets carry it, docs/protocols/raop.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// Seconds from 1900-01-01 to 1970-01-01 (RFC 868 / RFC 5905).
    pub const UNIX_OFFSET: u64 = 2_208_988_800;

    pub fn new(seconds: u32, fraction: u32) -> Self {
        NtpTime((u64::from(seconds) << 32) | u64::from(fraction))
    }

    /// Converts wall-clock time. Times before 1900 give 0; the seconds wrap after 2036 as NTP
    /// era 0 does (RFC 5905 §6).
    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                Self::UNIX_OFFSET.wrapping_add(d.as_secs()),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                // Before 1970: step back, borrowing a second for a non-zero fraction.
                let mut secs = d.as_secs();
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs += 1;
                    nanos = 1_000_000_000 - nanos;
                }
                match Self::UNIX_OFFSET.checked_sub(secs) {
                    Some(s) => (s, nanos),
                    None => return NtpTime(0),
                }
            }
        };
        // nanos < 10^9, so nanos << 32 < 2^62: no overflow.
        let fraction = (u64::from(nanos) << 32) / 1_000_000_000;
        NtpTime::new(secs as u32, fraction as u32)
    }

    /// Converts back to wall-clock time (era 0: 1900–2036).
    pub fn to_system_time(self) -> SystemTime {
        let nanos = (u64::from(self.fraction()) * 1_000_000_000) >> 32;
        let secs = u64::from(self.seconds());
        let since_1900 = Duration::new(secs, nanos as u32);
        let offset = Duration::from_secs(Self::UNIX_OFFSET);
        if since_1900 >= offset {
            UNIX_EPOCH + (since_1900 - offset)
        } else {
            UNIX_EPOCH - (offset - since_1900)
        }
    }

    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn fraction(self) -> u32 {
        self.0 as u32
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads 8 big-endian bytes; `None` when `bytes` is shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(NtpTime(u64::from_be_bytes(b)))
    }
}

/// A timing request or reply (docs/protocols/raop.md: 32 bytes, `[0x80, 0xD2|0xD3, seq u16, 0 u32,
/// reference 8..16, receive 16..24, send 24..32]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingPacket {
    /// `PT_TIMING_REQUEST` or `PT_TIMING_REPLY`.
    pub kind: u8,
    pub seq: u16,
    pub reference: NtpTime,
    pub receive: NtpTime,
    pub send: NtpTime,
}

impl TimingPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TIMING_LEN);
        out.push(RTP_VERSION << 6);
        out.push(0x80 | self.kind);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.reference.to_bytes());
        out.extend_from_slice(&self.receive.to_bytes());
        out.extend_from_slice(&self.send.to_bytes());
        out
    }

    /// Reads a timing request or reply; `None` for anything else or shorter than 32 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let kind = packet_type(bytes)?;
        if bytes.len() < TIMING_LEN || !(kind == PT_TIMING_REQUEST || kind == PT_TIMING_REPLY) {
            return None;
        }
        Some(TimingPacket {
            kind,
            seq: u16::from_be_bytes([bytes[2], bytes[3]]),
            reference: NtpTime::from_bytes(&bytes[8..16])?,
            receive: NtpTime::from_bytes(&bytes[16..24])?,
            send: NtpTime::from_bytes(&bytes[24..32])?,
        })
    }
}

/// Answers a timing request: byte 1 0xD3, the request's sequence number, reference time = the
/// request's send time (bytes 24..32), receive and send time = `now` (docs/protocols/raop.md).
/// `None` when `request` is not a timing request.
pub fn timing_reply(request: &[u8], now: SystemTime) -> Option<Vec<u8>> {
    let req = TimingPacket::parse(request)?;
    if req.kind != PT_TIMING_REQUEST {
        return None;
    }
    let now = NtpTime::from_system_time(now);
    Some(
        TimingPacket {
            kind: PT_TIMING_REPLY,
            seq: req.seq,
            reference: req.send,
            receive: now,
            send: now,
        }
        .encode(),
    )
}

/// A timing request as a sender sends it: reference and receive time zero, send time `now`
/// (docs/protocols/raop.md layout). The sequence number is 0; receivers echo whatever it is.
pub fn timing_request(now: SystemTime) -> Vec<u8> {
    TimingPacket {
        kind: PT_TIMING_REQUEST,
        seq: 0,
        reference: NtpTime(0),
        receive: NtpTime(0),
        send: NtpTime::from_system_time(now),
    }
    .encode()
}

/// A sync packet on the control port (pyatv's `SyncPacket` in raop/packets.py: header, RTP time
/// now minus latency, NTP time now, RTP time now; docs/protocols/raop.md: byte 0 is 0x90 on the first
/// sync of a stream, 0x80 after, byte 1 is 0xD4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPacket {
    /// Byte 0 was 0x90 (the extension bit RAOP uses as "first sync").
    pub first: bool,
    /// RTP timestamp of the frame to be played at `ntp`, i.e. `rtp_now - latency`.
    pub rtp_at_ntp: u32,
    pub ntp: NtpTime,
    /// The sender's current RTP timestamp.
    pub rtp_now: u32,
}

impl SyncPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SYNC_LEN);
        out.push(if self.first { 0x90 } else { 0x80 });
        out.push(0x80 | PT_SYNC);
        // pyatv puts 7 in the sequence field (raop/stream_client.py); receivers do not read it.
        out.extend_from_slice(&7u16.to_be_bytes());
        out.extend_from_slice(&self.rtp_at_ntp.to_be_bytes());
        out.extend_from_slice(&self.ntp.to_bytes());
        out.extend_from_slice(&self.rtp_now.to_be_bytes());
        out
    }

    /// Reads a sync packet; `None` for anything else or shorter than 20 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if packet_type(bytes)? != PT_SYNC || bytes.len() < SYNC_LEN {
            return None;
        }
        Some(SyncPacket {
            first: bytes[0] & 0x10 != 0,
            rtp_at_ntp: u32::from_be_bytes(bytes[4..8].try_into().ok()?),
            ntp: NtpTime::from_bytes(&bytes[8..16])?,
            rtp_now: u32::from_be_bytes(bytes[16..20].try_into().ok()?),
        })
    }
}

/// Builds a sync packet for a sender (see [`SyncPacket`]).
pub fn sync_packet(first: bool, rtp_at_ntp: u32, now: SystemTime, rtp_now: u32) -> Vec<u8> {
    SyncPacket {
        first,
        rtp_at_ntp,
        ntp: NtpTime::from_system_time(now),
        rtp_now,
    }
    .encode()
}

/// A retransmit request (receiver → sender control port): `count` packets from `first_seq`
/// (pyatv's `RetransmitReqeust`: header, lost seq u16, lost count u16).
pub fn retransmit_request(seq: u16, first_seq: u16, count: u16) -> Vec<u8> {
    let mut out = vec![RTP_VERSION << 6, 0x80 | PT_RETRANSMIT_REQUEST];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out
}

/// Reads a retransmit request: `(first_seq, count)`.
pub fn parse_retransmit_request(bytes: &[u8]) -> Option<(u16, u16)> {
    if packet_type(bytes)? != PT_RETRANSMIT_REQUEST || bytes.len() < 8 {
        return None;
    }
    Some((
        u16::from_be_bytes([bytes[4], bytes[5]]),
        u16::from_be_bytes([bytes[6], bytes[7]]),
    ))
}

/// Wraps an audio packet as a retransmit reply: `[0x80, 0xD6, seq u16]` then the whole original
/// RTP packet (docs/protocols/raop.md). pyatv puts the original packet's sequence number in `seq`
/// (raop/stream_client.py); receivers take the one inside the wrapped packet.
pub fn retransmit_reply(seq: u16, audio_packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + audio_packet.len());
    out.extend_from_slice(&[RTP_VERSION << 6, 0x80 | PT_RETRANSMIT_REPLY]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(audio_packet);
    out
}

/// The audio packet inside a retransmit reply (everything after its 4-byte header).
pub fn parse_retransmit_reply(bytes: &[u8]) -> Option<&[u8]> {
    if packet_type(bytes)? != PT_RETRANSMIT_REPLY || bytes.len() < 4 {
        return None;
    }
    Some(&bytes[4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn first_audio_packet_starts_80_e0() {
        let p = encode(
            &RtpHeader::audio(true, 0x1234, 0xdead_beef, 0x0102_0304),
            b"xy",
        );
        assert_eq!(
            p,
            [0x80, 0xE0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, b'x', b'y']
        );
        let later = encode(&RtpHeader::audio(false, 1, 2, 3), &[]);
        assert_eq!(&later[..2], &[0x80, 0x60]);
    }

    #[test]
    fn parse_skips_csrcs_and_rejects_short_or_wrong_version() {
        let mut p = encode(&RtpHeader::audio(false, 9, 10, 11), b"payload");
        p[0] |= 2; // two CSRCs
        p.splice(12..12, [0u8; 8]);
        let (h, payload) = parse(&p).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc), (9, 10, 11));
        assert_eq!(payload, b"payload");
        assert_eq!(parse(&p[..11]), None);
        assert_eq!(parse(&p[..15]), None, "CSRC list cut short");
        let mut v1 = p.clone();
        v1[0] = 0x40;
        assert_eq!(parse(&v1), None);
    }

    #[test]
    fn extension_bit_does_not_eat_payload() {
        let mut p = encode(&RtpHeader::audio(false, 1, 2, 3), b"abcdefgh");
        p[0] = 0x90;
        assert_eq!(parse(&p).unwrap().1, b"abcdefgh");
    }

    #[test]
    fn ntp_conversion_known_values() {
        // 1970 is 2 208 988 800 s after 1900; half a second is fraction 2^31.
        let t = NtpTime::from_system_time(at(1_700_000_000, 500_000_000));
        assert_eq!(t.seconds(), 3_908_988_800);
        assert_eq!(t.fraction(), 0x8000_0000);
        assert_eq!(t.to_system_time(), at(1_700_000_000, 500_000_000));
        assert_eq!(
            NtpTime::from_system_time(UNIX_EPOCH).seconds(),
            2_208_988_800
        );
        // Before 1970.
        let before = UNIX_EPOCH - Duration::new(1, 250_000_000);
        let n = NtpTime::from_system_time(before);
        assert_eq!(n.seconds(), 2_208_988_798);
        assert_eq!(n.fraction(), 0xC000_0000);
        assert_eq!(n.to_system_time(), before);
        // Before 1900 saturates.
        let ancient = UNIX_EPOCH - Duration::from_secs(NtpTime::UNIX_OFFSET + 5);
        assert_eq!(NtpTime::from_system_time(ancient), NtpTime(0));
    }

    #[test]
    fn timing_reply_fields() {
        let sender_send = NtpTime::new(0x1122_3344, 0x5566_7788);
        let mut request = timing_request(NtpTime::new(1, 2).to_system_time());
        request[2..4].copy_from_slice(&0x0007u16.to_be_bytes());
        request[24..32].copy_from_slice(&sender_send.to_bytes());
        let now = at(1_700_000_000, 500_000_000);
        let reply = timing_reply(&request, now).unwrap();
        assert_eq!(reply.len(), 32);
        assert_eq!(&reply[..4], &[0x80, 0xD3, 0x00, 0x07]);
        assert_eq!(&reply[4..8], &[0, 0, 0, 0]);
        assert_eq!(
            &reply[8..16],
            &sender_send.to_bytes(),
            "reference = request send time"
        );
        let now_ntp = [0xE8, 0xFE, 0x6F, 0x80, 0x80, 0, 0, 0]; // 3 908 988 800 s + 0.5
        assert_eq!(&reply[16..24], &now_ntp, "receive time = now");
        assert_eq!(&reply[24..32], &now_ntp, "send time = now");
        let parsed = TimingPacket::parse(&reply).unwrap();
        assert_eq!(parsed.kind, PT_TIMING_REPLY);
        assert_eq!(parsed.reference, sender_send);
    }

    #[test]
    fn timing_reply_refuses_non_requests() {
        let now = at(1, 0);
        assert_eq!(timing_reply(&[0x80, 0xD2], now), None);
        assert_eq!(timing_reply(&[0u8; 32], now), None, "version 0");
        let reply = timing_reply(&timing_request(now), now).unwrap();
        assert_eq!(timing_reply(&reply, now), None, "a reply is not answered");
        let mut sync = sync_packet(true, 1, now, 2);
        sync.resize(32, 0);
        assert_eq!(timing_reply(&sync, now), None);
    }

    #[test]
    fn timing_request_layout() {
        let now = at(1_700_000_000, 0);
        let r = timing_request(now);
        assert_eq!(r.len(), 32);
        assert_eq!(&r[..2], &[0x80, 0xD2]);
        assert_eq!(&r[8..24], &[0; 16]);
        assert_eq!(
            NtpTime::from_bytes(&r[24..32]).unwrap().to_system_time(),
            now
        );
    }

    #[test]
    fn sync_packet_layout() {
        let now = at(1_700_000_000, 500_000_000);
        let first = sync_packet(true, 1000, now, 12_025);
        assert_eq!(first.len(), SYNC_LEN);
        assert_eq!(&first[..4], &[0x90, 0xD4, 0x00, 0x07]);
        assert_eq!(&first[4..8], &1000u32.to_be_bytes());
        assert_eq!(&first[8..16], &NtpTime::from_system_time(now).to_bytes());
        assert_eq!(&first[16..20], &12_025u32.to_be_bytes());
        let later = sync_packet(false, 1, now, 2);
        assert_eq!(&later[..2], &[0x80, 0xD4]);
        let p = SyncPacket::parse(&first).unwrap();
        assert!(p.first);
        assert_eq!((p.rtp_at_ntp, p.rtp_now), (1000, 12_025));
        assert!(!SyncPacket::parse(&later).unwrap().first);
        assert_eq!(SyncPacket::parse(&first[..19]), None);
    }

    #[test]
    fn retransmit_packets() {
        let audio = encode(&RtpHeader::audio(false, 500, 1, 2), b"abc");
        let reply = retransmit_reply(3, &audio);
        assert_eq!(&reply[..4], &[0x80, 0xD6, 0, 3]);
        assert_eq!(parse_retransmit_reply(&reply), Some(&audio[..]));
        let req = retransmit_request(1, 500, 4);
        assert_eq!(req, [0x80, 0xD5, 0, 1, 0x01, 0xF4, 0, 4]);
        assert_eq!(parse_retransmit_request(&req), Some((500, 4)));
        assert_eq!(parse_retransmit_request(&reply), None);
    }

    proptest! {
        #[test]
        fn rtp_round_trip(marker: bool, pt in 0u8..128, seq: u16, ts: u32, ssrc: u32,
                          payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = RtpHeader { marker, payload_type: pt, seq, timestamp: ts, ssrc };
            let bytes = encode(&h, &payload);
            prop_assert_eq!(bytes.len(), HEADER_LEN + payload.len());
            let (h2, p2) = parse(&bytes).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(p2, &payload[..]);
        }

        #[test]
        fn ntp_round_trip_within_a_nanosecond(secs in 0u64..2_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = at(secs, nanos);
            let back = NtpTime::from_system_time(t).to_system_time();
            let diff = t.duration_since(back).unwrap_or_else(|e| e.duration());
            prop_assert!(diff <= Duration::from_nanos(1), "{:?}", diff);
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), secs: u32) {
            let now = at(u64::from(secs), 0);
            let _ = parse(&bytes);
            let _ = timing_reply(&bytes, now);
            let _ = TimingPacket::parse(&bytes);
            let _ = SyncPacket::parse(&bytes);
            let _ = parse_retransmit_reply(&bytes);
            let _ = parse_retransmit_request(&bytes);
        }
    }
}
