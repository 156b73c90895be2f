//! The HomeKit encrypted channel (`hap::channel::Channel::open`, docs/protocols/hap.md, "The
//! encrypted channel"): arbitrary bytes as a controller would send them, split anywhere; then the
//! same bytes sealed by the controller's side.
//! Properties: garbage never panics and, once refused, stays refused; what the controller seals
//! opens to exactly the plaintext however the bytes are split.
#![no_main]

use airtwin_simulators::hap::channel::Channel;
use libfuzzer_sys::fuzz_target;

const SHARED: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);

    let mut accessory = Channel::accessory(&SHARED);
    let mut broken = false;
    for piece in data.chunks(step) {
        let opened = accessory.open(piece);
        assert!(
            !(broken && opened.is_ok()),
            "a refused channel opened again"
        );
        broken |= opened.is_err();
    }

    let mut controller = Channel::controller(&SHARED);
    let sealed = controller.seal(data);
    let mut accessory = Channel::accessory(&SHARED);
    let mut plain = Vec::new();
    for piece in sealed.chunks(step) {
        plain.extend(accessory.open(piece).expect("sealed blocks open"));
    }
    assert_eq!(plain, data);
    assert_eq!(accessory.pending(), 0);
});
