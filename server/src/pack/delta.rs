//! zstd encoding of pack payloads: whole files compressed together, and byte-level patches against
//! a device's old copy (`zstd --patch-from`: the old file is a raw-content reference prefix).
//!
//! Why zstd: on consecutive releases of real web apps per-file zstd patches came to a median 0.8 %
//! of a deflate zip of the new release, against 0.84 % for bsdiff and about twice that for xdelta3,
//! and a device decodes them with a small pure-Rust decoder (see docs/adr/0002-deltas.md).
//!
//! The parameters stay within the device decoder's limits, named once in `manifests`: the window
//! log is clamped to [`MAX_WINDOW_LOG`] and no frame holds more than [`MAX_CONTENT_BYTES`]. The
//! server does not decode with libzstd: every pack is read back with the device's decoder before
//! it is stored (see `super::check`).

use manifests::{MAX_CONTENT_BYTES, MAX_WINDOW_LOG};
use zstd::zstd_safe::{self, CCtx, CParameter};

use crate::error::{Error, Result};

/// Compression level of final packs: slow to build (once, in the background), fast to decode.
pub const LEVEL: i32 = 19;

/// Compression level of fast packs, served until the final pack replaces them. With
/// long-distance matching, level 1 compresses a 150 MB bundler output in about half a second on
/// one core to within 3 % of level 3 (`zstd -3 --long`), which takes twice as long; level 19
/// takes minutes.
pub const FAST_LEVEL: i32 = 1;

fn zstd_error(what: &str, code: usize) -> Error {
    Error::Internal(format!("zstd {what}: {}", zstd_safe::get_error_name(code)))
}

/// The smallest window log that covers `len` bytes, within zstd's and the devices' limits.
fn window_log(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1).leading_zeros();
    bits.clamp(10, MAX_WINDOW_LOG)
}

fn cctx(level: i32, window_for: usize) -> Result<CCtx<'static>> {
    let mut cctx = CCtx::create();
    for param in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log(window_for)),
        // Long-distance matching finds repeats across a whole release and in a patch's base; at
        // low levels it saves time too, as there is less left to match and encode.
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
        CParameter::ContentSizeFlag(true),
    ] {
        cctx.set_parameter(param)
            .map_err(|c| zstd_error("parameter", c))?;
    }
    Ok(cctx)
}

/// Refuses content a device would not decode from one frame.
fn within_limit(len: usize) -> Result<()> {
    if len as u64 > MAX_CONTENT_BYTES {
        return Err(Error::Internal(format!(
            "{len} bytes in one zstd frame, above the devices' limit of {MAX_CONTENT_BYTES}"
        )));
    }
    Ok(())
}

/// Compresses `data` as one frame at `level`.
pub fn compress(data: &[u8], level: i32) -> Result<Vec<u8>> {
    within_limit(data.len())?;
    let mut cctx = cctx(level, data.len())?;
    cctx.set_pledged_src_size(Some(data.len() as u64))
        .map_err(|c| zstd_error("size", c))?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data)
        .map_err(|c| zstd_error("compress", c))?;
    Ok(out)
}

/// A patch that turns `base` into `target`, compressed at `level`.
pub fn patch(base: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>> {
    within_limit(target.len())?;
    let mut cctx = cctx(level, base.len() + target.len())?;
    cctx.set_pledged_src_size(Some(target.len() as u64))
        .map_err(|c| zstd_error("size", c))?;
    cctx.ref_prefix(base).map_err(|c| zstd_error("prefix", c))?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target)
        .map_err(|c| zstd_error("patch", c))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes as a device does.
    fn decode(
        frame: &[u8],
        base: Option<&[u8]>,
        size: u64,
    ) -> Result<Vec<u8>, manifests::DecodeError> {
        match base {
            Some(base) => manifests::decode_patch(frame, base, size),
            None => manifests::decode_frame(frame, size),
        }
    }

    fn text(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 7 == 0 {
                    b' '
                } else {
                    b'a' + ((x >> 16) % 26) as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_patch_rebuilds_the_target_and_is_much_smaller_than_the_target() {
        let base = text(1, 200_000);
        let mut target = base.clone();
        target.splice(50_000..50_010, b"a change!!".iter().copied());
        target.extend_from_slice(b"appended tail");
        let p = patch(&base, &target, LEVEL).unwrap();
        assert!(p.len() < 200, "patch is {} bytes", p.len());
        assert!(p.len() * 100 < compress(&target, LEVEL).unwrap().len());
        assert_eq!(
            decode(&p, Some(&base), target.len() as u64).unwrap(),
            target
        );
    }

    #[test]
    fn a_patch_against_the_wrong_base_does_not_rebuild_the_target() {
        let base = text(1, 50_000);
        let mut target = base.clone();
        target[100] ^= 1;
        let p = patch(&base, &target, LEVEL).unwrap();
        let wrong = text(2, 50_000);
        // The frame checksum catches it, or the output simply differs.
        match decode(&p, Some(&wrong), target.len() as u64) {
            Ok(out) => assert_ne!(out, target),
            Err(e) => assert!(e.to_string().contains("zstd"), "{e}"),
        }
    }

    #[test]
    fn whole_frames_round_trip_and_sizes_are_enforced() {
        let data = text(3, 10_000);
        let frame = compress(&data, LEVEL).unwrap();
        assert_eq!(decode(&frame, None, data.len() as u64).unwrap(), data);
        assert!(decode(&frame, None, data.len() as u64 - 1).is_err());
        assert!(decode(b"not zstd", None, 10).is_err());
        assert_eq!(
            decode(&compress(b"", LEVEL).unwrap(), None, 0).unwrap(),
            b""
        );
    }

    #[test]
    fn window_logs() {
        assert_eq!(window_log(0), 10);
        assert_eq!(window_log(1 << 20), 21);
        assert_eq!(window_log(usize::MAX), MAX_WINDOW_LOG);
    }
}
