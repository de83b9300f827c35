//! Blob storage: file contents (and packs) stored once by sha256.
//!
//! The trait is what the rest of the server sees; `fs` is the embedded default. An S3-compatible
//! engine slots in beside it without touching callers.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use manifests::Digest;
use tokio::io::AsyncRead;

use crate::error::Result;

pub mod fs;

#[cfg(test)]
mod tests;

/// The bytes of a blob (or part of it) as a stream.
pub struct BlobRead {
    /// The whole blob's size in bytes.
    pub total_size: u64,
    /// The range being read.
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
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
