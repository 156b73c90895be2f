//! Client side of RTSP/HTTP framing: `wire::parse_response` on any bytes.
//! Property: a framed response re-encoded with `Response::encode` frames to the same response.
#![no_main]

use airtwin_simulators::wire::{parse_response, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_head: 256,
        max_headers: 4,
        max_body: 64,
    };
    let _ = parse_response(data, &small);
    let limits = Limits::default();
    if let Ok(Some((response, used))) = parse_response(data, &limits) {
        assert!(used <= data.len());
        let again = response.encode();
        // Encoding always writes `Content-Length`: one header more than may have arrived.
        let roomier = Limits {
            max_headers: limits.max_headers + 1,
            ..limits
        };
        let (reparsed, used_again) = match parse_response(&again, &roomier) {
            Ok(Some(framed)) => framed,
            other => panic!(
                "re-encoded response does not frame: {other:?}\n{}",
                String::from_utf8_lossy(&again)
            ),
        };
        assert_eq!(used_again, again.len());
        assert_eq!(reparsed.protocol, response.protocol);
        assert_eq!(reparsed.status, response.status);
        assert_eq!(reparsed.body, response.body);
    }
});
