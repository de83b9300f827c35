//! Compact packs (`.bpk`): the same frames as the zip packs the server stores, in the container
//! devices read without `pack.json` or zip headers (`manifests::PackReader::to_compact`).
//!
//! The server stores and builds one pack per pair, the zip (which devices from before the compact
//! container still ask for), and answers a compact request by carrying the zip's frames over
//! into the compact container: no frame is decoded or encoded again, so it costs a copy of the
//! pack and a read of both manifests. The result is held in memory, within a budget, by the zip's
//! digest: the same zip always gives the same compact pack, so that digest (with a `.bpk` suffix)
//! is its strong ETag, and a fast pack and the final pack that replaces it never share one.

use std::sync::Arc;

use axum::http::HeaderValue;
use bytes::Bytes;
use manifests::{Digest, ExpectedPack, PackReader};

use super::{PackKey, Servable, release_of};
use crate::blob_store::fs::blocking;
use crate::error::{Error, Result};
use crate::service::Service;

/// Bytes of compact packs held at most.
pub const COMPACT_BUDGET_BYTES: u64 = 64 << 20;

/// A compact pack, ready to answer.
#[derive(Debug)]
pub struct CompactPack {
    /// The pack.
    pub bytes: Bytes,
    /// `"<zip digest>.bpk"`.
    pub tag: HeaderValue,
    /// Whether it comes from the final pack (immutable), not a fast one.
    pub immutable: bool,
}

#[derive(Clone, Debug)]
struct Weight;

impl quick_cache::Weighter<Digest, Arc<CompactPack>> for Weight {
    fn weight(&self, _: &Digest, pack: &Arc<CompactPack>) -> u64 {
        pack.bytes.len() as u64 + 128
    }
}

/// The compact packs held, by the digest of the zip they come from.
pub struct CompactPacks {
    cache: quick_cache::sync::Cache<Digest, Arc<CompactPack>, Weight>,
}

impl std::fmt::Debug for CompactPacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactPacks")
            .field("held", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl CompactPacks {
    /// Holds at most `budget` bytes.
    pub fn new(budget: u64) -> CompactPacks {
        // quick_cache sizes its shards from an estimate of the entries.
        let estimate = usize::try_from(budget / (64 * 1024))
            .unwrap_or(1024)
            .max(16);
        CompactPacks {
            cache: quick_cache::sync::Cache::with_weighter(estimate, budget, Weight),
        }
    }
}

impl Service {
    /// The compact form of `servable`, the pack of `key` a device's request gets.
    ///
    /// # Errors
    /// [`Error::NotFound`] when a release of the pack is gone; [`Error::Internal`] when the
    /// stored pack cannot be carried over (it would fail the device's reader).
    pub async fn compact_pack(
        &self,
        key: &PackKey,
        servable: &Servable,
    ) -> Result<Arc<CompactPack>> {
        let (zip_digest, immutable) = match servable {
            Servable::Final(record) => (record.digest, true),
            Servable::Fast(fast) => (fast.digest, false),
        };
        let held = &self.packs.compact.cache;
        if let Some(pack) = held.get(&zip_digest) {
            return Ok(pack);
        }
        let zip = match servable {
            Servable::Final(record) => Bytes::from(
                self.blobs
                    .read_all(&record.digest)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("pack {key}")))?,
            ),
            Servable::Fast(fast) => fast.bytes.clone(),
        };
        let (from, to) = self.releases_of(key).await?;
        let label = key.to_string();
        let bytes = blocking(move || {
            let to_release = release_of(&to)?;
            let from_release = from.as_ref().map(release_of).transpose()?;
            let blobs = to_release
                .files
                .values()
                .map(|f| (f.sha256, f.size))
                .collect();
            let order = to_release.blob_order();
            let from_blobs = from_release
                .as_ref()
                .map(manifests::Release::sorted_blobs)
                .unwrap_or_default();
            let expected = ExpectedPack {
                to_manifest: to.manifest_digest,
                from_manifest: from.as_ref().map(|f| f.manifest_digest),
                blobs: &blobs,
                order: &order,
                from_blobs: &from_blobs,
            };
            PackReader::open(&zip, &expected)
                .and_then(|reader| reader.to_compact(&zip, &expected))
                .map_err(|e| {
                    tracing::error!(pack = %label, error = %e, "a stored pack has no compact form");
                    Error::Internal(format!("compact form of pack {label}: {e}"))
                })
        })
        .await?;
        // A digest is hex only, always a valid header value.
        let tag = HeaderValue::from_str(&format!("\"{zip_digest}.bpk\""))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let pack = Arc::new(CompactPack {
            bytes: bytes.into(),
            tag,
            immutable,
        });
        held.insert(zip_digest, pack.clone());
        Ok(pack)
    }
}
