//! One suite for every blob store engine.

use manifests::Digest;
use tokio::io::AsyncReadExt;

use std::sync::Arc;

use super::fs::FsBlobStore;
use super::s3::{DEFAULT_MULTIPART_THRESHOLD_BYTES, S3BlobStore, S3Config};
use super::{BlobLocation, BlobStore, StoredBlob};
use crate::test_service::{Kind, TestService};

async fn read_to_vec(
    store: &dyn BlobStore,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Option<Vec<u8>> {
    let mut read = store.read(digest, range).await.unwrap()?;
    let mut out = Vec::new();
    read.reader.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, read.range.end - read.range.start);
    // Bytes an engine hands over in memory are the ones its reader gives.
    if let Some(bytes) = &read.in_memory {
        assert_eq!(bytes[..], out[..]);
    }
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
    // A whole small blob is read into memory at once; a range, or a large blob, is streamed.
    let small = store.put_bytes(b"small").await.unwrap();
    let read = store.read(&small, None).await.unwrap().unwrap();
    assert_eq!(read.in_memory.as_deref(), Some(&b"small"[..]));
    assert!(
        store
            .read(&small, Some(1..3))
            .await
            .unwrap()
            .unwrap()
            .in_memory
            .is_none()
    );
    let large = vec![3u8; 8 * 1024 * 1024 + 1];
    let large = store.put_bytes(&large).await.unwrap();
    assert!(
        store
            .read(&large, None)
            .await
            .unwrap()
            .unwrap()
            .in_memory
            .is_none()
    );
    assert_eq!(
        read_to_vec(&store, &large, None).await.unwrap().len(),
        8 * 1024 * 1024 + 1
    );
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

/// The S3 engine's own logic over `object_store`'s in-memory engine, with parts of 4 KiB so the
/// suite's larger files go up in parts; runs everywhere, with or without Garage.
#[tokio::test]
async fn s3_blob_store_over_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = S3BlobStore::with_store(Arc::new(object_store::memory::InMemory::new()), 4096);
    blob_store_suite(&store, dir.path()).await;
    s3_checks(&store, dir.path(), 4096).await;
    // The in-memory engine honours create-only writes; Garage (below) does not.
    assert!(store.honours_create_only().await.unwrap());
}

/// The unchanged suite, and what it does not cover for S3, against a real Garage node.
#[tokio::test]
async fn s3_blob_store_on_garage() {
    let Some(node) = TestService::start(Kind::Garage, "blob_store::tests::s3_blob_store_on_garage")
    else {
        return;
    };
    let config =
        S3Config::from_env(&node.var("BALEEN_S3_BUCKET").unwrap(), |k| node.var(k)).unwrap();
    assert!(
        config.allow_http && !config.virtual_hosted_style,
        "{config:?}"
    );
    let store = S3BlobStore::open(&config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    blob_store_suite(&store, dir.path()).await;
    s3_checks(&store, dir.path(), DEFAULT_MULTIPART_THRESHOLD_BYTES).await;
    // Garage answers a create-only PUT of an existing key with 200 and overwrites it, which is
    // why only immutable, content-addressed objects live there (ARCHITECTURE.md). If this starts
    // failing, Garage honours preconditions now: good news, update the docs.
    assert!(!store.honours_create_only().await.unwrap());
}

/// Uploads in parts, ranged reads across parts, and a staged file whose bytes do not match its
/// digest, which is refused and leaves nothing stored.
async fn s3_checks(store: &S3BlobStore, scratch: &std::path::Path, part_bytes: usize) {
    // Two and a half parts, each byte telling its position.
    let big: Vec<u8> = (0..part_bytes * 5 / 2).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&big);
    let staged = scratch.join("big");
    std::fs::write(&staged, &big).unwrap();
    store.put_file(&staged, &digest).await.unwrap();
    assert!(!staged.exists());
    assert_eq!(store.size(&digest).await.unwrap(), Some(big.len() as u64));
    assert_eq!(
        store
            .read_all(&digest)
            .await
            .unwrap()
            .map(|b| Digest::of(&b)),
        Some(digest)
    );
    // A range across the first part boundary, and one to the end.
    let across = (part_bytes - 10) as u64..(part_bytes + 10) as u64;
    let read = read_to_vec(store, &digest, Some(across.clone()))
        .await
        .unwrap();
    assert_eq!(read, big[part_bytes - 10..part_bytes + 10]);
    let tail = read_to_vec(store, &digest, Some(big.len() as u64 - 3..u64::MAX))
        .await
        .unwrap();
    assert_eq!(tail, big[big.len() - 3..]);
    // An empty range after the end is clamped, and asks nothing of the store.
    let past = store
        .read(&digest, Some(u64::MAX - 1..u64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (past.total_size, past.range.end - past.range.start),
        (big.len() as u64, 0)
    );
    // The same bytes from memory, in parts too, are a no-op.
    assert_eq!(store.put_bytes(&big).await.unwrap(), digest);
    let bytes_digest = store.put_bytes(&big[1..]).await.unwrap();
    assert_eq!(
        store.read_all(&bytes_digest).await.unwrap().as_deref(),
        Some(&big[1..])
    );

    // A staged file that is not what its digest says, small or in parts: refused, not stored,
    // and left for the staging area's cleanup.
    for (name, bytes) in [
        ("liar-small", b"not what it claims".to_vec()),
        ("liar-big", big[2..].to_vec()),
    ] {
        let claimed = Digest::of(format!("the real {name}").as_bytes());
        let staged = scratch.join(name);
        std::fs::write(&staged, &bytes).unwrap();
        let err = store.put_file(&staged, &claimed).await.unwrap_err();
        assert_eq!(err.code(), "internal", "{err}");
        assert!(err.to_string().contains("not stored"), "{err}");
        assert_eq!(store.size(&claimed).await.unwrap(), None, "{name}");
        assert_eq!(
            store.size(&Digest::of(&bytes)).await.unwrap(),
            None,
            "{name}"
        );
        assert!(staged.exists());
    }
    let listed: Vec<Digest> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|b| b.digest)
        .collect();
    assert!(listed.contains(&digest) && listed.contains(&bytes_digest));
    store.remove(&store.list().await.unwrap()).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
}

#[test]
fn blob_locations_are_files_or_a_bucket() {
    let check = |value: &str| match BlobLocation::parse(value) {
        Ok(BlobLocation::DataDir) => "files".to_owned(),
        Ok(BlobLocation::S3 { bucket }) => format!("bucket {bucket}"),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(check("files"), "files");
    assert_eq!(check("s3://baleen-blobs"), "bucket baleen-blobs");
    assert_eq!(check("s3://baleen.blobs/"), "bucket baleen.blobs");
    assert!(check("s3://bucket/prefix").contains("key prefix"));
    assert!(check("s3://B").contains("3 to 63"));
    assert!(check("s3://-bad").contains("3 to 63"));
    assert!(check("gs://bucket").contains("expected `files` or `s3://BUCKET`"));
}

#[test]
fn s3_settings_come_from_the_environment() {
    let config = |vars: &[(&str, &str)]| {
        S3Config::from_env("b", |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    let keys = [
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let aws = config(&keys).unwrap();
    assert_eq!(
        (
            aws.endpoint,
            aws.region.as_str(),
            aws.virtual_hosted_style,
            aws.allow_http
        ),
        (None, "us-east-1", true, false)
    );
    let garage = config(&[
        keys[0],
        keys[1],
        ("AWS_ENDPOINT_URL", "http://[::1]:3900"),
        ("AWS_REGION", "eu"),
        ("BALEEN_S3_REGION", "garage"),
    ])
    .unwrap();
    assert_eq!(
        (
            garage.region.as_str(),
            garage.virtual_hosted_style,
            garage.allow_http
        ),
        ("garage", false, true)
    );
    assert!(!format!("{garage:?}").contains("secret"), "{garage:?}");
    let remote_http = [
        keys[0],
        keys[1],
        ("BALEEN_S3_ENDPOINT", "http://garage.internal:3900"),
    ];
    let err = config(&remote_http).unwrap_err();
    assert!(err.to_string().contains("BALEEN_S3_ALLOW_HTTP"), "{err}");
    let mut allowed = remote_http.to_vec();
    allowed.push(("BALEEN_S3_ALLOW_HTTP", "true"));
    assert!(config(&allowed).unwrap().allow_http);
    let err = config(&keys[..1]).unwrap_err();
    assert!(
        err.to_string().contains("AWS_SECRET_ACCESS_KEY is not set"),
        "{err}"
    );
}
