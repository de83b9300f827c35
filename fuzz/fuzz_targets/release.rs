//! A release manifest's signed part: parsing and the rules a release must keep never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(release) = manifests::parse_release_unverified(data) {
        let _ = release.validate();
    }
});
