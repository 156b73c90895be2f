//! Device side of RTSP/HTTP framing: `wire::parse_request` and `wire::salvage` on any bytes.
//! Property: a framed request re-encoded with `Request::encode` frames to the same request.
#![no_main]

use airtwin_simulators::wire::{parse_request, salvage, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = salvage(data);
    let small = Limits {
        max_head: 256,
        max_headers: 4,
        max_body: 64,
    };
    let _ = parse_request(data, &small);
    let limits = Limits::default();
    if let Ok(Some((request, used))) = parse_request(data, &limits) {
        assert!(used <= data.len());
        let again = request.encode();
        // Encoding always writes `Content-Length`: one header more than may have arrived.
        let roomier = Limits {
            max_headers: limits.max_headers + 1,
            ..limits
        };
        let (reparsed, used_again) = match parse_request(&again, &roomier) {
            Ok(Some(framed)) => framed,
            other => panic!(
                "re-encoded request does not frame: {other:?}\n{}",
                String::from_utf8_lossy(&again)
            ),
        };
        assert_eq!(used_again, again.len());
        assert_eq!(reparsed.method, request.method);
        assert_eq!(reparsed.uri, request.uri);
        assert_eq!(reparsed.protocol, request.protocol);
        assert_eq!(reparsed.body, request.body);
        let _ = (request.path(), request.query(), request.cseq());
    }
});
