//! Frames made by libzstd with the server's exact parameters, decoded here.

#![allow(clippy::unwrap_used)]

use zstd::zstd_safe::{CCtx, CParameter};

use super::*;

/// The server's encoder (server/src/pack/delta.rs): level 19, long-distance matching, window
/// sized to base + target, checksum and content size on.
fn encode(base: Option<&[u8]>, target: &[u8], window_log: Option<u32>) -> Vec<u8> {
    let span = base.map_or(0, <[u8]>::len) + target.len();
    let log =
        window_log.unwrap_or_else(|| (usize::BITS - span.max(1).leading_zeros()).clamp(10, 27));
    let mut cctx = CCtx::create();
    for p in [
        CParameter::CompressionLevel(19),
        CParameter::WindowLog(log),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
        CParameter::ContentSizeFlag(true),
    ] {
        cctx.set_parameter(p).unwrap();
    }
    cctx.set_pledged_src_size(Some(target.len() as u64))
        .unwrap();
    if let Some(base) = base {
        cctx.ref_prefix(base).unwrap();
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).unwrap();
    out
}

fn text(seed: u32, len: usize) -> Vec<u8> {
    let words = [
        &b"function "[..],
        b"return ",
        b"const ",
        b"state",
        b".map(",
        b"=> ",
        b"{ ",
        b"} ",
        b"\n",
    ];
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()]);
    }
    out.truncate(len);
    out
}

#[test]
fn patches_from_the_server_encoder_rebuild_their_targets() {
    let base = text(1, 300_000);
    let mut edited = base.clone();
    edited.splice(1_000..1_010, b"CHANGED!!!".iter().copied());
    edited.extend_from_slice(b"tail");
    let unrelated = text(7, 50_000);
    for (name, base, target) in [
        ("small edit", &base[..], &edited[..]),
        ("identical", &base[..], &base[..]),
        ("empty target", &base[..], &b""[..]),
        ("empty base", &b""[..], &edited[..]),
        ("unrelated base", &unrelated[..], &edited[..]),
    ] {
        let frame = encode(Some(base), target, None);
        let out = decode_patch(&frame, base, target.len() as u64)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out == target, "{name}");
    }
    let frame = encode(Some(&base), &edited, None);
    assert!(
        frame.len() < 200,
        "a small edit is a small patch ({} bytes)",
        frame.len()
    );
}

#[test]
fn whole_frames_round_trip() {
    for len in [0, 1, 1_000, 2_000_000] {
        let data = text(3, len);
        let frame = encode(None, &data, None);
        assert_eq!(decode_frame(&frame, len as u64).unwrap(), data, "{len}");
    }
}

#[test]
fn bad_frames_are_errors_never_panics() {
    let data = text(5, 100_000);
    let frame = encode(None, &data, None);
    let n = data.len() as u64;
    assert!(decode_frame(&frame, n - 1).is_err(), "too small");
    assert!(decode_frame(&frame, n + 1).is_err(), "too large");
    for cut in [1, 5, frame.len() / 2, frame.len() - 1] {
        assert!(
            decode_frame(&frame[..cut], n).is_err(),
            "truncated at {cut}"
        );
    }
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert!(decode_frame(&two, n).is_err(), "two frames");
    assert!(decode_frame(b"definitely not zstd", 10).is_err());
    // Flipped bytes: never a panic; nearly always an error (the checksum sees the rest, and a
    // flip in a field that does not change the output is harmless: the sha256 check passes).
    let mut refused = 0;
    let mut total = 0;
    for i in (0..frame.len()).step_by(7) {
        let mut flipped = frame.clone();
        flipped[i] ^= 0x5a;
        total += 1;
        match decode_frame(&flipped, n) {
            Err(_) => refused += 1,
            Ok(out) => assert!(out == data || out.len() == data.len(), "flip at {i}"),
        }
    }
    assert!(
        refused * 10 >= total * 9,
        "only {refused} of {total} flips refused"
    );
    // A patch against the wrong base does not rebuild the target.
    let base = text(1, 50_000);
    let mut target = base.clone();
    target[10] ^= 1;
    let patch = encode(Some(&base), &target, None);
    match decode_patch(&patch, &text(2, 50_000), target.len() as u64) {
        Ok(out) => assert_ne!(out, target),
        Err(e) => assert!(e.to_string().contains("zstd"), "{e}"),
    }
}

#[test]
fn a_window_above_the_limit_is_refused() {
    let data = text(9, 1_000);
    let frame = encode(None, &data, Some(28));
    // libzstd shrinks the window to the content when the size is known; if it kept 2^28 the
    // decoder must refuse, and either way the data decodes only within the limit.
    match decode_frame(&frame, data.len() as u64) {
        Ok(out) => assert_eq!(out, data),
        Err(e) => assert!(
            e.to_string().contains("window") || e.to_string().contains("Window"),
            "{e}"
        ),
    }
}

/// Real builds: every same-path file of swagger-ui-dist 5.33.3 → 5.34.0, patched by libzstd and
/// rebuilt here (skipped unless BALEEN_WEBAPPS points at the fetched cache).
#[test]
fn real_release_patches_decode_byte_exact() {
    let Some(cache) = std::env::var_os("BALEEN_WEBAPPS") else {
        eprintln!(
            "skipped: set BALEEN_WEBAPPS to the cache dir printed by scripts/fetch-webapps.sh"
        );
        return;
    };
    let old = std::path::Path::new(&cache).join("swagger-ui-dist@5.33.3/package");
    let new = std::path::Path::new(&cache).join("swagger-ui-dist@5.34.0/package");
    let mut checked = 0;
    for entry in std::fs::read_dir(&new).unwrap() {
        let path = entry.unwrap().path();
        let Ok(base) = std::fs::read(old.join(path.file_name().unwrap())) else {
            continue;
        };
        let target = std::fs::read(&path).unwrap();
        let frame = encode(Some(&base), &target, None);
        assert_eq!(
            decode_patch(&frame, &base, target.len() as u64).unwrap(),
            target,
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} files compared");
}
