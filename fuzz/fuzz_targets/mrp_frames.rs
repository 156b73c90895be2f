//! MRP data-channel frames after decryption (`mrp::frame::Frame::decode`, the binary-plist
//! payload's length-prefixed messages `mrp::frame::messages`, each a protobuf `ProtocolMessage`
//! `mrp::message::decode`; docs/protocols/mrp.md, "Data frames").
//! Properties: garbage never panics; a frame re-encodes to a frame of the same length, seqno,
//! padding and payload (its two text fields are read as text, lossily, and never echoed); a
//! decoded message re-encodes to bytes that decode to an equal message.
#![no_main]

use airtwin_simulators::mrp::frame::{messages, Frame};
use airtwin_simulators::mrp::message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        rest = &rest[used..];
        let bytes = frame.encode();
        let (again, len) = Frame::decode(&bytes)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert_eq!(len, bytes.len());
        assert_eq!(
            (again.seqno, again.padding, &again.payload),
            (frame.seqno, frame.padding, &frame.payload)
        );
        let Ok(found) = messages(&frame.payload) else {
            continue;
        };
        for m in found {
            let Ok(msg) = message::decode(&m) else {
                continue;
            };
            let encoded = message::encode(&msg);
            let decoded = message::decode(&encoded).expect("an encoded message decodes");
            assert!(
                decoded == msg,
                "a message changed through encode and decode"
            );
        }
    }
});
