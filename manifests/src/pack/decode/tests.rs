//! Frames made by libzstd (the `zstd` crate) with the server's exact parameters, decoded here.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use expect_test::{Expect, expect};
use proptest::prelude::*;
use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

use super::*;

/// The server's encoder, copied from server/src/pack/delta.rs: level 19, long-distance matching,
/// a window sized to what it covers (clamped to 2^10..=2^27), checksum and content size on.
pub(crate) mod server {
    use super::*;

    pub const LEVEL: i32 = 19;

    pub fn window_log(len: usize) -> u32 {
        let bits = usize::BITS - len.max(1).leading_zeros();
        bits.clamp(10, MAX_WINDOW_LOG)
    }

    fn cctx(window_for: usize) -> CCtx<'static> {
        let mut cctx = CCtx::create();
        for param in [
            CParameter::CompressionLevel(LEVEL),
            CParameter::WindowLog(window_log(window_for)),
            CParameter::EnableLongDistanceMatching(true),
            CParameter::ChecksumFlag(true),
            CParameter::ContentSizeFlag(true),
        ] {
            cctx.set_parameter(param).unwrap();
        }
        cctx
    }

    /// `delta::compress`: one frame.
    pub fn compress(data: &[u8]) -> Vec<u8> {
        let mut cctx = cctx(data.len());
        cctx.set_pledged_src_size(Some(data.len() as u64)).unwrap();
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        cctx.compress2(&mut out, data).unwrap();
        out
    }

    /// `delta::patch`: `target` against `base` as a raw-content reference prefix.
    pub fn patch(base: &[u8], target: &[u8]) -> Vec<u8> {
        let mut cctx = cctx(base.len() + target.len());
        cctx.set_pledged_src_size(Some(target.len() as u64))
            .unwrap();
        cctx.ref_prefix(base).unwrap();
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
        cctx.compress2(&mut out, target).unwrap();
        out
    }
}

/// libzstd's decoder, for comparison.
fn c_decode(frame: &[u8], base: Option<&[u8]>, size: usize, window_log_max: u32) -> Vec<u8> {
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(window_log_max))
        .unwrap();
    if let Some(base) = base {
        dctx.ref_prefix(base).unwrap();
    }
    let mut out = Vec::with_capacity(size);
    dctx.decompress(&mut out, frame).unwrap();
    out
}

/// A frame written as a stream whose size the encoder is not told: no content size in the header,
/// and the window exactly as asked (libzstd shrinks it to the content only when it knows the size).
fn streamed(data: &[u8], level: i32, window_log: u32) -> Vec<u8> {
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    cctx.set_parameter(CParameter::WindowLog(window_log))
        .unwrap();
    cctx.set_parameter(CParameter::ChecksumFlag(true)).unwrap();
    let mut out = vec![0u8; zstd_safe::compress_bound(data.len()) + 1024];
    let mut output = OutBuffer::around(&mut out[..]);
    let mut input = InBuffer::around(data);
    while input.pos() < data.len() {
        cctx.compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
            .unwrap();
    }
    let mut empty = InBuffer::around(&[][..]);
    while cctx
        .compress_stream2(&mut output, &mut empty, ZSTD_EndDirective::ZSTD_e_end)
        .unwrap()
        != 0
    {}
    let written = output.pos();
    out.truncate(written);
    out
}

/// Text that looks like minified JavaScript, so that zstd finds matches.
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
        b"swagger",
        b"0123",
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

/// `base` with a few bytes changed every `every` bytes and a tail appended.
fn edited(base: &[u8], every: usize) -> Vec<u8> {
    let mut out = base.to_vec();
    for i in (every / 2..out.len()).step_by(every.max(1)) {
        out[i] = b'#';
    }
    out.extend_from_slice(b"/* appended tail */");
    out
}

#[track_caller]
fn check_error(result: Result<Vec<u8>, DecodeError>, expect: Expect) {
    let error = result.unwrap_err();
    expect.assert_eq(&format!("{error:?}\n{error}"));
}

#[track_caller]
fn round_trip_patch(name: &str, base: &[u8], target: &[u8]) {
    let frame = server::patch(base, target);
    let out =
        decode_patch(&frame, base, target.len() as u64).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(out == target, "{name}: output differs");
}

#[test]
fn patches_from_the_server_encoder_rebuild_their_targets() {
    let small = text(1, 3_000);
    let large = text(2, 1_500_000);
    let unrelated = text(7, 50_000);
    let cases: [(&str, &[u8], &[u8]); 9] = [
        ("small edit", &small, &edited(&small, 700)),
        ("large edit", &large, &edited(&large, 100_000)),
        ("identical", &large, &large),
        ("empty target", &large, b""),
        ("empty base", b"", &edited(&small, 700)),
        ("both empty", b"", b""),
        ("one byte", b"a", b"b"),
        ("unrelated base", &unrelated, &edited(&small, 700)),
        (
            "target is a slice of base",
            &large,
            &large[700_000..800_000],
        ),
    ];
    for (name, base, target) in cases {
        round_trip_patch(name, base, target);
    }
}

#[test]
fn a_small_edit_is_a_small_patch() {
    let base = text(1, 300_000);
    let mut target = base.clone();
    target.splice(1_000..1_010, b"CHANGED!!!".iter().copied());
    let frame = server::patch(&base, &target);
    assert!(frame.len() < 200, "patch is {} bytes", frame.len());
    // Single-segment (window = content size): the property the module docs rely on for memory
    // and for reaching the whole base.
    assert_eq!(frame[4] & 0x20, 0x20, "single-segment flag");
    assert_eq!(server::compress(&target)[4] & 0x20, 0x20);
    assert_eq!(
        decode_patch(&frame, &base, target.len() as u64).unwrap(),
        target
    );
}

#[test]
fn whole_frames_round_trip() {
    for len in [0, 1, 1_000, 2_000_000] {
        let data = text(3, len);
        let frame = server::compress(&data);
        assert!(decode_frame(&frame, len as u64).unwrap() == data, "{len}");
    }
    let random: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let frame = server::compress(&random);
    assert!(decode_frame(&frame, random.len() as u64).unwrap() == random);
}

#[test]
fn frames_without_a_content_size_decode_within_the_limit() {
    let data = text(4, 700_000);
    let frame = streamed(&data, 3, 20);
    assert!(decode_frame(&frame, data.len() as u64).unwrap() == data);
    check_error(
        decode_frame(&frame, data.len() as u64 - 1),
        expect![[r#"
            TooLong { expected_bytes: 699999 }
            zstd frame decodes to more than the expected 699999 bytes"#]],
    );
    check_error(
        decode_frame(&frame, data.len() as u64 + 1),
        expect![[r#"
            TooShort { actual_bytes: 700000, expected_bytes: 700001 }
            zstd frame decodes to 700000 bytes, expected 700001"#]],
    );
}

#[test]
fn bounded_frames_decode_within_their_limit_and_bombs_are_refused_unread() {
    let data = text(5, 50_000);
    let frame = zstd::bulk::compress(&data, 19).unwrap();
    assert!(decode_bounded(&frame, 50_000).unwrap() == data);
    check_error(
        decode_bounded(&frame, 49_999),
        expect![[r#"
            DeclaredSize { declared_bytes: 50000, expected_bytes: 49999 }
            zstd frame declares 50000 bytes, expected 49999"#]],
    );
    // A frame that declares no size is refused: its size cannot be bounded before decoding.
    check_error(
        decode_bounded(&streamed(&data, 3, 20), 1 << 20),
        expect![[r#"
            DeclaredSize { declared_bytes: 18446744073709551615, expected_bytes: 1048576 }
            zstd frame declares 18446744073709551615 bytes, expected 1048576"#]],
    );
}

/// A 10 MB file patched against its predecessor, with a rough speed comparison against libzstd
/// (unoptimised test build: the figures are a sanity print, not a benchmark).
#[test]
fn a_ten_megabyte_patch_round_trips() {
    let base = text(11, 10_000_000);
    let target = edited(&base, 250_000);
    let frame = server::patch(&base, &target);
    let started = Instant::now();
    let out = decode_patch(&frame, &base, target.len() as u64).unwrap();
    let ours = started.elapsed();
    assert!(out == target);
    let started = Instant::now();
    let c = c_decode(&frame, Some(&base), target.len(), MAX_WINDOW_LOG);
    let theirs = started.elapsed();
    assert!(c == target);
    eprintln!(
        "10 MB patch ({} bytes): ruzstd {ours:?}, libzstd {theirs:?}",
        frame.len()
    );
}

fn edit_strategy() -> impl Strategy<Value = (usize, usize, Vec<u8>)> {
    (
        any::<usize>(),
        0usize..64,
        prop::collection::vec(any::<u8>(), 0..64),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any base, any handful of edits: the patch rebuilds the target.
    #[test]
    fn random_edits_round_trip(
        seed in any::<u32>(),
        len in 0usize..20_000,
        noise in prop::collection::vec(any::<u8>(), 0..256),
        edits in prop::collection::vec(edit_strategy(), 0..8),
    ) {
        let mut base = text(seed, len);
        base.extend_from_slice(&noise);
        let mut target = base.clone();
        for (at, delete, insert) in edits {
            let at = if target.is_empty() { 0 } else { at % (target.len() + 1) };
            let end = (at + delete).min(target.len());
            target.splice(at..end, insert);
        }
        let frame = server::patch(&base, &target);
        prop_assert_eq!(decode_patch(&frame, &base, target.len() as u64).unwrap(), target);
    }
}

#[test]
fn wrong_sizes_are_refused() {
    let data = text(5, 100_000);
    let frame = server::compress(&data);
    check_error(
        decode_frame(&frame, 99_999),
        expect![[r#"
            DeclaredSize { declared_bytes: 100000, expected_bytes: 99999 }
            zstd frame declares 100000 bytes, expected 99999"#]],
    );
    check_error(
        decode_frame(&frame, 100_001),
        expect![[r#"
            DeclaredSize { declared_bytes: 100000, expected_bytes: 100001 }
            zstd frame declares 100000 bytes, expected 100001"#]],
    );
    check_error(
        decode_frame(&server::compress(b""), 1),
        expect![[r#"
            DeclaredSize { declared_bytes: 0, expected_bytes: 1 }
            zstd frame declares 0 bytes, expected 1"#]],
    );
}

/// A bomb: a few hundred bytes that expand to 64 MiB. Without a content size nothing can be
/// refused up front; decoding stops one window past the expected size.
#[test]
fn a_bomb_stops_at_the_expected_size() {
    let zeros = vec![0u8; 64 << 20];
    let frame = streamed(&zeros, 1, 20);
    assert!(frame.len() < 10_000, "{}", frame.len());
    let started = Instant::now();
    check_error(
        decode_frame(&frame, 1_000),
        expect![[r#"
            TooLong { expected_bytes: 1000 }
            zstd frame decodes to more than the expected 1000 bytes"#]],
    );
    eprintln!("bomb refused after {:?}", started.elapsed());
}

#[test]
fn truncated_frames_are_refused() {
    let data = text(5, 100_000);
    let frame = server::compress(&data);
    let n = data.len() as u64;
    for cut in [
        0,
        3,
        4,
        5,
        6,
        9,
        12,
        frame.len() / 2,
        frame.len() - 4,
        frame.len() - 1,
    ] {
        let error = decode_frame(&frame[..cut], n).unwrap_err();
        let expected = if cut < 4 {
            DecodeError::NotZstd
        } else {
            DecodeError::Truncated
        };
        assert_eq!(error, expected, "cut at {cut} of {}", frame.len());
    }
    let base = text(6, 40_000);
    let target = edited(&base, 5_000);
    let patch = server::patch(&base, &target);
    for cut in [5, patch.len() / 2, patch.len() - 1] {
        assert_eq!(
            decode_patch(&patch[..cut], &base, target.len() as u64),
            Err(DecodeError::Truncated),
            "patch cut at {cut}"
        );
    }
}

#[test]
fn garbage_is_refused() {
    check_error(
        decode_frame(b"definitely not zstd", 10),
        expect![[r#"
            NotZstd
            not a zstd frame"#]],
    );
    check_error(
        decode_frame(b"", 0),
        expect![[r#"
            NotZstd
            not a zstd frame"#]],
    );
    // A skippable frame is no content.
    check_error(
        decode_frame(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0], 0),
        expect![[r#"
            NotZstd
            not a zstd frame"#]],
    );
    // A valid header followed by noise: refused somewhere, never a panic.
    let frame = server::compress(&text(8, 10_000));
    let mut x = 1u32;
    for len in [1, 2, 3, 10, 100, 1_000, 10_000] {
        let mut forged = frame[..6].to_vec();
        forged.extend((0..len).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        }));
        assert!(
            decode_frame(&forged, 10_000).is_err(),
            "{len} bytes of noise"
        );
    }
}

#[test]
fn a_second_frame_or_trailing_bytes_are_refused() {
    let data = text(5, 10_000);
    let frame = server::compress(&data);
    let n = data.len() as u64;
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    check_error(
        decode_frame(&two, n),
        expect![[r#"
            SecondFrame
            more than one zstd frame"#]],
    );
    check_error(
        decode_frame(&two, 2 * n),
        expect![[r#"
            DeclaredSize { declared_bytes: 10000, expected_bytes: 20000 }
            zstd frame declares 10000 bytes, expected 20000"#]],
    );
    let mut skippable = frame.clone();
    skippable.extend_from_slice(&[0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
    check_error(
        decode_frame(&skippable, n),
        expect![[r#"
            SecondFrame
            more than one zstd frame"#]],
    );
    let mut junk = frame.clone();
    junk.extend_from_slice(b"junk");
    check_error(
        decode_frame(&junk, n),
        expect![[r#"
            TrailingBytes { count: 4 }
            4 bytes after the zstd frame"#]],
    );
}

#[test]
fn a_window_above_the_limit_is_refused() {
    let data = text(9, 300_000);
    // The server's parameters with a window of 2^28: libzstd shrinks it to the content when it
    // knows the size, so the frame still decodes here.
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(server::LEVEL))
        .unwrap();
    cctx.set_parameter(CParameter::WindowLog(28)).unwrap();
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .unwrap();
    let mut shrunk = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut shrunk, &data[..]).unwrap();
    assert!(decode_frame(&shrunk, data.len() as u64).unwrap() == data);

    // Streamed, the header keeps the 2^28 window: libzstd decodes it only with the limit raised,
    // and this decoder refuses it before decoding a block.
    let frame = streamed(&data, 3, 28);
    assert!(c_decode(&frame, None, data.len(), 28) == data);
    check_error(
        decode_frame(&frame, data.len() as u64),
        expect![[r#"
            WindowTooLarge { window_bytes: 268435456 }
            zstd frame needs a 268435456-byte window, above the limit of 2^27"#]],
    );
    // The largest allowed window decodes.
    let frame = streamed(&data, 3, MAX_WINDOW_LOG);
    assert!(decode_frame(&frame, data.len() as u64).unwrap() == data);
}

#[test]
fn a_frame_that_names_a_dictionary_is_refused() {
    let data = text(5, 1_000);
    let frame = server::compress(&data);
    // Rewrite the header with a one-byte dictionary id (7): descriptor bits 0-1 = 1.
    let mut forged = frame[..4].to_vec();
    forged.push(frame[4] | 0x01);
    forged.push(7);
    forged.extend_from_slice(&frame[5..]);
    check_error(
        decode_frame(&forged, data.len() as u64),
        expect![[r#"
            NamesDictionary { id: 7 }
            zstd frame names dictionary 7; pack frames use none"#]],
    );
}

/// Every byte of a patch flipped in turn: never a panic, and nearly always refused (the checksum
/// catches changed content; a flip that leaves the content alone is harmless, and the caller's
/// sha256 check would catch anything else).
#[test]
fn flipped_bytes_are_refused_or_harmless() {
    let base = text(1, 30_000);
    let target = edited(&base, 3_000);
    let frame = server::patch(&base, &target);
    let n = target.len() as u64;
    let (mut refused, mut panicked) = (0, 0);
    for i in 0..frame.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut flipped = frame.clone();
            flipped[i] ^= mask;
            match decode_patch(&flipped, &base, n) {
                Err(DecodeError::DecoderPanicked) => panicked += 1,
                Err(_) => refused += 1,
                Ok(out) => assert!(out == target, "flip {mask:#x} at {i} gave other content"),
            }
        }
    }
    let total = frame.len() * 3;
    eprintln!("{refused} of {total} flips refused, {panicked} by a caught panic");
    assert!(
        refused + panicked >= total * 9 / 10,
        "only {refused} of {total} flips refused"
    );
}

#[test]
fn a_patch_against_the_wrong_base_is_refused() {
    let base = text(1, 50_000);
    let mut target = base.clone();
    target[10] ^= 1;
    let patch = server::patch(&base, &target);
    let error = decode_patch(&patch, &text(2, 50_000), target.len() as u64).unwrap_err();
    assert!(
        matches!(
            error,
            DecodeError::ChecksumMismatch { .. } | DecodeError::Malformed(_)
        ),
        "{error:?}"
    );
    // A base too short for the offsets in the frame.
    let error = decode_patch(&patch, &base[..100], target.len() as u64).unwrap_err();
    assert!(matches!(error, DecodeError::Malformed(_)), "{error:?}");
}

/// Real builds: every same-path file of swagger-ui-dist 5.33.3 → 5.34.0, patched by libzstd with the
/// server's parameters and rebuilt here byte-exact (skipped unless BALEEN_WEBAPPS points at the
/// cache `scripts/fetch-webapps.sh` fills). Prints decode speed against libzstd for the largest file.
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
    let mut files = Vec::new();
    collect_files(&new, &mut files);
    files.sort();
    let mut checked = 0;
    let mut largest = (0, std::path::PathBuf::new());
    for path in files {
        let relative = path.strip_prefix(&new).unwrap().to_path_buf();
        let Ok(base) = std::fs::read(old.join(&relative)) else {
            continue;
        };
        let target = std::fs::read(&path).unwrap();
        let frame = server::patch(&base, &target);
        let out = decode_patch(&frame, &base, target.len() as u64)
            .unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
        assert!(out == target, "{}: output differs", relative.display());
        checked += 1;
        if target.len() > largest.0 {
            largest = (target.len(), relative);
        }
    }
    assert!(checked >= 20, "only {checked} files compared");
    let name = largest.1;
    let base = std::fs::read(old.join(&name)).unwrap();
    let target = std::fs::read(new.join(&name)).unwrap();
    let frame = server::patch(&base, &target);
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        decode_patch(&frame, &base, target.len() as u64).unwrap();
    }
    let ours = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        c_decode(&frame, Some(&base), target.len(), MAX_WINDOW_LOG);
    }
    let theirs = started.elapsed() / rounds;
    eprintln!(
        "{checked} files byte-exact; largest {} ({} bytes, patch {} bytes): ruzstd {ours:?}, \
         libzstd {theirs:?} per decode",
        name.display(),
        target.len(),
        frame.len()
    );
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_frame_bound_is_libzstds() {
    for n in [
        0,
        1,
        100,
        2_047,
        2_048,
        (128 << 10) - 1,
        128 << 10,
        1 << 20,
        10_000_000,
    ] {
        assert_eq!(
            max_frame_bytes(n as u64),
            zstd_safe::compress_bound(n) as u64,
            "{n}"
        );
    }
}

#[test]
fn a_size_above_the_content_limit_is_refused_before_decoding() {
    check_error(
        decode_frame(&server::compress(b"x"), MAX_CONTENT_BYTES + 1),
        expect![[r#"
            ContentTooLarge { expected_bytes: 536870913 }
            536870913 bytes expected from one zstd frame, above the limit of 536870912"#]],
    );
}
