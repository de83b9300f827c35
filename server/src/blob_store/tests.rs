//! One suite for every blob store engine.

use manifests::Digest;
use tokio::io::AsyncReadExt;

use super::fs::FsBlobStore;
use super::{BlobStore, StoredBlob};

async fn read_to_vec(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Option<Vec<u8>> {
    let mut read = store.read(digest, range).await.unwrap()?;
    let mut out = Vec::new();
    read.reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, read.range.end - read.range.start);
    Some(out)
}

/// What every engine must do.
pub(crate) async fn blob_store_suite(store: &dyn BlobStore, scratch: &std::path::Path) {
    let bytes = b"hello, offline world".to_vec();
    let digest = store.put_bytes(&bytes).await.unwrap();
    assert_eq!(digest, Digest::of(&bytes));
    // Storing the same bytes again is a no-op.
    assert_eq!(store.put_bytes(&bytes).await.unwrap(), digest);
    assert_eq!(store.size(&digest).await.unwrap(), Some(bytes.len() as u64));
    assert_eq!(store.read_all(&digest).await.unwrap(), Some(bytes.clone()));
    assert_eq!(read_to_vec(store, &digest, None).await, Some(bytes.clone()));
    assert_eq!(
        read_to_vec(store, &digest, Some(7..14)).await.as_deref(),
        Some(&b"offline"[..])
    );
    // A range past the end is clamped.
    assert_eq!(
        read_to_vec(store, &digest, Some(14..1000)).await.as_deref(),
        Some(&b" world"[..])
    );

    let missing = Digest::of(b"never stored");
    assert_eq!(store.size(&missing).await.unwrap(), None);
    assert!(store.read(&missing, None).await.unwrap().is_none());
    assert_eq!(store.read_all(&missing).await.unwrap(), None);

    // A staged file moves in; a second staged copy of the same content is just removed.
    let content = vec![7u8; 100_000];
    let d = Digest::of(&content);
    for name in ["staged-1", "staged-2"] {
        let staged = scratch.join(name);
        std::fs::write(&staged, &content).unwrap();
        store.put_file(&staged, &d).await.unwrap();
        assert!(!staged.exists(), "{name} was consumed");
    }
    assert_eq!(store.read_all(&d).await.unwrap(), Some(content));

    // Many staged files at once, some already stored, some sharing a directory.
    let batch: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let mut staged = Vec::new();
    for (i, bytes) in batch.iter().enumerate() {
        let path = scratch.join(format!("batch-{i}"));
        std::fs::write(&path, bytes).unwrap();
        staged.push((path, Digest::of(bytes)));
    }
    let again = scratch.join("again");
    std::fs::write(&again, &batch[0]).unwrap();
    staged.push((again.clone(), Digest::of(&batch[0])));
    store.put_files(staged.clone()).await.unwrap();
    for (path, digest) in &staged {
        assert!(!path.exists(), "{} was consumed", path.display());
        assert_eq!(
            store
                .read_all(digest)
                .await
                .unwrap()
                .map(|b| Digest::of(&b)),
            Some(*digest)
        );
    }

    // Precompressed representations sit beside the blob.
    assert!(store.read_variant(&digest, "gzip").await.unwrap().is_none());
    store
        .put_variant(&digest, "gzip", b"gz bytes")
        .await
        .unwrap();
    let mut variant = store.read_variant(&digest, "gzip").await.unwrap().unwrap();
    let mut out = Vec::new();
    variant.reader.read_to_end(&mut out).await.unwrap();
    assert_eq!((variant.total_size, out.as_slice()), (8, &b"gz bytes"[..]));
    assert_eq!(
        store.read_all(&digest).await.unwrap(),
        Some(bytes),
        "the blob itself is unchanged"
    );
    assert!(store.put_variant(&digest, "../x", b"no").await.is_err());

    // A listing names every blob once, with its size and its representations, sorted.
    let listed = store.list().await.unwrap();
    let mut expected: Vec<Digest> = batch.iter().map(|b| Digest::of(b)).collect();
    expected.extend([digest, d]);
    expected.sort();
    expected.dedup();
    assert_eq!(
        listed.iter().map(|b| b.digest).collect::<Vec<_>>(),
        expected
    );
    let hello = listed.iter().find(|b| b.digest == digest).unwrap();
    assert_eq!(hello.size_bytes, Some(20));
    assert_eq!(hello.variants, [("gzip".to_owned(), 8)]);
    assert_eq!(hello.total_bytes(), 28);
    // Removing takes the representations with the blob, and removing again is no error.
    store.remove(std::slice::from_ref(hello)).await.unwrap();
    store.remove(std::slice::from_ref(hello)).await.unwrap();
    assert_eq!(store.size(&digest).await.unwrap(), None);
    assert!(store.read_variant(&digest, "gzip").await.unwrap().is_none());
    assert_eq!(store.list().await.unwrap().len(), expected.len() - 1);
    // A representation left by an interrupted removal is listed on its own, and removed.
    store.put_variant(&d, "gzip", b"gz").await.unwrap();
    let big = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.digest == d)
        .unwrap();
    store
        .remove(&[StoredBlob {
            variants: Vec::new(),
            ..big.clone()
        }])
        .await
        .unwrap();
    let orphan = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.digest == d)
        .unwrap();
    assert_eq!(
        (orphan.size_bytes, orphan.total_bytes()),
        (None, 2),
        "{orphan:?}"
    );
    store.remove(&[orphan]).await.unwrap();
    assert!(store.list().await.unwrap().iter().all(|b| b.digest != d));
}

#[tokio::test]
async fn fs_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let store = FsBlobStore::open(dir.path().join("blobs")).unwrap();
    blob_store_suite(&store, &scratch).await;
    // Blobs live under a two-character fan-out and no temp file is left behind.
    let digest = Digest::of(&[1u8; 1001]).to_string();
    assert!(
        dir.path()
            .join("blobs")
            .join(&digest[..2])
            .join(&digest)
            .is_file()
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .count(),
        0
    );
    // What a crash leaves in tmp/ is gone once the store is opened again; names the store does
    // not recognise are never listed (so never removed).
    std::fs::write(dir.path().join("blobs/tmp/abc.tmp"), b"half").unwrap();
    std::fs::create_dir(dir.path().join("blobs/tmp/partial")).unwrap();
    std::fs::write(
        dir.path()
            .join("blobs")
            .join(&digest[..2])
            .join("notes.txt"),
        b"",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("blobs/zz")).unwrap();
    let before = store.list().await.unwrap();
    let store = FsBlobStore::open(dir.path().join("blobs")).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(store.list().await.unwrap(), before);
}
