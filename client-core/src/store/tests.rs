//! The store on a real temp directory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;

#[test]
fn concurrent_writes_of_one_blob_never_share_a_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let store = Arc::new(store);
    let bytes: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let digest = Digest::of(&bytes);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (store, bytes) = (store.clone(), bytes.clone());
            std::thread::spawn(move || store.write_blob(&digest, &bytes, "test"))
        })
        .collect();
    for writer in writers {
        writer.join().unwrap().unwrap();
    }
    assert_eq!(store.read_blob(&digest).unwrap(), bytes);
    assert!(store.temp_files().unwrap().is_empty());
}

#[test]
fn unique_temp_names_differ() {
    let names: std::collections::BTreeSet<String> =
        (0..100).map(|_| state::unique_temp_name("x")).collect();
    assert_eq!(names.len(), 100);
}

#[test]
fn garbage_collection_asks_about_each_file_and_keeps_what_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let (a, b) = (b"a".to_vec(), b"b".to_vec());
    store.write_blob(&Digest::of(&a), &a, "test").unwrap();
    store.write_blob(&Digest::of(&b), &b, "test").unwrap();
    let freed = store.collect_garbage(|d| *d == Digest::of(&a)).unwrap();
    assert_eq!(freed, 1);
    assert!(store.has_blob(&Digest::of(&a)));
    assert!(!store.has_blob(&Digest::of(&b)));
}

#[test]
fn a_blob_writer_puts_every_blob_in_place_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("blob {i}").into_bytes())
        .collect();
    let mut writer = store.blob_writer();
    for bytes in &blobs {
        writer.write(&Digest::of(bytes), bytes, "test").unwrap();
    }
    // The same blob twice is written once.
    writer
        .write(&Digest::of(&blobs[0]), &blobs[0], "test")
        .unwrap();
    let written = writer.finish().unwrap();
    assert_eq!(written.len(), blobs.len());
    for bytes in &blobs {
        assert_eq!(store.read_blob(&Digest::of(bytes)).unwrap(), *bytes);
    }
    assert!(store.temp_files().unwrap().is_empty());
}

#[test]
fn a_blob_writer_refuses_bytes_that_are_not_the_blob_and_writes_nothing_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let (good, bad) = (b"good".to_vec(), b"bad".to_vec());
    let mut writer = store.blob_writer();
    writer.write(&Digest::of(&good), &good, "test").unwrap();
    let err = writer.write(&Digest::of(&good), &bad, "test");
    assert!(matches!(err, Err(Error::BlobMismatch { .. })), "{err:?}");
    let err = writer.write(&Digest::of(&bad), &good, "test");
    assert!(matches!(err, Err(Error::BlobMismatch { .. })), "{err:?}");
    assert_eq!(writer.finish().unwrap().len(), 1);
    assert!(store.has_blob(&Digest::of(&good)));
    assert!(!store.has_blob(&Digest::of(&bad)));
    assert!(store.temp_files().unwrap().is_empty());
}

#[test]
fn a_blob_writer_dropped_unfinished_still_lands_each_blob_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..50u32).map(|i| vec![i as u8; 10_000]).collect();
    let mut writer = store.blob_writer();
    for bytes in &blobs {
        writer.write(&Digest::of(bytes), bytes, "test").unwrap();
    }
    drop(writer);
    for bytes in &blobs {
        assert_eq!(store.read_blob(&Digest::of(bytes)).unwrap(), *bytes);
    }
    assert!(store.temp_files().unwrap().is_empty());
}

#[test]
fn the_blobs_found_missing_are_those_not_stored_whether_looked_up_or_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    // Eight blobs of one fan-out directory (listed) and one of another (looked up).
    let mut crowded: Vec<Vec<u8>> = Vec::new();
    let mut prefix = None;
    for i in 0u32.. {
        let bytes = i.to_le_bytes().to_vec();
        let hex = Digest::of(&bytes).to_string();
        match &prefix {
            None => prefix = Some(hex[..2].to_owned()),
            Some(p) if hex.starts_with(p.as_str()) => crowded.push(bytes),
            Some(_) => {}
        }
        if crowded.len() == 8 {
            break;
        }
    }
    let alone = b"alone".to_vec();
    for bytes in crowded.iter().step_by(2).chain([&alone]) {
        store.write_blob(&Digest::of(bytes), bytes, "test").unwrap();
    }
    // A directory under a blob's name is not the blob.
    let odd = Digest::of(&crowded[1]).to_string();
    std::fs::create_dir(dir.path().join("blobs").join(&odd[..2]).join(&odd)).unwrap();
    let never = b"never".to_vec();
    let mut wanted: BTreeMap<Digest, u64> = crowded
        .iter()
        .chain([&alone, &never])
        .map(|b| (Digest::of(b), 1))
        .collect();
    store.retain_missing(&mut wanted);
    let expected: BTreeSet<Digest> = crowded
        .iter()
        .skip(1)
        .step_by(2)
        .chain([&never])
        .map(|b| Digest::of(b))
        .collect();
    assert_eq!(wanted.keys().copied().collect::<BTreeSet<_>>(), expected);
    for digest in wanted.keys() {
        assert!(!store.has_blob(digest));
    }
}
