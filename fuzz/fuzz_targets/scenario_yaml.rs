//! Scenario YAML: `airtwin::scenario::parse_str` (serde_yaml, then the loader's checks) on any
//! text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = airtwin::scenario::parse_str(text, Path::new("fuzz.yaml"));
});
