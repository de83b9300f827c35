//! Small blobs that devices asked for, held in memory within a budget.
//!
//! After a publish, every device of a channel asks for the same few changed files within
//! minutes. Answering each from storage costs a read into a fresh buffer (and from S3 a round
//! trip) per request, while `sendfile` lets nginx answer from the page cache; held here, a blob is
//! answered from memory by the hot path ([`crate::http`]) without a read, a buffer or an
//! in-flight slot. A blob is immutable under its digest, so its bytes are never stale; a
//! collection forgets what it removes, and a stored gzip representation forgets the copy read
//! without it. A copy read while something was forgotten is not held (see [`HotBlobs::epoch`]),
//! so a read racing a removal or a new representation cannot bring back what was forgotten. Which entries stay is decided by the cache's S3-FIFO
//! policy: a blob asked for once does not push out one asked for many times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderValue;
use bytes::Bytes;
use manifests::Digest;

/// Mebibytes of blobs held by default.
pub const DEFAULT_BLOB_CACHE_MIB: u64 = 128;

/// The largest blob held, at most: bigger ones (few, and streamed at disk speed anyway) would
/// push out many small ones.
const MAX_ENTRY_BYTES: u64 = 4 * 1024 * 1024;

/// A blob's answers: its bytes and its stored gzip representation, each with its strong ETag.
#[derive(Debug)]
pub struct HotBlob {
    /// The blob.
    pub identity: Bytes,
    /// `"sha256"`.
    pub identity_tag: HeaderValue,
    /// The stored gzip representation, if the blob has one.
    pub gzip: Option<(Bytes, HeaderValue)>,
}

impl HotBlob {
    /// The blob `digest` with these bytes and, if stored, its gzip representation.
    pub fn new(digest: &Digest, identity: Bytes, gzip: Option<Bytes>) -> HotBlob {
        // A digest is hex only, always a valid header value.
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{digest}{suffix}\""))
                .unwrap_or(HeaderValue::from_static("\"\""))
        };
        HotBlob {
            identity,
            identity_tag: tag(""),
            gzip: gzip.map(|bytes| (bytes, tag(".gz"))),
        }
    }

    fn bytes(&self) -> u64 {
        self.identity.len() as u64 + self.gzip.as_ref().map_or(0, |(b, _)| b.len() as u64)
    }
}

#[derive(Clone, Debug)]
struct Weight;

impl quick_cache::Weighter<Digest, Arc<HotBlob>> for Weight {
    fn weight(&self, _: &Digest, blob: &Arc<HotBlob>) -> u64 {
        // The digest and the bookkeeping count too, so that empty blobs are not free.
        blob.bytes() + 128
    }
}

/// The blobs held; see the module docs.
pub struct HotBlobs {
    cache: Option<quick_cache::sync::Cache<Digest, Arc<HotBlob>, Weight>>,
    max_entry: u64,
    /// How many times something was forgotten.
    forgets: AtomicU64,
}

impl std::fmt::Debug for HotBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotBlobs")
            .field("held", &self.cache.as_ref().map_or(0, |c| c.len()))
            .field("bytes", &self.cache.as_ref().map_or(0, |c| c.weight()))
            .finish()
    }
}

impl HotBlobs {
    /// Holds up to `budget_bytes` of blobs; 0 holds none.
    pub fn new(budget_bytes: u64) -> HotBlobs {
        // An estimate for the table's first allocation: blobs of 16 KiB or so.
        let items = usize::try_from(budget_bytes / (16 * 1024))
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 16);
        HotBlobs {
            cache: (budget_bytes > 0)
                .then(|| quick_cache::sync::Cache::with_weighter(items, budget_bytes, Weight)),
            max_entry: MAX_ENTRY_BYTES.min(budget_bytes / 8),
            forgets: AtomicU64::new(0),
        }
    }

    /// The blob, if held.
    pub fn get(&self, digest: &Digest) -> Option<Arc<HotBlob>> {
        self.cache.as_ref()?.get(digest)
    }

    /// Whether blobs are held at all (a budget above 0).
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// Whether a blob of `bytes` would be held.
    pub fn admits(&self, bytes: u64) -> bool {
        self.cache.is_some() && bytes <= self.max_entry
    }

    /// Taken before reading a blob to hold: [`HotBlobs::insert`] holds it only if nothing was
    /// forgotten meanwhile.
    pub fn epoch(&self) -> u64 {
        self.forgets.load(Ordering::Acquire)
    }

    /// Holds `blob`, read since `epoch`, if it [`HotBlobs::admits`] its size and nothing was
    /// forgotten since; returns it.
    pub fn insert(&self, digest: Digest, blob: HotBlob, epoch: u64) -> Arc<HotBlob> {
        let blob = Arc::new(blob);
        // Admitted by the blob's own size, as [`HotBlobs::admits`] is asked before it is read.
        if let Some(cache) = &self.cache
            && blob.identity.len() as u64 <= self.max_entry
        {
            cache.insert(digest, blob.clone());
            // Forgotten while read: let the next request read it again.
            if self.epoch() != epoch {
                cache.remove(&digest);
            }
        }
        blob
    }

    /// Forgets blobs that were removed from storage.
    pub fn forget<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) {
        if let Some(cache) = &self.cache {
            self.forgets.fetch_add(1, Ordering::AcqRel);
            for digest in digests {
                cache.remove(digest);
            }
        }
    }

    /// How many blobs are held, and their bytes.
    pub fn held(&self) -> (usize, u64) {
        self.cache
            .as_ref()
            .map_or((0, 0), |c| (c.len(), c.weight()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize, byte: u8) -> (Digest, HotBlob) {
        let bytes = Bytes::from(vec![byte; n]);
        let digest = Digest::of(&bytes);
        (digest, HotBlob::new(&digest, bytes, None))
    }

    #[test]
    fn blobs_are_held_within_the_budget_and_big_ones_not_at_all() {
        let hot = HotBlobs::new(1024 * 1024);
        let (small, blob_small) = blob(1000, 1);
        hot.insert(small, blob_small, hot.epoch());
        assert_eq!(hot.get(&small).map(|b| b.identity.len()), Some(1000));
        assert_eq!(
            hot.get(&small).map(|b| b.identity_tag.clone()),
            Some(HeaderValue::from_str(&format!("\"{small}\"")).unwrap())
        );
        // An eighth of the budget at most.
        assert!(hot.admits(128 * 1024));
        assert!(!hot.admits(128 * 1024 + 1));
        let (big, blob_big) = blob(200 * 1024, 2);
        let returned = hot.insert(big, blob_big, hot.epoch());
        assert_eq!(returned.identity.len(), 200 * 1024);
        assert!(hot.get(&big).is_none());
        // Many more blobs than fit: the total stays within the budget.
        for i in 0..100u8 {
            let (digest, b) = blob(100 * 1024, i.wrapping_add(10));
            hot.insert(digest, b, hot.epoch());
        }
        let (count, bytes) = hot.held();
        assert!(bytes <= 1024 * 1024, "{bytes} bytes held");
        assert!(count < 12, "{count} blobs held");
    }

    #[test]
    fn forgotten_blobs_are_gone_and_a_zero_budget_holds_nothing() {
        let hot = HotBlobs::new(1024 * 1024);
        let (digest, b) = blob(10, 3);
        hot.insert(digest, b, hot.epoch());
        hot.forget([&digest]);
        assert!(hot.get(&digest).is_none());
        // Read before something was forgotten: not held.
        let before = hot.epoch();
        hot.forget([&Digest::of(b"another")]);
        let (digest, b) = blob(10, 5);
        assert_eq!(hot.insert(digest, b, before).identity.len(), 10);
        assert!(hot.get(&digest).is_none());
        let (digest, b) = blob(10, 6);
        hot.insert(digest, b, hot.epoch());
        assert!(hot.get(&digest).is_some());
        let none = HotBlobs::new(0);
        assert!(!none.enabled() && !none.admits(1));
        let (digest, b) = blob(10, 4);
        none.insert(digest, b, none.epoch());
        assert!(none.get(&digest).is_none());
        assert_eq!(none.held(), (0, 0));
    }
}
