//! A downloaded compact pack read as a device installs it, against a fixed pair of releases:
//! the header, tags and frame boundaries checked, then every blob decoded (the data frame, and
//! each patch against a base copy).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use manifests::{Digest, ExpectedPack, PackReader};

/// The releases the seeds (`fuzz/seeds.py`) were written for: four target blobs in path order,
/// with their sizes (the device checks each result's sha256 after the reader, so any digests
/// do here), and two blobs of the starting release.
const TARGET: [(u8, u64); 4] = [(0x10, 2048), (0x11, 4096), (0x12, 0), (0x13, 100)];
const FROM: [u8; 2] = [0x20, 0x21];

/// What the device holds for any base digest: the same bytes each time.
fn base(_: &Digest) -> Option<Vec<u8>> {
    Some(b"<!doctype html><h1>checkout</h1>\n".repeat(64))
}

fuzz_target!(|data: &[u8]| {
    let blobs: BTreeMap<Digest, u64> = TARGET
        .iter()
        .map(|&(b, size)| (Digest::from_bytes([b; 32]), size))
        .collect();
    let order: Vec<Digest> = TARGET.iter().map(|&(b, _)| Digest::from_bytes([b; 32])).collect();
    let from_blobs: Vec<Digest> = FROM.iter().map(|&b| Digest::from_bytes([b; 32])).collect();
    let expected = ExpectedPack {
        to_manifest: Digest::from_bytes([1; 32]),
        from_manifest: Some(Digest::from_bytes([2; 32])),
        blobs: &blobs,
        order: &order,
        from_blobs: &from_blobs,
    };
    let Ok(mut reader) = PackReader::open(data, &expected) else {
        return;
    };
    for blob in reader.blobs(|_| true, base) {
        match blob {
            Ok((sha256, bytes)) => assert_eq!(Some(&(bytes.len() as u64)), blobs.get(&sha256)),
            Err(_) => break,
        }
    }
});
