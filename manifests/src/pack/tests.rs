//! The pack container: written then read back byte for byte, and hostile packs refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use expect_test::{Expect, expect};
use proptest::prelude::*;
use zip::write::SimpleFileOptions;

use super::decode::tests::server;
use super::*;
use crate::error::PackError;
use crate::{PackageId, ReleaseVersion};

/// A pack on its way to bytes: the index, `data.zst` and the patch frames.
struct Parts {
    index: PackIndex,
    data: Option<Vec<u8>>,
    patches: BTreeMap<Digest, Vec<u8>>,
    /// The targets' digests, each once, in the order given: the release's path order.
    order: Vec<Digest>,
    /// The bases' digests, sorted: the starting release's blobs.
    from_blobs: Vec<Digest>,
}

fn manifest(name: &str) -> Digest {
    Digest::of(name.as_bytes())
}

/// A pack of `targets`, each patched against the non-empty base at the same position when there
/// is one, else solid; a diff pack when `bases` is given, else a full pack.
fn parts(bases: &[Vec<u8>], targets: &[Vec<u8>]) -> Parts {
    let diff = !bases.is_empty();
    let mut index = PackIndex {
        format: PACK_FORMAT,
        package: PackageId::parse("app").unwrap(),
        from: diff.then(|| ReleaseVersion::parse("1.0.0").unwrap()),
        to: ReleaseVersion::parse("1.1.0").unwrap(),
        from_manifest: diff.then(|| manifest("from")),
        to_manifest: manifest("to"),
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        blobs: Vec::new(),
    };
    let (mut solid, mut patches, mut patched) = (Vec::new(), BTreeMap::new(), Vec::new());
    for (i, target) in targets.iter().enumerate() {
        let sha256 = Digest::of(target);
        if index
            .blobs
            .iter()
            .chain(&patched)
            .any(|b| b.sha256 == sha256)
        {
            continue;
        }
        let size = target.len() as u64;
        match bases
            .get(i)
            .filter(|base| !base.is_empty() && Digest::of(base) != sha256)
        {
            Some(base) => {
                patches.insert(sha256, server::patch(base, target));
                patched.push(PackBlob {
                    sha256,
                    size,
                    encoding: Encoding::Patch {
                        base: Digest::of(base),
                    },
                });
            }
            None => {
                index.blobs.push(PackBlob {
                    sha256,
                    size,
                    encoding: Encoding::Solid {
                        offset: solid.len() as u64,
                    },
                });
                solid.extend_from_slice(target);
            }
        }
    }
    index.blobs.extend(patched);
    let data = (!solid.is_empty()).then(|| server::compress(&solid));
    let mut order = Vec::new();
    for target in targets {
        if !order.contains(&Digest::of(target)) {
            order.push(Digest::of(target));
        }
    }
    let from_blobs: std::collections::BTreeSet<Digest> = bases
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| Digest::of(b))
        .filter(|d| !order.contains(d))
        .collect();
    Parts {
        index,
        data,
        patches,
        order,
        from_blobs: from_blobs.into_iter().collect(),
    }
}

fn write(parts: &Parts) -> Vec<u8> {
    write_pack(&parts.index, parts.data.as_deref(), &parts.patches).unwrap()
}

fn sizes(index: &PackIndex) -> BTreeMap<Digest, u64> {
    index.blobs.iter().map(|b| (b.sha256, b.size)).collect()
}

/// Reads every blob of `pack` with `bases` on hand.
fn read(
    pack: &[u8],
    expected: &ExpectedPack<'_>,
    bases: &[Vec<u8>],
) -> Result<BTreeMap<Digest, Vec<u8>>, PackError> {
    let bases: BTreeMap<Digest, Vec<u8>> =
        bases.iter().map(|b| (Digest::of(b), b.clone())).collect();
    let mut reader = PackReader::open(pack, expected)?;
    reader.blobs(|_| true, |d| bases.get(d).cloned()).collect()
}

fn expected<'a>(parts: &'a Parts, blobs: &'a BTreeMap<Digest, u64>) -> ExpectedPack<'a> {
    ExpectedPack {
        to_manifest: parts.index.to_manifest,
        from_manifest: parts.index.from_manifest,
        blobs,
        order: &parts.order,
        from_blobs: &parts.from_blobs,
    }
}

#[track_caller]
fn check_refused(result: Result<BTreeMap<Digest, Vec<u8>>, PackError>, expect: Expect) {
    let error = result.unwrap_err();
    expect.assert_eq(&format!("{}: {error}", error.code()));
}

/// Text with matches for zstd to find.
fn text(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if i % 7 == 0 {
                b' '
            } else {
                b'a' + ((x >> 16) % 6) as u8
            }
        })
        .collect()
}

fn blob_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (any::<u32>(), 0usize..5_000).prop_map(|(seed, len)| text(seed, len)),
    ]
}

/// The bases of a diff pack (none for a full pack): each target with one byte changed by
/// `edits`, so patches are small and real.
fn edited_bases(targets: &[Vec<u8>], edits: &[(usize, u8)], diff: bool) -> Vec<Vec<u8>> {
    if !diff {
        return Vec::new();
    }
    targets
        .iter()
        .zip(edits.iter().cycle())
        .map(|(t, (at, byte))| {
            let mut base = t.clone();
            if !base.is_empty() {
                let at = at % base.len();
                base[at] = base[at].wrapping_add(byte | 1);
            }
            base
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Full and diff packs: what is written is read back byte for byte.
    #[test]
    fn packs_round_trip(
        targets in prop::collection::vec(blob_strategy(), 0..6),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        diff in any::<bool>(),
    ) {
        let bases = edited_bases(&targets, &edits, diff);
        let parts = parts(&bases, &targets);
        let pack = write(&parts);
        prop_assert_eq!(&write(&parts), &pack, "deterministic");
        let blobs = sizes(&parts.index);
        let read = read(&pack, &expected(&parts, &blobs), &bases).unwrap();
        let wanted: BTreeMap<Digest, Vec<u8>> = targets.iter().map(|t| (Digest::of(t), t.clone())).collect();
        prop_assert_eq!(read, wanted);
    }
}

#[test]
fn only_wanted_blobs_are_decoded_and_bases_asked_for() {
    let targets = [text(1, 2_000), text(2, 2_000), text(3, 2_000)];
    let mut base = targets[2].clone();
    base[10] ^= 1;
    let parts = parts(&[Vec::new(), Vec::new(), base], &targets);
    let pack = write(&parts);
    let blobs = sizes(&parts.index);
    let mut reader = PackReader::open(&pack, &expected(&parts, &blobs)).unwrap();
    let only = Digest::of(&targets[1]);
    let read: Vec<_> = reader
        .blobs(|d| *d == only, |_| panic!("no patch wanted"))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(read, vec![(only, targets[1].clone())]);
}

/// The writer's bytes are pinned: packs already stored and cached keep their digests and sizes.
#[test]
fn the_container_layout_is_stable() {
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    let index = PackIndex {
        format: PACK_FORMAT,
        package: PackageId::parse("app").unwrap(),
        from: Some(ReleaseVersion::parse("1.0.0").unwrap()),
        to: ReleaseVersion::parse("1.1.0").unwrap(),
        from_manifest: Some(manifest("from")),
        to_manifest: manifest("to"),
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        blobs: vec![
            PackBlob {
                sha256: a,
                size: 1,
                encoding: Encoding::Solid { offset: 0 },
            },
            PackBlob {
                sha256: b,
                size: 1,
                encoding: Encoding::Patch { base: a },
            },
        ],
    };
    let patches = BTreeMap::from([(b, b"patch".to_vec())]);
    let pack = write_pack(&index, Some(b"frame"), &patches).unwrap();
    expect!["1010 bytes, sha256 fdcbc6c1c31b553c4727b06639d890fb7aa307420668c296d14488257cdb9f3f"]
        .assert_eq(&format!(
            "{} bytes, sha256 {}",
            pack.len(),
            Digest::of(&pack)
        ));
}

/// A small valid diff pack: one solid blob and one patched blob, with its parts and base.
fn sample() -> (Parts, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let targets = vec![text(1, 3_000), text(2, 3_000)];
    let mut base = targets[1].clone();
    base[100] ^= 1;
    let bases = vec![Vec::new(), base];
    (parts(&bases, &targets), bases, targets)
}

/// A zip of `entries` as they are given, stored.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The entries of the sample as the writer lays them out, for tests to alter.
fn sample_entries(parts: &Parts) -> Vec<(String, Vec<u8>)> {
    let mut entries = vec![
        (
            PACK_INDEX_ENTRY.to_owned(),
            crate::to_canonical(&parts.index).unwrap(),
        ),
        (PACK_DATA_ENTRY.to_owned(), parts.data.clone().unwrap()),
    ];
    for (sha256, frame) in &parts.patches {
        entries.push((format!("patches/{sha256}.zst"), frame.clone()));
    }
    entries
}

fn zip_entries(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    zip_of(&refs)
}

#[test]
fn the_sample_reads() {
    let (parts, bases, targets) = sample();
    let blobs = sizes(&parts.index);
    let read = read(
        &zip_entries(&sample_entries(&parts)),
        &expected(&parts, &blobs),
        &bases,
    )
    .unwrap();
    assert_eq!(read.len(), targets.len());
}

#[test]
fn hostile_containers_are_refused() {
    let (parts, bases, _) = sample();
    let blobs = sizes(&parts.index);
    let expected = expected(&parts, &blobs);
    let entries = sample_entries(&parts);
    let check = |entries: &[(String, Vec<u8>)], expect: Expect| {
        check_refused(read(&zip_entries(entries), &expected, &bases), expect);
    };

    let mut traversing = entries.clone();
    traversing.push(("../x".to_owned(), b"alert(1)".to_vec()));
    check(
        &traversing,
        expect![[r#"pack_unexpected_entry: unexpected entry "../x""#]],
    );

    let mut foreign_patch = entries.clone();
    foreign_patch.truncate(2);
    foreign_patch.push((format!("patches/{}.zst", Digest::of(b"x")), b"x".to_vec()));
    check(
        &foreign_patch,
        expect![[
            r#"pack_unexpected_entry: unexpected entry "patches/2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881.zst""#
        ]],
    );

    check(
        &entries[1..],
        expect!["pack_missing_entry: entry pack.json is missing"],
    );
    check(
        &[entries[0].clone(), entries[2].clone()],
        expect!["pack_missing_entry: entry data.zst is missing"],
    );

    // Two blobs expected, so the cap is 4: six entries are refused before the zip is parsed.
    let mut many = entries.clone();
    for i in 0..3 {
        many.push((format!("patches/{}.zst", Digest::of(&[i])), Vec::new()));
    }
    check(
        &many,
        expect!["pack_too_many_entries: 6 zip entries, at most 4 expected"],
    );

    let pack = zip_entries(&entries);
    check_refused(
        read(&pack[..pack.len() - 1], &expected, &bases),
        expect![
            "pack_not_zip: not a zip: no end-of-central-directory record at the end (cut short, or a comment)"
        ],
    );
    check_refused(
        read(&pack[..pack.len() / 2], &expected, &bases),
        expect![
            "pack_not_zip: not a zip: no end-of-central-directory record at the end (cut short, or a comment)"
        ],
    );
    check_refused(
        read(b"", &expected, &bases),
        expect!["pack_not_zip: not a zip: shorter than an end-of-central-directory record"],
    );
    let mut commented = pack.clone();
    commented.extend_from_slice(b"comment");
    check_refused(
        read(&commented, &expected, &bases),
        expect![
            "pack_not_zip: not a zip: no end-of-central-directory record at the end (cut short, or a comment)"
        ],
    );
}

#[test]
fn a_name_listed_twice_is_refused() {
    let (parts, bases, _) = sample();
    let blobs = sizes(&parts.index);
    let mut entries = sample_entries(&parts);
    entries.push(("pack.jsoX".to_owned(), entries[0].1.clone()));
    let pack = zip_entries(&entries);
    // Rename the extra entry in its local and central headers.
    let mut twice = Vec::with_capacity(pack.len());
    let mut rest = &pack[..];
    while let Some(at) = rest.windows(9).position(|w| w == b"pack.jsoX") {
        twice.extend_from_slice(&rest[..at]);
        twice.extend_from_slice(b"pack.json");
        rest = &rest[at + 9..];
    }
    twice.extend_from_slice(rest);
    check_refused(
        read(&twice, &expected(&parts, &blobs), &bases),
        expect!["pack_duplicate_entry: an entry name appears twice in the zip"],
    );
}

#[test]
fn hostile_indexes_are_refused() {
    let (parts, bases, _) = sample();
    let blobs = sizes(&parts.index);
    let check = |index: &PackIndex, expect: Expect| {
        let mut entries = sample_entries(&parts);
        entries[0].1 = crate::to_canonical(index).unwrap();
        check_refused(
            read(&zip_entries(&entries), &expected(&parts, &blobs), &bases),
            expect,
        );
    };

    let mut twice = parts.index.clone();
    let mut again = twice.blobs[0].clone();
    again.encoding = Encoding::Solid { offset: again.size };
    twice.blobs.insert(1, again);
    check(
        &twice,
        expect!["pack_index: pack.json: invalid blobs[1]: blob listed twice"],
    );

    let mut other = parts.index.clone();
    other.to_manifest = manifest("other");
    check(
        &other,
        expect![
            "pack_other_releases: pack is for other releases (its manifests are 75857a45899985be4c4d941e90b6b396d6c92a4c7437aaf0bf102089fe21379d..d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa)"
        ],
    );

    // A full pack of the same release is accepted where a diff pack is expected: the server
    // sends one when it is no larger than the diff. Every blob still comes out as listed.
    let mut full = parts.index.clone();
    full.from = None;
    full.from_manifest = None;
    let mut entries = sample_entries(&parts);
    entries[0].1 = crate::to_canonical(&full).unwrap();
    let got = read(&zip_entries(&entries), &expected(&parts, &blobs), &bases).unwrap();
    assert_eq!(got.len(), parts.index.blobs.len());
    // The other way round, a diff pack where a full pack is expected, is refused.
    let mut want_full = expected(&parts, &blobs);
    want_full.from_manifest = None;
    check_refused(
        read(&zip_entries(&sample_entries(&parts)), &want_full, &bases),
        expect![
            "pack_other_releases: pack is for other releases (its manifests are 75857a45899985be4c4d941e90b6b396d6c92a4c7437aaf0bf102089fe21379d..663ea1bfffe5038f3f0cf667f14c4257eff52d77ce7f2a218f72e9286616ea39)"
        ],
    );

    let mut resized = parts.index.clone();
    resized.blobs[0].size += 1;
    check(
        &resized,
        expect![
            "pack_not_in_release: blob 4ce31e6d69dbd33592a97a0d936d37a22dfa29378a6e1652bbe2a5850cddfedf (3001 bytes) is not a file of the target release"
        ],
    );

    let mut entries = sample_entries(&parts);
    entries[0].1 = b"{\"format\":1}".to_vec();
    check_refused(
        read(&zip_entries(&entries), &expected(&parts, &blobs), &bases),
        expect!["pack_index: pack.json: pack field .: missing field `package`"],
    );
}

#[test]
fn hostile_payloads_are_refused() {
    let (parts, bases, targets) = sample();
    let blobs = sizes(&parts.index);
    let expected = expected(&parts, &blobs);
    let entries = sample_entries(&parts);

    // The patch's base is not on hand.
    check_refused(
        read(&zip_entries(&entries), &expected, &[]),
        expect![
            "pack_missing_base: patch base 9e993b30ed6a66e2bc33059a12d9a7359cbbf8bb9ce3cca7fc8602f1f77eae1b of blob 40f71c2305eeb09b4e6b7b00440030c9d57e93a9abec2047e167fe3bac079f3e is not on hand"
        ],
    );

    // A patch entry larger than a frame of its blob can be.
    let mut large = entries.clone();
    large[2].1 = vec![0; max_frame_bytes(targets[1].len() as u64) as usize + 1];
    check_refused(
        read(&zip_entries(&large), &expected, &bases),
        expect![
            "pack_entry_too_large: entry patches/40f71c2305eeb09b4e6b7b00440030c9d57e93a9abec2047e167fe3bac079f3e.zst is larger than its limit of 3073 bytes"
        ],
    );

    // A solid stream shorter than the index declares.
    let mut short = entries.clone();
    short[1].1 = server::compress(&targets[0][..2_999]);
    check_refused(
        read(&zip_entries(&short), &expected, &bases),
        expect!["pack_decode: data.zst: zstd frame declares 2999 bytes, expected 3000"],
    );

    // A base that is not what its digest says (a damaged store): the frame checksum catches it.
    let pack = zip_entries(&entries);
    let mut reader = PackReader::open(&pack, &expected).unwrap();
    let result: Result<BTreeMap<_, _>, _> =
        reader.blobs(|_| true, |_| Some(text(9, 3_000))).collect();
    check_refused(
        result,
        expect![
            "pack_decode: patches/40f71c2305eeb09b4e6b7b00440030c9d57e93a9abec2047e167fe3bac079f3e.zst: zstd frame checksum mismatch (frame says 474f3d6d, content has a38e1c62)"
        ],
    );

    // A patch that ignores its base decodes, to bytes that are not the blob: the reader gives
    // the size it promised, and the caller's sha256 check refuses them.
    let mut foreign = entries.clone();
    foreign[2].1 = server::patch(&text(9, 3_000), &text(8, 3_000));
    let read = read(&zip_entries(&foreign), &expected, &bases).unwrap();
    let (sha256, bytes) = read.iter().find(|(_, b)| **b == text(8, 3_000)).unwrap();
    assert_ne!(Digest::of(bytes), *sha256);
}

#[test]
fn the_writer_refuses_payloads_that_do_not_match_the_index() {
    let (parts, _, _) = sample();
    let outcome = |data: Option<&[u8]>, patches: &BTreeMap<Digest, Vec<u8>>| match write_pack(
        &parts.index,
        data,
        patches,
    ) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{}: {e}", e.code()),
    };
    let data = parts.data.as_deref();
    expect!["pack_write: cannot write the pack: data.zst given: false, solid bytes: 3000"]
        .assert_eq(&outcome(None, &parts.patches));
    expect!["pack_write: cannot write the pack: no patch frame for blob 40f71c2305eeb09b4e6b7b00440030c9d57e93a9abec2047e167fe3bac079f3e"].assert_eq(&outcome(data, &BTreeMap::new()));
    let mut extra = parts.patches.clone();
    extra.insert(Digest::of(b"x"), Vec::new());
    expect!["pack_write: cannot write the pack: 2 patch frames for 1 patched blobs"]
        .assert_eq(&outcome(data, &extra));
}

mod compact;
