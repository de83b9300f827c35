//! Canonical JSON, the form every signature covers: whatever parses strictly has one canonical
//! encoding, which parses back to the same value and encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = manifests::parse_strict(data) else {
        return;
    };
    let Ok(bytes) = manifests::to_canonical_bytes(&value) else {
        return;
    };
    let again = manifests::parse_strict(&bytes).expect("canonical bytes parse");
    assert_eq!(again, value);
    assert_eq!(manifests::to_canonical_bytes(&again).expect("encodes"), bytes);
});
