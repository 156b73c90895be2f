//! AirPlay `POST /fp-setup` bodies (FPLY): `airplay::fairplay::parse`, and the replies built from
//! what it read.
#![no_main]

use airtwin_simulators::airplay::fairplay::{self, FpRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fairplay::mode_of_reply(data);
    if let Ok(parsed) = fairplay::parse(data) {
        match parsed.request {
            FpRequest::Phase1 { mode } => {
                let reply = fairplay::phase1_reply(mode).expect("a parsed mode has a reply");
                assert_eq!(fairplay::mode_of_reply(reply), Some(mode));
            }
            FpRequest::Phase3 { key_message } => {
                let _ = fairplay::phase3_reply(&key_message, fairplay::ECHO_OFFSET);
            }
        }
    }
});
