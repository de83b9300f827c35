//! Signed manifests and release deltas as served: each encoded once (identity, gzip, zstd) and
//! kept in memory, since a manifest never changes once published and a delta between two of
//! them never changes either.
//!
//! A manifest is about 154 bytes per file as JSON; zstd brings that to roughly a third, and a
//! [`manifests::ReleaseDelta`] from the release a device holds brings an update of a few files to
//! a few hundred bytes whatever the size of the release. Each representation has its own strong
//! ETag: `"<digest>"`, `"<digest>.gz"`, `"<digest>.zst"` (for a delta, the sha256 of the delta's
//! JSON in place of the manifest's digest).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::HeaderValue;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use manifests::{Digest, ReleaseDelta};

use crate::error::{Error, Result};
use crate::service::Service;

/// Bytes of encoded manifests and deltas kept in memory; past this the cache starts over.
const MAX_CACHED_BYTES: usize = 64 << 20;
/// The zstd level of manifests and deltas: encoded once, decoded by every device.
const ZSTD_LEVEL: i32 = 19;

/// A content coding of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// As is.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` value, none for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Zstd => Some("zstd"),
        }
    }
}

/// One immutable document in every coding.
#[derive(Debug)]
pub struct Encoded {
    identity: Bytes,
    gzip: Bytes,
    zstd: Bytes,
    tag: String,
}

impl Encoded {
    fn new(bytes: Vec<u8>, tag: String) -> Result<Encoded> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let gzip = encoder
            .write_all(&bytes)
            .and_then(|()| encoder.finish())
            .map_err(|e| Error::Internal(format!("gzip: {e}")))?;
        // The frame declares its content size, which devices bound before decoding.
        let zstd = zstd::bulk::compress(&bytes, ZSTD_LEVEL)
            .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
        Ok(Encoded {
            identity: Bytes::from(bytes),
            gzip: Bytes::from(gzip),
            zstd: Bytes::from(zstd),
            tag,
        })
    }

    fn size(&self) -> usize {
        self.identity.len() + self.gzip.len() + self.zstd.len()
    }

    /// The smallest coding among `accepted`, its body and its strong ETag.
    pub fn pick(&self, accepted: &[Coding]) -> (Coding, Bytes, HeaderValue) {
        let mut best = (Coding::Identity, &self.identity);
        for coding in accepted {
            let body = match coding {
                Coding::Identity => &self.identity,
                Coding::Gzip => &self.gzip,
                Coding::Zstd => &self.zstd,
            };
            if body.len() < best.1.len() {
                best = (*coding, body);
            }
        }
        let suffix = match best.0 {
            Coding::Identity => "",
            Coding::Gzip => ".gz",
            Coding::Zstd => ".zst",
        };
        // The tag is hex digests and a dash: always a valid header value.
        let etag = HeaderValue::from_str(&format!("\"{}{suffix}\"", self.tag))
            .unwrap_or(HeaderValue::from_static("\"\""));
        (best.0, best.1.clone(), etag)
    }
}

/// Encoded manifests by digest and deltas by (to, from).
#[derive(Debug, Default)]
pub struct ManifestDocs {
    manifests: Mutex<Cache<Digest>>,
    deltas: Mutex<Cache<(Digest, Digest)>>,
}

#[derive(Debug)]
struct Cache<K> {
    entries: HashMap<K, Arc<Encoded>>,
    bytes: usize,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq> Cache<K> {
    fn get(&self, key: &K) -> Option<Arc<Encoded>> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: K, value: Arc<Encoded>) {
        if self.bytes + value.size() > MAX_CACHED_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += value.size();
        if let Some(old) = self.entries.insert(key, value) {
            self.bytes -= old.size();
        }
    }
}

impl<K> Cache<K> {
    fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|key, value| {
            let kept = keep(key);
            if !kept {
                *bytes -= value.size();
            }
            kept
        });
    }
}

impl ManifestDocs {
    /// Drops the manifests `digests` and every delta to or from one of them: their releases
    /// were collected, or their envelopes gained signatures.
    pub fn forget(&self, digests: &std::collections::BTreeSet<Digest>) {
        lock(&self.manifests).retain(|d| !digests.contains(d));
        lock(&self.deltas).retain(|(to, from)| !digests.contains(to) && !digests.contains(from));
    }

    /// Drops everything: changes may have been missed.
    pub(crate) fn forget_all(&self) {
        lock(&self.manifests).retain(|_| false);
        lock(&self.deltas).retain(|_| false);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Service {
    /// The signed manifest `digest` in every coding, encoded on first request.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a manifest the server does not hold.
    pub async fn manifest_document(&self, digest: &Digest) -> Result<Arc<Encoded>> {
        if let Some(found) = lock(&self.manifest_docs.manifests).get(digest) {
            return Ok(found);
        }
        let record = self
            .meta
            .release_by_manifest(digest)
            .await?
            .ok_or_else(|| Error::NotFound(format!("manifest {digest}")))?;
        let tag = digest.to_string();
        let encoded = tokio::task::spawn_blocking(move || Encoded::new(record.manifest, tag))
            .await
            .map_err(|e| Error::Internal(format!("encoding a manifest: {e}")))??;
        let encoded = Arc::new(encoded);
        lock(&self.manifest_docs.manifests).insert(*digest, encoded.clone());
        Ok(encoded)
    }

    /// The signed manifest `to` as a release delta from the manifest `from`, in every coding,
    /// built on first request.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a `to` the server does not hold; [`Error::DeltaUnavailable`] for a
    /// `from` it does not hold or of another package.
    pub async fn manifest_delta(&self, to: &Digest, from: &Digest) -> Result<Arc<Encoded>> {
        if let Some(found) = lock(&self.manifest_docs.deltas).get(&(*to, *from)) {
            return Ok(found);
        }
        let target = self
            .meta
            .release_by_manifest(to)
            .await?
            .ok_or_else(|| Error::NotFound(format!("manifest {to}")))?;
        let unavailable = |reason: &str| Error::DeltaUnavailable {
            scope: format!("manifest {to}"),
            from: from.to_string(),
            reason: reason.to_owned(),
        };
        let base = self
            .meta
            .release_by_manifest(from)
            .await?
            .ok_or_else(|| unavailable("no such manifest"))?;
        if base.package != target.package {
            return Err(unavailable("a manifest of another package"));
        }
        let encoded = tokio::task::spawn_blocking(move || {
            let delta = ReleaseDelta::between(&base.manifest, &target.manifest)?.to_bytes()?;
            // Named by its own bytes: half the header of naming both manifests, on every update.
            let tag = Digest::of(&delta).to_string();
            Encoded::new(delta, tag)
        })
        .await
        .map_err(|e| Error::Internal(format!("building a release delta: {e}")))??;
        let encoded = Arc::new(encoded);
        lock(&self.manifest_docs.deltas).insert((*to, *from), encoded.clone());
        Ok(encoded)
    }
}
