//! Shannon-framed Spotify AP packets (`spotify_ap::codec::Decoder`, docs/protocols/spotify-ap.md,
//! "Shannon frames"): arbitrary bytes as received, and frames the encoder made from the input,
//! split anywhere, optionally with one byte flipped.
//! Properties: garbage never panics; frames decode to what was encoded; a flipped byte is a MAC
//! error or a frame still waiting, never a different frame accepted.
#![no_main]

use airtwin_simulators::spotify_ap::codec::{Decoder, Encoder, Frame};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x5a; 32];

fn drain(decoder: &mut Decoder) -> (Vec<Frame>, bool) {
    let mut frames = Vec::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, false),
            Err(_) => return (frames, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(control >> 1).max(1);

    let mut raw = Decoder::new(KEY);
    for piece in data.chunks(step) {
        raw.push(piece);
        if drain(&mut raw).1 {
            break;
        }
    }

    // Frames from the input: command byte, then up to 255 payload bytes named by the next byte.
    let mut frames = Vec::new();
    let mut rest = data;
    while let [cmd, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        frames.push(Frame::new(*cmd, &tail[..n]));
        rest = &tail[n..];
    }
    let mut encoder = Encoder::new(KEY);
    let mut wire = Vec::new();
    for f in &frames {
        wire.extend(encoder.encode(f).expect("payloads under 64 KiB encode"));
    }
    let flip = control & 1 == 1 && !wire.is_empty();
    if flip {
        let at = usize::from(control) * 31 % wire.len();
        wire[at] ^= 0x80;
    }
    let mut decoder = Decoder::new(KEY);
    let mut got = Vec::new();
    let mut failed = false;
    for piece in wire.chunks(step) {
        decoder.push(piece);
        let (mut some, err) = drain(&mut decoder);
        got.append(&mut some);
        if err {
            failed = true;
            break;
        }
    }
    if flip {
        assert!(got.len() <= frames.len());
        assert_eq!(
            got[..],
            frames[..got.len()],
            "a corrupted frame was accepted"
        );
        assert!(
            failed || got.len() < frames.len(),
            "a flipped byte went unnoticed"
        );
    } else {
        assert!(!failed);
        assert_eq!(got, frames);
    }
});
