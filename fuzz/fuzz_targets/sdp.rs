//! The ANNOUNCE body: `wire::sdp::parse_announce`, and the audio decoder built from what it read.
#![no_main]

use airtwin_simulators::raop::audio::{AudioFormat, Decoder};
use airtwin_simulators::wire::sdp::{parse_announce, unfold};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = unfold(text);
    }
    if let Ok(announce) = parse_announce(data) {
        let format = AudioFormat::from_announce(&announce);
        let _ = Decoder::new(&format).is_decodable();
    }
});
