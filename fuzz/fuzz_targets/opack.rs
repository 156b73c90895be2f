//! Companion OPACK values (`companion::opack::decode`, docs/protocols/companion.md), with the
//! back-references pyatv writes.
//! Properties: garbage never panics nor expands without bound; a decoded value encodes to bytes
//! that decode to a value with the same encoding.
#![no_main]

use airtwin_simulators::companion::opack::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = decode(data) else {
        return;
    };
    let bytes = encode(&value);
    let again = decode(&bytes).expect("an encoded value decodes");
    assert_eq!(encode(&again), bytes);
});
