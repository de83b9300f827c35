//! A channel's signed index as a device receives it: the envelope is opened against a pinned key
//! (a forged one is refused, never a panic), and an index's contents are checked for a scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::{AppId, Channel, IndexScope, KeyPair, Timestamp, TrustedKeys};

fuzz_target!(|data: &[u8]| {
    let key = KeyPair::from_seed(&[7; 32]);
    let trusted = TrustedKeys::single(key.public().clone());
    let scope = IndexScope {
        app: AppId::parse("shop").expect("app"),
        channel: Channel::parse("production").expect("channel"),
    };
    let now = Timestamp::from_unix_secs(1_800_000_000);
    assert!(
        manifests::verify_index(data, &trusted, &scope, now, 0).is_err(),
        "nothing the fuzzer writes carries a valid signature"
    );
    if let Ok(index) = manifests::parse_index_unverified(data) {
        let _ = manifests::check_index(&index, &scope, now, 0);
    }
});
