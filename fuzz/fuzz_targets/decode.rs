//! The device's zstd decoder on its own: a frame decoded whole, bounded, or as a patch against a
//! base (`--patch-from`). The input is the declared size (4 bytes, little-endian, under 1 MiB),
//! the call (1 byte), then the frame; a patch puts its base first, after its length (2 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::{decode_bounded, decode_frame, decode_patch};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let size = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]])) % (1 << 20);
    let rest = &data[5..];
    match data[4] % 3 {
        0 => {
            if let Ok(bytes) = decode_frame(rest, size) {
                assert_eq!(bytes.len() as u64, size, "decode_frame keeps the declared size");
            }
        }
        1 => {
            if let Ok(bytes) = decode_bounded(rest, size) {
                assert!(bytes.len() as u64 <= size, "decode_bounded keeps its bound");
            }
        }
        _ => {
            if rest.len() < 2 {
                return;
            }
            let base_len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let (base, frame) = rest[2..].split_at(base_len);
            if let Ok(bytes) = decode_patch(frame, base, size) {
                assert_eq!(bytes.len() as u64, size, "decode_patch keeps the declared size");
            }
        }
    }
});
