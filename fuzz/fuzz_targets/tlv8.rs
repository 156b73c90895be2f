//! HomeKit TLV8 bodies (`hap::tlv8::Tlv8::decode`, docs/protocols/hap.md).
//! Property: a decoded message encodes to bytes that decode to the same message.
#![no_main]

use airtwin_simulators::hap::tlv8::Tlv8;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tlv) = Tlv8::decode(data) else {
        return;
    };
    let _ = (tlv.state(), tlv.error());
    let again = Tlv8::decode(&tlv.encode()).expect("an encoded message decodes");
    assert_eq!(again.items(), tlv.items());
});
