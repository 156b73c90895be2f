//! AirPlay `GET /info` request bodies (`airplay::info::parse_query`) and the TXT record bytes that
//! `/info` and DNS-SD carry (`airplay::info::decode_txt`).
//! Property: decoded TXT entries that fit one TXT string (255 bytes, RFC 6763 §6.1) once
//! re-encoded decode back to the same entries.
#![no_main]

use airtwin_simulators::airplay::info::{decode_txt, encode_txt, parse_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_query(data);
    if let Some(entries) = decode_txt(data) {
        if entries.iter().any(|(k, v)| k.len() + 1 + v.len() > 255) {
            return;
        }
        let bytes = encode_txt(&entries);
        assert_eq!(decode_txt(&bytes), Some(entries));
    }
});
