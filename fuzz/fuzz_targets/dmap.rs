//! DMAP (DACP bodies): `wire::dmap::decode`, `render` and `strings`.
//! Property: after one encode (which writes integers at their tag's width), decode and encode
//! are each other's inverse.
#![no_main]

use airtwin_simulators::wire::dmap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(items) = dmap::decode(data) else {
        return;
    };
    let _ = dmap::render(&items);
    let _ = dmap::strings(&items);
    let _ = dmap::first(&items, &[b"cmst", b"caps"]);
    let bytes = dmap::encode(&items);
    let again = dmap::decode(&bytes).expect("encoded items decode");
    assert_eq!(dmap::encode(&again), bytes);
});
