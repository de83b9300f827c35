//! A downloaded pack read as a device installs it: the container and index checks, then every
//! blob decoded (the solid stream, and each patch against a base copy).
#![no_main]

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use manifests::{Digest, ExpectedPack, PackReader, parse_pack_index};

/// Blob sizes a fuzzed index may claim: a real device expects the sizes of its signed manifest,
/// so an index claiming gigabytes is refused there, before any decoding.
const MAX_BLOB: u64 = 8 << 20;

/// What the device holds for any base digest: the same bytes each time.
fn base(_: &Digest) -> Option<Vec<u8>> {
    Some(b"<!doctype html><h1>checkout</h1>\n".repeat(64))
}

fuzz_target!(|data: &[u8]| {
    // Expect what the pack's own index claims, so that inputs get past the checks of
    // `PackReader::open` to the decoders; a pack that does not parse is still opened.
    let index = zip::ZipArchive::new(Cursor::new(data)).ok().and_then(|mut zip| {
        let mut bytes = Vec::new();
        zip.by_name("pack.json")
            .ok()?
            .take(1 << 20)
            .read_to_end(&mut bytes)
            .ok()?;
        parse_pack_index(&bytes).ok()
    });
    let blobs: BTreeMap<Digest, u64> = index
        .iter()
        .flat_map(|i| i.blobs.iter().map(|b| (b.sha256, b.size)))
        .collect();
    if blobs.values().any(|&size| size > MAX_BLOB) {
        return;
    }
    let expected = ExpectedPack {
        to_manifest: index.as_ref().map_or(Digest::of(b""), |i| i.to_manifest),
        from_manifest: index.as_ref().and_then(|i| i.from_manifest),
        blobs: &blobs,
        // A zip pack names its blobs itself.
        order: &[],
        from_blobs: &[],
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
