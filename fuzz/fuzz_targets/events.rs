//! A device's event batch (`POST /v1/events`, unauthenticated apart from a public key): parsing
//! and validation never panic, and an accepted batch keeps the rules it was checked by.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = manifests::parse_event_batch(data) {
        assert!(!batch.events.is_empty() && batch.events.len() <= manifests::MAX_EVENTS_PER_BATCH);
        for e in &batch.events {
            assert!(e.offline_hits <= e.count && e.under_1s <= e.count);
            assert!(e.paint_ms.iter().sum::<u64>() <= e.count);
        }
    }
});
