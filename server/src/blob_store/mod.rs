//! Blob storage: file contents (and packs) stored once by sha256.
//!
//! The trait is what the rest of the server sees; `fs` is the embedded default, `s3` keeps the
//! same names in an S3-compatible bucket. [`BlobLocation`] says which one `serve` opens.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use manifests::Digest;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};

pub mod fs;
pub mod s3;

#[cfg(test)]
mod tests;

/// Where the blobs live, as `--blobs` (`BALEEN_BLOBS`) names it: `files` (the default, the data
/// directory's `blobs/`) or `s3://BUCKET`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BlobLocation {
    /// Files under the data directory's `blobs/`.
    #[default]
    DataDir,
    /// Objects in an S3-compatible bucket (see [`s3::S3Config::from_env`] for the rest).
    S3 {
        /// The bucket.
        bucket: String,
    },
}

impl BlobLocation {
    /// Parses `files` or `s3://BUCKET`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] (setting `blobs`) for anything else, a key prefix included.
    pub fn parse(value: &str) -> Result<BlobLocation> {
        let refuse = |reason: &str| Error::InvalidSetting {
            setting: "blobs",
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if value.is_empty() || value == "files" {
            return Ok(BlobLocation::DataDir);
        }
        let Some(bucket) = value.strip_prefix("s3://") else {
            return Err(refuse("expected `files` or `s3://BUCKET`"));
        };
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        if bucket.contains('/') {
            return Err(refuse(
                "a key prefix inside the bucket is not supported; give a bucket of its own",
            ));
        }
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(refuse(
                "a bucket name is 3 to 63 lower-case letters, digits, dots and hyphens",
            ));
        }
        Ok(BlobLocation::S3 {
            bucket: bucket.to_owned(),
        })
    }
}

/// The bytes of a blob (or part of it) as a stream.
pub struct BlobRead {
    /// The whole blob's size in bytes.
    pub total_size: u64,
    /// The range being read.
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// The same bytes when the store read them into memory at once (a small blob on the file
    /// engine): an answer sends them as they are, without streaming them through a buffer.
    pub in_memory: Option<bytes::Bytes>,
}

impl BlobRead {
    /// A read of `bytes`, all of the blob, already in memory.
    pub fn from_memory(bytes: bytes::Bytes) -> BlobRead {
        let len = bytes.len() as u64;
        BlobRead {
            total_size: len,
            range: 0..len,
            reader: Box::pin(std::io::Cursor::new(bytes.clone())),
            in_memory: Some(bytes),
        }
    }
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("total_size", &self.total_size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A stored blob as a collection sees it: what files hold it and its representations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size, or none if only representations of it are stored (left by an
    /// interrupted removal).
    pub size_bytes: Option<u64>,
    /// Its precompressed representations: content coding and size.
    pub variants: Vec<(String, u64)>,
}

impl StoredBlob {
    /// The bytes the blob and its representations take.
    pub fn total_bytes(&self) -> u64 {
        self.size_bytes.unwrap_or(0) + self.variants.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// Content-addressed storage. Writes are atomic: a blob is either absent or complete.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Moves a staged file whose sha256 the caller computed into the store. If the blob is
    /// already there the staged file is simply removed.
    async fn put_file(&self, staged: &Path, digest: &Digest) -> Result<()>;

    /// Moves many staged files in, as [`BlobStore::put_file`] does, durably before it returns;
    /// engines may batch the work (one directory sync per directory, files synced in parallel).
    async fn put_files(&self, files: Vec<(PathBuf, Digest)>) -> Result<()> {
        for (staged, digest) in files {
            self.put_file(&staged, &digest).await?;
        }
        Ok(())
    }

    /// Stores bytes and returns their digest.
    async fn put_bytes(&self, bytes: &[u8]) -> Result<Digest>;

    /// The blob's size, or `None` if it is not stored.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Reads a blob, or the byte range `range` of it (clamped to its size).
    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<BlobRead>>;

    /// Reads a whole blob into memory.
    async fn read_all(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;

    /// Stores a precompressed representation of a blob (`encoding` is an HTTP content coding
    /// such as `gzip`). The caller guarantees it decodes to the blob.
    async fn put_variant(&self, digest: &Digest, encoding: &str, bytes: &[u8]) -> Result<()>;

    /// Reads a precompressed representation, if one was stored.
    async fn read_variant(&self, digest: &Digest, encoding: &str) -> Result<Option<BlobRead>>;

    /// Every stored blob and representation, sorted by digest, for a collection to compare
    /// with what the metadata refers to. Files being written and names the engine does not
    /// recognise are left out (and so never removed).
    async fn list(&self) -> Result<Vec<StoredBlob>>;

    /// Removes listed blobs, each with its representations first and then the blob itself, so
    /// that an interrupted removal leaves at most representations of a blob nothing refers to.
    /// What is gone already is not an error. Engines may batch the work.
    async fn remove(&self, blobs: &[StoredBlob]) -> Result<()>;
}
