//! RFC 2326 §10.12 interleaved frames (RAOP's RTP over TCP): `wire::interleaved::parse` walked
//! over the input as the connection driver walks its buffer.
//! Property: every frame read re-encodes to exactly the bytes it took.
#![no_main]

use airtwin_simulators::wire::interleaved;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while interleaved::starts_frame(&data[at..]) {
        let Some((frame, used)) = interleaved::parse(&data[at..]) else {
            break;
        };
        assert_eq!(used, interleaved::HEADER_LEN + frame.payload.len());
        assert_eq!(
            interleaved::encode(frame.channel, frame.payload),
            data[at..at + used]
        );
        at += used;
    }
});
