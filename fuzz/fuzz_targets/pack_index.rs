//! A pack's index (`pack.json`, the first thing a device reads of a downloaded pack).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = manifests::parse_pack_index(data);
});
