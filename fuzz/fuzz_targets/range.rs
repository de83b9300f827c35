//! The server's `Range` header parsing (`GET /v1/blobs/{sha256}` and packs): any header value
//! against any body size. The input is the size (8 bytes, little-endian), then the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::http::public::{RangeSpec, parse_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&data[..8]);
    // Small sizes half of the time, so that ranges land inside the body as often as beyond it.
    let size = match size[7] & 1 {
        0 => u64::from_le_bytes(size) % 4096,
        _ => u64::from_le_bytes(size),
    };
    let Ok(spec) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    match parse_range(spec, size) {
        RangeSpec::Satisfiable(range) => {
            assert!(range.start < range.end, "{spec:?} of {size}: empty range {range:?}");
            assert!(range.end <= size, "{spec:?} of {size}: {range:?} past the end");
        }
        // Unsatisfiable only for a well-formed single range.
        RangeSpec::Unsatisfiable => assert!(
            spec.trim().starts_with("bytes=") && !spec.contains(','),
            "{spec:?} of {size}: unsatisfiable"
        ),
        RangeSpec::Ignored => {}
    }
});
