//! The RTSP `Transport` header: `wire::transport::Transport::parse`.
//! Property: what was read prints (`Display`) to a header that reads back the same.
#![no_main]

use airtwin_simulators::wire::transport::Transport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = Transport::parse(header) {
        for key in ["server_port", "control_port", "timing_port", "client_port"] {
            let _ = t.port(key);
        }
        let _ = t.is_tcp();
        let printed = t.to_string();
        assert_eq!(Transport::parse(&printed).as_ref(), Some(&t), "{printed:?}");
    }
});
