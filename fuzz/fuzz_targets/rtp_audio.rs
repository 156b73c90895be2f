//! RAOP audio over UDP: RTP, sync, retransmit and timing packets through
//! `raop::audio::AudioReceiver::on_port_datagram` (RTP parsing, AES, ALAC or L16 decoding, the
//! capture), then the capture read back.
//!
//! Input: one byte choosing the stream format and encryption, then datagrams, each a port byte
//! (server, control, timing), a 2-byte big-endian length and that many bytes.
//!
//! The ALAC decoder catches the `alac` crate's panics on corrupt packets (see
//! `raop::audio::Decoder::decode`), so this target keeps the default panic hook instead of
//! libfuzzer-sys's aborting one: a panic that escapes the receiver still reaches libfuzzer-sys's
//! own catch and aborts the run.
#![no_main]

use std::sync::Once;
use std::time::{Duration, SystemTime};

use airtwin_simulators::raop::audio::{AesParams, AudioFormat, AudioReceiver, Port};
use airtwin_simulators::raop::rtp;
use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
    });
    let Some((&config, mut rest)) = data.split_first() else {
        return;
    };
    let channels = if config & 0x02 == 0 { 2 } else { 1 };
    let frames = if config & 0x04 == 0 { 352 } else { 4096 };
    let format = match config & 0x18 {
        0x00 => AudioFormat::alac(44_100, channels, frames),
        0x08 => AudioFormat::l16(44_100, channels, frames),
        0x10 => AudioFormat::alac(48_000, channels + (config >> 5) as u16, frames),
        _ => AudioFormat::l16(44_100, (config >> 5) as u16, frames),
    };
    let aes = (config & 0x01 == 1).then_some(AesParams {
        key: [0x2b; 16],
        iv: [0x00; 16],
    });
    let receiver = AudioReceiver::new(format, aes);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    while let [port, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let port = Port::ALL[usize::from(*port) % 3];
        let _ = rtp::parse(datagram);
        let _ = rtp::TimingPacket::parse(datagram);
        let _ = rtp::SyncPacket::parse(datagram);
        let _ = rtp::parse_retransmit_request(datagram);
        for reply in receiver.on_port_datagram(port, datagram, now) {
            assert!(rtp::TimingPacket::parse(&reply).is_some(), "{reply:?}");
        }
    }
    let capture = receiver.capture();
    let _ = capture.stats();
    let _ = capture.missing_ranges();
    let _ = capture.pcm();
});
