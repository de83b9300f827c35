//! The check every pack passes before it is stored: the device's reader, on the server.

#![allow(clippy::unwrap_used)]

use super::*;

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

/// A pack, the blobs it must bring, the patch bases, the target release's blob sizes and
/// delivery order, and the starting release's blobs.
type Built = (Vec<u8>, Vec<Fetch>, BTreeMap<Digest, Vec<u8>>, Releases);

/// What the two releases of a test pack hold.
struct Releases {
    sizes: BTreeMap<Digest, u64>,
    order: Vec<Digest>,
    from_blobs: Vec<Digest>,
}

/// A diff pack of one solid and one patched blob, with what checking it needs.
fn diff_pack() -> Built {
    diff_pack_at(delta::LEVEL)
}

/// [`diff_pack`] at a compression level.
fn diff_pack_at(level: i32) -> Built {
    let solid = text(1, 5_000);
    let changed = text(2, 50_000);
    let mut base = changed.clone();
    base[100] ^= 1;
    let fetch = vec![
        Fetch {
            sha256: Digest::of(&solid),
            size: solid.len() as u64,
            base: None,
        },
        Fetch {
            sha256: Digest::of(&changed),
            size: changed.len() as u64,
            base: Some(Digest::of(&base)),
        },
    ];
    let index = PackIndex {
        format: PACK_FORMAT,
        package: PackageId::parse("app").unwrap(),
        from: Some(ReleaseVersion::parse("1.0.0").unwrap()),
        to: ReleaseVersion::parse("1.1.0").unwrap(),
        from_manifest: Some(Digest::of(b"from")),
        to_manifest: Digest::of(b"to"),
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
        blobs: Vec::new(),
    };
    let bases = BTreeMap::from([(Digest::of(&base), base)]);
    let targets = vec![(fetch[0].clone(), solid), (fetch[1].clone(), changed)];
    let pack = encode(index, targets, &bases, level).unwrap();
    let releases = Releases {
        sizes: fetch.iter().map(|f| (f.sha256, f.size)).collect(),
        order: fetch.iter().map(|f| f.sha256).collect(),
        from_blobs: bases.keys().copied().collect(),
    };
    (pack, fetch, bases, releases)
}

fn expected(releases: &Releases) -> ExpectedPack<'_> {
    ExpectedPack {
        to_manifest: Digest::of(b"to"),
        from_manifest: Some(Digest::of(b"from")),
        blobs: &releases.sizes,
        order: &releases.order,
        from_blobs: &releases.from_blobs,
    }
}

#[test]
fn a_pack_the_devices_read_passes() {
    let (pack, fetch, bases, sizes) = diff_pack();
    check(&pack, &expected(&sizes), &fetch, &bases).unwrap();
    let reader = PackReader::open(&pack, &expected(&sizes)).unwrap();
    assert!(
        reader
            .blob_list()
            .iter()
            .any(|b| matches!(b.encoding, Encoding::Patch { .. }))
    );
}

#[test]
fn a_pack_devices_would_refuse_fails_the_check() {
    let (pack, fetch, bases, sizes) = diff_pack();

    // The patch base differs from what the device holds: the device's decoder refuses it.
    let mut damaged = bases.clone();
    for bytes in damaged.values_mut() {
        bytes[1_000] ^= 1;
    }
    let e = check(&pack, &expected(&sizes), &fetch, &damaged).unwrap_err();
    assert!(e.to_string().contains("reading back the pack"), "{e}");

    // A blob the release needs is not in the pack.
    let mut more = fetch.clone();
    more.push(Fetch {
        sha256: Digest::of(b"missing"),
        size: 7,
        base: None,
    });
    let e = check(&pack, &expected(&sizes), &more, &bases).unwrap_err();
    assert!(e.to_string().contains("pack lacks blob"), "{e}");

    // The pack is for another release.
    let mut other = expected(&sizes);
    other.to_manifest = Digest::of(b"other");
    let e = check(&pack, &other, &fetch, &bases).unwrap_err();
    assert!(e.to_string().contains("other releases"), "{e}");

    // Its compact form would not deliver what devices expect (a blob counted as the starting
    // release's): the pack is not stored.
    let mut held = sizes.from_blobs.clone();
    held.push(sizes.order[0]);
    held.sort();
    let mut more_held = expected(&sizes);
    more_held.from_blobs = &held;
    let e = check(&pack, &more_held, &fetch, &bases).unwrap_err();
    assert!(e.to_string().contains("carrying over the pack"), "{e}");
}

#[test]
fn each_stage_builds_the_same_bytes_every_time_and_both_read_back() {
    for level in [delta::FAST_LEVEL, delta::LEVEL] {
        let (a, fetch, bases, sizes) = diff_pack_at(level);
        let (b, ..) = diff_pack_at(level);
        assert_eq!(a, b, "level {level} is deterministic");
        check(&a, &expected(&sizes), &fetch, &bases).unwrap();
    }
    assert_ne!(diff_pack_at(delta::FAST_LEVEL).0, diff_pack().0);
}
