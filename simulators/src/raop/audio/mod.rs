//! The receiving end of a RAOP audio stream: payload decryption, ALAC / L16 decoding, and a
//! capture of what arrived, fed by the three UDP ports SETUP opens (server, control, timing).
//!
//! Sans-IO: [`AudioReceiver`] gets datagrams and the time from the shell through
//! [`DatagramHandler`](crate::protocol_core::DatagramHandler) and answers with datagrams; it never
//! touches a socket or a clock.
//! Nothing here panics on arbitrary datagrams: every parser is length-checked and the third-party
//! ALAC decoder (which asserts on some corrupt input) runs under `catch_unwind`.

mod capture;
mod crypto;
mod decode;
mod format;
mod receiver;

pub use capture::{AudioSink, Capture, CaptureStats, PacketOutcome, Retention};
pub use crypto::{
    decrypt_payload, encrypt_payload, open_sealed, seal, AesParams, AES_BLOCK, SEALED_OVERHEAD,
};
pub use decode::{AudioError, Decoder};
pub use format::{
    alac_fmtp, encode_l16, AudioFormat, MAX_ALAC_FRAMES_PER_PACKET, MIN_ALAC_FRAMES_PER_PACKET,
};
pub use receiver::{AudioReceiver, Port, PortHandler};

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::raop::rtp::{self, RtpHeader};
    use crate::raop::sender::{AlacPacketizer, RtpSender};
    use crate::wire::sdp::parse_announce;
    use crate::wire::sdp::Codec;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::time::{Duration, UNIX_EPOCH};

    fn from() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn nist_params() -> AesParams {
        // NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt.
        AesParams {
            key: hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap(),
            iv: hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap(),
        }
    }

    /// Deterministic test signal: a sine per channel plus LCG noise, full 16-bit range used.
    pub(crate) fn signal(frames: usize, channels: usize) -> Vec<i16> {
        let mut state: u32 = 0x1234_5678;
        let mut out = Vec::with_capacity(frames * channels);
        for i in 0..frames {
            for c in 0..channels {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = f64::from((state >> 16) as i16) / 8.0;
                let sine = 20_000.0
                    * (i as f64 * 2.0 * std::f64::consts::PI * (440.0 + 110.0 * c as f64)
                        / 44_100.0)
                        .sin();
                out.push((sine + noise).clamp(-32768.0, 32767.0) as i16);
            }
        }
        out
    }

    #[test]
    fn aes_known_answer_and_remainder_in_clear() {
        let aes = nist_params();
        let mut payload = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "0102030405"
        ));
        let plain = payload.clone();
        encrypt_payload(&aes, &mut payload);
        assert_eq!(
            payload[..32],
            hex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")[..]
        );
        assert_eq!(
            &payload[32..],
            &[1, 2, 3, 4, 5],
            "remainder travels in clear"
        );
        decrypt_payload(&aes, &mut payload);
        assert_eq!(payload, plain);
    }

    #[test]
    fn aes_chain_restarts_per_packet_and_short_payloads_stay_clear() {
        let aes = nist_params();
        let mut a = plain_block();
        let mut b = plain_block();
        encrypt_payload(&aes, &mut a);
        encrypt_payload(&aes, &mut b);
        assert_eq!(a, b, "same IV for every packet");
        assert_ne!(a, plain_block());
        let mut short = vec![9u8; 15];
        encrypt_payload(&aes, &mut short);
        assert_eq!(short, vec![9u8; 15]);
        let mut empty: Vec<u8> = Vec::new();
        decrypt_payload(&aes, &mut empty);
        assert!(empty.is_empty());
    }

    fn plain_block() -> Vec<u8> {
        (0u8..40).collect()
    }

    #[test]
    fn l16_round_trip_big_endian() {
        let samples = [0i16, 1, -1, 0x1234, i16::MIN, i16::MAX];
        let bytes = encode_l16(&samples);
        assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0xff, 0xff, 0x12, 0x34]);
        let mut d = Decoder::new(&AudioFormat::l16(44_100, 2, 352));
        assert_eq!(d.decode(&bytes).unwrap(), samples);
        assert_eq!(
            d.decode(&bytes[..6]),
            Err(AudioError::L16Length {
                len: 6,
                frame_bytes: 4
            })
        );
    }

    #[test]
    fn l16_stream_through_receiver_reordered_with_wrap() {
        let source = signal(352 * 5 + 100, 2);
        let receiver = Arc::new(AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None));
        let server = receiver.handler(Port::Server);
        let mut sender = RtpSender::new(65_533, 0, 0x0bad_cafe, None);
        let mut packets: Vec<Vec<u8>> = source
            .chunks(352 * 2)
            .map(|c| sender.next_packet(&encode_l16(c), (c.len() / 2) as u32))
            .collect();
        assert_eq!(packets.len(), 6);
        packets.reverse();
        for p in &packets {
            assert!(server.on_datagram(p, from(), now()).is_empty());
        }
        assert_eq!(receiver.pcm(), source);
        let stats = receiver.stats();
        assert_eq!(stats.codec, "L16");
        assert_eq!((stats.first_seq, stats.last_seq), (Some(65_533), Some(2)));
        assert_eq!((stats.packets, stats.missing, stats.duplicates), (6, 0, 0));
        assert_eq!(stats.frames, 352 * 5 + 100);
    }

    /// The end-to-end test the brief asks for: ALAC (alac-encoder) → AES → RTP → the receiver's
    /// ports → the captured PCM is the source, exactly.
    #[test]
    fn alac_encrypted_shuffled_duplicated_retransmitted_round_trip() {
        let channels = 2;
        let fpp = 352;
        // 10 full packets and a short one of 123 frames.
        let source = signal(fpp * 10 + 123, channels);
        let mut packetizer = AlacPacketizer::new(channels as u16, 44_100, fpp as u32).unwrap();
        let frames = packetizer.packets(&source);
        assert_eq!(frames.len(), 11);

        let aes = nist_params();
        let mut sender = RtpSender::new(65_530, 12_345, 0xfeed_f00d, Some(aes.clone()));
        let mut packets: Vec<Vec<u8>> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let n = if i == 10 { 123 } else { fpp as u32 };
                sender.next_packet(f, n)
            })
            .collect();
        assert_eq!(packets[0][1], 0xE0, "marker on the first packet");
        assert_eq!(packets[1][1], 0x60);
        // The payload really is encrypted: the first 16 bytes differ from the ALAC frame.
        assert_ne!(&packets[0][12..28], &frames[0][..16]);

        let announce = parse_announce(
            format!(
                "v=0\r\no=iTunes 1 0 IN IP4 127.0.0.1\r\ns=iTunes\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 0 RTP/AVP 96\r\na=rtpmap:96 {}\r\na=fmtp:96 {}\r\n",
                packetizer.rtpmap(),
                packetizer.fmtp()
            )
            .as_bytes(),
        )
        .unwrap();
        let receiver = Arc::new(AudioReceiver::from_announce(&announce, Some(aes)));
        assert_eq!(receiver.format(), &AudioFormat::alac(44_100, 2, 352));
        let server = receiver.handler(Port::Server);
        let control = receiver.handler(Port::Control);
        let timing = receiver.handler(Port::Timing);

        // Packet 4 is lost on the server port and comes as a retransmit reply on the control
        // port; packet 7 is sent twice; the rest arrive shuffled.
        let lost = packets.remove(4);
        let twice = packets[6].clone();
        packets.push(twice);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        packets.shuffle(&mut rng);
        for p in &packets {
            assert!(server.on_datagram(p, from(), now()).is_empty());
        }
        assert_eq!(receiver.stats().missing, 1);
        assert_eq!(receiver.capture().missing_ranges(), vec![(65_534, 1)]);
        let retransmit = rtp::retransmit_reply(65_534, &lost);
        assert!(control.on_datagram(&retransmit, from(), now()).is_empty());
        control.on_datagram(&rtp::sync_packet(true, 0, now(), 12_345), from(), now());
        let reply = timing.on_datagram(&rtp::timing_request(now()), from(), now());
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0][1], 0xD3);

        // For captures: each port's datagram as it reads decrypted, header unchanged.
        let plain = server.plaintext(&lost).expect("an encrypted audio packet");
        assert_eq!((&plain[..12], &plain[12..]), (&lost[..12], &frames[4][..]));
        let plain = control.plaintext(&retransmit).expect("a retransmit reply");
        assert_eq!(
            (&plain[..16], &plain[16..]),
            (&retransmit[..16], &frames[4][..])
        );
        assert_eq!(
            control.plaintext(&rtp::sync_packet(true, 0, now(), 1)),
            None
        );
        assert_eq!(timing.plaintext(&rtp::timing_request(now())), None);

        let pcm = receiver.pcm();
        assert_eq!(pcm.len(), source.len());
        assert!(pcm == source, "captured PCM differs from the source");

        let stats = receiver.stats();
        assert_eq!(
            stats,
            CaptureStats {
                packets: 12,
                frames: (fpp * 10 + 123) as u64,
                duplicates: 1,
                decode_errors: 0,
                missing: 0,
                first_seq: Some(65_530),
                last_seq: Some(4),
                codec: "ALAC".into(),
                sample_rate: 44_100,
                channels: 2,
                retransmits: 1,
                sync_packets: 1,
                timing_requests: 1,
                ignored: 0,
                late: 0,
                last_error: None,
            }
        );
        assert_eq!(receiver.capture().last_sync().unwrap().rtp_now, 12_345);

        // The WAV bytes hold the same samples.
        let wav = receiver.to_wav();
        let mut reader = hound::WavReader::new(wav.as_slice()).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 44_100);
        let back: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert!(back == source);
    }

    #[test]
    fn alac_mono_and_4096_frames() {
        for (channels, fpp, frames) in [(1usize, 4096usize, 4096 * 2 + 1), (2, 4096, 4096)] {
            let source = signal(frames, channels);
            let mut p = AlacPacketizer::new(channels as u16, 48_000, fpp as u32).unwrap();
            let mut d = Decoder::new(&AudioFormat::alac(48_000, channels as u16, fpp as u32));
            let decoded: Vec<i16> = p
                .packets(&source)
                .iter()
                .flat_map(|f| d.decode(f).unwrap())
                .collect();
            assert!(decoded == source, "{channels} channels, {fpp} frames");
        }
    }

    #[test]
    fn gaps_and_decode_errors_are_counted() {
        let source = signal(352 * 4, 2);
        let mut packetizer = AlacPacketizer::new(2, 44_100, 352).unwrap();
        let frames = packetizer.packets(&source);
        let receiver = AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None);
        let mut sender = RtpSender::new(100, 0, 1, None);
        let packets: Vec<_> = frames.iter().map(|f| sender.next_packet(f, 352)).collect();
        receiver.on_port_datagram(Port::Server, &packets[0], now());
        receiver.on_port_datagram(Port::Server, &packets[3], now());
        // A packet whose payload is not ALAC.
        let junk = rtp::encode(&RtpHeader::audio(false, 105, 0, 1), &[0xff; 7]);
        receiver.on_port_datagram(Port::Server, &junk, now());
        // Not audio at all.
        receiver.on_port_datagram(Port::Server, b"hello", now());
        let mut other_pt = packets[1].clone();
        other_pt[1] = 0x61;
        receiver.on_port_datagram(Port::Server, &other_pt, now());
        let stats = receiver.stats();
        assert_eq!(stats.packets, 3);
        assert_eq!(stats.decode_errors, 1);
        assert!(stats.last_error.is_some());
        assert_eq!(stats.missing, 3, "101, 102 and 104 never came");
        assert_eq!(stats.ignored, 2);
        assert_eq!((stats.first_seq, stats.last_seq), (Some(100), Some(105)));
        assert_eq!(
            receiver.capture().missing_ranges(),
            vec![(101, 2), (104, 1)]
        );
        let mut expected = source[..704].to_vec();
        expected.extend_from_slice(&source[704 * 3..]);
        assert_eq!(receiver.pcm(), expected);
        assert_eq!(stats.frames, 704);
    }

    /// A FIL element whose 4-bit count is 15 followed by an 8-bit count of 0: the `alac` crate
    /// computes `0usize - 1` (a panic with overflow checks). The receiver reports a decode error
    /// and goes on.
    #[test]
    fn alac_input_that_panics_the_decoder_is_a_decode_error() {
        let receiver = AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None);
        let evil = rtp::encode(&RtpHeader::audio(true, 1, 0, 1), &[0xDE, 0x00, 0x00, 0x00]);
        receiver.on_port_datagram(Port::Server, &evil, now());
        let good = {
            let mut p = AlacPacketizer::new(2, 44_100, 352).unwrap();
            let mut s = RtpSender::new(2, 352, 1, None);
            s.next_packet(&p.packets(&signal(352, 2))[0], 352)
        };
        receiver.on_port_datagram(Port::Server, &good, now());
        let stats = receiver.stats();
        assert_eq!(
            (stats.packets, stats.decode_errors, stats.frames),
            (2, 1, 352)
        );
        if cfg!(debug_assertions) {
            assert_eq!(
                stats.last_error.as_deref(),
                Some("ALAC decoder panicked on this packet (corrupt data)")
            );
        }
        assert!(receiver.pcm() == signal(352, 2));
    }

    #[test]
    fn other_codecs_are_counted_not_decoded() {
        let mut format = AudioFormat::l16(44_100, 2, 352);
        format.codec = Codec::Other("mpeg4-generic".into());
        let receiver = AudioReceiver::new(format, None);
        for seq in 0..3u16 {
            let p = rtp::encode(&RtpHeader::audio(seq == 0, seq, 0, 1), &[1, 2, 3]);
            receiver.on_port_datagram(Port::Server, &p, now());
        }
        let stats = receiver.stats();
        assert_eq!(
            (stats.packets, stats.frames, stats.decode_errors),
            (3, 0, 0)
        );
        assert_eq!(stats.codec, "mpeg4-generic");
        assert!(receiver.pcm().is_empty());
    }

    #[test]
    fn unusable_alac_configs_do_not_decode_and_do_not_panic() {
        for fmtp in [
            vec![352, 0, 24, 40, 10, 14, 2, 255, 0, 0, 44_100],
            vec![352, 0, 16, 40, 10, 14, 0, 255, 0, 0, 44_100],
            vec![u32::MAX, 0, 16, 40, 10, 14, 2, 255, 0, 0, 44_100],
            vec![352, 0, 300, 40, 10, 14, 2, 255, 0, 0, 44_100],
        ] {
            let mut format = AudioFormat::alac(44_100, 2, 352);
            format.fmtp = fmtp.clone();
            let mut d = Decoder::new(&format);
            assert!(!d.is_decodable(), "{fmtp:?}");
            assert!(matches!(
                d.decode(&[0; 10]),
                Err(AudioError::Undecodable(_))
            ));
        }
    }

    /// Collects what a bounded capture hands on, and whether it was finished.
    #[derive(Clone, Default)]
    struct Collect(Arc<std::sync::Mutex<(Vec<i16>, bool)>>);

    impl AudioSink for Collect {
        fn write(&mut self, samples: &[i16]) {
            self.0.lock().unwrap().0.extend_from_slice(samples);
        }
        fn finish(&mut self) {
            self.0.lock().unwrap().1 = true;
        }
    }

    #[test]
    fn a_packet_that_fails_after_its_place_left_the_window_is_late_not_stored() {
        let receiver = Arc::new(AudioReceiver::bounded(
            AudioFormat::l16(44_100, 2, 352),
            None,
            4,
            None,
        ));
        let server = receiver.handler(Port::Server);
        let mut sender = RtpSender::new(100, 0, 1, None);
        for _ in 0..20 {
            let p = sender.next_packet(&encode_l16(&[0; 704]), 352);
            server.on_datagram(&p, from(), now());
        }
        // A retransmit of packet 101 whose payload does not decrypt, long after its place left.
        let old = RtpHeader::audio(false, 101, 352, 1);
        receiver
            .capture()
            .fail(&old, AudioError::Undecodable("spoiled tag".into()));
        // And failures ahead of the window still keep the capture within it.
        for seq in 120..130 {
            let h = RtpHeader::audio(false, seq, 352 * u32::from(seq), 1);
            receiver
                .capture()
                .fail(&h, AudioError::Undecodable("spoiled tag".into()));
            assert!(receiver.capture().kept() <= 4);
        }
        let stats = receiver.stats();
        assert_eq!((stats.packets, stats.late, stats.missing), (31, 1, 0));
        assert_eq!(stats.decode_errors, 10);
    }

    #[test]
    fn a_bounded_capture_keeps_its_window_and_hands_the_rest_on_in_order() {
        let source = signal(352 * 300, 2);
        let sink = Collect::default();
        let receiver = Arc::new(AudioReceiver::bounded(
            AudioFormat::l16(44_100, 2, 352),
            None,
            16,
            Some(Box::new(sink.clone())),
        ));
        let server = receiver.handler(Port::Server);
        let mut sender = RtpSender::new(65_400, 0, 1, None);
        let mut packets: Vec<Vec<u8>> = source
            .chunks(352 * 2)
            .map(|c| sender.next_packet(&encode_l16(c), 352))
            .collect();
        // Reordered within the window, one packet lost and arriving far too late.
        packets.swap(10, 12);
        let late = packets.remove(5);
        for p in &packets {
            server.on_datagram(p, from(), now());
            assert!(receiver.capture().kept() <= 16);
        }
        server.on_datagram(&late, from(), now());
        let stats = receiver.stats();
        assert_eq!((stats.packets, stats.missing, stats.late), (300, 1, 1));
        assert_eq!(stats.frames, 299 * 352);
        assert_eq!((stats.first_seq, stats.last_seq), (Some(65_400), Some(163)));
        let mut expected = source.clone();
        expected.drain(5 * 704..6 * 704);
        let handed = sink.0.lock().unwrap().0.len();
        assert_eq!(handed + receiver.pcm().len(), expected.len());
        // 299 packets stored; the lost one's place was handed on as missing.
        let retention = receiver.capture().retention();
        assert_eq!(
            retention,
            Retention {
                window: Some(16),
                kept: 16,
                handed_on: 299 - 16,
                late: 1
            }
        );
        receiver.finish_stream();
        let (got, finished) = sink.0.lock().unwrap().clone();
        assert!(finished);
        assert_eq!(got, expected, "every sample handed on, in sequence order");
        assert!(receiver.pcm().is_empty());
        assert_eq!(
            receiver.stats().frames,
            299 * 352,
            "counters cover the stream"
        );
    }

    #[test]
    fn timing_port_answers_and_ignores() {
        let receiver = AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None);
        let request = rtp::timing_request(now() - Duration::from_secs(1));
        let replies = receiver.on_port_datagram(Port::Timing, &request, now());
        assert_eq!(replies.len(), 1);
        assert_eq!(&replies[0][8..16], &request[24..32]);
        assert!(receiver
            .on_port_datagram(Port::Timing, &replies[0], now())
            .is_empty());
        let stats = receiver.stats();
        assert_eq!((stats.timing_requests, stats.ignored), (1, 1));
    }

    fn receivers() -> Vec<AudioReceiver> {
        let mut other = AudioFormat::l16(44_100, 2, 352);
        other.codec = Codec::Other("AAC".into());
        vec![
            AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), Some(nist_params())),
            AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None),
            AudioReceiver::new(AudioFormat::alac(44_100, 1, 4096), None),
            AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None),
            AudioReceiver::new(other, None),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_datagrams_never_panic(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        ) {
            for receiver in receivers() {
                for d in &datagrams {
                    for port in Port::ALL {
                        let replies = receiver.on_port_datagram(port, d, now());
                        prop_assert!(replies.len() <= 1);
                    }
                }
                let stats = receiver.stats();
                prop_assert!(stats.packets >= stats.duplicates);
                let _ = receiver.pcm();
            }
        }

        /// Real ALAC packets with bytes changed and cut: garbage that gets past the first checks
        /// of the decoder, down to the paths where the `alac` crate asserts.
        #[test]
        fn mutated_alac_packets_never_panic(
            channels in 1u16..=2,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in any::<prop::sample::Index>(),
            loud: bool,
        ) {
            let pcm = if loud { signal(352, usize::from(channels)) } else { vec![3; 352 * usize::from(channels)] };
            let mut p = AlacPacketizer::new(channels, 44_100, 352).unwrap();
            let mut payload = p.packets(&pcm).remove(0);
            for (at, byte) in &edits {
                let i = at.index(payload.len());
                payload[i] ^= byte;
            }
            payload.truncate(cut.index(payload.len() + 1));
            let receiver = AudioReceiver::new(AudioFormat::alac(44_100, channels, 352), None);
            let packet = rtp::encode(&RtpHeader::audio(true, 1, 0, 1), &payload);
            receiver.on_port_datagram(Port::Server, &packet, now());
            let stats = receiver.stats();
            prop_assert_eq!(stats.packets, 1);
            prop_assert!(stats.frames <= 352);
            prop_assert!(stats.decode_errors <= 1);
            prop_assert_eq!(stats.decode_errors == 1, stats.last_error.is_some());
        }

        /// Valid RTP headers with arbitrary payloads, so the decoders see garbage.
        #[test]
        fn arbitrary_payloads_never_panic(
            packets in proptest::collection::vec(
                (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)), 1..6),
            retransmit: bool,
        ) {
            for receiver in receivers() {
                for (seq, payload) in &packets {
                    let p = rtp::encode(&RtpHeader::audio(false, *seq, 0, 1), payload);
                    if retransmit {
                        receiver.on_port_datagram(Port::Control, &rtp::retransmit_reply(*seq, &p), now());
                    } else {
                        receiver.on_port_datagram(Port::Server, &p, now());
                    }
                }
                let stats = receiver.stats();
                prop_assert_eq!(stats.packets, packets.len() as u64);
                let _ = receiver.pcm();
            }
        }
    }
}
