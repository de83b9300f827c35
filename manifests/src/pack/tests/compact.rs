//! The compact container: the same frames as the zip pack, read back the same, its bytes pinned,
//! and hostile ones refused at the byte at fault.

use super::*;

/// The compact form of the zip pack of `parts`.
fn compact(parts: &Parts, blobs: &BTreeMap<Digest, u64>) -> Vec<u8> {
    let zip = write(parts);
    let expected = expected(parts, blobs);
    PackReader::open(&zip, &expected)
        .unwrap()
        .to_compact(&zip, &expected)
        .unwrap()
}

/// The frames of `parts`, in the order a compact pack carries them.
fn frames_len(parts: &Parts) -> usize {
    parts.data.as_ref().map_or(0, Vec::len) + parts.patches.values().map(Vec::len).sum::<usize>()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any pack the server writes reads back the same from its compact form, which adds only
    /// its header and tags to the frames.
    #[test]
    fn compact_packs_read_back_as_their_zip(
        targets in prop::collection::vec(blob_strategy(), 0..6),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        diff in any::<bool>(),
    ) {
        let bases = edited_bases(&targets, &edits, diff);
        let parts = parts(&bases, &targets);
        let blobs = sizes(&parts.index);
        let pack = compact(&parts, &blobs);
        prop_assert_eq!(&compact(&parts, &blobs), &pack, "deterministic");
        let head = if parts.index.from_manifest.is_some() { 70 } else { 38 };
        // One varint per patch or run of solid blobs, each a byte for packs this small.
        let tags = pack.len() - head - frames_len(&parts);
        prop_assert!(tags <= parts.index.blobs.len(), "{} tag bytes", tags);
        let expected = expected(&parts, &blobs);
        let read = read(&pack, &expected, &bases).unwrap();
        let wanted: BTreeMap<Digest, Vec<u8>> = targets.iter().map(|t| (Digest::of(t), t.clone())).collect();
        prop_assert_eq!(read, wanted);
        // Already compact: returned as it is.
        let again = PackReader::open(&pack, &expected).unwrap().to_compact(&pack, &expected).unwrap();
        prop_assert_eq!(again, pack);
    }

    /// The frame scanner finds the end of every frame libzstd writes, whatever follows it.
    #[test]
    fn frame_len_finds_the_end_of_real_frames(
        data in blob_strategy(),
        base in blob_strategy(),
        junk in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        for frame in [server::compress(&data), server::patch(&base, &data)] {
            let mut bytes = frame.clone();
            bytes.extend_from_slice(&junk);
            prop_assert_eq!(frame_len(&bytes), Ok(frame.len()));
            prop_assert!(frame_len(&frame[..frame.len() - 1]).is_err());
        }
    }
}

/// The compact writer's bytes are pinned: devices of every version read the same layout.
#[test]
fn the_compact_layout_is_stable() {
    let (parts, _, _) = sample();
    let blobs = sizes(&parts.index);
    let pack = compact(&parts, &blobs);
    let frames = frames_len(&parts);
    // Magic, format, flags, two digests, then a run of one solid blob (tag 2) and a patch
    // against the starting release's blob 0 (tag 1).
    expect![[r#"
        424c4e500201
        663ea1bfffe5038f3f0cf667f14c4257eff52d77ce7f2a218f72e9286616ea39
        75857a45899985be4c4d941e90b6b396d6c92a4c7437aaf0bf102089fe21379d
        0201
        overhead 72 bytes"#]]
    .assert_eq(&format!(
        "{}\n{}\n{}\n{}\noverhead {} bytes",
        crate::digest::encode_hex(&pack[..6]),
        crate::digest::encode_hex(&pack[6..38]),
        crate::digest::encode_hex(&pack[38..70]),
        crate::digest::encode_hex(&pack[70..72]),
        pack.len() - frames
    ));
}

#[test]
fn hostile_compact_packs_are_refused() {
    let (parts, bases, _) = sample();
    let blobs = sizes(&parts.index);
    let expected = expected(&parts, &blobs);
    let pack = compact(&parts, &blobs);
    let check = |bytes: &[u8], expect: Expect| {
        check_refused(read(bytes, &expected, &bases), expect);
    };
    let with = |at: usize, byte: u8| {
        let mut bytes = pack.clone();
        bytes[at] = byte;
        bytes
    };
    let spliced = |at: usize, remove: usize, insert: &[u8]| {
        let mut bytes = pack.clone();
        bytes.splice(at..at + remove, insert.iter().copied());
        bytes
    };

    check(
        &with(4, 3),
        expect!["pack_bad_compact: compact pack, at byte 4: format 3, this reader knows 2"],
    );
    check(
        &with(5, 3),
        expect!["pack_bad_compact: compact pack, at byte 5: unknown flags 0x03"],
    );
    check(
        &with(6, pack[6] ^ 1),
        expect![
            "pack_other_releases: pack is for other releases (its manifests are 75857a45899985be4c4d941e90b6b396d6c92a4c7437aaf0bf102089fe21379d..673ea1bfffe5038f3f0cf667f14c4257eff52d77ce7f2a218f72e9286616ea39)"
        ],
    );
    for cut in [3, 5, 37, 69, 70, 71, pack.len() - 1] {
        assert!(
            read(&pack[..cut], &expected, &bases).is_err(),
            "cut at {cut}"
        );
    }
    check(
        &pack[..71],
        expect!["pack_bad_compact: compact pack, at byte 71: cut short: 1 more bytes expected"],
    );
    check(
        &pack[..pack.len() - 1],
        expect!["pack_bad_compact: compact pack, at byte 1189: a zstd frame is cut short"],
    );
    // Tags: a run of none, two runs in a row, a run past the last blob, a base the starting
    // release does not have, a varint longer than needed.
    check(
        &with(70, 0),
        expect!["pack_bad_compact: compact pack, at byte 70: solid run tag 0 is not canonical"],
    );
    check(
        &spliced(70, 2, &[2, 2]),
        expect!["pack_bad_compact: compact pack, at byte 71: solid run tag 2 is not canonical"],
    );
    check(
        &with(70, 6),
        expect!["pack_bad_compact: compact pack, at byte 70: a run of 3 passes the last blob"],
    );
    check(
        &with(71, 3),
        expect![
            "pack_bad_compact: compact pack, at byte 71: patch base 1 is not a blob of the starting release"
        ],
    );
    check(
        &spliced(71, 1, &[0x81, 0x00]),
        expect!["pack_bad_compact: compact pack, at byte 71: varint is longer than needed"],
    );
    check(
        &spliced(71, 1, &[0xff; 11]),
        expect!["pack_bad_compact: compact pack, at byte 71: varint overflows 64 bits"],
    );
    // Frames: none where one belongs, bytes after the last, a reserved block type.
    check(
        &with(72, 0),
        expect!["pack_bad_compact: compact pack, at byte 72: no zstd frame here"],
    );
    let mut trailing = pack.clone();
    trailing.push(0);
    check(
        &trailing,
        expect!["pack_bad_compact: compact pack, at byte 1216: 1 bytes after the last frame"],
    );
    // A patch in a full pack: the full header, the same tags.
    let mut full = pack[..38].to_vec();
    full[5] = 0;
    full.extend_from_slice(&pack[70..]);
    let mut want_full = expected;
    want_full.from_manifest = None;
    check_refused(
        read(&full, &want_full, &bases),
        expect![
            "pack_bad_compact: compact pack, at byte 39: patch base 0 is not a blob of the starting release"
        ],
    );
    // A data frame larger than its content can compress to.
    let mut x = 7u32;
    let noise: Vec<u8> = (0..4_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    let mut large = pack[..72].to_vec();
    large.extend_from_slice(&server::compress(&noise));
    let error = read(&large, &expected, &bases).unwrap_err();
    assert!(
        error.to_string().contains("at most 3073 expected"),
        "{error}"
    );
}

/// A compact pack of a zip pack whose blobs are not those a compact pack delivers is refused
/// by the transcoder, not written wrong.
#[test]
fn the_transcoder_refuses_zip_packs_it_cannot_carry() {
    let (parts, _, _) = sample();
    let blobs = sizes(&parts.index);
    let zip = write(&parts);
    let mut expected = expected(&parts, &blobs);
    // The device would expect the first blob from the starting release, not in the pack.
    let from_blobs: Vec<Digest> = {
        let mut all = parts.from_blobs.clone();
        all.push(parts.order[0]);
        all.sort();
        all
    };
    expected.from_blobs = &from_blobs;
    let error = PackReader::open(&zip, &expected)
        .unwrap()
        .to_compact(&zip, &expected)
        .unwrap_err();
    expect![
        "pack_write: cannot write the pack: the zip pack delivers blobs a compact pack would not"
    ]
    .assert_eq(&format!("{}: {error}", error.code()));
}

/// The fuzz target's seeds (`fuzz/seeds.py`, frames by the zstd CLI) are packs the reader takes
/// whole, so fuzzing starts past the header checks, in the decoders.
#[test]
fn the_fuzz_seeds_read_whole() {
    let target = [(0x10u8, 2048u64), (0x11, 4096), (0x12, 0), (0x13, 100)];
    let blobs: BTreeMap<Digest, u64> = target
        .iter()
        .map(|&(b, size)| (Digest::from_bytes([b; 32]), size))
        .collect();
    let order: Vec<Digest> = target
        .iter()
        .map(|&(b, _)| Digest::from_bytes([b; 32]))
        .collect();
    let from_blobs = [
        Digest::from_bytes([0x20; 32]),
        Digest::from_bytes([0x21; 32]),
    ];
    let expected = ExpectedPack {
        to_manifest: Digest::from_bytes([1; 32]),
        from_manifest: Some(Digest::from_bytes([2; 32])),
        blobs: &blobs,
        order: &order,
        from_blobs: &from_blobs,
    };
    let base = b"<!doctype html><h1>checkout</h1>\n".repeat(64);
    for (name, seed) in [
        (
            "diff",
            &include_bytes!("../../../../fuzz/corpus/pack_compact/diff.bpk")[..],
        ),
        (
            "full",
            &include_bytes!("../../../../fuzz/corpus/pack_compact/full.bpk")[..],
        ),
    ] {
        let mut reader = PackReader::open(seed, &expected).unwrap();
        assert_eq!(reader.is_full(), name == "full");
        let read: Vec<(Digest, Vec<u8>)> = reader
            .blobs(|_| true, |_| Some(base.clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), 4, "{name}");
        for (digest, bytes) in read {
            assert_eq!(Some(&(bytes.len() as u64)), blobs.get(&digest), "{name}");
        }
    }
}
