//! A manifest delta as a device receives it (`GET /v1/manifests/{to}/delta/{from}`), applied to
//! the signed manifest the device holds (the demo's stable release, `fuzz/data`). The device
//! verifies the rebuilt bytes' signature afterwards; here nothing may panic, and a result is
//! only ever the expected digest's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::{Digest, apply_release_delta};

const BASE: &[u8] = include_bytes!("../data/manifest-stable.json");
const TARGET: &[u8] = include_bytes!("../data/manifest-candidate.json");

fuzz_target!(|data: &[u8]| {
    let expected = signed_digest(TARGET);
    if let Ok(rebuilt) = apply_release_delta(data, BASE, &expected) {
        assert_eq!(signed_digest(&rebuilt), expected, "a rebuilt manifest is the one asked for");
    }
});

/// The digest of an envelope's signed part, as a device names a release.
fn signed_digest(envelope: &[u8]) -> Digest {
    let value = manifests::parse_strict(envelope).expect("an envelope");
    let signed = value.get("signed").expect("a signed part");
    Digest::of(&manifests::to_canonical_bytes(signed).expect("canonical"))
}
