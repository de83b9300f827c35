//! The documents devices poll on launch: a channel's signed index and the signed deltas that
//! lead to it, built when first asked for at a sequence, signed and compressed once, and kept in
//! memory.
//!
//! A channel change only writes the changed package's row and moves the channel's sequence
//! (`channel`). The first request at a new sequence reads the channel's rows once
//! ([`MetaStore::channel_rows`](crate::meta_store::MetaStore::channel_rows)) into a snapshot,
//! from which the full index and every delta to that sequence are cut. The full index is kept in
//! the store too, so a restarted server serves it without signing again. Its bytes depend only on
//! the channel's state (sequence, the times stored with it, the entries), so replicas that build
//! it independently serve the same bytes and ETags.
//!
//! Every document has two representations, identity and gzip (when gzip is smaller), each with its
//! own strong ETag: `"<digest>"` and `"<digest>.gz"`, the digest being that of the signed part.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use manifests::{AppId, Channel, Digest, Index, IndexDelta, PackageEntry, PackageId};

use crate::error::{Error, Result};
use crate::meta_store::{ChannelHead, StoredIndex};
use crate::service::Service;

/// Signed deltas kept per channel; more distinct starting sequences than this in one sequence's
/// lifetime start the cache over.
const MAX_CACHED_DELTAS: usize = 256;

/// One representation of a document: its bytes and strong ETag.
#[derive(Debug)]
pub struct Representation {
    /// The body, cheap to hand to each response.
    pub body: Bytes,
    /// Its strong ETag.
    pub etag: HeaderValue,
    /// The headers of a `200` and of a `304` with this representation, built on the first
    /// request (they carry the service's `Cache-Control`) and cloned for each one after.
    pub(crate) headers: OnceLock<(HeaderMap, HeaderMap)>,
}

/// A signed document ready to serve, in each representation.
#[derive(Debug)]
pub struct ServedDocument {
    /// The channel sequence it brings.
    pub sequence: u64,
    /// The digest of its signed part.
    pub digest: Digest,
    /// The canonical JSON bytes as signed.
    pub identity: Representation,
    /// The same bytes gzip-compressed, when that is smaller.
    pub gzip: Option<Representation>,
    /// The version of the app's key list it was signed under, sent as `Baleen-Keys` so that a
    /// device holding an older list fetches the new one (0: not sent).
    pub keys_version: u64,
}

impl ServedDocument {
    /// Prepares both representations of a signed document (compressing it once).
    ///
    /// # Errors
    /// [`Error::Internal`] if compression fails.
    pub fn new(sequence: u64, digest: Digest, bytes: Vec<u8>) -> Result<ServedDocument> {
        ServedDocument::tagged(sequence, digest, digest, bytes)
    }

    /// [`ServedDocument::new`] with ETags made from `tag` rather than the document's digest.
    ///
    /// # Errors
    /// [`Error::Internal`] if compression fails.
    pub fn tagged(
        sequence: u64,
        digest: Digest,
        tag: Digest,
        bytes: Vec<u8>,
    ) -> Result<ServedDocument> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let gz = encoder
            .write_all(&bytes)
            .and_then(|()| encoder.finish())
            .map_err(|e| Error::Internal(format!("gzip: {e}")))?;
        let tag = |suffix: &str| {
            // A digest is hex only, always a valid header value.
            HeaderValue::from_str(&format!("\"{tag}{suffix}\""))
                .map_err(|e| Error::Internal(format!("ETag: {e}")))
        };
        let gzip = if gz.len() < bytes.len() {
            Some(Representation {
                body: Bytes::from(gz),
                etag: tag(".gz")?,
                headers: OnceLock::new(),
            })
        } else {
            None
        };
        Ok(ServedDocument {
            sequence,
            digest,
            identity: Representation {
                body: Bytes::from(bytes),
                etag: tag("")?,
                headers: OnceLock::new(),
            },
            gzip,
            keys_version: 0,
        })
    }
}

/// A channel's entries at one sequence, read once: what the full index and the deltas to this
/// sequence are cut from.
#[derive(Debug)]
struct Snapshot {
    head: ChannelHead,
    packages: BTreeMap<PackageId, PackageEntry>,
    /// Every package row, newest change first: the sequence of its last change, and whether the
    /// package is in the index.
    changes: Vec<(u64, PackageId, bool)>,
    /// `manifests::packages_digest` of `packages`.
    packages_digest: Digest,
}

/// What this process holds of one channel.
#[derive(Debug, Default)]
struct ChannelDocs {
    /// The highest sequence this process knows the channel reached; everything below is of it.
    sequence: u64,
    /// The channel row at `sequence` and when it was read from the store.
    head: Option<(ChannelHead, Instant)>,
    index: Option<Arc<ServedDocument>>,
    snapshot: Option<Arc<Snapshot>>,
    /// Deltas to `sequence`, by the sequence they start from.
    deltas: FastMap<u64, Arc<ServedDocument>>,
    /// A request is reading the channel row again in the background ([`Service::held_index`]).
    rereading: AtomicBool,
}

impl ChannelDocs {
    /// Moves to `sequence` if it is higher, forgetting the documents of the old one; returns
    /// whether the channel is at `sequence` now (so that what was built for it may be kept).
    fn advance(&mut self, sequence: u64) -> bool {
        if sequence > self.sequence {
            *self = ChannelDocs {
                sequence,
                ..ChannelDocs::default()
            };
        }
        sequence == self.sequence
    }

    /// The channel row if it was read within `ttl`.
    fn fresh(&self, ttl: std::time::Duration) -> Option<&ChannelHead> {
        let (head, at) = self.head.as_ref()?;
        (head.sequence == self.sequence && at.elapsed() < ttl).then_some(head)
    }
}

/// Documents by `app`, then `channel`.
/// Looked up on every index request: a fast hasher, seeded per process, rather than SipHash (a
/// few percent of the hot path); only channels that exist get an entry.
type DocsMap = FastMap<String, FastMap<String, ChannelDocs>>;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The in-memory documents of every channel, and one build at a time per channel.
#[derive(Debug, Default)]
pub(crate) struct Documents {
    channels: Mutex<DocsMap>,
    builds: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Documents {
    /// Records that a channel reached `sequence` (a change this process committed), so that the
    /// next request reads it rather than serving the documents of the old sequence.
    pub(crate) fn advanced(&self, app: &AppId, channel: &Channel, sequence: u64) {
        self.update(app, channel, |d| {
            d.advance(sequence);
        });
    }

    fn lock(&self) -> MutexGuard<'_, DocsMap> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads a channel's entry without allocating (the hot path takes raw names).
    fn peek<T>(
        &self,
        app: &str,
        channel: &str,
        f: impl FnOnce(&ChannelDocs) -> Option<T>,
    ) -> Option<T> {
        f(self.lock().get(app)?.get(channel)?)
    }

    fn update<T>(
        &self,
        app: &AppId,
        channel: &Channel,
        f: impl FnOnce(&mut ChannelDocs) -> T,
    ) -> T {
        let mut channels = self.lock();
        let docs = channels
            .entry(app.as_str().to_owned())
            .or_default()
            .entry(channel.as_str().to_owned())
            .or_default();
        f(docs)
    }

    /// Applies `f` to the channel's entry if the channel is at `sequence` (moving it there if it
    /// was below), so that only what was built for the current sequence is kept.
    fn keep(
        &self,
        app: &AppId,
        channel: &Channel,
        sequence: u64,
        f: impl FnOnce(&mut ChannelDocs),
    ) {
        self.update(app, channel, |d| {
            if d.advance(sequence) {
                f(d);
            }
        });
    }

    /// Builds of one channel's documents run one at a time, so that a launch rush after a change
    /// signs each document once.
    async fn build_lock(&self, app: &AppId, channel: &Channel) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
            builds
                .entry(format!("{app}/{channel}"))
                .or_default()
                .clone()
        };
        lock.lock_owned().await
    }
}

/// Runs CPU-heavy work (signing, compressing) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("signing task failed: {e}")))?
}

/// How long past the cache time the hot path still answers the documents held while the channel
/// row is read again: a read that takes longer (a store in trouble) sends requests to the router.
const REREAD_GRACE: Duration = Duration::from_secs(10);

impl Service {
    /// For the hot path: the full index of `app`/`channel` held for the sequence this process
    /// read, without a wait for the store. Past three quarters of the cache time the first
    /// request starts one background read of the channel row, so that the row is read again
    /// before the cache time runs out while requests go on being answered from memory; only
    /// while that read is still under way past the cache time (up to [`REREAD_GRACE`]) is a
    /// document older than the cache time answered. With a launch rush on thousands of
    /// connections, every request would otherwise queue behind the one read at each expiry.
    /// None with a cache time of zero (every request reads the row).
    pub fn held_index(self: &Arc<Self>, app: &str, channel: &str) -> Option<Arc<ServedDocument>> {
        self.held(app, channel, |d| d.index.clone())
    }

    /// [`Service::held_index`] for the delta from `from`.
    pub fn held_delta(
        self: &Arc<Self>,
        app: &str,
        channel: &str,
        from: u64,
    ) -> Option<Arc<ServedDocument>> {
        self.held(app, channel, |d| d.deltas.get(&from).cloned())
    }

    fn held(
        self: &Arc<Self>,
        app: &str,
        channel: &str,
        pick: impl FnOnce(&ChannelDocs) -> Option<Arc<ServedDocument>>,
    ) -> Option<Arc<ServedDocument>> {
        let ttl = self.settings.index_cache;
        if ttl.is_zero() {
            return None;
        }
        let (document, reread) = self.documents.peek(app, channel, |d| {
            let (head, at) = d.head.as_ref()?;
            let age = at.elapsed();
            if head.sequence != d.sequence || age >= ttl + REREAD_GRACE {
                return None;
            }
            let document = pick(d)?;
            let reread = age >= ttl * 3 / 4 && !d.rereading.swap(true, Ordering::AcqRel);
            Some((document, reread))
        })?;
        if reread {
            self.reread_channel(app, channel);
        }
        Some(document)
    }

    /// Reads the channel row again in the background (see [`Service::held_index`]).
    fn reread_channel(self: &Arc<Self>, app: &str, channel: &str) {
        let done = |service: &Service, app: &str, channel: &str| {
            service.documents.peek(app, channel, |d| {
                d.rereading.store(false, Ordering::Release);
                Some(())
            });
        };
        let (Ok(app_id), Ok(channel_id), Ok(runtime)) = (
            AppId::parse(app),
            Channel::parse(channel),
            tokio::runtime::Handle::try_current(),
        ) else {
            done(self, app, channel);
            return;
        };
        let service = self.clone();
        runtime.spawn(async move {
            if let Err(e) = service.channel_head(&app_id, &channel_id).await {
                tracing::warn!(app = %app_id, channel = %channel_id, error = %e, "reading the channel again failed");
            }
            // Moved to a new sequence, the entry starts over with the flag down anyway.
            done(&service, app_id.as_str(), channel_id.as_str());
        });
    }

    /// The full index of `app`/`channel` if this process has it for the sequence it read within
    /// the cache time. Takes raw names: only valid ones are ever cached, so the hot path needs no
    /// parsing or allocation.
    pub fn cached_index(&self, app: &str, channel: &str) -> Option<Arc<ServedDocument>> {
        let ttl = self.settings.index_cache;
        self.documents.peek(app, channel, |d| {
            d.fresh(ttl)?;
            d.index.clone()
        })
    }

    /// The delta from `from` to the current sequence of `app`/`channel`, if this process has it
    /// for the sequence it read within the cache time.
    pub fn cached_delta(&self, app: &str, channel: &str, from: u64) -> Option<Arc<ServedDocument>> {
        let ttl = self.settings.index_cache;
        self.documents.peek(app, channel, |d| {
            d.fresh(ttl)?;
            d.deltas.get(&from).cloned()
        })
    }

    /// The signed full index of a channel at its current sequence: from memory, else the one kept
    /// in the store if it is current, else built from the channel's entries, signed and kept.
    /// None before anything was promoted on the channel.
    ///
    /// # Errors
    /// The store failed, or a stored entry broke the index's rules.
    pub async fn index(
        &self,
        app: &AppId,
        channel: &Channel,
    ) -> Result<Option<Arc<ServedDocument>>> {
        if let Some(index) = self.cached_index(app.as_str(), channel.as_str()) {
            return Ok(Some(index));
        }
        let _build = self.documents.build_lock(app, channel).await;
        let Some(head) = self.channel_head(app, channel).await? else {
            return Ok(None);
        };
        if let Some(index) = self.documents.peek(app.as_str(), channel.as_str(), |d| {
            (d.sequence == head.sequence).then(|| d.index.clone())?
        }) {
            return Ok(Some(index));
        }
        let keys = self.app_keys(app).await?;
        let keys_version = keys.list.version;
        let index_keys = keys.list.trusted(manifests::RoleName::Index)?;
        let index = match self.meta.index(app, channel).await? {
            // Signed under the key list in force: a stored index signed before a new list (a
            // crash before its channels moved on) is signed again, at the same sequence.
            Some(stored)
                if stored.sequence == head.sequence
                    && manifests::open(&stored.bytes, &index_keys).is_ok() =>
            {
                Arc::new(
                    blocking(move || {
                        let mut served =
                            ServedDocument::new(stored.sequence, stored.digest, stored.bytes)?;
                        served.keys_version = keys_version;
                        Ok(served)
                    })
                    .await?,
                )
            }
            _ => self.build_index(app, channel, &head).await?,
        };
        self.documents.keep(app, channel, index.sequence, |d| {
            d.index = Some(index.clone());
        });
        Ok(Some(index))
    }

    /// Signs the full index from the channel's entries and keeps it in the store.
    async fn build_index(
        &self,
        app: &AppId,
        channel: &Channel,
        head: &ChannelHead,
    ) -> Result<Arc<ServedDocument>> {
        let snapshot = self.snapshot(app, channel, head).await?;
        let index = Index {
            app: app.clone(),
            channel: channel.clone(),
            sequence: snapshot.head.sequence,
            issued_at: snapshot.head.issued_at,
            expires_at: snapshot.head.expires_at,
            packages: snapshot.packages.clone(),
        };
        let (keys, keys_version) = self.index_signers(app).await?;
        // Signing and compressing a thousand entries takes milliseconds: off the async workers.
        let (signed, served) = blocking(move || {
            let signed = index.sign(&keys.iter().collect::<Vec<_>>())?;
            let mut served =
                ServedDocument::new(index.sequence, signed.digest, signed.bytes.clone())?;
            served.keys_version = keys_version;
            Ok((signed, served))
        })
        .await?;
        self.meta
            .store_index(
                app,
                channel,
                &StoredIndex {
                    sequence: snapshot.head.sequence,
                    digest: signed.digest,
                    bytes: signed.bytes,
                    issued_at: snapshot.head.issued_at,
                    expires_at: snapshot.head.expires_at,
                },
            )
            .await?;
        tracing::debug!(%app, %channel, sequence = snapshot.head.sequence, "index signed");
        Ok(Arc::new(served))
    }

    /// The signed delta from sequence `from` to the current one: the whole entry of every package
    /// changed after `from`, the packages that left, and the digest of the current packages.
    ///
    /// # Errors
    /// [`Error::DeltaUnavailable`] when `from` is above the current sequence or below the oldest
    /// a delta can start from (or nothing was ever promoted on the channel); the store failed.
    pub async fn index_delta(
        &self,
        app: &AppId,
        channel: &Channel,
        from: u64,
    ) -> Result<Arc<ServedDocument>> {
        if let Some(delta) = self.cached_delta(app.as_str(), channel.as_str(), from) {
            return Ok(delta);
        }
        let _build = self.documents.build_lock(app, channel).await;
        let unavailable = |reason: String| Error::DeltaUnavailable {
            scope: format!("the index of {app}/{channel}"),
            from: from.to_string(),
            reason,
        };
        let Some(head) = self.channel_head(app, channel).await? else {
            return Err(unavailable("nothing was promoted on the channel".into()));
        };
        let floor = head.delta_floor.max(1);
        if from > head.sequence || from < floor {
            return Err(unavailable(format!(
                "deltas start from sequences {floor} to {}",
                head.sequence
            )));
        }
        if let Some(delta) = self.documents.peek(app.as_str(), channel.as_str(), |d| {
            (d.sequence == head.sequence).then(|| d.deltas.get(&from).cloned())?
        }) {
            return Ok(delta);
        }
        let snapshot = self.snapshot(app, channel, &head).await?;
        let mut changed = BTreeMap::new();
        let mut removed = BTreeSet::new();
        for (sequence, package, listed) in &snapshot.changes {
            if *sequence <= from {
                break;
            }
            match snapshot.packages.get(package) {
                Some(entry) if *listed => {
                    changed.insert(package.clone(), entry.clone());
                }
                _ => {
                    removed.insert(package.clone());
                }
            }
        }
        let delta = IndexDelta {
            app: app.clone(),
            channel: channel.clone(),
            from_sequence: from,
            sequence: snapshot.head.sequence,
            issued_at: snapshot.head.issued_at,
            expires_at: snapshot.head.expires_at,
            changed,
            removed,
            packages_digest: snapshot.packages_digest,
        };
        let (keys, keys_version) = self.index_signers(app).await?;
        // The ETag names the index the delta leads to, not the delta: a device that applied any
        // delta to this sequence and asks for the delta from it (nothing changed) gets a 304.
        let target = format!(
            "index-delta-target:{app}/{channel}:{}:{}:{}",
            delta.sequence, delta.issued_at, delta.expires_at
        );
        // A delta from far back can hold every entry: signed and compressed off the async workers.
        let served = Arc::new(
            blocking(move || {
                let signed = delta.sign(&keys.iter().collect::<Vec<_>>())?;
                let mut served = ServedDocument::tagged(
                    delta.sequence,
                    signed.digest,
                    Digest::of(target.as_bytes()),
                    signed.bytes,
                )?;
                served.keys_version = keys_version;
                Ok(served)
            })
            .await?,
        );
        self.documents.keep(app, channel, served.sequence, |d| {
            if d.deltas.len() >= MAX_CACHED_DELTAS {
                d.deltas.clear();
            }
            d.deltas.insert(from, served.clone());
        });
        Ok(served)
    }

    /// The channel row: from memory if it was read within the cache time, else from the store.
    async fn channel_head(&self, app: &AppId, channel: &Channel) -> Result<Option<ChannelHead>> {
        let ttl = self.settings.index_cache;
        if let Some(head) = self
            .documents
            .peek(app.as_str(), channel.as_str(), |d| d.fresh(ttl).cloned())
        {
            return Ok(Some(head));
        }
        let head = match self.meta.channel_head(app, channel).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            // While the store cannot be reached (a database restarting), the documents held are
            // still signed and unexpired: devices keep getting them, and see the next change
            // once the store is back.
            Err(Error::MetaUnavailable(why)) => {
                return match self.documents.peek(app.as_str(), channel.as_str(), |d| {
                    d.head
                        .as_ref()
                        .filter(|(head, _)| head.sequence == d.sequence)
                        .map(|(head, _)| head.clone())
                }) {
                    Some(head) => {
                        tracing::debug!(%app, %channel, error = %why, "metadata store unavailable; serving the documents held");
                        Ok(Some(head))
                    }
                    None => Err(Error::MetaUnavailable(why)),
                };
            }
            Err(e) => return Err(e),
        };
        self.documents.keep(app, channel, head.sequence, |d| {
            d.head = Some((head.clone(), Instant::now()));
        });
        Ok(Some(head))
    }

    /// The channel's entries at `head`'s sequence (or a later one, if the channel moved on
    /// meanwhile): from memory, else read in one go. Rows of a store upgraded from before
    /// entries were kept get theirs computed and stored here, once.
    async fn snapshot(
        &self,
        app: &AppId,
        channel: &Channel,
        head: &ChannelHead,
    ) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = self.documents.peek(app.as_str(), channel.as_str(), |d| {
            d.snapshot
                .clone()
                .filter(|s| s.head.sequence == head.sequence)
        }) {
            return Ok(snapshot);
        }
        let (head, rows) = self
            .meta
            .channel_rows(app, channel)
            .await?
            .ok_or_else(|| Error::Internal(format!("channel {app}/{channel} vanished")))?;
        let mut packages = BTreeMap::new();
        let mut changes = Vec::with_capacity(rows.len());
        let mut computed = Vec::new();
        for row in rows {
            let listed = row.is_listed();
            changes.push((row.sequence, row.package.clone(), listed));
            if !listed {
                continue;
            }
            let entry = match row.entry {
                Some(entry) => entry,
                None => {
                    let entry = self
                        .current_entry(app, channel, &row.package, &row.state)
                        .await?
                        .ok_or_else(|| {
                            Error::Internal(format!("{} is listed without an entry", row.package))
                        })?;
                    computed.push((row.package.clone(), entry.clone()));
                    entry
                }
            };
            packages.insert(row.package, entry);
        }
        if !computed.is_empty() {
            self.meta.fill_entries(app, channel, &computed).await?;
            tracing::info!(%app, %channel, packages = computed.len(), "index entries computed for an upgraded store");
        }
        changes.sort_by_key(|c| std::cmp::Reverse(c.0));
        let snapshot = Arc::new(Snapshot {
            packages_digest: manifests::packages_digest(&packages)?,
            head,
            packages,
            changes,
        });
        self.documents
            .keep(app, channel, snapshot.head.sequence, |d| {
                d.snapshot = Some(snapshot.clone());
            });
        Ok(snapshot)
    }
}
